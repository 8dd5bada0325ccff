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

from haproxy_ingress.model import TranslateOptions
from haproxy_ingress.tls import TLS_SECRET_TYPE

KubeObject = Mapping[str, Any]


@dataclass(frozen=True)
class WatchedKind:
    """A kind of object the controller reads, as Kopf, the API server and YAML name it."""

    field: str  # the ClusterView field; also the name of its Kopf index
    group: str  # "" for the core API
    version: str
    plural: str
    kind: str
    # Only objects whose field has this value matter: filtered by the API
    # server (watch and list alike), so the others never reach the controller.
    only: tuple[str, str] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def field_selector(self) -> str | None:
        return f"{self.only[0]}={self.only[1]}" if self.only else None

    @property
    def list_path(self) -> str:
        """The cluster-wide LIST endpoint."""
        prefix = f"/apis/{self.group}" if self.group else "/api"
        return f"{prefix}/{self.version}/{self.plural}"


# Every kind the controller watches (its ConfigMap aside, which has a watch of its own).
WATCHED: tuple[WatchedKind, ...] = (
    WatchedKind("ingresses", "networking.k8s.io", "v1", "ingresses", "Ingress"),
    WatchedKind("ingress_classes", "networking.k8s.io", "v1", "ingressclasses", "IngressClass"),
    WatchedKind("services", "", "v1", "services", "Service"),
    WatchedKind("endpoint_slices", "discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    WatchedKind("secrets", "", "v1", "secrets", "Secret", only=("type", TLS_SECRET_TYPE)),
)


@dataclass(frozen=True)
class ClusterView:
    """Kubernetes objects by kind; order does not matter, translate sorts."""

    ingresses: tuple[KubeObject, ...] = ()
    ingress_classes: tuple[KubeObject, ...] = ()
    services: tuple[KubeObject, ...] = ()
    endpoint_slices: tuple[KubeObject, ...] = ()
    secrets: tuple[KubeObject, ...] = ()
    configmap: KubeObject | None = None
    # The other ConfigMaps of the controller's namespace: header sets that
    # add-headers, proxy-set-headers and custom-headers name (the admin's
    # namespace, the only one whose ConfigMaps the controller may read).
    header_configmaps: tuple[KubeObject, ...] = ()

    @classmethod
    def of(
        cls,
        objects: Mapping[str, Iterable[KubeObject]],
        configmap: KubeObject | None = None,
        header_configmaps: Iterable[KubeObject] = (),
    ) -> ClusterView:
        """A view from objects by :attr:`WatchedKind.field`."""
        return cls(
            **{kind.field: tuple(objects.get(kind.field, ())) for kind in WATCHED},
            configmap=configmap,
            header_configmaps=tuple(header_configmaps),
        )

    def objects(self, kind: WatchedKind) -> tuple[KubeObject, ...]:
        result: tuple[KubeObject, ...] = getattr(self, kind.field)
        return result

    @classmethod
    def from_objects(
        cls, objects: Iterable[KubeObject], options: TranslateOptions
    ) -> tuple[ClusterView, list[KubeObject]]:
        """Sort objects into a view; returns the view and the objects of unknown kinds."""
        kinds = {(kind.api_version, kind.kind): kind.field for kind in WATCHED}
        buckets: dict[str, list[KubeObject]] = {kind.field: [] for kind in WATCHED}
        configmap: KubeObject | None = None
        header_configmaps: list[KubeObject] = []
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
                elif meta.get("namespace") == options.configmap_namespace:
                    header_configmaps.append(trim(obj))
                continue
            bucket = kinds.get(kind)
            if bucket is None:
                unknown.append(obj)
            else:
                buckets[bucket].append(trim(obj))
        view = cls.of(buckets, configmap, header_configmaps)
        return view, unknown


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
        for kind in WATCHED
        for obj in view.objects(kind)
        if (obj.get("metadata") or {}).get("uid")
    }


def without(view: ClusterView, removed: set[str]) -> ClusterView:
    """The view minus objects whose uid is in ``removed`` (known to be deleted)."""
    if not removed:
        return view

    def keep(objects: tuple[KubeObject, ...]) -> tuple[KubeObject, ...]:
        return tuple(o for o in objects if (o.get("metadata") or {}).get("uid") not in removed)

    return ClusterView.of(
        {kind.field: keep(view.objects(kind)) for kind in WATCHED},
        view.configmap,
        view.header_configmaps,
    )
