"""The complete programs in the README and the docs run, and the tests they show pass.

Only blocks that stand on their own are run (those that begin by importing
coflow or pytest, or define a test); the short fragments that live inside a
flow are not.
Blocks of one page run in order in one namespace, as a reader would paste them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", "docs/virtual-time-testing.md"]
STANDALONE = ("import coflow", "import pytest", "from coflow.testing import", "def test_")


def standalone_blocks(page: str) -> list[str]:
    text = (ROOT / page).read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    return [block for block in blocks if block.startswith(STANDALONE)]


@pytest.mark.parametrize("page", PAGES)
def test_the_programs_on_the_page_run_and_their_tests_pass(page: str) -> None:
    blocks = standalone_blocks(page)
    assert blocks, f"{page} has no standalone program"
    namespace: dict[str, Any] = {"__name__": f"docs_{Path(page).stem}"}
    for block in blocks:
        exec(compile(block, f"{page} block", "exec"), namespace)
    tests = [value for name, value in namespace.items() if name.startswith("test_")]
    assert tests, f"{page} shows no test to run"
    for test in tests:
        test()
