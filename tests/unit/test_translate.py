"""Ingress semantics: literal Kubernetes objects in, desired state out (Contour-style tables)."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest

from haproxy_ingress.cluster import ClusterView, uids, without
from haproxy_ingress.model import (
    BackendSettings,
    DesiredState,
    Endpoint,
    ServerState,
    ServiceRef,
    TranslateOptions,
)
from haproxy_ingress.translate import translate
from tests.certs import secret_data
from tests.kube import (
    backend,
    configmap,
    endpoint,
    endpoint_slice,
    ingress,
    ingress_class,
    path,
    rule,
    service,
    tls_secret,
)

OPTIONS = TranslateOptions()


def run(*objects: dict[str, Any], options: TranslateOptions = OPTIONS) -> DesiredState:
    view, unknown = ClusterView.from_objects(objects, options)
    assert not unknown
    return translate(view, options)


def with_defaults(*objects: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """Our IngressClass plus a Service web:80(http→8080) with one ready pod."""
    return (
        ingress_class(),
        service("web"),
        endpoint_slice("web", endpoint("10.0.0.1")),
        *objects,
    )


def routes(state: DesiredState) -> set[tuple[str, str, str, str]]:
    return {(r.host, r.path, r.path_type.value, r.backend) for r in state.routes}


def messages(state: DesiredState) -> list[str]:
    return [f"{p.source}: {p.message}" for p in state.problems]


# --- ingress class -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("objects", "ours"),
    [
        pytest.param([ingress_class()], True, id="class-name-ours"),
        pytest.param(
            [ingress_class(controller="k8s.io/ingress-nginx")], False, id="class-name-other"
        ),
        pytest.param([], False, id="class-name-missing-class"),
    ],
)
def test_ingress_class_name(objects: list[dict[str, Any]], ours: bool) -> None:
    state = run(*objects, service("web"), ingress("a", rule("a.example.com", path("/"))))
    assert bool(state.routes) is ours


@pytest.mark.parametrize(
    ("annotation", "default_class", "ours"),
    [
        ("haproxy", False, True),
        ("nginx", False, False),
        ("nginx", True, False),  # an explicit other class beats our default
        (None, True, True),  # no class at all: the default class takes it
        (None, False, False),
    ],
)
def test_legacy_annotation_and_default_class(
    annotation: str | None, default_class: bool, ours: bool
) -> None:
    annotations = {"kubernetes.io/ingress.class": annotation} if annotation else {}
    state = run(
        ingress_class(default=default_class),
        service("web"),
        ingress("a", rule("a.example.com", path("/")), class_name=None, annotations=annotations),
    )
    assert bool(state.routes) is ours


def test_class_name_beats_legacy_annotation() -> None:
    state = run(
        ingress_class(),
        service("web"),
        ingress(
            "a",
            rule("a.example.com", path("/")),
            class_name="other",
            annotations={"kubernetes.io/ingress.class": "haproxy"},
        ),
    )
    assert state.routes == ()


# --- hosts -----------------------------------------------------------------------


def test_hosts_are_lowered_and_wildcards_kept() -> None:
    state = run(
        *with_defaults(
            ingress(
                "a",
                rule("Foo.Example.COM", path("/")),
                rule("*.Example.com", path("/")),
                rule(None, path("/any")),
            )
        )
    )
    assert routes(state) == {
        ("foo.example.com", "/", "Prefix", "be_default_web_80"),
        ("*.example.com", "/", "Prefix", "be_default_web_80"),
        ("", "/any", "Prefix", "be_default_web_80"),
    }
    assert state.maps.prefix == (
        ("foo.example.com/", "be_default_web_80"),
        ("*.example.com/", "be_default_web_80"),
        ("/any/", "be_default_web_80"),
    )
    assert ("/any", "be_default_web_80") in state.maps.exact


@pytest.mark.parametrize(
    "host",
    [
        "exa mple.com",
        "example.com\nbackend evil",
        "*.*.example.com",
        "foo.*.example.com",
        "*",
        "10.0.0.1",
        "-bad.example.com",
        "a" * 64 + ".example.com",
        "example.com:80",
        "exämple.com",
        "%[src].example.com",
        "*.10.0.0.1",
    ],
)
def test_invalid_hosts_reject_the_ingress(host: str) -> None:
    state = run(
        *with_defaults(
            ingress("bad", rule(host, path("/"))),
            ingress("good", rule("good.example.com", path("/"))),
        )
    )
    assert routes(state) == {("good.example.com", "/", "Prefix", "be_default_web_80")}
    assert len(state.problems) == 1
    assert state.problems[0].source.name == "bad"
    assert state.problems[0].field == "spec.rules[0].host"


def test_names_of_digits_that_are_no_address_are_hosts() -> None:
    state = run(*with_defaults(ingress("web", rule("1234", path("/")), rule("1.2.3", path("/")))))
    assert {host for host, *_ in routes(state)} == {"1234", "1.2.3"}
    assert not state.problems


def test_ingresses_with_the_same_annotations_each_get_their_own_problems() -> None:
    # translate parses a set of annotations once (settings_key); what it
    # finds is still reported on, and applied to, every Ingress that has it.
    bad = {"haproxy-ingress.kopf.dev/timeout-server": "soon", "team": "a"}
    good = {"haproxy-ingress.kopf.dev/timeout-server": "7s", "team": "b"}
    state = run(
        *with_defaults(
            ingress("a1", rule("a1.example.com", path("/")), annotations=bad),
            ingress("a2", rule("a2.example.com", path("/")), annotations={**bad, "team": "c"}),
            ingress("b1", rule("b1.example.com", path("/")), annotations=good),
            ingress("b2", rule("b2.example.com", path("/")), annotations=good),
        )
    )
    assert sorted((p.source.name, p.field) for p in state.problems) == [
        ("a1", "metadata.annotations[haproxy-ingress.kopf.dev/timeout-server]"),
        ("a2", "metadata.annotations[haproxy-ingress.kopf.dev/timeout-server]"),
    ]
    assert {host for host, *_ in routes(state)} == {"b1.example.com", "b2.example.com"}
    assert [b.settings.timeout_server for b in state.backends] == ["7s"]


# --- paths -------------------------------------------------------------------------


def test_path_types_to_map_keys() -> None:
    state = run(
        *with_defaults(
            ingress(
                "a",
                rule(
                    "h.example.com",
                    path("/exact", path_type="Exact"),
                    path("/prefix/", path_type="Prefix"),
                    path("/impl", path_type="ImplementationSpecific"),
                    path("/", path_type="Prefix"),
                ),
            )
        )
    )
    be = "be_default_web_80"
    assert set(state.maps.exact) == {("h.example.com/exact", be), ("h.example.com/prefix", be)}
    assert state.maps.prefix == (
        ("h.example.com/prefix/", be),
        ("h.example.com/impl", be),
        ("h.example.com/", be),
    )


def test_missing_path_means_root() -> None:
    state = run(*with_defaults(ingress("a", rule("h.example.com", path(None)))))
    assert routes(state) == {("h.example.com", "/", "Prefix", "be_default_web_80")}


def test_exact_beats_prefix_on_the_same_key() -> None:
    state = run(
        *with_defaults(
            service("other"),
            ingress(
                "a",
                rule(
                    "h.example.com",
                    path("/foo", "web", 80, "Prefix"),
                    path("/foo", "other", 80, "Exact"),
                ),
            ),
        )
    )
    assert ("h.example.com/foo", "be_default_other_80") in state.maps.exact
    assert ("h.example.com/foo/", "be_default_web_80") in state.maps.prefix


@pytest.mark.parametrize(
    "bad_path",
    [
        "relative",
        "/with space",
        "/semi;colon",
        "/hash#frag",
        "/query?x=1",
        '/quote"',
        "/back\\slash",
        "/new\nline",
        "/nul\x00",
        "/pct%zz",
        "/" + "a" * 1100,
        "/uni\u00e9",
    ],
)
def test_invalid_paths_reject_the_ingress(bad_path: str) -> None:
    state = run(*with_defaults(ingress("bad", rule("h.example.com", path(bad_path)))))
    assert state.routes == ()
    assert [p.field for p in state.problems] == ["spec.rules[0].http.paths[0].path"]


def test_invalid_path_type() -> None:
    state = run(*with_defaults(ingress("bad", rule("h.example.com", path("/", path_type="Regex")))))
    assert state.routes == ()
    assert state.problems[0].field == "spec.rules[0].http.paths[0].pathType"


# --- backends ----------------------------------------------------------------------


def test_port_by_name_and_number_resolve_to_target_ports() -> None:
    state = run(
        ingress_class(),
        service(
            "web",
            {"name": "http", "port": 80, "targetPort": "web"},
            {"name": "admin", "port": 81, "targetPort": 9090},
        ),
        endpoint_slice(
            "web",
            endpoint("10.0.0.1"),
            endpoint("10.0.0.2"),
            ports=[{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}],
        ),
        ingress(
            "a",
            rule("h.example.com", path("/", "web", 80), path("/admin", "web", "admin")),
        ),
    )
    by_name = {b.name: b for b in state.backends}
    assert [e.key for e in by_name["be_default_web_80"].endpoints] == [
        ("10.0.0.1", 8080),
        ("10.0.0.2", 8080),
    ]
    assert [e.key for e in by_name["be_default_web_admin"].endpoints] == [
        ("10.0.0.1", 9090),
        ("10.0.0.2", 9090),
    ]
    assert state.problems == ()


def test_unnamed_single_port_service() -> None:
    state = run(
        ingress_class(),
        service("api", {"port": 8000, "targetPort": 9000}),
        endpoint_slice("api", endpoint("10.0.0.9"), ports=[{"port": 9000, "protocol": "TCP"}]),
        ingress("a", rule("h.example.com", path("/", "api", 8000))),
    )
    assert state.backends[0].endpoints == (Endpoint("10.0.0.9", 9000),)


def test_endpoints_from_several_slices_are_merged_best_state_first() -> None:
    state = run(
        ingress_class(),
        service("web"),
        endpoint_slice("web", endpoint("10.0.0.1", ready=False), name="web-a"),
        endpoint_slice("web", endpoint("10.0.0.1"), endpoint("10.0.0.2"), name="web-b"),
        endpoint_slice("web", endpoint("fd00::1"), name="web-c", address_type="IPv6"),
        endpoint_slice("web", endpoint("db.example.com"), name="web-d", address_type="FQDN"),
        ingress("a", rule("h.example.com", path("/"))),
    )
    assert state.backends[0].endpoints == (
        Endpoint("10.0.0.1", 8080, ServerState.READY),
        Endpoint("10.0.0.2", 8080, ServerState.READY),
        Endpoint("fd00::1", 8080, ServerState.READY),
    )


@pytest.mark.parametrize(
    ("conditions", "state"),
    [
        ({"ready": True}, ServerState.READY),
        ({}, ServerState.READY),  # unset conditions mean ready
        ({"ready": False, "serving": True, "terminating": True}, ServerState.DRAIN),
        ({"ready": False, "serving": False, "terminating": True}, ServerState.MAINT),
        ({"ready": False}, ServerState.MAINT),
        ({"ready": False, "serving": True}, ServerState.MAINT),
    ],
)
def test_endpoint_conditions_to_state(conditions: dict[str, bool], state: ServerState) -> None:
    state_ = run(
        ingress_class(),
        service("web"),
        endpoint_slice("web", {"addresses": ["10.0.0.1"], "conditions": conditions}),
        ingress("a", rule("h.example.com", path("/"))),
    )
    assert state_.backends[0].endpoints[0].state is state


def test_missing_service_is_a_problem_and_answers_503() -> None:
    state = run(ingress_class(), ingress("a", rule("h.example.com", path("/", "ghost", 80))))
    assert routes(state) == {("h.example.com", "/", "Prefix", "be_default_ghost_80")}
    assert state.backends[0].endpoints == ()
    assert messages(state) == [
        "Ingress default/a: backend: Service default/ghost not found; its paths answer 503"
    ]


def test_missing_service_port_is_a_problem() -> None:
    state = run(*with_defaults(ingress("a", rule("h.example.com", path("/", "web", 81)))))
    assert state.backends[0].endpoints == ()
    assert "has no port 81" in messages(state)[0]


def test_external_name_service_is_left_out() -> None:
    state = run(
        ingress_class(),
        service("ext", type_="ExternalName"),
        service("web"),
        ingress("a", rule("h.example.com", path("/ext", "ext", 80), path("/", "web", 80))),
    )
    assert routes(state) == {("h.example.com", "/", "Prefix", "be_default_web_80")}
    assert "ExternalName" in messages(state)[0]


def test_resource_backend_rejects_the_ingress() -> None:
    bad = ingress("a", rule("h.example.com"))
    bad["spec"]["rules"][0]["http"]["paths"] = [
        {
            "path": "/",
            "pathType": "Prefix",
            "backend": {"resource": {"apiGroup": "x", "kind": "Bucket", "name": "b"}},
        }
    ]
    state = run(*with_defaults(bad))
    assert state.routes == ()
    assert "resource backends are not supported" in messages(state)[0]


def test_invalid_endpoint_address_is_reported_on_the_slice() -> None:
    state = run(
        ingress_class(),
        service("web"),
        endpoint_slice("web", endpoint("10.0.0.1; rm -rf"), name="evil"),
        ingress("a", rule("h.example.com", path("/"))),
    )
    assert state.backends[0].endpoints == ()
    assert state.problems[0].source.kind == "EndpointSlice"


# --- default backends ----------------------------------------------------------------


def test_ingress_default_backend_covers_its_hosts() -> None:
    state = run(
        *with_defaults(
            service("fallback"),
            ingress(
                "a",
                rule("h.example.com", path("/app")),
                default_backend=backend("fallback", 80),
            ),
        )
    )
    assert routes(state) == {
        ("h.example.com", "/app", "Prefix", "be_default_web_80"),
        ("h.example.com", "/", "Prefix", "be_default_fallback_80"),
    }


def test_ingress_with_only_default_backend_serves_any_host() -> None:
    state = run(*with_defaults(ingress("a", default_backend=backend("web", 80))))
    assert routes(state) == {("", "/", "Prefix", "be_default_web_80")}


def test_controller_default_backend_from_configmap_and_flag() -> None:
    state = run(*with_defaults(configmap({"default-backend-service": "default/web:80"})))
    assert state.default_backend == "be_default_web_80"
    flag = TranslateOptions(default_backend=ServiceRef("default", "web", "http"))
    assert run(*with_defaults(), options=flag).default_backend == "be_default_web_http"
    assert run(*with_defaults()).default_backend is None


def test_empty_ingress_is_rejected() -> None:
    state = run(*with_defaults(ingress("a")))
    assert messages(state) == [
        "Ingress default/a: spec: has neither rules with paths nor a defaultBackend"
    ]


# --- conflicts ---------------------------------------------------------------------


def test_conflicting_path_goes_to_the_older_ingress() -> None:
    state = run(
        *with_defaults(
            service("other"),
            ingress(
                "young",
                rule("h.example.com", path("/", "other", 80)),
                created="2026-02-01T00:00:00Z",
            ),
            ingress(
                "old", rule("h.example.com", path("/", "web", 80)), created="2026-01-01T00:00:00Z"
            ),
        )
    )
    assert routes(state) == {("h.example.com", "/", "Prefix", "be_default_web_80")}
    assert messages(state) == [
        "Ingress default/young: spec.rules: host 'h.example.com' path '/' (Prefix) is "
        "already served by Ingress default/old"
    ]


def test_same_age_conflict_is_decided_by_namespace_then_name() -> None:
    state = run(
        *with_defaults(
            service("web", namespace="b"),
            service("web", namespace="a"),
            ingress("z", rule("h.example.com", path("/")), namespace="b"),
            ingress("z", rule("h.example.com", path("/")), namespace="a"),
        )
    )
    assert {r.backend for r in state.routes} == {"be_a_web_80"}


def test_same_path_with_other_type_is_no_conflict() -> None:
    state = run(
        *with_defaults(
            ingress("one", rule("h.example.com", path("/foo", path_type="Exact"))),
            ingress("two", rule("h.example.com", path("/foo", path_type="Prefix"))),
        )
    )
    assert state.problems == ()
    assert len(state.routes) == 2


def test_trailing_slash_prefix_conflicts_with_plain_prefix() -> None:
    state = run(
        *with_defaults(
            ingress("one", rule("h.example.com", path("/foo"))),
            ingress("two", rule("h.example.com", path("/foo/")), created="2026-03-01T00:00:00Z"),
        )
    )
    assert [p.source.name for p in state.problems] == ["two"]


# --- TLS -----------------------------------------------------------------------------


def make_cert(host: str) -> tuple[str, str]:
    """Base64 ``tls.crt``/``tls.key`` valid from 2026-01-01 to 2035-12-30."""
    return secret_data(host)


def test_tls_secret_becomes_a_certificate_for_its_hosts() -> None:
    crt, key = make_cert("h.example.com")
    state = run(
        *with_defaults(
            tls_secret("h-tls", crt, key),
            ingress(
                "a",
                rule("h.example.com", path("/")),
                tls=[{"hosts": ["H.example.com", "*.h.example.com"], "secretName": "h-tls"}],
            ),
        )
    )
    assert state.problems == ()
    (cert,) = state.certificates
    assert cert.name == "default_h-tls"
    assert cert.hosts == ("*.h.example.com", "h.example.com")
    assert "BEGIN CERTIFICATE" in cert.pem
    assert "BEGIN PRIVATE KEY" in cert.pem  # re-serialised as PKCS#8, not the user's bytes


@pytest.mark.parametrize(
    ("secret_data", "reason"),
    [
        ({"tls.crt": "!!!", "tls.key": "x"}, "not valid base64"),
        (
            {"tls.crt": base64.b64encode(b"garbage").decode(), "tls.key": "eA=="},
            "not a PEM certificate",
        ),
        ({}, "is missing"),
    ],
)
def test_broken_tls_secret_falls_back_to_default_certificate(
    secret_data: dict[str, str], reason: str
) -> None:
    secret = tls_secret("h-tls", "", "")
    secret["data"] = secret_data
    state = run(
        *with_defaults(
            secret,
            ingress(
                "a",
                rule("h.example.com", path("/")),
                tls=[{"hosts": ["h.example.com"], "secretName": "h-tls"}],
            ),
        )
    )
    assert state.certificates == ()
    assert routes(state)  # the Ingress still serves, over the default certificate
    assert any(reason in m for m in messages(state)), messages(state)
    assert {p.source.kind for p in state.problems} == {"Ingress", "Secret"}


def test_mismatched_key_is_refused() -> None:
    crt, _ = make_cert("h.example.com")
    _, other_key = make_cert("h.example.com")
    state = run(
        *with_defaults(
            tls_secret("h-tls", crt, other_key),
            ingress(
                "a",
                rule("h.example.com", path("/")),
                tls=[{"hosts": ["h.example.com"], "secretName": "h-tls"}],
            ),
        )
    )
    assert state.certificates == ()
    assert any("does not match the certificate" in m for m in messages(state))


def test_missing_tls_secret() -> None:
    state = run(
        *with_defaults(
            ingress(
                "a",
                rule("h.example.com", path("/")),
                tls=[{"hosts": ["h.example.com"], "secretName": "nope"}],
            ),
        )
    )
    assert "TLS Secret default/nope not found" in messages(state)[0]


def test_host_with_two_certificates_goes_to_the_older_ingress() -> None:
    crt1, key1 = make_cert("h.example.com")
    crt2, key2 = make_cert("h.example.com")
    state = run(
        *with_defaults(
            tls_secret("one", crt1, key1),
            tls_secret("two", crt2, key2),
            ingress(
                "a",
                rule("h.example.com", path("/a")),
                tls=[{"hosts": ["h.example.com"], "secretName": "one"}],
            ),
            ingress(
                "b",
                rule("h.example.com", path("/b")),
                tls=[{"hosts": ["h.example.com"], "secretName": "two"}],
                created="2026-05-01T00:00:00Z",
            ),
        )
    )
    assert [c.name for c in state.certificates] == ["default_one"]
    assert [p.source.name for p in state.problems] == ["b"]


@pytest.mark.parametrize("attacker_older", [True, False])
def test_tls_for_another_namespaces_host_is_ignored(attacker_older: bool) -> None:
    """spec.tls names a host; only rules serve it (ingress-nginx gives a server
    a certificate only from an Ingress with a rule for it). An Ingress of
    another namespace listing shop.example.com in its spec.tls, without a
    rule for it, must not give it its certificate, nor its https redirect and
    HSTS: the shop's plain-HTTP clients would be sent to a certificate whose
    key the other tenant holds."""
    shop_crt, shop_key = make_cert("shop.example.com")
    evil_crt, evil_key = make_cert("shop.example.com")
    evil_created = "2025-01-01T00:00:00Z" if attacker_older else "2026-05-01T00:00:00Z"
    for shop_tls in (True, False):
        state = run(
            *with_defaults(
                tls_secret("shop-tls", shop_crt, shop_key),
                tls_secret("evil-tls", evil_crt, evil_key, namespace="tenant-b"),
                service("web", namespace="tenant-b"),
                ingress(
                    "shop",
                    rule("shop.example.com", path("/")),
                    tls=[{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]
                    if shop_tls
                    else None,
                ),
                ingress(
                    "evil",
                    rule("evil.example.com", path("/")),
                    namespace="tenant-b",
                    created=evil_created,
                    tls=[
                        {
                            "hosts": ["shop.example.com", "evil.example.com"],
                            "secretName": "evil-tls",
                        }
                    ],
                ),
            )
        )
        hosts = {c.name: c.hosts for c in state.certificates}
        assert hosts.get("tenant-b_evil-tls") == ("evil.example.com",), (shop_tls, hosts)
        assert ("shop.example.com" in hosts.get("default_shop-tls", ())) is shop_tls
        assert (("shop.example.com", "https") in state.maps.redirect) is shop_tls
        assert (("shop.example.com", "tls") in state.maps.tls) is shop_tls
        assert any(
            p.source.name == "evil" and "shop.example.com" in p.message for p in state.problems
        )
        assert not [p for p in state.problems if p.source.name == "shop"]


@pytest.mark.parametrize(
    ("served", "listed"),
    [
        # Its requests go to the other tenant's wildcard rules.
        ("*.example.com", "x.example.com"),
        # A wildcard covering a name the other tenant serves.
        ("shop.example.com", "*.example.com"),
    ],
)
def test_tls_covering_another_namespaces_requests_is_ignored(served: str, listed: str) -> None:
    crt, key = make_cert("example.com")
    state = run(
        *with_defaults(
            tls_secret("evil-tls", crt, key, namespace="tenant-b"),
            service("web", namespace="tenant-b"),
            ingress("shop", rule(served, path("/"))),
            ingress(
                "evil",
                rule("evil.test", path("/")),
                namespace="tenant-b",
                created="2025-01-01T00:00:00Z",
                tls=[{"hosts": [listed], "secretName": "evil-tls"}],
            ),
        )
    )
    assert state.certificates == ()
    assert state.maps.redirect == () and state.maps.tls == ()
    assert [p.event for p in state.problems if p.source.name == "evil"] == ["Conflict"]


def test_tls_for_a_host_of_the_own_namespace_or_nobodys_is_kept() -> None:
    """One team may split a host's TLS and rules over two Ingresses, and list
    names no Ingress serves yet (a wildcard for later subdomains)."""
    crt, key = make_cert("h.example.com")
    state = run(
        *with_defaults(
            tls_secret("h-tls", crt, key),
            ingress(
                "tls-only",
                rule("other.example.com", path("/")),
                tls=[{"hosts": ["h.example.com", "*.h.example.com"], "secretName": "h-tls"}],
            ),
            ingress("rules", rule("h.example.com", path("/"))),
        )
    )
    assert state.problems == ()
    (cert,) = state.certificates
    assert cert.hosts == ("*.h.example.com", "h.example.com")
    assert ("h.example.com", "https") in state.maps.redirect


def test_a_wildcards_tls_reaches_hosts_with_rules_of_its_namespace_only() -> None:
    """haproxy.cfg reads the wildcard form only for hosts without rules: the
    team's a.p gets exact redirect and HSTS entries, another tenant's b.p
    none, and a host with a TLS entry of its own keeps its own redirect."""
    crt, key = make_cert("*.p.example")
    own_crt, own_key = make_cert("d.p.example")
    state = run(
        *with_defaults(
            tls_secret("wild", crt, key),
            tls_secret("d-tls", own_crt, own_key),
            ingress(
                "wild",
                rule("*.p.example", path("/")),
                rule("a.p.example", path("/")),
                tls=[{"hosts": ["*.p.example"], "secretName": "wild"}],
            ),
            ingress(
                "d",
                rule("d.p.example", path("/")),
                tls=[{"hosts": ["d.p.example"], "secretName": "d-tls"}],
                annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "false"},
            ),
            service("web", namespace="tenant-b"),
            endpoint_slice("web", endpoint("10.0.0.2"), namespace="tenant-b"),
            ingress("b", rule("b.p.example", path("/")), namespace="tenant-b"),
        )
    )
    assert state.problems == ()
    assert "b.p.example" in {host for host, _ in state.maps.hosts}
    redirect = {host for host, _ in state.maps.redirect}
    tls = {host for host, _ in state.maps.tls}
    assert redirect == {"*.p.example", "a.p.example"}
    assert tls == {"*.p.example", "a.p.example", "d.p.example"}


def test_another_namespaces_wildcard_certificate_never_answers_for_a_host_with_rules() -> None:
    """b.p.example (tenant-b, no TLS) gets a default-certificate line of its
    own instead of tenant-a's *.p.example by SNI; the team's own a.p.example
    keeps the wildcard, and with ciphers of its own joins the wildcard
    certificate's hosts (its line carries both) rather than the default one."""
    crt, key = make_cert("*.p.example")
    state = run(
        *with_defaults(
            tls_secret("wild", crt, key),
            ingress(
                "wild",
                rule("*.p.example", path("/")),
                rule("a.p.example", path("/")),
                rule("c.p.example", path("/")),
                tls=[{"hosts": ["*.p.example"], "secretName": "wild"}],
            ),
            ingress(
                "a-ciphers",
                rule("a.p.example", path("/x")),
                annotations={
                    "nginx.ingress.kubernetes.io/ssl-ciphers": "ECDHE-RSA-AES128-GCM-SHA256"
                },
            ),
            service("web", namespace="tenant-b"),
            endpoint_slice("web", endpoint("10.0.0.2"), namespace="tenant-b"),
            ingress("b", rule("b.p.example", path("/")), namespace="tenant-b"),
            ingress("b2", rule("b2.q.example", path("/")), namespace="tenant-b"),
        )
    )
    assert state.problems == ()
    (cert,) = state.certificates
    assert cert.hosts == ("*.p.example", "a.p.example")
    assert [(tls.host, tls.ciphers) for tls in state.host_tls] == [
        ("a.p.example", "ECDHE-RSA-AES128-GCM-SHA256"),
        ("b.p.example", None),
    ]
    # A host both namespaces serve keeps tenant-a's wildcard: tenant-b's path
    # on it cannot take tenant-a's certificate away.
    shared = run(
        *with_defaults(
            tls_secret("wild", crt, key),
            ingress(
                "wild",
                rule("*.p.example", path("/")),
                rule("a.p.example", path("/")),
                tls=[{"hosts": ["*.p.example"], "secretName": "wild"}],
            ),
            service("web", namespace="tenant-b"),
            endpoint_slice("web", endpoint("10.0.0.2"), namespace="tenant-b"),
            ingress("b", rule("a.p.example", path("/b")), namespace="tenant-b"),
        )
    )
    assert shared.host_tls == ()
    assert shared.certificates[0].hosts == ("*.p.example",)


