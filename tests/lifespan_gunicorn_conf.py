"""gunicorn config for tests/lifespan_gunicorn_app.py: one gevent worker, shut down with a grace.

``worker_exit`` runs in the worker process once its server has stopped, on a
graceful stop (SIGTERM) and a quick one (SIGINT, SIGQUIT) alike; the grace must
end before gunicorn's ``graceful_timeout``, past which the master kills it.
"""

from __future__ import annotations

from typing import Any

workers = 1
worker_class = "gevent"
graceful_timeout = 10


def worker_exit(server: Any, worker: Any) -> None:
    from lifespan_gunicorn_app import supervisor

    supervisor.shutdown(grace=2.0, timeout=5.0)
