"""Hand freed heap back to the kernel: the controller's RSS follows what it holds.

A full sync of a big cluster (translate, plan, render) allocates hundreds of
MiB that are freed right after; CPython returns small objects to glibc's
malloc, which keeps the freed pages mapped (RSS) unless the top of the heap
happens to be free, and every thread that allocates gets an arena of its
own (up to 8 per core), each with its own freed-but-kept pages. Issue 13
measures the whole process, so after a full sync the controller asks glibc
to give back what is free, and caps the arenas at start.

Both are glibc calls through ctypes; on another libc (musl) they are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

# glibc's mallopt parameter number for the arena cap (malloc.h: M_ARENA_MAX).
M_ARENA_MAX = -8


def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (has malloc_trim and mallopt), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not (hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt")):
        return None
    return libc


def limit_arenas(count: int, libc: ctypes.CDLL | None = None) -> bool:
    """Cap glibc's malloc arenas (as ``MALLOC_ARENA_MAX``); True if the C library took it.

    Call before threads start allocating: arenas already made stay.
    """
    libc = libc if libc is not None else _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(count)))


def release(libc: ctypes.CDLL | None = None) -> bool:
    """Return free heap pages of every arena to the kernel; True if any were returned.

    It walks the whole heap (milliseconds on a big one) and ctypes lets go of
    the GIL meanwhile: call it from a worker thread, off the event loop.
    """
    libc = libc if libc is not None else _glibc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(ctypes.c_size_t(0)))