def _plain(state: DesiredState) -> dict[str, bool]:
    return {r.path: r.options.plain_http for r in state.routes}


def test_plain_http_per_route_and_under_no_tls_redirect_locations() -> None:
    """ssl-redirect "false" marks its own Ingress's routes; ACME challenge
    paths are marked whatever force-ssl-redirect says (ingress-nginx)."""
    objects = (
        ingress("site", rule("h.example.com", path("/"))),
        ingress(
            "plain",
            rule("h.example.com", path("/health")),
            annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "false"},
        ),
        ingress(
            "solver",
            rule("h.example.com", path("/.well-known/acme-challenge/t")),
            annotations={"nginx.ingress.kubernetes.io/force-ssl-redirect": "true"},
        ),
    )
    state = run(*with_defaults(*objects))
    assert _plain(state) == {"/": False, "/health": True, "/.well-known/acme-challenge/t": True}
    assert not any(r.options.force_https for r in state.routes)
    # The ConfigMap's no-tls-redirect-locations: "" exempts no path.
    state = run(*with_defaults(configmap({"no-tls-redirect-locations": ""}), *objects))
    solver = next(r for r in state.routes if r.path.startswith("/.well-known"))
    assert (solver.options.plain_http, solver.options.force_https) == (False, True)
    bad = run(*with_defaults(configmap({"no-tls-redirect-locations": "/ok, no spaces"})))
    assert "no-tls-redirect-locations" in " ".join(messages(bad))


