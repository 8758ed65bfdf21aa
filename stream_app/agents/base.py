"""What every agent shares: decoding at the edge and dead-lettering whatever fails."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

from aiokafka.structs import ConsumerRecord

from ..domain.events import EventKind
from ..domain.money import CurrencyTable
from ..domain.outcomes import Outcome
from ..domain.validation import EventDecoder, Reason, Rejection, Validated
from ..engine.deadletter import dead_letter
from ..engine.stage import Outbox

log = logging.getLogger(__name__)

Record = ConsumerRecord[bytes, bytes]


class EdgeDecoder:
    """Turns each input record into a validated event, or a counted dead letter."""

    def __init__(
        self,
        kinds: dict[str, EventKind],
        currencies: CurrencyTable,
        dead_letter_topic: str,
        worker_id: str,
    ) -> None:
        self._decoders = {topic: EventDecoder(kind, currencies) for topic, kind in kinds.items()}
        self._dead_letter_topic = dead_letter_topic
        self._worker_id = worker_id

    def events(self, records: Sequence[Record], out: Outbox) -> Iterator[tuple[Record, Validated]]:
        """Yield the valid events of ``records``; the rest go to the dead-letter topic."""
        if not records:
            return
        decode = self._decoders[records[0].topic]
        for record in records:
            result = decode(record.value or b"")
            if isinstance(result, Rejection):
                self.reject(record, result.reason, result.detail, out)
            else:
                yield record, result

    def reject(self, record: Record, reason: str, detail: str, out: Outbox) -> None:
        out.send(
            self._dead_letter_topic,
            record.key,
            dead_letter(record, reason, detail, self._worker_id),
        )
        out.dead_letters[reason] += 1
        out.outcomes[(record.topic, Outcome.DEAD_LETTER)] += 1


def guarded(edge: EdgeDecoder, record: Record, out: Outbox, handle: Callable[[], Outcome]) -> None:
    """Run one event's domain step; a bug on odd input dead-letters it instead of crashing."""
    try:
        outcome = handle()
    except Exception as exc:  # the worker must survive any single input
        log.exception(
            "processing failed for %s[%d]@%d", record.topic, record.partition, record.offset
        )
        edge.reject(record, Reason.PROCESSING_ERROR, type(exc).__name__, out)
        return
    out.outcomes[(record.topic, outcome)] += 1
