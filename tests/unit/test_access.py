"""Access control in translate and plan (issue 12): pure, no HAProxy.

What reaches HAProxy is checked on a real one in tests/haproxy/test_access.py;
these pin the decisions: which policy a route gets, what is refused and why,
and which changes need no reload.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from haproxy_ingress import auth
from haproxy_ingress.model import DesiredState, TranslateOptions
from haproxy_ingress.plan import plan
from haproxy_ingress.translate import DENY_ALL, EVERYONE
from haproxy_ingress.validate import Invalid
from tests.kube import configmap, ingress, path, rule, service
from tests.unit.test_translate import run, with_defaults

N = "nginx.ingress.kubernetes.io/"
P = "haproxy-ingress.kopf.dev/"
MD5 = "$1$saltsalt$abcdefghijklmnopqrstuv"
APR1 = "$apr1$Zq3x.9/A$1234567890123456789012"


def users_secret(text: str, name: str = "users", namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {"auth": base64.b64encode(text.encode()).decode()},
    }


def guarded(annotations: dict[str, str], *extra: dict[str, Any], **kwargs: Any) -> DesiredState:
    return run(
        *with_defaults(
            ingress("app", rule("app.example.com", path("/app")), annotations=annotations),
            ingress("other", rule("app.example.com", path("/other"))),
            *extra,
        ),
        **kwargs,
    )


def policy_of(state: DesiredState, route_path: str) -> Any:
    route = next(r for r in state.routes if r.path == route_path)
    return next((p for p in state.policies if p.name == route.policy), None)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/auth",
        "http://127.1.2.3:8080/",
        "http://[::1]/auth",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0/",
        "http://localhost/",
        "http://LOCALHOST./",
        "http://a.localhost/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://2130706433/",  # 127.0.0.1 as one number
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://100.100.100.200/",
        "ftp://auth.example.com/",
        "http://auth.example.com/\r\nX: y",
        "http://auth.example.com:99999/",
        "http://user@auth.example.com/",
        "//auth.example.com/",
    ],
)
def test_auth_url_refuses_loopback_link_local_metadata_and_odd_forms(url: str) -> None:
    with pytest.raises(Invalid):
        auth.auth_url(url, "f")


@pytest.mark.parametrize(
    "url",
    [
        "http://auth.auth-system.svc.cluster.local/check",
        "https://10.96.0.10:8443/oauth2/auth?x=1",
        "http://[2001:db8::1]:8080/",
    ],
)
def test_auth_url_accepts_service_and_pod_addresses(url: str) -> None:
    assert auth.auth_url(url, "f") == url


def test_auth_url_on_the_controllers_own_ports_denies_everyone() -> None:
    options = TranslateOptions(reserved_ports=(9101, 10254))
    state = guarded({N + "auth-url": "http://ingress.example.com:10254/healthz"}, options=options)
    assert policy_of(state, "/app") == DENY_ALL
    assert any("controller's own" in p.reason for p in state.problems)
    assert policy_of(state, "/other") is None


OAUTH2_PROXY = {  # ingress-nginx's documented oauth2-proxy setup
    N + "auth-url": "https://$host/oauth2/auth",
    N + "auth-signin": "https://$host/oauth2/start?rd=$escaped_request_uri",
}


def test_auth_url_host_variable_is_checked_for_every_exact_host() -> None:
    """$host (the whole host) becomes each rule host; wildcards, rules without
    a host, and a host that would be refused written out deny (fail closed)."""
    state = guarded(OAUTH2_PROXY)
    policy = policy_of(state, "/app")
    assert policy.external.url == "https://$host/oauth2/auth"
    assert policy.external.signin == "https://$host/oauth2/start?rd=$escaped_request_uri"
    assert not state.problems
    for rules in (
        [rule("*.example.com", path("/app"))],
        [rule("app.example.com", path("/app")), rule(None, path("/x"))],
        [rule("app.example.com", path("/app")), rule("metadata.google.internal", path("/y"))],
    ):
        state = run(*with_defaults(ingress("app", *rules, annotations=OAUTH2_PROXY)))
        assert policy_of(state, "/app") == DENY_ALL, rules
        assert any(f"{N}auth-url" in p.field for p in state.problems), rules
    # An alias is a host the request may name too.
    aliased = {**OAUTH2_PROXY, N + "server-alias": "metadata.google.internal"}
    assert policy_of(guarded(aliased), "/app") == DENY_ALL


@pytest.mark.parametrize(
    "url",
    ["http://$host.evil.example/", "http://a$host/", "http://x.example/$host", "http://$hostx/"],
)
def test_auth_url_takes_host_variable_as_the_whole_host_only(url: str) -> None:
    with pytest.raises(Invalid):
        auth.auth_url(url, "f")


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://$host/oauth2/start?rd=$escaped_request_uri", True),
        ("https://login.example.com/start?rd=$scheme://$http_host$request_uri", True),
        ("https://$best_http_host:8443/start", True),
        ("/oauth2/start?rd=$escaped_request_uri", True),
        ("https://auth.example.com?rm=$request_method", True),  # Authelia's
        ("https://$host?rm=$request_method", True),
        ("https://login.example.com/start?x=$remote_addr", False),
        ("https://login.example.com/start?x=$", False),
        ("https://login.example.com/start?x=${host}", False),
        ("https://$host.evil.example/", False),
        ("https://$request_uri/", False),
    ],
)
def test_auth_signin_names_only_the_variables_it_expands(url: str, accepted: bool) -> None:
    if accepted:
        assert auth.signin_url(url, "f") == url
    else:
        with pytest.raises(Invalid):
            auth.signin_url(url, "f")


GLOBAL_AUTH = {
    "global-auth-url": "http://auth.auth-system.svc/check",
    "global-auth-signin": "https://login.example.com/start",
    "global-auth-response-headers": "X-User",
}


def test_global_auth_guards_every_ingress_without_its_own() -> None:
    """ingress-nginx's global-auth-url: every Ingress's routes ask it, unless
    the Ingress has an auth-url of its own or enable-global-auth "false";
    with an allow-list the route gets both."""
    state = run(
        *with_defaults(
            configmap(GLOBAL_AUTH),
            ingress("plain", rule("a.example.com", path("/plain"))),
            ingress(
                "own",
                rule("a.example.com", path("/own")),
                annotations={N + "auth-url": "http://other.example.com/"},
            ),
            ingress(
                "out",
                rule("a.example.com", path("/out")),
                annotations={N + "enable-global-auth": "false"},
            ),
            ingress(
                "listed",
                rule("a.example.com", path("/listed")),
                annotations={N + "whitelist-source-range": "10.0.0.0/8"},
            ),
        )
    )
    assert not state.problems
    plain = policy_of(state, "/plain").external
    assert (plain.url, plain.signin, plain.response_headers) == (
        "http://auth.auth-system.svc/check",
        "https://login.example.com/start",
        ("x-user",),
    )
    assert policy_of(state, "/own").external.url == "http://other.example.com/"
    assert policy_of(state, "/out") is None
    listed = policy_of(state, "/listed")
    assert listed.allow_sources == ("10.0.0.0/8",) and listed.external == plain


@pytest.mark.parametrize(
    "data",
    [
        {"global-auth-url": "http://169.254.169.254/"},
        {"global-auth-url": "https://$host/oauth2/auth"},
        {"global-auth-url": "http://auth.example.com/", "global-auth-method": "PUT"},
        {"global-auth-url": "http://auth.example.com/", "global-auth-snippet": "deny all;"},
    ],
)
def test_a_global_auth_that_cannot_be_honoured_denies_every_route(data: dict[str, str]) -> None:
    state = run(*with_defaults(configmap(data), ingress("a", rule("a.example.com", path("/a")))))
    assert policy_of(state, "/a") == DENY_ALL
    assert any(p.event == "GlobalAccessDenied" for p in state.problems)


def test_basic_auth_users_by_format_and_warnings_naming_them() -> None:
    text = f"alice:{MD5}\nbob:{APR1}\ncarol:{{SHA}}abc=\n"
    state = guarded(
        {N + "auth-type": "basic", N + "auth-secret": "users", N + "auth-realm": "R"},
        users_secret(text),
    )
    policy = policy_of(state, "/app")
    assert policy.basic_auth and policy.realm == "R"
    assert policy.users == (("alice", MD5),)
    assert policy.apr1_users == (("bob", APR1),)
    assert policy.allow_sources == EVERYONE
    warned = [p for p in state.problems if p.event == "AuthSecretInvalid"]
    assert [p.field for p in warned] == [f"metadata.annotations[{N}auth-secret]"]
    assert "carol" in warned[0].reason and "{SHA} (SHA-1)" in warned[0].reason
    # Another Ingress's route on the same host is not guarded by it.
    assert policy_of(state, "/other") is None


def test_auth_secret_of_another_namespace_is_never_read() -> None:
    state = guarded(
        {N + "auth-type": "basic", N + "auth-secret": "kube-system/users"},
        users_secret(f"admin:{MD5}\n", namespace="kube-system"),
    )
    assert policy_of(state, "/app") == DENY_ALL


def test_a_policy_follows_its_secret() -> None:
    first = guarded(
        {N + "auth-type": "basic", N + "auth-secret": "users"}, users_secret(f"a:{MD5}\n")
    )
    second = guarded(
        {N + "auth-type": "basic", N + "auth-secret": "users"}, users_secret(f"b:{MD5}\n")
    )
    assert policy_of(first, "/app").name != policy_of(second, "/app").name
    assert "access policy" in plan(plan(None, first).target, second).reload_reasons[0]


def test_satisfy_any_needs_credentials_to_mean_anything() -> None:
    state = guarded({N + "whitelist-source-range": "10.0.0.0/8", N + "satisfy": "any"})
    policy = policy_of(state, "/app")
    assert policy.allow_sources == ("10.0.0.0/8",) and not policy.satisfy_any


def test_limits_make_one_policy_per_limited_ingress() -> None:
    """Each Ingress's limits count in a table of its own (ingress-nginx: a zone
    per Ingress), even where two set the same rate."""
    state = run(
        *with_defaults(
            ingress("a", rule("a.example.com", path("/")), annotations={N + "limit-rps": "5"}),
            ingress("b", rule("b.example.com", path("/")), annotations={N + "limit-rps": "5"}),
            ingress("c", rule("c.example.com", path("/")), annotations={N + "limit-rpm": "5"}),
        )
    )
    limits = sorted((p.limit.rps, p.limit.rpm, p.owner) for p in state.policies)
    assert limits == [(0, 5, "default/c"), (5, 0, "default/a"), (5, 0, "default/b")]
    assert len({route.policy for route in state.routes}) == 3


def test_global_deny_list_is_a_map_and_changes_without_reload() -> None:
    def with_list(ranges: str) -> DesiredState:
        data = {"denylist-source-range": ranges} if ranges else {}
        return run(*with_defaults(ingress("a", rule("a.example.com", path("/"))), configmap(data)))

    before = with_list("")
    first = with_list("192.0.2.0/24")
    after = with_list("192.0.2.0/24, 2001:db8::/32")
    assert after.maps.deny == (("192.0.2.0/24", "1"), ("2001:db8::/32", "1"))
    # The first entries need the frontend's deny rule (left out without any).
    step = plan(plan(None, before).target, first)
    assert step.reload_reasons == ("frontend rules for the deny maps added",)
    # Then the list is a map: changed, emptied, filled again without a reload.
    step = plan(step.target, after)
    assert step.reload_reasons == ()
    assert [getattr(op, "name", None) for op in step.operations] == ["deny"]
    emptied = plan(step.target, before)
    assert emptied.reload_reasons == ()
    assert [getattr(op, "name", None) for op in emptied.operations] == ["deny"]
    assert plan(emptied.target, after).reload_reasons == ()


def test_cors_is_a_route_option_changed_by_map() -> None:
    def with_origin(origin: str) -> DesiredState:
        return run(
            *with_defaults(
                ingress(
                    "a",
                    rule("a.example.com", path("/")),
                    annotations={N + "enable-cors": "true", N + "cors-allow-origin": origin},
                )
            )
        )

    first, second = with_origin("https://x.example"), with_origin("https://y.example")
    assert first.routes[0].options.cors is not None
    assert first.routes[0].policy == ""  # not an access rule
    assert plan(plan(None, first).target, second).reload_reasons == ()


@pytest.mark.parametrize(
    "bad",
    [
        path("/../x"),  # climbs above the root
        path("/y", path_type="Fuzzy"),
        {"pathType": "Prefix", "path": "/z", "backend": {"resource": {"kind": "X", "name": "x"}}},
        "not-an-object",
    ],
)
def test_a_guarded_ingress_with_a_bad_path_keeps_its_good_paths_denying(bad: Any) -> None:
    """One bad path rejects the Ingress, but its guarded paths that parse must
    not fall through to another Ingress's catch-all '/': they answer 403."""
    state = run(
        *with_defaults(
            ingress(
                "admin",
                rule("app.example.com", path("/admin"), bad),
                annotations={N + "whitelist-source-range": "10.0.0.0/8"},
            ),
            ingress("catchall", rule("app.example.com", path("/")), created="2026-02-01T00:00:00Z"),
        )
    )
    assert policy_of(state, "/admin") == DENY_ALL
    events = {p.event for p in state.problems if p.source.name == "admin"}
    assert {"Rejected", "AccessDenied"} <= events
    assert policy_of(state, "/") is None


def test_a_guarded_path_to_an_external_name_service_never_falls_through() -> None:
    state = run(
        *with_defaults(
            service("outside", type_="ExternalName"),
            ingress(
                "admin",
                rule("app.example.com", path("/admin", "outside"), path("/ok")),
                annotations={N + "whitelist-source-range": "10.0.0.0/8"},
            ),
            ingress("catchall", rule("app.example.com", path("/")), created="2026-02-01T00:00:00Z"),
        )
    )
    admin = next(r for r in state.routes if r.path == "/admin")
    assert admin.source.name == "admin"
    assert policy_of(state, "/admin").allow_sources == ("10.0.0.0/8",)
    assert policy_of(state, "/ok").allow_sources == ("10.0.0.0/8",)
    assert "Unsupported" in {p.event for p in state.problems if p.source.name == "admin"}