# --- configmap and determinism -------------------------------------------------------


def test_configmap_settings_and_bad_keys() -> None:
    state = run(
        *with_defaults(
            configmap(
                {
                    "timeout-server": "30s",
                    "balance": "roundrobin",
                    "server-slots": "16",
                    "retries": "lots",
                    "timeout-client": "5 s\n",
                    "bogus": "1",
                }
            )
        )
    )
    assert state.settings.backend.timeout_server == "30s"
    assert state.settings.backend.balance == "roundrobin"
    assert state.settings.slots_min == 16
    assert state.settings.backend.retries == BackendSettings().retries  # bad value: default kept
    assert sorted(p.field for p in state.problems) == [
        "data.bogus",
        "data.retries",
        "data.timeout-client",
    ]


def test_configmap_of_another_name_is_ignored() -> None:
    state = run(*with_defaults(configmap({"balance": "first"}, name="other")))
    assert state.settings.backend.balance == "leastconn"


def test_output_does_not_depend_on_input_order() -> None:
    objects = list(
        with_defaults(
            service("api"),
            endpoint_slice("api", endpoint("10.0.1.2"), endpoint("10.0.1.1")),
            ingress("a", rule("a.example.com", path("/", "api", 80))),
            ingress("b", rule("b.example.com", path("/x", path_type="Exact"))),
        )
    )
    assert run(*objects) == run(*reversed(objects))


