"""The file-descriptor estimate's arithmetic (checked against HAProxy in tests/haproxy)."""

from __future__ import annotations

from haproxy_ingress.haproxy import limits
from haproxy_ingress.model import (
    AppliedState,
    BackendLayout,
    BackendSettings,
    GlobalSettings,
    RoutingMaps,
    Structure,
)


def state(slots: int, *, health_check: bool = True, maxconn: int | None = None) -> AppliedState:
    layout = BackendLayout("be", BackendSettings(health_check=health_check), slots)
    structure = Structure(GlobalSettings(maxconn=maxconn), (layout,), None)
    return AppliedState(structure, {}, RoutingMaps(), ())


def test_checked_slots_and_maxconn_count_unchecked_slots_do_not() -> None:
    base = limits.descriptors_needed(state(0), 2, 2)
    assert limits.descriptors_needed(state(100), 2, 2) == base + 100
    assert limits.descriptors_needed(state(100, health_check=False), 2, 2) == base
    assert limits.descriptors_needed(state(0, maxconn=1000), 2, 2) == base + 2 * (1000 - 100)


def test_refusal_only_past_the_limit_and_never_without_one() -> None:
    needed = limits.descriptors_needed(state(10), 2, limits.threads())
    assert limits.refusal(state(10), 2, None) is None
    assert limits.refusal(state(10), 2, needed) is None
    alert = limits.refusal(state(10), 2, needed - 1)
    assert alert is not None and alert.startswith("[ALERT]") and str(needed) in alert


def test_servers_added_at_run_time_count_with_their_twins() -> None:
    """A slot added at run time has a checked twin; so has a declared slot whose
    backend reached two slots at run time (BackendSettings.twins_at)."""
    layout = BackendLayout("be", BackendSettings(), 1)
    structure = Structure(GlobalSettings(), (layout,), None)
    one = AppliedState(structure, {"be": (None,)}, RoutingMaps(), ())
    assert limits.checked_slots(one) == 1
    three = AppliedState(structure, {"be": (None, None, None)}, RoutingMaps(), ())
    assert limits.checked_slots(three) == 6  # s1-s3, t1-t3
    declared = BackendLayout("be", BackendSettings(), 2)
    structure = Structure(GlobalSettings(), (declared,), None)
    grown = AppliedState(structure, {"be": (None, None, None)}, RoutingMaps(), ())
    assert limits.checked_slots(grown) == 4  # s1, s2 (t1, t2 track them), s3, t3
