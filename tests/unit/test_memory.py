"""Giving free heap back to the kernel (memory.py), on this machine's glibc."""

from __future__ import annotations

import ctypes
from typing import Any

from haproxy_ingress import memory


class FakeLibc:
    """Records the calls a C library would get."""

    def __init__(self, result: int) -> None:
        self.result = result
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def malloc_trim(self, pad: ctypes.c_size_t) -> int:
        self.calls.append(("malloc_trim", (pad.value,)))
        return self.result

    def mallopt(self, param: ctypes.c_int, value: ctypes.c_int) -> int:
        self.calls.append(("mallopt", (param.value, value.value)))
        return self.result


def test_glibc_takes_the_arena_cap() -> None:
    assert memory.limit_arenas(2) is True


def test_freed_heap_is_given_back() -> None:
    # Chunks below the mmap threshold live in the heap; freeing every other
    # one leaves holes that only malloc_trim returns to the kernel.
    kept, freed = [], []
    for i in range(4000):
        (kept if i % 2 else freed).append(bytearray(64 * 1024))
    del freed
    assert memory.release() is True
    assert len(kept) == 2000


def test_the_calls_glibc_gets() -> None:
    libc = FakeLibc(1)
    assert memory.limit_arenas(2, libc) is True  # type: ignore[arg-type]
    assert memory.release(libc) is True  # type: ignore[arg-type]
    assert libc.calls == [("mallopt", (memory.M_ARENA_MAX, 2)), ("malloc_trim", (0,))]


def test_nothing_to_give_back_or_refused_is_false() -> None:
    assert memory.release(FakeLibc(0)) is False  # type: ignore[arg-type]
    assert memory.limit_arenas(2, FakeLibc(0)) is False  # type: ignore[arg-type]
