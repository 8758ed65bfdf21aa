"""The pure domain core: events, money, ROI maths, windows, attribution, de-duplication.

Nothing in this package imports Kafka, Faust or any I/O library, so every rule here is
tested directly and fast (tests/unit/domain).
"""
