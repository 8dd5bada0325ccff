"""Parse results kept across full translations while the cluster still has their input.

Every full sync translates the whole cluster again, and most of what it
parses (TLS Secrets, sets of annotations) is what the last one parsed. A
:class:`Swept` keeps each result under a key that covers all of its input,
so a hit is what parsing again would give; :meth:`Swept.sweep`, after each
full translation, forgets the keys it did not read, so memory follows the
cluster. Owned by the reconciler, never module state.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Swept(Generic[K, V]):
    """Results by key, forgotten at the first sweep that finds them unread since the last."""

    __slots__ = ("_entries", "_used")

    def __init__(self) -> None:
        self._entries: dict[K, V] = {}
        self._used: set[K] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        """Whether a result is kept for ``key`` (not a read: the sweep may still forget it)."""
        return key in self._entries

    def recall(self, key: K, make: Callable[[], V]) -> V:
        """The result kept for ``key``, or ``make()``'s, kept from now on."""
        self._used.add(key)
        if key in self._entries:
            return self._entries[key]
        result = self._entries[key] = make()
        return result

    def clear(self) -> None:
        """Forget everything (what the keys do not cover has changed)."""
        self._entries = {}

    def sweep(self) -> None:
        """Forget every entry not read since the last sweep."""
        self._entries = {k: v for k, v in self._entries.items() if k in self._used}
        self._used = set()


T = TypeVar("T")


def per_object(make: Callable[[T], V]) -> Callable[[T], V]:
    """``make``, worked out once per argument object: by identity, not equality.

    For a pass over a big state whose items share a few settings objects (an
    Ingress's, the ConfigMap's): hashing or comparing a settings object costs
    what the work on it would. Only for the length of a call that holds every
    argument alive, since a freed object's id can be reused.
    """
    done: dict[int, V] = {}

    def once(argument: T) -> V:
        key = id(argument)
        if key in done:
            return done[key]
        result = done[key] = make(argument)
        return result

    return once


Objects = tuple[object, ...]


class ByIdentity(Generic[V]):
    """Results worked out from some view objects (and a hashable rest), by the objects' identity.

    A full sync reads the same Ingress and EndpointSlice objects as the last
    one but for the few that changed: the view's indexes hold each watched
    object as trimmed from its event, and nothing modifies it afterwards
    (``cluster.trim``), so the same object gives the same parse. Keyed by
    identity, a hit costs a tuple of ids: hashing an object's content would
    cost what parsing it does. Each entry holds its objects, so that no id in
    a live key can be reused by another object. Only for inputs that are never
    modified; swept as :class:`Swept`.
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: Swept[tuple[tuple[int, ...], Hashable], tuple[Objects, V]] = Swept()

    def __len__(self) -> int:
        return len(self._entries)

    def recall(self, objects: Objects, rest: Hashable, make: Callable[[], V]) -> V:
        """The result kept for these very ``objects`` and ``rest``, or ``make()``'s."""
        key = (tuple(map(id, objects)), rest)
        return self._entries.recall(key, lambda: (objects, make()))[1]

    def sweep(self) -> None:
        """Forget (and let go of the objects of) every entry not read since the last sweep."""
        self._entries.sweep()
