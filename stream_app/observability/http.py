"""``/metrics`` and ``/healthz`` on one port: what Prometheus scrapes, and what an
orchestrator's readiness probe asks.

``/healthz`` answers 200 ``ok`` when every worker of the process has its partitions
assigned and restored and commits what it processes, else 503 with the reason (e.g. a
partition whose state could not be restored, which is paused rather than silently
skipped, or records processed but not committed for too long: :class:`CommitWatch`).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

Health = Callable[[], str | None]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log."""


class _Server6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


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
    """Serve on ``addr`` (IPv4, IPv6 or a host name) in a daemon thread; returns the bound
    port (useful with ``port=0``)."""
    app = health_app(make_wsgi_app(registry), health)
    family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0][0]
    server_class = _Server6 if family == socket.AF_INET6 else ThreadingWSGIServer
    server = make_server(addr, port, app, server_class, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return int(server.server_port)


@dataclass
class _Seen:
    committed: int
    processed: int
    pending_since: float | None = None


class CommitWatch:
    """Says when a worker has processed records but not committed them for ``max_age`` s.

    A worker whose transactions keep failing or hang (a broker refusing them, a stuck
    committer) can look alive: assigned, restored, consuming. Its counters tell: records
    processed since its last commit, with no commit since. The age counts from the first
    check that saw such records, so an idle worker (no records, no commits) stays healthy
    and one that just woke up is given ``max_age`` to commit.
    """

    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._clock = clock
        self._seen: dict[str, _Seen] = {}

    def check(self, name: str, processed: int, committed: int) -> str | None:
        """Why worker ``name`` is stuck, or None; called with its counters on each probe."""
        now = self._clock()
        seen = self._seen.get(name)
        if seen is None or committed != seen.committed:
            self._seen[name] = _Seen(committed, processed)
            return None
        if processed == seen.processed:
            return None
        if seen.pending_since is None:
            seen.pending_since = now
        waited = now - seen.pending_since
        if waited <= self.max_age:
            return None
        pending = processed - seen.processed
        return f"{name}: {pending} records processed, none committed for {waited:.0f} s"
