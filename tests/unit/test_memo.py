"""memo.Swept and memo.per_object: what they keep, and for how long."""

from __future__ import annotations

from haproxy_ingress.memo import Swept, per_object


def test_a_result_is_kept_while_read_between_sweeps() -> None:
    made: list[str] = []
    memo: Swept[str, str] = Swept()

    def make(key: str) -> str:
        made.append(key)
        return key.upper()

    assert memo.recall("a", lambda: make("a")) == "A"
    assert memo.recall("a", lambda: make("a")) == "A"
    assert memo.recall("b", lambda: make("b")) == "B"
    assert made == ["a", "b"]
    memo.sweep()  # both read since the start
    assert len(memo) == 2
    memo.recall("a", lambda: make("a"))
    memo.sweep()  # "b" unread since the last sweep
    assert len(memo) == 1 and made == ["a", "b"]
    memo.clear()
    assert memo.recall("a", lambda: make("a")) == "A" and made == ["a", "b", "a"]


def test_a_falsy_result_is_kept_too() -> None:
    calls: list[int] = []
    memo: Swept[str, int] = Swept()
    for _ in range(2):
        memo.recall("zero", lambda: calls.append(0) or 0)
    assert calls == [0]


def test_per_object_works_once_per_object_not_per_equal_value() -> None:
    calls: list[list[int]] = []

    @per_object
    def total(values: list[int]) -> int:
        calls.append(values)
        return sum(values)

    first, equal = [1, 2], [1, 2]
    assert [total(first), total(first), total(equal)] == [3, 3, 3]
    assert len(calls) == 2 and calls[0] is first and calls[1] is equal
