"""The ConfigMaps of the controller's namespace: its own, and the header sets.

Kopf's watches are cluster-wide; this one is not, so the controller needs
read access to the ConfigMaps of one namespace (its Role), not to every
ConfigMap in the cluster. Besides its own ConfigMap, the others of that
namespace are the header sets that add-headers, proxy-set-headers and
custom-headers name (headers.py).
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
    """LIST then WATCH the namespace's ConfigMaps, for ever.

    ``on_change`` gets each version of the ConfigMap called ``name`` (None
    once deleted); ``on_others`` all the other ConfigMaps, by name, after
    each change to one of them.
    """

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        on_change: Callable[[KubeObject | None], None],
        *,
        on_others: Callable[[dict[str, KubeObject]], None] | None = None,
        on_gap: Callable[[str], None] | None = None,
        retry_delay: float = 2.0,
        timeout: int = 300,
    ) -> None:
        """``on_gap(reason)``: the watch broke (an error, or an end before ``timeout``
        seconds): the API server was gone or unreachable (see :mod:`haproxy_ingress.gaps`)."""
        self._api = api
        self._namespace = namespace
        self._name = name
        self._on_change = on_change
        self._on_others = on_others
        self._on_gap = on_gap
        self._retry_delay = retry_delay
        self._timeout = timeout

    async def run(self) -> None:
        core = client.CoreV1Api(self._api)
        while True:
            try:
                listing = await core.list_namespaced_config_map(self._namespace)
                objects = [self._api.sanitize_for_serialization(i) for i in listing.items]
                own = [o for o in objects if _name(o) == self._name]
                others = {_name(o): o for o in objects if _name(o) != self._name}
                if self._on_others is not None:
                    self._on_others(dict(others))
                self._on_change(own[0] if own else None)
                watcher = watch.Watch()
                since = time.monotonic()
                try:
                    async for event in watcher.stream(
                        core.list_namespaced_config_map,
                        self._namespace,
                        resource_version=listing.metadata.resource_version,
                        timeout_seconds=self._timeout,
                    ):
                        obj = self._api.sanitize_for_serialization(event["object"])
                        gone = event["type"] == "DELETED"
                        if _name(obj) == self._name:
                            self._on_change(None if gone else obj)
                            continue
                        others.pop(_name(obj), None)
                        if not gone:
                            others[_name(obj)] = obj
                        if self._on_others is not None:
                            self._on_others(dict(others))
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


def _name(obj: KubeObject) -> str:
    meta = obj.get("metadata")
    return str(meta.get("name", "")) if isinstance(meta, dict) else ""