# --- per-Ingress tuning (annotations) ----------------------------------------------


def test_annotations_tune_the_backends_of_their_ingress() -> None:
    state = run(
        *with_defaults(
            service("api"),
            ingress(
                "tuned",
                rule("a.example.com", path("/", "web")),
                annotations={
                    "haproxy-ingress.kopf.dev/balance": "roundrobin",
                    "haproxy-ingress.kopf.dev/retries": "5",
                    "haproxy-ingress.kopf.dev/health-check-observe": "layer7",
                    "haproxy-ingress.kopf.dev/slowstart": "30s",
                    "other.example.com/ignored": "whatever",
                },
            ),
            ingress("plain", rule("b.example.com", path("/", "api"))),
        )
    )
    by_name = {b.name: b.settings for b in state.backends}
    assert by_name["be_default_web_80"].balance == "roundrobin"
    assert by_name["be_default_web_80"].retries == 5
    assert by_name["be_default_web_80"].observe == "layer7"
    assert by_name["be_default_web_80"].slowstart == "30s"
    assert by_name["be_default_api_80"].balance == "leastconn"
    assert state.problems == ()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("balance", "roundrobin\n    http-request return status 200"),
        ("retries", "3; reload"),
        ("timeout-server", "%[src]"),
        ("retry-on", "conn-failure all"),
        ("health-check-on-error", "explode"),
        ("snippet", "anything"),
    ],
)
def test_hostile_or_unknown_annotation_rejects_the_ingress(key: str, value: str) -> None:
    state = run(
        *with_defaults(
            ingress(
                "bad",
                rule("a.example.com", path("/")),
                annotations={f"haproxy-ingress.kopf.dev/{key}": value},
            ),
            ingress("good", rule("b.example.com", path("/"))),
        )
    )
    assert {r.host for r in state.routes} == {"b.example.com"}
    assert [(p.source.name, p.field) for p in state.problems] == [
        ("bad", f"metadata.annotations[haproxy-ingress.kopf.dev/{key}]")
    ]


