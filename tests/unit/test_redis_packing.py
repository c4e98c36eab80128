"""The Redis driver packs commands with hiredis' C packer: the bytes sent must be redis-py's own, command by command."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("hiredis")
aioconnection = pytest.importorskip("redis.asyncio.connection")

from taskstore.backends.redis.driver import _packed_by_hiredis  # noqa: E402

COMMANDS: list[tuple[Any, ...]] = [
    ("PING",),
    ("SCRIPT LOAD", "return 1"),  # a two-word command name goes as two arguments
    ("EVALSHA", "a" * 40, 0, "", 17, "p:", "claim", 2, "queue-a", "qüeue-b", "0123456789abcdef" * 2),
    ("HSET", "p:t:1", "args", b"\x00\xff\xfe binary \r\n", "n", -3, "big", 2**62, "empty", b""),
    ("ZADD", "p:ready:q", -5, "00000000000000001000000000000042id"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_hiredis_packs_each_command_as_redis_py_does(command: tuple[Any, ...]) -> None:
    plain = aioconnection.Connection()
    packed = _packed_by_hiredis(aioconnection.Connection)()
    assert type(packed).__name__ == "HiredisPackedConnection"
    assert b"".join(packed.pack_command(*command)) == b"".join(plain.pack_command(*command))


@pytest.mark.parametrize("value", [None, True])
def test_what_redis_py_refuses_hiredis_refuses_with_the_same_error(value: object) -> None:
    from redis.exceptions import DataError

    with pytest.raises(DataError):
        aioconnection.Connection().pack_command("SET", "k", value)
    with pytest.raises(DataError):
        _packed_by_hiredis(aioconnection.Connection)().pack_command("SET", "k", value)
