"""What every agent shares: decoding at the edge and dead-lettering whatever fails."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence

from ..domain.events import Event, EventKind
from ..domain.money import CurrencyTable
from ..domain.outcomes import Outcome
from ..domain.validation import EventDecoder, Reason, Rejection, Validated
from ..engine.deadletter import dead_letter, dead_letter_key
from ..engine.stage import Outbox
from ..engine.stage import Record as Record  # re-exported: the agents import it from here

log = logging.getLogger(__name__)


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

    def process(
        self,
        records: Sequence[Record],
        out: Outbox,
        handle: Callable[[Event, float], Outcome],
    ) -> None:
        """Decode each record and hand the valid events to ``handle`` with their money in
        the reporting currency (0.0 for events without), counting outcomes.

        A batch is decoded in one call when every record is valid
        (:meth:`EventDecoder.decode_all`), else record by record, with the same results.
        Invalid records, and records whose handling raises, go to the dead-letter topic:
        the worker survives any single input.
        """
        if not records:
            return
        topic = records[0].topic
        decode = self._decoders[topic]
        values = [record.value or b"" for record in records]
        events = decode.decode_all(values)
        checked: list[Validated | Rejection] | None = None
        if events is None:
            checked = [decode(value) for value in values]
        elif decode.has_money:
            checked = [decode.check_money(event) for event in events]
        decoded = events or []
        outcomes: list[Outcome] = []
        for i, record in enumerate(records):
            if checked is None:
                event, money = decoded[i], 0.0
            else:
                result = checked[i]
                if isinstance(result, Rejection):
                    self.reject(record, result.reason, result.detail, out)
                    continue
                event, money = result
            try:
                outcomes.append(handle(event, money))
            except Exception as exc:
                log.exception(
                    "processing failed for %s[%d]@%d", topic, record.partition, record.offset
                )
                self.reject(record, Reason.PROCESSING_ERROR, type(exc).__name__, out)
        for outcome, n in Counter(outcomes).items():
            out.outcomes[(topic, outcome)] += n

    def decode(self, record: Record, out: Outbox) -> Validated | None:
        """One record's event, or ``None`` once it has been dead-lettered."""
        result = self._decoders[record.topic](record.value or b"")
        if isinstance(result, Rejection):
            self.reject(record, result.reason, result.detail, out)
            return None
        return result

    def reject(self, record: Record, reason: str, detail: str, out: Outbox) -> None:
        out.send(
            self._dead_letter_topic,
            dead_letter_key(record),
            dead_letter(record, reason, detail, self._worker_id),
        )
        out.dead_letters[reason] += 1
        out.outcomes[(record.topic, Outcome.DEAD_LETTER)] += 1
