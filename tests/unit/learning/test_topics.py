"""The online review topic model: a new complaint gets a topic whose share grows and whose
terms name it; the state round-trips; no text is kept, only term counts."""

from __future__ import annotations

import random

from stream_app.generator.shocks import COMPLAINT_THEME
from stream_app.generator.traffic import review_text
from stream_app.learning.topics import ReviewTopicModel, tokens


def test_a_new_complaint_theme_grows_among_negative_reviews() -> None:
    rng = random.Random(1)
    model = ReviewTopicModel(exclude=frozenset({"blender"}))
    before, after = [0.0] * 8, [0.0] * 8
    for i in range(2400):
        tone = rng.choice(["positive", "negative", "neutral"])
        late = i >= 1600
        shares = model.learn_transform(review_text(rng, tone, "blender", theme=late))
        if tone == "negative":
            for k, x in enumerate(shares):
                (after if late else before)[k] += x
    growth = [a / sum(after) - b / sum(before) for a, b in zip(after, before, strict=True)]
    grown = max(range(8), key=lambda k: growth[k])
    theme_words = {w for s in COMPLAINT_THEME for w in tokens(s)}
    assert growth[grown] > 0.05  # the alert explanation lists topics that grew by 0.05+
    assert theme_words & set(model.top_terms()[grown])
    restored = ReviewTopicModel.from_state(model.to_state())
    assert restored.top_terms() == model.top_terms()
    assert "blender" not in {w for terms in model.top_terms() for w in terms}
