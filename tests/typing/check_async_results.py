"""Checked by ``mypy --strict`` in CI: a task keeps its parameter types whatever it returns.

An async function returning a type with an explicit ``Any`` in it (``dict[str, Any]``, ``Any``) once made
mypy see both ``App.task`` overloads match and give up with ``TaskFunction[Any, Any]``: every call was then
accepted. The ``assert_type`` lines fail if the result type is lost; the ``type: ignore`` lines fail (as
unused ignores, under ``--strict``) if a wrong argument stops being an error.
"""

from typing import Any, assert_type

import taskstore
from taskstore.client import TaskHandle

app = taskstore.App("memory://")


@app.task
async def bare_dict(user: str, n: int = 1) -> dict[str, Any]:
    return {"user": user, "n": n}


@app.task(queue="mail")
async def queued_dict(user: str, n: int = 1) -> dict[str, Any]:
    return {"user": user, "n": n}


@app.task
async def bare_any(user: str) -> Any:
    return user


@app.task(queue="mail")
async def queued_any(user: str) -> Any:
    return user


@app.task
async def bare_none(user: str) -> None:
    return None


@app.task(queue="mail")
async def queued_none(user: str) -> None:
    return None


@app.task
def sync_dict(user: str, n: int = 1) -> dict[str, Any]:
    return {"user": user, "n": n}


@app.task(queue="mail")
def sync_any(user: str) -> Any:
    return user


@app.task(queue="mail")
def sync_none(user: str) -> None:
    return None


async def right_calls() -> None:
    assert_type(await bare_dict.enqueue("u", n=2), TaskHandle[dict[str, Any]])
    assert_type(await queued_dict.enqueue("u"), TaskHandle[dict[str, Any]])
    assert_type(await bare_dict.options(delay=1).enqueue("u"), TaskHandle[dict[str, Any]])
    assert_type(await (await queued_dict.enqueue("u")).result(), dict[str, Any])
    assert_type(await bare_any.enqueue("u"), TaskHandle[Any])
    assert_type(await queued_any.enqueue("u"), TaskHandle[Any])
    assert_type(await bare_none.enqueue("u"), TaskHandle[None])
    assert_type(await queued_none.enqueue("u"), TaskHandle[None])
    assert_type(sync_dict.enqueue_sync("u", 2), TaskHandle[dict[str, Any]])
    assert_type(sync_any.enqueue_sync("u"), TaskHandle[Any])
    assert_type(sync_none.enqueue_sync("u"), TaskHandle[None])


async def wrong_calls() -> None:
    await bare_dict.enqueue(1)  # type: ignore[arg-type]
    await queued_dict.enqueue("u", n="2")  # type: ignore[arg-type]
    await queued_dict.options(delay=1).enqueue(1)  # type: ignore[arg-type]
    await bare_any.enqueue(1)  # type: ignore[arg-type]
    await queued_any.enqueue("u", extra=1)  # type: ignore[call-arg]
    await bare_none.enqueue(1)  # type: ignore[arg-type]
    await queued_none.enqueue()  # type: ignore[call-arg]
    queued_dict.s(1)  # type: ignore[arg-type]
    sync_dict.enqueue_sync(1)  # type: ignore[arg-type]
    sync_any.enqueue_sync(1)  # type: ignore[arg-type]
    sync_none.enqueue_sync(1)  # type: ignore[arg-type]
