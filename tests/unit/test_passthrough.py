"""ssl-passthrough: what translate grants, what plan does with the pool, what is saved."""

from __future__ import annotations

import dataclasses
from typing import Any

from haproxy_ingress import serving, state
from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.model import (
    DesiredState,
    Endpoint,
    GlobalSettings,
    ObjectRef,
    Passthrough,
    RoutingMaps,
    ServerState,
    ServiceRef,
    TranslateOptions,
)
from haproxy_ingress.plan import (
    PASSTHROUGH_MAP,
    PASSTHROUGH_POOL_MIN,
    AddServer,
    ReplaceMap,
    SetServer,
    hold_unconfirmed,
    plan,
)
from haproxy_ingress.translate import PASSTHROUGH_FLAG_OFF, refresh_endpoints, translate
from tests.kube import endpoint, endpoint_slice, ingress, ingress_class, path, rule, service

ON = TranslateOptions(ssl_passthrough=True)
OFF = TranslateOptions()
NGINX = "nginx.ingress.kubernetes.io/ssl-passthrough"
OURS = "haproxy-ingress.kopf.dev/ssl-passthrough"


def run(*objects: dict[str, Any], options: TranslateOptions = ON) -> DesiredState:
    base = (
        ingress_class(),
        service("web"),
        endpoint_slice("web", endpoint("10.0.0.1")),
        service("tls", {"name": "https", "port": 443}),
        endpoint_slice("tls", endpoint("10.0.1.1"), ports=[{"name": "https", "port": 8443}]),
    )
    view, _ = ClusterView.from_objects((*base, *objects), options)
    return translate(view, options)


def problems(desired: DesiredState, name: str) -> list[tuple[str, str, str]]:
    return [(p.field, p.event, p.reason) for p in desired.problems if p.source.name == name]


