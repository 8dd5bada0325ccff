"""Canaries and regular-expression paths against a real HAProxy, as ingress-nginx expects.

test/e2e/annotations/canary.go: header always/never, header value, header
pattern, cookie always/never, weights; rewrite.go: ``/$2`` with
``/something(/|$)(.*)``. Weight splits are checked within five standard
deviations of the binomial mean (a false failure about once in 1.7 million).
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Any

import aiohttp
import pytest

from tests.backends import free_port
from tests.haproxy.stack import Stack, wait_for
from tests.haproxy.test_annotations import NGINX, request
from tests.haproxy.test_traffic import _ready, slice_for, start_pods
from tests.kube import ingress, path, rule, service

pytestmark = pytest.mark.haproxy


def main_and_canary(canary: dict[str, str], host: str = "canary.example.com") -> list[Any]:
    return [
        ingress("main", rule(host, path("/")), created="2026-01-01T00:00:00Z"),
        ingress(
            "canary",
            rule(host, path("/", service="web-canary")),
            created="2026-01-02T00:00:00Z",
            annotations={NGINX + "canary": "true", **canary},
        ),
    ]


async def serve_both(stack: Stack, *objects: dict[str, Any]) -> set[str]:
    port = free_port()
    main = await start_pods("web", 1, port, first=61)
    canary = await start_pods("web-canary", 1, port, first=62)
    stack.put(
        service("web"),
        slice_for("web", main),
        service("web-canary"),
        slice_for("web-canary", canary),
        *objects,
    )
    outcome = await stack.sync()
    assert outcome.result is not None
    await wait_for(lambda: _ready(stack, "be_default_web_80", 1))
    await wait_for(lambda: _ready(stack, "be_default_web-canary_80", 1))
    return {p.event for p in outcome.desired.problems}


async def who(
    session: aiohttp.ClientSession, stack: Stack, host: str, count: int, **kwargs: Any
) -> Counter[str]:
    async def one() -> str:
        status, _, body, _ = await request(session, stack, "/", host, **kwargs)
        assert status == 200
        return body.split()[0].rsplit("-", 1)[0]

    answers: Counter[str] = Counter()
    for _ in range(count // 50):
        answers.update(await asyncio.gather(*(one() for _ in range(50))))
    return answers


def within_bounds(hits: int, count: int, share: float) -> bool:
    mean = count * share
    deviation = math.sqrt(count * share * (1 - share))
    return abs(hits - mean) <= 5 * deviation + 1


async def test_canary_weight_splits_and_changes_without_reload(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    objects = main_and_canary({NGINX + "canary-weight": "20"})
    assert not await serve_both(stack, *objects)
    answers = await who(session, stack, "canary.example.com", 2000)
    assert within_bounds(answers["web-canary"], 2000, 0.2), answers
    assert answers["web"] + answers["web-canary"] == 2000

    reloads = (await stack.proc()).reloads
    objects[1]["metadata"]["annotations"][NGINX + "canary-weight"] = "90"
    stack.put(objects[1])
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    answers = await who(session, stack, "canary.example.com", 1000)
    assert within_bounds(answers["web-canary"], 1000, 0.9), answers
    assert (await stack.proc()).reloads == reloads

    # canary-weight-total: 1 in 1000.
    objects[1]["metadata"]["annotations"].update(
        {NGINX + "canary-weight": "500", NGINX + "canary-weight-total": "1000"}
    )
    stack.put(objects[1])
    await stack.sync()
    answers = await who(session, stack, "canary.example.com", 1000)
    assert within_bounds(answers["web-canary"], 1000, 0.5), answers


async def test_canary_header_cookie_and_precedence(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    host = "canary.example.com"
    objects = main_and_canary(
        {
            NGINX + "canary-by-header": "CanaryByHeader",
            NGINX + "canary-by-cookie": "CanaryByCookie",
            NGINX + "canary-weight": "0",
        },
        host,
    )
    assert not await serve_both(stack, *objects)

    async def answer(headers: dict[str, str]) -> str:
        answers = await who(session, stack, host, 50, headers=headers)
        assert len(answers) == 1, answers
        return next(iter(answers))

    assert await answer({"CanaryByHeader": "always"}) == "web-canary"
    assert await answer({"CanaryByHeader": "never"}) == "web"
    assert await answer({"CanaryByHeader": "badvalue"}) == "web"
    assert await answer({"Cookie": "CanaryByCookie=always"}) == "web-canary"
    assert await answer({"Cookie": "a=1; CanaryByCookie=never"}) == "web"
    # The header decides before the cookie.
    assert await answer({"CanaryByHeader": "never", "Cookie": "CanaryByCookie=always"}) == "web"
    assert await answer({}) == "web"

    # A header value: only that value sends to the canary; "always" is then ordinary.
    objects[1]["metadata"]["annotations"].update(
        {NGINX + "canary-by-header-value": "DoCanary", NGINX + "canary-weight": "100"}
    )
    del objects[1]["metadata"]["annotations"][NGINX + "canary-by-cookie"]
    stack.put(objects[1])
    await stack.sync()
    assert await answer({"CanaryByHeader": "DoCanary"}) == "web-canary"
    # Not the value: the next rules decide (here the weight, 100 %).
    assert await answer({"CanaryByHeader": "never"}) == "web-canary"

    # A pattern (used when no value is set).
    annotations = objects[1]["metadata"]["annotations"]
    del annotations[NGINX + "canary-by-header-value"]
    annotations.update({NGINX + "canary-by-header-pattern": "^(beta|alpha)$"})
    annotations[NGINX + "canary-weight"] = "0"
    stack.put(objects[1])
    await stack.sync()
    assert await answer({"CanaryByHeader": "alpha"}) == "web-canary"
    assert await answer({"CanaryByHeader": "gamma"}) == "web"


async def test_a_canary_never_reaches_another_namespaces_route(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    host = "shared.example.com"
    main, canary = main_and_canary({NGINX + "canary-weight": "100"}, host)
    canary["metadata"]["namespace"] = "tenant-b"
    port = free_port()
    pods = await start_pods("web", 1, port, first=63)
    intruder = await start_pods("web-canary", 1, port, first=64)
    stack.put(
        service("web"),
        slice_for("web", pods),
        service("web-canary", namespace="tenant-b"),
        slice_for("web-canary", intruder, namespace="tenant-b"),
        main,
        canary,
    )
    outcome = await stack.sync()
    assert "CanaryWithoutMain" in {p.event for p in outcome.desired.problems}
    await wait_for(lambda: _ready(stack, "be_default_web_80", 1))
    answers = await who(session, stack, host, 100, headers={"CanaryByHeader": "always"})
    assert answers == Counter({"web": 100})


async def test_use_regex_and_rewrite_with_capture_groups(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    port = free_port()
    pods = await start_pods("web", 1, port, first=65)
    other = await start_pods("other", 1, port, first=66)
    stack.put(
        service("web"),
        slice_for("web", pods),
        service("other"),
        slice_for("other", other),
        ingress(
            "rewrite",
            rule(
                "rewrite.bar.com",
                path("/something(/|$)(.*)", path_type="ImplementationSpecific"),
            ),
            annotations={NGINX + "rewrite-target": "/$2"},
        ),
        ingress(
            "regex",
            rule("regex.bar.com", path("/foo/bar/[a-z]{3}", path_type="ImplementationSpecific")),
            annotations={NGINX + "use-regex": "true"},
        ),
        # Another tenant on the rewrite host: its longer literal prefix wins,
        # and the regex never takes its path.
        ingress(
            "tenant",
            rule("rewrite.bar.com", path("/somethingelse", service="other")),
            created="2026-01-03T00:00:00Z",
        ),
        # A catch-all of another Ingress loses to the more specific regex.
        ingress(
            "catchall",
            rule("regex.bar.com", path("/", service="other")),
            created="2026-01-03T00:00:00Z",
        ),
    )
    outcome = await stack.sync()
    assert outcome.result is not None
    assert not outcome.desired.problems
    await wait_for(lambda: _ready(stack, "be_default_web_80", 1))
    await wait_for(lambda: _ready(stack, "be_default_other_80", 1))

    async def get(target: str, host: str) -> tuple[int, str]:
        status, _, body, _ = await request(session, stack, target, host)
        return status, body

    assert await get("/something", "rewrite.bar.com") == (200, "web-65 /")
    assert await get("/something/", "rewrite.bar.com") == (200, "web-65 /")
    assert await get("/something/new?x=1", "rewrite.bar.com") == (200, "web-65 /new?x=1")
    assert await get("/SOMETHING/Case", "rewrite.bar.com") == (200, "web-65 /Case")
    assert await get("/somethingelse/x", "rewrite.bar.com") == (200, "other-66 /somethingelse/x")
    assert (await get("/other", "rewrite.bar.com"))[0] == 404
    assert await get("/foo/bar/bar", "regex.bar.com") == (200, "web-65 /foo/bar/bar")
    assert await get("/FOO/bar/baz/more", "regex.bar.com") == (200, "web-65 /FOO/bar/baz/more")
    assert await get("/foo/bar/12", "regex.bar.com") == (200, "other-66 /foo/bar/12")
    assert await get("/x", "regex.bar.com") == (200, "other-66 /x")
    # A path longer than 2 KiB is never matched against patterns.
    long = "/foo/bar/abc/" + "a" * 2100
    assert await get(long, "regex.bar.com") == (200, f"other-66 {long}")

    # A new pattern is a map update: no reload, and the key reaches HAProxy
    # through the runtime API unchanged (backslashes, braces).
    reloads = (await stack.proc()).reloads
    changed = ingress(
        "regex",
        rule("regex.bar.com", path("/api/v\\d+/(.*)", path_type="ImplementationSpecific")),
        annotations={NGINX + "use-regex": "true", NGINX + "rewrite-target": "/v/$1"},
    )
    stack.put(changed)
    outcome = await stack.sync()
    assert outcome.result is not None and not outcome.result.reloaded
    assert await get("/API/v12/items", "regex.bar.com") == (200, "web-65 /v/items")
    assert await get("/api/vx/items", "regex.bar.com") == (200, "other-66 /api/vx/items")
    assert await get("/foo/bar/bar", "regex.bar.com") == (200, "other-66 /foo/bar/bar")
    assert (await stack.proc()).reloads == reloads


async def test_a_regex_alternative_never_takes_another_hosts_requests(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """A host-less pattern ``/nothing|[a-z.]+/.*`` of one tenant: its second
    alternative does not start with '/', so against the map key (the scope,
    then the path) it would match ``victim.example.com/admin`` — the paths of
    another tenant's host that its own rules miss."""
    port = free_port()
    victim = await start_pods("web", 1, port, first=67)
    intruder = await start_pods("evil", 1, port, first=68)
    stack.put(
        service("web"),
        slice_for("web", victim),
        service("evil", namespace="tenant-b"),
        slice_for("evil", intruder, namespace="tenant-b"),
        ingress("victim", rule("victim.example.com", path("/app"))),
        ingress(
            "evil",
            rule(None, path("/nothing|[a-z.]+/.*", "evil", path_type="ImplementationSpecific")),
            namespace="tenant-b",
            annotations={NGINX + "use-regex": "true"},
        ),
    )
    outcome = await stack.sync()
    assert outcome.result is not None
    await wait_for(lambda: _ready(stack, "be_default_web_80", 1))
    await wait_for(lambda: _ready(stack, "be_tenant-b_evil_80", 1))
    status, _, body, _ = await request(session, stack, "/app", "victim.example.com")
    assert (status, body.split()[0]) == (200, "web-67")
    status, _, body, _ = await request(session, stack, "/admin", "victim.example.com")
    assert status == 404, body
    assert intruder[0].served == 0
    # Its own scope (no host) is still served by the pattern.
    status, _, body, _ = await request(session, stack, "/nothing/x", "elsewhere.test")
    assert (status, body.split()[0]) == (200, "evil-68")
