"""Isolating a record that kills the worker (a poison pill) instead of crash-looping on it.

Before a partition batch goes to its stage, the worker writes which offsets it is handing
over to a small local file; when the stage returns it clears the file. No fsync: the mark
must outlive the process, not the machine. A worker that dies mid-batch leaves its mark,
and the restarted worker (same ``worker_id``, same ``state_dir``) reads it:

1. a marked range of several records is *suspect*: those offsets are processed one record
   at a time, each marked alone, so a second death names the record;
2. a single marked offset the worker died on twice in a row, or once with a Python
   exception (the mark records its type), is a *poison pill*: it is dead-lettered with
   reason ``poison_pill`` and never processed again.

A ``kill -9`` or an OOM kill mid-batch leaves a mark too. The restarted worker then pays one
record at a time for that one batch, and needs a second death on the very same record
before it gives up on it, so an operator's kill does not cost a record.

Examples
--------
>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "w.inflight"
>>> guard = PoisonGuard(path)
>>> guard.mark("clicks", 0, 100, 199)
>>> guard.failed("RecursionError")  # the stage raised; the process exits
>>> at = lambda *offsets: [Offset(o) for o in offsets]
>>> PoisonGuard(path).plan("clicks", 0, at(99, 100, 101))  # (step, start, stop) slices
[('batch', 0, 1), ('single', 1, 2), ('single', 2, 3)]
>>> guard = PoisonGuard(path)
>>> guard.mark("clicks", 0, 142, 142)
>>> guard.failed("RecursionError")
>>> PoisonGuard(path).plan("clicks", 0, at(141, 142, 143))
[('batch', 0, 1), ('poison', 1, 2), ('batch', 2, 3)]
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, Protocol

Step = Literal["batch", "single", "poison"]


class HasOffset(Protocol):
    @property
    def offset(self) -> int: ...


class Offset(NamedTuple):
    offset: int


@dataclass(frozen=True, slots=True)
class _Mark:
    topic: str
    partition: int
    first: int
    last: int
    error: str | None = None
    deaths: int = 0
    """Earlier deaths on this same single offset."""


class PoisonGuard:
    """The in-flight mark of one worker, and what the previous run's mark says."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        previous = _read(path)
        self._suspect: _Mark | None = None
        self._poison: tuple[str, int, int] | None = None
        if previous is not None:
            single = previous.first == previous.last
            if single and (previous.error is not None or previous.deaths >= 1):
                self._poison = (previous.topic, previous.partition, previous.first)
            else:
                deaths = previous.deaths + 1 if single else 0
                self._suspect = _Mark(
                    previous.topic, previous.partition, previous.first, previous.last, None, deaths
                )
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._current: _Mark | None = None

    @property
    def suspect(self) -> tuple[str, int, int, int] | None:
        """(topic, partition, first, last) handed over when the last run died, if any."""
        s = self._suspect
        return None if s is None else (s.topic, s.partition, s.first, s.last)

    @property
    def poison(self) -> tuple[str, int, int] | None:
        """(topic, partition, offset) of the record that killed the last runs, if any."""
        return self._poison

    def plan(
        self, topic: str, partition: int, records: Sequence[HasOffset]
    ) -> list[tuple[Step, int, int]]:
        """How to hand ``records`` to the stage, as ``(step, start, stop)`` slices: one batch,
        except suspects one at a time and a poison pill not at all."""
        s, p = self._suspect, self._poison
        hit_s = s is not None and (s.topic, s.partition) == (topic, partition)
        hit_p = p is not None and (p[0], p[1]) == (topic, partition)
        if not hit_s and not hit_p:
            return [("batch", 0, len(records))]
        steps: list[tuple[Step, int, int]] = []
        for i, record in enumerate(records):
            offset = record.offset
            step: Step = "batch"
            if hit_p and p is not None and offset == p[2]:
                step = "poison"
            elif hit_s and s is not None and s.first <= offset <= s.last:
                step = "single"
            if step == "batch" and steps and steps[-1][0] == "batch":
                steps[-1] = ("batch", steps[-1][1], i + 1)
            else:
                steps.append((step, i, i + 1))
        return steps

    def mark(self, topic: str, partition: int, first: int, last: int) -> None:
        """Offsets ``first..last`` of ``topic[partition]`` are being handed to a stage."""
        s = self._suspect
        deaths = 0
        if s is not None and first == last and s.first == s.last == first:
            deaths = s.deaths  # the same single record again: carry the count
        self._current = _Mark(topic, partition, first, last, None, deaths)
        self._write(self._current)

    def failed(self, error: str) -> None:
        """The stage raised on the marked records; the worker is about to exit."""
        if self._current is not None:
            m = self._current
            self._write(_Mark(m.topic, m.partition, m.first, m.last, error, m.deaths))

    def clear(self) -> None:
        """The marked records were handed over without killing the worker."""
        if self._current is not None:
            m = self._current
            s = self._suspect
            if (
                s is not None
                and (m.topic, m.partition) == (s.topic, s.partition)
                and m.last >= s.last
            ):
                self._suspect = None  # past the suspect range: back to whole batches
            self._current = None
            os.ftruncate(self._fd, 0)

    def close(self) -> None:
        """A clean stop: nothing is in flight, so no mark survives."""
        os.close(self._fd)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _write(self, mark: _Mark) -> None:
        data = json.dumps(
            [mark.topic, mark.partition, mark.first, mark.last, mark.error, mark.deaths]
        ).encode()
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))


def _read(path: Path) -> _Mark | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if not data:
        return None
    try:
        topic, partition, first, last, error, deaths = json.loads(data)
        return _Mark(str(topic), int(partition), int(first), int(last), error, int(deaths))
    except (ValueError, TypeError):
        return None  # a torn write: the process died while marking; nothing to isolate
