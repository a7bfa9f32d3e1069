"""What a shop can filter out of ``/recommendations``: ``exclude`` (products the shopper already
viewed, carted or purchased) and ``exclude_items`` (product ids), parsed once at the edge.

The OpenAPI document states each parameter's exact pattern and the parser accepts exactly what
the pattern matches, so a request the document calls valid is served and any other is a 422 that
names the value (FastAPI's own ``pattern`` check would answer with the pattern, not the value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from recommndr.errors import InvalidRequestError

STATES = ("purchased", "carted", "viewed")
MAX_STATES = 10  # words in ``exclude`` (duplicates allowed)
MAX_EXCLUDE_ITEMS = 200  # ids in ``exclude_items``
INT64_MAX = 2**63 - 1


def _at_most(limit: int) -> str:
    """A regular expression for the decimal numbers 0..``limit`` without leading zeros."""
    digits = str(limit)
    n = len(digits)
    alts = ["0", f"[1-9][0-9]{{0,{n - 2}}}"]  # the shorter numbers
    for i, d in enumerate(digits):  # same length: equal up to position i, smaller there
        low = 1 if i == 0 else 0
        if int(d) > low:
            top = int(d) - 1
            rest = n - i - 1
            alts.append(
                digits[:i]
                + (f"[{low}-{top}]" if top > low else str(low))
                + (f"[0-9]{{{rest}}}" if rest else "")
            )
    alts.append(digits)
    return "(" + "|".join(alts) + ")"


_WORD = "(" + "|".join(STATES) + ")"
_ID = _at_most(INT64_MAX)
EXCLUDE_PATTERN = rf"^({_WORD}(,{_WORD}){{0,{MAX_STATES - 1}}})?$"
EXCLUDE_ITEMS_PATTERN = rf"^({_ID}(,{_ID}){{0,{MAX_EXCLUDE_ITEMS - 1}}})?$"
EXCLUDE_MAX_LENGTH = MAX_STATES * (max(map(len, STATES)) + 1) - 1
EXCLUDE_ITEMS_MAX_LENGTH = MAX_EXCLUDE_ITEMS * (len(str(INT64_MAX)) + 1) - 1
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Exclude:
    """The shopper's states to leave out and product ids not to offer (ids, not model indices)."""

    viewed: bool = False
    carted: bool = False
    purchased: bool = False
    items: tuple[int, ...] = ()

    @property
    def states(self) -> bool:
        return self.viewed or self.carted or self.purchased

    def __bool__(self) -> bool:
        return self.states or bool(self.items)


NOTHING = Exclude()


def parse_exclude(exclude: str, exclude_items: str) -> Exclude:
    """The request's filters; an ``InvalidRequestError`` (422) naming the first bad value. An
    empty value filters nothing, as an absent one."""
    if not exclude and not exclude_items:
        return NOTHING
    words = exclude.split(",") if exclude else []
    if len(words) > MAX_STATES:
        raise InvalidRequestError(f"query.exclude: at most {MAX_STATES} values, got {len(words)}")
    for w in words:
        if w not in STATES:
            raise InvalidRequestError(f"query.exclude: unknown value {w!r} (one of {', '.join(STATES)})")
    return Exclude("viewed" in words, "carted" in words, "purchased" in words, _item_ids(exclude_items))


def _item_ids(text: str) -> tuple[int, ...]:
    if not text:
        return ()
    if text.count(",") >= MAX_EXCLUDE_ITEMS:  # before splitting a huge value
        raise InvalidRequestError(
            f"query.exclude_items: at most {MAX_EXCLUDE_ITEMS} ids, got {text.count(',') + 1}"
        )
    ids = []
    for part in text.split(","):
        if not _DIGITS.fullmatch(part) or (part[0] == "0" and len(part) > 1):
            raise InvalidRequestError(
                f"query.exclude_items: {part[:40]!r} is not a product id (a decimal int64, no leading zeros)"
            )
        value = int(part) if len(part) <= len(str(INT64_MAX)) else INT64_MAX + 1
        if value > INT64_MAX:
            raise InvalidRequestError(f"query.exclude_items: {part[:40]} is outside int64")
        ids.append(value)
    return tuple(ids)
