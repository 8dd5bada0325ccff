"""Builders of literal Kubernetes objects for tests (plain dicts, as the API sends them)."""

from __future__ import annotations

from typing import Any

CONTROLLER = "haproxy-ingress.kopf.dev/controller"


def ingress_class(
    name: str = "haproxy", *, controller: str = CONTROLLER, default: bool = False
) -> dict[str, Any]:
    annotations = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"controller": controller},
    }


def backend(service: str, port: int | str) -> dict[str, Any]:
    key = "number" if isinstance(port, int) else "name"
    return {"service": {"name": service, "port": {key: port}}}


def path(
    value: str | None, service: str = "web", port: int | str = 80, path_type: str = "Prefix"
) -> dict[str, Any]:
    item: dict[str, Any] = {"pathType": path_type, "backend": backend(service, port)}
    if value is not None:
        item["path"] = value
    return item


def rule(host: str | None, *paths: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"http": {"paths": list(paths)}}
    if host is not None:
        result["host"] = host
    return result


def ingress(
    name: str = "ing",
    *rules: dict[str, Any],
    namespace: str = "default",
    class_name: str | None = "haproxy",
    created: str = "2026-01-01T00:00:00Z",
    annotations: dict[str, str] | None = None,
    tls: list[dict[str, Any]] | None = None,
    default_backend: dict[str, Any] | None = None,
    uid: str = "",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"rules": list(rules)}
    if class_name is not None:
        spec["ingressClassName"] = class_name
    if tls is not None:
        spec["tls"] = tls
    if default_backend is not None:
        spec["defaultBackend"] = default_backend
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": created,
            "annotations": annotations or {},
            "uid": uid or f"uid-{namespace}-{name}",
        },
        "spec": spec,
    }


def service(
    name: str = "web",
    *ports: dict[str, Any],
    namespace: str = "default",
    type_: str = "ClusterIP",
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": type_,
            "ports": list(ports) or [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }


def endpoint(
    address: str,
    *,
    ready: bool | None = True,
    serving: bool | None = None,
    terminating: bool | None = None,
    pod: str = "",
) -> dict[str, Any]:
    conditions: dict[str, bool] = {}
    for key, value in (("ready", ready), ("serving", serving), ("terminating", terminating)):
        if value is not None:
            conditions[key] = value
    result: dict[str, Any] = {"addresses": [address], "conditions": conditions}
    if pod:
        result["targetRef"] = {"kind": "Pod", "name": pod}
    return result


def endpoint_slice(
    service_name: str = "web",
    *endpoints: dict[str, Any],
    name: str | None = None,
    namespace: str = "default",
    ports: list[dict[str, Any]] | None = None,
    address_type: str = "IPv4",
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service_name}-abcde",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": address_type,
        "ports": ports if ports is not None else [{"name": "http", "port": 8080}],
        "endpoints": list(endpoints),
    }


def tls_secret(name: str, crt_b64: str, key_b64: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": crt_b64, "tls.key": key_b64},
    }


def configmap(
    data: dict[str, str], *, namespace: str = "haproxy-ingress", name: str = "haproxy-ingress"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }
