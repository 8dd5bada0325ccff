"""Kopf handlers: the controller's only contact with Kopf.

Only ``@kopf.index`` and ``@kopf.on.event`` on users' objects: they keep no
progress and write nothing back (no annotations, finalizers or status of our
own). Indexes hold trimmed objects; event handlers only poke the sync loop,
which reads all indexes at once. Event handlers run only after every index
is fully populated, so the first sync never sees a half-listed cluster.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from haproxy_ingress import logs
from haproxy_ingress.cluster import ClusterView, trim
from haproxy_ingress.config import ControllerConfig
from haproxy_ingress.controller import Controller
from haproxy_ingress.tls import TLS_SECRET_TYPE

logger = logging.getLogger(__name__)

INDEXES = {
    "ingresses": ("networking.k8s.io", "v1", "ingresses"),
    "ingress_classes": ("networking.k8s.io", "v1", "ingressclasses"),
    "services": ("", "v1", "services"),
    "endpoint_slices": ("discovery.k8s.io", "v1", "endpointslices"),
    "secrets": ("", "v1", "secrets"),
}


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    config = memo.get("config") or ControllerConfig.from_env()
    if "config" not in memo:  # `kopf run -m haproxy_ingress`: Kopf set the levels
        logs.quiet_defaults(verbose=None, api_bodies=logs.api_bodies_wanted())
    settings.peering.standalone = True  # every replica is its own data plane
    settings.scanning.disabled = True  # no CRDs: no cluster-wide CRD/namespace watching
    settings.posting.enabled = False  # our Events come from status.py, on problems only
    settings.posting.reporting_component = "haproxy-ingress"
    settings.watching.chunk_size = 500
    settings.watching.field_selectors["v1", "secrets"] = f"type={TLS_SECRET_TYPE}"
    indexes = {name: kwargs[f"{name}_index"] for name in INDEXES}

    def view(configmap: Any) -> ClusterView:
        def values(name: str) -> tuple[Any, ...]:
            return tuple(obj for store in indexes[name].values() for obj in store)

        return ClusterView(
            ingresses=values("ingresses"),
            ingress_classes=values("ingress_classes"),
            services=values("services"),
            endpoint_slices=values("endpoint_slices"),
            secrets=values("secrets"),
            configmap=configmap,
        )

    controller = Controller(config, view)
    await controller.start()
    memo["controller"] = controller


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    controller: Controller | None = memo.get("controller")
    if controller is not None:
        await controller.stop()


def _by_name(namespace: str | None, name: str, body: kopf.Body) -> dict[Any, Any]:
    return {(namespace or "", name): trim(body)}


@kopf.index(*INDEXES["ingresses"])
async def ingresses_index(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> Any:
    return _by_name(namespace, name, body)


@kopf.index(*INDEXES["ingress_classes"])
async def ingress_classes_index(name: str, body: kopf.Body, **_: Any) -> Any:
    return _by_name("", name, body)


@kopf.index(*INDEXES["services"])
async def services_index(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> Any:
    return _by_name(namespace, name, body)


@kopf.index(*INDEXES["endpoint_slices"])
async def endpoint_slices_index(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> Any:
    service = labels.get("kubernetes.io/service-name")
    # Slices gather under their Service: the key a backend looks them up by.
    return {(namespace or "", service): trim(body)} if service else None


@kopf.index(*INDEXES["secrets"], field="type", value=TLS_SECRET_TYPE)
async def secrets_index(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> Any:
    return _by_name(namespace, name, body)


async def _changed(memo: kopf.Memo, **_: Any) -> None:
    controller: Controller | None = memo.get("controller")
    if controller is not None:
        controller.health.mark_indexed()  # Kopf calls event handlers once all are listed
        controller.trigger()


@kopf.on.event(*INDEXES["endpoint_slices"])
async def _endpoints_changed(
    memo: kopf.Memo, namespace: str | None, labels: kopf.Labels, **_: Any
) -> None:
    controller: Controller | None = memo.get("controller")
    service = labels.get("kubernetes.io/service-name")
    if controller is not None:
        controller.health.mark_indexed()
    if controller is not None and service:
        controller.trigger_endpoints(namespace or "", service)


for _name in ("ingresses", "ingress_classes", "services", "secrets"):
    kopf.on.event(*INDEXES[_name])(_changed)
