"""ingress-nginx annotations and ConfigMap names → our settings (pure translate)."""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.haproxy.config import RenderOptions, render
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.model import (
    ROUTE_OPTION_MAPS,
    Canary,
    DesiredState,
    GlobalSettings,
    RouteOptions,
    TranslateOptions,
)
from haproxy_ingress.plan import plan
from haproxy_ingress.settings import ingress_settings, parse_configmap
from haproxy_ingress.state import dump as dump_state
from haproxy_ingress.state import load as load_state
from haproxy_ingress.translate import DENY_ALL, refresh_endpoints
from tests.kube import (
    configmap,
    endpoint,
    endpoint_slice,
    ingress,
    ingress_class,
    path,
    rule,
    service,
)
from tests.unit.test_translate import make_cert, messages, run, with_defaults

NGINX = "nginx.ingress.kubernetes.io/"
OURS = "haproxy-ingress.kopf.dev/"


def one(annotations: dict[str, Any], name: str = "ing") -> DesiredState:
    return run(
        *with_defaults(ingress(name, rule("a.example.com", path("/app")), annotations=annotations))
    )


def events(state: DesiredState) -> dict[str, str]:
    return {p.field: p.event for p in state.problems}


@pytest.mark.parametrize(
    ("annotations", "field", "value"),
    [
        ({NGINX + "proxy-connect-timeout": "7"}, "timeout_connect", "7s"),
        ({NGINX + "proxy-read-timeout": "120"}, "timeout_server", "120s"),
        # HAProxy has one server timeout: the longer of read and send.
        ({NGINX + "proxy-send-timeout": "300"}, "timeout_server", "300s"),
        (
            {NGINX + "proxy-read-timeout": "300", NGINX + "proxy-send-timeout": "10"},
            "timeout_server",
            "300s",
        ),
        ({NGINX + "load-balance": "round_robin"}, "balance", "roundrobin"),
        ({NGINX + "load-balance": "ewma"}, "balance", "leastconn"),
        (
            {NGINX + "proxy-next-upstream": "error timeout http_502"},
            "retry_on",
            ("conn-failure", "empty-response", "response-timeout", "502"),
        ),
        ({NGINX + "proxy-next-upstream": "off"}, "retry_on", ("none",)),
        ({NGINX + "proxy-next-upstream-tries": "3"}, "retries", 2),
        ({NGINX + "backend-protocol": "grpc"}, "protocol", "GRPC"),
        ({NGINX + "affinity": "cookie"}, "affinity", "cookie"),
        ({NGINX + "session-cookie-expires": "60"}, "cookie_max_age", 60),
        (
            {NGINX + "session-cookie-conditional-samesite-none": "true"},
            "cookie_conditional_samesite_none",
            True,
        ),
        (
            {NGINX + "proxy-ssl-ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256:!aNULL"},
            "proxy_ssl_ciphers",
            "ECDHE-ECDSA-AES128-GCM-SHA256:!aNULL",
        ),
        (
            {NGINX + "proxy-ssl-protocols": "TLSv1.3 TLSv1.2"},
            "proxy_ssl_protocols",
            ("TLSv1.2", "TLSv1.3"),
        ),
        ({NGINX + "proxy-ssl-protocols": "TLSv1.2"}, "proxy_ssl_protocols", ("TLSv1.2", "TLSv1.2")),
        (
            {NGINX + "session-cookie-expires": "60", NGINX + "session-cookie-max-age": "30"},
            "cookie_max_age",
            30,
        ),
    ],
)
def test_backend_annotations_in_nginx_syntax(
    annotations: dict[str, str], field: str, value: object
) -> None:
    state = one(annotations)
    assert not state.problems, state.problems
    assert getattr(state.backends[0].settings, field) == value


def test_ours_wins_over_nginx_with_a_warning() -> None:
    state = one({OURS + "timeout-server": "5s", NGINX + "proxy-read-timeout": "100"})
    assert state.backends[0].settings.timeout_server == "5s"
    assert events(state) == {
        f"metadata.annotations[{NGINX}proxy-read-timeout]": "Conflict",
    }
    assert state.routes  # still served


