"""Screening: what is scored, what is counted unscored, what is corrupt; long texts are cut."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.generator.traffic import review_text
from stream_app.sentiment.text import HEAD_CHARS, TAIL_CHARS, CorruptText, screen

HELDOUT = Path(__file__).resolve().parents[3] / "onnx_models" / "heldout_sample.jsonl"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty_text"),
        (" \n\t <br /> ", "empty_text"),
        ("10/10 !!! :) 👍👍", "no_words"),
        ("Le produit est arrivé cassé et le service client ne répond pas", "non_english"),
        ("Das Produkt ist kaputt angekommen und niemand antwortet mir", "non_english"),
        ("Товар пришел сломанным, никто не отвечает", "non_english"),
        ("商品が壊れて届きました", "non_english"),
        ("Terrible. Broke after a day.", None),
        ("Love it!!! #blessed http://t.co/x @brand", None),
    ],
)
def test_reasons(text: str, reason: str | None) -> None:
    assert screen(text).unscored == reason


def test_binary_garbage_is_corrupt() -> None:
    rng = random.Random(3)
    garbage = bytes(rng.randrange(256) for _ in range(400)).decode("latin-1")
    with pytest.raises(CorruptText):
        screen(garbage)
    with pytest.raises(CorruptText):
        screen("ok \x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f")


def test_real_english_texts_are_scored() -> None:
    """The generator's reviews always, and the held-out texts (movie reviews and brand
    tweets, URLs and mojibake included) with at most 1% wrongly called non-English."""
    rng = random.Random(5)
    for tone in ("positive", "negative", "neutral"):
        for _ in range(200):
            assert screen(review_text(rng, tone, "coffee grinder")).unscored is None
    texts = [json.loads(line)["text"] for line in HELDOUT.read_text().splitlines()]
    unscored = [t for t in texts if screen(t).unscored is not None]
    assert len(unscored) <= 0.01 * len(texts)


def test_huge_text_is_cut_not_rejected() -> None:
    text = "The first part is fine. " + "filler words here " * 20_000 + "In the end: awful."
    screened = screen(text)
    assert screened.cut
    assert screened.unscored is None
    assert len(screened.text) <= HEAD_CHARS + TAIL_CHARS + 1
    assert screened.text.startswith("The first part")
    assert screened.text.endswith("awful.")


@given(st.text(max_size=300))
def test_any_text_is_screened_or_corrupt(text: str) -> None:
    """Never another exception; what is handed to the model has words."""
    try:
        screened = screen(text)
    except CorruptText:
        return
    if screened.unscored is None:
        assert any(ch.isalpha() for ch in screened.text)
    assert len(screened.text) <= len(text)
