"""Is a Kafka broker there? Asked once, quickly, before a command builds its clients.

librdkafka never gives up on an unreachable broker: a producer retries forever and logs every
attempt, an admin call waits out its whole timeout. So every command that needs Kafka asks
here first, and a person gets one line saying what was tried and what to do, within about a
second for a refused port or an unknown host (librdkafka reports "all brokers down" after
one attempt at each) and within ``timeout`` for a host that never answers.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from .engine.clients import Kafka, client_config

PREFLIGHT_TIMEOUT_S = 10.0
"""Longest wait for a broker that accepts connections (or packets) but does not answer."""
EXIT_NO_BROKER = 69
"""Exit status when no broker answers: ``EX_UNAVAILABLE`` of sysexits.h, so scripts can branch."""

_QUIET = logging.getLogger("stream_app.preflight.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False  # the one line below says it all; librdkafka's retries would repeat it
_PREFIX = re.compile(r"^\S+/(?:bootstrap|\d+): ")
_SUFFIX = re.compile(r" \(after \d+ms in state \w+\)$")
_DOWN = frozenset(
    (KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE)  # noqa: SLF001 (librdkafka's names)
)


class BrokerUnreachableError(Exception):
    """No broker answered; ``str()`` is the one line to show."""


HINT = (
    "start the local one with 'stream-app kafka start', "
    "or set STREAM_APP_BOOTSTRAP_SERVERS to a running broker"
)
HINT_WITH_OPTION = HINT + " (or pass --bootstrap)"


def require_broker(
    kafka: Kafka,
    hint: str = HINT,
    timeout: float = PREFLIGHT_TIMEOUT_S,
    *,
    topics: Iterable[str] = (),
) -> None:
    """:func:`check_broker` for commands: on failure print its one line to stderr and exit
    with :data:`EXIT_NO_BROKER` (no traceback, no client left behind). ``topics`` must
    exist too (else exit 1): a producer would otherwise fail record by record."""
    try:
        existing = check_broker(kafka, timeout, hint)
    except BrokerUnreachableError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_NO_BROKER) from None
    missing = [t for t in topics if t not in existing]
    if missing:
        print(
            f"error: missing topics at {kafka}: {', '.join(missing)}; create them with "
            "'stream-app create-topics' (a worker also creates them when it starts)",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(1)


def check_broker(kafka: Kafka, timeout: float = PREFLIGHT_TIMEOUT_S, hint: str = HINT) -> set[str]:
    """The topic names, once a broker at ``kafka`` answers a metadata request; raise
    :class:`BrokerUnreachableError` when all of them are reported down or ``timeout`` passes."""
    reasons: list[str] = []
    down = refused = False

    def on_error(error: KafkaError) -> None:
        nonlocal down, refused
        if error.code() in _DOWN:
            down = True
        if error.code() == KafkaError._AUTHENTICATION:  # noqa: SLF001
            refused = True
        if error.code() != KafkaError._ALL_BROKERS_DOWN:  # noqa: SLF001
            reasons.append(_SUFFIX.sub("", _PREFIX.sub("", error.str())))

    connect_ms = max(1000, int(timeout * 1000))
    admin = AdminClient(
        client_config(
            kafka,
            {
                "logger": _QUIET,
                "error_cb": on_error,
                "socket.connection.setup.timeout.ms": connect_ms,
            },
        )
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            metadata = admin.list_topics(timeout=min(0.5, max(0.05, deadline - time.monotonic())))
            return set(metadata.topics)
        except KafkaException:
            admin.poll(0)  # serves error_cb
        if down or refused or time.monotonic() >= deadline:
            break
    why = f" ({reasons[-1]})" if reasons else f" (no answer in {timeout:.0f} s)"
    if refused:
        raise BrokerUnreachableError(
            f"the Kafka broker at {kafka} refused our credentials{why}; check the "
            "STREAM_APP_KAFKA_SECURITY_PROTOCOL and STREAM_APP_KAFKA_SASL_* settings "
            "(docs/deployment.md)."
        )
    raise BrokerUnreachableError(f"no Kafka broker at {kafka}{why}; {hint}.")


__all__ = [
    "EXIT_NO_BROKER",
    "HINT",
    "HINT_WITH_OPTION",
    "PREFLIGHT_TIMEOUT_S",
    "BrokerUnreachableError",
    "check_broker",
    "require_broker",
]
