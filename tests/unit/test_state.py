"""The applied state survives a round trip through its JSON file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from haproxy_ingress import state
from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.loader import load_objects
from haproxy_ingress.model import Endpoint, ServerState, TranslateOptions
from haproxy_ingress.plan import plan
from haproxy_ingress.translate import translate
from tests.unit.test_render_golden import CLUSTERS


def test_applied_state_round_trips() -> None:
    options = TranslateOptions()
    for name in ("basic", "default-backend", "conflicts"):
        view, _ = ClusterView.from_objects(load_objects([CLUSTERS / name]), options)
        applied = plan(None, translate(view, options)).target
        assert state.load(state.dump(applied)) == applied
        assert state.dump(state.load(state.dump(applied))) == state.dump(applied)  # type: ignore[arg-type]


def test_global_auth_settings_round_trip() -> None:
    options = TranslateOptions()
    view, _ = ClusterView.from_objects(load_objects([CLUSTERS / "basic"]), options)
    desired = translate(view, options)
    settings = dataclasses.replace(
        desired.settings,
        global_auth_url="http://auth.example.com/",
        global_auth_response_headers=("x-user",),
    )
    applied = plan(None, dataclasses.replace(desired, settings=settings)).target
    assert state.load(state.dump(applied)) == applied


def test_unknown_or_broken_state_is_none() -> None:
    assert state.load(b"") is None
    assert state.load(b"{}") is None
    assert state.load(b'{"format": 99}') is None
    assert state.load(b'{"format": 1, "structure": {}}') is None
    assert state.load(b"\xff\xfe") is None


def test_a_slot_is_written_with_every_field_of_its_endpoint() -> None:
    """state._endpoint spells out dataclasses.asdict: a new Endpoint field must be added there."""
    slot = Endpoint("10.0.0.7", 8080, ServerState.DRAIN, target="web-1")
    assert state._endpoint(slot) == dataclasses.asdict(slot)


def _plain_dump(applied: state.AppliedState) -> bytes:
    """The state as one json.dumps of dataclasses.asdict: what state.dump must equal."""
    body = {
        "format": state.FORMAT,
        "structure": dataclasses.asdict(applied.structure),
        "servers": {
            name: [None if s is None else dataclasses.asdict(s) for s in slots]
            for name, slots in sorted(applied.servers.items())
        },
        "maps": dataclasses.asdict(applied.maps),
        "certificates": [dataclasses.asdict(c) for c in applied.certificates],
        "sni": [list(entry) for entry in applied.sni],
    }
    return json.dumps(body, separators=(",", ":")).encode()


@pytest.mark.parametrize("cluster", sorted(p.name for p in CLUSTERS.iterdir() if p.is_dir()))
def test_the_state_is_written_as_one_plain_encoding_would_write_it(cluster: str) -> None:
    # dump encodes piece by piece, and each backend's shared settings once:
    # byte for byte what the straightforward encoding gives.
    options = TranslateOptions(ssl_passthrough=True)
    view, _ = ClusterView.from_objects(load_objects([Path(CLUSTERS / cluster)]), options)
    applied = plan(None, translate(view, options)).target
    assert state.dump(applied) == _plain_dump(applied)
