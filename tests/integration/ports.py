"""Free loopback ports for brokers started by tests."""

from __future__ import annotations

import socket


def free_ports(count: int) -> list[int]:
    """Distinct ephemeral ports, all held open until every one is chosen."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()
