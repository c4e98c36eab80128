"""An App on the opt-in tagged codec: handlers get and return datetime, date, UUID and Decimal (issue 11)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest

from taskstore import App, TaggedJsonCodec, Worker

pytestmark = pytest.mark.asyncio


async def test_handlers_get_and_return_the_tagged_types(url: str) -> None:
    app = App(url, codec=TaggedJsonCodec())
    seen: list[tuple[type, ...]] = []

    @app.task(queue="q")
    def invoice(customer: UUID, due: date, *, lines: list[Decimal], sent: datetime) -> dict[str, object]:
        seen.append((type(customer), type(due), type(lines[0]), type(sent)))
        return {"total": sum(lines, Decimal(0)), "remind_at": sent + timedelta(days=7), "for": customer}

    sent = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
    try:
        handle = await invoice.enqueue(
            UUID(int=42), date(2026, 12, 31), lines=[Decimal("9.90"), Decimal("0.10")], sent=sent
        )
        async with Worker(app):
            result = await handle.result(timeout=10)
    finally:
        await app.aclose()
    assert seen == [(UUID, date, Decimal, datetime)]
    assert result == {"total": Decimal("10.00"), "remind_at": sent + timedelta(days=7), "for": UUID(int=42)}
    assert str(result["total"]) == "10.00"
