"""Prometheus metrics, built in one place from an injected registry."""

from .metrics import Metrics

__all__ = ["Metrics"]
