"""translate's ObjectMemo changes no result, whatever is shared between translations.

The reconciler keeps one memo across full syncs: each view holds the very
objects of the last one but for those an event replaced, and the ConfigMap
(the parse's other input: route options, access policy, drain) may change
under unchanged Ingresses and slices. Every translation through the memo must
equal one without it, problems included.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haproxy_ingress.cluster import WATCHED, ClusterView
from haproxy_ingress.model import TranslateOptions
from haproxy_ingress.settings import SettingsMemo
from haproxy_ingress.translate import ObjectMemo, translate
from tests.kube import configmap
from tests.property.strategies import clusters

OPTIONS = TranslateOptions()

# ConfigMap data that changes what an unchanged Ingress or slice translates
# to: its routes' options, the access policy they carry, its slots' states.
CONFIGMAPS = (
    {},
    {"proxy-body-size": "1m"},
    {"drain-terminating": "false"},
    {"whitelist-source-range": "10.0.0.0/8"},
    {"global-auth-url": "http://auth.default.svc.cluster.local/check"},
    {"proxy-request-buffering": "off", "timeout-server": "5s"},
)


def with_configmap(view: ClusterView, data: dict[str, str]) -> ClusterView:
    """``view``'s very objects, under a ConfigMap of ``data``."""
    return ClusterView.of(
        {kind.field: view.objects(kind) for kind in WATCHED},
        ClusterView.from_objects([configmap(data)], OPTIONS)[0].configmap,
    )


def mixed(first: ClusterView, second: ClusterView, picks: list[bool]) -> ClusterView:
    """Per kind, the objects of ``first`` or of ``second``: shared, not copied."""
    return ClusterView.of(
        {
            kind.field: (second if pick else first).objects(kind)
            for kind, pick in zip(WATCHED, picks, strict=True)
        }
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=clusters(),
    second=clusters(),
    picks=st.lists(
        st.lists(st.booleans(), min_size=len(WATCHED), max_size=len(WATCHED)),
        min_size=2,
        max_size=2,
    ),
    order=st.permutations(CONFIGMAPS),
)
def test_a_memo_kept_across_translations_changes_no_result(
    first: list[dict[str, Any]],
    second: list[dict[str, Any]],
    picks: list[list[bool]],
    order: list[dict[str, str]],
) -> None:
    # Each view mixes the objects of two clusters and is translated under
    # every ConfigMap in turn, through one memo swept after each translation.
    # With the annotations' parse kept as well, as the reconciler keeps it:
    # their settings are then the same objects from one translation to the
    # next, which the backends' memo keys on.
    memo, settings_memo = ObjectMemo(), SettingsMemo()
    a, _ = ClusterView.from_objects(first, OPTIONS)
    b, _ = ClusterView.from_objects(second, OPTIONS)
    for view in (a, *(mixed(a, b, pick) for pick in picks), b):
        for data in order:
            shown = with_configmap(view, data)
            memoised = translate(shown, OPTIONS, object_memo=memo, settings_memo=settings_memo)
            assert memoised == translate(shown, OPTIONS)
            memo.sweep()
