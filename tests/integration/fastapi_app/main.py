"""The FastAPI app: orders taken in one transaction with the task that confirms them.

``create_api(database_url)`` builds it (a factory, so each test gets its own database). Sync endpoints run in
FastAPI's thread pool on a ``Session``; async ones on the server's event loop on an ``AsyncSession``. Both
enqueue with ``.options(conn=session)``: the task is inserted on the session's own connection, inside its
transaction, so it exists if and only if the order commits. The App's store is opened in the lifespan, on the
server's loop; every App call, from either kind of endpoint, runs there.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at runtime, and
# their Depends() name functions local to create_api.
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from taskstore import errors

from . import tasks
from .models import Order
from .tasks import confirm_order

STOCK = 10  # more than this in one order is refused, after the enqueue: the transaction rolls back


class OrderIn(BaseModel):
    item: str
    quantity: int = 1


class Placed(BaseModel):
    order_id: int
    task_id: str


class TaskState(BaseModel):
    task_id: str
    state: str
    attempts: int


def async_url(url: str) -> str:
    """The asyncio driver of the same database: psycopg serves both; SQLite goes through aiosqlite."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed.render_as_string(hide_password=False)


def create_api(database_url: str) -> FastAPI:
    engine = tasks.make_engine(database_url)
    async_engine = create_async_engine(async_url(database_url), pool_pre_ping=True, **_async_connect_args(database_url))
    sessions = sessionmaker(engine)
    async_sessions = async_sessionmaker(async_engine, expire_on_commit=False)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await tasks.app.store()  # opened on the server's loop: its home, for sync and async endpoints alike
        try:
            yield
        finally:
            await tasks.app.aclose()
            await async_engine.dispose()
            engine.dispose()

    def sync_session() -> Iterator[Session]:
        with sessions() as session:  # closing without a commit rolls back
            yield session

    async def async_session() -> AsyncIterator[AsyncSession]:
        async with async_sessions() as session:
            yield session

    api = FastAPI(lifespan=lifespan)

    @api.post("/orders", status_code=201)
    def place_order(order: OrderIn, session: Annotated[Session, Depends(sync_session)]) -> Placed:
        row = Order(item=order.item, quantity=order.quantity)
        session.add(row)
        session.flush()  # the order's id, in the open transaction
        handle = confirm_order.options(conn=session).enqueue_sync(row.id)
        _check_stock(order, handle.id)
        session.commit()
        return Placed(order_id=row.id, task_id=handle.id)

    @api.post("/async/orders", status_code=201)
    async def place_order_async(order: OrderIn, session: Annotated[AsyncSession, Depends(async_session)]) -> Placed:
        row = Order(item=order.item, quantity=order.quantity)
        session.add(row)
        await session.flush()
        handle = await confirm_order.options(conn=session).enqueue(row.id)
        _check_stock(order, handle.id)
        await session.commit()
        return Placed(order_id=row.id, task_id=handle.id)

    # Without a transaction to join: through the App's store, from a pool thread and from the server's loop.
    @api.post("/orders/{order_id}/resend", status_code=202)
    def resend(order_id: int) -> Placed:
        return Placed(order_id=order_id, task_id=confirm_order.enqueue_sync(order_id).id)

    @api.post("/async/orders/{order_id}/resend", status_code=202)
    async def resend_async(order_id: int) -> Placed:
        return Placed(order_id=order_id, task_id=(await confirm_order.enqueue(order_id)).id)

    @api.get("/tasks/{task_id}")
    def task_state(task_id: str) -> TaskState:
        try:
            task = tasks.app.run_sync(tasks.app.handle(task_id).get())
        except errors.NotFound:
            raise HTTPException(404, detail="no such task") from None
        return TaskState(task_id=task.id, state=task.state.value, attempts=task.attempts)

    @api.get("/async/tasks/{task_id}")
    async def task_state_async(task_id: str) -> TaskState:
        try:
            task = await tasks.app.handle(task_id).get()
        except errors.NotFound:
            raise HTTPException(404, detail="no such task") from None
        return TaskState(task_id=task.id, state=task.state.value, attempts=task.attempts)

    return api


def _check_stock(order: OrderIn, task_id: str) -> None:
    if order.quantity > STOCK:
        # Raised after the enqueue: the session closes without a commit, taking the order and its task with it.
        raise HTTPException(409, detail={"error": "out of stock", "task_id": task_id})


def _async_connect_args(url: str) -> dict[str, Any]:
    return {"connect_args": {"application_name": "fastapi_app"}} if url.startswith("postgresql") else {}
