"""Payload codecs. JSON by default; others plug in through the ``Codec`` protocol. Never pickle.

``TaggedJsonCodec`` is the opt-in JSON that also keeps ``datetime``, ``date``, ``UUID`` and ``Decimal``.

The store encodes ``args`` and result values with its codec at the API boundary, so an
unencodable payload is an ``InvalidTask`` error at enqueue and loses nothing. Reading never fails
because of one bad payload: an undecodable one comes back as an ``UndecodablePayload`` value that
the worker dead-letters with a clear failure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from .errors import InvalidTask


@runtime_checkable
class Codec(Protocol):
    name: str

    def encode(self, value: Any) -> bytes:
        """Bytes for ``value``; raise ``TypeError``/``ValueError`` for what cannot be encoded."""
        ...

    def decode(self, data: bytes) -> Any:
        """The value ``data`` encodes; raise ``ValueError`` for bytes that are not a valid encoding."""
        ...


class JsonCodec:
    """Strict JSON: no NaN or Infinity, UTF-8, compact. Tuples come back as lists."""

    name = "json"

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        self._decoder = json.JSONDecoder()
        # JSONEncoder.encode builds a new C encoder on every call; bulk enqueue encodes one payload
        # per task, so one C encoder is made here and reused (half the cost per payload). Without a
        # markers dict a circular structure ends in RecursionError, which ``encode`` reports.
        self._fast = (
            c_make_encoder(None, _unserialisable, encode_basestring, None, ":", ",", False, False, False)
            if c_make_encoder is not None
            else None
        )

    def encode(self, value: Any) -> bytes:
        if self._fast is not None:
            return "".join(self._fast(value, 0)).encode()
        return self._encoder.encode(value).encode()

    def decode(self, data: bytes) -> Any:
        return self._decoder.decode(data.decode() if isinstance(data, bytes | bytearray | memoryview) else data)

    def __repr__(self) -> str:
        return "JsonCodec()"


def _unserialisable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


TAG = "__ts__"


class TaggedJsonCodec:
    """JSON that also round-trips ``datetime`` (naive and aware), ``date``, ``UUID`` and ``Decimal``.

    Opt in with ``App(url, codec=TaggedJsonCodec())`` or ``taskstore.open(url, codec=...)``; every
    process that reads the tasks must use it too. Such a value is stored as a tagged object,
    ``{"__ts__": "datetime", "v": "2026-12-02T18:00:00+00:00"}``, at any depth. A dict of the caller's
    own that has a ``"__ts__"`` key is escaped as ``{"__ts__": "dict", "v": [[key, value], ...]}``, so
    no user dict is ever read back as a tag. Decoding builds only these four types, from strings,
    never by naming a class: nothing executable is stored, unlike pickle.

    An aware datetime comes back with a fixed UTC offset (``datetime.timezone``): the instant and the
    offset survive, a ``ZoneInfo`` name does not. Tuples come back as lists, as with plain JSON.
    """

    name = "tagged-json"

    def __init__(self) -> None:
        self._json = JsonCodec()
        self._decoder = json.JSONDecoder(object_hook=_untag)  # called on every object, innermost first

    def encode(self, value: Any) -> bytes:
        return self._json.encode(_tag(value))

    def decode(self, data: bytes) -> Any:
        return self._decoder.decode(data.decode() if isinstance(data, bytes | bytearray | memoryview) else data)

    def __repr__(self) -> str:
        return "TaggedJsonCodec()"


def _tag(value: Any) -> Any:
    """``value`` with the four types (and user dicts that use the tag key) replaced by tagged objects."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, dict):
        tagged = {k: _tag(v) for k, v in value.items()}
        if TAG in value:
            return {TAG: "dict", "v": [[k, v] for k, v in tagged.items()]}
        return tagged
    if isinstance(value, list | tuple):
        return [_tag(v) for v in value]
    if isinstance(value, datetime):  # before date: a datetime is a date too
        return {TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, UUID):
        return {TAG: "uuid", "v": str(value)}
    if isinstance(value, Decimal):
        return {TAG: "decimal", "v": str(value)}  # exact: digits, exponent, sign of zero, NaN/Infinity
    return value  # JSON encodes the rest or refuses it with TypeError


