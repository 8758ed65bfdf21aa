"""Start, probe and stop one single-node KRaft broker as a plain JVM process.

The broker is detached from the caller (own session, output to files) so that
``stream-app kafka start`` can return while Kafka keeps running; a pid file in the data
dir is how later ``start``/``stop``/``status`` calls find it again. Readiness is judged
over the Kafka wire protocol (ApiVersions, then Metadata listing this broker as alive),
never by sleeping, because only an unfenced broker can serve the app's transactions.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stream_app.kafka_local.config import (
    HOST,
    LocalKafkaConfig,
    LocalKafkaError,
    render_log4j2,
    render_server_properties,
)
from stream_app.kafka_local.resolve import ensure_jars, file_lock

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
TOOL_TIMEOUT_S = 120.0
POLL_INTERVAL_S = 0.2

# Children started by this interpreter: kept so stop() can reap them instead of
# leaving zombies that still look alive to kill(pid, 0).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class BrokerStartError(LocalKafkaError):
    """The broker could not be started, or died before it answered."""


class BrokerNotReadyError(LocalKafkaError, TimeoutError):
    """Nothing answered the Kafka protocol at the bootstrap address in time."""


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    """A running, ready broker; ``reused`` is False when this call had to launch it.

    ``startup_seconds`` covers the whole ``start`` call, including a jar resolve.
    """

    pid: int
    bootstrap: str
    reused: bool
    startup_seconds: float
    data_dir: Path
    broker_log: Path


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    """What ``status`` reports; ``ready`` means it answered the protocol just now."""

    running: bool
    ready: bool
    pid: int | None
    bootstrap: str
    data_dir: Path
    broker_log: Path


# --------------------------------------------------------------------------- protocol


class _ProtocolError(Exception):
    pass


def _split_bootstrap(bootstrap: str) -> tuple[str, int]:
    """First ``host:port`` of a bootstrap list (``[::1]:9092`` allowed)."""
    first = bootstrap.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bootstrap address must look like host:port, got {bootstrap!r}")
    return host.strip("[]") or HOST, int(port)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise _ProtocolError("connection closed mid-response")
        buf += chunk
    return bytes(buf)


def _request(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> bytes:
    """One request/response round trip (request header v1, response header v0)."""
    client_id = b"stream-app-probe"
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    response = _recv_exact(sock, size)
    (got_corr,) = struct.unpack_from(">i", response)
    if got_corr != corr:
        raise _ProtocolError(f"correlation id {got_corr} != {corr}")
    return response[4:]


def _alive_brokers(host: str, port: int, timeout: float) -> int:
    """Brokers the cluster reports as alive; raises if the protocol does not answer.

    ApiVersions v0 proves a Kafka listener; Metadata v4 with no topics lists only
    registered, unfenced brokers, which is when produce and transactions can work.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        body = _request(sock, api_key=18, version=0, corr=1, body=b"")
        (error,) = struct.unpack_from(">h", body)
        if error != 0:
            raise _ProtocolError(f"ApiVersions error code {error}")
        # Metadata v4: topics = [] (none, not all), allow_auto_topic_creation = false.
        body = _request(sock, api_key=3, version=4, corr=2, body=struct.pack(">ib", 0, 0))
        _throttle, brokers = struct.unpack_from(">ii", body)
        return int(brokers)


def wait_ready(
    bootstrap: str,
    timeout: float = 60.0,
    *,
    alive: Callable[[], bool] | None = None,
) -> float:
    """Block until a broker at ``bootstrap`` serves requests; return the seconds waited.

    ``alive`` lets the caller that spawned the broker fail fast when the process exits
    instead of waiting out the whole timeout. Async callers:
    ``await asyncio.to_thread(wait_ready, bootstrap, timeout)``.
    """
    host, port = _split_bootstrap(bootstrap)
    started = time.monotonic()
    deadline = started + timeout
    last = "no attempt made"
    while True:
        if alive is not None and not alive():
            raise BrokerStartError(f"broker process exited before {bootstrap} was ready")
        attempt_timeout = max(0.2, min(2.0, deadline - time.monotonic()))
        try:
            if _alive_brokers(host, port, attempt_timeout) > 0:
                return time.monotonic() - started
            last = "broker answers but is not registered yet"
        except (OSError, _ProtocolError, struct.error) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise BrokerNotReadyError(f"no Kafka at {bootstrap} after {timeout:.0f}s ({last})")
        time.sleep(POLL_INTERVAL_S)


