"""Kopf handlers: the controller's only contact with Kopf.

Only ``@kopf.index`` and ``@kopf.on.event`` on users' objects: they keep no
progress and write nothing back (no annotations, finalizers or status of our
own). Indexes hold trimmed objects (Services and EndpointSlices in a
:class:`~haproxy_ingress.cluster.ServiceIndex`, filed by Service, so that an
endpoint event's sync reads only its Service's); event handlers only poke
the sync loop, which reads the indexes. Event handlers run as soon as their
object is indexed, without waiting for the rest
(:mod:`haproxy_ingress.kopfpatch`: that wait held every listed object in
memory); the first sync waits until every index is fully populated (an
empty cluster's too: :func:`haproxy_ingress.kopfpatch.indexed`), so it never
sees a half-listed cluster.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from haproxy_ingress import kopfpatch, logs
from haproxy_ingress.cluster import (
    SERVICE_NAME_LABEL,
    WATCHED,
    IndexedView,
    ServiceIndex,
    SharedValues,
    StatusEchoes,
    WatchedKind,
    indexed_labels,
    trim,
)
from haproxy_ingress.config import ControllerConfig
from haproxy_ingress.controller import Controller

logger = logging.getLogger(__name__)

kopfpatch.install()  # before Kopf builds its toggle sets: see kopfpatch

# The memo key of the indexes' SharedValues (Kopf gives each object a shallow
# copy of the operator's memo: one table for all).
SHARED_VALUES = "shared_values"
# The memo key of the Ingresses' StatusEchoes.
STATUS_ECHOES = "status_echoes"
# The memo key of the ServiceIndex (Services and EndpointSlices by Service).
SERVICE_INDEX = "service_index"


# Kopf's worker of an object exits after this many seconds without an event
# of that object (Kopf's default: 5). An idle worker keeps its task, queue
# and the object's last event (the body as served): while the 31,000 objects
# of 10k Ingresses were listed, thousands were alive at once, interleaved on
# the heap with what stays. The first full sync's peak and the idle RSS went
# 276-301 -> 216 MiB (bench/README.md, controller memory, seventh session).
# Events of one object that come together (a rollout's slice updates, a
# status write's echo) still share a worker.
WORKER_IDLE_TIMEOUT = 0.5


def configure(settings: kopf.OperatorSettings) -> None:
    """Kopf's settings for the controller (what the startup handler sets)."""
    settings.peering.standalone = True  # every replica is its own data plane
    settings.scanning.disabled = True  # no CRDs: no cluster-wide CRD/namespace watching
    settings.posting.enabled = False  # our Events come from status.py, on problems only
    settings.posting.reporting_component = "haproxy-ingress"
    settings.watching.chunk_size = 500
    settings.queueing.idle_timeout = WORKER_IDLE_TIMEOUT
    # Kopf retries a failed request (a watch's too) after 1, 1, 2, 3, 5, 8, 13,
    # 21 s: after an outage its re-list could come 21 s late. Steps of at most
    # 3 s, over a total as long as the default (then Kopf escalates).
    settings.networking.error_backoffs = (0.5, 1, 1, 2, 2, 2, *(3,) * 16)
    for kind in WATCHED:
        if kind.field_selector:
            # Keyed (group, plural): "group/plural" as one string matches nothing.
            settings.watching.field_selectors[kind.group or kind.version, kind.plural] = (
                kind.field_selector
            )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    config = memo.get("config") or ControllerConfig.from_env()
    if "config" not in memo:  # `kopf run -m haproxy_ingress`: Kopf set the levels
        logs.quiet_defaults(verbose=None, api_bodies=logs.api_bodies_wanted())
    configure(settings)
    services = ServiceIndex()
    view = IndexedView({kind.field: kwargs[_index_id(kind)] for kind in WATCHED}, services)
    echoes = StatusEchoes()
    controller = Controller(
        config,
        view,
        service_view=view.of_services,
        indexed=kopfpatch.indexed(memo),
        on_full_view=echoes.retain,
    )
    await controller.start()
    memo["controller"] = controller
    memo[SHARED_VALUES] = SharedValues()  # before Kopf starts watching: startup comes first
    memo[STATUS_ECHOES] = echoes
    memo[SERVICE_INDEX] = services


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    controller: Controller | None = memo.get("controller")
    if controller is not None:
        await controller.stop()