def test_route_options_land_in_maps_by_name_never_in_the_config() -> None:
    state = one(
        {
            NGINX + "permanent-redirect": "https://x.example.com/a",
            NGINX + "rewrite-target": "/",
            NGINX + "proxy-body-size": "8m",
        }
    )
    (route,) = [r for r in state.routes if r.path == "/app"]
    assert route.options == RouteOptions(
        permanent_redirect="https://x.example.com/a", rewrite_target="/", body_max=8 * 1024**2
    )
    files = dict(state.maps.files())
    name = route.options.name
    assert (
        dict(files["opt-redirect"])[name] == base64.b64encode(b"https://x.example.com/a").decode()
    )
    assert dict(files["opt-redirect-code"])[name] == "301"
    assert dict(files["opt-body-max"])[name] == str(8 * 1024**2)
    assert dict(state.maps.exact)["a.example.com/app"] == f"be_default_web_80~~{name}"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("permanent-redirect", "https://evil.example.com/\r\nSet-Cookie: x=1"),
        ("permanent-redirect", "https://a.example.com/ b"),
        ("permanent-redirect", 'https://a.example.com/"'),
        ("permanent-redirect", "javascript:alert(1)"),
        ("permanent-redirect-code", "305"),
        ("temporal-redirect-code", "99999999999"),
        ("rewrite-target", "/$0"),
        ("rewrite-target", "/$x"),
        ("rewrite-target", "/a b"),
        ("use-regex", "yes please"),
        ("app-root", "foo"),
        ("upstream-vhost", "a.example.com\r\nX: y"),
        ("upstream-vhost", "a.example.com:99999"),
        ("proxy-body-size", "-1"),
        ("proxy-body-size", "99999999999g"),
        ("proxy-read-timeout", "0"),
        ("proxy-read-timeout", "-5"),
        ("proxy-connect-timeout", "1e9"),
        ("session-cookie-name", "a;b"),
        ("session-cookie-name", 'x"'),
        ("session-cookie-samesite", "none\r\n"),
        ("backend-protocol", "FCGI"),
        ("load-balance", "chash"),
        ("proxy-next-upstream", "http_418"),
        ("session-cookie-conditional-samesite-none", "yes\r\n"),
        ("proxy-ssl-ciphers", "NOPE-CIPHER"),
        ("proxy-ssl-ciphers", "HIGH\r\n    ssl-default-bind-options no-sslv3"),
        ("proxy-ssl-ciphers", "HIGH MEDIUM"),
        ("proxy-ssl-ciphers", 'HIGH"'),
        ("proxy-ssl-protocols", "SSLv3 TLSv1"),
        ("proxy-ssl-protocols", "TLSv1 TLSv1.2"),
        ("proxy-ssl-protocols", "TLSv1.2\nverify none"),
        ("proxy-redirect-from", "~^http://(.*)$"),
        ("proxy-redirect-from", "http://a/\r\nSet-Cookie: x=1"),
        ("proxy-redirect-from", "http://a/ b"),
        ("proxy-redirect-to", "$scheme://$host/"),
        ("proxy-redirect-to", "/x\n"),
        ("proxy-redirect-to", "/" + "a" * 3000),
        ("proxy-cookie-domain", "localhost"),
        ("proxy-cookie-domain", "a b c"),
        ("proxy-cookie-domain", "~\\.svc$ example.org"),
        ("proxy-cookie-domain", "a.svc $host"),
        ("proxy-cookie-domain", "a.svc *.example.org"),
        ("proxy-cookie-domain", "a.svc\r\nx example.org"),
        ("proxy-cookie-domain", "a.svc  example.org"),
        ("proxy-cookie-path", "/a"),
        ("proxy-cookie-path", "/a $uri"),
        ("proxy-cookie-path", "a /b"),
        ("proxy-cookie-path", "/a /b;c"),
        ("proxy-cookie-path", '/a /"b'),
        ("connection-proxy-header", "keep-alive\r\nX-Injected: 1"),
        ("connection-proxy-header", "keep alive"),
        ("connection-proxy-header", "keep-alive;"),
        ("connection-proxy-header", '"close"'),
        ("connection-proxy-header", ",".join(["a"] * 17)),
        ("connection-proxy-header", "$connection_upgrade"),
        ("proxy-request-buffering", "o\r\nff"),
        ("proxy-request-buffering", "maybe"),
    ],
)
def test_bad_values_reject_the_ingress(key: str, value: str) -> None:
    state = one({NGINX + key: value})
    assert not state.routes
    assert events(state) == {f"metadata.annotations[{NGINX}{key}]": "Rejected"}


@pytest.mark.parametrize(
    "key",
    [
        "x-forwarded-prefix",
        "rewrite-target",
        "upstream-vhost",
        "proxy-body-size",
        "proxy-read-timeout",
        "backend-protocol",
        "affinity",
        "canary",
        "enable-cors",
        "use-regex",
        "server-alias",
        "permanent-redirect",
        "proxy-ssl-protocols",
        "proxy-redirect-from",
        "connection-proxy-header",
    ],
)
def test_an_empty_nginx_value_is_unset_and_the_ingress_served(key: str) -> None:
    # xforwardedprefix.go "should not add X-Forwarded-Prefix if the annotation
    # value is empty": ingress-nginx's parsers refuse "" and the default applies.
    state = one({NGINX + "rewrite-target": "/foo"} | {NGINX + key: " "})
    assert [r.path for r in state.routes] == ["/app"]
    assert events(state)[f"metadata.annotations[{NGINX}{key}]"] == "InvalidSetting"
    assert "Rejected" not in events(state).values()
    if key != "rewrite-target":
        (options,) = {r.options for r in state.routes}
        assert options == RouteOptions(rewrite_target="/foo")
    # Under our prefix an empty value is a bad value, as any other.
    assert not one({OURS + key: ""}).routes


def test_an_empty_nginx_value_falls_back_to_the_configmap() -> None:
    defaults = GlobalSettings(route=RouteOptions(body_max=10))
    asked = ingress_settings({NGINX + "proxy-body-size": ""}, defaults)
    assert asked.options.body_max == 10 and not asked.errors


@pytest.mark.parametrize(
    "key", ["auth-url", "auth-type", "whitelist-source-range", "limit-rps", "auth-tls-secret"]
)
def test_an_empty_nginx_access_value_still_fails_closed(key: str) -> None:
    # ingress-nginx would serve the paths unguarded; an access rule never opens here.
    state = one({NGINX + key: ""})
    (route,) = [r for r in state.routes if r.path == "/app"]
    policy = next(p for p in state.policies if p.name == route.policy)
    assert policy.allow_sources == ()
    assert "AccessDenied" in events(state).values()


def cors_origins(state: DesiredState) -> set[tuple[str, ...] | None]:
    return {r.options.cors.origins if r.options.cors else None for r in state.routes}


@pytest.mark.parametrize(
    ("value", "origins", "skipped"),
    [
        # cors.go "should allow correct origins - single origin for multiple cors values"
        (
            "origin.cors.com:8080, https://origin2.cors.com, https://origin.com",
            ("https://origin.com", "https://origin2.cors.com"),
            "'origin.cors.com:8080'",
        ),
        # "should not break functionality with extra domain": any * is *
        ("*, foo.bar.com", ("*",), None),
        ("https://a.example, *", ("*",), None),
        # "... cors allow origin annotations contain trailing comma"
        (
            "https://origin-123.cors.com:8080,   ,https://origin-321.cors.com:8080,",
            ("https://origin-123.cors.com:8080", "https://origin-321.cors.com:8080"),
            None,
        ),
        # "should allow - origins with non-http[s] protocols"
        (
            "test://localhost, tauri://localhost:3000",
            ("tauri://localhost:3000", "test://localhost"),
            None,
        ),
        # Nothing usable: no origin allowed (ingress-nginx would echo them all).
        ("foo.com", (), "foo.com"),
    ],
)
def test_nginx_cors_origins_skip_what_ingress_nginx_skips(
    value: str, origins: tuple[str, ...], skipped: str | None
) -> None:
    state = one({NGINX + "enable-cors": "true", NGINX + "cors-allow-origin": value})
    assert cors_origins(state) == {origins}
    field = f"metadata.annotations[{NGINX}cors-allow-origin]"
    notes = [p for p in state.problems if p.field == field]
    if skipped is None:
        assert not notes
    else:
        (note,) = notes
        assert note.event == "InvalidSetting" and note.message.endswith(skipped)
    # A route left with no origin gets no CORS map entry: it answers as without CORS.
    assert bool(state.maps.cors[0]) == bool(origins)
    # Under our prefix an entry that is not an origin rejects, as any bad value.
    if skipped is not None:
        assert not one({OURS + "enable-cors": "true", OURS + "cors-allow-origin": value}).routes


