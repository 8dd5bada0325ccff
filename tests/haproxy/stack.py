"""A controller without Kopf, for tests against a real HAProxy.

It holds Kubernetes objects as plain dicts (the test edits them as the API
server would), and reconciles them through the real pipeline: translate →
plan → apply → haproxy. Traffic goes through HAProxy to real HTTP backends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from haproxy_ingress.apply import Applier
from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.haproxy.config import RenderOptions, default_certificate_path
from haproxy_ingress.haproxy.files import atomic_write
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.haproxy.process import HAProxyProcess, ProcInfo
from haproxy_ingress.haproxy.runtime import RuntimeClient
from haproxy_ingress.model import BackendLayout, TranslateOptions
from haproxy_ingress.sync import Outcome, Reconciler
from haproxy_ingress.tls import generate_default_certificate
from tests.backends import free_port

OPTIONS = TranslateOptions()


@dataclass
class Stack:
    base: Path
    http_port: int = field(default_factory=free_port)
    https_port: int = field(default_factory=free_port)
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    binary: str = "haproxy"  # tests may wrap the real one (see test_quarantine.py)
    log_target: str | None = None  # HAProxy's request log (``option httplog``), e.g. UDP
    options: TranslateOptions = OPTIONS  # the controller's flags (e.g. ssl_passthrough)

    def __post_init__(self) -> None:
        self.paths = HAProxyPaths(self.base)
        self.paths.ensure()
        atomic_write(
            default_certificate_path(self.paths),
            generate_default_certificate(datetime.datetime.now(datetime.UTC)).encode(),
            mode=0o600,
        )
        self.process = HAProxyProcess(self.paths, binary=self.binary)
        self.client = RuntimeClient(self.paths.runtime_socket)
        render_options = RenderOptions(
            self.paths,
            http_binds=(f"127.0.0.1:{self.http_port}",),
            https_binds=(f"127.0.0.1:{self.https_port}",),
            log_target=self.log_target,
        )
        self.applier = Applier(self.process, self.client, render_options, binary=self.binary)
        self.reconciler = Reconciler(self.options, self.applier)

    # --- the "API server" -------------------------------------------------------

    def put(self, *objects: dict[str, Any]) -> None:
        for obj in objects:
            meta = obj["metadata"]
            self.objects[(obj["kind"], meta.get("namespace", ""), meta["name"])] = obj

    def delete(self, kind: str, namespace: str, name: str) -> None:
        del self.objects[(kind, namespace, name)]

    def view(self) -> ClusterView:
        return ClusterView.from_objects(self.objects.values(), self.options)[0]

    async def sync(self) -> Outcome:
        """One reconcile, then its files on disk (a runtime-only apply writes them later)."""
        outcome = await self.reconciler.reconcile(self.view())
        await self.applier.flush()
        return outcome

    # --- HAProxy ------------------------------------------------------------------

    async def proc(self) -> ProcInfo:
        return await self.process.show_proc()

    async def close(self) -> None:
        await self.client.close()
        await self.process.stop()


async def get(
    session: aiohttp.ClientSession, port: int, path: str, host: str, *, https: bool = False
) -> tuple[int, str]:
    scheme = "https" if https else "http"
    ssl_context: ssl.SSLContext | bool = False
    async with session.get(
        f"{scheme}://127.0.0.1:{port}{path}",
        headers={"Host": host},
        ssl=ssl_context,
        server_hostname=host if https else None,
    ) as response:
        return response.status, await response.text()


async def wait_for(predicate: Any, limit: float = 10.0) -> None:
    """Poll an async predicate; health checks and reloads take their time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not await predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


def add_phantom_backend(stack: Stack) -> None:
    """Make the applier believe in a backend HAProxy lacks (as if someone else's
    reload dropped it): runtime commands for it fail, so the next runtime-only
    change falls back to a reload."""
    applied = stack.applier.applied
    assert applied is not None
    phantom = BackendLayout("be_default_phantom_80", applied.structure.backends[0].settings, 1)
    stack.applier.applied = dataclasses.replace(
        applied,
        structure=dataclasses.replace(
            applied.structure, backends=(*applied.structure.backends, phantom)
        ),
        servers={**applied.servers, phantom.name: (applied.servers["be_default_web_80"][0],)},
    )