def is_ready(bootstrap: str, timeout: float = 2.0) -> bool:
    """One quick protocol probe, for status displays."""
    try:
        return _alive_brokers(*_split_bootstrap(bootstrap), timeout) > 0
    except (OSError, _ProtocolError, struct.error):
        return False


# --------------------------------------------------------------------------- processes


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs: a zombie does not, and a child of ours is polled (reaped)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still answers kill(pid, 0) but is gone for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        pass
    try:  # no /proc (macOS): ask ps
        result = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout


def _read_pid(cfg: LocalKafkaConfig) -> int | None:
    try:
        return int(cfg.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _our_pid(cfg: LocalKafkaConfig) -> int | None:
    """The pid from the pid file if it is alive and really is this data dir's broker.

    Checking the command line guards against pid reuse after a reboot or crash.
    """
    pid = _read_pid(cfg)
    if pid is None or not pid_alive(pid):
        return None
    cmd = _cmdline(pid)
    if MAIN_CLASS not in cmd or str(cfg.server_properties) not in cmd:
        return None
    return pid


def _wait_gone(pid: int, timeout: float) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        _CHILDREN.pop(pid, None)
        return True
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM for a clean controlled shutdown; SIGKILL only if it hangs."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        _CHILDREN.pop(pid, None)
        return
    if _wait_gone(pid, timeout):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, 10.0):
        raise LocalKafkaError(f"broker pid {pid} survived SIGKILL")


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail(path: Path, lines: int, since: int = 0) -> str:
    """Last lines written after byte ``since`` (the whole file if it was rolled over)."""
    try:
        with path.open("rb") as handle:
            if since <= path.stat().st_size:
                handle.seek(since)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _failure_report(cfg: LocalKafkaConfig, log_offset: int = 0) -> str:
    """Tails of the JVM output and of this run's part of the broker log."""
    parts = []
    for path, lines, since in ((cfg.stdout_log, 20, 0), (cfg.broker_log, 40, log_offset)):
        tail = _tail(path, lines, since)
        if tail.strip():
            parts.append(f"--- last lines of {path} ---\n{tail}")
    return "\n".join(parts) or f"(no output in {cfg.broker_log} or {cfg.stdout_log})"


