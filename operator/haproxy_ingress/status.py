"""Feedback to users through the Kubernetes API: Events and Ingress status.

The only module that writes to the API server. Problems become Warning Events
on the offending object, once per distinct problem (not on every sync); the
published address goes into ``status.loadBalancer`` of served Ingresses, by
the one replica that holds the Lease, and only when it differs.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from haproxy_ingress.model import ObjectRef, Problem

logger = logging.getLogger(__name__)

COMPONENT = "haproxy-ingress"
API_VERSIONS = {
    "Ingress": "networking.k8s.io/v1",
    "IngressClass": "networking.k8s.io/v1",
    "EndpointSlice": "discovery.k8s.io/v1",
    "Service": "v1",
    "Secret": "v1",
    "ConfigMap": "v1",
}
MAX_MESSAGE = 1024
REQUEST_TIMEOUT = 10.0
# What a call to an API server that is down, restarting or slow can raise.
API_ERRORS = (ApiException, aiohttp.ClientError, OSError, TimeoutError)


class EventReporter:
    """Posts each distinct problem once, as a Warning Event on its object."""

    def __init__(
        self, api: client.ApiClient, *, component: str = COMPONENT, host: str = ""
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._component = component
        self._host = host
        self._posted: set[Problem] = set()
        self._logged: set[Problem] = set()
        # The last tuple reported whose problems were all posted: an endpoint
        # sync hands on the same tuple when its problems did not change, and
        # then there is nothing to compare (every problem of the cluster).
        self._done: tuple[Problem, ...] | None = None

    async def report(self, problems: Iterable[Problem]) -> int:
        """Post the problems not posted yet; forget the ones that went away."""
        if problems is self._done:
            return 0
        current = set(problems)
        posted = 0
        for problem in sorted(current - self._logged):
            # A user's object left out or degraded: WARNING, once (not per retry).
            logger.warning("%s %s: %s", problem.source, problem.event, problem.message)
        self._logged = current
        for problem in sorted(current - self._posted):
            if await self._post(problem):
                self._posted.add(problem)
                posted += 1
        self._posted &= current  # a problem that comes back is news again
        self._done = problems if isinstance(problems, tuple) and self._posted == current else None
        return posted

    async def _post(self, problem: Problem) -> bool:
        ref = problem.source
        namespace = ref.namespace or "default"
        now = datetime.datetime.now(datetime.UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{ref.name or 'object'}."),
            involved_object=client.V1ObjectReference(
                kind=ref.kind,
                namespace=ref.namespace or None,
                name=ref.name,
                uid=ref.uid or None,
                api_version=API_VERSIONS.get(ref.kind),
            ),
            reason=problem.event,
            message=problem.message[:MAX_MESSAGE],
            type="Warning",
            source=client.V1EventSource(component=self._component, host=self._host or None),
            reporting_component=self._component,
            reporting_instance=self._host or None,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            await self._core.create_namespaced_event(
                namespace, body, _request_timeout=REQUEST_TIMEOUT
            )
        except API_ERRORS as error:
            logger.warning("could not post an Event on %s (retried next sync): %r", ref, error)
            return False
        logger.debug("event posted on %s: %s", ref, problem.message)
        return True


def load_balancer_status(address: str | None) -> dict[str, Any]:
    """``status.loadBalancer`` for a published IP or hostname (empty when none)."""
    if not address:
        return {"ingress": None}
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return {"ingress": [{"hostname": address}]}
    return {"ingress": [{"ip": address}]}


class Patched(NamedTuple):
    patched: int  # Ingresses patched
    complete: bool  # False: the API server failed midway (the rest waits for the next pass)


class IngressStatusWriter:
    """Writes the published address into served Ingresses (leader only)."""

    def __init__(self, api: client.ApiClient, address: str | None) -> None:
        self._networking = client.NetworkingV1Api(api)
        self._wanted = load_balancer_status(address)

    def publish(self, entries: list[dict[str, str]]) -> None:
        """Publish these ``status.loadBalancer.ingress`` entries from now on (--publish-service)."""
        self._wanted = {"ingress": entries or None}

    async def update(
        self,
        served: Iterable[ObjectRef],
        current: Mapping[ObjectRef, Mapping[str, Any]],
    ) -> Patched:
        """Patch Ingresses whose ``status.loadBalancer`` is not what it should be.

        ``current`` holds every Ingress in the view with its status; served ones
        get the published address, and an Ingress that still shows our address
        but is no longer served (its class changed, it became invalid) is
        cleared.
        """
        wanted = set(served)
        empty = load_balancer_status(None)
        patched = 0
        for ref in sorted(set(current) | wanted):
            have = (current.get(ref) or {}).get("ingress") or None
            if ref in wanted:
                target = self._wanted
            elif have is not None and have == self._wanted["ingress"]:
                target = empty
            else:
                continue
            if have == target["ingress"]:
                continue
            try:
                await self._networking.patch_namespaced_ingress_status(
                    ref.name,
                    ref.namespace,
                    {"status": {"loadBalancer": target}},
                    _request_timeout=REQUEST_TIMEOUT,
                )
                patched += 1
            except ApiException as error:
                if error.status != 404:  # deleted meanwhile: nothing to report
                    logger.warning("could not update status of %s: %s", ref, error.reason)
            except API_ERRORS as error:
                logger.warning("could not update status of %s (retried next sync): %r", ref, error)
                return Patched(patched, complete=False)
            await asyncio.sleep(0)
        return Patched(patched, complete=True)