def test_conflicting_tuning_of_a_shared_service_goes_to_the_older_ingress() -> None:
    state = run(
        *with_defaults(
            ingress(
                "old",
                rule("a.example.com", path("/")),
                annotations={"haproxy-ingress.kopf.dev/balance": "first"},
            ),
            ingress(
                "new",
                rule("b.example.com", path("/")),
                annotations={"haproxy-ingress.kopf.dev/balance": "random"},
                created="2026-09-01T00:00:00Z",
            ),
        )
    )
    assert state.backends[0].settings.balance == "first"
    assert len(state.routes) == 2  # both still serve
    assert [p.source.name for p in state.problems] == ["new"]
    assert "tuned differently by Ingress default/old" in state.problems[0].reason


def test_drain_can_be_switched_off() -> None:
    terminating = endpoint("10.0.0.2", ready=False, serving=True, terminating=True)
    objects = (
        ingress_class(),
        service("web"),
        endpoint_slice("web", endpoint("10.0.0.1"), terminating),
    )
    drained = run(*objects, ingress("a", rule("a.example.com", path("/"))))
    assert drained.backends[0].endpoints[1].state is ServerState.DRAIN
    off = run(
        *objects,
        ingress(
            "a",
            rule("a.example.com", path("/")),
            annotations={"haproxy-ingress.kopf.dev/drain-terminating": "false"},
        ),
    )
    assert off.backends[0].endpoints[1].state is ServerState.MAINT


