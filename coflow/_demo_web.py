"""``python -m coflow demo --web``: the demo's flows, live in the inspector page.

The demo runs over and over on a real backend while ``coflow.web``'s inspector
is served on 127.0.0.1 by the standard library's WSGI server (one thread per
request), so nothing but coflow is needed.  A ``HistoryRecorder`` is installed
for the page's history of each runner.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable
from typing import Any, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ._demo import run_demo
from ._history import HistoryRecorder
from ._inspector_web import inspector_wsgi
from ._instrument import add_instrument, remove_instrument

#: Events kept per runner for the page.
HISTORY = 50


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # an open page's stream does not hold the exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """The demo's events are the output; requests are not."""


def serve_demo_web(
    *,
    port: int = 8000,
    backend_name: str | None = None,
    out: TextIO | None = None,
    ready: Callable[[WSGIServer], None] | None = None,
) -> int:
    """Serve the inspector until interrupted (or ``server.shutdown()``), the demo running."""
    history = HistoryRecorder(limit=HISTORY)
    add_instrument(history)
    server = make_server(
        "127.0.0.1",
        port,
        inspector_wsgi(history=history),
        server_class=_Server,
        handler_class=_QuietHandler,
    )
    stopping = threading.Event()

    def demo_again_and_again() -> None:
        while not stopping.is_set():
            run_demo(backend_name=backend_name, out=out)

    demo = threading.Thread(target=demo_again_and_again, name="coflow-demo", daemon=True)
    try:
        demo.start()
        print(f"coflow inspector: http://127.0.0.1:{server.server_port}/", flush=True)
        if ready is not None:
            ready(server)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stopping.set()
        server.server_close()
        demo.join(10)  # the round of the demo under way ends in a few seconds
        remove_instrument(history)
    return 0
