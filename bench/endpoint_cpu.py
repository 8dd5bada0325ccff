"""CPU of one EndpointSlice change through the controller's sync, stage by stage, offline.

    PYTHONPATH=$PWD/operator:$PWD python bench/endpoint_cpu.py [--ingresses 10000] [--pods 5]
        [--tls 1000] [--changes 50]

``bench/scale.py``'s synthetic cluster is put into the handlers' indexes as
the watch would (trimmed objects, Kopf's own ``Index`` for the kinds it
keeps), and a real :class:`~haproxy_ingress.controller.Controller` syncs it:
one full sync, then ``--changes`` EndpointSlice changes one at a time, each
to another Service, each through ``Controller.sync_once`` as the sync loop
runs it. Nothing talks to HAProxy: the runtime client swallows commands, a
reload only records its target, and the background file writer is off (it
runs in a thread after 1 s of quiet, not on the endpoint path). The fast
path runs on the calling thread (``INLINE_FAST_PATH`` is lifted), so CPU
time per stage is that thread's: ``index`` (what the index handler does for
the event: trim, store), ``snapshot`` (the view the sync reads), ``screen``
(quarantine), ``refresh`` (the Service's servers re-derived), ``plan``
(slot operations), ``apply`` (runtime commands built), ``record`` (metrics,
the "no usable server" log), ``feedback`` (Events' hand-over), and
``sync`` (the whole ``sync_once``; what the stages leave is the
reconciler's own bookkeeping). One JSON line with p50/p99/max in ms per
stage and the load average. Runs against whichever ``haproxy_ingress`` is on
``PYTHONPATH`` (``git archive <commit> operator`` for a baseline); stages a
version lacks are left out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kopf._core.engines.indexing import Index
from tests.kube import endpoint, endpoint_slice

from bench.scale import _percentile, cluster, load
from haproxy_ingress import cluster as cluster_module
from haproxy_ingress import controller as controller_module
from haproxy_ingress import feedback, quarantine, sync
from haproxy_ingress.apply import Applier
from haproxy_ingress.cluster import WATCHED, ClusterView, SharedValues, trim
from haproxy_ingress.config import ControllerConfig
from haproxy_ingress.model import AppliedState

SERVICE_LABEL = "kubernetes.io/service-name"


class SilentRuntime:
    """A runtime client that accepts every command (what the Applier needs of one)."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        async def accept(*_: Any, **__: Any) -> None:
            return None

        return accept


