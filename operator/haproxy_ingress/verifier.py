"""Objects deleted while a watch was down: LIST what the API server really has.

After a watch gap (an API server restart, a resourceVersion too old) Kopf
re-lists without emitting DELETED for what disappeared meanwhile, so the
indexes can keep objects that no longer exist. A LIST of uids per watched
kind (metadata only, paginated) tells which.
"""

from __future__ import annotations

import logging

from kubernetes_asyncio import client

from haproxy_ingress.cluster import WATCHED, WatchedKind
from haproxy_ingress.status import REQUEST_TIMEOUT

logger = logging.getLogger(__name__)

_METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


async def deleted(api: client.ApiClient, indexed: set[str]) -> set[str]:
    """The uids in ``indexed`` that no watched kind's LIST returns."""
    live: set[str] = set()
    for kind in WATCHED:
        live |= await list_uids(api, kind)
    gone = indexed - live
    logger.debug("index verified: %d indexed, %d live", len(indexed), len(live))
    if gone:
        logger.warning(
            "%d indexed objects were deleted during a watch gap; dropping them", len(gone)
        )
    return gone


async def list_uids(api: client.ApiClient, kind: WatchedKind) -> set[str]:
    """The uids of every object of ``kind`` the API server has (paginated LIST)."""
    query: list[tuple[str, object]] = [("limit", 500)]
    if kind.field_selector:
        query.append(("fieldSelector", kind.field_selector))
    live: set[str] = set()
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
        live.update(str(item["metadata"]["uid"]) for item in page.get("items") or ())
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return live