def test_unknown_nginx_key_warns_and_serves() -> None:
    state = one({NGINX + "enable-opentelemetry": "true"})
    assert state.routes
    assert events(state) == {f"metadata.annotations[{NGINX}enable-opentelemetry]": "Unsupported"}


def test_unknown_key_under_our_prefix_rejects() -> None:
    state = one({OURS + "rewrite-targte": "/"})
    assert not state.routes


@pytest.mark.parametrize(
    "key", ["auth-url", "auth-type", "auth-tls-secret", "limit-rps", "denylist-source-range"]
)
def test_unhonoured_access_keys_fail_closed(key: str) -> None:
    state = one({NGINX + key: "x"})
    (route,) = [r for r in state.routes if r.path == "/app"]
    policy = next(p for p in state.policies if p.name == route.policy)
    assert policy.allow_sources == ()  # deny all
    assert "AccessDenied" in events(state).values()


def test_snippets_are_refused_and_access_snippets_fail_closed() -> None:
    state = one({NGINX + "configuration-snippet": "proxy_buffering off;"})
    (route,) = [r for r in state.routes if r.path == "/app"]
    assert route.policy == "" and route.options.snippet is None
    assert events(state) == {
        f"metadata.annotations[{NGINX}configuration-snippet]": "Refused",
    }
    state = one({NGINX + "server-snippet": "location /x { deny all; }"})
    (route,) = [r for r in state.routes if r.path == "/app"]
    assert route.policy  # the deny-all policy
    assert "AccessDenied" in events(state).values()


def canary_pair(
    canary_annotations: dict[str, Any],
    *,
    canary_namespace: str = "default",
    main_annotations: dict[str, Any] | None = None,
) -> DesiredState:
    return run(
        *with_defaults(
            service("web-canary"),
            endpoint_slice("web-canary", endpoint("10.0.0.2")),
            service("web-canary", namespace="other"),
            endpoint_slice("web-canary", endpoint("10.0.0.3"), namespace="other"),
            ingress(
                "main",
                rule("a.example.com", path("/app")),
                created="2026-01-02T00:00:00Z",
                annotations=main_annotations or {},
            ),
            ingress(
                "canary",
                rule("a.example.com", path("/app", service="web-canary")),
                created="2026-01-01T00:00:00Z",
                namespace=canary_namespace,
                annotations={NGINX + "canary": "true", **canary_annotations},
            ),
        )
    )


def test_canary_attaches_to_the_main_route_as_map_values() -> None:
    state = canary_pair(
        {
            NGINX + "canary-weight": "10",
            NGINX + "canary-by-header": "X-Canary",
            NGINX + "canary-by-header-value": "yes please",
            NGINX + "canary-by-cookie": "canary",
        }
    )
    (route,) = state.routes
    assert route.source.name == "main"
    canary = route.options.canary
    assert canary is not None
    assert (canary.backend, canary.weight, canary.total) == ("be_default_web-canary_80", 10, 100)
    assert (canary.header, canary.header_value, canary.cookie) == (
        "X-Canary",
        "yes please",
        "canary",
    )
    files = dict(state.maps.files())
    name = route.options.name
    assert dict(files["opt-canary"])[name] == "be_default_web-canary_80"
    assert dict(files["opt-canary-threshold"])[name] == str(10 * 2**32 // 100)
    assert base64.b64decode(dict(files["opt-canary-value"])[name]) == b"yes please"
    assert state.backend("be_default_web-canary_80") is not None
    assert not state.problems


def test_canary_weight_total_below_100_counts_as_100_and_weight_is_capped() -> None:
    state = canary_pair({NGINX + "canary-weight": "50", NGINX + "canary-weight-total": "10"})
    canary = state.routes[0].options.canary
    assert canary is not None and canary.total == 100 and canary.threshold == 2**31
    state = canary_pair({NGINX + "canary-weight": "5000", NGINX + "canary-weight-total": "1000"})
    canary = state.routes[0].options.canary
    assert canary is not None and canary.threshold == 2**32


def test_canary_of_another_namespace_never_takes_the_route() -> None:
    state = canary_pair({NGINX + "canary-weight": "100"}, canary_namespace="other")
    (route,) = state.routes
    assert route.options.canary is None
    assert "CanaryWithoutMain" in events(state).values()


def test_a_canary_shadows_the_route_of_its_own_path_type() -> None:
    """ingress-nginx merges a canary into the location of the same host, path
    and pathType. An older Ingress of another namespace with an Exact /app on
    the host must not stand in the way of this team's Prefix /app canary (nor
    would its own Exact canary reach the Prefix route)."""
    state = run(
        *with_defaults(
            service("web-canary"),
            endpoint_slice("web-canary", endpoint("10.0.0.2")),
            service("web", namespace="other"),
            ingress(
                "exact",
                rule("a.example.com", path("/app", path_type="Exact")),
                namespace="other",
                created="2025-01-01T00:00:00Z",
            ),
            ingress("main", rule("a.example.com", path("/app")), created="2026-01-02T00:00:00Z"),
            ingress(
                "canary",
                rule("a.example.com", path("/app", service="web-canary")),
                created="2026-01-03T00:00:00Z",
                annotations={NGINX + "canary": "true", NGINX + "canary-weight": "100"},
            ),
        )
    )
    assert "CanaryWithoutMain" not in events(state).values()
    canaries = {(r.source.name, r.path_type.value): r.options.canary for r in state.routes}
    assert canaries[("exact", "Exact")] is None
    main = canaries[("main", "Prefix")]
    assert main is not None and main.backend == "be_default_web-canary_80"


def test_canary_with_its_own_access_rule_is_left_out() -> None:
    state = canary_pair(
        {NGINX + "canary-weight": "100", NGINX + "whitelist-source-range": "10.0.0.0/8"}
    )
    assert state.routes[0].options.canary is None
    assert "Rejected" in events(state).values()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("canary-weight", "-1"),
        ("canary-weight", "1e9"),
        ("canary-weight-total", "99999999999999"),
        ("canary-by-header", "X-Canary\r\nX: y"),
        ("canary-by-header", 'X"'),
        ("canary-by-header-value", "a\r\nSet-Cookie: x"),
        ("canary-by-header-pattern", "(a+)+$"),
        ("canary-by-header-pattern", "(?=x)"),
        ("canary-by-header-pattern", "a b"),
        ("canary-by-cookie", "a;b"),
    ],
)
def test_bad_canary_values_leave_the_canary_out(key: str, value: str) -> None:
    state = canary_pair({NGINX + key: value})
    (route,) = state.routes
    assert route.options.canary is None
    assert events(state) == {f"metadata.annotations[{NGINX}{key}]": "Rejected"}


