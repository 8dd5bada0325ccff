"""The controller's own ConfigMap: one object in one namespace (least privilege).

Kopf's watches are cluster-wide; this one is not, so the controller needs
read access to a single ConfigMap, not to every ConfigMap in the cluster.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from kubernetes_asyncio import client, watch

from haproxy_ingress.cluster import KubeObject
from haproxy_ingress.status import API_ERRORS

logger = logging.getLogger(__name__)


class ConfigMapWatch:
    """LIST then WATCH one ConfigMap by name, for ever; ``on_change`` gets each version."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        on_change: Callable[[KubeObject | None], None],
        *,
        on_gap: Callable[[str], None] | None = None,
        retry_delay: float = 2.0,
        timeout: int = 300,
    ) -> None:
        """``on_gap(reason)``: the watch broke (an error, or an end before ``timeout``
        seconds): the API server was gone or unreachable (see :mod:`haproxy_ingress.gaps`)."""
        self._api = api
        self._namespace = namespace
        self._selector = f"metadata.name={name}"
        self._on_change = on_change
        self._on_gap = on_gap
        self._retry_delay = retry_delay
        self._timeout = timeout

    async def run(self) -> None:
        core = client.CoreV1Api(self._api)
        while True:
            try:
                listing = await core.list_namespaced_config_map(
                    self._namespace, field_selector=self._selector
                )
                items = listing.items
                self._on_change(self._api.sanitize_for_serialization(items[0]) if items else None)
                watcher = watch.Watch()
                since = time.monotonic()
                try:
                    async for event in watcher.stream(
                        core.list_namespaced_config_map,
                        self._namespace,
                        field_selector=self._selector,
                        resource_version=listing.metadata.resource_version,
                        timeout_seconds=self._timeout,
                    ):
                        obj = self._api.sanitize_for_serialization(event["object"])
                        self._on_change(None if event["type"] == "DELETED" else obj)
                finally:
                    watcher.stop()
                if time.monotonic() - since < self._timeout - 1:
                    # The API server ends a watch early when it shuts down.
                    self._gap("ConfigMap watch ended early")
            except asyncio.CancelledError:
                raise
            except (*API_ERRORS, ValueError) as error:
                logger.warning("ConfigMap watch interrupted (%r); retrying", error)
                self._gap(f"ConfigMap watch interrupted: {error.__class__.__name__}")
                await asyncio.sleep(self._retry_delay)

    def _gap(self, reason: str) -> None:
        if self._on_gap is not None:
            self._on_gap(reason)
