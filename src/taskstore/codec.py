"""Payload codecs. JSON by default; others plug in through the ``Codec`` protocol. Never pickle.

The store encodes ``args`` and result values with its codec at the API boundary, so an
unencodable payload is an ``InvalidTask`` error at enqueue and loses nothing. Reading never fails
because of one bad payload: an undecodable one comes back as an ``UndecodablePayload`` value that
the worker dead-letters with a clear failure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Protocol, runtime_checkable

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


__all__ = ["Codec", "JsonCodec", "UndecodablePayload"]