def test_use_regex_paths_go_to_the_regex_map_case_insensitive_and_scoped() -> None:
    state = run(
        *with_defaults(
            ingress(
                "rx",
                rule("a.example.com", path("/foo(/|$)(.*)", path_type="ImplementationSpecific")),
                annotations={NGINX + "rewrite-target": "/$2"},
            ),
            ingress("plain", rule("a.example.com", path("/bar"))),
        )
    )
    (route,) = [r for r in state.routes if r.source.name == "rx"]
    assert route.regex and route.options.path_regex == "/foo(/|$)(.*)"
    ((key, value),) = state.maps.regex
    assert key == "^a\\.example\\.com(?=/)(?i:/foo(/|$)(.*))"
    assert value == f"be_default_web_80~~{route.options.name}@4"
    # The plain Ingress's prefix route in that host carries its length.
    assert dict(state.maps.prefix)["a.example.com/bar/"].endswith("@5")


@pytest.mark.parametrize(
    "pattern", ["/(a+)+$", "/(a|aa)*", "/a)|(.*", "/.*.*x$", "/(?=x)", "/x\\1", "/a{1000}", "x"]
)
def test_costly_or_escaping_regex_paths_are_rejected(pattern: str) -> None:
    state = run(
        *with_defaults(
            ingress(
                "rx",
                rule("a.example.com", path(pattern, path_type="ImplementationSpecific")),
                annotations={NGINX + "use-regex": "true"},
            )
        )
    )
    assert not state.routes
    assert "Rejected" in events(state).values()


@pytest.mark.parametrize(
    ("host", "pattern", "other_key"),
    [
        # A host-less pattern whose second alternative does not start with '/'
        # would match the key of any host's scope ("<host>/<path>").
        (None, "/nothing|[a-z.]+/.*", "victim.example.com/admin"),
        (None, "/x|.*", "*.example.com/admin"),
        # A host's pattern would reach the scope of a longer host it prefixes.
        ("shop.example", "/x|\\.com/.*", "shop.example.com/admin"),
    ],
)
def test_regex_paths_with_alternatives_never_match_another_hosts_scope(
    host: str | None, pattern: str, other_key: str
) -> None:
    """The map key a request is looked up with is its scope then its path:
    every alternative of a pattern must start where the path starts."""
    state = run(
        *with_defaults(
            ingress(
                "rx",
                rule(host, path(pattern, path_type="ImplementationSpecific")),
                namespace="tenant-b",
                annotations={NGINX + "use-regex": "true"},
            )
        )
    )
    ((key, _),) = state.maps.regex
    assert re.match(key, other_key) is None
    # Its own scope still matches, every alternative of it.
    own = host or ""
    assert re.match(key, own + "/x") is not None or re.match(key, own + "/nothing") is not None


def test_whitelist_alias_is_the_allow_list() -> None:
    state = one({NGINX + "whitelist-source-range": "10.0.0.0/8"})
    (route,) = [r for r in state.routes if r.path == "/app"]
    (policy,) = [p for p in state.policies if p.name == route.policy]
    assert policy.allow_sources == ("10.0.0.0/8",)


def test_configmap_accepts_nginx_names_and_ours_wins() -> None:
    settings, _, problems = parse_configmap(
        {
            "data": {
                "proxy-read-timeout": "90",
                "proxy-connect-timeout": "3",
                "timeout-connect": "4s",
                "proxy-body-size": "1m",
                "whitelist-source-range": "192.168.0.0/16",
                "keep-alive": "75",
                "client-header-timeout": "20",
            }
        }
    )
    assert settings.backend.timeout_server == "90s"
    assert settings.backend.timeout_connect == "4s"
    assert settings.route.body_max == 1024**2
    assert settings.default_policy is not None
    assert settings.default_policy.allow_sources == ("192.168.0.0/16",)
    assert (settings.timeout_http_keep_alive, settings.timeout_http_request) == ("75s", "20s")
    assert [(p.field, p.reason) for p in problems] == [
        ("data.proxy-connect-timeout", "also set as timeout-connect, which wins")
    ]


def test_configmap_route_default_applies_to_routes_without_their_own() -> None:
    asked = ingress_settings({}, GlobalSettings(route=RouteOptions(body_max=10)))
    assert asked.options.body_max == 10
    asked = ingress_settings(
        {NGINX + "proxy-body-size": "0"}, GlobalSettings(route=RouteOptions(body_max=10))
    )
    assert asked.options.body_max is None


# --- hosts: server-alias and from-to-www-redirect under host ownership -------------