def test_expired_and_future_certificates_are_served_with_a_warning() -> None:
    crt, key = make_cert("h.example.com")  # valid 2026-01-01 .. 2035-12-30
    objects = with_defaults(
        tls_secret("h-tls", crt, key),
        ingress(
            "a",
            rule("h.example.com", path("/")),
            tls=[{"hosts": ["h.example.com"], "secretName": "h-tls"}],
        ),
    )
    view = ClusterView.from_objects(objects, OPTIONS)[0]
    valid = translate(view, OPTIONS, now=datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC))
    assert valid.problems == ()
    for now, words in [
        (datetime.datetime(2040, 1, 1, tzinfo=datetime.UTC), "expired on 2035-12-30"),
        (datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC), "is not valid before 2026-01-01"),
    ]:
        state = translate(view, OPTIONS, now=now)
        assert [c.name for c in state.certificates] == ["default_h-tls"]
        assert [(p.source.kind, p.field) for p in state.problems] == [("Secret", "data[tls.crt]")]
        assert words in state.problems[0].reason


def test_objects_deleted_during_a_watch_gap_are_left_out() -> None:
    objects = with_defaults(
        ingress("gone", rule("gone.example.com", path("/")), uid="u-gone"),
        ingress("kept", rule("kept.example.com", path("/")), uid="u-kept"),
    )
    view = ClusterView.from_objects(objects, OPTIONS)[0]
    assert {"u-gone", "u-kept"} <= uids(view)
    state = translate(without(view, {"u-gone"}), OPTIONS)
    assert {r.host for r in state.routes} == {"kept.example.com"}
    assert without(view, set()) is view