def _untag(obj: dict[str, Any]) -> Any:
    if TAG not in obj:
        return obj
    tag, text = obj.get(TAG), obj.get("v")
    if len(obj) != 2 or "v" not in obj:
        raise ValueError(f"malformed tagged value {obj!r}: expected exactly the keys {TAG!r} and 'v'")
    if tag == "dict":
        if not isinstance(text, list) or not all(isinstance(p, list) and len(p) == 2 for p in text):
            raise ValueError(f"malformed escaped dict {obj!r}: 'v' must be a list of [key, value] pairs")
        try:
            return dict(text)
        except TypeError as exc:  # a key that cannot be a dict key (only a hand-made payload has one)
            raise ValueError(f"malformed escaped dict {obj!r}: {exc}") from None
    parse = _PARSERS.get(tag) if isinstance(tag, str) else None
    if parse is None:
        raise ValueError(f"unknown tag {tag!r} in {obj!r}")
    if not isinstance(text, str):
        raise ValueError(f"malformed tagged {tag}: 'v' must be a string, got {text!r}")
    try:
        return parse(text)
    except (ValueError, InvalidOperation) as exc:
        raise ValueError(f"malformed tagged {tag} {text!r}: {exc}") from None


# A UTC offset with a fraction of a second, as ``isoformat`` writes it: "+05:30:00.000001".
_FRACTIONAL_OFFSET = re.compile(r"([+-])(\d\d):(\d\d):(\d\d)\.(\d{6})$")


def _datetime(text: str) -> datetime:
    """``datetime.fromisoformat``, but Python 3.11 drops an offset's microseconds (3.12 keeps them): read them here."""
    match = _FRACTIONAL_OFFSET.search(text)
    if match is None:
        return datetime.fromisoformat(text)
    sign, hours, minutes, seconds, micros = match.groups()
    offset = timedelta(hours=int(hours), minutes=int(minutes), seconds=int(seconds), microseconds=int(micros))
    naive = datetime.fromisoformat(text[: match.start()])
    if naive.tzinfo is not None:
        raise ValueError("two UTC offsets")
    return naive.replace(tzinfo=timezone(-offset if sign == "-" else offset))


_PARSERS: dict[str, Any] = {
    "datetime": _datetime,
    "date": date.fromisoformat,
    "uuid": UUID,
    "decimal": Decimal,
}


@dataclass(frozen=True, slots=True)
class UndecodablePayload:
    """Stands in for a stored payload that the codec could not decode."""

    data: bytes
    error: str


def encode(codec: Codec, value: Any, what: str) -> bytes:
    try:
        data = codec.encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise InvalidTask(f"{what} cannot be encoded with the {codec.name} codec: {exc}") from exc
    if not isinstance(data, bytes | bytearray):
        raise InvalidTask(f"the {codec.name} codec returned {type(data).__name__}, not bytes")
    return bytes(data)


def decode(codec: Codec, data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return codec.decode(bytes(data))
    except Exception as exc:  # a codec may raise anything on garbage; the worker dead-letters it
        return UndecodablePayload(bytes(data), f"{type(exc).__name__}: {exc}")


_JSON = JsonCodec()


def dump_json(value: Any, what: str) -> str:
    """Context, report data and failure data are always JSON, whatever the payload codec."""
    return encode(_JSON, value, what).decode()


def load_json(text: str | bytes | None) -> Any:
    if text is None:
        return None
    return json.loads(text)


__all__ = ["Codec", "JsonCodec", "TaggedJsonCodec", "UndecodablePayload"]
