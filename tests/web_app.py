"""A tiny ASGI app for ``python -m uvicorn web_app:app``: a Starlette app with coflow.web mounted.

``/flows/<key>`` streams a flow started on first request on uvicorn's loop; the
flow waits forever, so only the server's shutdown ends its streams.
"""

from __future__ import annotations

from starlette.applications import Starlette

import coflow
import coflow.web
from coflow import wait_until
from coflow.backends.asyncio import AsyncioBackend

runners: dict[str, coflow.Runner] = {}


def lookup(key: str) -> coflow.Runner:
    runner = runners.get(key)
    if runner is None:
        runner = runners[key] = coflow.start(
            wait_until(lambda s: s["n"] >= 100),
            initial_state={"n": 0},
            backend=AsyncioBackend(),
            name=key,
        )
    return runner


app = Starlette()
app.mount("/flows", coflow.web.sse_asgi(lookup))
