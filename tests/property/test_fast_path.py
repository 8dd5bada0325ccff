"""The endpoint fast path gives exactly what a full translation gives."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.model import TranslateOptions
from haproxy_ingress.plan import plan, plan_endpoints
from haproxy_ingress.translate import refresh_endpoints, translate
from tests.property.strategies import clusters, endpoint_slices

OPTIONS = TranslateOptions()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(objects=clusters(), data=st.data())
def test_refreshing_endpoints_equals_translating_again(
    objects: list[dict[str, Any]], data: st.DataObject
) -> None:
    before = translate(ClusterView.from_objects(objects, OPTIONS)[0], OPTIONS)
    changed = data.draw(st.sampled_from(["web", "api"]))
    # The Service's slice is replaced by a new one: pods came, went, changed state.
    after_objects = [
        obj
        for obj in objects
        if not (
            obj["kind"] == "EndpointSlice"
            and obj["metadata"]["labels"]["kubernetes.io/service-name"] == changed
        )
    ] + [data.draw(endpoint_slices(changed))]
    view = ClusterView.from_objects(after_objects, OPTIONS)[0]
    refreshed = refresh_endpoints(before, view, {("default", changed)})
    assert refreshed == translate(view, OPTIONS)

    # Planning only the refreshed backends gives the full plan's answer,
    # whatever HAProxy ran before (slots placed from scratch, or after churn).
    applied = plan(None, before).target
    backends = [
        b for b, old in zip(refreshed.backends, before.backends, strict=True) if b is not old
    ]
    quick = plan_endpoints(applied, refreshed, backends)
    full = plan(applied, refreshed)
    if quick is None:
        assert full.reload  # only growth (a reload) is left to the full plan
    else:
        assert quick == full


def test_untouched_services_return_the_same_state() -> None:
    state = translate(ClusterView(), OPTIONS)
    assert refresh_endpoints(state, ClusterView(), {("default", "nothing")}) is state
