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


def test_a_huge_message_and_traceback_are_cut_in_the_middle_saying_so() -> None:
    from taskstore.model import MAX_MESSAGE_CHARS, MAX_TRACEBACK_CHARS

    message = "start " + "m" * 1_000_000 + " end"
    traceback = "Traceback (most recent call last):\n" + "  frame\n" * 200_000 + "ValueError: the last line"
    failure = Failure("ValueError", message, traceback=traceback)
    assert len(failure.message) == MAX_MESSAGE_CHARS
    assert failure.message.startswith("start mmm")
    assert failure.message.endswith("mmm end")
    assert f"[{len(message) - MAX_MESSAGE_CHARS} characters cut]" in failure.message
    assert failure.traceback is not None
    assert len(failure.traceback) == MAX_TRACEBACK_CHARS
    assert failure.traceback.startswith("Traceback (most recent call last):\n")
    assert failure.traceback.endswith("ValueError: the last line")  # the line that names the exception is kept
    assert Failure.from_json(failure.to_json()) == failure  # a cut failure reads back unchanged


def test_text_within_the_limits_is_kept_whole() -> None:
    from taskstore.model import MAX_MESSAGE_CHARS, MAX_TRACEBACK_CHARS

    failure = Failure("E", "x" * MAX_MESSAGE_CHARS, traceback="t" * MAX_TRACEBACK_CHARS)
    assert failure.message == "x" * MAX_MESSAGE_CHARS
    assert failure.traceback == "t" * MAX_TRACEBACK_CHARS
