"""The opt-in tagged JSON codec: datetime, date, UUID and Decimal round-trip at any depth (issue 11)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import taskstore
from taskstore import JsonCodec, NewTask, TaggedJsonCodec, UndecodablePayload, errors
from taskstore.codec import TAG

CODEC = TaggedJsonCodec()


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (an aware datetime also with the same offset)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, datetime):
        return a.replace(tzinfo=None) == b.replace(tzinfo=None) and a.utcoffset() == b.utcoffset()
    if isinstance(a, Decimal):
        return str(a) == str(b)  # keeps the exponent: Decimal("1.10") is not stored as "1.1"
    return bool(a == b)


offsets = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))
zones = st.one_of(st.none(), st.just(UTC), st.builds(timezone, offsets))
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)  # no lone surrogates: not UTF-8
keys = st.one_of(text, st.sampled_from([TAG, "v", "dict", "datetime"]))
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
    st.datetimes(timezones=zones),
    st.dates(),
    st.uuids(),
    st.decimals(allow_nan=False, allow_infinity=False),
)
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4))


@settings(max_examples=300)
@given(values)
def test_any_nesting_round_trips(value: Any) -> None:
    assert same(CODEC.decode(CODEC.encode(value)), value)


@given(st.dictionaries(keys, values, max_size=4))
def test_user_dicts_that_use_the_tag_key_are_never_read_as_tags(value: dict[str, Any]) -> None:
    shadow = {TAG: "datetime", "v": "2026-01-01T00:00:00", **value}
    assert same(CODEC.decode(CODEC.encode(shadow)), shadow)
    assert same(CODEC.decode(CODEC.encode([{TAG: "uuid", "v": "not a uuid"}])), [{TAG: "uuid", "v": "not a uuid"}])


def test_the_stored_form_is_tagged_json() -> None:
    stamp = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
    data = CODEC.encode({"at": stamp, "ids": (UUID(int=1),), "price": Decimal("9.90"), "day": date(2026, 1, 31)})
    assert json.loads(data) == {
        "at": {TAG: "datetime", "v": "2026-12-02T18:00:00+00:00"},
        "ids": [{TAG: "uuid", "v": "00000000-0000-0000-0000-000000000001"}],
        "price": {TAG: "decimal", "v": "9.90"},
        "day": {TAG: "date", "v": "2026-01-31"},
    }


@pytest.mark.parametrize("text", ["NaN", "-Infinity", "sNaN", "-0", "1E+2", "0.000001000"])
def test_every_decimal_keeps_its_exact_form(text: str) -> None:
    assert str(CODEC.decode(CODEC.encode(Decimal(text)))) == text


def test_naive_and_zoned_datetimes() -> None:
    naive = datetime(2026, 3, 29, 1, 30, 15, 123456)
    zoned = datetime(2026, 3, 29, 3, 30, tzinfo=ZoneInfo("Europe/Paris"))
    back_naive, back_zoned = CODEC.decode(CODEC.encode([naive, zoned]))
    assert same(back_naive, naive)
    assert back_naive.tzinfo is None
    assert back_zoned == zoned  # the same instant
    assert back_zoned.utcoffset() == timedelta(hours=2)  # and offset; the zone's name is not kept


@pytest.mark.parametrize(
    "stored",
    [
        {TAG: "pickle", "v": "gASV"},  # unknown tags are refused, never looked up as a class
        {TAG: "datetime", "v": "yesterday"},
        {TAG: "decimal", "v": "ten"},
        {TAG: "uuid", "v": 5},
        {TAG: "date", "v": "2026-01-01", "extra": 1},
        {TAG: "dict", "v": {"a": 1}},
        {TAG: "dict", "v": [[["unhashable"], 1]]},
    ],
)
def test_malformed_tags_are_refused(stored: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"tag|malformed"):
        CODEC.decode(json.dumps({"x": [stored]}).encode())


def test_what_json_cannot_hold_is_still_refused() -> None:
    for bad in ({1, 2}, b"bytes", float("nan"), object()):
        with pytest.raises((TypeError, ValueError)):
            CODEC.encode(bad)


def test_the_default_codec_stays_plain_json() -> None:
    with pytest.raises(TypeError):
        JsonCodec().encode(Decimal(1))
    assert JsonCodec().decode(CODEC.encode(UUID(int=1))) == {TAG: "uuid", "v": "00000000-0000-0000-0000-000000000001"}


@pytest.mark.asyncio
async def test_a_store_with_the_codec_keeps_the_types_and_marks_what_it_cannot_read() -> None:
    async with taskstore.open("memory://", codec=TaggedJsonCodec()) as store:
        args = {"when": datetime(2026, 1, 1, tzinfo=UTC), "amount": Decimal("0.10"), "id": UUID(int=7)}
        task = await store.create(NewTask("q", "k", args))
        assert same((await store.get(task.id)).args, args)
        with pytest.raises(errors.InvalidTask, match="tagged-json"):
            await store.create(NewTask("q", "k", {"nope": {1, 2}}))
    async with taskstore.open("memory://", codec=_Forger()) as store:
        task = await store.create(NewTask("q", "k", None))
        assert isinstance((await store.get(task.id)).args, UndecodablePayload)


class _Forger(TaggedJsonCodec):
    """Writes a tag the reader does not know: the store must hand back an ``UndecodablePayload``."""

    def encode(self, value: Any) -> bytes:
        return json.dumps({TAG: "pickle", "v": "gASV"}).encode()


@pytest.mark.parametrize(
    "offset",
    [timedelta(microseconds=1), -timedelta(hours=23, minutes=59, seconds=59, microseconds=999_999)],
    ids=["one-microsecond", "most-negative"],
)
def test_an_offset_with_microseconds_comes_back_whole(offset: timedelta) -> None:
    """Python 3.11's fromisoformat drops an offset's microseconds (found by the round-trip property above)."""
    stamp = datetime(2020, 1, 1, 3, 4, 5, 6, tzinfo=timezone(offset))
    back = CODEC.decode(CODEC.encode(stamp))
    assert back == stamp
    assert back.utcoffset() == offset
