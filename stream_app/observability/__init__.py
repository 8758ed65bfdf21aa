"""Prometheus metrics, built in one place from an injected registry, and /healthz."""

from .http import serve_http
from .metrics import Metrics

__all__ = ["Metrics", "serve_http"]