def _index_id(kind: WatchedKind) -> str:
    return f"{kind.field}_index"  # Kopf passes each index as the keyword argument of its id


async def _changed(memo: kopf.Memo, **_: Any) -> None:
    controller: Controller | None = memo.get("controller")
    if controller is not None:
        controller.trigger()


async def _endpoints_changed(
    memo: kopf.Memo, namespace: str | None, labels: kopf.Labels, **_: Any
) -> None:
    controller: Controller | None = memo.get("controller")
    service = labels.get(SERVICE_NAME_LABEL)
    if controller is not None and service:
        controller.trigger_endpoints(namespace or "", service)


def _register(kind: WatchedKind) -> None:
    async def index(labels: kopf.Labels, body: kopf.Body, memo: kopf.Memo, **_: Any) -> Any:
        # One key for the whole kind: the view reads every object and never
        # looks one up, and Kopf keeps a Store (an object and two dicts) per
        # key -- 31,000 of them at 10,000 Ingresses when keyed per object.
        # Services and EndpointSlices are looked up, by Service, on every
        # endpoint event: they go to the ServiceIndex, and Kopf keeps nothing.
        services: ServiceIndex | None = memo.get(SERVICE_INDEX)
        if services is not None and services.holds(kind.kind):
            # A slice whose label changed or went left a Service, whose
            # servers change too: its own event names only the new one.
            if indexed_labels(kind, labels):
                left = services.put(kind.kind, trim(body, memo.get(SHARED_VALUES)))
            else:
                left = services.drop(kind.kind, body)
            controller: Controller | None = memo.get("controller")
            if left is not None and controller is not None:
                controller.trigger_endpoints(*left)
            return None
        if not indexed_labels(kind, labels):
            return None
        trimmed = trim(body, memo.get(SHARED_VALUES))
        echoes: StatusEchoes | None = memo.get(STATUS_ECHOES)
        if kind.kind == "Ingress" and echoes is not None:
            echoes.seen(trimmed)
        return {None: trimmed}

    resource = (kind.group, kind.version, kind.plural)
    field, values = kind.only or (None, ())

    def wanted(value: Any, **_: Any) -> bool:
        return value in values

    value = wanted if field else None
    kopf.index(*resource, id=_index_id(kind), field=field, value=value)(index)
    changed = _endpoints_changed if kind.kind == "EndpointSlice" else _changed

    async def on_event(
        memo: kopf.Memo, type: str | None, uid: str | None, body: kopf.Body, **kwargs: Any
    ) -> None:
        controller: Controller | None = memo.get("controller")
        services: ServiceIndex | None = memo.get(SERVICE_INDEX)
        if type == "DELETED" and services is not None and services.holds(kind.kind):
            # Kopf drops a deleted object from its own index before this
            # handler runs, without calling the index handler: the same here.
            services.drop(kind.kind, body)
        if type is None and controller is not None:
            # A LIST (type None), not a watch event: a re-list once synced (see gaps.py).
            controller.relisted(kind.kind)
        echoes: StatusEchoes | None = memo.get(STATUS_ECHOES)
        if kind.kind == "Ingress" and echoes is not None:
            if type == "DELETED":
                echoes.gone(uid or "")
            elif echoes.echo(uid or "") and type == "MODIFIED":
                return  # only its status changed: nothing to translate (see StatusEchoes)
        await changed(memo=memo, body=body, **kwargs)

    kopf.on.event(*resource, id=f"{kind.field}_changed", field=field, value=value)(on_event)


for _kind in WATCHED:
    _register(_kind)
