"""config.SectionMemo: a render reusing kept backend sections gives the bytes of one that does not.

Each fixture cluster's target, then the same target changed in one input of
one backend's section at a time (an endpoint, the settings, the slot count,
the proxy-ssl files, the health-check stretch), is rendered through one memo
in sequence, and every result is compared with a render without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.haproxy import config
from haproxy_ingress.haproxy.config import RenderOptions, SectionMemo, render_config
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.loader import load_objects
from haproxy_ingress.model import AppliedState, Endpoint, TranslateOptions, UpstreamTLS
from haproxy_ingress.plan import plan
from haproxy_ingress.translate import translate
from tests.unit.test_render_golden import CLUSTERS, cluster_flags, cluster_names

OPTIONS = RenderOptions(HAProxyPaths(Path("/var/lib/haproxy-ingress")))
TEMPLATES = config.environment()  # compiled once: most of a small render's time


def _target(name: str) -> AppliedState:
    directory = CLUSTERS / name
    options = TranslateOptions(
        ssl_passthrough="--enable-ssl-passthrough" in cluster_flags(directory)
    )
    view, _ = ClusterView.from_objects(load_objects(sorted(directory.glob("*.yaml"))), options)
    return plan(None, translate(view, options)).target


def _text(target: AppliedState, memo: SectionMemo | None = None) -> str:
    return b"".join(render_config(target, OPTIONS, TEMPLATES, memo)).decode()


def _with_backend(target: AppliedState, index: int, **changes: object) -> AppliedState:
    backends = list(target.structure.backends)
    backends[index] = dataclasses.replace(backends[index], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(
        target, structure=dataclasses.replace(target.structure, backends=tuple(backends))
    )


def _moved_endpoint(target: AppliedState, index: int) -> AppliedState:
    """A new Endpoint object in the backend's first used slot (or first slot), elsewhere."""
    name = target.structure.backends[index].name
    slots = list(target.servers.get(name, ())) or [None]
    used = next((i for i, slot in enumerate(slots) if slot is not None), 0)
    port = getattr(slots[used], "port", 8080)
    slots[used] = Endpoint("10.99.99.99", port)
    return dataclasses.replace(target, servers={**target.servers, name: tuple(slots)})


def _same_endpoint_new_object(target: AppliedState, index: int) -> AppliedState:
    """Equal endpoints in new objects: a miss, and still the same text."""
    name = target.structure.backends[index].name
    slots = tuple(
        None if slot is None else dataclasses.replace(slot) for slot in target.servers.get(name, ())
    )
    return dataclasses.replace(target, servers={**target.servers, name: slots})


def _upstream_tls(target: AppliedState, index: int) -> AppliedState:
    """The backend speaks HTTPS with a proxy-ssl-secret whose files exist."""
    settings = target.structure.backends[index].settings
    changed = _with_backend(
        target,
        index,
        settings=dataclasses.replace(
            settings, protocol="HTTPS", proxy_ssl_secret="default/upstream", proxy_ssl_verify=True
        ),
    )
    tls = UpstreamTLS("default/upstream", "default_upstream", pem="x", ca="y")
    return dataclasses.replace(
        changed, structure=dataclasses.replace(changed.structure, upstream_tls=(tls,))
    )


def _ca_dropped(target: AppliedState) -> AppliedState:
    """The same proxy-ssl-secret without its CA: same settings object, other section."""
    tls = UpstreamTLS("default/upstream", "default_upstream", pem="x")
    return dataclasses.replace(
        target, structure=dataclasses.replace(target.structure, upstream_tls=(tls,))
    )


CHANGES: dict[str, Callable[[AppliedState, int], AppliedState]] = {
    "endpoint moved": _moved_endpoint,
    "endpoint copied": _same_endpoint_new_object,
    "settings": lambda t, i: _with_backend(
        t, i, settings=dataclasses.replace(t.structure.backends[i].settings, timeout_server="61s")
    ),
    "slots": lambda t, i: _with_backend(t, i, slots=t.structure.backends[i].slots + 1),
    "name": lambda t, i: _with_backend(t, i, name=t.structure.backends[i].name + "x"),
    "check stretch": lambda t, _: dataclasses.replace(
        t, structure=dataclasses.replace(t.structure, check_stretch=t.structure.check_stretch + 2)
    ),
    "proxy-ssl files": lambda t, i: _ca_dropped(_upstream_tls(t, i)),
}


@pytest.mark.parametrize("name", cluster_names())
def test_every_render_through_the_memo_is_the_render_without_it(name: str) -> None:
    base = _target(name)
    memo = SectionMemo()
    assert _text(base, memo) == _text(base)
    assert len(memo) == len(base.structure.backends)
    # The first backends and the last: the sections around a changed one too.
    count = len(base.structure.backends)
    for index in sorted({*range(min(count, 3)), count - 1} - {-1}):
        for change, make in CHANGES.items():
            before = base if change != "proxy-ssl files" else _upstream_tls(base, index)
            changed = make(base, index)
            for step, target in (("before", before), ("changed", changed), ("back", base)):
                assert _text(target, memo) == _text(target), (name, index, change, step)


def test_a_second_render_reuses_every_backend_section(monkeypatch: pytest.MonkeyPatch) -> None:
    target = _target("basic")
    assert target.structure.backends
    memo = SectionMemo()
    expected = _text(target, memo)
    views: list[str] = []
    real = config._backend_view

    def counted(layout: config.BackendLayout, *args: object, **kwargs: object) -> object:
        views.append(layout.name)
        return real(layout, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(config, "_backend_view", counted)
    assert _text(target, memo) == expected
    assert views == []  # no backend's view made again: each section was kept
    moved = _moved_endpoint(target, 0)
    assert _text(moved, memo) == _text(moved)
    assert views.count(target.structure.backends[0].name) == 2  # with the memo and without


def test_a_render_given_up_half_way_leaves_the_memo_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = _target("basic")
    memo = SectionMemo()
    _text(target, memo)
    kept = dict(memo._kept)
    monkeypatch.setattr(config, "CONFIG_PIECE_CHARS", 10)
    pieces = render_config(_moved_endpoint(target, 0), OPTIONS, TEMPLATES, memo)
    next(pieces)
    pieces.close()  # as the background writer gives up (apply._unless)
    assert memo._kept == kept
    for key, entry in kept.items():
        assert memo._kept[key] is entry
