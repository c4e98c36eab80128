"""Hypothesis strategies for arbitrary input: valid values, values just past each bound, and junk.

Each strategy mixes the three, so a test that feeds them to a public input checks both that good
values are taken and that bad ones are refused with a typed error, never a crash further down.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from .. import limits
from ..retry import BinaryExponential, Exponential, Polynomial

EDGE_INTS = [
    0,
    1,
    -1,
    limits.INT32_MAX,
    limits.INT32_MAX + 1,
    limits.INT32_MIN,
    limits.INT32_MIN - 1,
    2**63,
    -(2**63) - 1,
]
EDGE_FLOATS = [
    0.0,
    -0.0,
    -1.0,
    5e-324,
    0.5,
    1e12,
    1e300,
    math.inf,
    -math.inf,
    math.nan,
    limits.MAX_DURATION,
    limits.MAX_DURATION * 1.0001,
]
EDGE_TEXT = ["", " ", "\x00", "a\x00b", "\ud800", "x\udfff", "\\u0000", "a" * 255, "a" * 256, "Q", "q\n", "é"]

_zones = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))
)

texts = st.one_of(
    st.sampled_from(EDGE_TEXT),
    st.text(st.characters(exclude_categories=()), max_size=12),  # surrogates and NUL included
    st.text(max_size=300),
)
ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers())
floats = st.one_of(st.sampled_from(EDGE_FLOATS), st.floats())
durations = st.one_of(floats, ints, st.timedeltas(), st.sampled_from([timedelta.max, timedelta.min, timedelta(0)]))
datetimes = st.one_of(
    st.datetimes(timezones=st.one_of(st.just(UTC), _zones)),
    st.datetimes(),  # naive
    st.sampled_from(
        [
            datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))),
            datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),
            datetime.max.replace(tzinfo=UTC),
            datetime.min.replace(tzinfo=UTC),
            limits.LATEST,
            limits.EARLIEST,
        ]
    ),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=8,
)
junk = st.one_of(st.none(), st.booleans(), ints, floats, texts, datetimes, st.binary(max_size=8), st.just(object()))


def anything(*valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the given valid values, otherwise any junk at all."""
    return st.one_of(*valid, junk) if valid else junk


@st.composite
def policies(draw: st.DrawFn) -> Callable[[], Any]:
    """Makes a retry policy from arbitrary parameters; call it in the test (a constructor may refuse them)."""
    kind = draw(st.sampled_from(["exponential", "binary", "polynomial", "junk"]))
    base, cap, jitter = draw(anything(durations)), draw(anything(durations)), draw(anything(floats))
    if kind == "exponential":
        return lambda: Exponential(base=base, cap=cap, jitter=jitter)
    if kind == "binary":
        return lambda: BinaryExponential(base=base, cap=cap)
    if kind == "polynomial":
        return Polynomial
    return lambda: base
