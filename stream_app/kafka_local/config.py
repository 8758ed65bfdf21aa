"""Where the local broker lives and how it is configured.

One frozen ``LocalKafkaConfig`` carries every knob (ports, directories, versions) so that
resolve, start, stop and status always agree on the same paths; the file renderers here
turn it into the broker's ``server.properties`` and log4j2 configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

HOST = "127.0.0.1"
"""The broker only ever binds to loopback: it is a developer tool, not a deployment."""

ENV_PORT = "STREAM_APP_KAFKA_PORT"
ENV_CONTROLLER_PORT = "STREAM_APP_KAFKA_CONTROLLER_PORT"
ENV_DATA_DIR = "STREAM_APP_KAFKA_DATA_DIR"
ENV_CACHE_DIR = "STREAM_APP_KAFKA_CACHE_DIR"


class LocalKafkaError(RuntimeError):
    """Base of every failure of the local broker tooling, so callers can catch one type."""


def default_data_dir() -> Path:
    """Broker state lives outside the repo so a ``git clean`` never wipes the topics."""
    return Path.home() / ".local" / "share" / "stream-app" / "kafka"


def default_cache_dir() -> Path:
    """Jars are shared by every checkout and data dir; they are only ever downloaded once."""
    return Path.home() / ".cache" / "stream-app"


@dataclass(frozen=True, slots=True)
class LocalKafkaConfig:
    """Everything needed to resolve, start, probe and stop one local broker."""

    port: int = 9092
    controller_port: int = 9093
    data_dir: Path = field(default_factory=default_data_dir)
    cache_dir: Path = field(default_factory=default_cache_dir)
    kafka_version: str = "4.1.1"
    scala_version: str = "2.13"
    log4j_version: str = "2.24.3"
    heap: str = "512m"
    ready_timeout: float = 60.0
    stop_timeout: float = 30.0
    sasl_port: int | None = None
    """A second client listener, SASL_PLAINTEXT with the PLAIN mechanism, for testing the
    product's security settings against a real broker; None (the default) opens none."""
    sasl_users: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    """User name to password on the SASL listener (test credentials, not secrets)."""

    def __post_init__(self) -> None:
        ports = {"port": self.port, "controller_port": self.controller_port}
        if self.sasl_port is not None:
            ports["sasl_port"] = self.sasl_port
            if not self.sasl_users:
                raise LocalKafkaError("sasl_port needs at least one user in sasl_users")
        for name, value in ports.items():
            if not 0 < value < 65536:
                raise LocalKafkaError(f"{name} must be in 1..65535, got {value}")
        if len(set(ports.values())) < len(ports):
            raise LocalKafkaError(f"ports must differ: {ports}")
        for user, password in self.sasl_users.items():
            if not user.isidentifier() or '"' in password or "\\" in password:
                raise LocalKafkaError(
                    f"SASL user {user!r}: letters, digits, _; no quote in passwords"
                )
        # Canonical paths: the broker runs with its own cwd, and start/stop recognise
        # their broker by the server.properties path on its command line.
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser().resolve())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LocalKafkaConfig:
        """Defaults overridden by ``STREAM_APP_KAFKA_*`` variables (empty ones are ignored)."""
        env = os.environ if environ is None else environ
        base = cls()
        return cls(
            port=_env_int(env, ENV_PORT, base.port),
            controller_port=_env_int(env, ENV_CONTROLLER_PORT, base.controller_port),
            data_dir=_env_path(env, ENV_DATA_DIR, base.data_dir),
            cache_dir=_env_path(env, ENV_CACHE_DIR, base.cache_dir),
        )

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def sasl_bootstrap(self) -> str | None:
        """The SASL_PLAINTEXT listener's address, if it has one."""
        return None if self.sasl_port is None else f"{HOST}:{self.sasl_port}"

    @property
    def listeners(self) -> str:
        """``listeners`` of server.properties: what the broker binds, and how a running
        broker's ports are recognised."""
        found = f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}"
        if self.sasl_port is not None:
            found += f",SASL_PLAINTEXT://{HOST}:{self.sasl_port}"
        return found

    @property
    def jar_root(self) -> Path:
        """One directory per Kafka version, so an upgrade never mixes jars."""
        return self.cache_dir / f"kafka-{self.kafka_version}"

    @property
    def lib_dir(self) -> Path:
        return self.jar_root / "lib"

    @property
    def log_dirs(self) -> Path:
        """Kafka's partition data (``log.dirs``), not human-readable logs."""
        return self.data_dir / "logs"

    @property
    def server_properties(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.data_dir / "log4j2.properties"

    @property
    def broker_log(self) -> Path:
        """The broker's own log4j output: read this when something goes wrong."""
        return self.data_dir / "broker.log"

    @property
    def stdout_log(self) -> Path:
        """JVM stdout/stderr: only crashes before log4j is up (bad classpath, bad heap)."""
        return self.data_dir / "broker.out"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def cluster_id_file(self) -> Path:
        return self.data_dir / "cluster.id"


def _env_int(env: Mapping[str, str], var: str, default: int) -> int:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise LocalKafkaError(f"{var} must be an integer, got {raw!r}") from None


def _env_path(env: Mapping[str, str], var: str, default: Path) -> Path:
    raw = env.get(var, "").strip()
    return Path(raw) if raw else default


def _prop(value: object) -> str:
    """Escape a value for a Java properties file (backslashes are escapes there)."""
    return str(value).replace("\\", "\\\\")


def render_server_properties(cfg: LocalKafkaConfig) -> str:
    """Single-node combined KRaft mode with every internal topic at replication factor 1.

    Replication factor and min ISR of 1 for the offsets, transaction-state and
    share-state topics are what make consumer groups and transactions work at all on
    one node: the defaults (3 / 2) would leave the coordinators unavailable forever.
    """
    advertised = f"PLAINTEXT://{HOST}:{cfg.port}"
    protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if cfg.sasl_port is not None:
        advertised += f",SASL_PLAINTEXT://{HOST}:{cfg.sasl_port}"
        protocols += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
    settings: dict[str, object] = {
        "process.roles": "broker,controller",
        "node.id": 1,
        "controller.quorum.voters": f"1@{HOST}:{cfg.controller_port}",
        "listeners": cfg.listeners,
        "advertised.listeners": advertised,
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": protocols,
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": _prop(cfg.log_dirs),
        "num.partitions": 1,
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": 1,
        "offsets.topic.min.isr": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "group.initial.rebalance.delay.ms": 0,
        "log.cleaner.dedupe.buffer.size": 2097152,
    }
    if cfg.sasl_port is not None:
        # PLAIN users of that listener only; clients and the controller keep PLAINTEXT.
        users = " ".join(f'user_{u}="{p}"' for u, p in cfg.sasl_users.items())
        settings["sasl.enabled.mechanisms"] = "PLAIN"
        settings["listener.name.sasl_plaintext.plain.sasl.jaas.config"] = _prop(
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
        )
    lines = ["# Generated by stream_app.kafka_local on every start; edits are overwritten."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def render_log4j2(cfg: LocalKafkaConfig) -> str:
    """Broker logs go to a rolling file in the data dir, never to the caller's terminal."""
    log = _prop(cfg.broker_log)
    return f"""\
# Generated by stream_app.kafka_local on every start; edits are overwritten.
status = warn
name = stream-app-local-kafka
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
"""
