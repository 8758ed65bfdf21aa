"""``docs/configuration.md`` from the settings classes, so the docs cannot drift from them.

``python -m stream_app.settings_doc > docs/configuration.md``; a unit test compares.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings

from .settings import Settings, Topics

HEADER = """# Configuration

Every setting is read from an environment variable (or a `.env` file). Generated from
`stream_app/settings.py` by `python -m stream_app.settings_doc`; the defaults shown are the
built-in ones.
"""


def _rows(cls: type[BaseSettings], prefix: str, skip: set[str]) -> list[str]:
    rows = []
    for name, field in cls.model_fields.items():
        if name in skip:
            continue
        default = field.get_default(call_default_factory=True)
        if isinstance(default, Path):
            default = str(default).replace(str(Path.home()), "~")
        if name == "sentiment_model_dir":
            default = "<repo>/onnx_models/sentiment"
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{prefix}{name.upper()}` | `{default}` | {meaning} |")
    return rows


def render() -> str:
    lines = [HEADER, "| variable | default | meaning |", "| --- | --- | --- |"]
    lines += _rows(Settings, "STREAM_APP_", {"topics"})
    lines += ["", "## Topics", "", "| variable | default | meaning |", "| --- | --- | --- |"]
    lines += _rows(Topics, "STREAM_APP_TOPIC_", set())
    lines += [
        "",
        "State changelogs are `<app_id>-attribution-changelog` and "
        "`<app_id>-aggregation-changelog`; the sentiment stage keeps no state.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
