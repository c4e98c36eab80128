"""Checked by ``mypy --strict`` in CI: enqueue is typed from the task's signature.

Each wrong call carries a ``type: ignore`` for the exact error; with ``warn_unused_ignores`` (part of
``--strict``) mypy fails if a wrong call stops being an error, so typing cannot quietly regress.
"""

import taskstore

app = taskstore.App("memory://")


@app.task(queue="mail")
async def send(to: str, retries: int = 1) -> bool:
    return True


@app.task
def add(a: int, b: int) -> int:
    return a + b


async def typed_calls() -> None:
    handle = await send.enqueue("a@b", retries=2)
    sent: bool = await handle.result(timeout=1)
    await send.options(delay=5, id="k").enqueue("x", retries=3)
    total: int = add.enqueue_sync(1, 2).result_sync()
    print(sent, total)


async def wrong_calls() -> None:
    await send.enqueue(1)  # type: ignore[arg-type]
    await send.options(id="k").enqueue("x", nope=1)  # type: ignore[call-arg]
    text: str = add.enqueue_sync(1, 2).result_sync()  # type: ignore[assignment]
    print(text)


@app.task(
    retry_for=(ConnectionError, TimeoutError),
    unique_key=lambda args, kwargs: f"sync:{args[0]}",
    unique_for=60,
    concurrency_key="stripe",
    expires=3600,
)
async def sync_account(account: str) -> None:
    if not account:
        raise taskstore.Reject("no account")
    raise taskstore.Retry(delay=30)


async def flow_control_calls() -> None:
    await sync_account.options(unique_key="a", concurrency_key=lambda args, kwargs: None, expires=5).enqueue("a")
    await sync_account.options(unique_key=5).enqueue("a")  # type: ignore[arg-type]
    app.task(retry_for="ValueError")  # type: ignore[arg-type]


async def testing_helpers() -> None:
    from taskstore.testing import drain, run_until_complete

    handle = await send.enqueue("a@b")
    ran: int = await drain(app, queues=["mail"])
    sent: bool = await run_until_complete(app, handle)
    text: str = await run_until_complete(app, handle)  # type: ignore[arg-type]
    app.configure(url="memory://", eager=True)
    app.configure(eager="yes")  # type: ignore[arg-type]
    print(ran, sent, text)
