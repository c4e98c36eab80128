"""``prepare_threshold``: psycopg's, passed to every connection; ``none`` for PgBouncer before 1.21 in
transaction mode, where a statement prepared in one transaction is missing (or already there) in the next."""

from __future__ import annotations

from typing import Any

import pytest

import taskstore
from taskstore import errors

URL = "postgresql://u@127.0.0.1:1/db"


def kwargs(url: str, **options: Any) -> dict[str, Any]:
    store = taskstore.open(url, **options)  # opening connects later: nothing is reached here
    connect: dict[str, Any] = store._driver._connect_kwargs  # type: ignore[attr-defined]
    return connect


@pytest.mark.parametrize(
    ("url", "options", "threshold"),
    [
        (URL, {}, 5),
        (f"{URL}?prepare_threshold=none", {}, None),
        (f"{URL}?prepare_threshold=off", {}, None),
        (f"{URL}?prepare_threshold=0", {}, 0),
        (URL, {"prepare_threshold": None}, None),
        (URL, {"prepare_threshold": 12}, 12),
    ],
)
def test_prepare_threshold_reaches_every_connection(url: str, options: dict[str, Any], threshold: int | None) -> None:
    assert kwargs(url, **options)["prepare_threshold"] == threshold


@pytest.mark.parametrize("bad", ["-1", "sometimes"])
def test_a_bad_prepare_threshold_is_a_config_error(bad: str) -> None:
    with pytest.raises(errors.ConfigError, match="bad option value"):
        taskstore.open(f"{URL}?prepare_threshold={bad}")
