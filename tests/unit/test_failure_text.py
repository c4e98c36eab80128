"""A Failure's text is storable by every backend, whatever the exception it came from."""

from __future__ import annotations

from taskstore import Failure
from taskstore.model import storable_text


class Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("no")


def test_nul_and_lone_surrogates_become_visible_escapes() -> None:
    assert storable_text("a\x00b\ud800c\udfffd") == "a\\x00b\\ud800c\\udfffd"
    assert storable_text("plain ünïcödé 🎉") == "plain ünïcödé 🎉"  # valid text is left as it is


def test_escaping_is_stable_through_a_round_trip() -> None:
    failure = Failure("T\x00", "m\ud800", traceback="t\x00", data={"k\x00": ["v\ud800", 1, None]})
    assert Failure.from_json(failure.to_json()) == failure
    assert failure.data == {"k\\x00": ["v\\ud800", 1, None]}


def test_an_exception_whose_str_fails_still_makes_a_failure() -> None:
    failure = Failure.from_exception(Unprintable())
    assert failure.type == "Unprintable"
    assert failure.message == "<unprintable Unprintable: its __str__ raised ValueError>"
