"""The app's taskstore App and its task, as a worker imports them.

The store's URL comes from ``$TASKSTORE_URL`` (or ``taskstore worker --url``), the app's database from
``$APP_DATABASE_URL``: a SQLAlchemy URL (``postgresql+psycopg://…`` or ``sqlite:///…``) of the same database.
"""

from __future__ import annotations

import functools
import os

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

import taskstore
from taskstore import BinaryExponential

from .models import Confirmation, Order

app = taskstore.App(name="fastapi_app")


def make_engine(url: str, application_name: str = "fastapi_app") -> Engine:
    """The app's engine. ``pool_pre_ping`` tests a pooled connection before handing it out, so one the server
    dropped since its last use (a restart, a failover, an idle timeout, pg_terminate_backend) is replaced
    instead of failing the next request or task."""
    connect_args = {"application_name": application_name} if url.startswith("postgresql") else {}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


@functools.cache
def worker_engine() -> Engine:
    """The handlers' engine, made on first use in the worker process (its pool is shared by the handler threads)."""
    return make_engine(os.environ["APP_DATABASE_URL"], os.environ.get("APP_DB_APPLICATION_NAME", "fastapi_app_worker"))


@app.task(queue="orders", kind="orders.confirm", max_attempts=3, retry=BinaryExponential(base=0.1, cap=0.5))
def confirm_order(order_id: int) -> str:
    """Record the confirmation of a committed order (a real app would send an e-mail here)."""
    task = taskstore.current_task()
    with Session(worker_engine()) as session, session.begin():
        order = session.get(Order, order_id)
        if order is None:  # the task is visible only once the order's transaction committed
            raise LookupError(f"order {order_id} does not exist")
        item = order.item
        session.add(Confirmation(task_id=task.id, order_id=order_id, item=item, attempt=task.attempts, pid=os.getpid()))
    return item
