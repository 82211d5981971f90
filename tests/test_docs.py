"""The complete programs in the README and the docs run, and the tests they show pass.

Every page is checked (the README and each docs/*.md), and each must show at least one
standalone program with a test.

Only blocks that stand on their own are run: those that import coflow among
their first imports, begin by importing pytest, or define a test; the short
fragments that live inside a flow are not.  A program that needs an optional
library (gevent) is left out where that library is not installed.  Blocks
fenced as ``py`` instead of ``python`` are shown, never run: they need
libraries the tests do not install (a FastAPI or Flask app).
Blocks of one page run in order in one namespace, as a reader would paste them.
A page whose tests take fixtures (coflow's pytest plugin: docs/testing.md) is
run as the reader would run it: its blocks make one test module, which pytest
runs in a fresh directory with no conftest (pytester, in this process).
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import INNER_RUN_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
#: Every page: each must show at least one standalone program with a test that passes.
PAGES = ["README.md", *sorted(path.relative_to(ROOT).as_posix() for path in ROOT.glob("docs/*.md"))]
STANDALONE = ("import pytest", "from coflow.testing import", "def test_")
OPTIONAL = ("gevent",)
#: Plugins installed here that a reader of the docs need not have: left out of pytester's runs.
UNRELATED_PLUGINS = ["no:anyio", "no:asyncio", "no:hypothesispytest", "no:benchmark"]

pytest_plugins = ["pytester"]


def is_standalone(block: str) -> bool:
    imports = itertools.takewhile(
        lambda line: not line or line.startswith(("import ", "from ")), block.splitlines()
    )
    return block.startswith(STANDALONE) or "import coflow" in imports


def can_run(block: str) -> bool:
    """False when the block imports an optional library (or its coflow backend) not installed."""
    return not any(
        re.search(rf"^(?:import|from) (?:\S+\.)?{name}\b", block, re.MULTILINE)
        and importlib.util.find_spec(name) is None
        for name in OPTIONAL
    )


def standalone_blocks(page: str) -> list[str]:
    text = (ROOT / page).read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    return [block for block in blocks if is_standalone(block) and can_run(block)]


@pytest.mark.parametrize("page", PAGES)
def test_the_programs_on_the_page_run_and_their_tests_pass(
    page: str, request: pytest.FixtureRequest
) -> None:
    blocks = standalone_blocks(page)
    assert blocks, f"{page} has no standalone program"
    namespace: dict[str, Any] = {"__name__": f"docs_{Path(page).stem}"}
    for block in blocks:
        exec(compile(block, f"{page} block", "exec"), namespace)
    tests = [value for name, value in namespace.items() if name.startswith("test_")]
    assert tests, f"{page} shows no test to run"
    if any(inspect.signature(test).parameters for test in tests):
        run_with_pytest(request.getfixturevalue("pytester"), page, blocks, len(tests))
        return
    for test in tests:
        test()


def run_with_pytest(pytester: pytest.Pytester, page: str, blocks: list[str], tests: int) -> None:
    """Run the page's blocks as one test module; every test passes, and none is left out."""
    # Named after the page, so that it cannot be taken for one of this suite's own test modules.
    module = "test_page_" + Path(page).stem.replace("-", "_")
    pytester.makepyfile(**{module: "\n\n".join(blocks)})
    plugins = [option for plugin in UNRELATED_PLUGINS for option in ("-p", plugin)]
    result = pytester.runpytest_inprocess(*INNER_RUN_OPTIONS, *plugins, "-rfEs")
    outcomes = result.parseoutcomes()
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert set(outcomes) <= {"passed", "skipped"}, result.stdout.str()
    assert outcomes["passed"] >= tests, result.stdout.str()
