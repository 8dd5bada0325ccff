"""The address written into served Ingresses' ``status.loadBalancer`` (``--publish-service``).

As ingress-nginx's ``--publish-service``: the controller's own Service tells
where clients reach it. Its load balancer's ingress IPs/hostnames when a
cloud provider assigned them; else its ``spec.externalIPs``; else the
addresses of the nodes its ready endpoints run on (ExternalIP, else
InternalIP), which is what a NodePort or hostNetwork set-up is reached by.
``addresses`` is pure; ``ServiceAddress`` reads the Service and Nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes_asyncio import client

from haproxy_ingress.status import API_ERRORS, REQUEST_TIMEOUT

logger = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
Entry = dict[str, str]  # {"ip": …} or {"hostname": …}


def parse(value: str, namespace: str) -> tuple[str, str]:
    """``[namespace/]name`` → (namespace, name); the controller's namespace by default."""
    ns, _, name = value.rpartition("/")
    return (ns or namespace), name


def service_nodes(slices: Iterable[Mapping[str, Any]], namespace: str, name: str) -> list[str]:
    """Names of the nodes the Service's ready endpoints run on, sorted."""
    nodes: set[str] = set()
    for item in slices:
        meta = item.get("metadata") or {}
        labels = meta.get("labels") or {}
        if meta.get("namespace") != namespace or labels.get(SERVICE_NAME_LABEL) != name:
            continue
        for endpoint in item.get("endpoints") or ():
            ready = (endpoint.get("conditions") or {}).get("ready")
            if ready is not False and endpoint.get("nodeName"):
                nodes.add(str(endpoint["nodeName"]))
    return sorted(nodes)


def node_address(node: Mapping[str, Any]) -> str | None:
    found = {
        a.get("type"): a.get("address")
        for a in (node.get("status") or {}).get("addresses") or ()
        if a.get("address")
    }
    return found.get("ExternalIP") or found.get("InternalIP")


def addresses(
    service: Mapping[str, Any] | None, nodes: Iterable[Mapping[str, Any]] = ()
) -> list[Entry]:
    """``status.loadBalancer.ingress`` entries for the Service (empty when none known)."""
    if service is None:
        return []
    entries: list[Entry] = []
    for item in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ():
        if item.get("ip"):
            entries.append({"ip": str(item["ip"])})
        elif item.get("hostname"):
            entries.append({"hostname": str(item["hostname"])})
    if not entries:
        entries = [{"ip": str(ip)} for ip in (service.get("spec") or {}).get("externalIPs") or ()]
    if not entries:
        found = {node_address(node) for node in nodes}
        entries = [{"ip": address} for address in sorted(a for a in found if a)]
    return entries


class ServiceAddress:
    """Reads the published Service (and its endpoints' Nodes) from the API server."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self.namespace = namespace
        self.name = name

    async def resolve(self, slices: Iterable[Mapping[str, Any]]) -> list[Entry] | None:
        """The entries, or None when the API server could not be asked (keep the old ones)."""
        try:
            service = await self._core.read_namespaced_service(
                self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT
            )
            body = self._api.sanitize_for_serialization(service)
            nodes = []
            if not addresses(body):
                for node in service_nodes(slices, self.namespace, self.name):
                    read = await self._core.read_node(node, _request_timeout=REQUEST_TIMEOUT)
                    nodes.append(self._api.sanitize_for_serialization(read))
        except API_ERRORS as error:
            logger.warning(
                "could not read the published Service %s/%s (retried next sync): %r",
                self.namespace,
                self.name,
                error,
            )
            return None
        result = addresses(body, nodes)
        if not result:
            logger.info(
                "published Service %s/%s has no load-balancer address, external IP or "
                "ready endpoint on a node with an address yet",
                self.namespace,
                self.name,
            )
        return result
