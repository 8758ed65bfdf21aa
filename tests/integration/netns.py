"""A client on another host, for tests of what a server exposes beyond loopback.

A network namespace made by the test, joined to this one by a veth pair, is a host of its
own with its own address: a server bound to loopback is out of its reach, one bound to
0.0.0.0 is not. Traffic stays on the veth pair, inside this machine. Making the namespace
needs root (or CAP_NET_ADMIN); without it, the client is this process and the target
this host's own non-loopback interface address, if it has one.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# RFC 2544's benchmarking range: never routed on the internet, rarely used on a LAN.
NET = ipaddress.ip_network("198.18.0.0/15")

_FETCH = """
import json, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        print(json.dumps([r.status, r.read().decode()]))
except urllib.error.HTTPError as e:
    print(json.dumps([e.code, e.read().decode()]))
except OSError as e:
    print(json.dumps([None, str(e)]))
"""


@dataclass(frozen=True)
class RemoteClient:
    """GETs URLs from another host; ``server_address`` is this host as that one sees it."""

    server_address: str
    namespace: str | None
    how: str

    def get(self, url: str) -> tuple[int | None, str]:
        """(HTTP status, body), or (None, why) when nothing answered."""
        command = [sys.executable, "-c", _FETCH, url]
        if self.namespace is not None:
            command = ["ip", "netns", "exec", self.namespace, *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
        status, body = json.loads(done.stdout)
        return status, body


def _run(*args: str) -> None:
    subprocess.run(args, capture_output=True, text=True, timeout=30, check=True)


@contextmanager
def remote_client() -> Iterator[RemoteClient | str]:
    """A :class:`RemoteClient`, or why none could be made (the caller skips with it)."""
    tag = secrets.token_hex(3)
    namespace, host_if, peer_if = f"sa-{tag}", f"sah{tag}", f"san{tag}"
    base = int(NET.network_address) + 4 * secrets.randbelow(NET.num_addresses // 4)
    host_ip, peer_ip = str(ipaddress.ip_address(base + 1)), str(ipaddress.ip_address(base + 2))
    why = "no 'ip' command (Debian iproute2)"
    if shutil.which("ip") is not None:
        try:
            _run("ip", "netns", "add", namespace)
        except subprocess.CalledProcessError as exc:
            why = f"cannot make a network namespace (needs root): {exc.stderr.strip()}"
        else:
            try:
                _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if)
                _run("ip", "link", "set", peer_if, "netns", namespace)
                _run("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
                _run("ip", "link", "set", host_if, "up")
                ns = ("ip", "netns", "exec", namespace)
                _run(*ns, "ip", "addr", "add", f"{peer_ip}/30", "dev", peer_if)
                _run(*ns, "ip", "link", "set", peer_if, "up")
                _run(*ns, "ip", "link", "set", "lo", "up")
                yield RemoteClient(host_ip, namespace, f"namespace {namespace} via {host_if}")
                return
            finally:
                subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
                subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
    own = _own_interface_address()
    if own is None:
        yield f"{why}; and no non-loopback IPv4 address on this host (uid {os.getuid()})"
        return
    yield RemoteClient(own, None, f"this host's interface address {own}")


def _own_interface_address() -> str | None:
    """A global-scope IPv4 address of one of this host's interfaces (``ip -4 addr``)."""
    if shutil.which("ip") is None:
        return None
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            return fields[fields.index("inet") + 1].split("/")[0]
    return None


def get_local(url: str) -> tuple[int | None, str]:
    """(HTTP status, body) of a GET from this process."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
