"""Soak: starting and stopping flows, cycle after cycle, leaks nothing, on every backend.

``bench/soak.py`` runs the cycles and takes the figures; this checks them.
``COFLOW_SOAK_CYCLES`` sets the cycles per backend (200 by default, about a
second each); ``COFLOW_SOAK_CYCLES=10000 python -m pytest tests/test_soak.py``
is the long run.  The soak counts runners once the backend has moved on;
tests/test_supervised_faults.py checks that an idle backend holds none either.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import backend_params

# bench/ is not installed with the package; it lives at the repository root.  Appended,
# not prepended, so an installed coflow keeps winning over the source tree.
REPOSITORY = Path(__file__).resolve().parents[1]
if not (REPOSITORY / "bench" / "__init__.py").exists():
    pytest.skip("bench/ is not next to the tests (not a source checkout)", allow_module_level=True)
if str(REPOSITORY) not in sys.path:
    sys.path.append(str(REPOSITORY))

from bench.soak import BACKENDS, soak  # noqa: E402

CYCLES = int(os.environ.get("COFLOW_SOAK_CYCLES", "200"))


@pytest.mark.slow
@pytest.mark.parametrize("name", backend_params(list(BACKENDS)))
def test_starting_and_stopping_flows_leaks_nothing(name: str) -> None:
    result = soak(name, CYCLES)
    before, after = result.before, result.after
    assert result.cycles == CYCLES
    assert after.threads <= before.threads, result
    assert after.runners <= before.runners, result
    if name == "asyncio":
        assert before.tasks is not None and after.tasks is not None
        assert after.tasks <= before.tasks, result
    if name == "gevent":
        assert before.greenlets is not None and after.greenlets is not None
        assert after.greenlets <= before.greenlets, result
    assert after.rss_kib <= result.rss_limit_kib, result
    assert result.leaks() == []
