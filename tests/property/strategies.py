"""Hypothesis strategies for Kubernetes objects, valid and hostile.

Strings mix what a well-meaning user writes with what an attacker would:
newlines, '#', quotes, HAProxy sample expressions, ';', NUL, unicode, very
long values, and valid values with such text appended.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.certs import secret_data

HOSTILE_FRAGMENTS = [
    "\n",
    "\r\n",
    "\x00",
    "#",
    ";",
    "\\",
    '"',
    "'",
    " ",
    "\t",
    "%[src]",
    "%[env(HOME)]",
    "<<",
    "${HOME}",
    "\n    http-request return status 200\n",
    "\nbackend evil\n    server x 1.2.3.4:80\n",
    "é",
    "\u202e",
    "\ufeff",
    "a" * 300,
    "x" * 20000,
]


def _valid_tls() -> dict[str, str]:
    crt, key = secret_data("property.example")
    return {"tls.crt": crt, "tls.key": key}


VALID_TLS = _valid_tls()
labels = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)


def hostile(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Valid values three times in four; otherwise with hostile text, or arbitrary text.

    Each object has several strings, so a higher hostile rate would leave
    almost every generated Ingress rejected and the rendering path untested.
    """
    fragment = st.sampled_from(HOSTILE_FRAGMENTS)
    return st.integers(0, 11).flatmap(
        lambda n: (
            valid
            if n < 9
            else [
                st.builds(lambda v, f: v + f, valid, fragment),
                st.builds(lambda f, v: f + v, fragment, valid),
                st.text(max_size=40),
            ][n - 9]
        )
    )


hosts = hostile(
    st.one_of(
        st.builds(lambda a, b: f"{a}.{b}.example", labels, labels),
        st.builds(lambda a: f"*.{a}.example", labels),
    )
)
paths = hostile(st.from_regex(r"/[a-zA-Z0-9/_.-]{0,20}", fullmatch=True))
path_types = st.sampled_from(
    ["Exact", "Prefix", "ImplementationSpecific"] * 5 + ["Regex", "", "prefix"]
)
service_names = hostile(st.sampled_from(["web", "api"]))
ports = st.one_of(
    st.sampled_from([{"number": 80}, {"name": "http"}]),
    st.builds(lambda n: {"number": n}, st.integers(-5, 70000)),
    st.builds(lambda n: {"name": n}, hostile(st.just("http"))),
)
ANNOTATIONS = {
    "balance": "roundrobin",
    "retries": "3",
    "retry-on": "conn-failure empty-response",
    "timeout-server": "5s",
    "slowstart": "10s",
    "health-check-observe": "layer7",
    "server-maxconn": "100",
    "drain-terminating": "true",
    "allowlist-source-range": "10.0.0.0/8, 192.168.0.0/16",
    "upstream-hash-by": "$http_x_user",
    "server-alias": "alias.example.com,other.example.com",
    "from-to-www-redirect": "true",
    "preserve-trailing-slash": "true",
    "enable-access-log": "false",
    "custom-http-errors": "404,503",
    "default-backend": "api",
    "custom-headers": "haproxy-ingress/headers",
    "service-upstream": "true",
    "proxy-ssl-verify": "on",
    "proxy-ssl-name": "pod.example.com",
    "backend-protocol": "HTTPS",
    "proxy-ssl-ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256:!aNULL",
    "proxy-ssl-protocols": "TLSv1.2 TLSv1.3",
    "proxy-redirect-from": "http://a.svc/",
    "proxy-redirect-to": "https://b.example.com/",
    "proxy-cookie-domain": "a.svc b.example.com",
    "proxy-cookie-path": "/a/ /",
    "connection-proxy-header": "keep-alive",
    "proxy-request-buffering": "off",
    "affinity-canary-behavior": "legacy",
    # (auth-tls-* and denylist-source-range add frontend blocks that
    # test_hostile_input's exact shape check does not model; their hostile
    # values are in the corpus and in tests/unit/test_client_certs.py.)
    "ssl-ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ssl-passthrough": "true",
    "snippet": "server x 1.2.3.4:80",  # never a known key: always refused
}
annotations = st.sampled_from(sorted(ANNOTATIONS)).flatmap(
    lambda key: st.tuples(st.just(key), hostile(st.just(ANNOTATIONS[key])))
)
addresses = hostile(st.sampled_from(["10.1.0.1", "10.1.0.2", "fd00::7"]))


@st.composite
def ingresses(draw: st.DrawFn, index: int) -> dict[str, Any]:
    rules = []
    for _ in range(draw(st.integers(1, 2))):
        items = [
            {
                "path": draw(paths),
                "pathType": draw(path_types),
                "backend": {"service": {"name": draw(service_names), "port": draw(ports)}},
            }
            for _ in range(draw(st.integers(1, 2)))
        ]
        rule: dict[str, Any] = {"http": {"paths": items}}
        if draw(st.booleans()):
            rule["host"] = draw(hosts)
        rules.append(rule)
    chosen = draw(st.lists(annotations, max_size=2)) if draw(st.integers(0, 3)) == 0 else []
    annotation_map = {f"haproxy-ingress.kopf.dev/{key}": value for key, value in chosen}
    spec: dict[str, Any] = {"ingressClassName": "haproxy", "rules": rules}
    if draw(st.booleans()):
        spec["tls"] = [{"hosts": [draw(hosts)], "secretName": draw(hostile(st.just("tls")))}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": f"ing-{index}",
            "namespace": "default",
            "creationTimestamp": f"2026-01-0{index + 1}T00:00:00Z",
            "annotations": annotation_map,
        },
        "spec": spec,
    }


@st.composite
def endpoint_slices(draw: st.DrawFn, service: str) -> dict[str, Any]:
    endpoints = [
        {
            "addresses": [draw(addresses)],
            "conditions": {
                "ready": draw(st.booleans()),
                "serving": draw(st.booleans()),
                "terminating": draw(st.booleans()),
            },
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    port = draw(st.one_of(st.just(8080), st.just(8080), st.integers(-1, 70000)))
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-x",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": draw(st.sampled_from(["IPv4", "IPv6"])),
        "ports": [{"name": "http", "port": port}],
        "endpoints": endpoints,
    }


@st.composite
def clusters(draw: st.DrawFn) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": "haproxy"},
            "spec": {"controller": "haproxy-ingress.kopf.dev/controller"},
        }
    ]
    for name in ("web", "api"):
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"ports": [{"name": "http", "port": 80}]},
            }
        )
        objects.append(draw(endpoint_slices(name)))
    objects.extend(draw(ingresses(i)) for i in range(draw(st.integers(1, 3))))
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "tls", "namespace": "default"},
            "type": "kubernetes.io/tls",
            "data": draw(
                st.one_of(
                    st.just(VALID_TLS),
                    st.just(VALID_TLS),
                    st.builds(
                        lambda crt: {"tls.crt": crt, "tls.key": VALID_TLS["tls.key"]},
                        hostile(st.just(VALID_TLS["tls.crt"])),
                    ),
                )
            ),
        }
    )
    return objects