def _port_taken(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- java


def java_executable() -> str:
    """``$JAVA_HOME/bin/java`` when set (as Kafka's own scripts do), else ``java``."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise BrokerStartError("no 'java' on PATH and JAVA_HOME unset; Kafka needs Java 17+")
    return found


def _jvm_base(cfg: LocalKafkaConfig, lib: Path, *jvm_options: str) -> list[str]:
    return [
        java_executable(),
        *jvm_options,
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={cfg.log4j_file}",
        f"-Dkafka.logs.dir={cfg.data_dir}",
        "-cp",
        str(lib / "*"),  # expanded by the JVM, not a shell glob
    ]


def _run_tool(cfg: LocalKafkaConfig, lib: Path, *args: str) -> str:
    command = [*_jvm_base(cfg, lib), STORAGE_TOOL, *args]
    try:
        result = subprocess.run(
            command,
            cwd=cfg.data_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BrokerStartError(f"StorageTool {args[0]} timed out") from None
    if result.returncode != 0:
        raise BrokerStartError(
            f"StorageTool {args[0]} failed (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


def _meta_cluster_id(cfg: LocalKafkaConfig) -> str | None:
    try:
        text = (cfg.log_dirs / "meta.properties").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "cluster.id":
            return value.strip()
    return None


def _cluster_id(cfg: LocalKafkaConfig, lib: Path) -> str:
    """Generated once per data dir; an already formatted log dir keeps its own id."""
    try:
        known = cfg.cluster_id_file.read_text().strip()
    except OSError:
        known = ""
    if not known:
        known = _meta_cluster_id(cfg) or ""
    if not known:
        lines = _run_tool(cfg, lib, "random-uuid").split()
        if not lines:
            raise BrokerStartError("StorageTool random-uuid printed nothing")
        known = lines[-1]
    cfg.cluster_id_file.write_text(known + "\n")
    return known


def _format_storage(cfg: LocalKafkaConfig, lib: Path, cluster_id: str) -> None:
    """Format once; skipping an already formatted dir saves a JVM start per ``start``."""
    if _meta_cluster_id(cfg) == cluster_id:
        return
    config = str(cfg.server_properties)
    _run_tool(cfg, lib, "format", "-t", cluster_id, "-c", config, "--ignore-formatted")


def _check_same_ports(cfg: LocalKafkaConfig, pid: int) -> None:
    try:
        current = cfg.server_properties.read_text()
    except OSError:
        return
    if f"listeners={cfg.listeners}" not in current.splitlines():
        raise BrokerStartError(
            f"a broker (pid {pid}) from {cfg.data_dir} already runs with other ports; "
            "stop it first or use another data dir"
        )


# --------------------------------------------------------------------------- public API


def start(cfg: LocalKafkaConfig) -> BrokerInfo:
    """Ensure this data dir's broker runs and is ready; reuse it if it already is."""
    began = time.monotonic()
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(cfg.data_dir / ".lock"):
        pid = _our_pid(cfg)
        if pid is not None:
            _check_same_ports(cfg, pid)
            alive_pid = pid
            try:
                wait_ready(cfg.bootstrap, cfg.ready_timeout, alive=lambda: pid_alive(alive_pid))
            except LocalKafkaError as exc:
                raise BrokerStartError(f"{exc}\n{_failure_report(cfg)}") from exc
            return _info(cfg, pid, reused=True, began=began)
        cfg.pid_file.unlink(missing_ok=True)  # stale: process gone or pid reused
        for port in (cfg.port, cfg.controller_port, cfg.sasl_port):
            if port is not None and _port_taken(port):
                raise BrokerStartError(f"{HOST}:{port} is already in use by another process")
        pid = _launch(cfg, ensure_jars(cfg))
        return _info(cfg, pid, reused=False, began=began)


def _info(cfg: LocalKafkaConfig, pid: int, *, reused: bool, began: float) -> BrokerInfo:
    elapsed = time.monotonic() - began
    return BrokerInfo(pid, cfg.bootstrap, reused, elapsed, cfg.data_dir, cfg.broker_log)


def _launch(cfg: LocalKafkaConfig, lib: Path) -> int:
    """Write configs, format if needed, spawn the JVM and wait for it; return its pid."""
    cfg.server_properties.write_text(render_server_properties(cfg))
    cfg.log4j_file.write_text(render_log4j2(cfg))
    _format_storage(cfg, lib, _cluster_id(cfg, lib))
    heap = (f"-Xmx{cfg.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20")
    command = [*_jvm_base(cfg, lib, *heap), MAIN_CLASS, str(cfg.server_properties)]
    log_offset = _log_size(cfg.broker_log)  # the log is appended to across runs
    with cfg.stdout_log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=cfg.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the caller's terminal must not kill it
        )
    _CHILDREN[proc.pid] = proc
    cfg.pid_file.write_text(f"{proc.pid}\n")
    try:
        wait_ready(cfg.bootstrap, cfg.ready_timeout, alive=lambda: proc.poll() is None)
    except LocalKafkaError as exc:
        _terminate(proc.pid, 5.0)
        cfg.pid_file.unlink(missing_ok=True)
        raise BrokerStartError(f"{exc}\n{_failure_report(cfg, log_offset)}") from exc
    return proc.pid


def stop(cfg: LocalKafkaConfig) -> bool:
    """Stop this data dir's broker; True if one was running. Removes the pid file."""
    if not cfg.data_dir.is_dir():
        return False
    with file_lock(cfg.data_dir / ".lock"):
        pid = _our_pid(cfg)
        if pid is not None:
            _terminate(pid, cfg.stop_timeout)
        cfg.pid_file.unlink(missing_ok=True)
        return pid is not None


def status(cfg: LocalKafkaConfig) -> BrokerStatus:
    """Read-only look at the pid file and one protocol probe."""
    pid = _our_pid(cfg)
    ready = pid is not None and is_ready(cfg.bootstrap)
    return BrokerStatus(pid is not None, ready, pid, cfg.bootstrap, cfg.data_dir, cfg.broker_log)