def test_server_alias_copies_only_this_ingress_routes_and_skips_owned_hosts() -> None:
    state = run(
        *with_defaults(
            ingress("owner", rule("owned.example.com", path("/"))),
            ingress("wild", rule("*.wild.example.com", path("/"))),
            ingress(
                "shared",
                rule("foo.example.com", path("/other")),
                created="2026-01-01T00:00:01Z",
            ),
            ingress(
                "aliased",
                rule("foo.example.com", path("/app")),
                created="2026-01-02T00:00:00Z",
                annotations={
                    NGINX + "server-alias": "bar.example.com,owned.example.com,"
                    "a.wild.example.com,foo.example.com"
                },
            ),
            ingress(
                "late",
                rule("late.example.com", path("/")),
                created="2026-01-03T00:00:00Z",
                annotations={OURS + "server-alias": "bar.example.com"},
            ),
        )
    )
    hosts = {host for host, _ in state.maps.hosts}
    assert "bar.example.com" in hosts
    # Only the aliased Ingress's path, never the other tenant's /other on foo.
    assert {(r.host, r.path) for r in state.routes if r.host == "bar.example.com"} == {
        ("bar.example.com", "/app")
    }
    conflicts = sorted(p.message for p in state.problems if p.event == "Conflict")
    assert len(conflicts) == 3, conflicts
    assert any("owned.example.com" in m and "default/owner" in m for m in conflicts)
    assert any("a.wild.example.com" in m and "default/wild" in m for m in conflicts)
    assert any("bar.example.com" in m and "default/aliased" in m for m in conflicts)


def test_from_to_www_redirect_both_directions_only_for_unserved_names() -> None:
    state = run(
        *with_defaults(
            ingress(
                "bare",
                rule("bare.example.com", path("/")),
                annotations={NGINX + "from-to-www-redirect": "true"},
            ),
            ingress(
                "www",
                rule("www.site.example.com", path("/")),
                annotations={NGINX + "from-to-www-redirect": "true"},
            ),
            ingress("owner", rule("www.taken.example.com", path("/"))),
            ingress(
                "taker",
                rule("taken.example.com", path("/")),
                created="2026-01-02T00:00:00Z",
                annotations={NGINX + "from-to-www-redirect": "true"},
            ),
            ingress(
                "both",
                rule("both.example.com", path("/")),
                rule("www.both.example.com", path("/")),
                annotations={NGINX + "from-to-www-redirect": "true"},
            ),
        )
    )
    assert dict(state.maps.www) == {
        "www.bare.example.com": "bare.example.com",
        "site.example.com": "www.site.example.com",
    }
    assert [p.source.name for p in state.problems if p.event == "Conflict"] == ["taker"]


@pytest.mark.parametrize(
    ("value", "expression"),
    [
        ("$request_uri", "pathq"),
        ("$uri", "path"),
        ("$remote_addr", "src"),
        ("$binary_remote_addr", "src"),
        ("$host", "req.hdr(host)"),
        ("$http_x_user_id", "req.hdr(x-user-id)"),
        ("$cookie_SESSION", "req.cook(SESSION)"),
        ("$arg_id", "url_param(id)"),
    ],
)
def test_upstream_hash_by_maps_nginx_variables_to_sample_fetches(
    value: str, expression: str
) -> None:
    state = one({NGINX + "upstream-hash-by": value})
    assert not state.problems
    assert state.backends[0].settings.hash_by == expression


@pytest.mark.parametrize(
    "value", ["$host$request_uri", "request_uri", "$http_x\r\n", "$http_a b", "$foo", "$http_"]
)
def test_upstream_hash_by_refuses_what_it_cannot_map(value: str) -> None:
    state = one({NGINX + "upstream-hash-by": value})
    assert events(state) == {f"metadata.annotations[{NGINX}upstream-hash-by]": "Rejected"}
    assert not state.routes


def test_service_upstream_sends_to_the_cluster_ip_and_ignores_endpoint_changes() -> None:
    svc = service("web")
    svc["spec"]["clusterIP"] = "10.96.0.7"
    objects = [
        ingress_class(),
        svc,
        endpoint_slice("web", endpoint("10.0.0.1")),
        ingress(
            "ing",
            rule("a.example.com", path("/")),
            annotations={NGINX + "service-upstream": "true"},
        ),
    ]
    state = run(*objects)
    assert [(e.address, e.port) for e in state.backends[0].endpoints] == [("10.96.0.7", 80)]
    objects[2] = endpoint_slice("web", endpoint("10.0.0.2"))
    view, _ = ClusterView.from_objects(objects, TranslateOptions())
    assert refresh_endpoints(state, view, [("default", "web")]) == state
    # Headless: no cluster IP, the pods are used, with a Warning.
    svc["spec"]["clusterIP"] = "None"
    state = run(*objects)
    assert [e.address for e in state.backends[0].endpoints] == ["10.0.0.2"]
    assert "Unsupported" in events(state).values()
    # ... and the endpoint fast path follows its pods too (found by the
    # fast-path property test: it used to keep the old pods).
    objects[2] = endpoint_slice("web", endpoint("10.0.0.3"))
    view, _ = ClusterView.from_objects(objects, TranslateOptions())
    refreshed = refresh_endpoints(state, view, [("default", "web")])
    assert [e.address for e in refreshed.backends[0].endpoints] == ["10.0.0.3"]
    assert refreshed == run(*objects)


def test_hsts_configmap_keys_in_nginx_names() -> None:
    settings, _, problems = parse_configmap(
        {
            "data": {
                "hsts": "true",
                "hsts-max-age": "600",
                "hsts-include-subdomains": "false",
                "hsts-preload": "true",
            }
        }
    )
    assert not problems
    assert (
        settings.hsts,
        settings.hsts_max_age,
        settings.hsts_include_subdomains,
        settings.hsts_preload,
    ) == (True, 600, False, True)
    _, _, problems = parse_configmap({"data": {"hsts-max-age": "-1"}})
    assert [p.field for p in problems] == ["data.hsts-max-age"]


def test_preserve_trailing_slash_and_access_log_are_route_option_maps() -> None:
    state = one({NGINX + "preserve-trailing-slash": "true", NGINX + "enable-access-log": "false"})
    assert not state.problems
    options = state.routes[0].options
    names = dict(zip(ROUTE_OPTION_MAPS, state.maps.options, strict=True))
    assert names["opt-keep-slash"] == ((options.name, "1"),)
    assert names["opt-no-log"] == ((options.name, "1"),)


# --- header sets: add-headers, proxy-set-headers, custom-headers ---------------------


def _headers_cm(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "haproxy-ingress"},
        "data": data,
    }


