"""Batch agents: one per co-partitioned group of input topics, thin adapters at the edge.

Each reads like a paragraph: decode and validate, hand to the domain, forward results.
"""

from .aggregation import AggregationAgent
from .attribution import AttributionAgent
from .reviews import ReviewAgent

__all__ = ["AggregationAgent", "AttributionAgent", "ReviewAgent"]
