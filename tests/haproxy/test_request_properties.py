"""Generated requests against a real HAProxy: a request only ever reaches the backend
whose rule matches its canonical host and path.

Two properties, each over hypothesis-generated Host and path bytes:
- ``ingress.lua`` (what HAProxy runs) computes exactly :mod:`canonical` (the
  reference the Ingress paths are keyed with);
- through a rendered cluster, the backend reached (or 400 / 403 / 404) is the
  one an independent reading of the Ingress rules picks for the canonical
  host and path.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haproxy_ingress.canonical import canonical_host, canonical_path
from haproxy_ingress.haproxy.config import environment, lua_source
from tests.backends import Backend, free_port
from tests.haproxy.stack import Stack, wait_for
from tests.haproxy.test_traffic import _ready, slice_for
from tests.kube import ingress, ingress_class, path, rule, service

pytestmark = pytest.mark.haproxy
T = TypeVar("T")

PATH_TOKENS = [
    "/", "//", "a", "x", "admin", "api", "stat", "statistics", "b", "any", "e", "E",
    ".", "..", "%2e", "%2E%2e", "%2f", "%2F", "%5c", "%5C", ";", ";p=1", "%3b", "%41dmin",
    "%61", "%", "%zz", "%00", "~", "%7E", "%C3%A9", "%20", "+", "'", "*", "@", ":",
    "-", "_", "!", "$", "&", "(", ")", ",", "=", "...", ".a", "a.",
]  # fmt: skip
HOSTS = [
    None, "", "a.example.com", "A.EXAMPLE.COM", "a.example.com.", "a.example.com:80",
    "a.example.com:", "b.example.com", "z.example.com", "y.z.example.com", "example.com",
    "other.org", "a.example.com/x", "a.example.com, b.example.com", "x@a.example.com",
    "a..example.com", "[::1]", "[::1]:443", "127.0.0.1", "-a.example.com", "a_b.example.com",
    "a.example.com:99999", "a.example.com:8080:1", "a.example.com:123456", "a-b.example.com",
    "a.example.com:", "1.example.com", "a-.example.com", "x" * 63 + ".example.com",
    "x" * 64 + ".example.com", ("x" * 62 + ".") * 4 + "a", ("x" * 62 + ".") * 4 + "ab",
    ("x" * 62 + ".") * 4 + "a:8080", "a.example.com.:80", "a.Example.com",
]  # fmt: skip
paths = st.lists(st.sampled_from(PATH_TOKENS), max_size=8).map(lambda t: "/" + "".join(t))
hosts = st.one_of(
    st.sampled_from(HOSTS),
    st.text(alphabet="aAbz.-:_@/,[]0123456789%", min_size=1, max_size=20),
)


def request(target: str, host: str | None, port: int) -> tuple[int, bytes]:
    lines = [f"GET {target} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines.append("Connection: close")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


class Loop:
    """An event loop in a thread: the async stack under synchronous hypothesis tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# --- property 1: the Lua canonicaliser is the Python one ---------------------------------


# The canonicalising steps under test: ingress.lua alone (every input reaches
# it), and fe_http's as rendered (canonical.cfg.j2: plain requests taken as
# they are, the rest through ingress.lua).
CANONICALISERS = {
    "lua": "    http-request lua.ingress_canonical",
    "frontend": environment().get_template("canonical.cfg.j2").render(),
}


