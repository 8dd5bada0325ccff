"""The safety net behind the validators: leave out what HAProxy refuses, serve the rest.

Validators keep user values within what HAProxy accepts, but a value they let
through and ``haproxy -c`` refuses must not block every other tenant's change
until its owner fixes it. When a candidate configuration is refused, the
objects that changed since the last configuration HAProxy accepted are the
suspects; :func:`find_culprits` searches them with ``haproxy -c`` runs, and
each culprit is quarantined: left out of the cluster view, with a Warning on
it, until it changes.

Everything here but :class:`Quarantine`'s bookkeeping is pure; the check that
runs HAProxy is passed in (see :mod:`haproxy_ingress.sync`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from haproxy_ingress.cluster import WATCHED, ClusterView, KubeObject, ServiceKey, service_key
from haproxy_ingress.model import ObjectRef, Problem

T = TypeVar("T")

EVENT_REASON: Final = "ConfigRejected"
MAX_ALERT: Final = 300  # characters of HAProxy's alert kept in a Problem
# A search stops here: thousands of suspects with a few culprits need far
# fewer (about culprits * log2(suspects)), and every check is a `haproxy -c`.
MAX_CHECKS: Final = 100

# The kinds users write, in the order a search tries them: what Ingresses
# refer to first, so that when only a combination is refused (a new Ingress
# tuning a new Service) the Ingress, which carries the tenant's values, is the
# one left out. EndpointSlices are suspects too: their addresses and ports are
# rendered into server lines, so a refusal there is possible, if unlikely.
_SEARCH_ORDER: Final = ("IngressClass", "Service", "EndpointSlice", "Secret", "Ingress")
_KINDS: Final = tuple(sorted(WATCHED, key=lambda kind: _SEARCH_ORDER.index(kind.kind)))
# HAProxy's generic closing alerts say nothing about the cause.
_GENERIC_ALERT: Final = re.compile(
    r"Error\(s\) found in configuration file|Fatal errors found in configuration"
)
_ALERT_PREFIX: Final = re.compile(r"^\[ALERT\]\s*(\(\d+\)\s*)?:\s*")
_UNPRINTABLE: Final = re.compile(r"[^\x20-\x7e]+")


@dataclass(frozen=True, order=True)
class ObjectKey:
    """One object of the view; the uid tells a re-created object from the old one."""

    kind: str
    namespace: str
    name: str
    uid: str

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.kind, self.namespace, self.name, self.uid)


def key_of(kind: str, obj: KubeObject) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return ObjectKey(
        kind, str(meta.get("namespace", "")), str(meta.get("name", "")), str(meta.get("uid", ""))
    )


def version(obj: KubeObject) -> str:
    """A stable hash of what the controller reads of an object.

    Not ``metadata.resourceVersion``: the view's objects are trimmed of it,
    and it also moves on every status write (ours included), which would
    release a quarantined Ingress for nothing. ``status`` is left out for the
    same reason.
    """
    content = {k: v for k, v in obj.items() if k != "status"}
    encoded = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


def objects(view: ClusterView) -> dict[ObjectKey, KubeObject]:
    """The users' objects of the view by key (the ConfigMap is the operator's, not a suspect)."""
    result: dict[ObjectKey, KubeObject] = {}
    for kind in _KINDS:
        for obj in view.objects(kind):
            result[key_of(kind.kind, obj)] = obj
    return result


def suspects(view: ClusterView, good: Mapping[ObjectKey, KubeObject] | None) -> list[ObjectKey]:
    """Objects new or changed since the view of the last accepted configuration.

    ``good`` None (nothing accepted yet, e.g. at start-up): every object.
    Ordered for :func:`find_culprits`: by kind (see ``_KINDS``), then oldest
    first, so that between two objects refused only together the newcomer is
    left out and the one already served keeps serving.
    """
    rank = {kind.kind: index for index, kind in enumerate(_KINDS)}
    changed = [
        (rank[key.kind], _created(obj), key)
        for key, obj in objects(view).items()
        if good is None or good.get(key) != obj
    ]
    return [key for *_, key in sorted(changed)]


def _created(obj: KubeObject) -> str:
    # RFC 3339 UTC timestamps sort chronologically as strings.
    return str((obj.get("metadata") or {}).get("creationTimestamp", ""))


def leave_out(view: ClusterView, keys: Collection[ObjectKey]) -> ClusterView:
    """The view without the objects in ``keys``."""
    if not keys:
        return view
    removed = set(keys)

    def keep(kind: str, items: tuple[KubeObject, ...]) -> tuple[KubeObject, ...]:
        return tuple(obj for obj in items if key_of(kind, obj) not in removed)

    return ClusterView.of(
        {kind.field: keep(kind.kind, view.objects(kind)) for kind in WATCHED},
        view.configmap,
        view.header_configmaps,
    )


def first_alert(output: str) -> str:
    """HAProxy's first telling [ALERT] line, fit for an Event message.

    The pid prefix goes (it would make every message distinct), anything
    unprintable is dropped and the length is bounded.
    """
    lines = [line for line in output.splitlines() if line.strip()]
    alerts = [line for line in lines if line.startswith("[ALERT]")] or lines
    telling = [line for line in alerts if not _GENERIC_ALERT.search(line)] or alerts
    if not telling:
        return "haproxy -c refused the configuration"
    text = _ALERT_PREFIX.sub("", telling[0])
    text = _UNPRINTABLE.sub(" ", text).strip()
    return text if len(text) <= MAX_ALERT else text[: MAX_ALERT - 3] + "..."


# --- the search ---------------------------------------------------------------------

# Suspects to include (all others are left out) → None if HAProxy accepts
# the configuration, else its refusal.
Check = Callable[[Sequence[T]], Awaitable[str | None]]


@dataclass(frozen=True)
class Search(Generic[T]):
    """What :func:`find_culprits` found."""

    culprits: tuple[tuple[T, str], ...]  # each with the refusal it caused
    # Left out without proof because the check budget ran out; retried later.
    unresolved: tuple[T, ...]
    checks: int  # `haproxy -c` runs


class NotASuspect(Exception):
    """Even without every suspect the configuration is refused: the cause lies elsewhere."""

    def __init__(self, refusal: str, checks: int) -> None:
        super().__init__(refusal)
        self.refusal = refusal
        self.checks = checks


async def find_culprits(
    candidates: Sequence[T], check: Check[T], *, max_checks: int = MAX_CHECKS
) -> Search[T]:
    """The suspects whose inclusion makes the check fail, in O(culprits * log suspects) checks.

    Assumes that leaving objects out never turns an accepted configuration
    into a refused one (a smaller cluster renders a subset). The search grows
    an accepted prefix of the suspects: a binary search finds the shortest
    prefix that is refused, its last suspect is a culprit, the ones before it
    stay in, and the search goes on after it. So several culprits are all
    found, and when only a combination is refused its last member (in the
    given order) is blamed. The result is verified whatever the assumption:
    the search ends only on a check that accepted everything but the culprits
    (and the unresolved suspects, if the budget ran out).

    Raises NotASuspect if the configuration is refused even without any suspect.
    """
    checks = 0

    async def passes(included: Sequence[T]) -> str | None:
        nonlocal checks
        checks += 1
        return await check(included)

    refusal = await passes(())
    if refusal is not None:
        raise NotASuspect(refusal, checks)
    accepted: list[T] = []  # invariant: the check accepts exactly these suspects
    pending = list(candidates)
    culprits: list[tuple[T, str]] = []
    while pending:
        if checks >= max_checks:
            return Search(tuple(culprits), tuple(pending), checks)
        refusal = await passes((*accepted, *pending))
        if refusal is None:
            return Search(tuple(culprits), (), checks)
        # The shortest refused prefix of pending: `low` is accepted, `high` refused.
        low, high = 0, len(pending)
        while high - low > 1:
            if checks >= max_checks:
                # Keep what is proven; the rest is left out, unresolved.
                accepted.extend(pending[:low])
                return Search(tuple(culprits), tuple(pending[low:]), checks)
            middle = (low + high) // 2
            found = await passes((*accepted, *pending[:middle]))
            if found is None:
                low = middle
            else:
                high, refusal = middle, found
        culprits.append((pending[high - 1], refusal))
        accepted.extend(pending[: high - 1])
        pending = pending[high:]
    return Search(tuple(culprits), (), checks)


# --- the bookkeeping ------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    key: ObjectKey
    version: str  # the object as it was refused; any change releases it
    reason: str  # fixed when quarantined, so its Event is posted once
    proven: bool = True  # False: left out unproven (budget ran out), retried next sync
    # The Service a Service or an EndpointSlice belongs to (cluster.service_key):
    # an endpoint-only sync's view holds only some Services' objects.
    service: ServiceKey | None = None

    @property
    def problem(self) -> Problem:
        return Problem(self.key.ref, "", self.reason, EVENT_REASON)


class Quarantine:
    """Which objects are left out, and what HAProxy last accepted.

    Owned by one :class:`haproxy_ingress.sync.Reconciler` (never shared).
    """

    def __init__(self) -> None:
        self._entries: dict[ObjectKey, Entry] = {}
        # The last view whose configuration passed `haproxy -c` and was
        # applied; None until one did. Kept as the view (its objects are the
        # indexes' own) and keyed only when a refusal asks for suspects: a
        # key per object of a 10k-Ingress cluster is 31,000 keys held for a
        # rare event.
        self._good: ClusterView | None = None

    @property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(self._entries[key] for key in sorted(self._entries))

    def screen(
        self,
        view: ClusterView,
        *,
        retry_unproven: bool = True,
        services: Collection[ServiceKey] | None = None,
    ) -> tuple[ClusterView, tuple[Problem, ...]]:
        """The view without quarantined objects, and their problems.

        An object that changed (or went away) since it was refused is released:
        it is tried again. Entries left out unproven are released too, unless
        ``retry_unproven`` is False (right after the search that left them out).
        ``services``: ``view`` holds only these Services and their
        EndpointSlices (an endpoint-only sync's); an entry for any other
        object is judged by the next sync that sees it (none of them changed:
        their change would have been part of this sync).
        """
        if not self._entries:
            return view, ()  # the common case costs nothing per sync
        current = objects(view)
        kept: dict[ObjectKey, Entry] = {}
        for key, entry in self._entries.items():
            if not entry.proven and retry_unproven:
                continue
            if services is not None and entry.service not in services:
                kept[key] = entry  # not in this view: unseen, not gone
                continue
            obj = current.get(key)
            if obj is None or version(obj) != entry.version:
                continue
            kept[key] = entry
        self._entries = kept
        return leave_out(view, kept), tuple(sorted(e.problem for e in kept.values()))

    def suspects(self, view: ClusterView) -> list[ObjectKey]:
        return suspects(view, objects(self._good) if self._good is not None else None)

    def accepted(self, view: ClusterView) -> None:
        """``view`` (already screened) was rendered, passed `haproxy -c` and applied."""
        self._good = view

    def add(self, view: ClusterView, search: Search[ObjectKey]) -> None:
        """Leave out what the search found, from the next :meth:`screen` on."""
        current = objects(view)
        for key, refusal in search.culprits:
            reason = (
                "HAProxy refused the configuration with this object, which is left out "
                f"until it changes: {first_alert(refusal)}"
            )
            obj = current[key]
            self._entries[key] = Entry(
                key, version(obj), reason, service=service_key(key.kind, obj)
            )
        for key in search.unresolved:
            reason = (
                "left out for now: HAProxy refused the configuration and the search for "
                "the objects responsible stopped before reaching this one; retried at "
                "the next sync"
            )
            obj = current[key]
            self._entries[key] = Entry(
                key, version(obj), reason, proven=False, service=service_key(key.kind, obj)
            )
