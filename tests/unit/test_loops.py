"""The event loop ``taskstore worker --loop`` picks (src/taskstore/_loops.py)."""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

import pytest

from taskstore import errors
from taskstore._loops import loop_factory, loop_name, run


async def _which() -> str:
    return loop_name(asyncio.get_running_loop())


def test_auto_and_uvloop_run_on_uvloop_asyncio_on_the_standard_loop() -> None:
    assert run(_which(), "auto") == "uvloop"
    assert run(_which(), "uvloop") == "uvloop"
    assert run(_which(), "asyncio") == "asyncio"


def test_without_uvloop_auto_falls_back_and_uvloop_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_uvloop(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "uvloop":
            raise ImportError("No module named 'uvloop'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    assert loop_factory("auto") is None
    assert run(_which(), "auto") == "asyncio"
    with pytest.raises(errors.ConfigError, match="uvloop is not installed"):
        run(_which(), "uvloop")


def test_an_unknown_loop_is_a_config_error_and_the_coroutine_is_closed() -> None:
    coro = _which()
    with pytest.raises(errors.ConfigError, match="unknown event loop 'trio'"):
        run(coro, "trio")
    assert coro.cr_frame is None  # closed: no "never awaited" warning
