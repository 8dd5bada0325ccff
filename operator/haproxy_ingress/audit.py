"""The migration report: what each Ingress's annotations become here.

``haproxy-ingress audit -f PATH…`` reads YAML as ``render`` does;
``haproxy-ingress audit`` lists the live cluster (kubeconfig). Either way the
cluster view goes through :func:`translate` itself, and every annotation is
classified from translate's own Problems and the registry — there is no
second list of what is supported that could drift from what is served:

* ``honoured``: a key the registry declares, with no Problem on it;
* ``ignored``: served without it, with a Warning (``Unsupported``, ``Conflict``,
  ``InvalidSetting`` for an empty ingress-nginx value);
* ``refused``: a snippet (or part) never applied, with a Warning (``Refused``);
* ``fail-closed``: its paths answer 403 until it is fixed (``AccessDenied``);
* ``rejected``: the Ingress is not served at all (a bad value).
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

from haproxy_ingress import registry
from haproxy_ingress.cluster import WATCHED, ClusterView, KubeObject
from haproxy_ingress.ingress_class import left_out
from haproxy_ingress.model import DesiredState, ObjectRef, Problem, TranslateOptions
from haproxy_ingress.settings import GLOBAL_ACCESS_REFUSED
from haproxy_ingress.translate import translate

PREFIXES = (registry.ANNOTATION_PREFIX, registry.NGINX_PREFIX)


class Verdict(enum.StrEnum):
    HONOURED = "honoured"
    IGNORED = "ignored"
    REFUSED = "refused"
    FAIL_CLOSED = "fail-closed"
    REJECTED = "rejected"


# Problem event reasons → what they mean for the annotation they name.
_WARNINGS = {
    "Unsupported": Verdict.IGNORED,
    "Conflict": Verdict.IGNORED,
    "InvalidSetting": Verdict.IGNORED,  # an empty ingress-nginx value: its default applies
    "Refused": Verdict.REFUSED,
}


@dataclass(frozen=True)
class Line:
    annotation: str
    verdict: Verdict
    reason: str = ""


@dataclass(frozen=True)
class IngressReport:
    ingress: ObjectRef
    state: Verdict  # HONOURED (served), FAIL_CLOSED or REJECTED
    lines: tuple[Line, ...]
    other: tuple[Problem, ...]  # problems not about an annotation (backends, TLS…)


@dataclass(frozen=True)
class Report:
    ingresses: tuple[IngressReport, ...]

    @property
    def counts(self) -> Counter[Verdict]:
        return Counter(line.verdict for report in self.ingresses for line in report.lines)

    @property
    def failing(self) -> bool:
        """Anything that would not be served as written: fail closed or rejected."""
        return any(r.state is not Verdict.HONOURED for r in self.ingresses)


def _annotation(field: str) -> str | None:
    if field.startswith("metadata.annotations[") and field.endswith("]"):
        return field[len("metadata.annotations[") : -1]
    return None


def audit(view: ClusterView, options: TranslateOptions) -> Report:
    desired = translate(view, options)
    return report(view, desired, options)


def report(view: ClusterView, desired: DesiredState, options: TranslateOptions) -> Report:
    """Classify every annotation of every Ingress this controller would serve."""
    problems: dict[ObjectRef, list[Problem]] = {}
    for problem in desired.problems:
        if problem.source.kind == "Ingress":
            problems.setdefault(_key(problem.source), []).append(problem)
    served = {_key(route.source) for route in desired.routes}
    # The ConfigMap guards every route with a rule we cannot honour: all deny.
    everywhere = tuple(p for p in desired.problems if p.event == GLOBAL_ACCESS_REFUSED)
    reports = []
    for ingress in view.ingresses:
        meta = ingress.get("metadata") or {}
        ref = ObjectRef("Ingress", str(meta.get("namespace", "")), str(meta.get("name", "")))
        if left_out(ingress, view.ingress_classes, options) is not None:
            continue  # another controller's Ingress (render lists why)
        own = problems.get(ref, [])
        denied = bool(everywhere) or any(p.event == "AccessDenied" for p in own)
        state = (
            Verdict.FAIL_CLOSED
            if denied
            else Verdict.HONOURED
            if ref in served
            else Verdict.REJECTED
        )
        annotations = meta.get("annotations") or {}
        lines = tuple(
            _classify(name, [p for p in own if _annotation(p.field) == name], state)
            for name in sorted(k for k in annotations if isinstance(k, str))
            if name.startswith(PREFIXES)
        )
        other = everywhere + tuple(
            p for p in own if _annotation(p.field) is None and p.event != "AccessDenied"
        )
        reports.append(IngressReport(ref, state, lines, other))
    return Report(tuple(sorted(reports, key=lambda r: r.ingress)))


def _key(ref: ObjectRef) -> ObjectRef:
    return ObjectRef(ref.kind, ref.namespace, ref.name)  # without the uid


def _classify(name: str, problems: list[Problem], state: Verdict) -> Line:
    for problem in problems:
        verdict = _WARNINGS.get(problem.event)
        if verdict is None:
            # An error on this key: the Ingress is either fail-closed or rejected.
            return Line(
                name, state if state is not Verdict.HONOURED else Verdict.REJECTED, problem.reason
            )
    if problems:
        worst = max((_WARNINGS[p.event] for p in problems), key=list(Verdict).index)
        return Line(name, worst, "; ".join(p.reason for p in problems))
    if not _known(name):
        # translate let a key it does not know pass without a word: a gap
        # (issue 11 item 5 wants a Warning for each); say so rather than "honoured".
        return Line(name, Verdict.IGNORED, "not declared in the registry, and no Warning")
    return Line(name, Verdict.HONOURED)


def _known(name: str) -> bool:
    for prefix, table in (
        (registry.ANNOTATION_PREFIX, registry.BY_KEY),
        (registry.NGINX_PREFIX, registry.BY_NGINX),
    ):
        if name.startswith(prefix):
            setting = table.get(name[len(prefix) :])
            return setting is not None and setting.annotation
    return False


def render_text(result: Report) -> str:
    """The report as people read it: one block per Ingress, then the counts."""
    out: list[str] = []
    width = max((len(line.annotation) for r in result.ingresses for line in r.lines), default=0)
    for item in result.ingresses:
        state = {Verdict.HONOURED: "served", Verdict.FAIL_CLOSED: "FAIL-CLOSED (403)"}.get(
            item.state, "REJECTED (not served)"
        )
        out.append(f"Ingress {item.ingress.namespace}/{item.ingress.name}: {state}")
        for line in item.lines:
            reason = f"  {line.reason}" if line.reason else ""
            out.append(f"  {line.annotation:<{width}}  {line.verdict:<11}{reason}".rstrip())
        out.extend(f"  ({problem.message})" for problem in item.other)
    counts = result.counts
    states = Counter(r.state for r in result.ingresses)
    out.append(
        f"{len(result.ingresses)} Ingresses: {states[Verdict.HONOURED]} served, "
        f"{states[Verdict.FAIL_CLOSED]} fail closed, {states[Verdict.REJECTED]} rejected; "
        + ", ".join(f"{counts[v]} {v}" for v in Verdict)
        + " annotations"
    )
    return "\n".join(out) + "\n"


# Secrets hold private keys and are not needed to classify annotations.
_LISTED = tuple(kind for kind in WATCHED if kind.field != "secrets")
REQUEST_TIMEOUT = 30.0


async def live_objects(
    kubeconfig: str | None, context: str | None, options: TranslateOptions
) -> list[KubeObject]:
    """Every Ingress, IngressClass, Service and EndpointSlice, and the controller's ConfigMap."""
    # Only a live audit talks to a cluster: `audit -f` and `render` skip the
    # client's import (aiohttp and the kubeconfig loader, 0.15 s).
    from kubernetes_asyncio import client, config  # noqa: PLC0415

    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=kubeconfig, context=context, client_configuration=configuration
    )
    objects: list[KubeObject] = []
    async with client.ApiClient(configuration) as api:
        for kind in _LISTED:
            token: str | None = None
            while True:
                query: list[tuple[str, object]] = [("limit", 500)]
                if kind.field_selector:
                    query.append(("fieldSelector", kind.field_selector))
                if token:
                    query.append(("continue", token))
                page = await api.call_api(
                    kind.list_path,
                    "GET",
                    query_params=query,
                    response_types_map={200: "object"},
                    auth_settings=["BearerToken"],
                    _return_http_data_only=True,
                    _request_timeout=REQUEST_TIMEOUT,
                )
                # A LIST's items carry neither apiVersion nor kind.
                objects.extend(
                    {**item, "apiVersion": kind.api_version, "kind": kind.kind}
                    for item in page.get("items") or ()
                )
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    break
        try:
            configmap = await client.CoreV1Api(api).read_namespaced_config_map(
                options.configmap_name,
                options.configmap_namespace,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except client.ApiException as error:
            if error.status != 404:
                raise
        else:
            objects.append(
                {
                    **api.sanitize_for_serialization(configmap),
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                }
            )
    return objects
