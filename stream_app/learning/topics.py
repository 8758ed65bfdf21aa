"""Online topics of review texts: River's LDA (infinite vocabulary), with top terms.

The sentiment stage learns every readable review once (``learn_transform_one``: the
document's topic mass comes from the same Gibbs sweep that learns it) and reports, per
campaign, how much of its negative reviews falls in each topic (``review-topics``). The
alert explanation then names the topics whose share grew (docs/alerts.md).

Top terms are not read from LDA's stick-breaking weights (they favour the words seen
first); each topic keeps its own decayed term counts, every word of a review credited
with the review's topic share, and a topic's terms are those with the highest lift
(share in the topic / share overall). Review text never leaves this module: only terms.
"""

from __future__ import annotations

import base64
import pickle
import re
from typing import Any

from river.preprocessing import LDA

TOPIC_MODEL_VERSION = "review-topics-lda-v1"
_WORD = re.compile(r"[a-z]{3,}")
_STOP = """
about after again all also and any are been before but can could did does for from
get got had has have her him his how into its just like more most much not now off
one only other our out over own same she should some such than that the their them
then there these they this those through too under until very was were what when
where which while who why will with would you your it's i've bought buy product
"""
STOP_WORDS = frozenset(_STOP.split())


def tokens(text: str) -> dict[str, int]:
    """Bag of words, lower case, stop words and words under 3 letters dropped.

    >>> tokens("The battery overheats; the BATTERY died.")
    {'battery': 2, 'overheats': 1, 'died': 1}
    """
    out: dict[str, int] = {}
    for word in _WORD.findall(text.lower()):
        if word not in STOP_WORDS:
            out[word] = out.get(word, 0) + 1
    return out


class ReviewTopicModel:
    """Online LDA over review texts with per-topic term counts for naming topics."""

    version = TOPIC_MODEL_VERSION

    def __init__(
        self,
        n_topics: int = 8,
        seed: int = 42,
        half_life_documents: float = 5000.0,
        exclude: frozenset[str] = frozenset(),
    ) -> None:
        self.n_topics = n_topics
        self.lda = LDA(
            n_components=n_topics,
            number_of_documents=10_000,
            seed=seed,
            maximum_size_vocabulary=2000,
            burn_in_sweeps=3,
            number_of_samples=6,
        )
        self.decay = 0.5 ** (1.0 / half_life_documents)
        self.exclude = exclude
        """Words never shown as terms (e.g. product names, which say nothing of a topic)."""
        self.term_mass: list[dict[str, float]] = [{} for _ in range(n_topics)]
        self.total_mass: dict[str, float] = {}
        self.documents = 0

    def learn_transform(self, text: str) -> list[float]:
        """Learn one review; its topic shares (sum 1; all 0 for a text without words)."""
        return self.learn_bag(tokens(text))

    def learn_bag(self, bag: dict[str, int]) -> list[float]:
        """:meth:`learn_transform` of a review's :func:`tokens`: the same bag in the same
        order (and the same model) gives the same state, which is how a restart replays
        the reviews learnt since the last snapshot (``stream_app.agents.reviews``)."""
        if not bag:
            return [0.0] * self.n_topics
        raw = self.lda.learn_transform_one(bag)
        total = float(sum(raw.values())) or 1.0
        shares = [float(raw.get(k, 0.0)) / total for k in range(self.n_topics)]
        self.documents += 1
        if self.documents % 100 == 0:  # decay in steps: cheap, and the same on replay
            step = self.decay**100
            for counts in (*self.term_mass, self.total_mass):
                for word in list(counts):
                    counts[word] *= step
                    if counts[word] < 1e-3:
                        del counts[word]
        for word in bag:
            self.total_mass[word] = self.total_mass.get(word, 0.0) + 1.0
            for k, share in enumerate(shares):
                if share > 0:
                    counts = self.term_mass[k]
                    counts[word] = counts.get(word, 0.0) + share
        return shares

    def top_terms(
        self, n: int = 6, min_mass: float = 2.0, enough_mass: float = 5.0
    ) -> list[list[str]]:
        """Each topic's ``n`` most characteristic words: highest lift, weighted by their
        mass up to ``enough_mass`` reviews' worth (then lift alone ranks). With the weight
        capped at 20, a complaint new to a topic stayed behind its old words for ~20
        reviews, longer than an alert takes (docs/alerts.md)."""
        grand = sum(self.total_mass.values()) or 1.0
        out = []
        for counts in self.term_mass:
            size = sum(counts.values()) or 1.0

            def lift(word: str, counts: dict[str, float] = counts, size: float = size) -> float:
                return (counts[word] / size) / (self.total_mass[word] / grand)

            words = [w for w, m in counts.items() if m >= min_mass and w not in self.exclude]
            words.sort(key=lambda w: (-lift(w) * min(counts[w], enough_mass), w))
            out.append(words[:n])
        return out

    def to_state(self) -> str:
        """The whole model as text, for a compacted changelog."""
        return base64.b64encode(pickle.dumps(self, protocol=5)).decode()

    @classmethod
    def from_state(cls, state: str) -> ReviewTopicModel:
        model = pickle.loads(base64.b64decode(state))  # our own changelog, never input
        if not isinstance(model, cls):
            raise ValueError(f"not a {cls.__name__}: {type(model).__name__}")
        return model

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
