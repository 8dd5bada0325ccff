"""ingress-nginx snippets, interpreted, against a real HAProxy and real backends.

What ingress-nginx's users write in configuration-snippet and server-snippet
(headers both ways, proxy_method, return, redirects, set/if) must be what a
client and a pod observe; text that HAProxy would read as syntax (``%[``)
stays text; a server-snippet never reaches another namespace's paths.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.backends import free_port
from tests.haproxy.stack import Stack
from tests.haproxy.test_annotations import NGINX, serve
from tests.haproxy.test_annotations import request as _request
from tests.haproxy.test_traffic import start_pods
from tests.kube import ingress, path, rule

pytestmark = pytest.mark.haproxy

SNIPPET = NGINX + "configuration-snippet"
SERVER = NGINX + "server-snippet"


async def request(
    session: aiohttp.ClientSession, stack: Stack, target: str, host: str, **kwargs: Any
) -> tuple[int, dict[str, str], str, aiohttp.ClientResponse]:
    """As test_annotations.request, header names lowered (HAProxy sends them lowered)."""
    status, headers, body, response = await _request(session, stack, target, host, **kwargs)
    return status, {k.lower(): v for k, v in headers.items()}, body, response


async def test_headers_method_and_variables(stack: Stack, session: aiohttp.ClientSession) -> None:
    pods = await start_pods("web", 1, free_port(), first=51)
    assert not await serve(
        stack,
        pods,
        ingress(
            "headers",
            rule("snip.example.com", path("/")),
            annotations={
                SNIPPET: """
                    # response headers: replaced, added (2xx/3xx), cleared
                    more_set_headers "X-Frame-Options: DENY" 'X-Literal: %[src] "q"';
                    add_header X-Added "h=$host s=$scheme u=$uri";
                    more_clear_headers X-Backend;
                    more_set_headers -s 404 "X-Only-404: yes";
                    # the request the pod receives
                    set $who "$remote_addr";
                    proxy_set_header X-Req "$request_uri|$http_x_in|$who|$arg_q";
                    more_set_input_headers "X-Cookie: ${cookie_c}";
                    more_clear_input_headers X-Drop 'X-Wild-*';
                    proxy_method PUT;
                """
            },
        ),
    )
    web = pods[0]
    status, headers, body, _ = await request(
        session,
        stack,
        "/p?q=1",
        "snip.example.com",
        headers={"X-In": "in", "X-Drop": "1", "X-Wild-A": "1", "Cookie": "c=v"},
    )
    assert (status, body) == (200, "web-51 /p?q=1")
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-literal"] == '%[src] "q"'  # text, never an HAProxy fetch
    assert headers["x-added"] == "h=snip.example.com s=http u=/p"
    assert "x-backend" not in headers and "x-only-404" not in headers
    seen = dict(web.seen[-1][1])
    assert seen["x-req"] == "/p?q=1|in|127.0.0.1|1"
    assert seen["x-cookie"] == "v"
    assert "x-drop" not in seen and "x-wild-a" not in seen
    assert web.methods[-1] == "PUT"


async def test_return_if_and_redirects(stack: Stack, session: aiohttp.ClientSession) -> None:
    pods = await start_pods("web", 1, free_port(), first=52)
    assert not await serve(
        stack,
        pods,
        ingress(
            "guard",
            rule("ret.example.com", path("/")),
            annotations={
                SNIPPET: "add_header X-Always yes always;\n"
                'if ($http_x_token != "secret") { return 403 "no token\\n"; }'
            },
        ),
        ingress(
            "https",
            rule("redir.example.com", path("/")),
            annotations={SNIPPET: "if ($scheme = http) { return 301 https://$host$request_uri; }"},
        ),
        ingress(
            "rewrite",
            rule("old.example.com", path("/keep")),
            annotations={SNIPPET: "rewrite ^ https://new.example.com/x permanent;"},
        ),
        ingress(
            "rewrite2",
            rule("old.example.com", path("/drop")),
            annotations={SNIPPET: "rewrite ^/(.*)$ https://new.example.com/$1? redirect;"},
        ),
        ingress(
            "plain",
            rule("plain.example.com", path("/")),
            annotations={SNIPPET: "return 200 'pong';"},
        ),
    )
    status, headers, body, _ = await request(session, stack, "/", "ret.example.com")
    assert (status, body, headers["x-always"]) == (403, "no token\n", "yes")
    status, _, body, _ = await request(
        session, stack, "/a", "ret.example.com", headers={"X-Token": "secret"}
    )
    assert (status, body) == (200, "web-52 /a")

    status, headers, _, _ = await request(session, stack, "/a?b=1", "redir.example.com")
    assert (status, headers["location"]) == (301, "https://redir.example.com/a?b=1")
    status, _, body, _ = await request(session, stack, "/a", "redir.example.com", https=True)
    assert (status, body) == (200, "web-52 /a")

    # nginx's rewrite keeps the arguments unless the replacement ends in '?'.
    status, headers, _, _ = await request(session, stack, "/keep?b=1", "old.example.com")
    assert (status, headers["location"]) == (301, "https://new.example.com/x?b=1")
    status, headers, _, _ = await request(session, stack, "/drop/y?b=1", "old.example.com")
    assert (status, headers["location"]) == (302, "https://new.example.com/drop/y")

    status, headers, body, _ = await request(session, stack, "/", "plain.example.com")
    assert (status, body, headers["content-type"]) == (200, "pong", "text/plain")


async def test_server_snippet_stays_in_its_namespace_and_changes_without_reload(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    pods = await start_pods("web", 1, free_port(), first=53)
    owner = ingress(
        "owner",
        rule("own.example.com", path("/a")),
        annotations={SERVER: "add_header X-Server one;", SNIPPET: "add_header X-Loc a;"},
    )
    sibling = ingress("sibling", rule("own.example.com", path("/b")))
    # Another namespace on a shared host: its server-snippet acts on its own
    # paths there only.
    intruder = ingress(
        "intruder",
        rule("shared.example.com", path("/x")),
        namespace="other",
        annotations={SERVER: "return 200 'taken';"},
    )
    victim = ingress("victim", rule("shared.example.com", path("/y")))
    events = await serve(stack, pods, owner, sibling, intruder, victim)
    assert "Refused" not in events
    status, _, body, _ = await request(session, stack, "/x", "shared.example.com")
    assert (status, body) == (200, "taken")
    _, headers, _, _ = await request(session, stack, "/a", "own.example.com")
    assert (headers["x-server"], headers["x-loc"]) == ("one", "a")
    _, headers, body, _ = await request(session, stack, "/b", "own.example.com")
    assert headers["x-server"] == "one" and "x-loc" not in headers
    status, _, body, _ = await request(session, stack, "/y", "shared.example.com")
    assert (status, body) == (200, "web-53 /y")

    reloads = (await stack.proc()).reloads
    owner["metadata"]["annotations"] = {SERVER: "add_header X-Server two;"}
    stack.put(owner)
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    _, headers, _, _ = await request(session, stack, "/b", "own.example.com")
    assert headers["x-server"] == "two"
    assert (await stack.proc()).reloads == reloads


async def test_another_namespace_on_the_host_never_switches_a_guard_off(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """A server-snippet that refuses requests without a token: tenant-b adding
    one path on the host used to switch it off, serving /admin to anyone."""
    pods = await start_pods("web", 1, free_port(), first=54)
    guarded = ingress(
        "admin",
        rule("guard.example.com", path("/admin")),
        annotations={SERVER: 'if ($http_x_token != "s3cret") { return 403 "no"; }'},
    )
    other = ingress("other", rule("guard.example.com", path("/other")), namespace="tenant-b")
    await serve(stack, pods, guarded, other)
    status, _, body, _ = await request(session, stack, "/admin", "guard.example.com")
    assert (status, body) == (403, "no")
    status, _, body, _ = await request(
        session, stack, "/admin", "guard.example.com", headers={"X-Token": "s3cret"}
    )
    assert (status, body) == (200, "web-54 /admin")
