"""docs/configuration.md is what the settings classes say."""

from pathlib import Path

from stream_app.settings_doc import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_configuration_doc_is_generated_from_the_settings() -> None:
    assert DOC.read_text() == render(), "run: python -m stream_app.settings_doc > " + str(DOC)
