"""Which Ingresses this controller serves, and why it leaves the others out (pure).

The Kubernetes rules: ``spec.ingressClassName`` naming one of our
IngressClasses (``spec.controller`` is ours) wins; then the legacy annotation
``kubernetes.io/ingress.class`` naming our class; an Ingress with neither is
ours only if one of our IngressClasses is marked as the cluster default.
With ``TranslateOptions.serve_nginx``, ingress-nginx's IngressClasses and its
legacy class ``nginx`` count as ours (installing next to it, then switching DNS).
Every Ingress left out has a reason, so nothing is left out silently:
``render`` prints it, and the controller reports the one that is most likely
a mistake (a class that does not exist) as a Warning Event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from haproxy_ingress.cluster import KubeObject
from haproxy_ingress.model import ObjectRef, Problem, TranslateOptions

LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
NGINX_CONTROLLER = "k8s.io/ingress-nginx"
NGINX_CLASS = "nginx"

FOREIGN = "foreign class"
UNDEFINED = "undefined class"
NO_CLASS = "no class"
NOT_FOUND_EVENT = "IngressClassNotFound"


@dataclass(frozen=True, order=True)
class LeftOut:
    ingress: ObjectRef
    kind: str  # FOREIGN, UNDEFINED or NO_CLASS
    reason: str  # one sentence for a person


@dataclass(frozen=True)
class _Class:
    controller: str
    ours: bool
    default: bool  # ours and marked as the cluster default


def _classes(classes: Iterable[KubeObject], options: TranslateOptions) -> dict[str, _Class]:
    known: dict[str, _Class] = {}
    for ingress_class in classes:
        spec = ingress_class.get("spec") or {}
        meta = ingress_class.get("metadata") or {}
        if not isinstance(spec, Mapping) or not isinstance(meta, Mapping):
            continue
        controller = spec.get("controller")
        annotations = meta.get("annotations") or {}
        default = (
            annotations.get(DEFAULT_CLASS_ANNOTATION) if isinstance(annotations, Mapping) else ""
        )
        # `==`, not `in` a set: a malformed (unhashable) value must compare unequal.
        ours = controller == options.controller_name or (
            options.serve_nginx and controller == NGINX_CONTROLLER
        )
        known[str(meta.get("name"))] = _Class(
            str(controller), ours, ours and str(default).lower() == "true"
        )
    return known


def left_out(
    ingress: KubeObject, classes: Iterable[KubeObject], options: TranslateOptions
) -> LeftOut | None:
    """None if this controller serves the Ingress, else why not."""
    return classifier(classes, options)(ingress)


def classifier(
    classes: Iterable[KubeObject], options: TranslateOptions
) -> Callable[[KubeObject], LeftOut | None]:
    """:func:`left_out` for many Ingresses: the IngressClasses are read once, not per Ingress."""
    known = _classes(classes, options)
    has_default = any(found.default for found in known.values())
    return lambda ingress: _left_out(ingress, known, has_default, options)


def _left_out(
    ingress: KubeObject, known: Mapping[str, _Class], has_default: bool, options: TranslateOptions
) -> LeftOut | None:
    meta = ingress.get("metadata") or {}
    meta = meta if isinstance(meta, Mapping) else {}
    spec = ingress.get("spec") or {}
    class_name = spec.get("ingressClassName") if isinstance(spec, Mapping) else None
    if class_name is not None:
        # A class name that is not a string (offline input only) is claimed so
        # that translate reports it instead of it vanishing silently.
        if not isinstance(class_name, str):
            return None
        if class_name not in known:
            return LeftOut(
                _ingress_ref(meta),
                UNDEFINED,
                f"spec.ingressClassName {class_name!r} names no IngressClass; "
                "no controller serves this Ingress",
            )
        found = known[class_name]
        if found.ours:
            return None
        return LeftOut(
            _ingress_ref(meta),
            FOREIGN,
            f"IngressClass {class_name!r} belongs to {found.controller!r}",
        )
    annotations = meta.get("annotations") or {}
    legacy = annotations.get(LEGACY_CLASS_ANNOTATION) if isinstance(annotations, Mapping) else None
    if legacy is not None:
        if legacy == options.ingress_class or (options.serve_nginx and legacy == NGINX_CLASS):
            return None
        return LeftOut(
            _ingress_ref(meta),
            FOREIGN,
            f"{LEGACY_CLASS_ANNOTATION} is {legacy!r}, not {options.ingress_class!r}",
        )
    if has_default:
        return None
    return LeftOut(
        _ingress_ref(meta),
        NO_CLASS,
        "no ingressClassName, and none of our IngressClasses is the cluster default",
    )


def _ingress_ref(meta: Mapping[str, Any]) -> ObjectRef:
    # Built only for an Ingress left out: most are served, and translate asks for each.
    return ObjectRef("Ingress", str(meta.get("namespace", "")), str(meta.get("name", "")))


def all_left_out(
    ingresses: Iterable[KubeObject], classes: Iterable[KubeObject], options: TranslateOptions
) -> list[LeftOut]:
    found = map(classifier(classes, options), ingresses)
    return sorted(item for item in found if item is not None)


def notices(left: Iterable[LeftOut]) -> list[Problem]:
    """Warning Events for the Ingresses that name an IngressClass nobody defined."""
    return [
        Problem(item.ingress, "spec.ingressClassName", item.reason, NOT_FOUND_EVENT)
        for item in left
        if item.kind == UNDEFINED
    ]
