"""Deterministic synthetic campaign traffic with exact ground truth (``stream-app generate``).

The same :class:`Scenario` always yields byte-identical records, and :class:`GroundTruth`
says what a correct processor must report for them. See ``docs/generator.md``.
"""

from .profiles import CampaignProfile, Scenario, draw_profiles
from .replay import load_records, replay_to_kafka
from .sinks import JsonlSink, KafkaSink, generate_to_file, generate_to_kafka
from .traffic import ClickTruth, Emitted, TrafficGenerator, TruthHook, estimate_records, live_rate
from .truth import CampaignTruth, GroundTruth, UnattributedTruth

__all__ = [
    "CampaignProfile",
    "CampaignTruth",
    "ClickTruth",
    "Emitted",
    "GroundTruth",
    "JsonlSink",
    "KafkaSink",
    "Scenario",
    "TrafficGenerator",
    "TruthHook",
    "UnattributedTruth",
    "draw_profiles",
    "estimate_records",
    "generate_to_file",
    "generate_to_kafka",
    "live_rate",
    "load_records",
    "replay_to_kafka",
]
