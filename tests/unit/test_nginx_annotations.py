"""ingress-nginx annotations and ConfigMap names → our settings (pure translate)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from haproxy_ingress.model import DesiredState, GlobalSettings, RouteOptions
from haproxy_ingress.settings import ingress_settings, parse_configmap
from tests.kube import ingress, path, rule
from tests.unit.test_translate import run, with_defaults

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
        ("rewrite-target", "/$2"),
        ("rewrite-target", "/a b"),
        ("use-regex", "true"),
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
    ],
)
def test_bad_values_reject_the_ingress(key: str, value: str) -> None:
    state = one({NGINX + key: value})
    assert not state.routes
    assert events(state) == {f"metadata.annotations[{NGINX}{key}]": "Rejected"}


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


def test_canary_ingress_is_left_out_and_the_main_one_keeps_its_path() -> None:
    state = run(
        *with_defaults(
            ingress("main", rule("a.example.com", path("/app")), created="2026-01-02T00:00:00Z"),
            ingress(
                "canary",
                rule("a.example.com", path("/app")),
                created="2026-01-01T00:00:00Z",
                annotations={NGINX + "canary": "true", NGINX + "canary-weight": "10"},
            ),
        )
    )
    assert {r.source.name for r in state.routes} == {"main"}


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
