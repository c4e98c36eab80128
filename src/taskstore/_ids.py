"""Identifiers: time-ordered task ids (UUIDv7) and unguessable lease tokens."""

from __future__ import annotations

import os
import random
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def task_id() -> str:
    """A UUIDv7: 48 bits of Unix milliseconds, then a 12-bit counter and random bits.

    Ids made in one process are strictly increasing (the counter orders ids within a millisecond),
    so indexes on them stay append-mostly.
    """
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        else:
            _last_ms = ms
            _counter = 0
        counter = _counter
    # Uniqueness, not secrecy: ``random`` is reseeded in forked children, and is several times
    # cheaper than a system call per id on bulk enqueue.
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | random.getrandbits(62)
    h = "%032x" % value  # noqa: UP031 -- measurably faster than an f-string with a format spec here
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def lease_token() -> str:
    return os.urandom(16).hex()
