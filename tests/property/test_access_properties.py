"""Property tests for the access-control keys (issue 12): refused, or safe where they land.

Each value either fails its validator or comes out in a form that cannot
change the meaning of the line, map entry or header it reaches: no control
characters, blanks or quotes where they would split or close something.
Whole Ingresses with these keys are rendered and checked by a real
``haproxy -c``.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haproxy_ingress import auth, cors, validate
from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.model import DesiredState, TranslateOptions
from haproxy_ingress.settings import NGINX_PREFIX
from haproxy_ingress.translate import translate
from haproxy_ingress.validate import Invalid
from tests.certs import authority
from tests.property.strategies import hostile
from tests.property.test_hostile_input import render_files

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

realms = hostile(st.sampled_from(["Restricted", "Team 'ops' only", ""]))
# auth-tls-*: a CA bundle (a root, or a root and an intermediate) and values.
_ROOT = authority("Property root")
CA_CRT = base64.b64encode(_ROOT.pem).decode()
ca_bundles = st.one_of(
    st.just(CA_CRT),
    st.just(base64.b64encode(_ROOT.pem + authority("Property int", _ROOT).pem).decode()),
    hostile(st.just(CA_CRT)),
)
verify_modes = hostile(st.sampled_from(["on", "optional", "optional_no_ca", "off"]))
depths = hostile(st.sampled_from(["0", "1", "2", "100"]))
error_pages = hostile(st.sampled_from(["https://err.example.com/denied?x=1", ""]))
cn_patterns = hostile(st.sampled_from(["CN=alice", "CN=(alice|bob)", "CN=.*-ops$"]))
origins = hostile(
    st.sampled_from(
        ["*", "https://app.example.com", "https://*.corp.example, http://x.example:8080"]
    )
)
header_lists = hostile(st.sampled_from(["X-Total, X-Page", "Content-Type", ""]))
method_lists = hostile(st.sampled_from(["GET, PUT", "POST"]))
cidrs = hostile(st.sampled_from(["10.0.0.0/8", "192.168.0.0/16, 2001:db8::/32"]))
numbers = hostile(st.sampled_from(["1", "20", "600"]))
user_names = hostile(st.sampled_from(["alice", "bob.smith", "ci-bot@example"]))
hashes = hostile(
    st.sampled_from(
        [
            "$apr1$Zq3x.9/A$1234567890123456789012",
            "$1$saltsalt$abcdefghijklmnopqrstuv",
            "$2y$05$" + "a" * 53,
            "{SHA}" + "A" * 28,
        ]
    )
)


@settings(max_examples=500, deadline=None)
@given(value=realms)
def test_an_accepted_realm_cannot_leave_its_quoted_string(value: str) -> None:
    try:
        realm = auth.realm(value, "f")
    except Invalid:
        return
    assert not CONTROL.search(realm) and '"' not in realm and "\\" not in realm


@settings(max_examples=500, deadline=None)
@given(value=origins)
def test_accepted_origins_are_origins(value: str) -> None:
    try:
        parsed = cors.origins(value, "f")
    except Invalid:
        return
    for origin in parsed:
        assert origin == "*" or re.fullmatch(r"https?://(\*\.)?[a-z0-9.-]+(:[0-9]+)?", origin)


@settings(max_examples=500, deadline=None)
@given(value=st.one_of(header_lists, method_lists))
def test_accepted_header_and_method_lists_are_tokens(value: str) -> None:
    for parse in (cors.headers, cors.methods):
        try:
            parsed = parse(value, "f")
        except Invalid:
            continue
        assert not CONTROL.search(parsed)
        for word in parsed.split(", ") if parsed else []:
            assert re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", word), word


@settings(max_examples=300, deadline=None)
@given(value=cidrs)
def test_accepted_cidr_lists_are_networks(value: str) -> None:
    try:
        networks = validate.cidr_list(value, "f")
    except Invalid:
        return
    for network in networks:
        assert re.fullmatch(r"[0-9a-f.:/]+", network)


@settings(max_examples=500, deadline=None)
@given(lines=st.lists(st.tuples(user_names, hashes), max_size=4))
def test_htpasswd_users_are_safe_words_or_left_out(lines: list[tuple[str, str]]) -> None:
    text = "".join(f"{user}:{hashed}\n" for user, hashed in lines)
    secret = {"data": {"auth": base64.b64encode(text.encode()).decode()}}
    users = auth.users_from_secret(secret, "auth-file")
    for user, hashed in (*users.crypt, *users.apr1):
        assert auth.USER_RE.fullmatch(user)
        assert re.fullmatch(r"[$./0-9A-Za-z=]+", hashed), hashed
    # Nothing is invented from hostile text: each kept user is a line of the
    # file as written, user and hash.
    written = {
        (user, hashed.strip())
        for user, _, hashed in (line.strip().partition(":") for line in text.splitlines())
    }
    assert set(users.crypt) | set(users.apr1) <= written


def _cluster(annotations: dict[str, str], htpasswd: str, ca_crt: str = CA_CRT) -> ClusterView:
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": "haproxy"},
            "spec": {"controller": "haproxy-ingress.kopf.dev/controller"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "users", "namespace": "default"},
            "type": "Opaque",
            "data": {"auth": base64.b64encode(htpasswd.encode()).decode()},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "ca", "namespace": "default"},
            "type": "Opaque",
            "data": {"ca.crt": ca_crt},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "i", "namespace": "default", "annotations": annotations},
            "spec": {
                "ingressClassName": "haproxy",
                "rules": [
                    {
                        "host": "a.example.com",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "web", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ],
            },
        },
    ]
    return ClusterView.from_objects(objects, TranslateOptions())[0]


def assert_haproxy_accepts(desired: DesiredState) -> None:
    """``desired`` rendered to a scratch directory passes a real ``haproxy -c``."""
    with tempfile.TemporaryDirectory() as base:
        render_files(desired, Path(base))
        check = subprocess.run(
            [HAPROXY, "-c", "-f", str(Path(base) / "haproxy.cfg")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stderr


@pytest.mark.haproxy
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    realm=realms,
    deny=cidrs,
    rps=numbers,
    origin=origins,
    expose=header_lists,
    user=user_names,
    hashed=hashes,
    satisfy=st.sampled_from(["any", "all", "x\n"]),
)
def test_ingresses_with_access_keys_render_a_valid_config(
    *,
    realm: str,
    deny: str,
    rps: str,
    origin: str,
    expose: str,
    user: str,
    hashed: str,
    satisfy: str,
) -> None:
    n = NGINX_PREFIX
    annotations = {
        n + "auth-type": "basic",
        n + "auth-secret": "users",
        n + "auth-realm": realm,
        n + "denylist-source-range": deny,
        n + "whitelist-source-range": "10.0.0.0/8",
        n + "satisfy": satisfy,
        n + "limit-rps": rps,
        n + "enable-cors": "true",
        n + "cors-allow-origin": origin,
        n + "cors-expose-headers": expose,
    }
    desired = translate(_cluster(annotations, f"{user}:{hashed}\n"), TranslateOptions())
    # Served (guarded) or denied: the route is never left unguarded.
    assert [r.policy != "" for r in desired.routes] == [True]
    assert_haproxy_accepts(desired)


@pytest.mark.haproxy
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ca=ca_bundles,
    verify=verify_modes,
    depth=depths,
    error_page=error_pages,
    match_cn=cn_patterns,
    passed=hostile(st.sampled_from(["true", "false"])),
    ciphers=hostile(st.sampled_from(["ECDHE-ECDSA-AES128-GCM-SHA256", "HIGH:!aNULL"])),
)
def test_ingresses_with_client_certificate_keys_render_a_valid_config(
    *,
    ca: str,
    verify: str,
    depth: str,
    error_page: str,
    match_cn: str,
    passed: str,
    ciphers: str,
) -> None:
    """auth-tls-* and ssl-ciphers with hostile values: the route stays guarded
    (served with its check, or denied), the chain limit never exceeds the
    depth asked, and HAProxy accepts what is rendered."""
    n = NGINX_PREFIX
    annotations = {
        n + "auth-tls-secret": "default/ca",
        n + "auth-tls-verify-client": verify,
        n + "auth-tls-verify-depth": depth,
        n + "auth-tls-error-page": error_page,
        n + "auth-tls-match-cn": match_cn,
        n + "auth-tls-pass-certificate-to-upstream": passed,
        n + "ssl-ciphers": ciphers,
    }
    desired = translate(_cluster(annotations, "", ca), TranslateOptions())
    assert [r.policy != "" for r in desired.routes] == [True]
    for policy in desired.policies:
        if policy.client_auth is not None:
            assert policy.client_auth.chain_limit <= policy.client_auth.depth
    assert_haproxy_accepts(desired)
