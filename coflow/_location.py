"""Where a failure happened: the path of flows and the file and line of the failing ``yield``.

Computed only when an error escapes a flow, never on the step loop's fast path.
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Sequence
from types import CodeType, GeneratorType
from typing import Any, cast

#: Code objects of the scheduler's own generators (sequence, run, each, ...): never shown as flows.
INTERNAL_CODES: set[CodeType] = set()

_MAX_PATH = 8
#: Names a very deep path shows at each end.
PATH_ENDS = _MAX_PATH // 2


def add_note(error: BaseException, note: str) -> None:
    """``error.add_note`` where it exists (3.11+); a plain ``__notes__`` list on 3.10."""
    if sys.version_info >= (3, 11):
        error.add_note(note)
    else:
        notes = getattr(error, "__notes__", None)
        if notes is None:
            notes = []
            error.__notes__ = notes  # type: ignore[attr-defined]
        notes.append(note)


def _code(gen: Generator[Any, Any, Any]) -> CodeType:
    return cast(GeneratorType, gen).gi_code  # type: ignore[type-arg]


def is_user_frame(gen: Generator[Any, Any, Any]) -> bool:
    return _code(gen) not in INTERNAL_CODES


def yield_site(error: BaseException, gen: Generator[Any, Any, Any]) -> str | None:
    """``file:line`` of ``gen``'s last frame in ``error``'s traceback: where it raised."""
    site = None
    tb = error.__traceback__
    code = _code(gen)
    while tb is not None:
        if tb.tb_frame.f_code is code:
            site = f"{code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return site


def flow_path(
    outer: list[str], hidden: int, inner: list[str], frames: Sequence[Generator[Any, Any, Any]]
) -> str:
    """``runner > child > sub > subsub``, eliding the middle of very deep paths.

    The runners' names come as ``Runner.path_parts`` gives them: the outermost,
    how many are left out, the innermost; the user frames follow them.
    """
    names = [*outer, *inner]
    names.extend(_code(gen).co_name for gen in frames if is_user_frame(gen))
    total = len(names) + hidden
    if total > _MAX_PATH:
        shown = _MAX_PATH // 2
        names = [*names[:shown], f"... {total - _MAX_PATH} more ...", *names[-shown:]]
    return " > ".join(names)
