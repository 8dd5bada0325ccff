"""translate's ObjectMemo across full syncs: cases the property test seldom draws.

tests/property/test_object_memo.py holds every memoised translation equal to
one without the memo over random clusters. These are the cases where what a
memo entry depends on is not in the objects it is kept under: which Ingress
a backend's problems are reported on, and an object refused for its name
(never remembered as good).
"""

from __future__ import annotations

from typing import Any

from haproxy_ingress.cluster import WATCHED, ClusterView
from haproxy_ingress.model import TranslateOptions
from haproxy_ingress.settings import SettingsMemo
from haproxy_ingress.translate import ObjectMemo, translate
from tests.kube import endpoint, endpoint_slice, ingress, ingress_class, path, rule, service

OPTIONS = TranslateOptions()


def view_of(objects: list[dict[str, Any]]) -> ClusterView:
    return ClusterView.from_objects(objects, OPTIONS)[0]


def test_a_backend_problem_names_the_oldest_ingress_of_this_translation() -> None:
    # The same (missing) Service and no slices: only who reports on it changes.
    gone = path("/", "gone")
    both = view_of(
        [
            ingress_class(),
            ingress("newer", rule("b.example.com", gone), created="2026-02-01T00:00:00Z"),
            ingress("older", rule("a.example.com", gone), created="2026-01-01T00:00:00Z"),
        ]
    )
    newer_only = ClusterView.of(
        {
            **{kind.field: both.objects(kind) for kind in WATCHED},
            "ingresses": tuple(i for i in both.ingresses if i["metadata"]["name"] == "newer"),
        }
    )
    # As the reconciler translates: the annotations' parse kept too, so the
    # backend's settings are the same object each time and the memo hits.
    memo, settings = ObjectMemo(), SettingsMemo()
    for view in (newer_only, both, newer_only, both):
        memoised = translate(view, OPTIONS, object_memo=memo, settings_memo=settings)
        assert memoised == translate(view, OPTIONS)
        memo.sweep()
    reported = {p.source.name for p in translate(both, OPTIONS).problems}
    assert reported == {"older"}


def test_an_object_refused_for_its_name_is_refused_on_every_translation() -> None:
    bad = service("web")
    bad["metadata"]["name"] = "Web\nX"  # not an RFC 1035 label
    good = endpoint_slice("web", endpoint("10.0.0.1"))
    view = view_of([ingress_class(), bad, good, ingress("ing", rule("a.example.com", path("/")))])
    memo, settings = ObjectMemo(), SettingsMemo()
    for _ in range(3):
        memoised = translate(view, OPTIONS, object_memo=memo, settings_memo=settings)
        assert [p.reason for p in memoised.problems if p.source.kind == "Service"]
        assert memoised == translate(view, OPTIONS)
        memo.sweep()
