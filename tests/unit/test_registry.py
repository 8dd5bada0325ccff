"""The one declaration per setting: everything derived from it agrees with it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from haproxy_ingress import registry
from haproxy_ingress.auth import AccessAsk, ClientTLSAsk
from haproxy_ingress.model import BackendSettings, Canary, Cors, GlobalSettings, RouteOptions
from haproxy_ingress.readme import main as readme_main
from haproxy_ingress.registry import ANNOTATION_PREFIX, SETTINGS, Scope
from haproxy_ingress.settings import ingress_settings, parse_configmap

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_the_registry() -> None:
    text = README.read_text(encoding="utf-8")
    assert registry.with_table(text) == text, (
        "README's settings table differs from registry.py: "
        "run `PYTHONPATH=operator python3 -m haproxy_ingress.readme README.md`"
    )
    for setting in SETTINGS:
        assert f"| `{setting.key}` |" in text


def test_readme_check_command_fails_on_a_stale_table(tmp_path: Path) -> None:
    stale = tmp_path / "README.md"
    text = README.read_text(encoding="utf-8")
    stale.write_text(text.replace("| `balance` |", "| `balanse` |"), encoding="utf-8")
    assert readme_main([str(stale), "--check"]) == 1
    assert readme_main([str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == text
    assert readme_main([str(stale), "--check"]) == 0


def test_keys_are_unique() -> None:
    keys = [s.key for s in SETTINGS]
    assert len(keys) == len(set(keys))


def test_defaults_built_from_the_declarations_equal_the_dataclasses() -> None:
    assert registry.defaults() == GlobalSettings()


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_every_settings_field_is_declared_once() -> None:
    def declared(scope: Scope) -> list[str]:
        return sorted(s.field for s in SETTINGS if s.scope is scope and s.field)

    assert declared(Scope.BACKEND) == sorted(_fields(BackendSettings))
    canary = sorted(s.field for s in registry.CANARY)
    # Set by translate when the canary is attached (affinity-canary-behavior).
    attached = {"backend", "sticky_cookie", "sticky_attributes", "sticky_canary", "sticky_main"}
    assert canary == sorted(_fields(Canary) - attached)
    access = sorted(s.field for s in registry.ACCESS)
    assert access == sorted(_fields(AccessAsk))
    cors = sorted(s.field for s in registry.CORS)
    assert cors == sorted(_fields(Cors))
    client_tls = sorted(s.field for s in registry.CLIENT_TLS)
    assert client_tls == sorted(_fields(ClientTLSAsk))
    # ssl-ciphers: the ConfigMap's default of every bind, and per host.
    assert declared(Scope.HOST) == sorted([*client_tls, "ssl_ciphers"])
    assert sorted(set(declared(Scope.ROUTE)) - set(canary) - set(access) - set(cors)) == sorted(
        _fields(RouteOptions)
        - {
            "path_regex",
            "canary",
            "cors",
            "response_headers",
            "unavailable",
            "error_backend",
            "error_source",
            "fallback",
            "plain_http",  # set by translate (ssl-redirect, no-tls-redirect-locations)
        }
    )
    # default_policy and deny_sources: the ConfigMap's allow- and deny-lists
    # (route keys read apart).
    assert declared(Scope.GLOBAL) == sorted(
        _fields(GlobalSettings)
        - {"backend", "route", "default_policy", "deny_sources", "ssl_ciphers"}
    )


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.default is not None], ids=str)
def test_declared_defaults_pass_their_validator(setting: registry.Setting) -> None:
    setting.parse(setting.default or "", "default")


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.configmap], ids=lambda s: s.key)
def test_configmap_reads_every_configmap_key_with_its_validator(
    setting: registry.Setting,
) -> None:
    bad = {"data": {setting.key: "\r\nnot a value"}}
    _, _, problems = parse_configmap(bad)
    assert [p.field for p in problems] == [f"data.{setting.key}"]
    if setting.default is not None:
        _, _, problems = parse_configmap({"data": {setting.key: setting.default}})
        assert problems == []


# Valid values for keys that are unset by default.
UNSET_SAMPLES = {
    "canary-by-header": "X-Canary",
    "canary-by-header-value": "yes",
    "canary-by-header-pattern": "^(beta|alpha)$",
    "canary-by-cookie": "canary",
    "default-backend-service": "ns/svc:80",
    "maxconn": "1000",
    "slowstart": "10s",
    "server-maxconn": "100",
    "allowlist-source-range": "10.0.0.0/8",
    "denylist-source-range": "10.0.0.0/8",
    "auth-type": "basic",
    "auth-secret": "users",
    "limit-rps": "10",
    "ssl-ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
    "auth-url": "http://auth.example.com/check",
    "auth-signin": "https://login.example.com/",
    "auth-response-headers": "X-User",
    "auth-request-redirect": "https://app.example.com/",
    "cors-expose-headers": "X-Total",
    "limit-rpm": "600",
    "limit-connections": "5",
    "limit-allowlist": "10.0.0.0/8",
    "proxy-send-timeout": "30",
    "affinity": "cookie",
    "session-cookie-path": "/app",
    "session-cookie-domain": ".example.com",
    "session-cookie-samesite": "Lax",
    "session-cookie-max-age": "3600",
    "session-cookie-expires": "3600",
    "permanent-redirect": "https://example.com/a?b=c",
    "temporal-redirect": "/elsewhere",
    "app-root": "/app",
    "rewrite-target": "/",
    "upstream-vhost": "internal.example.com",
    "x-forwarded-prefix": "/api",
    "upstream-hash-by": "$request_uri",
    "server-alias": "alias.example.com",
    "add-headers": "haproxy-ingress/response-headers",
    "proxy-set-headers": "haproxy-ingress/request-headers",
    "custom-headers": "haproxy-ingress/headers",
    "default-backend": "errors",
    "proxy-ssl-secret": "default/client-tls",
    "proxy-ssl-name": "pod.internal",
    "proxy-ssl-ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "proxy-ssl-protocols": "TLSv1.2 TLSv1.3",
    "connection-proxy-header": "keep-alive",
    "configuration-snippet": "add_header X-A b;",
    "server-snippet": "add_header X-A b;",
    "auth-snippet": "proxy_set_header X-A b;",
    "auth-tls-secret": "ca",
    "auth-tls-error-page": "https://errors.example.com/cert",
    "auth-tls-match-cn": "CN=(alice|bob)",
    "global-auth-url": "http://auth.example.com/check",
    "global-auth-signin": "https://login.example.com/start",
    "global-auth-response-headers": "X-User",
    "global-auth-request-redirect": "https://app.example.com/",
}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.key)
def test_annotations_are_accepted_exactly_for_non_global_keys(
    setting: registry.Setting,
) -> None:
    value = UNSET_SAMPLES.get(setting.key, setting.default)
    assert value is not None, f"add a sample value for {setting.key}"
    asked = ingress_settings({ANNOTATION_PREFIX + setting.key: value}, GlobalSettings())
    if setting.annotation:
        assert asked.errors == ()
    else:
        assert [e.reason for e in asked.errors] == ["unknown annotation"]


def test_a_backend_annotation_sets_its_field() -> None:
    asked = ingress_settings({ANNOTATION_PREFIX + "drain-terminating": "false"}, GlobalSettings())
    assert asked.errors == ()
    assert asked.backend == dataclasses.replace(BackendSettings(), drain=False)


# Text a tenant can put in any annotation that a parser could trip over rather
# than refuse: digits past int()'s 4,300-digit limit, non-ASCII digits, a lone
# surrogate (YAML's "\ud800", offline), control characters.
_DIGITS = "9" * 5000
HOSTILE_VALUES = (
    _DIGITS,
    f"a.example.com:{_DIGITS}",
    f"{_DIGITS}s",
    f"http://a.example.com:{_DIGITS}/",
    f"10.0.0.0/{_DIGITS}",
    "a.example.com:٣",
    "²",
    "\ud800",
    "a\x00b",
    "{" + _DIGITS + "}",
)


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=range(len(HOSTILE_VALUES)))
def test_every_annotation_refuses_hostile_text_with_a_problem(value: str) -> None:
    """A value no parser expected rejects its Ingress (Invalid), never raises:
    an exception would end the sync of every tenant's change, each time."""
    for setting in SETTINGS:
        if not setting.annotation:
            continue
        names = [ANNOTATION_PREFIX + setting.key, *setting.nginx_annotations]
        for name in names:
            parsed = ingress_settings({name: value}, registry.defaults())
            assert all(e.field == f"metadata.annotations[{name}]" for e in parsed.errors), name
        data = {key: value for key in (setting.key, *setting.nginx)}
        parse_configmap({"data": data})
