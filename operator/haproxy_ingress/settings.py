"""The controller's ConfigMap and an Ingress's annotations → settings (pure).

What each key means, its validator and default are declared once in
:mod:`registry`; this module reads the ConfigMap and the annotations with
those declarations. Only the cluster admin can write the ConfigMap in the
controller's namespace, but its values still pass the validators: a typo must
become a clear Event, not a haproxy.cfg that fails to load. A bad key is
reported and its default kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from haproxy_ingress import registry, validate
from haproxy_ingress.model import (
    AccessPolicy,
    BackendSettings,
    GlobalSettings,
    ObjectRef,
    Problem,
    ServiceRef,
)
from haproxy_ingress.registry import ANNOTATION_PREFIX, Scope, parse_service_ref
from haproxy_ingress.validate import Invalid

__all__ = [
    "ANNOTATION_PREFIX",
    "backend_annotations",
    "has_access_rule",
    "parse_configmap",
    "parse_service_ref",
    "route_policy",
    "ssl_redirect",
]

_ALLOWLIST = registry.BY_KEY["allowlist-source-range"]
_SSL_REDIRECT = registry.BY_KEY["ssl-redirect"]
_DEFAULT_BACKEND = registry.BY_KEY["default-backend-service"]


def _field(name: str) -> str:
    return f"metadata.annotations[{name}]"


def backend_annotations(
    annotations: Mapping[str, Any], base: BackendSettings
) -> tuple[BackendSettings, list[Invalid]]:
    """An Ingress's backend-scope annotations applied to ``base``.

    Unknown keys under our prefix are refused (a typo must not pass silently);
    other annotations are none of our business. Route-scope keys are checked
    here too (a bad value rejects the Ingress) and read by their own functions.
    """
    settings = base
    errors: list[Invalid] = []
    # Offline input may have non-string keys (YAML `1: x`), which neither sort
    # with strings nor can be ours.
    for name in sorted(k for k in annotations if isinstance(k, str)):
        if not name.startswith(ANNOTATION_PREFIX):
            continue
        setting = registry.BY_KEY.get(name[len(ANNOTATION_PREFIX) :])
        field = _field(name)
        value = annotations[name]
        try:
            if setting is None or not setting.annotation:
                raise Invalid(field, "unknown annotation")
            if setting is _SSL_REDIRECT:
                # Booleans may arrive unquoted from offline YAML.
                validate.boolean(value, field)
                continue
            if setting.scope is Scope.ROUTE:
                continue  # read by route_policy, which rejects what is bad
            if not isinstance(value, str):
                raise Invalid(field, "must be a string")
            settings = registry.apply(settings, setting, value, field)
        except Invalid as error:
            errors.append(error)
    return settings, errors


def route_policy(
    annotations: Mapping[str, Any], default: AccessPolicy | None
) -> AccessPolicy | None:
    """The access policy of an Ingress's routes: its own allow-list, else the default.

    Raises :class:`Invalid` for a bad value: the Ingress is then rejected whole,
    never served without the rule its author wrote (fail closed).
    """
    name = _ALLOWLIST.annotation_name
    if name not in annotations:
        return default
    policy: AccessPolicy = _ALLOWLIST.parse(annotations[name], _field(name))
    return policy


def has_access_rule(annotations: Mapping[str, Any]) -> bool:
    """Whether the Ingress sets an access rule of its own (valid or not)."""
    return _ALLOWLIST.annotation_name in annotations


def ssl_redirect(annotations: Mapping[str, Any]) -> bool:
    """Whether the Ingress's TLS hosts redirect plain HTTP to https (default: yes)."""
    name = _SSL_REDIRECT.annotation_name
    return validate.boolean(annotations.get(name, _SSL_REDIRECT.default), _field(name))


def parse_configmap(
    configmap: Mapping[str, Any] | None,
) -> tuple[GlobalSettings, ServiceRef | None, list[Problem]]:
    """Settings, the default backend it names (if any), and problems with its keys."""
    settings = registry.defaults()
    if configmap is None:
        return settings, None, []
    meta = configmap.get("metadata") or {}
    meta = meta if isinstance(meta, Mapping) else {}
    source = ObjectRef(
        "ConfigMap",
        validate.printable(meta.get("namespace", "")),
        validate.printable(meta.get("name", "")),
        str(meta.get("uid", "")),
    )
    problems: list[Problem] = []
    default_backend: ServiceRef | None = None
    data = configmap.get("data") or {}
    if not isinstance(data, Mapping):
        return (
            settings,
            None,
            [Problem(source, "data", "must be a map of strings", "InvalidSetting")],
        )
    for key in sorted(data, key=str):
        field = f"data.{validate.printable(key)}"
        value = data[key]
        setting = registry.BY_KEY.get(key) if isinstance(key, str) else None
        try:
            if not isinstance(value, str):
                raise Invalid(field, "must be a string")
            if setting is None or not setting.configmap:
                raise Invalid(field, "unknown setting (ignored)")
            if setting is _DEFAULT_BACKEND:
                default_backend = setting.parse(value, field)
            elif setting.scope is Scope.BACKEND:
                backend = registry.apply(settings.backend, setting, value, field)
                settings = dataclasses.replace(settings, backend=backend)
            else:
                settings = registry.apply(settings, setting, value, field)
        except Invalid as error:
            problems.append(Problem(source, error.field, error.reason, "InvalidSetting"))
    return settings, default_backend, problems
