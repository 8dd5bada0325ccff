"""Client certificates (auth-tls-*) and per-host ssl-ciphers in translate, plan and render.

Pure: the decisions (which policy and crt-list options a host gets, who wins
a host, what fails closed, what reloads). Real handshakes are in
tests/haproxy/test_client_certs.py.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from haproxy_ingress.haproxy import commands
from haproxy_ingress.haproxy.commands import UnsafeArgumentError
from haproxy_ingress.haproxy.config import crt_list
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.model import Certificate, DesiredState
from haproxy_ingress.plan import MAX_RUNTIME_PEM, PutClientCA, plan
from haproxy_ingress.tls import bundle_intermediates
from haproxy_ingress.translate import DENY_ALL
from tests.certs import Authority, authority, revocation_list
from tests.kube import ingress, path, rule
from tests.unit.test_translate import run, with_defaults

N = "nginx.ingress.kubernetes.io/"
P = "haproxy-ingress.kopf.dev/"
CA = authority("Unit CA")
OTHER = authority("Other unit CA")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ca_secret(name: str = "ca", namespace: str = "default", **data: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {key.replace("_", "."): b64(value) for key, value in data.items()},
    }


def app(
    annotations: dict[str, str],
    name: str = "app",
    host: str = "app.example.com",
    route: str = "/",
    created: str = "2026-01-01T00:00:00Z",
) -> dict[str, Any]:
    return ingress(name, rule(host, path(route)), annotations=annotations, created=created)


def state(*objects: dict[str, Any]) -> DesiredState:
    return run(*with_defaults(*objects))


def policy_of(desired: DesiredState, route_path: str, host: str = "app.example.com") -> Any:
    route = next(r for r in desired.routes if r.path == route_path and r.host == host)
    return next((p for p in desired.policies if p.name == route.policy), None)


def test_a_ca_secret_guards_the_routes_and_puts_the_ca_on_the_host() -> None:
    desired = state(
        ca_secret(ca_crt=CA.pem),
        app(
            {
                N + "auth-tls-secret": "default/ca",
                N + "auth-tls-verify-client": "optional",
                N + "auth-tls-error-page": "https://errors.example.com/x",
                N + "auth-tls-pass-certificate-to-upstream": "true",
                N + "auth-tls-match-cn": "CN=alice",
            }
        ),
        ingress("open", rule("open.example.com", path("/"))),
    )
    check = policy_of(desired, "/").client_auth
    (host,) = desired.host_tls
    assert host.host == "app.example.com" and host.ca == CA.pem.decode()
    assert check.ca_name == host.ca_name != ""
    assert (check.verify, check.error_page, check.pass_cert, check.match_cn) == (
        "optional",
        "https://errors.example.com/x",
        True,
        "CN=alice",
    )
    assert policy_of(desired, "/", "open.example.com") is None
    assert dict(desired.maps.sni) == {"app.example.com": host.ca_name}
    assert not [p for p in desired.problems if p.source.name == "app"]


def test_a_name_alone_means_the_ingress_namespace() -> None:
    desired = state(
        ca_secret(ca_crt=CA.pem),
        app({P + "auth-tls-secret": "ca", N + "auth-tls-verify-depth": "0"}),
    )
    check = policy_of(desired, "/").client_auth
    assert (check.verify, check.depth) == ("on", 1)  # ingress-nginx's defaults


@pytest.mark.parametrize(
    ("objects", "annotation", "reason"),
    [
        ([], "default/ca", "Secret default/ca not found"),
        ([ca_secret(tls_crt=b"x")], "default/ca", "data[ca.crt] is missing"),
        ([ca_secret(ca_crt=b"garbage")], "default/ca", "is not a PEM certificate bundle"),
        (
            [
                ca_secret(
                    ca_crt=CA.pem, ca_crl=b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----"
                )
            ],
            "default/ca",
            "is not a PEM certificate revocation list",
        ),
        ([ca_secret(ca_crt=CA.pem, ca_crl=b"not a crl")], "default/ca", "revocation list"),
        ([ca_secret(namespace="tenant-b", ca_crt=CA.pem)], "tenant-b/ca", "own namespace"),
    ],
    ids=["missing", "no-ca", "garbage-ca", "broken-crl", "not-a-crl", "foreign-namespace"],
)
def test_an_unusable_ca_fails_closed(
    objects: list[dict[str, Any]], annotation: str, reason: str
) -> None:
    desired = state(
        *objects,
        app({N + "auth-tls-secret": annotation}),
        ingress("other", rule("other.example.com", path("/"))),
    )
    assert policy_of(desired, "/") == DENY_ALL
    assert desired.host_tls == ()
    problems = [p for p in desired.problems if p.source.name == "app"]
    assert any(
        p.field == f"metadata.annotations[{N}auth-tls-secret]" and reason in p.reason
        for p in problems
    ), problems
    assert any(p.event == "AccessDenied" for p in problems)
    assert policy_of(desired, "/", "other.example.com") is None


def test_a_crl_reaches_the_host() -> None:
    crl = revocation_list(CA, [])
    desired = state(ca_secret(ca_crt=CA.pem, ca_crl=crl), app({N + "auth-tls-secret": "ca"}))
    (host,) = desired.host_tls
    assert host.crl == crl.decode()
    lines = crt_list(HAProxyPaths(Path("/h")), desired.certificates, desired.host_tls).decode()
    assert f"crl-file /h/certs/{host.ca_name}.crl.pem" in lines


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("auth-tls-verify-client", "yes"),
        ("auth-tls-verify-client", "on\r\nX: y"),
        ("auth-tls-verify-depth", "101"),
        ("auth-tls-verify-depth", "deep"),
        ("auth-tls-match-cn", "alice"),  # not CN=
        ("auth-tls-match-cn", "CN=(a+)+$"),  # exponential backtracking
        ("auth-tls-match-cn", "CN=a\nb"),
        ("auth-tls-match-cn", "CN=(?=x)"),  # lookaround
        ("auth-tls-error-page", "javascript:alert(1)"),
        ("auth-tls-error-page", "https://x.example.com/\r\nSet-Cookie: a=b"),
        ("auth-tls-pass-certificate-to-upstream", "maybe"),
        ("auth-tls-secret", "a/b/c"),
        ("auth-tls-secret", "../../etc"),
        ("auth-tls-secret", "Default/CA"),
    ],
)
def test_a_bad_value_fails_closed(key: str, value: str) -> None:
    desired = state(
        ca_secret(ca_crt=CA.pem),
        app({N + "auth-tls-secret": "ca", N + key: value}),
    )
    assert policy_of(desired, "/") == DENY_ALL
    assert any(p.field == f"metadata.annotations[{N}{key}]" for p in desired.problems)


def test_rules_without_a_host_cannot_ask_for_a_certificate() -> None:
    desired = state(
        ca_secret(ca_crt=CA.pem),
        ingress("app", rule(None, path("/")), annotations={N + "auth-tls-secret": "ca"}),
    )
    assert policy_of(desired, "/", "") == DENY_ALL
    assert desired.host_tls == ()


def test_the_oldest_ingress_has_the_host_and_a_younger_ca_fails_closed() -> None:
    desired = state(
        ca_secret(ca_crt=CA.pem),
        ca_secret("other", ca_crt=OTHER.pem),
        app({N + "auth-tls-secret": "ca"}, route="/a"),
        app({N + "auth-tls-secret": "ca"}, name="same", route="/b", created="2026-01-02T00:00:00Z"),
        app(
            {N + "auth-tls-secret": "other"},
            name="young",
            route="/c",
            created="2026-01-03T00:00:00Z",
        ),
        # Not asking: not guarded (checks are per route).
        app({}, name="plain", route="/d", created="2026-01-04T00:00:00Z"),
    )
    (host,) = desired.host_tls
    assert host.ca == CA.pem.decode()
    assert policy_of(desired, "/a").client_auth.ca_name == host.ca_name
    assert policy_of(desired, "/b").client_auth.ca_name == host.ca_name
    assert policy_of(desired, "/c") == DENY_ALL
    assert policy_of(desired, "/d") is None
    conflicts = [p for p in desired.problems if p.event == "Conflict"]
    assert [p.source.name for p in conflicts] == ["young"]
    # The loser's policy (naming a CA no line carries) is not kept.
    assert all(
        p.client_auth is None or p.client_auth.ca_name == host.ca_name for p in desired.policies
    )


def test_per_host_ciphers_oldest_wins_and_reach_the_crt_list() -> None:
    cipher = "ECDHE-ECDSA-AES128-GCM-SHA256"
    desired = state(
        app({N + "ssl-ciphers": cipher}, route="/a"),
        app(
            {P + "ssl-ciphers": "ECDHE-ECDSA-AES256-GCM-SHA384"},
            name="young",
            route="/b",
            created="2026-01-02T00:00:00Z",
        ),
    )
    (host,) = desired.host_tls
    assert (host.host, host.ciphers, host.ca) == ("app.example.com", cipher, "")
    assert [p.source.name for p in desired.problems if p.event == "Conflict"] == ["young"]
    # Not an access rule: both Ingresses are served.
    assert policy_of(desired, "/b") is None
    lines = crt_list(HAProxyPaths(Path("/h")), desired.certificates, desired.host_tls).decode()
    assert lines == (f"/h/certs/default.pem [alpn h2,http/1.1 ciphers {cipher}] app.example.com\n")


@pytest.mark.parametrize("value", ["NOT-A-CIPHER", "ALL:\nx", "a b", "DEFAULT@SECLEVEL=9;x"])
def test_per_host_ciphers_are_checked_with_openssl(value: str) -> None:
    desired = state(app({N + "ssl-ciphers": value}))
    assert not [r for r in desired.routes if r.host == "app.example.com"]  # rejected
    assert any(p.field == f"metadata.annotations[{N}ssl-ciphers]" for p in desired.problems)
    assert desired.host_tls == ()


def test_guarded_hosts_share_certificate_lines_only_with_their_options() -> None:
    desired = state(
        ca_secret(ca_crt=CA.pem),
        app({N + "auth-tls-secret": "ca"}),
        app({}, name="b", host="b.example.com"),
    )
    certificate = Certificate("c", "pem", ("app.example.com", "b.example.com"))
    (host,) = desired.host_tls
    lines = crt_list(HAProxyPaths(Path("/h")), [certificate], desired.host_tls).decode()
    assert lines.splitlines() == (
        [
            "/h/certs/c.pem [alpn h2,http/1.1] b.example.com",
            f"/h/certs/c.pem [alpn h2,http/1.1 ca-file /h/certs/{host.ca_name}.pem "
            "verify optional] app.example.com",
        ]
    )


def test_what_reloads() -> None:
    base = [ca_secret(ca_crt=CA.pem), ca_secret("other", ca_crt=OTHER.pem)]
    before = state(*base, app({N + "auth-tls-secret": "ca"}))
    current = plan(None, before).target
    # The same settings: nothing to do.
    assert plan(current, state(*base, app({N + "auth-tls-secret": "ca"}))).empty
    # Another CA for the host: a crt-list line naming a new CA file.
    changed = plan(current, state(*base, app({N + "auth-tls-secret": "other"})))
    assert any("per-host TLS" in r for r in changed.reload_reasons)
    # Another verify mode: a new policy.
    mode = plan(
        current,
        state(*base, app({N + "auth-tls-secret": "ca", N + "auth-tls-verify-client": "optional"})),
    )
    assert mode.reload and not any("per-host TLS" in r for r in mode.reload_reasons)


def test_a_server_alias_asks_for_the_certificate_its_routes_check() -> None:
    desired = state(
        ca_secret(ca_crt=CA.pem),
        app({N + "auth-tls-secret": "ca", N + "server-alias": "alias.example.com"}),
    )
    assert [h.host for h in desired.host_tls] == ["alias.example.com", "app.example.com"]
    assert len({h.ca_name for h in desired.host_tls}) == 1
    assert policy_of(desired, "/", "alias.example.com") == policy_of(desired, "/")


@pytest.mark.parametrize(
    "extra",
    [
        ("verify",),  # a keyword without its value
        ("crt-ignore-err", "all"),  # not an option we send
        ("ca-file", "/x y"),
        ("ca-file", "/x]"),
        ("ciphers", "ALL\nshow info"),
        ("verify", "optional]", "evil.example"),
    ],
)
def test_runtime_crt_list_options_are_checked(extra: tuple[str, ...]) -> None:
    with pytest.raises(UnsafeArgumentError):
        commands.add_crt_list_entry(Path("/l"), Path("/c.pem"), "a.example", "h2", extra)


def test_runtime_crt_list_entry_with_options() -> None:
    extra = ("ca-file", "/c/client_ca_1.pem", "verify", "optional", "ciphers", "ECDHE+AESGCM")
    command = commands.add_crt_list_entry(Path("/l"), Path("/c.pem"), "a.example", "h2", extra)
    assert command.payload == (
        "/c.pem [alpn h2 ca-file /c/client_ca_1.pem verify optional ciphers ECDHE+AESGCM] "
        "a.example",
    )
    # As 2.6.12 shows it back: two blanks after the ALPN, verify first.
    (entry,) = commands.parse_crt_list(
        "# /l\n/c.pem:1 [alpn h2\x00  verify optional ca-file /c/client_ca_1.pem "
        "ciphers ECDHE+AESGCM] a.example\n"
    )
    assert sorted(entry.options.split()) == sorted(commands.crt_list_options("h2", extra).split())


def test_new_content_in_the_same_secret_is_a_runtime_change() -> None:
    crl = revocation_list(CA, [])
    before = state(ca_secret(ca_crt=CA.pem, ca_crl=crl), app({N + "auth-tls-secret": "ca"}))
    current = plan(None, before).target
    rotated = CA.pem + OTHER.pem
    fresh = revocation_list(CA, [])
    after = plan(
        current,
        state(ca_secret(ca_crt=rotated, ca_crl=fresh), app({N + "auth-tls-secret": "ca"})),
    )
    assert not after.reload
    (change,) = [op for op in after.operations if isinstance(op, PutClientCA)]
    assert (change.name, change.ca, change.crl) == (
        before.host_tls[0].ca_name,
        rotated.decode(),
        fresh.decode(),
    )
    # A CRL appearing adds crl-file to the line: a reload.
    added = plan(
        plan(None, state(ca_secret(ca_crt=CA.pem), app({N + "auth-tls-secret": "ca"}))).target,
        state(ca_secret(ca_crt=CA.pem, ca_crl=crl), app({N + "auth-tls-secret": "ca"})),
    )
    assert any("per-host TLS" in r for r in added.reload_reasons)
    # Too big for one runtime command: a reload.
    big = b"".join(authority(f"CA {i}").pem for i in range(40))
    assert len(big) > MAX_RUNTIME_PEM
    huge = plan(
        current, state(ca_secret(ca_crt=big, ca_crl=crl), app({N + "auth-tls-secret": "ca"}))
    )
    assert huge.reload


def test_the_intermediates_a_ca_bundle_can_add_to_a_chain() -> None:
    root, other = authority("root"), authority("other root")
    first = authority("first", root)
    second = authority("second", first)

    def pem(*cas: Authority) -> str:
        return b"".join(ca.pem for ca in cas).decode()

    assert bundle_intermediates(pem(root, other)) == 0  # roots only: the client's count is exact
    assert bundle_intermediates(pem(root, first)) == 1
    assert bundle_intermediates(pem(second, root, first)) == 2  # any order
    assert bundle_intermediates(pem(second)) == 1  # its issuer elsewhere: still counted