def test_custom_headers_land_base64_in_a_route_map_and_literal_in_lua() -> None:
    state = run(
        *with_defaults(
            _headers_cm("hdrs", {"X-B": "2", "X-A": "%[src] $x"}),
            ingress(
                "ing",
                rule("a.example.com", path("/")),
                annotations={NGINX + "custom-headers": "haproxy-ingress/hdrs"},
            ),
        )
    )
    assert not state.problems
    options = state.routes[0].options
    assert options.response_headers == (("X-A", "%[src] $x"), ("X-B", "2"))
    names = dict(zip(ROUTE_OPTION_MAPS, state.maps.options, strict=True))
    ((name, value),) = names["opt-headers"]
    assert name == options.name
    assert base64.b64decode(value) == b"X-A: %[src] $x\nX-B: 2\n"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"X-A": "a\r\nSet-Cookie: x=1"}, "visible ASCII"),
        ({"Content-Length": "1"}, "framing header"),
        ({"X A": "1"}, "header name"),
        ({f"X-{i}": "1" for i in range(65)}, "more than 64"),
    ],
)
def test_a_bad_header_set_makes_the_paths_answer_503(data: dict[str, str], reason: str) -> None:
    state = run(
        *with_defaults(
            _headers_cm("hdrs", data),
            ingress(
                "ing",
                rule("a.example.com", path("/")),
                annotations={NGINX + "custom-headers": "haproxy-ingress/hdrs"},
            ),
        )
    )
    assert state.routes[0].options.unavailable
    assert state.routes[0].options.response_headers == ()
    (problem,) = state.problems
    assert problem.field == f"metadata.annotations[{NGINX}custom-headers]"
    assert reason in problem.reason


def test_custom_headers_must_name_the_controller_namespace_and_the_allow_list() -> None:
    for value, allowed, ok in (
        ("default/hdrs", "", False),
        ("haproxy-ingress/hdrs", "", True),
        ("haproxy-ingress/hdrs", "X-Other", False),
        ("haproxy-ingress/hdrs", "x-a, X-Other", True),
    ):
        state = run(
            *with_defaults(
                _headers_cm("hdrs", {"X-A": "1"}),
                _headers_cm("haproxy-ingress", {"global-allowed-response-headers": allowed}),
                ingress(
                    "ing",
                    rule("a.example.com", path("/")),
                    annotations={NGINX + "custom-headers": value},
                ),
            )
        )
        assert state.routes[0].options.unavailable is not ok, (value, allowed)


def test_configmap_header_sets_go_to_the_headers_map() -> None:
    state = run(
        *with_defaults(
            _headers_cm("req", {"X-To-Pod": "1"}),
            _headers_cm("res", {"X-To-Client": "2"}),
            _headers_cm(
                "haproxy-ingress",
                {"proxy-set-headers": "haproxy-ingress/req", "add-headers": "haproxy-ingress/res"},
            ),
            ingress("ing", rule("a.example.com", path("/"))),
        )
    )
    assert not state.problems
    assert {k: base64.b64decode(v) for k, v in state.maps.headers} == {
        "request": b"X-To-Pod: 1\n",
        "response": b"X-To-Client: 2\n",
    }


def test_custom_http_errors_use_the_annotation_backend_else_the_cluster_default() -> None:
    errors_svc = service("errors")
    with_annotation = run(
        *with_defaults(
            errors_svc,
            ingress(
                "ing",
                rule("a.example.com", path("/")),
                annotations={
                    NGINX + "custom-http-errors": "503,404,404",
                    NGINX + "default-backend": "errors",
                },
            ),
        )
    )
    assert not with_annotation.problems
    options = with_annotation.routes[0].options
    assert (options.error_codes, options.error_backend, options.error_source, options.fallback) == (
        (404, 503),
        "be_default_errors_80",
        "default/ing",
        True,
    )
    assert with_annotation.backend("be_default_errors_80") is not None
    # The ConfigMap's custom-http-errors and default backend, no annotation.
    cluster_default = run(
        *with_defaults(
            errors_svc,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "haproxy-ingress", "namespace": "haproxy-ingress"},
                "data": {
                    "custom-http-errors": "500",
                    "default-backend-service": "default/errors:80",
                },
            },
            ingress("ing", rule("a.example.com", path("/"))),
        )
    )
    options = cluster_default.routes[0].options
    assert (options.error_codes, options.error_backend, options.fallback) == (
        (500,),
        "be_default_errors_80",
        False,
    )
    # Neither: a Warning, and nothing intercepted.
    neither = one({NGINX + "custom-http-errors": "500"})
    assert neither.routes[0].options.error_codes == ()
    assert "Unsupported" in events(neither).values()
    # A default-backend Service that does not exist: a Warning, ignored.
    missing = one({NGINX + "default-backend": "nothing"})
    assert missing.routes[0].options.error_backend is None
    assert "BackendNotFound" in events(missing).values()


def test_proxy_ssl_secret_files_and_fail_closed_verification() -> None:
    crt, key = make_cert("client.internal")
    ca, _ = make_cert("pod.internal")
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": "client-tls", "namespace": "default"},
        "data": {"tls.crt": crt, "tls.key": key, "ca.crt": ca},
    }
    asked = {
        NGINX + "backend-protocol": "HTTPS",
        NGINX + "proxy-ssl-secret": "default/client-tls",
        NGINX + "proxy-ssl-verify": "on",
        NGINX + "proxy-ssl-name": "pod.internal",
    }
    state = run(
        *with_defaults(secret, ingress("ing", rule("a.example.com", path("/")), annotations=asked))
    )
    assert not state.problems
    (files,) = state.upstream_tls
    assert (files.secret, files.name) == ("default/client-tls", "upstream_default_client-tls")
    assert "PRIVATE KEY" in files.pem and "CERTIFICATE" in files.ca
    settings = state.backends[0].settings
    assert (settings.proxy_ssl_verify, settings.proxy_ssl_name) == (True, "pod.internal")
    assert not state.routes[0].options.unavailable
    # Another namespace's Secret, or none: 503 with verification on, plain without.
    for value in ("other/client-tls", "default/absent"):
        state = run(
            *with_defaults(
                secret,
                ingress(
                    "ing",
                    rule("a.example.com", path("/")),
                    annotations={**asked, NGINX + "proxy-ssl-secret": value},
                ),
            )
        )
        assert state.routes[0].options.unavailable, value
        assert state.upstream_tls == ()
        assert not state.backends[0].settings.proxy_ssl_verify
    state = run(
        *with_defaults(
            ingress(
                "ing",
                rule("a.example.com", path("/")),
                annotations={NGINX + "proxy-ssl-secret": "default/absent"},
            )
        )
    )
    assert not state.routes[0].options.unavailable
    assert "Invalid" in events(state).values()


