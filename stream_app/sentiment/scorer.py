"""The ONNX sentiment model at run time: onnxruntime and the tokenizer, no torch.

Score convention, the same in records, metrics and docs: ``score`` in [-1, 1] is
``2 * P(positive) - 1`` with ``P`` from temperature-scaled logits (``temperature`` in
``sentiment.json``, fitted on the validation splits), and ``label`` is ``positive`` when
``score >= 0``. A review counts as negative in ``negative_share`` when its score is below 0.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from ..settings import SENTIMENT_MODEL_DIR

SentimentLabel = Literal["negative", "positive"]

BATCH_MAX_TOKENS = 32
"""The longest model input ([CLS], word pieces, [SEP]) that shares an onnxruntime run with
other texts when ``batch_size > 1``. Longer texts always run alone, so their scores never
depend on the batch. Batching pays only for short inputs: 1.1-1.3x up to ~24 tokens, even
at 24-31, slower beyond (0.6-0.8x at batch 32; docs/sentiment.md)."""


@dataclass(frozen=True, slots=True)
class SentimentScore:
    label: SentimentLabel
    score: float
    """2 * P(positive) - 1, in [-1, 1]."""
    truncated: bool
    """The model read only the head and tail of the text."""


@dataclass(frozen=True, slots=True)
class ModelCard:
    """What the scorer needs from ``sentiment.json``."""

    version: str
    max_length: int
    head_tokens: int
    temperature: float

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        raw = json.loads(path.read_text())
        return cls(
            version=str(raw["version"]),
            max_length=int(raw["max_length"]),
            head_tokens=int(raw["truncation"]["head_tokens"]),
            temperature=float(raw.get("temperature", 1.0)),
        )


class SentimentScorer:
    """Scores texts with the shipped int8 ONNX model, one text per run by default.

    What a score depends on:

    * ``batch_size=1`` (the default, what the worker runs): the text alone. ``predict_many``
      gives every text exactly the score ``predict_one`` gives it, in any company or order,
      so a replay or a rebalance reproduces every score.
    * ``batch_size > 1``: texts of up to :data:`BATCH_MAX_TOKENS` model tokens are sorted by
      length and run ``batch_size`` at a time, padded to the longest of the run. The
      graph's dynamic int8 quantisation takes its activation ranges from the whole input
      tensor, so such a text's score depends on the texts it shares the run with: up to
      0.9 from its alone score, median 0.005, about 1 label in 100 flipped (measured on
      held-out texts: docs/sentiment.md, ``python benchmarks/sentiment.py
      --batch-scores``). Padding is not the cause; runs without any move as much. Longer
      texts always run alone and keep exactly their alone score.

    Results come back in input order either way. Texts should have passed
    :func:`stream_app.sentiment.text.screen`.

    >>> scorer = SentimentScorer()
    >>> [s.label for s in scorer.predict_many(["I love it, works great", "Broke in a day. Awful."])]
    ['positive', 'negative']
    """

    def __init__(
        self, model_dir: Path = SENTIMENT_MODEL_DIR, *, threads: int = 1, batch_size: int = 1
    ) -> None:
        self.card = ModelCard.load(model_dir / "sentiment.json")
        self.version = self.card.version
        self.batch_size = batch_size
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._cls = _token_id(self._tokenizer, "[CLS]")
        self._sep = _token_id(self._tokenizer, "[SEP]")
        self._pad = _token_id(self._tokenizer, "[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(
            str(model_dir / "model.int8.onnx"), options, providers=["CPUExecutionProvider"]
        )

    def predict_one(self, text: str) -> SentimentScore:
        return self.predict_many([text])[0]

    def predict_many(self, texts: Sequence[str]) -> list[SentimentScore]:
        """One score per text, in input order."""
        if not texts:
            return []
        encoded = self.encode(texts)
        out: list[SentimentScore | None] = [None] * len(texts)
        limit = self.card.max_length - 2
        widths = [min(len(ids), limit) + 2 for ids in encoded]  # with [CLS] and [SEP]
        for run in model_runs(widths, self.batch_size):
            logits = self.logits([encoded[i] for i in run])
            for i, p in zip(run, self._p_positive(logits), strict=True):
                score = 2.0 * float(p) - 1.0
                out[i] = SentimentScore(
                    "positive" if score >= 0 else "negative", score, len(encoded[i]) > limit
                )
        return [s for s in out if s is not None]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Word-piece ids without special tokens, not yet truncated."""
        return [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def logits(self, batch: Sequence[list[int]]) -> np.ndarray:
        """Raw model output for already-encoded texts: head+tail cut, [CLS]/[SEP], padding."""
        seqs = [[self._cls, *self._head_tail(ids), self._sep] for ids in batch]
        width = max(len(s) for s in seqs)
        input_ids = np.full((len(seqs), width), self._pad, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for row, seq in enumerate(seqs):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        (logits,) = self._session.run(["logits"], {"input_ids": input_ids, "attention_mask": mask})
        return np.asarray(logits, dtype=np.float64)

    def _head_tail(self, ids: list[int]) -> list[int]:
        keep = self.card.max_length - 2
        if len(ids) <= keep:
            return ids
        head = self.card.head_tokens
        return ids[:head] + ids[len(ids) - (keep - head) :]

    def _p_positive(self, logits: np.ndarray) -> np.ndarray:
        """Temperature-scaled softmax, column ``positive``; stable for any logit size."""
        z = (logits[:, 1] - logits[:, 0]) / self.card.temperature
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -500, 500))))


def model_runs(widths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Which texts (indices) share each onnxruntime run, given their model input widths.

    Inputs up to :data:`BATCH_MAX_TOKENS` wide are sorted by width and cut into runs of
    ``batch_size``; every wider input is a run of its own.

    >>> model_runs([5, 256, 7, 6, 33], batch_size=2)
    [[0, 3], [2], [4], [1]]
    """
    order = sorted(range(len(widths)), key=widths.__getitem__)
    if batch_size <= 1:
        return [[i] for i in order]
    short = [i for i in order if widths[i] <= BATCH_MAX_TOKENS]
    runs = [short[lo : lo + batch_size] for lo in range(0, len(short), batch_size)]
    return runs + [[i] for i in order if widths[i] > BATCH_MAX_TOKENS]


def _token_id(tokenizer: Tokenizer, token: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise ValueError(f"tokenizer has no {token}")
    return int(token_id)
