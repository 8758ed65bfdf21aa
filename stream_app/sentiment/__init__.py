"""Review sentiment: screening texts and scoring them with the shipped ONNX model.

No Kafka here: the review agent (``stream_app.agents.reviews``) batches records and calls
:meth:`SentimentScorer.predict_many` off the event loop.
"""

from .scorer import SentimentLabel, SentimentScore, SentimentScorer
from .text import CorruptText, Screened, UnscoredReason, screen

__all__ = [
    "CorruptText",
    "Screened",
    "SentimentLabel",
    "SentimentScore",
    "SentimentScorer",
    "UnscoredReason",
    "screen",
]
