from __future__ import annotations

import dataclasses

from haproxy_ingress.cluster import WATCHED, ClusterView, uids, without
from haproxy_ingress.model import TranslateOptions


def test_the_view_has_one_field_per_watched_kind() -> None:
    fields = [f.name for f in dataclasses.fields(ClusterView)]
    assert fields == [kind.field for kind in WATCHED] + ["configmap", "header_configmaps"]


def test_every_watched_kind_lands_in_its_own_field_and_back_out() -> None:
    objects = [
        {
            "apiVersion": kind.api_version,
            "kind": kind.kind,
            "metadata": {"namespace": "default", "name": kind.field, "uid": kind.field},
        }
        for kind in WATCHED
    ]
    stranger = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    view, unknown = ClusterView.from_objects([*objects, stranger], TranslateOptions())
    assert unknown == [stranger]
    for kind in WATCHED:
        assert [o["metadata"]["name"] for o in view.objects(kind)] == [kind.field]
    assert uids(view) == {kind.field for kind in WATCHED}
    assert uids(without(view, {"secrets", "ingresses"})) == uids(view) - {"secrets", "ingresses"}


def test_list_paths_follow_the_api_groups() -> None:
    paths = {kind.kind: (kind.list_path, kind.field_selector) for kind in WATCHED}
    assert paths["Ingress"] == ("/apis/networking.k8s.io/v1/ingresses", None)
    assert paths["Secret"] == ("/api/v1/secrets", "type=kubernetes.io/tls")
