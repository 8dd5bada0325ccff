"""Golden render tests (Envoy Gateway style): fixture cluster in, expected files out.

Run ``pytest tests/unit/test_render_golden.py --update-golden`` to regenerate the
expected files after an intended change, then read the diff. Every fixture
cluster's output is also checked by a real ``haproxy -c`` in
tests/haproxy/test_config_check.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.haproxy import config
from haproxy_ingress.haproxy.config import RenderOptions, render
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.loader import load_objects
from haproxy_ingress.model import TranslateOptions
from haproxy_ingress.plan import plan
from haproxy_ingress.translate import translate

CLUSTERS = Path(__file__).resolve().parent.parent / "fixtures" / "clusters"
GOLDEN_BASE = Path("/var/lib/haproxy-ingress")


def cluster_names() -> list[str]:
    return sorted(p.name for p in CLUSTERS.iterdir() if p.is_dir())


def cluster_flags(directory: Path) -> tuple[str, ...]:
    """The controller flags a fixture cluster is rendered with (its ``flags`` file)."""
    flags = directory / "flags"
    return tuple(flags.read_text().split()) if flags.exists() else ()


def render_cluster(directory: Path, base: Path) -> dict[str, bytes]:
    """The files the controller would write for the cluster, by path relative to base."""
    flags = cluster_flags(directory)
    assert set(flags) <= {"--enable-ssl-passthrough"}, flags
    options = TranslateOptions(ssl_passthrough="--enable-ssl-passthrough" in flags)
    inputs = sorted(p for p in directory.glob("*.yaml"))
    view, _ = ClusterView.from_objects(load_objects(inputs), options)
    desired = translate(view, options)
    rendered = render(
        plan(None, desired).target,
        RenderOptions(HAProxyPaths(base), http_binds=("*:8080",), https_binds=("*:8443",)),
    )
    files = {
        str(f.path.relative_to(base)): f.content
        for f in rendered.all
        if f.path.suffix in {".cfg", ".map", ".txt", ".acl"}
    }
    files["problems.txt"] = "".join(f"{p.source}: {p.message}\n" for p in desired.problems).encode()
    return files


@pytest.mark.parametrize("name", cluster_names())
def test_golden(name: str, request: pytest.FixtureRequest) -> None:
    directory = CLUSTERS / name
    expected_dir = directory / "expected"
    actual = render_cluster(directory, GOLDEN_BASE)
    if request.config.getoption("--update-golden"):
        for relative, content in actual.items():
            target = expected_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    expected = {
        str(p.relative_to(expected_dir)): p.read_bytes()
        for p in expected_dir.rglob("*")
        if p.is_file()
    }
    assert sorted(actual) == sorted(expected)
    for relative in sorted(actual):
        assert actual[relative].decode() == expected[relative].decode(), relative


def test_rendering_is_deterministic() -> None:
    for name in cluster_names():
        first = render_cluster(CLUSTERS / name, GOLDEN_BASE)
        assert render_cluster(CLUSTERS / name, GOLDEN_BASE) == first


@pytest.mark.parametrize("name", ["basic", "passthrough"])
def test_haproxy_cfg_in_pieces_is_the_whole_one(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The background writer streams haproxy.cfg (render_config) instead of
    # holding it whole (render): the same bytes, in pieces of about CONFIG_PIECE_CHARS characters.
    directory = CLUSTERS / name
    passthrough = "--enable-ssl-passthrough" in cluster_flags(directory)
    options = TranslateOptions(ssl_passthrough=passthrough)
    view, _ = ClusterView.from_objects(load_objects(sorted(directory.glob("*.yaml"))), options)
    target = plan(None, translate(view, options)).target
    render_options = RenderOptions(HAProxyPaths(GOLDEN_BASE))
    monkeypatch.setattr(config, "CONFIG_PIECE_CHARS", 200)
    pieces = list(config.render_config(target, render_options))
    assert b"".join(pieces) == render(target, render_options).config.content
    assert len(pieces) > 10


@pytest.mark.parametrize("name", ["basic", "passthrough"])
def test_a_server_address_that_is_not_one_token_is_refused(name: str, tmp_path: Path) -> None:
    # The server lines are made whole in Python (config._BackendView.server_lines),
    # which the template's finalize lets through: each address in them must
    # still be checked, as state adopted from disk may hold anything.
    directory = CLUSTERS / name
    options = TranslateOptions(
        ssl_passthrough="--enable-ssl-passthrough" in cluster_flags(directory)
    )
    view, _ = ClusterView.from_objects(load_objects(sorted(directory.glob("*.yaml"))), options)
    target = plan(None, translate(view, options)).target
    pools = {b.name for b in target.structure.passthrough}
    names = [
        n
        for n, slots in target.servers.items()
        if any(slots) and (n in pools) == (name == "passthrough")
    ]
    assert names, "the fixture has a backend with a server of the kind under test"
    for bad in ["10.0.0.1:80\n    server x 10.6.6.6:80", "10.0.0.1 :80", "10.0.0.1:80#"]:
        slots = list(target.servers[names[0]])
        place = next(i for i, s in enumerate(slots) if s is not None)
        slots[place] = dataclasses.replace(slots[place], address=bad)
        tampered = dataclasses.replace(target, servers={**target.servers, names[0]: tuple(slots)})
        with pytest.raises(config.UnsafeValueError):
            render(tampered, RenderOptions(HAProxyPaths(tmp_path)))
