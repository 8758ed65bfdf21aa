"""``/metrics`` and ``/healthz`` on one port: what Prometheus scrapes, and what an
orchestrator's readiness probe asks.

``/healthz`` answers 200 ``ok`` when every worker of the process has its partitions
assigned and restored, else 503 with the reason (e.g. a partition whose state could not
be restored, which is paused rather than silently skipped).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

Health = Callable[[], str | None]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log."""


def health_app(metrics: Any, health: Health) -> Callable[..., Iterable[bytes]]:
    """A WSGI app: ``/healthz`` from ``health``, everything else from ``metrics``."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            problem = health()
            status = "200 OK" if problem is None else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n" if problem is None else f"{problem}\n".encode()]
        result: Iterable[bytes] = metrics(environ, start_response)
        return result

    return app


def serve_http(port: int, addr: str, registry: CollectorRegistry, health: Health) -> int:
    """Serve in a daemon thread; returns the bound port (useful with ``port=0``)."""
    app = health_app(make_wsgi_app(registry), health)
    server = make_server(addr, port, app, ThreadingWSGIServer, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return int(server.server_port)
