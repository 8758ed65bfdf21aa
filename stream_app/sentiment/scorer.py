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
    """Scores texts in length-bucketed batches with the shipped int8 ONNX model.

    Texts are sorted by token count and cut into batches of ``batch_size``, each padded only
    to its own longest text, so one long review does not make 31 tweets pay for its padding.
    Dynamic int8 quantisation takes its activation ranges from the whole batch, so with
    ``batch_size > 1`` a score moves slightly (up to ~0.4 seen, median 0.003) with the
    texts it is batched with; the default of 1 makes every score reproducible on replay.
    Batching pays on tweet-sized texts only (22-36% measured; slower on a mix with long
    reviews, benchmarks/sentiment.py). Texts should have
    passed :func:`stream_app.sentiment.text.screen`.

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
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        out: list[SentimentScore | None] = [None] * len(texts)
        limit = self.card.max_length - 2
        for lo in range(0, len(order), self.batch_size):
            chunk = order[lo : lo + self.batch_size]
            logits = self.logits([encoded[i] for i in chunk])
            for i, p in zip(chunk, self._p_positive(logits), strict=True):
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


def _token_id(tokenizer: Tokenizer, token: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise ValueError(f"tokenizer has no {token}")
    return int(token_id)
