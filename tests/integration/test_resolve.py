"""The jar resolve with the real Maven: ``resolve.log`` holds Maven's output, as
docs/local-kafka.md says, not colour codes. From ``~/.m2`` when it holds the artifacts (a
few seconds; the session broker's start fills it), else from Maven Central."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from stream_app.kafka_local import LocalKafkaConfig
from stream_app.kafka_local.resolve import ensure_jars, jars_ready


def test_resolve_log_is_mavens_output_in_plain_text(tmp_path: Path) -> None:
    cfg = replace(LocalKafkaConfig.from_env(), cache_dir=tmp_path)
    lib = ensure_jars(cfg)
    assert jars_ready(cfg)
    assert (lib / f"kafka-clients-{cfg.kafka_version}.jar").is_file()
    log = (cfg.jar_root / "resolve.log").read_text()
    assert "\x1b" not in log, repr(log[:200])
    assert "maven-dependency-plugin:3.8.1:copy-dependencies" in log, log
    assert "BUILD SUCCESS" in log, log
