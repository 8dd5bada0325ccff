"""Property tests: arbitrary and hostile objects are rejected, or rendered safely.

For every generated cluster: each Ingress is either served or has a problem;
the rendered haproxy.cfg passes a real ``haproxy -c``; and parsing the
rendered files shows only what the templates intend — the frontend, global
and defaults sections are byte-identical to an empty cluster's (the frontend
with the same optional rules, Structure.frontend_maps and route_policies), backends hold
only their allowed keywords and exactly their slots, map lines are exactly a
key and a backend. The runtime-command encoder gets the same treatment.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.haproxy.commands import Command, UnsafeArgumentError
from haproxy_ingress.haproxy.config import RenderOptions, default_certificate_path, render
from haproxy_ingress.haproxy.files import atomic_write
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.model import AppliedState, DesiredState, TranslateOptions
from haproxy_ingress.plan import plan
from haproxy_ingress.tls import generate_default_certificate
from haproxy_ingress.translate import translate
from tests.property.strategies import HOSTILE_FRAGMENTS, clusters

OPTIONS = TranslateOptions()
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
DEFAULT_CERT = generate_default_certificate(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
BACKEND_KEYWORDS = {
    "balance",
    "hash-type",
    "timeout",
    "retries",
    "retry-on",
    "option",
    "default-server",
    "server",
    "http-request",
}


def sections(text: str) -> dict[str, list[str]]:
    """``"backend be_x"`` → its lines (stripped, comments and blanks dropped)."""
    result: dict[str, list[str]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not raw.startswith((" ", "\t")):
            current = line
            assert current not in result, f"section {current!r} twice"
            result[current] = []
        else:
            result[current].append(line)
    return result


def render_files(
    desired: DesiredState, base: Path, rules: tuple[tuple[str, ...], bool] | None = None
) -> tuple[AppliedState, dict[str, str]]:
    """``rules``: the structure's (frontend_maps, route_policies), else the plan's."""
    target = plan(None, desired).target
    if rules is not None:
        structure = dataclasses.replace(
            target.structure, frontend_maps=rules[0], route_policies=rules[1]
        )
        target = dataclasses.replace(target, structure=structure)
    paths = HAProxyPaths(base)
    paths.ensure()
    atomic_write(default_certificate_path(paths), DEFAULT_CERT.encode(), mode=0o600)
    rendered = render(target, RenderOptions(paths, ("127.0.0.1:8080",), ("127.0.0.1:8443",)))
    for file in rendered.all:
        atomic_write(file.path, file.content, mode=file.mode)
    # The directory differs per example; the shape must not.
    return target, {
        str(f.path.relative_to(base)): f.content.decode().replace(str(base), "BASE")
        for f in rendered.all
    }


def empty_sections(base: Path, rules: tuple[tuple[str, ...], bool]) -> dict[str, list[str]]:
    """An empty cluster's sections, its frontend with the optional ``rules``."""
    view = ClusterView.from_objects([], OPTIONS)[0]
    _, files = render_files(translate(view, OPTIONS), base, rules)
    return sections(files["haproxy.cfg"])


Empty = Callable[[tuple[tuple[str, ...], bool]], dict[str, list[str]]]


