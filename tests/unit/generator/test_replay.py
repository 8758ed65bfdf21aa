"""``stream-app replay``'s reading of a file: every line checked, bad ones named by number."""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import orjson
import pytest
import typer.testing

from stream_app.cli import app
from stream_app.generator import load_records
from stream_app.generator.replay import Rejected, ReplayLineError, read_records, scan
from stream_app.preflight import EXIT_NO_BROKER

CLICK = {"schema_version": 1, "event_id": "e1", "click_id": "k1", "campaign_id": "cmp-001",
         "channel": "search", "user_id": "u1", "ts": 1700000000.5}  # fmt: skip
SPEND = {"schema_version": 1, "event_id": "e2", "campaign_id": "cmp-002", "channel": "search",
         "amount": 1.5, "currency": "USD", "impressions": 10, "ts": 1700000001}  # fmt: skip


def _write(tmp_path: Path, *lines: str, name: str = "t.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def _line(**fields: object) -> str:
    return orjson.dumps(fields).decode()


def test_a_hand_written_line_may_give_the_event_as_value(tmp_path: Path) -> None:
    path = _write(tmp_path, _line(topic="click", value=CLICK), _line(topic="spend", value=SPEND))
    click, spend = load_records(path)
    assert orjson.loads(click.value) == CLICK
    assert (click.topic_kind, click.key, click.timestamp_ms) == ("click", b"k1", 1700000000500)
    assert (spend.topic_kind, spend.key) == ("spend", b"cmp-002")  # key from the event


def test_value_b64_wins_and_keeps_the_exact_bytes(tmp_path: Path) -> None:
    raw = b'{"click_id": "k9",  "ts": 1}'  # spacing kept as sent
    path = _write(
        tmp_path,
        _line(topic="clicks", key="k9", value_b64=base64.b64encode(raw).decode(), value={"x": 1}),
    )
    (record,) = load_records(path)
    assert record.value == raw


def test_every_bad_line_is_named_with_its_number_and_reason(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _line(topic="click", value=CLICK),
        "{not json",
        "",  # blank lines are skipped, but still counted
        _line(topic="click", key="k1"),
        _line(topic="impressions", value=CLICK),
        "[1, 2]",
        _line(topic="click", value_b64="%%%"),
        _line(topic="click", key=7, value=CLICK),
        _line(value=CLICK),
    )
    found = scan(path)
    assert found.valid == 1
    reasons = {r.line: r.reason for r in found.rejected}
    assert sorted(reasons) == [2, 4, 5, 6, 7, 8, 9]
    assert reasons[2].startswith("not JSON (")
    assert reasons[4] == "no 'value_b64' and no 'value' (the event as a JSON object)"
    assert reasons[5].startswith("unknown topic 'impressions' (one of click, clicks,")
    assert reasons[6] == "not a JSON object but list"
    assert reasons[7] == "'value_b64' is not base64"
    assert reasons[8] == "'key' is not a string but int"
    assert reasons[9] == "no 'topic'"
    assert found.summary(limit=2).endswith("; and 5 more")
    with pytest.raises(ReplayLineError, match=r"t\.jsonl:2: not JSON"):
        list(load_records(path))


def test_csv_with_a_wrong_header_is_rejected_at_line_1(tmp_path: Path) -> None:
    path = _write(tmp_path, "kind,payload", "click,{}", name="t.csv")
    assert list(read_records(path)) == [
        Rejected(1, "header is 'kind,payload', needs topic,key,value")
    ]


def test_csv_rows_are_named_by_their_line(tmp_path: Path) -> None:
    click = orjson.dumps(CLICK).decode().replace('"', '""')
    path = _write(tmp_path, "topic,key,value", f'click,,"{click}"', "views,,{}", name="t.csv")
    items = list(read_records(path))
    assert items[1] == Rejected(3, "unknown topic 'views' (one of click, clicks, conversion, "
                                   "conversions, review, reviews, spend)")  # fmt: skip
    assert not isinstance(items[0], Rejected)
    assert items[0].key == b"k1"


def _dead() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_a_file_with_bad_lines_is_refused_before_kafka_is_asked(tmp_path: Path) -> None:
    path = _write(tmp_path, _line(topic="click", value=CLICK), "oops", _line(topic="click"))
    runner = typer.testing.CliRunner()
    result = runner.invoke(app, ["replay", str(path), "--bootstrap", _dead()])
    assert result.exit_code == 1  # not EXIT_NO_BROKER: the file is judged first
    lines = result.output.splitlines()
    assert lines[0] == f"error: {path}: 2 of 3 lines cannot be replayed; nothing sent:"
    assert lines[1].startswith("  line 2: not JSON (")
    assert lines[2] == "  line 3: no 'value_b64' and no 'value' (the event as a JSON object)"
    assert lines[3] == "Fix them, or pass --skip-invalid to send the other 1."
    assert "Traceback" not in result.output


def test_skip_invalid_goes_on_to_kafka(tmp_path: Path) -> None:
    path = _write(tmp_path, _line(topic="click", value=CLICK), "oops")
    result = typer.testing.CliRunner().invoke(
        app, ["replay", str(path), "--skip-invalid", "--bootstrap", _dead()]
    )
    assert result.exit_code == EXIT_NO_BROKER, result.output


def test_a_file_with_no_records_says_so(tmp_path: Path) -> None:
    path = _write(tmp_path, "", "  ")
    result = typer.testing.CliRunner().invoke(app, ["replay", str(path)])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {path}: no records to replay"


def test_the_examples_in_docs_replay(tmp_path: Path) -> None:
    """docs/generator.md's JSONL and CSV examples are what replay accepts."""
    doc = (Path(__file__).resolve().parents[3] / "docs/generator.md").read_text()
    for fence in ("jsonl", "csv"):
        block = doc.split(f"```{fence}\n", 1)[1].split("```", 1)[0]
        found = scan(_write(tmp_path, block.strip(), name=f"doc.{fence}"))
        assert (found.valid, found.rejected) == (
            len(block.strip().splitlines()) - (fence == "csv"),
            [],
        )
