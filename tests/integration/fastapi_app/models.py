"""The app's own tables: orders taken by the API, and the confirmations the worker's handler records."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int]


class Confirmation(Base):
    """One row per execution of the handler: a test counts them per task to see how often each task ran."""

    __tablename__ = "confirmations"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[str] = mapped_column(String(255), index=True)
    order_id: Mapped[int]
    item: Mapped[str] = mapped_column(String(100))
    attempt: Mapped[int]
    pid: Mapped[int]
