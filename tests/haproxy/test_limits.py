"""File descriptors: what ``haproxy -c`` accepts but HAProxy cannot start.

The estimate in ``haproxy/limits.py`` is held against the real binary (it
must never be below what HAProxy asks for, nor far above), and a cluster
that would push HAProxy past its limit gets its newest objects quarantined
instead of a configuration that would not start.
"""

from __future__ import annotations

import datetime
import re
import subprocess
from pathlib import Path

import aiohttp
import pytest

from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.haproxy import limits
from haproxy_ingress.haproxy.config import RenderOptions, default_certificate_path, render
from haproxy_ingress.haproxy.files import atomic_write
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.model import TranslateOptions
from haproxy_ingress.plan import plan
from haproxy_ingress.tls import generate_default_certificate
from haproxy_ingress.translate import translate
from tests.backends import free_port
from tests.haproxy.conftest import HAPROXY
from tests.haproxy.stack import Stack, get
from tests.haproxy.test_traffic import slice_for, start_pods
from tests.kube import configmap, endpoint, endpoint_slice, ingress, ingress_class, path, rule
from tests.kube import service as make_service

pytestmark = pytest.mark.haproxy

NEEDED_RE = re.compile(r"Cannot raise FD limit to (\d+)")


def apps(count: int, *, first: int = 0) -> list[dict[str, object]]:
    objects: list[dict[str, object]] = []
    for i in range(first, first + count):
        objects += [
            make_service(f"app{i}"),
            endpoint_slice(f"app{i}", endpoint(f"10.1.{i // 200}.{i % 200 + 1}")),
            ingress(
                f"app{i}",
                rule(f"app{i}.example.com", path("/", f"app{i}")),
                created=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
            ),
        ]
    return objects


def haproxy_needs(config: Path, limit: int) -> int | None:
    """What HAProxy asks for at start under ``ulimit -n limit`` (None: it started)."""
    done = subprocess.run(
        ["bash", "-c", f"ulimit -n {limit}; exec timeout 2 {HAPROXY} -db -f {config}"],
        capture_output=True,
        text=True,
        check=False,
    )
    found = NEEDED_RE.search(done.stderr)
    return int(found[1]) if found else None


@pytest.mark.parametrize("maxconn", [None, 300])
def test_the_estimate_covers_what_haproxy_asks_for(tmp_path: Path, maxconn: int | None) -> None:
    objects = [ingress_class(default=True), *apps(40)]
    if maxconn:
        objects.append(configmap({"maxconn": str(maxconn)}))
    options = TranslateOptions()
    target = plan(None, translate(ClusterView.from_objects(objects, options)[0], options)).target
    paths = HAProxyPaths(tmp_path)
    paths.ensure()
    atomic_write(
        default_certificate_path(paths),
        generate_default_certificate(datetime.datetime.now(datetime.UTC)).encode(),
        mode=0o600,
    )
    render_options = RenderOptions(
        paths,
        http_binds=(f"127.0.0.1:{free_port()}",),
        https_binds=(f"127.0.0.1:{free_port()}",),
    )
    for file in render(target, render_options).all:
        atomic_write(file.path, file.content, mode=file.mode)
    real = haproxy_needs(paths.config, 64)
    assert real is not None, "HAProxy started under 64 open files"
    estimate = limits.descriptors_needed(target, 4, limits.threads())
    assert real <= estimate <= real + limits.FIXED
    # And at the estimate, it starts.
    assert haproxy_needs(paths.config, estimate) is None


async def test_ingresses_past_the_limit_are_quarantined_and_the_rest_serves(
    stack: Stack, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    pods = await start_pods("app0", 1, free_port(), first=141)
    stack.put(ingress_class(default=True), *apps(4), slice_for("app0", pods))
    await stack.sync()
    assert (await get(session, stack.http_port, "/", "app0.example.com"))[0] == 200
    served = stack.applier.applied
    assert served is not None
    # Room for what runs now and not much more: 4 backends of 8 slots fit,
    # 4 more would not.
    limit = limits.descriptors_needed(served, 4, limits.threads()) + 8
    monkeypatch.setattr(limits, "descriptor_limit", lambda: limit)
    stack.put(*apps(4, first=4))
    outcome = await stack.sync()
    refused = {p.source.name for p in outcome.desired.problems if p.event == "ConfigRejected"}
    assert refused and refused <= {"app4", "app5", "app6", "app7"}
    assert any("file descriptors" in p.reason for p in outcome.desired.problems)
    # The older Ingresses keep serving.
    assert (await get(session, stack.http_port, "/", "app0.example.com"))[0] == 200
    assert stack.applier.applied is not None
    assert limits.descriptors_needed(stack.applier.applied, 4, limits.threads()) <= limit
