"""``stream-app kafka start|stop|status``: the local broker from the command line.

Also runnable on its own: ``python -m stream_app.kafka_local.cli start``. Options
override the ``STREAM_APP_KAFKA_*`` environment, which overrides the defaults.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from stream_app.kafka_local.broker import start, status, stop
from stream_app.kafka_local.config import (
    ENV_CACHE_DIR,
    ENV_CONTROLLER_PORT,
    ENV_DATA_DIR,
    ENV_PORT,
    LocalKafkaConfig,
    LocalKafkaError,
)
from stream_app.kafka_local.resolve import ensure_jars, jars_ready

EXIT_NOT_RUNNING = 3
"""``status`` exit code when no broker runs (the LSB convention), so scripts can branch."""

kafka_app = typer.Typer(
    name="kafka",
    help="Run a real single-node Apache Kafka (KRaft) on 127.0.0.1, without Docker.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: no option names cut at 80 columns
)
console = Console()
err_console = Console(stderr=True)

PortOpt = Annotated[
    int | None, typer.Option("--port", envvar=ENV_PORT, help="Client (PLAINTEXT) port.")
]
ControllerPortOpt = Annotated[
    int | None,
    typer.Option("--controller-port", envvar=ENV_CONTROLLER_PORT, help="KRaft controller port."),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar=ENV_DATA_DIR, help="Broker state, config and logs."),
]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option("--cache-dir", envvar=ENV_CACHE_DIR, help="Jar cache root (outside the repo)."),
]


def _config(
    port: int | None,
    controller_port: int | None,
    data_dir: Path | None,
    cache_dir: Path | None,
) -> LocalKafkaConfig:
    env = LocalKafkaConfig.from_env()
    return replace(
        env,
        port=env.port if port is None else port,
        controller_port=env.controller_port if controller_port is None else controller_port,
        data_dir=env.data_dir if data_dir is None else data_dir,
        cache_dir=env.cache_dir if cache_dir is None else cache_dir,
    )


def _fail(exc: LocalKafkaError) -> typer.Exit:
    # markup=False: broker log tails are full of [brackets] that rich would eat.
    err_console.print(f"error: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(1)


@kafka_app.command("start")
def start_cmd(
    port: PortOpt = None,
    controller_port: ControllerPortOpt = None,
    data_dir: DataDirOpt = None,
    cache_dir: CacheDirOpt = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds to wait for readiness (default 60).")
    ] = None,
) -> None:
    """Start the broker, or reuse the one already running.

    The first start resolves the broker's jars from Maven Central (15-60 s).
    """
    try:
        cfg = _config(port, controller_port, data_dir, cache_dir)
        if timeout is not None:
            cfg = replace(cfg, ready_timeout=timeout)
        if not jars_ready(cfg):
            began = time.monotonic()
            with console.status(f"Resolving Kafka {cfg.kafka_version} jars with Maven…"):
                lib = ensure_jars(cfg)
            took = time.monotonic() - began
            console.print(f"Resolved jars into {escape(str(lib))} in {took:.1f}s")
        with console.status(f"Starting Kafka on {cfg.bootstrap}…"):
            info = start(cfg)
    except LocalKafkaError as exc:
        raise _fail(exc) from exc
    verb = "already running" if info.reused else f"ready in {info.startup_seconds:.1f}s"
    console.print(f"[green]Kafka {verb}[/] at [bold]{info.bootstrap}[/] (pid {info.pid})")
    console.print(f"[dim]broker log: {escape(str(info.broker_log))}[/]", highlight=False)


@kafka_app.command("stop")
def stop_cmd(
    port: PortOpt = None,
    controller_port: ControllerPortOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Stop the broker cleanly (SIGTERM, then SIGKILL after a timeout)."""
    try:
        cfg = _config(port, controller_port, data_dir, None)
        with console.status("Stopping Kafka…"):
            stopped = stop(cfg)
    except LocalKafkaError as exc:
        raise _fail(exc) from exc
    console.print("Kafka stopped" if stopped else "Kafka was not running")


@kafka_app.command("status")
def status_cmd(
    port: PortOpt = None,
    controller_port: ControllerPortOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Whether the broker runs, with its pid and address.

    Exits with 3 when it does not run, so scripts can branch on it.
    """
    try:
        st = status(_config(port, controller_port, data_dir, None))
    except LocalKafkaError as exc:
        raise _fail(exc) from exc
    if not st.running:
        console.print(f"Kafka [red]not running[/] (would serve {st.bootstrap})")
        raise typer.Exit(EXIT_NOT_RUNNING)
    health = "[green]ready[/]" if st.ready else "[yellow]not answering yet[/]"
    console.print(f"Kafka running, {health}: pid {st.pid}, bootstrap [bold]{st.bootstrap}[/]")
    console.print(f"[dim]broker log: {escape(str(st.broker_log))}[/]", highlight=False)


if __name__ == "__main__":
    kafka_app()