class Stages:
    """CPU seconds per stage of the change being measured (this thread's clock)."""

    def __init__(self) -> None:
        self.current: dict[str, float] = {}
        self.all: list[dict[str, float]] = []

    def add(self, stage: str, seconds: float) -> None:
        self.current[stage] = self.current.get(stage, 0.0) + seconds

    def timed(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if asyncio.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = time.thread_time()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    self.add(stage, time.thread_time() - started)

            return timed_async

        @functools.wraps(fn)
        def timed_sync(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(stage, time.thread_time() - started)

        return timed_sync


@contextmanager
def patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def with_uid(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    meta.setdefault("uid", f"uid-{obj['kind']}-{meta.get('namespace', '')}-{meta['name']}")
    return obj


class Indexes:
    """The handlers' indexes, filled as the watch would, for the code on PYTHONPATH."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.shared = SharedValues()
        by_kind = {kind.kind: kind for kind in WATCHED}
        self.kopf: dict[str, Index[Any, Any]] = {kind.field: Index() for kind in WATCHED}
        # This version's index of Services and their slices, if it has one.
        service_index = getattr(cluster_module, "ServiceIndex", None)
        self.services = service_index() if service_index is not None else None
        for obj in objects:
            kind = by_kind.get(obj["kind"])
            if kind is not None:
                self.put(kind.kind, trim(with_uid(obj), self.shared))
        if self.services is not None:
            self.view: Any = cluster_module.IndexedView(self.kopf, self.services)
        else:
            kopf = self.kopf

            def view(configmap: Any) -> ClusterView:  # the handlers' closure before ServiceIndex
                return ClusterView.of(
                    {
                        name: (obj for store in index.values() for obj in store)
                        for name, index in kopf.items()
                    },
                    configmap,
                )

            self.view = view

    def put(self, kind: str, trimmed: Any) -> None:
        """What the index handler does with a trimmed object."""
        if self.services is not None and self.services.holds(kind):
            self.services.put(kind, trimmed)
            return
        field = next(k.field for k in WATCHED if k.kind == kind)
        meta = trimmed["metadata"]
        acckey = (meta.get("namespace"), meta.get("name"), meta.get("uid"))
        self.kopf[field]._replace(acckey, {None: trimmed})

    def event(self, kind: str, obj: dict[str, Any]) -> None:
        self.put(kind, trim(obj, self.shared))


async def run(args: argparse.Namespace) -> None:
    began = time.perf_counter()
    objects = cluster(args.ingresses, args.pods, args.tls)
    indexes = Indexes(objects)
    setup = round(time.perf_counter() - began, 1)
    scratch = Path(tempfile.mkdtemp(prefix="bench-endpoint-cpu-"))
    config = ControllerConfig(state_dir=scratch, health_bind="", metrics_bind="")
    service_view = getattr(indexes.view, "of_services", None)
    kwargs = {"service_view": service_view} if service_view is not None else {}
    controller = controller_module.Controller(config, indexes.view, **kwargs)
    config.paths.ensure()
    applier = controller.applier
    applier._client = SilentRuntime()  # type: ignore[assignment]

    async def reloaded(target: AppliedState, *_: Any) -> int:  # reasons, planned operations
        applier.applied = target
        return 0

    applier._reload = reloaded  # type: ignore[method-assign]
    applier._persist_later = lambda target: None  # type: ignore[method-assign]
    stages = Stages()
    started = time.perf_counter()
    first = await controller.sync_once()  # the full sync
    assert first is not None and first.result is not None, first
    full_seconds = round(time.perf_counter() - started, 1)
    controller.reconciler._fast_cost = 0.0  # every fast path on this thread (see below)
    slices = [o for o in objects if o["kind"] == "EndpointSlice"]
    timers = [
        (controller_module.Controller, "snapshot", "snapshot"),
        (controller_module.Controller, "snapshot_of", "snapshot"),
        (quarantine.Quarantine, "screen", "screen"),
        (sync, "refresh_endpoints", "refresh"),
        (sync, "refresh_services", "refresh"),
        (sync, "plan_endpoints", "plan"),
        (Applier, "apply", "apply"),
        (controller_module.Controller, "_record", "record"),
        (feedback.Feedback, "hand", "feedback"),
    ]
    with contextlib.ExitStack() as stack:
        stack.enter_context(patched(sync, "INLINE_FAST_PATH", math.inf))
        for owner, name, stage in timers:
            if hasattr(owner, name):
                stack.enter_context(patched(owner, name, stages.timed(stage, getattr(owner, name))))
        for change in range(args.changes):
            app = change * 7919 % args.ingresses  # spread over the cluster
            old = slices[app]
            shift = 2 + change % 2  # never the addresses the slice had
            addresses = [f"10.{app // 250}.{app % 250}.{j + shift}" for j in range(args.pods)]
            new = with_uid(
                endpoint_slice(
                    f"app{app}", *map(endpoint, addresses), ports=old["ports"], name=None
                )
            )
            new["metadata"] = old["metadata"]
            stages.current = {}
            begun = time.thread_time()
            indexes.event("EndpointSlice", new)
            stages.add("index", time.thread_time() - begun)
            controller.trigger_endpoints("default", f"app{app}")
            begun = time.thread_time()
            outcome = await controller.sync_once()
            stages.add("sync", time.thread_time() - begun)
            assert outcome is not None and outcome.result is not None, "nothing changed"
            assert not outcome.result.reloaded, "an endpoint change reloaded"
            stages.all.append(stages.current)
            await asyncio.sleep(0)  # the feedback task's turn, outside the measurement
    await controller.feedback.close()
    names = ["index", "snapshot", "screen", "refresh", "plan", "apply", "record", "feedback"]
    figures: dict[str, Any] = {}
    for stage in [*names, "sync"]:
        values = [one.get(stage, 0.0) * 1000 for one in stages.all]
        if stage != "sync" and not any(values):
            continue
        figures[stage] = {
            "p50": round(statistics.median(values), 3),
            "p99": round(_percentile(values, 99), 3),
            "max": round(max(values), 3),
        }
    rest = [
        one["sync"] - sum(v for k, v in one.items() if k not in {"sync", "index"})
        for one in stages.all
    ]
    figures["sync_unaccounted"] = {"p50": round(statistics.median(rest) * 1000, 3)}
    print(
        json.dumps(
            {
                "bench": "endpoint-cpu",
                "ingresses": args.ingresses,
                "pods": args.pods,
                "tls": args.tls,
                "changes": args.changes,
                "setup_seconds": setup,
                "full_sync_seconds": full_seconds,
                "load_start": args.load,
                "load_end": load(),
                "cpu_ms": figures,
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ingresses", type=int, default=10_000)
    parser.add_argument("--pods", type=int, default=5, help="endpoints per Service")
    parser.add_argument("--tls", type=int, default=1_000)
    parser.add_argument("--changes", type=int, default=50)
    args = parser.parse_args()
    args.load = load()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
