"""Verifying the indexes after a watch gap: what is gone, and what replaced it under its name."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest

from haproxy_ingress import verifier
from haproxy_ingress.cluster import WATCHED, ClusterView
from haproxy_ingress.config import ControllerConfig
from haproxy_ingress.controller import Controller
from haproxy_ingress.verifier import Identity, compare
from tests.kube import ingress, rule

SITE = Identity("Ingress", "shop", "site")
GONE = Identity("Ingress", "shop", "gone")


def test_a_deleted_object_with_nothing_new_in_its_namespace_is_dropped_at_once() -> None:
    live = {"kept": SITE, "new": GONE._replace(namespace="blog")}
    result = compare({"old": GONE, "kept": SITE}, live, until=1.0)
    assert result.gone == {"old"} and result.successors == {}
    assert not result.awaiting(0.0)
    assert result.removed(set(), 0.0) == {"old"}


def test_a_recreated_object_keeps_its_predecessor_until_it_is_indexed() -> None:
    result = compare({"old": SITE, "other": GONE}, {"new": SITE}, until=10.0)
    assert result.gone == {"old", "other"}
    assert result.successors == {"old": {"new"}, "other": {"new"}}
    # The LIST came back before the watch: the successor is not in the indexes yet.
    assert result.behind({"old", "other"}, 1.0)
    assert result.removed({"old", "other"}, 1.0) == set()
    # The watch brought it: the predecessors go, nothing is awaited any more.
    assert not result.behind({"old", "other", "new"}, 2.0)
    assert result.removed({"old", "other", "new"}, 2.0) == {"old", "other"}


def test_a_renamed_ingress_keeps_the_old_one_until_every_newcomer_is_in() -> None:
    """Deleted "site", created "site-v2" and "shop" in its namespace during the gap."""
    live = {"v2": SITE._replace(name="site-v2"), "shop": SITE._replace(name="shop")}
    result = compare({"old": SITE}, live, until=10.0)
    assert result.successors == {"old": {"v2", "shop"}}
    assert result.removed({"old", "v2"}, 1.0) == set()  # the watch is still behind
    assert result.removed({"old", "v2", "shop"}, 1.0) == {"old"}


def test_a_successor_that_never_comes_is_awaited_for_a_bounded_time() -> None:
    result = compare({"old": SITE}, {"new": SITE}, until=10.0)
    assert result.behind({"old"}, 10.0)
    assert not result.behind({"old"}, 10.1)
    assert result.removed({"old"}, 10.1) == {"old"}


def test_only_the_same_kind_and_namespace_is_a_successor() -> None:
    live = {
        "a": Identity("Service", "shop", "site"),  # another kind
        "b": Identity("Ingress", "blog", "site"),  # another namespace
    }
    assert compare({"old": SITE}, live, until=10.0).successors == {}


def test_a_deleted_endpoint_slice_is_dropped_at_once_whatever_replaces_it() -> None:
    """Its pod IPs may be another tenant's by now: no server is kept on the chance."""
    web = Identity("EndpointSlice", "shop", "web-abcde")
    result = compare({"old": web}, {"new": web}, until=10.0)
    assert result.successors == {}
    assert result.removed(set(), 1.0) == {"old"}


def test_an_indexed_successor_is_not_awaited() -> None:
    """Both uids indexed (the watch brought the new one, the re-list kept the old)."""
    result = compare({"old": SITE, "new": SITE}, {"new": SITE}, until=10.0)
    assert result.gone == {"old"} and result.successors == {}


def test_the_verification_lists_each_kept_secret_type_on_the_server() -> None:
    """A Secret of another type is never indexed, so it must never be awaited."""
    secrets = next(kind for kind in WATCHED if kind.kind == "Secret")
    assert secrets.list_selectors == ("type=kubernetes.io/tls", "type=Opaque")
    ingresses = next(kind for kind in WATCHED if kind.kind == "Ingress")
    assert ingresses.list_selectors == (None,)


class Api:
    """The API server's metadata-only LISTs, two items per page."""

    def __init__(self, items: dict[tuple[str, str | None], list[dict[str, Any]]]) -> None:
        self.items = items
        self.calls: list[tuple[str, dict[str, object]]] = []

    async def call_api(self, path: str, method: str, **kwargs: Any) -> dict[str, Any]:
        query = dict(kwargs["query_params"])
        self.calls.append((path, query))
        selector = typing.cast(str | None, query.get("fieldSelector"))
        items = self.items.get((path, selector), [])
        start = int(typing.cast(str, query.get("continue") or 0))
        page = items[start : start + 2]
        more = start + 2 < len(items)
        return {"items": page, "metadata": {"continue": str(start + 2) if more else None}}


def meta(uid: str, name: str, namespace: str = "shop", **labels: str) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "name": name, "namespace": namespace, "labels": labels}}


async def test_the_lists_are_paginated_and_keep_what_the_indexes_would() -> None:
    slices = "/apis/discovery.k8s.io/v1/endpointslices"
    secrets = "/api/v1/secrets"
    api = Api(
        {
            (slices, None): [
                meta("s1", "web-1", **{"kubernetes.io/service-name": "web"}),
                meta("s2", "mirror"),  # no Service: never indexed, never a successor
                meta("s3", "web-2", **{"kubernetes.io/service-name": "web"}),
            ],
            (secrets, "type=kubernetes.io/tls"): [meta("t1", "cert")],
            (secrets, "type=Opaque"): [meta("o1", "users")],
        }
    )
    live = await verifier.list_identities(typing.cast(Any, api), _kind("EndpointSlice"))
    assert set(live) == {"s1", "s3"}
    assert live["s3"] == Identity("EndpointSlice", "shop", "web-2")
    assert [q.get("continue") for _, q in api.calls] == [None, "2"]
    assert set(await verifier.list_identities(typing.cast(Any, api), _kind("Secret"))) == {
        "t1",
        "o1",
    }


def _kind(name: str) -> Any:
    return next(kind for kind in WATCHED if kind.kind == name)


async def test_the_controller_serves_the_predecessor_until_the_successor_is_indexed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An Ingress deleted and recreated during a gap, the LIST back before the watch."""
    old = ingress("site", rule("a.example"), namespace="shop", uid="old")
    new = ingress("site", rule("b.example"), namespace="shop", uid="new")
    gone = ingress("gone", rule("c.example"), namespace="blog", uid="gone")  # nothing new there
    indexed: list[dict[str, Any]] = [old, gone]

    async def list_identities(api: object, kind: Any) -> dict[str, Identity]:
        if kind.kind != "Ingress":
            return {}
        return {"new": Identity("Ingress", "shop", "site")}

    monkeypatch.setattr(verifier, "list_identities", list_identities)
    controller = Controller(
        ControllerConfig(state_dir=tmp_path),
        lambda configmap: ClusterView(ingresses=tuple(indexed)),
    )
    controller._api = typing.cast(Any, object())
    assert await controller.verify_indexes() == 2
    assert [o["metadata"]["uid"] for o in controller.snapshot().ingresses] == ["old"]
    assert controller._behind()
    indexed.append(new)  # Kopf's watch is back
    assert [o["metadata"]["uid"] for o in controller.snapshot().ingresses] == ["new"]
    assert not controller._behind()