def rendered_config(state: DesiredState, tmp_path: Path) -> str:
    """haproxy.cfg as the controller would write it for ``state`` (no HAProxy runs)."""
    return render(
        plan(None, state).target, RenderOptions(HAProxyPaths(tmp_path))
    ).config.content.decode()


def default_server(config: str, backend: str) -> str:
    section = config[config.index(f"backend {backend}\n") :]
    return next(line for line in section.splitlines() if line.strip().startswith("default-server"))


def test_proxy_ssl_ciphers_and_protocols_are_words_of_the_server_line(tmp_path: Path) -> None:
    state = one(
        {
            NGINX + "backend-protocol": "HTTPS",
            NGINX + "proxy-ssl-ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256:!aNULL",
            NGINX + "proxy-ssl-protocols": "TLSv1.2",
        }
    )
    assert not state.problems
    line = default_server(rendered_config(state, tmp_path), "be_default_web_80")
    assert " ssl verify none " in line
    assert " ciphers ECDHE-ECDSA-AES128-GCM-SHA256:!aNULL " in line
    assert " ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.2 " in line
    # Unset: HAProxy's defaults, no word at all.
    plain = default_server(
        rendered_config(one({NGINX + "backend-protocol": "HTTPS"}), tmp_path), "be_default_web_80"
    )
    assert "ciphers" not in plain and "ssl-min-ver" not in plain


@pytest.mark.parametrize(
    ("annotations", "field", "value"),
    [
        (
            {NGINX + "proxy-redirect-from": "http://a.svc/", NGINX + "proxy-redirect-to": "/"},
            "proxy_redirect_from",
            "http://a.svc/",
        ),
        ({NGINX + "proxy-redirect-from": "default"}, "proxy_redirect_from", None),
        ({NGINX + "proxy-redirect-from": "off"}, "proxy_redirect_from", None),
        ({NGINX + "proxy-redirect-to": "off"}, "proxy_redirect_to", None),
        (
            {NGINX + "proxy-cookie-domain": ".Localhost example.org"},
            "proxy_cookie_domain",
            ("localhost", "example.org"),
        ),
        ({NGINX + "proxy-cookie-domain": "off"}, "proxy_cookie_domain", None),
        ({NGINX + "proxy-cookie-path": "/two/ /"}, "proxy_cookie_path", ("/two/", "/")),
        ({NGINX + "connection-proxy-header": "keep-alive"}, "connection_header", "keep-alive"),
        ({NGINX + "proxy-request-buffering": "off"}, "request_buffering", False),
        ({NGINX + "proxy-request-buffering": "on"}, "request_buffering", True),
        (
            {NGINX + "connection-proxy-header": " keep-alive ,X-Trace"},
            "connection_header",
            "keep-alive,X-Trace",
        ),
    ],
)
def test_response_rewrites_in_nginx_syntax(
    annotations: dict[str, str], field: str, value: object
) -> None:
    asked = ingress_settings(annotations, GlobalSettings())
    assert asked.errors == ()
    assert getattr(asked.options, field) == value


def test_proxy_redirect_needs_both_ends_and_lands_in_maps_base64() -> None:
    only_from = one({NGINX + "proxy-redirect-from": "http://a.svc/"})
    files = dict(only_from.maps.files())
    assert files["opt-redirect-from"] == () and files["opt-redirect-to"] == ()
    state = one(
        {
            NGINX + "proxy-redirect-from": "http://a.svc/",
            NGINX + "proxy-redirect-to": "https://x.example.com/%[src]",
            NGINX + "proxy-cookie-path": "/app/ /",
        }
    )
    (route,) = [r for r in state.routes if r.path == "/app"]
    files = dict(state.maps.files())
    name = route.options.name
    assert (
        dict(files["opt-redirect-to"])[name]
        == base64.b64encode(b"https://x.example.com/%[src]").decode()
    )
    assert dict(files["opt-cookie-path"])[name] == base64.b64encode(b"/app/ /").decode()


def test_state_with_the_new_upstream_settings_round_trips() -> None:
    state = one(
        {
            NGINX + "backend-protocol": "HTTPS",
            NGINX + "proxy-ssl-protocols": "TLSv1.2",
            NGINX + "proxy-ssl-ciphers": "HIGH",
            NGINX + "proxy-cookie-domain": "a.svc b.example.com",
        }
    )
    applied = plan(None, state).target
    assert load_state(dump_state(applied)) == applied
    # The ConfigMap's route defaults hold tuples too.
    configmap = {
        "data": {"proxy-cookie-domain": "a.svc b.example.com", "proxy-cookie-path": "/a /"}
    }
    settings, _, problems = parse_configmap(configmap)
    assert not problems
    applied = dataclasses.replace(
        applied, structure=dataclasses.replace(applied.structure, settings=settings)
    )
    assert load_state(dump_state(applied)) == applied


def test_request_buffering_off_in_the_configmap_streams_every_route(tmp_path: Path) -> None:
    """Each route's options carry the ConfigMap's off, and requests without a
    route are not held either."""
    on = next(x for x in rendered_config(one({}), tmp_path).splitlines() if "wait-for-body" in x)
    assert on.endswith("!{ req.hdr(upgrade) -m found }")
    state = run(
        *with_defaults(
            ingress("ing", rule("a.example.com", path("/app"))),
            configmap({"proxy-request-buffering": "off"}),
        )
    )
    assert not state.problems
    (route,) = [r for r in state.routes if r.path == "/app"]
    assert dict(dict(state.maps.files())["opt-stream"]) == {route.options.name: "1"}
    line = next(x for x in rendered_config(state, tmp_path).splitlines() if "wait-for-body" in x)
    assert line.endswith("{ var(txn.options) -m found }")


