"""The store a ``taskstore worker`` uses: ``--url``, then ``App(url)``, then ``$TASKSTORE_URL``, then the default."""

from __future__ import annotations

import pytest

from taskstore._connect import DEFAULT_URL, worker_url

F, A, E = "sqlite:///flag.db", "sqlite:///app.db", "sqlite:///env.db"


@pytest.mark.parametrize(
    ("flag", "app", "env", "chosen", "warns"),
    [
        (F, A, E, F, "overrides the App's own URL"),
        (F, F, E, F, None),
        (F, None, E, F, None),
        (None, A, E, A, "$TASKSTORE_URL"),
        (None, A, A, A, None),
        (None, A, None, A, None),
        (None, None, E, E, None),
        (None, None, None, DEFAULT_URL, None),
    ],
)
def test_precedence(flag: str | None, app: str | None, env: str | None, chosen: str, warns: str | None) -> None:
    url, warning = worker_url(flag, app, env)
    assert url == chosen
    if warns is None:
        assert warning is None
    else:
        assert warning is not None
        assert warns in warning


def test_a_warning_never_shows_a_password() -> None:
    _, warning = worker_url(None, "postgresql://u:app-secret@h/db", "postgresql://u:env-secret@h/db")
    assert warning is not None
    assert "secret" not in warning
    assert "u:***@h/db" in warning
