"""The training data tool's pure parts: stable splits and the closing-sentence snippets.

``tools/sentiment_data.py`` needs only the standard library, so it is tested here
without torch; the held-out sample CI scores is built from these splits.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))
import sentiment_data as sd


def _review(text: str, label: str = "positive") -> sd.Example:
    return sd.Example("imdb", text, label, sd.text_key(text))


def test_splits_follow_the_normalised_text_not_its_surface() -> None:
    a = sd.text_key("RT @someone: Loved it!!! http://t.co/abc")
    b = sd.text_key("loved it")
    assert a == b
    assert sd.split_of(a) == sd.split_of(b)


def test_split_fractions() -> None:
    counts = Counter(sd.split_of(sd.text_key(f"review number {i}")) for i in range(20_000))
    assert abs(counts["test"] / 20_000 - sd.TEST_FRACTION) < 0.01
    assert abs(counts["val"] / 20_000 - sd.VAL_FRACTION) < 0.01


def test_snippet_is_the_verdict_at_the_end() -> None:
    text = (
        "The film follows a family over three summers. The first act drags. "
        "But the ending is wonderful. I loved every minute of it!"
    )
    (snippet,) = sd.closing_snippets([_review(text)], max_words=12)
    assert snippet.text == "But the ending is wonderful. I loved every minute of it!"
    assert snippet.label == "positive"
    assert snippet.key == sd.text_key(snippet.text)


def test_single_sentences_and_tiny_endings_are_skipped() -> None:
    assert sd.closing_snippets([_review("Just one long sentence about the film")]) == []
    assert sd.closing_snippets([_review("Bad. Meh.")], min_words=4) == []
    # a short review of two sentences is a snippet as a whole
    (whole,) = sd.closing_snippets([_review("A long first sentence here. Meh.")], min_words=4)
    assert whole.text == "A long first sentence here. Meh."


def test_a_long_last_sentence_alone_is_dropped_not_cut() -> None:
    text = "Fine. " + " ".join(["word"] * 60) + "."
    assert sd.closing_snippets([_review(text)], max_words=40) == []


@given(
    st.lists(st.sampled_from(["Good.", "Bad film!", "Why?", "It was long and slow."]), max_size=12)
)
def test_snippets_are_suffixes_within_the_word_limit(sentences: list[str]) -> None:
    text = " ".join(sentences)
    for snippet in sd.closing_snippets([_review(text, "negative")], max_words=10, min_words=2):
        assert text.endswith(snippet.text)
        assert 2 <= len(snippet.text.split()) <= 10
        assert snippet.label == "negative"
