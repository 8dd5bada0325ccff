"""The cluster view: what the controller currently knows of the Kubernetes API.

The handlers keep it current from watch events; the offline ``render`` command
builds it from YAML files. It holds plain Kubernetes objects (trimmed of
``managedFields`` and other bulk by :func:`trim`), grouped by kind, and is the
only input of :func:`haproxy_ingress.translate.translate` besides the options.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from haproxy_ingress.model import ServiceRef

KubeObject = Mapping[str, Any]

DEFAULT_CONTROLLER_NAME = "haproxy-ingress.kopf.dev/controller"
DEFAULT_INGRESS_CLASS = "haproxy"
DEFAULT_NAMESPACE = "haproxy-ingress"
DEFAULT_CONFIGMAP = "haproxy-ingress"


@dataclass(frozen=True)
class TranslateOptions:
    """How this controller instance is configured (flags, not user input)."""

    controller_name: str = DEFAULT_CONTROLLER_NAME
    ingress_class: str = DEFAULT_INGRESS_CLASS  # the class for the legacy annotation
    configmap_namespace: str = DEFAULT_NAMESPACE
    configmap_name: str = DEFAULT_CONFIGMAP
    default_backend: ServiceRef | None = None  # a flag; the ConfigMap may also set one


@dataclass(frozen=True)
class ClusterView:
    """Kubernetes objects by kind; order does not matter, translate sorts."""

    ingresses: tuple[KubeObject, ...] = ()
    ingress_classes: tuple[KubeObject, ...] = ()
    services: tuple[KubeObject, ...] = ()
    endpoint_slices: tuple[KubeObject, ...] = ()
    secrets: tuple[KubeObject, ...] = ()
    configmap: KubeObject | None = None

    @classmethod
    def from_objects(
        cls, objects: Iterable[KubeObject], options: TranslateOptions
    ) -> tuple[ClusterView, list[KubeObject]]:
        """Sort objects into a view; returns the view and the objects of unknown kinds."""
        buckets: dict[str, list[KubeObject]] = {kind: [] for kind in _KINDS.values()}
        configmap: KubeObject | None = None
        unknown: list[KubeObject] = []
        for obj in objects:
            kind = (str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
            if kind == ("v1", "ConfigMap"):
                meta = obj.get("metadata")
                meta = meta if isinstance(meta, Mapping) else {}  # offline input may be anything
                if (meta.get("namespace"), meta.get("name")) == (
                    options.configmap_namespace,
                    options.configmap_name,
                ):
                    configmap = trim(obj)
                continue
            bucket = _KINDS.get(kind)
            if bucket is None:
                unknown.append(obj)
            else:
                buckets[bucket].append(trim(obj))
        view = cls(
            ingresses=tuple(buckets["ingresses"]),
            ingress_classes=tuple(buckets["ingress_classes"]),
            services=tuple(buckets["services"]),
            endpoint_slices=tuple(buckets["endpoint_slices"]),
            secrets=tuple(buckets["secrets"]),
            configmap=configmap,
        )
        return view, unknown


_KINDS: dict[tuple[str, str], str] = {
    ("networking.k8s.io/v1", "Ingress"): "ingresses",
    ("networking.k8s.io/v1", "IngressClass"): "ingress_classes",
    ("v1", "Service"): "services",
    ("discovery.k8s.io/v1", "EndpointSlice"): "endpoint_slices",
    ("v1", "Secret"): "secrets",
}

_KEPT_METADATA = ("name", "namespace", "uid", "creationTimestamp", "labels", "annotations")


def trim(obj: KubeObject) -> KubeObject:
    """Keep only what the controller reads: memory stays flat on big clusters."""
    meta = obj.get("metadata")
    kept: dict[str, Any] = {k: v for k, v in obj.items() if k not in {"metadata", "status"}}
    if isinstance(meta, Mapping):
        kept["metadata"] = {k: meta[k] for k in _KEPT_METADATA if k in meta}
        annotations = kept["metadata"].get("annotations")
        if isinstance(annotations, Mapping):
            # kubectl's copy of the whole object is the biggest annotation of all.
            kept["metadata"]["annotations"] = {
                k: v
                for k, v in annotations.items()
                if k != "kubectl.kubernetes.io/last-applied-configuration"
            }
    else:
        kept["metadata"] = meta
    status = obj.get("status")
    if obj.get("kind") == "Ingress" and isinstance(status, Mapping) and "loadBalancer" in status:
        # The one status field we read: it is written only when it differs.
        kept["status"] = {"loadBalancer": status["loadBalancer"]}
    return kept


def uids(view: ClusterView) -> set[str]:
    """The uids of every object in the view (the ConfigMap has its own watch)."""
    return {
        str((obj.get("metadata") or {}).get("uid"))
        for objects in (
            view.ingresses,
            view.ingress_classes,
            view.services,
            view.endpoint_slices,
            view.secrets,
        )
        for obj in objects
        if (obj.get("metadata") or {}).get("uid")
    }


def without(view: ClusterView, removed: set[str]) -> ClusterView:
    """The view minus objects whose uid is in ``removed`` (known to be deleted)."""
    if not removed:
        return view

    def keep(objects: tuple[KubeObject, ...]) -> tuple[KubeObject, ...]:
        return tuple(o for o in objects if (o.get("metadata") or {}).get("uid") not in removed)

    return ClusterView(
        ingresses=keep(view.ingresses),
        ingress_classes=keep(view.ingress_classes),
        services=keep(view.services),
        endpoint_slices=keep(view.endpoint_slices),
        secrets=keep(view.secrets),
        configmap=view.configmap,
    )
