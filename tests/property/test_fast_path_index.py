"""The endpoint fast path as the controller runs it, over a run of EndpointSlice changes.

Each change goes into a ServiceIndex as the handlers file it; the fast path
reads only the changed Services' objects (IndexedView.of_services) and finds
their backends through the BackendIndex of the first full translation,
refreshing the state the change before refreshed. After every change, it must
give what a full translation of the whole view gives, and plan what the full
plan plans.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haproxy_ingress.cluster import (
    SERVICE_NAME_LABEL,
    WATCHED,
    ClusterView,
    IndexedView,
    ServiceIndex,
    ServiceKey,
)
from haproxy_ingress.model import DesiredState, Problem, TranslateOptions
from haproxy_ingress.plan import plan, plan_endpoints
from haproxy_ingress.translate import BackendIndex, refresh_services, translate
from tests.kube import ingress, path, rule
from tests.property.strategies import clusters, endpoint_slices

SERVICES = ("web", "api")


def _indexed(objects: list[dict[str, Any]], options: TranslateOptions) -> tuple[Any, ServiceIndex]:
    """The handlers' indexes of ``objects`` (Kopf's for the kinds it keeps) and their view."""
    view, _ = ClusterView.from_objects(objects, options)
    services = ServiceIndex()
    kopf: dict[str, dict[Any, list[Any]]] = {kind.field: {None: []} for kind in WATCHED}
    for kind in WATCHED:
        for obj in view.objects(kind):
            if services.holds(kind.kind):
                services.put(kind.kind, obj)
            else:
                kopf[kind.field][None].append(obj)
    return IndexedView(kopf, services), services


@st.composite
def changes(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """One slice event: a new or changed slice ("put"), possibly of another Service than
    before (its label changed), or a deletion ("drop")."""
    service = draw(st.sampled_from(SERVICES))
    obj = draw(endpoint_slices(service))
    # A few names, so that events add slices, replace them, move them and delete them.
    obj["metadata"]["name"] = f"slice-{draw(st.integers(0, 2))}"
    return draw(st.sampled_from(["put", "put", "put", "drop"])), obj


def _deleted_slices_problems(problems: tuple[Problem, ...], live: set[str]) -> set[Problem]:
    return {p for p in problems if p.source.kind == "EndpointSlice" and p.source.name not in live}


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    objects=clusters(),
    events=st.lists(changes(), min_size=1, max_size=6),
    passthrough=st.booleans(),
    passed_service=st.sampled_from(SERVICES),
)
def test_a_run_of_slice_changes_through_the_indexes_equals_translating_again(
    objects: list[dict[str, Any]],
    events: list[tuple[str, dict[str, Any]]],
    passthrough: bool,
    passed_service: str,
) -> None:
    options = TranslateOptions(ssl_passthrough=passthrough)
    # Each Service behind two backends (its port by number and by name): a
    # Service's backends are several places in the state.
    both = ingress(
        "both",
        rule(
            "both.example.com",
            *(path(f"/{s}/{p}", s, p) for s in SERVICES for p in (80, "http")),
        ),
    )
    # A passthrough host (its pods go to a pool backend, planned in full).
    passing = ingress(
        "passing",
        rule("pass.example.com", path("/", passed_service)),
        annotations={"nginx.ingress.kubernetes.io/ssl-passthrough": "true"},
    )
    view, services = _indexed([*objects, both, passing], options)
    state = translate(view(None), options)
    index = BackendIndex(state)
    applied = plan(None, state).target
    for event, obj in events:
        before = copy.deepcopy(obj)
        # The Services whose servers change: the slice's, and the one it left
        # (the handlers ask for both).
        changed: set[ServiceKey] = {("default", obj["metadata"]["labels"][SERVICE_NAME_LABEL])}
        if event == "put":
            left = services.put("EndpointSlice", obj)
        else:
            left = services.drop("EndpointSlice", obj)
        changed |= {left} if left is not None else set()
        assert obj == before  # filed as it is: the index never changes an object
        fresh = refresh_services(state, view.of_services(changed), changed, index)
        whole = translate(view(None), options)
        # A slice deleted outright keeps its problems until the next full
        # translation (refresh_endpoints says so); everything else is equal.
        live = {s["metadata"]["name"] for s in services.endpoint_slices()}
        assert set(whole.problems) <= set(fresh.desired.problems)
        assert set(fresh.desired.problems) - set(whole.problems) <= _deleted_slices_problems(
            state.problems, live
        )
        assert dataclasses.replace(fresh.desired, problems=whole.problems) == whole
        # The backends it says it re-derived are exactly those that are new objects.
        assert [id(b) for b in fresh.backends] == [
            id(b)
            for b, old in zip(fresh.desired.backends, state.backends, strict=True)
            if b is not old
        ]
        assert all((b.service.namespace, b.service.name) in changed for b in fresh.backends)
        _plans_agree(applied, fresh.desired, fresh.backends, state)
        applied = plan(applied, fresh.desired).target
        state = fresh.desired


def _plans_agree(applied: Any, desired: DesiredState, backends: Any, last: DesiredState) -> None:
    """Planning only the re-derived backends gives the full plan's answer (as sync does)."""
    if desired.passthrough != last.passthrough:
        return  # the reconciler takes the full plan then
    layouts = {layout.name: layout for layout in applied.structure.backends}
    quick = plan_endpoints(applied, desired, backends, layouts=layouts)
    full = plan(applied, desired)
    if quick is None:
        assert full.reload  # only growth (a reload) is left to the full plan
    else:
        assert quick == full
        assert quick == plan_endpoints(applied, desired, backends)  # layouts found by a walk
