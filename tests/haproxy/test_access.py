"""Access control against a real HAProxy: basic auth, deny-lists, satisfy (issue 12).

Every request is real traffic through the rendered configuration; what is
asserted is the status HAProxy answers and which backend saw the request.
Fail closed: a Secret that cannot be used leaves its paths answering 401,
never 200, and other Ingresses keep serving.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import subprocess
import warnings
from collections.abc import Iterable
from typing import Any

import pytest

from tests.backends import Backend, free_port
from tests.haproxy.stack import Stack, wait_for
from tests.haproxy.test_traffic import _ready, slice_for, start_pods
from tests.kube import configmap, ingress, path, rule, service

with warnings.catch_warnings():
    # Deprecated (removed in 3.13), but the only libcrypt binding at hand to
    # make test hashes; HAProxy itself verifies them.
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

pytestmark = pytest.mark.haproxy

P = "haproxy-ingress.kopf.dev/"
N = "nginx.ingress.kubernetes.io/"
NOBODY = "203.0.113.0/24"  # TEST-NET-3: never a test client
PASSWORD = "s3cret pass:word"  # a blank and a colon: only the first ':' splits


def crypt_hash(password: str, salt: str) -> str:
    result = crypt.crypt(password, salt)
    assert result and not result.startswith("*"), salt
    return result


def apr1_hash(password: str) -> str:
    """htpasswd's default format, made by OpenSSL (an independent implementation)."""
    out = subprocess.run(
        ["openssl", "passwd", "-apr1", "-salt", "Zq3x.9/A", password],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


# One user per format an ingress-nginx Secret may hold.
USERS = {
    "bcrypt": crypt_hash(PASSWORD, "$2y$05$abcdefghijklmnopqrstuv"),
    "bcrypt2b": crypt_hash(PASSWORD, "$2b$05$abcdefghijklmnopqrstuv"),
    "sha512": crypt_hash(PASSWORD, "$6$saltsalt$"),
    "sha256": crypt_hash(PASSWORD, "$5$saltsalt$"),
    "md5": crypt_hash(PASSWORD, "$1$saltsalt$"),
    "apr1": apr1_hash(PASSWORD),
}
UNSUPPORTED = {
    "sha1": "{SHA}" + base64.b64encode(b"x" * 20).decode(),
    "plain": PASSWORD.replace(" ", "").replace(":", ""),
}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def htpasswd_secret(name: str, users: dict[str, str], namespace: str = "default") -> dict[str, Any]:
    lines = "".join(f"{user}:{hashed}\n" for user, hashed in users.items())
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {"auth": b64(lines)},
    }


def basic(user: str, password: str) -> bytes:
    return b"Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode())


def request(host: str, target: str = "/", *headers: bytes) -> bytes:
    lines = [f"GET {target} HTTP/1.1".encode(), f"Host: {host}".encode(), *headers]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


