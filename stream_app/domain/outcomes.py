"""What happened to an input event; a closed set, used as a metric label."""

from enum import StrEnum


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    ATTRIBUTED = "attributed"
    PENDING = "pending"
    UNATTRIBUTED = "unattributed"
    TOO_LATE = "too_late"
    DEAD_LETTER = "dead_letter"