def pt_ingress(name: str = "pt", *rules: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    annotations = {NGINX: "true", **kwargs.pop("annotations", {})}
    rules = rules or (rule("pt.example.com", path("/", "tls", 443)),)
    return ingress(name, *rules, annotations=annotations, **kwargs)


# --- translate ---------------------------------------------------------------------


def test_flag_off_warns_and_serves_as_any_ingress() -> None:
    desired = run(pt_ingress(), options=OFF)
    assert problems(desired, "pt") == [
        (f"metadata.annotations[{NGINX}]", "Unsupported", PASSTHROUGH_FLAG_OFF)
    ]
    assert desired.passthrough == ()
    assert not desired.ssl_passthrough
    assert {r.host for r in desired.routes} == {"pt.example.com"}
    # The same as without the annotation, problems aside.
    plain = run(ingress("pt", rule("pt.example.com", path("/", "tls", 443))), options=OFF)
    assert dataclasses.replace(desired, problems=()) == plain


def test_host_gets_the_root_paths_backend_and_no_http_route() -> None:
    desired = run(
        pt_ingress(
            "pt",
            rule("PT.example.com", path("/api", "web"), path("/", "tls", 443), path("/x", "web")),
            rule("second.example.com", path("/only", "tls", 443), path("/other", "web")),
        )
    )
    assert problems(desired, "pt") == []
    assert [(p.host, p.service, p.endpoints) for p in desired.passthrough] == [
        ("pt.example.com", ServiceRef("default", "tls", "443"), (Endpoint("10.0.1.1", 8443),)),
        ("second.example.com", ServiceRef("default", "tls", "443"), (Endpoint("10.0.1.1", 8443),)),
    ]
    # A TCP connection has no path: the hosts' rules are not HTTP routes;
    # plain HTTP to them is redirected to https.
    assert desired.routes == ()
    assert desired.backends == ()
    assert dict(desired.maps.redirect) == {
        "pt.example.com": "https",
        "second.example.com": "https",
    }


def test_ours_prefix_and_false() -> None:
    assert [
        p.host for p in run(pt_ingress(annotations={NGINX: "false", OURS: "true"})).passthrough
    ] == ["pt.example.com"]
    assert run(pt_ingress(annotations={NGINX: "false"})).passthrough == ()


def test_bad_value_rejects_the_ingress() -> None:
    bad = ingress("pt", rule("pt.example.com", path("/", "tls", 443)), annotations={OURS: "maybe"})
    desired = run(bad)
    assert [(f, e) for f, e, _ in problems(desired, "pt")] == [
        (f"metadata.annotations[{OURS}]", "Rejected")
    ]
    assert desired.passthrough == ()
    assert desired.routes == ()


def test_wildcard_and_hostless_rules_are_not_passed_through() -> None:
    desired = run(
        pt_ingress(
            "pt",
            rule("*.wild.example.com", path("/", "tls", 443)),
            rule(None, path("/", "tls", 443)),
            rule("exact.example.com", path("/", "tls", 443)),
        )
    )
    assert [p.host for p in desired.passthrough] == ["exact.example.com"]
    reasons = [r for _, e, r in problems(desired, "pt") if e == "Unsupported"]
    assert len(reasons) == 2 and all("exact host" in r for r in reasons)
    # Their TLS is terminated here: they stay HTTP routes.
    assert {r.host for r in desired.routes} == {"*.wild.example.com", ""}


def test_access_rule_keeps_tls_terminated() -> None:
    desired = run(
        pt_ingress(annotations={"nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8"})
    )
    assert desired.passthrough == ()
    assert any(e == "Unsupported" and "access rule" in r for _, e, r in problems(desired, "pt"))
    assert {r.host for r in desired.routes} == {"pt.example.com"}
    assert all(r.policy for r in desired.routes)


def test_l7_annotations_are_reported_as_not_applying() -> None:
    desired = run(
        pt_ingress(
            annotations={
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "30",
                "nginx.ingress.kubernetes.io/rewrite-target": "/x",
                "nginx.ingress.kubernetes.io/ssl-redirect": "true",
            }
        )
    )
    assert sorted(f for f, e, _ in problems(desired, "pt")) == [
        "metadata.annotations[nginx.ingress.kubernetes.io/proxy-read-timeout]",
        "metadata.annotations[nginx.ingress.kubernetes.io/rewrite-target]",
    ]
    assert len(desired.passthrough) == 1


def test_older_ingress_of_another_namespace_keeps_its_host() -> None:
    desired = run(
        ingress("site", rule("pt.example.com", path("/", "web")), created="2026-01-01T00:00:00Z"),
        service("tls", {"name": "https", "port": 443}, namespace="other"),
        pt_ingress(namespace="other", created="2026-02-01T00:00:00Z"),
    )
    assert desired.passthrough == ()
    [reason] = [r for f, e, r in problems(desired, "pt") if f == f"metadata.annotations[{NGINX}]"]
    assert "is already served by Ingress default/site" in reason
    # The refused Ingress is served as any other (TLS terminated here).
    assert {(r.host, r.source.name) for r in desired.routes} == {("pt.example.com", "site")}


def test_older_passthrough_wins_and_newer_rules_are_told() -> None:
    desired = run(
        pt_ingress(created="2026-01-01T00:00:00Z"),
        ingress(
            "late", rule("pt.example.com", path("/late", "web")), created="2026-02-01T00:00:00Z"
        ),
        pt_ingress("late-pt", namespace="x", created="2026-03-01T00:00:00Z"),
    )
    assert [(p.host, p.source.name) for p in desired.passthrough] == [("pt.example.com", "pt")]
    assert [e for _, e, _ in problems(desired, "late")] == ["Conflict"]
    assert (f"metadata.annotations[{NGINX}]", "Conflict") in {
        (f, e) for f, e, _ in problems(desired, "late-pt")
    }


def test_server_alias_never_takes_a_passthrough_host() -> None:
    desired = run(
        pt_ingress(created="2026-01-01T00:00:00Z"),
        ingress(
            "alias",
            rule("a.example.com", path("/", "web")),
            annotations={"nginx.ingress.kubernetes.io/server-alias": "pt.example.com"},
            created="2026-02-01T00:00:00Z",
        ),
    )
    assert {r.host for r in desired.routes} == {"a.example.com"}
    assert [e for _, e, _ in problems(desired, "alias")] == ["Conflict"]


def test_endpoint_fast_path_refreshes_passthrough_pods() -> None:
    objects = (
        ingress_class(),
        service("tls", {"name": "https", "port": 443}),
        endpoint_slice("tls", endpoint("10.0.1.1"), ports=[{"name": "https", "port": 8443}]),
        pt_ingress(),
    )
    first = translate(ClusterView.from_objects(objects, ON)[0], ON)
    moved = (
        *objects[:2],
        endpoint_slice("tls", endpoint("10.0.1.2"), ports=[{"name": "https", "port": 8443}]),
        objects[3],
    )
    view = ClusterView.from_objects(moved, ON)[0]
    fast = refresh_endpoints(first, view, {("default", "tls")})
    assert fast.passthrough == translate(view, ON).passthrough
    assert fast.passthrough[0].endpoints == (Endpoint("10.0.1.2", 8443),)


# --- plan --------------------------------------------------------------------------

SETTINGS = GlobalSettings(slots_min=2)
SOURCE = ObjectRef("Ingress", "default", "pt")


def host(name: str, *addresses: int) -> Passthrough:
    return Passthrough(
        name,
        ServiceRef("default", name.split(".", maxsplit=1)[0], "443"),
        tuple(Endpoint(f"10.0.0.{a}", 8443) for a in addresses),
        SOURCE,
    )


def wanted(*hosts: Passthrough, enabled: bool = True) -> DesiredState:
    return DesiredState(
        settings=SETTINGS,
        backends=(),
        default_backend=None,
        routes=(),
        maps=RoutingMaps(),
        certificates=(),
        ssl_passthrough=enabled,
        passthrough=tuple(sorted(hosts)),
    )


def test_pool_is_allocated_up_front() -> None:
    first = plan(None, wanted())
    pool = first.target.structure.passthrough
    assert [b.name for b in pool] == [
        f"be_passthrough_{i}" for i in range(1, PASSTHROUGH_POOL_MIN + 1)
    ]
    assert all(b.slots == SETTINGS.slots_min for b in pool)
    assert first.target.sni == ()


def test_hosts_come_and_go_at_runtime() -> None:
    start = plan(None, wanted()).target
    added = plan(start, wanted(host("a.example.com", 1), host("b.example.com", 2)))
    assert not added.reload, added.reload_reasons
    assert added.target.sni == (
        ("a.example.com", "be_passthrough_1"),
        ("b.example.com", "be_passthrough_2"),
    )
    # Servers first, then the map (apply runs server commands first).
    assert added.operations[-1] == ReplaceMap(PASSTHROUGH_MAP, added.target.sni)
    assert SetServer("be_passthrough_1", 1, Endpoint("10.0.0.1", 8443)) in added.operations

    # b goes, c comes in the same plan: c must not get b's just-freed backend.
    swapped = plan(added.target, wanted(host("a.example.com", 1), host("c.example.com", 3)))
    assert not swapped.reload
    assert dict(swapped.target.sni) == {
        "a.example.com": "be_passthrough_1",
        "c.example.com": "be_passthrough_3",
    }
    assert SetServer("be_passthrough_2", 1, None, Endpoint("10.0.0.2", 8443)) in swapped.operations
    # A later host may take it.
    later = plan(
        swapped.target,
        wanted(host("a.example.com", 1), host("c.example.com", 3), host("d.example.com", 4)),
    )
    assert not later.reload and dict(later.target.sni)["d.example.com"] == "be_passthrough_2"


def test_pods_move_in_slots_and_grow_at_run_time() -> None:
    start = plan(None, wanted(host("a.example.com", 1))).target
    scaled = plan(start, wanted(host("a.example.com", 1, 2)))
    assert not scaled.reload
    assert scaled.target.servers["be_passthrough_1"] == (
        Endpoint("10.0.0.1", 8443),
        Endpoint("10.0.0.2", 8443),
    )
    grown = plan(scaled.target, wanted(host("a.example.com", 1, 2, 3)))
    assert not grown.reload
    third = Endpoint("10.0.0.3", 8443)
    settings = SETTINGS.backend
    assert grown.operations == (
        AddServer("be_passthrough_1", 3, settings, third, pool=True),
        SetServer("be_passthrough_1", 3, third),
    )
    # Under balance source (no dynamic servers in 2.6) it reloads.
    source = dataclasses.replace(SETTINGS, backend=dataclasses.replace(settings, balance="source"))
    two = dataclasses.replace(wanted(host("a.example.com", 1, 2)), settings=source)
    three = dataclasses.replace(wanted(host("a.example.com", 1, 2, 3)), settings=source)
    grown = plan(plan(None, two).target, three)
    assert grown.reload_reasons == (
        "passthrough backend be_passthrough_1 (a.example.com) needs 3 server slots, has 2",
    )


def test_exhausted_pool_grows_with_one_reload() -> None:
    hosts = [host(f"h{i}.example.com", i) for i in range(1, PASSTHROUGH_POOL_MIN + 2)]
    start = plan(None, wanted(*hosts[:-1])).target
    assert not plan(start, wanted(*hosts[:-1])).reload
    result = plan(start, wanted(*hosts))
    assert result.reload_reasons == (
        f"passthrough pool exhausted: {len(hosts)} hosts, {PASSTHROUGH_POOL_MIN} pool backends",
    )
    assert len(result.target.structure.passthrough) == 8
    # Existing hosts keep their backends.
    assert dict(result.target.sni).items() >= dict(start.sni).items()


def test_a_new_host_prefers_a_free_backend_with_enough_slots() -> None:
    start = plan(None, wanted(host("a.example.com", 1, 2, 3))).target  # be_passthrough_1: 4 slots
    freed = plan(start, wanted(host("b.example.com", 9))).target
    result = plan(freed, wanted(host("b.example.com", 9), host("c.example.com", 4, 5, 6)))
    assert not result.reload, result.reload_reasons
    assert dict(result.target.sni)["c.example.com"] == "be_passthrough_1"


def test_turning_passthrough_on_or_off_reloads() -> None:
    off = plan(None, wanted(enabled=False)).target
    assert off.structure.passthrough == ()
    assert plan(off, wanted()).reload_reasons == ("ssl passthrough turned on",)
    on = plan(None, wanted()).target
    assert plan(on, wanted(enabled=False)).reload_reasons == ("ssl passthrough turned off",)


def test_unconfirmed_view_adds_no_passthrough_server() -> None:
    current = plan(None, wanted(host("a.example.com", 1))).target
    held = hold_unconfirmed(wanted(host("a.example.com", 1, 2), host("b.example.com", 3)), current)
    assert {p.host: p.endpoints for p in held.passthrough} == {
        "a.example.com": (Endpoint("10.0.0.1", 8443),),
        "b.example.com": (),
    }
    drained = Endpoint("10.0.0.1", 8443, ServerState.DRAIN)
    current = plan(
        None, wanted(Passthrough("a.example.com", host("a.x", 1).service, (drained,), SOURCE))
    ).target
    held = hold_unconfirmed(wanted(host("a.example.com", 1)), current)
    assert held.passthrough[0].endpoints == (drained,)


def test_state_round_trip_keeps_the_pool_and_the_sni_map() -> None:
    target = plan(None, wanted(host("a.example.com", 1))).target
    assert state.load(state.dump(target)) == target


def test_passthrough_pods_are_counted_and_their_absence_explained() -> None:
    desired = run(pt_ingress(), ingress("w", rule("w.example.com", path("/", "web"))))
    observed = serving.backends(desired)
    assert [b.name for b in observed] == ["be_default_web_80", "pt.example.com (ssl-passthrough)"]
    assert serving.endpoint_counts(observed)["ready"] == 2
    empty = dataclasses.replace(
        desired, passthrough=(dataclasses.replace(desired.passthrough[0], endpoints=()),)
    )
    assert "pt.example.com (ssl-passthrough)" in serving.unusable(serving.backends(empty))
