"""What a review text needs before the model sees it: clean-up, screening, bounded size.

The model is an English WordPiece classifier. Texts it cannot read meaningfully are not
given a made-up score: an empty or word-less text, or a non-English one, is *unscored*
(the review still counts, its sentiment does not), and a text that is mostly control or
replacement characters is corrupt input for the dead-letter topic. Long texts are cut, never
rejected: the scorer reads a head and a tail of them (``onnx_models/README.md``).
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

UnscoredReason = Literal["empty_text", "no_words", "non_english"]

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[^\W\d_]+")
_NOT_PROSE = re.compile(r"https?://\S+|www\.\S+|[@#]\w+")  # links, mentions, hashtags
# Function words: any English sentence of a few words has one; most other languages'
# sentences have none (tests/unit/sentiment/test_text.py checks both on real texts).
_FUNCTION_WORDS = (
    "a an the and or but if so to of in on at for with from by as is are was were be "
    "been it its this that these those i you he she we they me my your our their not no "
    "do does did have has had will would can could should very just than then there here "
    "what when how all any more most some too only also again after before about "
)
_ENGLISH = frozenset(_FUNCTION_WORDS.split())
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn"})
MAX_BAD_SHARE = 0.1
"""Above this share of control, private-use or replacement characters, a text is corrupt."""

HEAD_CHARS = 2_000
TAIL_CHARS = 8_000
"""Character budget kept of a huge text before tokenising: far more than the 64 head and
190 tail word pieces the model reads, so cutting here never changes a score, and a
100 kB text costs no more to tokenise than a 10 kB one."""


@dataclass(frozen=True, slots=True)
class Screened:
    """A text ready for the model (``text``), or the reason it is not scored."""

    text: str
    unscored: UnscoredReason | None = None
    cut: bool = False


class CorruptText(ValueError):
    """Mostly control or replacement characters: binary garbage, not a review."""


def clean_text(text: str) -> str:
    """The clean-up the training data had: HTML breaks and entities, runs of whitespace.

    >>> clean_text("Great!<br /><br />Works &amp; looks   fine. ")
    'Great! Works & looks fine.'
    """
    return _SPACE.sub(" ", html.unescape(_BR.sub(" ", text))).strip()


def screen(text: str) -> Screened:
    """Decide whether and what to score; raises :class:`CorruptText` on binary garbage.

    >>> screen("  ").unscored, screen("!!! :) 10/10").unscored
    ('empty_text', 'no_words')
    >>> screen("El producto llegó roto y nadie responde mis correos").unscored
    'non_english'
    >>> screen("Love it, works as advertised").unscored is None
    True
    """
    bad = sum(
        1 for ch in text if ch == "\ufffd" or unicodedata.category(ch) in _BAD_CATEGORIES
    ) - sum(1 for ch in text if ch in "\t\n\r")
    if text and bad / len(text) > MAX_BAD_SHARE:
        raise CorruptText(f"{bad} of {len(text)} characters are control or replacement")
    if len(text) > HEAD_CHARS + TAIL_CHARS:
        text, cut = text[:HEAD_CHARS] + " " + text[-TAIL_CHARS:], True
    else:
        cut = False
    text = clean_text(text)
    if not text:
        return Screened("", "empty_text", cut)
    words = _WORD.findall(_NOT_PROSE.sub(" ", text))
    if not words:
        return Screened(text, "no_words", cut)
    if not _looks_english(words):
        return Screened(text, "non_english", cut)
    return Screened(text, None, cut)


def _looks_english(words: list[str]) -> bool:
    """Mostly Latin letters, and a function word once there are enough words to expect one."""
    letters = sum(len(w) for w in words)
    ascii_letters = sum(1 for w in words for ch in w if ch.isascii())
    if ascii_letters < 0.6 * letters:
        return False
    return len(words) < 7 or any(w.lower() in _ENGLISH for w in words)
