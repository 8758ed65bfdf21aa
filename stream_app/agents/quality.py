"""``model-quality`` records: one model's progressive validation in one partition."""

from __future__ import annotations

from typing import Literal

from ..domain.records import ModelQualityRecord
from ..learning import ModelQuality


def quality_record(
    model: Literal["conversion", "roi_forecast"],
    version: str,
    partition: int,
    q: ModelQuality,
    now: float,
) -> ModelQualityRecord:
    return ModelQualityRecord(
        model=model,
        model_version=version,
        partition=partition,
        samples_seen=q.samples_seen,
        auc=q.auc,
        log_loss=q.log_loss,
        rolling_auc=q.rolling_auc,
        rolling_log_loss=q.rolling_log_loss,
        mae=q.mae,
        rolling_mae=q.rolling_mae,
        drifts=q.drifts,
        emitted_at=now,
    )


def record_key(record: ModelQualityRecord) -> bytes:
    """Compaction keeps each model's latest figures per partition."""
    return f"{record.model}|{record.partition}".encode()
