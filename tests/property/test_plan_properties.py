"""Plan invariants over random endpoint histories (pure, many cases)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from haproxy_ingress.model import (
    AppliedState,
    Backend,
    DesiredState,
    Endpoint,
    GlobalSettings,
    ObjectRef,
    Passthrough,
    RoutingMaps,
    ServerState,
    ServiceRef,
)
from haproxy_ingress.plan import AddServer, SetServer, plan

SETTINGS = GlobalSettings(slots_min=2)
SOURCE = ObjectRef("Ingress", "default", "pt")
endpoints = st.builds(
    Endpoint,
    address=st.sampled_from([f"10.0.0.{n}" for n in range(1, 40)]),
    port=st.just(8080),
    state=st.sampled_from(list(ServerState)),
)
histories = st.lists(
    st.lists(endpoints, max_size=24, unique_by=lambda e: e.key), min_size=1, max_size=12
)


def desired(step: list[Endpoint], balance: str = "leastconn") -> DesiredState:
    settings = dataclasses.replace(SETTINGS.backend, balance=balance)
    backend = Backend("be_web", ServiceRef("default", "web", "80"), settings, tuple(sorted(step)))
    return DesiredState(SETTINGS, (backend,), None, (), RoutingMaps(), ())


def applied_after(current: AppliedState, operations: tuple[object, ...]) -> list[Endpoint | None]:
    """The slots HAProxy has after ``operations``: an added server exists before it is set."""
    slots = list(current.servers["be_web"])
    for operation in operations:
        if isinstance(operation, AddServer):
            assert operation.slot == len(slots) + 1  # added in order, never twice
            slots.append(None)
            continue
        assert isinstance(operation, SetServer)
        slots[operation.slot - 1] = operation.endpoint
    return slots


@settings(max_examples=400, deadline=None)
@given(history=histories, balance=st.sampled_from(["leastconn", "source"]))
def test_slots_hold_exactly_the_endpoints_and_endpoints_keep_their_slot(
    history: list[list[Endpoint]], balance: str
) -> None:
    """Growing at run time (any algorithm but source): no reload, no spare slot.
    Under ``balance source``: power-of-two slots, and a reload to grow."""
    current: AppliedState | None = None
    for step in history:
        result = plan(current, desired(step, balance))
        slots = result.target.servers["be_web"]
        assert sorted(e for e in slots if e is not None) == sorted(step)
        before_size = 0
        if current is not None:
            before = {e.key: i for i, e in enumerate(current.servers["be_web"]) if e}
            after = {e.key: i for i, e in enumerate(slots) if e}
            for key in before.keys() & after.keys():
                assert before[key] == after[key]  # never moved: sticky, one command
            before_size = len(current.servers["be_web"])
            grew = len(slots) > before_size
            assert result.reload == (grew and balance == "source")
            if not result.reload:
                # The runtime operations take HAProxy exactly to the target.
                assert applied_after(current, result.operations) == list(slots)
        assert len(slots) >= SETTINGS.slots_min
        if balance == "source":
            assert len(slots) & (len(slots) - 1) == 0  # a power of two
        else:
            assert len(slots) == max(SETTINGS.slots_min, len(step), before_size)
        current = result.target


# --- the ssl-passthrough pool ---------------------------------------------------------

PASSTHROUGH_HOSTS = [f"h{n}.example.com" for n in range(1, 12)]
passthrough_steps = st.lists(
    st.dictionaries(
        st.sampled_from(PASSTHROUGH_HOSTS),
        st.lists(endpoints, max_size=5, unique_by=lambda e: e.key),
        max_size=9,
    ),
    min_size=1,
    max_size=10,
)


def passthrough_desired(step: dict[str, list[Endpoint]]) -> DesiredState:
    hosts = tuple(
        Passthrough(
            host, ServiceRef("default", host.split(".", 1)[0], "443"), tuple(sorted(eps)), SOURCE
        )
        for host, eps in sorted(step.items())
    )
    return DesiredState(
        SETTINGS, (), None, (), RoutingMaps(), (), ssl_passthrough=True, passthrough=hosts
    )


@settings(max_examples=300, deadline=None)
@given(history=passthrough_steps)
def test_passthrough_hosts_never_meet_another_hosts_servers(
    history: list[dict[str, list[Endpoint]]],
) -> None:
    """Each host has its own pool backend holding exactly its pods; a host keeps
    its backend; without a reload, no backend serves two hosts within one plan."""
    current: AppliedState | None = None
    for step in history:
        result = plan(current, passthrough_desired(step))
        target = result.target
        sni = dict(target.sni)
        assert set(sni) == set(step)
        assert len(set(sni.values())) == len(sni)  # one host per backend
        pool = {layout.name for layout in target.structure.passthrough}
        for host, backend in sni.items():
            assert backend in pool
            held = sorted(e for e in target.servers[backend] if e is not None)
            assert held == sorted(step[host])
        for backend in pool - set(sni.values()):
            assert all(slot is None for slot in target.servers[backend])
        if current is not None:
            before = dict(current.sni)
            for host in before.keys() & sni.keys():
                assert before[host] == sni[host]
            if not result.reload:
                owner_before = {b: h for h, b in before.items()}
                for host, backend in sni.items():
                    assert owner_before.get(backend, host) == host
        current = target
