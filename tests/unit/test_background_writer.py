"""The background writer of runtime-only applies, and the full syncs that pause it.

A full sync's translation and plan do not run while the writer renders the
last target's files (two generations of the cluster's biggest objects at
once): a write under way gives up, and is done again after the sync; one
that gave up once finishes the next time, and the sync waits for it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from haproxy_ingress import apply, state
from haproxy_ingress.apply import Applier
from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.haproxy import config
from haproxy_ingress.haproxy.config import RenderOptions, render
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.model import AppliedState, TranslateOptions
from haproxy_ingress.plan import Plan, plan
from haproxy_ingress.translate import translate
from tests.kube import endpoint, endpoint_slice, ingress, ingress_class, path, rule, service

OPTIONS = TranslateOptions()


def target() -> AppliedState:
    objects = (
        ingress_class(default=True),
        service("web"),
        endpoint_slice("web", endpoint("10.0.0.1")),
        ingress("a", rule("a.example.com", path("/"))),
    )
    view, _ = ClusterView.from_objects(objects, OPTIONS)
    return plan(None, translate(view, OPTIONS)).target


class Gates:
    """haproxy.cfg's rendering, held after its first piece until the test lets it go on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # One pair per rendering, in order: it reached its first piece; it may go on.
        self.midway = [threading.Event() for _ in range(3)]
        self.go = [threading.Event() for _ in range(3)]
        self.renderings = 0
        real = apply.render_config

        def held(*args: Any) -> Iterator[bytes]:
            midway, go = self.midway[self.renderings], self.go[self.renderings]
            self.renderings += 1
            pieces = real(*args)
            yield next(pieces)
            midway.set()
            assert go.wait(10)
            yield from pieces

        monkeypatch.setattr(apply, "render_config", held)

    async def reached(self, write: int) -> None:
        """Until the ``write``-th rendering (from 1) is held after its first piece."""
        assert await asyncio.to_thread(self.midway[write - 1].wait, 10)


@pytest.fixture
def paths(tmp_path: Path) -> HAProxyPaths:
    paths = HAProxyPaths(tmp_path)
    paths.ensure()
    return paths


@pytest.fixture
def applier(paths: HAProxyPaths, monkeypatch: pytest.MonkeyPatch) -> Applier:
    monkeypatch.setattr(apply, "WRITE_QUIET", 0.01)
    monkeypatch.setattr(config, "CONFIG_PIECE_CHARS", 100)  # haproxy.cfg in many pieces
    # The writer touches neither HAProxy nor its runtime socket.
    return Applier(None, None, RenderOptions(paths))  # type: ignore[arg-type]


def written(paths: HAProxyPaths) -> tuple[bool, bool]:
    """Whether haproxy.cfg and the applied state are on disk."""
    return paths.config.exists(), (paths.base / "applied.json").exists()


async def test_a_full_sync_stops_the_write_under_way(
    applier: Applier, paths: HAProxyPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    gates = Gates(monkeypatch)
    wanted = target()
    await applier.apply(Plan(wanted, (), ()))  # runtime-only: files written later
    await gates.reached(1)

    async def full_sync() -> tuple[bool, bool]:
        async with applier.writer_paused():
            return written(paths)

    sync = asyncio.create_task(full_sync())
    await asyncio.sleep(0.05)  # the pause waits for the write to give up
    assert not sync.done()
    gates.go[0].set()
    assert await sync == (False, False)  # nothing of it landed while the sync ran
    assert not list(paths.base.rglob("*.tmp"))
    flushed = asyncio.create_task(applier.flush())
    await gates.reached(2)  # written again, whole
    gates.go[1].set()
    await flushed
    assert paths.config.read_bytes() == render(wanted, RenderOptions(paths)).config.content
    assert state.load((paths.base / "applied.json").read_bytes()) == wanted


async def test_a_write_given_up_once_finishes_the_next_time(
    applier: Applier, paths: HAProxyPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    gates = Gates(monkeypatch)
    wanted = target()
    await applier.apply(Plan(wanted, (), ()))
    await gates.reached(1)

    async def full_sync() -> tuple[bool, bool]:
        async with applier.writer_paused():
            return written(paths)

    first = asyncio.create_task(full_sync())
    await asyncio.sleep(0.05)
    gates.go[0].set()
    assert await first == (False, False)
    # The next attempt starts by itself once the writer has been quiet, and
    # the next sync does not stop it: it waits until the files are written.
    await gates.reached(2)
    second = asyncio.create_task(full_sync())
    await asyncio.sleep(0.05)
    assert not second.done()
    gates.go[1].set()
    assert await second == (True, True)
    assert state.load((paths.base / "applied.json").read_bytes()) == wanted
    await applier.flush()
    assert gates.renderings == 2  # nothing left to write
