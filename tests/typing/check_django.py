"""Checked by ``mypy --strict``: ``enqueue_on_commit`` is typed from the task's signature, like ``enqueue``."""

from taskstore.contrib.django import DjangoApp, enqueue_on_commit

app = DjangoApp()


@app.task
def ship(order_id: int, express: bool = False) -> None: ...


def typed_calls() -> None:
    enqueue_on_commit(ship, 1, express=True)
    enqueue_on_commit(ship.options(delay=5), 2)
    enqueue_on_commit.using("orders")(ship, 3)


def wrong_calls() -> None:
    enqueue_on_commit(ship, "1")  # type: ignore[arg-type]
    enqueue_on_commit(ship, 1, fast=True)  # type: ignore[call-arg]
    enqueue_on_commit(ship.options(delay=5))  # type: ignore[call-arg]
    enqueue_on_commit(ship, 1, using="orders")  # type: ignore[call-arg]
