"""Real-time campaign ROI stream processor on Apache Kafka.

The domain core (``stream_app.domain``) is pure; agents (``stream_app.agents``) adapt it to
Kafka through the batch engine (``stream_app.engine``). ``stream-app`` is the command line.
"""

from .settings import Settings, Topics

__all__ = ["Settings", "Topics"]
__version__ = "0.1.0"
