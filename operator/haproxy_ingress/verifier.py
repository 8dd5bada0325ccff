"""Objects deleted while a watch was down: LIST what the API server really has.

After a watch gap (an API server restart, a resourceVersion too old) Kopf
re-lists without emitting DELETED for what disappeared meanwhile, so the
indexes can keep objects that no longer exist. A LIST of uids per watched
kind (metadata only, paginated) tells which.

The LIST may also come back before Kopf's own watches do (they retry on
their own back-off): an Ingress deleted and recreated during the gap, under
its name or another (a rename), is then gone from the API server while its
successor is not in the indexes yet. Dropping the predecessor at once would
unroute a host that was never meant to stop serving (a 404 until the watch
is back), so :class:`Verification` keeps a gone object while objects of its
kind and namespace that the LIST saw are missing from the indexes (the
watch is behind there), for :data:`CATCH_UP` seconds at most.

EndpointSlices are the exception: a gone slice is dropped at once. Its pod
IPs may already be other pods', another tenant's perhaps; taking its servers
away early costs at most a few retries, keeping them may send one tenant's
requests to another.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from kubernetes_asyncio import client

from haproxy_ingress.cluster import WATCHED, ClusterView, WatchedKind, indexed_labels
from haproxy_ingress.status import REQUEST_TIMEOUT

logger = logging.getLogger(__name__)

_METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"

# Seconds a predecessor is kept for a successor the indexes lack: Kopf's
# watches retry every 3 s at most (handlers.startup's error back-offs), so a
# successor not indexed by then is not coming through the watch; after it the
# plain rule (drop what is gone) applies.
CATCH_UP = 10.0


class Identity(NamedTuple):
    """An object's kind, namespace and name (its uid changes across a delete and re-create)."""

    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, kind: WatchedKind, meta: Mapping[str, object]) -> Identity:
        return cls(kind.kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))


@dataclass(frozen=True)
class Verification:
    """What one verification found, and how long a recreated object is awaited."""

    gone: frozenset[str] = frozenset()  # indexed uids no LIST returns
    # A gone uid -> the live uids of its kind and namespace that the indexes
    # did not hold yet (its successors, whatever their names): it stays until
    # they are all in.
    successors: Mapping[str, frozenset[str]] = field(default_factory=dict)
    until: float = 0.0  # time.monotonic() past which successors are no longer awaited

    def awaiting(self, now: float) -> bool:
        return bool(self.successors) and now <= self.until

    def removed(self, present: Collection[str], now: float) -> frozenset[str]:
        """The uids to leave out of a view holding ``present``: the gone ones, each
        predecessor only once its successors are in (or no longer awaited)."""
        if not self.awaiting(now):
            return self.gone
        waiting = {old for old, new in self.successors.items() if not _all_in(new, present)}
        return self.gone - waiting

    def behind(self, present: Collection[str], now: float) -> bool:
        """Whether an awaited successor is still missing from ``present``."""
        return self.awaiting(now) and not all(
            _all_in(new, present) for new in self.successors.values()
        )


def _all_in(uids: frozenset[str], present: Collection[str]) -> bool:
    return all(uid in present for uid in uids)


def identities(view: ClusterView) -> dict[str, Identity]:
    """Every object of the view by uid (the ConfigMap has its own watch)."""
    result: dict[str, Identity] = {}
    for kind in WATCHED:
        for obj in view.objects(kind):
            meta = obj.get("metadata") or {}
            uid = meta.get("uid")
            if uid:
                result[str(uid)] = Identity.of(kind, meta)
    return result


def compare(
    indexed: Mapping[str, Identity], live: Mapping[str, Identity], *, until: float
) -> Verification:
    """What the indexes hold that the API server does not, and what may replace it."""
    gone = frozenset(indexed.keys() - live.keys())
    if not gone:
        return Verification()
    newcomers: dict[tuple[str, str], set[str]] = {}
    for uid, identity in live.items():
        if uid not in indexed:
            newcomers.setdefault((identity.kind, identity.namespace), set()).add(uid)
    successors = {
        old: frozenset(newcomers[key])
        for old in gone
        if indexed[old].kind != "EndpointSlice"
        and (key := (indexed[old].kind, indexed[old].namespace)) in newcomers
    }
    return Verification(gone, successors, until)


async def verify(api: client.ApiClient, indexed: Mapping[str, Identity]) -> Verification:
    """LIST every watched kind and compare it with the indexes' objects."""
    live: dict[str, Identity] = {}
    for kind in WATCHED:
        live |= await list_identities(api, kind)
    result = compare(indexed, live, until=time.monotonic() + CATCH_UP)
    logger.debug("index verified: %d indexed, %d live", len(indexed), len(live))
    if result.gone:
        logger.warning(
            "%d indexed objects were deleted during a watch gap; dropping them%s",
            len(result.gone),
            f" ({len(result.successors)} once the objects created meanwhile are in)"
            if result.successors
            else "",
        )
    return result


async def list_identities(api: client.ApiClient, kind: WatchedKind) -> dict[str, Identity]:
    """Every object of ``kind`` the API server has that the indexes would hold, by uid.

    One paginated LIST per field selector of :attr:`WatchedKind.list_selectors`,
    so that a live object missing from the indexes is one the watch has not
    brought yet, never one it filters out.
    """
    live: dict[str, Identity] = {}
    for selector in kind.list_selectors:
        query: list[tuple[str, object]] = [("limit", 500)]
        if selector:
            query.append(("fieldSelector", selector))
        token: str | None = None
        while True:
            page = await api.call_api(
                kind.list_path,
                "GET",
                query_params=[*query, ("continue", token)] if token else query,
                # Only the metadata (uids), not whole objects: Secrets hold keys.
                header_params={"Accept": f"{_METADATA_ONLY},application/json"},
                response_types_map={200: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=REQUEST_TIMEOUT,
            )
            for item in page.get("items") or ():
                meta = item.get("metadata") or {}
                if indexed_labels(kind, meta.get("labels") or {}):
                    live[str(meta["uid"])] = Identity.of(kind, meta)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
    return live