async def answer(
    stack: Stack, host: str, target: str = "/", *headers: bytes, source: str = "127.0.0.1"
) -> tuple[int, bytes]:
    """Status and the raw head of HAProxy's answer to a client at ``source``."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", stack.http_port, local_addr=(source, 0)
    )
    writer.write(request(host, target, *headers))
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head = response.partition(b"\r\n\r\n")[0]
    return int(head.split()[1]), head


async def pods(stack: Stack, *names: str, first: int = 101) -> dict[str, Backend]:
    port = free_port()
    result = {
        name: (await start_pods(name, 1, port, first=first + i))[0] for i, name in enumerate(names)
    }
    stack.put(
        *(service(name) for name in result),
        *(slice_for(name, [pod]) for name, pod in result.items()),
    )
    return result


async def synced(stack: Stack, names: Iterable[str]) -> None:
    await stack.sync()
    for name in names:
        await wait_for(lambda name=name: _ready(stack, f"be_default_{name}_80", 1))  # type: ignore[misc]


async def test_basic_auth_verifies_every_supported_hash_format(stack: Stack) -> None:
    backends = await pods(stack, "guarded", "open")
    stack.put(
        htpasswd_secret("users", {**USERS, **UNSUPPORTED}),
        ingress(
            "guarded",
            rule("app.example.com", path("/private", "guarded")),
            annotations={
                N + "auth-type": "basic",
                N + "auth-secret": "users",
                N + "auth-realm": "Team 'ops' only",
            },
        ),
        ingress("open", rule("app.example.com", path("/", "open"))),
    )
    outcome = await stack.sync()
    await wait_for(lambda: _ready(stack, "be_default_guarded_80", 1))
    await wait_for(lambda: _ready(stack, "be_default_open_80", 1))
    warned = [p.message for p in outcome.desired.problems if p.event == "AuthSecretInvalid"]
    assert any("{SHA} (SHA-1)" in m and "sha1" in m for m in warned), warned
    assert any("plain text" in m and "user plain" in m for m in warned), warned

    for user in USERS:
        status, _ = await answer(stack, "app.example.com", "/private/x", basic(user, PASSWORD))
        assert status == 200, user
        status, head = await answer(stack, "app.example.com", "/private/x", basic(user, "wrong"))
        assert status == 401, user
        assert b"\r\nwww-authenticate: basic realm=\"team 'ops' only\"\r\n" in head.lower()
    served = backends["guarded"].served
    assert served == len(USERS)
    # (Another client address each: the first has used up its failures.)
    for user, hashed in UNSUPPORTED.items():  # left out: nobody gets in with them
        for password in (PASSWORD, hashed):
            status, _ = await answer(
                stack, "app.example.com", "/private", basic(user, password), source="127.0.0.2"
            )
            assert status == 401, user
    for headers in ((), (b"Authorization: Basic !!!",), (b"Authorization: Bearer x",)):
        status, _ = await answer(stack, "app.example.com", "/private", *headers, source="127.0.0.3")
        assert status == 401
    # A path of the host that another Ingress serves is not guarded by this one.
    assert (await answer(stack, "app.example.com", "/public"))[0] == 200
    assert backends["guarded"].served == served


async def test_a_flood_of_wrong_passwords_is_cut_off_before_hashing(stack: Stack) -> None:
    await pods(stack, "guarded", first=111)
    stack.put(
        htpasswd_secret("users", {"bcrypt": USERS["bcrypt"]}),
        ingress(
            "guarded",
            rule("app.example.com", path("/", "guarded")),
            annotations={P + "auth-type": "basic", P + "auth-secret": "users"},
        ),
    )
    await synced(stack, ["guarded"])
    statuses = [
        (await answer(stack, "app.example.com", "/", basic("bcrypt", f"guess{i}")))[0]
        for i in range(15)
    ]
    assert statuses[:11] == [401] * 11
    assert statuses[11:] == [429] * 4
    # Even the right password waits until the client's failures age out.
    assert (await answer(stack, "app.example.com", "/", basic("bcrypt", PASSWORD)))[0] == 429


@pytest.mark.parametrize(
    "secret",
    [
        None,  # missing
        {"auth": "not base64!"},
        {"auth": b64("no colon on this line\n")},
        {"other-key": b64("bcrypt:" + USERS["bcrypt"])},
        {"auth": b64("sha1:" + UNSUPPORTED["sha1"])},
    ],
    ids=["missing", "not-base64", "no-colon", "no-auth-key", "only-unsupported"],
)
async def test_an_unusable_auth_secret_fails_closed(
    stack: Stack, secret: dict[str, str] | None
) -> None:
    backends = await pods(stack, "guarded", "other", first=121)
    if secret is not None:
        stack.put(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "users", "namespace": "default"},
                "type": "Opaque",
                "data": secret,
            }
        )
    stack.put(
        ingress(
            "guarded",
            rule("app.example.com", path("/", "guarded")),
            annotations={N + "auth-type": "basic", N + "auth-secret": "users"},
        ),
        ingress("other", rule("other.example.com", path("/", "other"))),
    )
    outcome = await stack.sync()
    await wait_for(lambda: _ready(stack, "be_default_other_80", 1))
    await wait_for(lambda: _ready(stack, "be_default_guarded_80", 1))
    warned = [p for p in outcome.desired.problems if p.event == "AuthSecretInvalid"]
    assert warned and all("auth-secret" in p.field for p in warned)
    for headers in ((), (basic("bcrypt", PASSWORD),), (basic("sha1", PASSWORD),)):
        assert (await answer(stack, "app.example.com", "/", *headers))[0] == 401
    assert backends["guarded"].served == 0
    assert (await answer(stack, "other.example.com", "/"))[0] == 200


async def test_auth_map_secret_and_foreign_namespace(stack: Stack) -> None:
    backends = await pods(stack, "guarded", "foreign", first=131)
    stack.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "users", "namespace": "default"},
            "type": "Opaque",
            "data": {"alice": b64(USERS["apr1"]), "bob": b64(USERS["sha512"])},
        },
        ingress(
            "guarded",
            rule("app.example.com", path("/", "guarded")),
            annotations={
                N + "auth-type": "basic",
                N + "auth-secret": "default/users",
                N + "auth-secret-type": "auth-map",
            },
        ),
        # Another tenant cannot borrow (or probe) this namespace's Secret.
        ingress(
            "foreign",
            rule("foreign.example.com", path("/", "foreign")),
            annotations={N + "auth-type": "basic", N + "auth-secret": "other/users"},
        ),
    )
    await synced(stack, ["guarded"])
    assert (await answer(stack, "app.example.com", "/", basic("alice", PASSWORD)))[0] == 200
    assert (await answer(stack, "app.example.com", "/", basic("bob", PASSWORD)))[0] == 200
    assert (await answer(stack, "app.example.com", "/", basic("alice", "x")))[0] == 401
    assert (await answer(stack, "foreign.example.com", "/", basic("alice", PASSWORD)))[0] == 403
    assert backends["foreign"].served == 0


async def test_deny_lists_per_route_and_global_without_reload(stack: Stack) -> None:
    backends = await pods(stack, "denied", "open", first=141)
    stack.put(
        ingress(
            "denied",
            rule("app.example.com", path("/admin", "denied")),
            annotations={N + "denylist-source-range": "10.0.0.0/8, 127.0.0.0/8"},
        ),
        ingress("open", rule("app.example.com", path("/", "open"))),
    )
    await synced(stack, ["denied", "open"])
    assert (await answer(stack, "app.example.com", "/admin"))[0] == 403
    # A spoofed X-Forwarded-For from an untrusted client changes nothing.
    spoof = b"X-Forwarded-For: 192.0.2.7"
    assert (await answer(stack, "app.example.com", "/admin", spoof))[0] == 403
    assert (await answer(stack, "app.example.com", "/"))[0] == 200
    assert backends["denied"].served == 0

    before = (await stack.proc()).reloads
    # The first global list needs the frontend's rule for it (left out while
    # no list has entries, Structure.frontend_maps): one reload.
    stack.put(configmap({"denylist-source-range": "127.0.0.1/32"}))
    await stack.sync()
    assert (await answer(stack, "app.example.com", "/"))[0] == 403
    assert (await stack.proc()).reloads == before + 1
    # Then it is a map: changed, emptied and filled again without a reload.
    stack.put(configmap({"denylist-source-range": "192.0.2.0/24"}))
    await stack.sync()
    assert (await answer(stack, "app.example.com", "/"))[0] == 200
    assert (await answer(stack, "nothing.example.com", "/"))[0] == 404
    stack.put(configmap({}))
    await stack.sync()
    assert (await answer(stack, "app.example.com", "/"))[0] == 200
    stack.put(configmap({"denylist-source-range": "127.0.0.1/32"}))
    await stack.sync()
    assert (await answer(stack, "app.example.com", "/"))[0] == 403
    assert (await stack.proc()).reloads == before + 1


async def test_the_first_route_with_a_policy_is_refused_from_its_first_request(
    stack: Stack,
) -> None:
    """Without a route naming a policy the frontend has no rules reading one
    (Structure.route_policies); the first such route reloads with them, so
    it is never served unchecked (fail closed)."""
    backends = await pods(stack, "open", first=161)
    stack.put(ingress("open", rule("app.example.com", path("/", "open"))))
    await synced(stack, ["open"])
    assert "txn.policy" not in stack.paths.config.read_text()
    assert (await answer(stack, "app.example.com", "/"))[0] == 200
    before = (await stack.proc()).reloads
    stack.put(
        ingress(
            "open",
            rule("app.example.com", path("/", "open")),
            annotations={N + "whitelist-source-range": NOBODY},
        )
    )
    await stack.sync()
    assert (await stack.proc()).reloads == before + 1
    served = backends["open"].served
    assert (await answer(stack, "app.example.com", "/"))[0] == 403
    assert backends["open"].served == served


async def test_deny_list_with_a_trusted_proxy(stack: Stack) -> None:
    await pods(stack, "open", first=151)
    stack.put(
        configmap(
            {
                "use-forwarded-headers": "true",
                "proxy-real-ip-cidr": "127.0.0.0/8",
                "denylist-source-range": "198.51.100.0/24",
            }
        ),
        ingress("open", rule("app.example.com", path("/", "open"))),
    )
    await synced(stack, ["open"])
    # The test client is the trusted proxy: the address it forwards counts.
    assert (await answer(stack, "app.example.com", "/"))[0] == 200
    assert (await answer(stack, "app.example.com", "/", b"X-Forwarded-For: 198.51.100.9"))[0] == 403
    assert (await answer(stack, "app.example.com", "/", b"X-Forwarded-For: 192.0.2.9"))[0] == 200


async def test_satisfy_any_lets_in_an_allowed_source_or_a_user(stack: Stack) -> None:
    await pods(stack, "near", "far", "both", first=161)
    auth = {N + "auth-type": "basic", N + "auth-secret": "users", N + "satisfy": "any"}
    stack.put(
        htpasswd_secret("users", {"md5": USERS["md5"]}),
        ingress(
            "near",
            rule("near.example.com", path("/", "near")),
            annotations={**auth, N + "whitelist-source-range": "127.0.0.0/8"},
        ),
        ingress(
            "far",
            rule("far.example.com", path("/", "far")),
            annotations={**auth, N + "whitelist-source-range": NOBODY},
        ),
        ingress(
            "both",
            rule("both.example.com", path("/", "both")),
            annotations={
                **auth,
                N + "satisfy": "all",
                N + "whitelist-source-range": "127.0.0.0/8",
            },
        ),
    )
    await synced(stack, ["near", "far", "both"])
    assert (await answer(stack, "near.example.com", "/"))[0] == 200
    assert (await answer(stack, "far.example.com", "/"))[0] == 401
    assert (await answer(stack, "far.example.com", "/", basic("md5", PASSWORD)))[0] == 200
    assert (await answer(stack, "both.example.com", "/"))[0] == 401
    assert (await answer(stack, "both.example.com", "/", basic("md5", PASSWORD)))[0] == 200


async def flood(stack: Stack, host: str, seconds: float, clients: int = 4) -> dict[int, int]:
    """Requests as fast as ``clients`` connections allow for ``seconds``; statuses counted."""
    counts: dict[int, int] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def client() -> None:
        while loop.time() < deadline:
            status, _ = await answer(stack, host, "/")
            counts[status] = counts.get(status, 0) + 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return counts


async def test_rate_limit_holds_the_set_rate_within_ten_percent(stack: Stack) -> None:
    await pods(stack, "limited", "free", first=171)
    stack.put(
        configmap({"limit-req-status-code": "429"}),
        ingress(
            "limited",
            rule("app.example.com", path("/", "limited")),
            annotations={N + "limit-rps": "20", N + "limit-burst-multiplier": "1"},
        ),
        ingress("free", rule("app.example.com", path("/free", "free"))),
    )
    await synced(stack, ["limited", "free"])
    counts = await flood(stack, "app.example.com", 10.0)
    assert set(counts) == {200, 429}, counts
    assert counts[429] > counts[200]  # the flood really was over the rate
    assert 180 <= counts[200] <= 220, counts  # 20/s over 10 s, ±10 %
    # Another Ingress's path on the same host is not limited by this one.
    assert (await answer(stack, "app.example.com", "/free"))[0] == 200


async def test_rate_limit_burst_exemption_and_per_minute(stack: Stack) -> None:
    await pods(stack, "burst", "exempt", "minute", first=181)
    stack.put(
        ingress(
            "burst",
            rule("burst.example.com", path("/", "burst")),
            annotations={N + "limit-rps": "2"},  # burst multiplier 5: 10 at once
        ),
        ingress(
            "exempt",
            rule("exempt.example.com", path("/", "exempt")),
            annotations={N + "limit-rps": "1", N + "limit-whitelist": "127.0.0.0/8"},
        ),
        ingress(
            "minute",
            rule("minute.example.com", path("/", "minute")),
            annotations={N + "limit-rpm": "3", N + "limit-burst-multiplier": "1"},
        ),
    )
    await synced(stack, ["burst", "exempt", "minute"])
    burst = [(await answer(stack, "burst.example.com", "/"))[0] for _ in range(12)]
    assert burst.count(200) == 10 and burst[-1] == 503, burst
    exempt = [(await answer(stack, "exempt.example.com", "/"))[0] for _ in range(10)]
    assert exempt == [200] * 10
    minute = [(await answer(stack, "minute.example.com", "/"))[0] for _ in range(5)]
    assert minute == [200, 200, 200, 503, 503]


async def test_equal_rate_limits_of_two_ingresses_count_apart(stack: Stack) -> None:
    """ingress-nginx keeps a limit zone per Ingress (namespace, name, uid): a
    client's requests to another tenant's Ingress with the same limit-rps
    never spend its budget here."""
    await pods(stack, "mine", first=195)
    stack.put(
        configmap({"limit-req-status-code": "429"}),
        service("theirs", namespace="tenant-b"),
        slice_for("theirs", [], namespace="tenant-b"),
        ingress(
            "mine",
            rule("mine.example.com", path("/", "mine")),
            annotations={N + "limit-rps": "2", N + "limit-burst-multiplier": "1"},
        ),
        ingress(
            "theirs",
            rule("theirs.example.com", path("/", "theirs")),
            namespace="tenant-b",
            annotations={N + "limit-rps": "2", N + "limit-burst-multiplier": "1"},
        ),
    )
    await synced(stack, ["mine"])
    spent = [(await answer(stack, "theirs.example.com", "/"))[0] for _ in range(3)]
    assert spent[-1] == 429, spent  # over tenant-b's limit (its Service has no pod: 503)
    assert (await answer(stack, "mine.example.com", "/"))[0] == 200


async def test_connection_limit_counts_concurrent_requests(stack: Stack) -> None:
    port = free_port()
    slow = await Backend("slow-1", "127.0.0.191", port, delay=1.5).start()
    stack.put(
        service("slow"),
        slice_for("slow", [slow]),
        ingress(
            "slow",
            rule("slow.example.com", path("/", "slow")),
            annotations={N + "limit-connections": "2"},
        ),
    )
    await synced(stack, ["slow"])
    statuses = await asyncio.gather(*(answer(stack, "slow.example.com", "/") for _ in range(5)))
    assert sorted(s for s, _ in statuses) == [200, 200, 503, 503, 503]
    assert slow.served == 2
    # Once they are done, the client may open new ones.
    assert (await answer(stack, "slow.example.com", "/"))[0] == 200


def headers_of(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


async def preflight(stack: Stack, host: str, origin: str) -> tuple[int, dict[str, str]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.http_port)
    writer.write(
        f"OPTIONS /api HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n"
        "Access-Control-Request-Method: PUT\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head = response.partition(b"\r\n\r\n")[0]
    return int(head.split()[1]), headers_of(head)


async def test_cors_preflight_and_actual_requests(stack: Stack) -> None:
    backends = await pods(stack, "listed", "star", "plain", first=201)
    stack.put(
        htpasswd_secret("users", {"md5": USERS["md5"]}),
        ingress(
            "listed",
            rule("listed.example.com", path("/", "listed")),
            annotations={
                N + "enable-cors": "true",
                N + "cors-allow-origin": "https://app.example.com, https://*.corp.example",
                N + "cors-allow-methods": "GET, PUT",
                N + "cors-expose-headers": "X-Total",
                N + "cors-max-age": "600",
                # A preflight carries no credentials: it is answered before auth.
                N + "auth-type": "basic",
                N + "auth-secret": "users",
            },
        ),
        ingress(
            "star",
            rule("star.example.com", path("/", "star")),
            annotations={N + "enable-cors": "true"},  # "*", credentials on by default
        ),
        ingress("plain", rule("plain.example.com", path("/", "plain"))),
    )
    await synced(stack, ["listed", "star", "plain"])
    for origin in ("https://app.example.com", "https://x.corp.example"):
        status, headers = await preflight(stack, "listed.example.com", origin)
        assert status == 204
        assert headers["access-control-allow-origin"] == origin
        assert headers["access-control-allow-methods"] == "GET, PUT"
        assert headers["access-control-max-age"] == "600"
        assert headers["access-control-allow-credentials"] == "true"
        assert headers["vary"] == "Origin"
    assert backends["listed"].served == 0
    for foreign in (
        "https://evil.example.com",
        "http://app.example.com",
        "https://a.b.corp.example",
        "https://corp.example",
        "https://app.example.com.evil.example",
    ):
        status, headers = await preflight(stack, "listed.example.com", foreign)
        assert status == 401, foreign  # not answered: the request goes on to auth
        assert "access-control-allow-origin" not in headers
    # Actual requests: the headers on the backend's answer for listed origins only.
    login = basic("md5", PASSWORD)
    status, head = await answer(
        stack, "listed.example.com", "/", login, b"Origin: https://app.example.com"
    )
    headers = headers_of(head)
    assert status == 200
    assert headers["access-control-allow-origin"] == "https://app.example.com"
    assert headers["access-control-expose-headers"] == "X-Total"
    assert headers["access-control-allow-credentials"] == "true"
    status, head = await answer(
        stack, "listed.example.com", "/", login, b"Origin: https://evil.example.com"
    )
    assert status == 200 and "access-control-allow-origin" not in headers_of(head)
    # HAProxy's own refusal carries the headers too: the page can read the 401.
    status, head = await answer(stack, "listed.example.com", "/", b"Origin: https://x.corp.example")
    assert status == 401
    assert headers_of(head)["access-control-allow-origin"] == "https://x.corp.example"

    # "*": any origin, and never together with credentials.
    status, headers = await preflight(stack, "star.example.com", "https://any.example")
    assert status == 204
    assert headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in headers
    status, head = await answer(stack, "star.example.com", "/", b"Origin: https://any.example")
    assert headers_of(head)["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in headers_of(head)
    # Without enable-cors nothing changes.
    status, head = await answer(stack, "plain.example.com", "/", b"Origin: https://any.example")
    assert status == 200 and "access-control-allow-origin" not in headers_of(head)


async def test_cors_origins_as_ingress_nginx_reads_them(stack: Stack) -> None:
    """cors.go: entries that are not origins are skipped (the Ingress is served),
    and origins of any scheme (desktop shells: tauri://) are echoed."""
    await pods(stack, "mixed", "shell", "none", first=236)
    stack.put(
        ingress(
            "mixed",
            rule("mixed.example.com", path("/", "mixed")),
            annotations={
                N + "enable-cors": "true",
                N + "cors-allow-origin": "origin.cors.com:8080, https://origin2.cors.com,",
            },
        ),
        ingress(
            "shell",
            rule("shell.example.com", path("/", "shell")),
            annotations={
                N + "enable-cors": "true",
                N + "cors-allow-origin": "test://localhost, tauri://localhost:3000",
            },
        ),
        ingress(
            "none",
            rule("none.example.com", path("/", "none")),
            annotations={N + "enable-cors": "true", N + "cors-allow-origin": "foo.com"},
        ),
    )
    await synced(stack, ["mixed", "shell", "none"])
    status, head = await answer(
        stack, "mixed.example.com", "/", b"Origin: https://origin2.cors.com"
    )
    assert status == 200
    assert headers_of(head)["access-control-allow-origin"] == "https://origin2.cors.com"
    for foreign in (b"Origin: origin.cors.com:8080", b"Origin: http://origin.cors.com:8080"):
        status, head = await answer(stack, "mixed.example.com", "/", foreign)
        assert status == 200 and "access-control-allow-origin" not in headers_of(head)
    for origin in ("test://localhost", "tauri://localhost:3000"):
        status, head = await answer(stack, "shell.example.com", "/", f"Origin: {origin}".encode())
        assert (status, headers_of(head)["access-control-allow-origin"]) == (200, origin)
    status, head = await answer(stack, "shell.example.com", "/", b"Origin: tauri://localhost")
    assert status == 200 and "access-control-allow-origin" not in headers_of(head)
    # No usable origin: served, and no origin is allowed (ingress-nginx: every one).
    status, head = await answer(stack, "none.example.com", "/", b"Origin: https://foo.com")
    assert status == 200 and "access-control-allow-origin" not in headers_of(head)
    status, headers = await preflight(stack, "none.example.com", "https://foo.com")
    assert status == 200 and "access-control-allow-origin" not in headers


def outward_address() -> str:
    """This machine's own non-loopback IPv4 address (auth-url refuses loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        address = str(probe.getsockname()[0])
    assert not address.startswith("127."), "the test needs a non-loopback address"
    return address


class AuthService:
    """A real HTTP auth service: the path decides the answer; it records what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> AuthService:
        self.host = outward_address()
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            target = head.split("\r\n", 1)[0].split()[1]
            self.seen.append((target, headers_of(head.encode("latin-1"))))
            status = {"/ok": 200, "/no": 401, "/forbid": 403, "/err": 500}.get(target, 200)
            if target == "/slow":
                await asyncio.sleep(3)
            extra = "X-User: alice\r\nX-Other: no\r\n" if status == 200 else ""
            tail = "Content-Length: 0\r\nConnection: close\r\n\r\n"
            writer.write(f"HTTP/1.1 {status} X\r\n{extra}{tail}".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # (the slow answer is cut short when the test ends)
        finally:
            writer.close()


async def test_external_auth_decides_and_fails_closed(stack: Stack) -> None:
    service_ = await AuthService().start()
    backends = await pods(stack, "ok", "no", "forbid", "err", "slow", "down", "open", first=211)
    closed = free_port(service_.host)  # nothing listens there
    url = f"http://{service_.host}:{service_.port}"
    cases = {
        "ok": f"{url}/ok",
        "no": f"{url}/no",
        "forbid": f"{url}/forbid",
        "err": f"{url}/err",
        "slow": f"{url}/slow",
        "down": f"http://{service_.host}:{closed}/ok",
    }
    stack.put(
        *(
            ingress(
                name,
                rule(f"{name}.example.com", path("/", name)),
                annotations={
                    N + "auth-url": target,
                    N + "auth-response-headers": "X-User",
                    N + "auth-signin": "https://login.example.com/start",
                    P + "auth-timeout": "1s",
                },
            )
            for name, target in cases.items()
        ),
        ingress("open", rule("open.example.com", path("/", "open"))),
        ingress(
            "back",
            rule("back.example.com", path("/", "open")),
            annotations={
                N + "auth-url": cases["no"],
                N + "auth-signin": "https://login.example.com/start?app=1",
                N + "auth-signin-redirect-param": "return_to",
            },
        ),
    )
    try:
        await synced(stack, [*cases, "open"])  # "back" sends to "open"
        status, _ = await answer(stack, "ok.example.com", "/a?b=1", b"Cookie: s=1")
        assert status == 200
        target, seen = service_.seen[-1]
        assert target == "/ok"
        assert seen["x-original-url"] == "http://ok.example.com/a?b=1"
        assert seen["x-original-method"] == "GET" and seen["cookie"] == "s=1"
        got = dict(backends["ok"].seen[-1][1])
        assert got["x-user"] == "alice" and "x-other" not in got
        status, head = await answer(stack, "no.example.com", "/p")
        assert status == 302
        location = headers_of(head)["location"]
        assert location == "https://login.example.com/start?rd=http%3A%2F%2Fno.example.com%2Fp"
        status, head = await answer(stack, "back.example.com", "/q")
        assert status == 302  # auth-signin-redirect-param names the parameter
        assert headers_of(head)["location"] == (
            "https://login.example.com/start?app=1&return_to=http%3A%2F%2Fback.example.com%2Fq"
        )
        assert (await answer(stack, "forbid.example.com", "/"))[0] == 403
        assert (await answer(stack, "err.example.com", "/"))[0] == 500
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert (await answer(stack, "slow.example.com", "/"))[0] == 500
        assert loop.time() - start < 2.9  # the timeout, not the service, ended it
        assert (await answer(stack, "down.example.com", "/"))[0] == 500
        assert (await answer(stack, "open.example.com", "/"))[0] == 200
        for name in ("no", "forbid", "err", "slow", "down"):
            assert backends[name].served == 0, name
    finally:
        await service_.stop()


async def test_oauth2_proxy_annotations_expand_per_request(stack: Stack) -> None:
    """ingress-nginx's oauth2-proxy setup, unchanged: auth-signin's $host and
    $escaped_request_uri are this request's, and a signin URL that sets the
    redirect parameter itself is used as it is (no second rd=); one that
    does not gets rd= appended. auth-url's $host is a name no DNS here
    answers for: the request fails closed (500), never reaching the pod."""
    service_ = await AuthService().start()
    backends = await pods(stack, "sso", "plain", "named", first=231)
    refused = f"http://{service_.host}:{service_.port}/no"
    stack.put(
        ingress(
            "sso",
            rule("sso.example.com", path("/", "sso")),
            annotations={
                N + "auth-url": refused,
                N + "auth-signin": "https://$host/oauth2/start?rd=$escaped_request_uri",
            },
        ),
        ingress(
            "plain",
            rule("plain.example.com", path("/", "plain")),
            annotations={
                N + "auth-url": refused,
                N + "auth-signin": "https://login.example.com/start?from=$http_host",
            },
        ),
        ingress(
            "authelia",
            rule("authelia.example.com", path("/", "plain")),
            annotations={
                N + "auth-url": refused,
                N + "auth-signin": "https://auth.example.com?rm=$request_method",
            },
        ),
        ingress(
            "named",
            rule("named.example.com", path("/", "named")),
            annotations={
                N + "auth-url": "http://$host/oauth2/auth",
                P + "auth-timeout": "1s",
            },
        ),
    )
    try:
        outcome = await stack.sync()
        assert not outcome.desired.problems, outcome.desired.problems
        await synced(stack, ["sso", "plain", "named"])
        status, head = await answer(stack, "SSO.example.com:80", "/p/a%20b?q=1&r=/")
        assert status == 302
        assert headers_of(head)["location"] == (
            "https://sso.example.com/oauth2/start?rd=%2Fp%2Fa%2520b%3Fq%3D1%26r%3D%2F"
        )
        status, head = await answer(stack, "plain.example.com:8080", "/x")
        assert status == 302
        assert headers_of(head)["location"] == (
            "https://login.example.com/start?from=plain.example.com:8080"
            "&rd=http%3A%2F%2Fplain.example.com%3A8080%2Fx"
        )
        status, head = await answer(stack, "authelia.example.com", "/y")
        assert status == 302
        assert headers_of(head)["location"] == (
            "https://auth.example.com?rm=GET&rd=http%3A%2F%2Fauthelia.example.com%2Fy"
        )
        assert (await answer(stack, "named.example.com", "/"))[0] == 500
        assert all(backend.served == 0 for backend in backends.values())
    finally:
        await service_.stop()


async def test_global_auth_guards_every_ingress_but_those_that_opt_out(stack: Stack) -> None:
    """The ConfigMap's global-auth-url asks the auth service for every route
    (401 → global-auth-signin); an Ingress with enable-global-auth "false" is
    served without it, one with its own auth-url asks that one instead."""
    service_ = await AuthService().start()
    backends = await pods(stack, "guarded", "out", "own", first=241)
    url = f"http://{service_.host}:{service_.port}"
    stack.put(
        configmap(
            {
                "global-auth-url": f"{url}/no",
                "global-auth-signin": "https://login.example.com/start?rd=$escaped_request_uri",
            }
        ),
        ingress("guarded", rule("guarded.example.com", path("/", "guarded"))),
        ingress(
            "out",
            rule("out.example.com", path("/", "out")),
            annotations={N + "enable-global-auth": "false"},
        ),
        ingress(
            "own",
            rule("own.example.com", path("/", "own")),
            annotations={N + "auth-url": f"{url}/ok"},
        ),
    )
    try:
        outcome = await stack.sync()
        assert not outcome.desired.problems, outcome.desired.problems
        await synced(stack, ["out"])
        status, head = await answer(stack, "guarded.example.com", "/p?q=1")
        assert (status, headers_of(head)["location"]) == (
            302,
            "https://login.example.com/start?rd=%2Fp%3Fq%3D1",
        )
        assert service_.seen[-1][0] == "/no"
        assert (await answer(stack, "own.example.com", "/"))[0] == 200
        assert service_.seen[-1][0] == "/ok"
        asked = len(service_.seen)
        assert (await answer(stack, "out.example.com", "/"))[0] == 200
        assert len(service_.seen) == asked
        assert backends["guarded"].served == 0
    finally:
        await service_.stop()


async def handshake(port: int, version: ssl.TLSVersion) -> tuple[str, str] | None:
    """(protocol, cipher) HAProxy agrees to at exactly ``version``, or None if it refuses."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = version
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="tls.example.com"
        )
    except (ssl.SSLError, ConnectionError):
        return None
    ssl_object = writer.get_extra_info("ssl_object")
    result = (ssl_object.version(), ssl_object.cipher()[0])
    writer.close()
    return result


async def test_configmap_tls_policy_on_every_https_bind(stack: Stack) -> None:
    await pods(stack, "tls", first=221)
    stack.put(ingress("tls", rule("tls.example.com", path("/", "tls"))))
    await synced(stack, ["tls"])
    assert (await handshake(stack.https_port, ssl.TLSVersion.TLSv1_2)) is not None
    stack.put(configmap({"ssl-protocols": "TLSv1.3"}))
    await stack.sync()
    assert await handshake(stack.https_port, ssl.TLSVersion.TLSv1_2) is None
    assert (await handshake(stack.https_port, ssl.TLSVersion.TLSv1_3)) is not None
    cipher = "ECDHE-ECDSA-AES256-GCM-SHA384"  # the default certificate's key is ECDSA
    stack.put(configmap({"ssl-protocols": "TLSv1.2", "ssl-ciphers": cipher}))
    await stack.sync()
    assert await handshake(stack.https_port, ssl.TLSVersion.TLSv1_2) == ("TLSv1.2", cipher)
    assert await handshake(stack.https_port, ssl.TLSVersion.TLSv1_3) is None
