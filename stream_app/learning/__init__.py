"""Online learning core: conversion model, ROI forecaster, progressive metrics.

Pure: no Kafka, Faust or I/O import, so the Kafka stages call these as plain functions
and the tests need no broker. Models answer ``predict`` / ``learn`` with delayed labels
and serialise to a JSON-storable string (``to_state`` / ``from_state``) for a compacted
changelog record. Choices and measurements: docs/online-models.md.
"""

from ..domain.roi import roi_nowcast
from .conversion import ClickPrediction, ConversionConfig, ConversionModel, ValueModel
from .features import Features, click_features
from .forecast import ForecastConfig, ForecastInputs, RoiForecaster
from .progressive import ModelQuality

__all__ = [
    "ClickPrediction",
    "ConversionConfig",
    "ConversionModel",
    "Features",
    "ForecastConfig",
    "ForecastInputs",
    "ModelQuality",
    "RoiForecaster",
    "ValueModel",
    "click_features",
    "roi_nowcast",
]
