"""``python -m stream_app`` is the ``stream-app`` command."""

from .cli import main

main()
