"""The applied state survives a round trip through its JSON file."""

from __future__ import annotations

import dataclasses

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