def check_shape(target: AppliedState, files: dict[str, str], empty_with: Empty) -> None:
    found = sections(files["haproxy.cfg"])
    empty = empty_with((target.structure.frontend_maps, target.structure.route_policies))
    for fixed in ("global", "defaults", "backend be_default_404"):
        assert found[fixed] == empty[fixed], fixed
    # The frontend is the empty cluster's plus exactly one deny line per access
    # policy, naming it and its own networks file, and nothing else.
    policy_lines = [
        "http-request deny deny_status 403 if { var(txn.policy) -m str "
        f"{p.name} }} !{{ var(txn.client) -m ip -f BASE/maps/{p.name}.acl }}"
        for p in target.structure.policies
    ]
    frontend = empty["frontend fe_http"]
    # (right after the check that a route's policy is known, before the route
    # options; without the rules reading routes' policies, after the sni map's).
    at = 1 + max(
        i
        for i, line in enumerate(frontend)
        if "maps/policies.map" in line or "maps/sni.map" in line
    )
    assert found["frontend fe_http"] == [*frontend[:at], *policy_lines, *frontend[at:]]
    for policy in target.structure.policies:
        networks = files[f"maps/{policy.name}.acl"].splitlines()
        assert networks == list(policy.allow_sources)
        for network in networks:
            ipaddress.ip_network(network)
    expected = {f"backend {b.name}": b for b in target.structure.backends}
    assert set(found) - set(empty) == set(expected)
    for header, layout in expected.items():
        lines = found[header]
        assert {line.split()[0] for line in lines} <= BACKEND_KEYWORDS, lines
        servers = [line.split() for line in lines if line.startswith("server s")]
        assert [words[1] for words in servers] == [f"s{i}" for i in range(1, layout.slots + 1)]
        twins = [line.split() for line in lines if line.startswith("server t")]
        assert len(servers) + len(twins) == sum(1 for line in lines if line.startswith("server "))
        # Each slot's twin (BackendSettings.twins_at): its address, tracking it, no check.
        if layout.settings.twins_at(layout.slots):
            maxconn = layout.settings.slot_maxconn
            extra = [] if maxconn is None else ["maxconn", str(maxconn[1])]
            assert twins == [
                [
                    "server",
                    f"t{words[1][1:]}",
                    words[2],
                    "id",
                    str(1_000_000 + int(words[1][1:])),
                    "track",
                    words[1],
                    "no-check",
                    *extra,
                ]
                for words in servers
            ]
        else:
            assert twins == []
        for words in servers:
            assert words[3:5] == ["id", words[1][1:]], words
            assert len(words) in {5, 6} and words[5:] in ([], ["disabled"]), words
            host, _, port = words[2].rpartition(":")
            ipaddress.ip_address(host.strip("[]"))
            assert 1 <= int(port) <= 65535
    for name, entries in (("exact", target.maps.exact), ("prefix", target.maps.prefix)):
        lines = files[f"maps/{name}.map"].splitlines()
        assert [tuple(line.split(" ")) for line in lines] == list(entries)


def served_or_reported(objects: Iterable[dict[str, Any]], desired: DesiredState) -> None:
    served = {route.source.name for route in desired.routes}
    reported = {p.source.name for p in desired.problems if p.source.kind == "Ingress"}
    for obj in objects:
        if obj["kind"] == "Ingress":
            name = obj["metadata"]["name"]
            assert name in served or name in reported, name


@pytest.fixture(scope="module")
def empty() -> Empty:
    known: dict[tuple[tuple[str, ...], bool], dict[str, list[str]]] = {}

    def with_rules(rules: tuple[tuple[str, ...], bool]) -> dict[str, list[str]]:
        if rules not in known:
            with tempfile.TemporaryDirectory() as directory:
                known[rules] = empty_sections(Path(directory), rules)
        return known[rules]

    return with_rules


@pytest.mark.haproxy
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(objects=clusters())
def test_hostile_clusters_render_only_intended_config(
    objects: list[dict[str, Any]], empty: Empty
) -> None:
    view = ClusterView.from_objects(objects, OPTIONS)[0]
    desired = translate(view, OPTIONS)
    served_or_reported(objects, desired)
    event(f"routes served: {min(len(desired.routes), 3)}+")
    event(f"servers filled: {min(sum(len(b.endpoints) for b in desired.backends), 2)}+")
    event(f"certificates: {len(desired.certificates)}")
    with tempfile.TemporaryDirectory() as directory:
        target, files = render_files(desired, Path(directory))
        check_shape(target, files, empty)
        result = subprocess.run(
            [HAPROXY, "-c", "-f", str(Path(directory) / "haproxy.cfg")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr


words = st.one_of(
    st.text(max_size=30),
    st.sampled_from(HOSTILE_FRAGMENTS),
    st.from_regex(r"[a-z_/.0-9]{1,20}", fullmatch=True),
)


@settings(max_examples=1000, deadline=None)
@given(
    command=st.lists(words, min_size=1, max_size=5),
    payload=st.one_of(st.none(), st.lists(words, min_size=1, max_size=4)),
)
def test_runtime_encoder_sends_one_command_or_refuses(
    command: list[str], payload: list[str] | None
) -> None:
    candidate = Command(tuple(command), None if payload is None else tuple(payload))
    try:
        data = candidate.encode()
    except UnsafeArgumentError:
        return
    text = data.decode("ascii")
    if payload is None:
        assert text == " ".join(command) + "\n"
        assert text.count("\n") == 1
        assert ";" not in text and "<<" not in text and "#" not in text
    else:
        head, _, rest = text.partition("\n")
        assert head == " ".join(command) + " <<"
        assert rest == "\n".join(payload) + "\n\n"
        assert all(line and "\x00" not in line for line in payload)
        assert ";" not in head and "#" not in head