def canary_state(main: dict[str, str], canary: dict[str, str]) -> DesiredState:
    return run(
        *with_defaults(
            service("web-canary"),
            ingress("main", rule("a.example.com", path("/")), annotations=main),
            ingress(
                "canary",
                rule("a.example.com", path("/", "web-canary")),
                created="2026-01-02T00:00:00Z",
                annotations={NGINX + "canary": "true", NGINX + "canary-weight": "10", **canary},
            ),
        )
    )


def attached_canary(state: DesiredState) -> Canary:
    (route,) = [r for r in state.routes if r.options.canary is not None]
    assert route.options.canary is not None
    return route.options.canary


def test_sticky_canary_names_the_sides_with_affinity_and_their_cookie() -> None:
    state = canary_state(
        {},
        {
            NGINX + "affinity": "cookie",
            NGINX + "session-cookie-name": "SRV",
            NGINX + "session-cookie-samesite": "Lax",
            NGINX + "session-cookie-secure": "true",
            NGINX + "session-cookie-domain": ".example.com",
        },
    )
    assert not [p for p in state.problems if p.event != "BackendNotFound"]
    canary = attached_canary(state)
    assert (canary.sticky_cookie, canary.sticky_canary, canary.sticky_main) == (
        "SRV-canary",
        True,
        False,
    )
    assert canary.sticky_attributes == (
        "; Path=/; Domain=.example.com; SameSite=Lax; Secure; HttpOnly"
    )
    files = dict(state.maps.files())
    (value,) = dict(files["opt-canary-sticky"]).values()
    assert base64.b64decode(value).decode() == f"SRV-canary\n{canary.sticky_attributes}\n1"


@pytest.mark.parametrize(
    ("main", "canary", "sides"),
    [
        ({NGINX + "affinity": "cookie"}, {}, (False, True)),
        ({NGINX + "affinity": "cookie"}, {NGINX + "affinity": "cookie"}, (True, True)),
        ({}, {}, None),  # nobody has affinity: nothing to keep
        ({}, {NGINX + "affinity": "cookie", NGINX + "affinity-canary-behavior": "legacy"}, None),
    ],
)
def test_sticky_canary_sides(
    main: dict[str, str], canary: dict[str, str], sides: tuple[bool, bool] | None
) -> None:
    attached = attached_canary(canary_state(main, canary))
    if sides is None:
        assert attached.sticky_cookie is None
    else:
        assert (attached.sticky_canary, attached.sticky_main) == sides
        assert attached.sticky_cookie == "INGRESSCOOKIE-canary"


@pytest.mark.parametrize("value", ["Sticky", "sticky\r\n", "legacy sticky", "none"])
def test_bad_affinity_canary_behavior_leaves_the_canary_out(value: str) -> None:
    state = canary_state({}, {NGINX + "affinity-canary-behavior": value})
    assert not [r for r in state.routes if r.options.canary is not None]
    field = f"metadata.annotations[{NGINX}affinity-canary-behavior]"
    assert events(state)[field] == "Rejected"


def test_conditional_samesite_none_renders_only_with_samesite_none(tmp_path: Path) -> None:
    asked = {
        NGINX + "affinity": "cookie",
        NGINX + "session-cookie-name": "a.b",
        NGINX + "session-cookie-conditional-samesite-none": "true",
    }
    lax = rendered_config(one({**asked, NGINX + "session-cookie-samesite": "Lax"}), tmp_path)
    assert "samesite_old" not in lax
    none = rendered_config(one({**asked, NGINX + "session-cookie-samesite": "None"}), tmp_path)
    # The cookie name is matched literally ('.' as a class), never as text of the regex.
    assert "replace-header Set-Cookie '^(a[.]b=[^;]*(;.*)?); SameSite=None(;.*)?$'" in none


def test_a_global_access_key_of_the_configmap_we_cannot_honour_denies_every_route() -> None:
    """ingress-nginx's block-* lists or WAF guard every route, and so does a
    global-auth-url we cannot honour (loopback): ignoring them would open
    everything they guarded, so every route denies."""
    app = ingress("app", rule("a.example.com", path("/app")))
    for key, value in (
        ("global-auth-url", "http://127.0.0.1/check"),
        ("block-cidrs", "198.51.100.0/24"),
        ("block-user-agents", "~*curl"),
        ("enable-modsecurity", "true"),
    ):
        state = run(*with_defaults(app, configmap({key: value})))
        assert state.routes and all(r.policy == DENY_ALL.name for r in state.routes), key
        assert state.settings.default_policy == DENY_ALL
        (problem,) = (p for p in state.problems if p.field == f"data.{key}")
        assert problem.event == "GlobalAccessDenied" and "403" in problem.reason
    # Off, or empty, it guards nothing.
    for key, value in (("enable-modsecurity", "false"), ("global-auth-url", "")):
        state = run(*with_defaults(app, configmap({key: value})))
        assert state.routes and not any(r.policy == DENY_ALL.name for r in state.routes), key


def test_a_port_of_thousands_of_digits_rejects_only_its_ingress() -> None:
    """int() refuses more than 4,300 digits with a ValueError, which escaped
    the validators: every sync failed, so no tenant's change was applied."""
    state = run(
        *with_defaults(
            ingress(
                "bad",
                rule("bad.example.com", path("/")),
                annotations={NGINX + "upstream-vhost": "a.example.com:" + "9" * 5000},
            ),
            ingress("good", rule("good.example.com", path("/"))),
        )
    )
    assert {r.source.name for r in state.routes} == {"good"}
    assert events(state) == {f"metadata.annotations[{NGINX}upstream-vhost]": "Rejected"}


def test_nginx_values_are_read_with_each_line_trimmed() -> None:
    """ingress-nginx trims every line of an annotation's value (normalizeString)."""
    state = run(
        *with_defaults(
            ingress(
                "a",
                rule("a.example.com", path("/")),
                annotations={
                    NGINX + "upstream-vhost": " internal.example.com \t",
                    NGINX + "affinity": "cookie ",
                    NGINX + "affinity-mode": "persistent \t",
                },
            )
        )
    )
    assert messages(state) == []
    (route,) = state.routes
    assert route.options.upstream_vhost == "internal.example.com"
