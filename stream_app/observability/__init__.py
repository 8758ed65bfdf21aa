"""Prometheus metrics, built in one place from an injected registry, and /healthz."""

from .http import CommitWatch, serve_http
from .metrics import Metrics

__all__ = ["CommitWatch", "Metrics", "serve_http"]