def test_problems_carry_the_event_reason_users_filter_on() -> None:
    secret = tls_secret("bad", "!!!", "!!!")
    state = run(
        *with_defaults(
            configmap({"balance": "nope"}),
            secret,
            ingress("rejected", rule("Bad Host", path("/"))),
            ingress("old", rule("c.example.com", path("/"))),
            ingress("new", rule("c.example.com", path("/")), created="2026-06-01T00:00:00Z"),
            ingress("ghost", rule("g.example.com", path("/", "ghost"))),
            ingress(
                "tls",
                rule("t.example.com", path("/")),
                tls=[{"hosts": ["t.example.com"], "secretName": "bad"}],
            ),
        )
    )
    reasons = {(p.source.kind, p.source.name, p.event) for p in state.problems}
    assert reasons == {
        ("ConfigMap", "haproxy-ingress", "InvalidSetting"),
        ("Ingress", "rejected", "Rejected"),
        ("Ingress", "new", "Conflict"),
        ("Ingress", "ghost", "BackendNotFound"),
        ("Ingress", "tls", "InvalidCertificate"),
        ("Secret", "bad", "InvalidCertificate"),
    }


def test_tls_hosts_redirect_plain_http_unless_switched_off() -> None:
    crt, key = make_cert("a.example.com")
    state = run(
        *with_defaults(
            tls_secret("tls", crt, key),
            ingress(
                "secure",
                rule("a.example.com", path("/")),
                tls=[{"hosts": ["a.example.com", "*.b.example.com"], "secretName": "tls"}],
            ),
            ingress(
                "opt-out",
                rule("c.example.com", path("/")),
                tls=[{"hosts": ["c.example.com"], "secretName": "tls"}],
                annotations={"haproxy-ingress.kopf.dev/ssl-redirect": "false"},
            ),
            ingress(
                "bad",
                rule("d.example.com", path("/")),
                annotations={"haproxy-ingress.kopf.dev/ssl-redirect": "sometimes"},
            ),
        )
    )
    assert state.maps.redirect == (("*.b.example.com", "https"), ("a.example.com", "https"))
    assert [(p.source.name, p.event) for p in state.problems] == [("bad", "Rejected")]
