"""Click features: one-hot ``name=value`` keys, the form a River linear model wants.

The generator's true p(conversion) is a product of campaign, creative, device, geo and
placement factors, so its log-odds are (almost) additive in these one-hot indicators: a
logistic regression on them is well specified. Identifiers that never repeat (``user_id``,
``event_id``, ``click_id``) would only add weights that are never used again. The hour
of day is left out because the generated traffic has no daily cycle; add it (as one-hot
hours) once real traffic shows one. The dict is stored with every pending click, so it
stays at six keys (about 150 bytes of JSON).
"""

from __future__ import annotations

from sys import intern

from ..domain.events import Click

Features = dict[str, float]
"""Feature name to value; JSON-storable (kept with each pending click in a changelog)."""

CAMPAIGN_PREFIX = "campaign_id="


def click_features(click: Click) -> Features:
    """One-hot features of a click; deterministic, never from ids that do not recur.

    >>> from stream_app.domain.events import Click
    >>> c = Click(schema_version=1, event_id="e1", click_id="c1", campaign_id="cmp-001",
    ...           channel="search", user_id="u1", ts=0.0, device="mobile", geo="US",
    ...           placement="top", creative="cmp-001-cr2")
    >>> click_features(c)  # doctest: +NORMALIZE_WHITESPACE
    {'campaign_id=cmp-001': 1.0, 'channel=search': 1.0, 'device=mobile': 1.0,
     'geo=US': 1.0, 'placement=search/top': 1.0, 'creative=cmp-001-cr2': 1.0}
    """
    c = click
    key = (c.campaign_id, c.channel, c.device, c.geo, c.placement, c.creative)
    features = _BUILT.get(key)
    if features is None:
        if len(_BUILT) >= _MAX_BUILT:
            _BUILT.clear()
        features = _BUILT[key] = _build(key)
    return features


_BUILT: dict[tuple[str, str, str, str, str, str], Features] = {}
"""Feature dicts by the fields they come from, shared by every click with those fields:
the combinations repeat (campaigns × creatives × devices × geos × placements), so a click
costs a lookup instead of six string joins, and the open clicks hold one dict per
combination, not one each. Shared, hence never mutated (nothing in the product does)."""
_MAX_BUILT = 65_536


def _build(key: tuple[str, str, str, str, str, str]) -> Features:
    campaign_id, channel, device, geo, placement, creative = key
    # interned: the model looks the keys up again; shared strings compare by identity
    return {
        intern(CAMPAIGN_PREFIX + campaign_id): 1.0,
        intern("channel=" + channel): 1.0,
        intern("device=" + device): 1.0,
        intern("geo=" + geo): 1.0,
        # a placement's effect depends on the channel ("top" of search vs of a feed)
        intern(f"placement={channel}/{placement}"): 1.0,
        intern("creative=" + creative): 1.0,
    }


def campaign_of(features: Features) -> str | None:
    """The campaign id a feature dict was built for (the value model is per campaign).

    >>> campaign_of({"campaign_id=cmp-007": 1.0, "geo=US": 1.0}), campaign_of({})
    ('cmp-007', None)
    """
    for key in features:
        if key.startswith(CAMPAIGN_PREFIX):
            return key[len(CAMPAIGN_PREFIX) :]
    return None
