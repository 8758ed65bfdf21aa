"""Every command's ``--help`` at 80 columns: every option explained, nothing cut, no markup."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
import typer.testing

from stream_app.cli import app

ROOT = typer.main.get_command(app)


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(Typer builds on its own copy of click: duck-typed rather than click.Group.)"""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(ROOT))
RST = re.compile(r"``|:(?:class|func|meth|mod|data|attr):|\.\. \w+::")


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(path) for path in COMMANDS}
    expected = {"worker", "demo", "create-topics", "schemas", "generate", "replay"}
    assert expected | {"kafka start", "kafka stop", "kafka status"} <= names


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda p: " ".join(p) or "stream-app")
def test_help_at_80_columns_is_whole_and_plain(path: tuple[str, ...]) -> None:
    result = typer.testing.CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert not RST.search(text), text  # docstrings written for Sphinx are not help
    assert "…" not in text, text  # rich cuts option names with an ellipsis
    body = text.splitlines()[1:]  # the usage line ends in "[ARGS]..."
    assert not any(line.endswith("...") for line in body), text  # cut command summaries
    for param in COMMANDS[path].params:
        if param.param_type_name == "option":
            for name in param.opts:
                assert name in text, (name, text)  # every option name in full


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda p: " ".join(p) or "stream-app")
def test_every_option_and_argument_has_a_description(path: tuple[str, ...]) -> None:
    command = COMMANDS[path]
    assert (command.help or "").strip(), f"{path}: no description"
    for param in command.params:
        description = getattr(param, "help", None) or ""
        assert description.strip(), f"{' '.join(path)} {param.name}: no help"
