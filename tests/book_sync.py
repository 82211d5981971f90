"""The flagship book-sync flow, for the tests that show its lost edit (lasting work, explore).

``push_with_ok`` is the old pattern, which builds the new state from the state
the push started with; ``push_with_update`` keeps an edit made during the push.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import coflow
from coflow import FlowGenerator, Ok, Update, debounce, run, set_state, wait_until


def sync_book(push: Callable[[Any], Any]) -> coflow.Flow:
    @coflow.flow(initial_state={"dirty": False, "text": "", "pushed": []})
    def sync_book() -> FlowGenerator:
        while True:
            yield wait_until(lambda s: s["dirty"] is True)
            yield debounce(0.5)
            yield set_state(lambda s: {**s, "dirty": "processing"})
            yield run(push)

    return sync_book


def push_with_ok(state: dict[str, Any]) -> Ok[dict[str, Any]]:
    return Ok({**state, "dirty": False, "pushed": [*state["pushed"], state["text"]]})


def push_with_update(state: dict[str, Any]) -> Update[dict[str, Any]]:
    text = state["text"]

    def done(now: dict[str, Any]) -> dict[str, Any]:
        dirty = False if now["dirty"] == "processing" else now["dirty"]
        return {**now, "dirty": dirty, "pushed": [*now["pushed"], text]}

    return Update(done)
