"""memo.Swept, memo.ByIdentity and memo.per_object: what they keep, and for how long."""

from __future__ import annotations

import gc
import weakref

from haproxy_ingress.memo import ByIdentity, Swept, per_object


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


class _Object:
    """A stand-in for a view object that a weak reference can watch."""


def test_by_identity_works_once_per_objects_and_rest_and_lets_go_at_the_sweep() -> None:
    made: list[str] = []
    memo: ByIdentity[str] = ByIdentity()
    first, other = _Object(), _Object()

    def make(label: str) -> str:
        made.append(label)
        return label

    assert memo.recall((first,), "a", lambda: make("first a")) == "first a"
    assert memo.recall((first,), "a", lambda: make("again")) == "first a"
    assert memo.recall((first,), "b", lambda: make("first b")) == "first b"  # other rest
    assert memo.recall((other,), "a", lambda: make("other a")) == "other a"  # other object
    assert made == ["first a", "first b", "other a"]
    # The memo holds its objects: no id in a live key can be another object's.
    watched = weakref.ref(other)
    del other
    gc.collect()
    assert watched() is not None
    memo.sweep()  # all three read since the start
    memo.recall((first,), "a", lambda: make("again"))
    memo.sweep()  # only (first, "a") read since
    assert len(memo) == 1
    gc.collect()
    assert watched() is None