@pytest.fixture(scope="module", params=sorted(CANONICALISERS))
def echo_port(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """A HAProxy that answers every request with the canonical host and path it computed."""
    base = tmp_path_factory.mktemp("canonical")
    port = free_port()
    config = base / "haproxy.cfg"
    lua = base / "ingress.lua"
    lua.write_bytes(lua_source())
    config.write_text(
        f"""global
    lua-load-per-thread {lua}
defaults
    mode http
    timeout client 5s
    timeout server 5s
    timeout connect 5s
frontend echo
    bind 127.0.0.1:{port}
{CANONICALISERS[request.param]}
    http-request return status 400 if {{ var(txn.invalid) -m found }}
    http-request return status 200 content-type text/plain \
        lf-string "%[var(txn.host)] %[var(txn.path)]"
"""
    )
    process = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                threading.Event().wait(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(5)


@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(host=hosts, target=paths)
def test_canonicaliser_equals_the_reference(echo_port: int, host: str | None, target: str) -> None:
    answers_the_reference(echo_port, host, target)


def answers_the_reference(port: int, host: str | None, target: str) -> None:
    status, body = request(target, host, port)
    want_host, want_path = canonical_host(host), canonical_path(target)
    if want_host is None or want_path is None:
        assert status == 400, (host, target, body)
    else:
        assert (status, body.decode("latin-1")) == (200, f"{want_host} {want_path}"), (host, target)


# Requests at the edge of "canonical already" (the frontend's plain-request
# path): DNS-like names with and without a port, paths of segments among which
# dot segments, empty ones and bytes canonicalising would change.
LONG_NAMES = [("x" * 62 + ".") * 4 + tail for tail in ("a", "ab", "a:80", "ab:80", "a.")]
near_hosts = st.one_of(
    st.builds(
        lambda labels, port: ".".join(labels) + port,
        st.lists(
            st.one_of(
                st.text(alphabet="ab0-", max_size=4),
                st.sampled_from(["x" * 63, "x" * 64, "A", "a_b"]),
            ),
            min_size=1,
            max_size=5,
        ),
        st.sampled_from(["", ":", ":80", ":65535", ":123456", ":8a"]),
    ),
    st.sampled_from(LONG_NAMES),  # 253 and 254 characters (the limit), a port, a final dot
)
near_paths = st.builds(
    lambda segments, slash: "/" + "/".join(segments) + slash,
    st.lists(
        st.sampled_from(["a", "b.c", ".", "..", "...", ".a", "a.", "", "x;y", "%41", "-_~", "@:"]),
        max_size=6,
    ),
    st.sampled_from(["", "/"]),
)


@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(host=near_hosts, target=near_paths)
def test_canonicaliser_equals_the_reference_on_plain_requests(
    echo_port: int, host: str, target: str
) -> None:
    answers_the_reference(echo_port, host, target)


# --- property 2: routing by canonical host and path only ---------------------------------


@dataclass(frozen=True)
class Rule:
    host: str  # "" for no host
    path: str
    kind: str  # Exact | Prefix | ImplementationSpecific
    pod: str
    guarded: bool = False


RULES = (
    Rule("a.example.com", "/x", "Exact", "ax"),
    Rule("a.example.com", "/admin", "Prefix", "aadmin", guarded=True),
    Rule("a.example.com", "/api", "Prefix", "aapi"),
    Rule("a.example.com", "/stat", "ImplementationSpecific", "astat"),
    Rule("a.example.com", "/", "Prefix", "aroot"),
    Rule("*.example.com", "/", "Prefix", "wild"),
    Rule("*.example.com", "/e", "Exact", "wilde"),
    Rule("b.example.com", "/b", "Prefix", "bb"),
    Rule("", "/any", "Prefix", "anyany"),
    Rule("", "/e", "Exact", "anye"),
)


def reference_route(host: str, target: str) -> Rule | None:
    """The Ingress rules read on their own: host scope first, then the most specific path."""
    ruled = {r.host for r in RULES if r.host}
    parent = host.partition(".")[2]
    if host in ruled:
        scope = host
    elif parent and f"*.{parent}" in ruled:
        scope = f"*.{parent}"
    else:
        scope = ""
    rules = [r for r in RULES if r.host == scope]
    exact = [
        r
        for r in rules
        if (r.kind == "Exact" and r.path == target)
        or (r.kind == "Prefix" and r.path != "/" and target == r.path.rstrip("/"))
    ]
    if exact:
        return min(exact, key=lambda r: r.kind != "Exact")
    prefixes = []
    for r in rules:
        key = r.path.rstrip("/") + "/" if r.kind == "Prefix" else r.path
        if r.kind != "Exact" and target.startswith(key):
            prefixes.append((-len(key), r.kind != "Prefix", r))
    return min(prefixes, key=lambda entry: entry[:2])[2] if prefixes else None


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    loop = Loop()
    stack = Stack(tmp_path_factory.mktemp("routed") / "haproxy")
    port = free_port()
    pods: list[Backend] = []

    async def setup() -> None:
        for index, r in enumerate(RULES):
            pods.append(await Backend(r.pod, f"127.0.0.{60 + index}", port).start())
        stack.put(ingress_class(default=True))
        for r, pod in zip(RULES, pods, strict=True):
            annotations = (
                {"haproxy-ingress.kopf.dev/allowlist-source-range": "203.0.113.0/24"}
                if r.guarded
                else {}
            )
            stack.put(
                service(r.pod),
                slice_for(r.pod, [pod]),
                ingress(r.pod, rule(r.host or None, path(r.path, r.pod, path_type=r.kind)),
                        annotations=annotations),
            )  # fmt: skip
        await stack.sync()
        for r in RULES:
            await wait_for(lambda r=r: _ready(stack, f"be_default_{r.pod}_80", 1))

    async def teardown() -> None:
        await stack.close()
        for pod in pods:
            await pod.stop()

    loop.run(setup())
    try:
        yield stack.http_port
    finally:
        loop.run(teardown())
        loop.close()


@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(host=hosts, target=paths)
def test_requests_reach_only_the_backend_their_rule_names(
    routed: int, host: str | None, target: str
) -> None:
    status, body = request(target, host, routed)
    want_host, want_path = canonical_host(host), canonical_path(target)
    if want_host is None or want_path is None:
        assert status == 400, (host, target, body)
        return
    chosen = reference_route(want_host, want_path)
    if chosen is None:
        assert status == 404, (host, target, want_host, want_path, body)
    elif chosen.guarded:
        assert status == 403, (host, target, want_host, want_path, body)
    else:
        assert status == 200, (host, target, body)
        assert body.decode("latin-1") == f"{chosen.pod} {target}", (host, target, want_path)
