"""Plan: which changes are runtime operations, which need a reload, and why."""

from __future__ import annotations

from dataclasses import replace

from haproxy_ingress.apply import server_commands
from haproxy_ingress.haproxy.limits import Budget
from haproxy_ingress.model import (
    AccessPolicy,
    Backend,
    BackendSettings,
    Certificate,
    DesiredState,
    Endpoint,
    GlobalSettings,
    HostTLS,
    RoutingMaps,
    ServerState,
    ServiceRef,
)
from haproxy_ingress.plan import (
    AddServer,
    PutCertificate,
    RemoveCertificate,
    ReplaceAddressList,
    ReplaceMap,
    SetServer,
    assign_slots,
    check_rate,
    check_stretch,
    declared,
    plan,
    plan_endpoints,
    plan_full_sync,
    slot_count,
)

SETTINGS = GlobalSettings(slots_min=4)
NO_ROUTES = RoutingMaps()


def ep(n: int, state: ServerState = ServerState.READY) -> Endpoint:
    return Endpoint(f"10.0.0.{n}", 8080, state)


def backend(name: str, *endpoints: Endpoint, settings: BackendSettings | None = None) -> Backend:
    return Backend(
        f"be_{name}", ServiceRef("default", name, "80"), settings or SETTINGS.backend, endpoints
    )


def desired(
    *backends: Backend,
    maps: RoutingMaps = NO_ROUTES,
    certificates: tuple[Certificate, ...] = (),
    settings: GlobalSettings = SETTINGS,
) -> DesiredState:
    return DesiredState(
        settings=settings,
        backends=tuple(sorted(backends, key=lambda b: b.name)),
        default_backend=None,
        routes=(),
        maps=maps,
        certificates=certificates,
    )


def test_first_plan_is_a_reload_that_fills_every_slot() -> None:
    result = plan(None, desired(backend("web", ep(1), ep(2))))
    assert result.reload_reasons == ("initial configuration",)
    assert result.target.servers["be_web"] == (ep(1), ep(2), None, None)
    assert result.operations == (
        SetServer("be_web", 1, ep(1), twin=True),
        SetServer("be_web", 2, ep(2), twin=True),
        SetServer("be_web", 3, None, twin=True),
        SetServer("be_web", 4, None, twin=True),
    )


def test_unchanged_cluster_plans_nothing() -> None:
    state = desired(backend("web", ep(1)), maps=RoutingMaps(exact=(("h/", "be_web"),)))
    first = plan(None, state)
    assert plan(first.target, state).empty


def test_scale_up_within_slots_is_runtime_only() -> None:
    first = plan(None, desired(backend("web", ep(1))))
    result = plan(first.target, desired(backend("web", ep(1), ep(2), ep(3))))
    assert not result.reload
    assert result.operations == (
        SetServer("be_web", 2, ep(2), twin=True),
        SetServer("be_web", 3, ep(3), twin=True),
    )


def test_endpoints_keep_their_slots_and_freed_slots_go_to_maintenance() -> None:
    first = plan(None, desired(backend("web", ep(1), ep(2), ep(3))))
    result = plan(first.target, desired(backend("web", ep(1), ep(3))))
    assert result.target.servers["be_web"] == (ep(1), None, ep(3), None)
    assert result.operations == (SetServer("be_web", 2, None, ep(2), twin=True),)


def test_state_change_is_one_operation_on_the_same_slot() -> None:
    first = plan(None, desired(backend("web", ep(1), ep(2))))
    result = plan(first.target, desired(backend("web", ep(1), ep(2, ServerState.DRAIN))))
    assert result.operations == (
        SetServer("be_web", 2, ep(2, ServerState.DRAIN), ep(2), twin=True),
    )


SOURCE = replace(SETTINGS.backend, balance="source")  # no dynamic servers in 2.6


def test_a_backend_short_of_slots_gets_new_ones_at_run_time() -> None:
    first = plan(None, desired(backend("web", *(ep(n) for n in range(1, 5)))))
    assert len(first.target.servers["be_web"]) == 4
    result = plan(first.target, desired(backend("web", *(ep(n) for n in range(1, 7)))))
    assert not result.reload, result.reload_reasons
    # Exactly the endpoints; haproxy.cfg still declares 4 until a reload.
    assert result.target.servers["be_web"] == tuple(ep(n) for n in range(1, 7))
    assert result.target.structure.backends[0].slots == 4
    settings = SETTINGS.backend
    assert result.operations == (
        AddServer("be_web", 5, settings, ep(5), twin=True),
        SetServer("be_web", 5, ep(5), twin=True, twin_state=True),
        AddServer("be_web", 6, settings, ep(6), twin=True),
        SetServer("be_web", 6, ep(6), twin=True, twin_state=True),
    )
    # A slot added at run time changes state with its own twin: no track.
    gone = plan(result.target, desired(backend("web", *(ep(n) for n in range(1, 6)))))
    assert gone.operations == (SetServer("be_web", 6, None, ep(6), twin=True, twin_state=True),)


def test_a_backend_of_one_slot_has_no_twin_until_it_has_two() -> None:
    """One slot, one pod at most: nothing to retry on when it fails, twin or not.
    Reaching two slots at run time adds the twin of the first (checked, given
    its slot's state, as every twin added at run time) with the second slot's."""
    settings = SETTINGS.backend
    one = GlobalSettings(slots_min=1)
    first = plan(None, desired(backend("web", ep(1)), settings=one))
    assert first.target.servers["be_web"] == (ep(1),)
    assert first.operations == (SetServer("be_web", 1, ep(1)),)
    grown = plan(first.target, desired(backend("web", ep(1), ep(2)), settings=one))
    assert not grown.reload, grown.reload_reasons
    assert grown.operations == (
        AddServer("be_web", 1, settings, ep(1), twin=True, only_twin=True),
        SetServer("be_web", 1, ep(1), twin=True, twin_state=True),
        AddServer("be_web", 2, settings, ep(2), twin=True),
        SetServer("be_web", 2, ep(2), twin=True, twin_state=True),
    )
    # Until a reload declares them, both twins change state with their slot.
    drained = desired(backend("web", ep(1, ServerState.DRAIN), ep(2)), settings=one)
    step = plan(grown.target, drained)
    assert step.operations == (
        SetServer("be_web", 1, ep(1, ServerState.DRAIN), ep(1), twin=True, twin_state=True),
    )
    # After a restart, a full sync adds them again (the adopted state).
    assert plan_full_sync(step.target) == (
        AddServer("be_web", 1, settings, ep(1, ServerState.DRAIN), twin=True, only_twin=True),
        SetServer("be_web", 1, ep(1, ServerState.DRAIN), twin=True, twin_state=True),
        AddServer("be_web", 2, settings, ep(2), twin=True),
        SetServer("be_web", 2, ep(2), twin=True, twin_state=True),
    )
    # A reload declares two slots and their twins, which track them.
    forced = plan(step.target, replace(drained, settings=replace(one, timeout_client="61s")))
    assert forced.reload
    assert forced.operations == (
        SetServer("be_web", 1, ep(1, ServerState.DRAIN), twin=True),
        SetServer("be_web", 2, ep(2), twin=True),
    )
    # A free first slot gets its twin in maintenance too.
    lone = plan(None, desired(backend("web"), settings=one)).target
    assert lone.servers["be_web"] == (None,)
    step = plan(lone, desired(backend("web", ep(1), ep(2)), settings=one))
    assert step.operations[:2] == (
        AddServer("be_web", 1, settings, ep(1), twin=True, only_twin=True),
        SetServer("be_web", 1, ep(1), twin=True, twin_state=True),
    )


def test_a_backend_with_a_maxconn_has_twins_from_one_slot() -> None:
    """Slot and twin share a pod's maxconn: the split holds from the start."""
    capped = replace(SETTINGS.backend, maxconn=10)
    assert capped.twins_at(1) and not SETTINGS.backend.twins_at(1)
    assert SETTINGS.backend.twins_at(2)


def test_balance_source_grows_geometrically_with_one_named_reload() -> None:
    first = plan(None, desired(backend("web", *(ep(n) for n in range(1, 5)), settings=SOURCE)))
    assert len(first.target.servers["be_web"]) == 4
    grown = backend("web", *(ep(n) for n in range(1, 6)), settings=SOURCE)
    result = plan(first.target, desired(grown))
    assert result.reload_reasons == ("backend be_web needs 5 server slots, has 4",)
    assert len(result.target.servers["be_web"]) == 8
    assert result.target.structure.backends[0].slots == 8
    # existing endpoints stay where they were
    assert result.target.servers["be_web"][:5] == tuple(ep(n) for n in range(1, 6))


def test_scaling_to_a_thousand_costs_no_reload_and_no_spare_slot() -> None:
    for settings, reloads_expected in ((SETTINGS.backend, 0), (SOURCE, 12)):
        applied = plan(None, desired(backend("web", ep(1), settings=settings))).target
        reloads = 0
        for count in range(2, 1001):
            endpoints = [Endpoint(f"10.{n // 250}.{n % 250}.1", 80) for n in range(count)]
            step = plan(applied, desired(backend("web", *endpoints, settings=settings)))
            reloads += step.reload
            applied = step.target
        # balance source: doubling up to 256 slots (4 → 8 → … → 256), then a
        # quarter more each time (336 → 432 → 544 → 688 → 864 → 1088).
        assert reloads == reloads_expected
        size = len(applied.servers["be_web"])
        assert size == 1000 if settings is SETTINGS.backend else 1000 < size <= 1266


def test_a_reload_declares_added_slots_and_drops_trailing_free_ones() -> None:
    start = plan(None, desired(backend("web", ep(1)), backend("src", ep(1), settings=SOURCE)))
    many = [ep(n) for n in range(1, 11)]
    scaled = plan(
        start.target,
        desired(backend("web", *many), backend("src", *many[:5], settings=SOURCE)),
    )
    assert scaled.reload_reasons == ("backend be_src needs 5 server slots, has 4",)
    assert [b.slots for b in scaled.target.structure.backends] == [8, 10]  # src, web
    # Scale down, then anything that reloads: web keeps its filled slots
    # and server-slots (4); src keeps its headroom.
    down = desired(backend("web", ep(1), ep(7)), backend("src", ep(1), settings=SOURCE))
    step = plan(scaled.target, down)
    assert not step.reload
    forced = plan(step.target, replace(down, settings=replace(SETTINGS, timeout_client="61s")))
    assert forced.reload_reasons == ("global settings changed",)
    assert forced.target.servers["be_web"] == (ep(1), None, None, None, None, None, ep(7))
    assert forced.target.servers["be_src"] == (ep(1),) + (None,) * 7
    assert [b.slots for b in forced.target.structure.backends] == [8, 7]
    assert declared(forced.target) == forced.target
    assert not any(isinstance(op, AddServer) for op in forced.operations)


def test_a_full_sync_adds_the_slots_a_restarted_haproxy_may_lack() -> None:
    start = plan(None, desired(backend("web", *(ep(n) for n in range(1, 5)))))
    grown = plan(start.target, desired(backend("web", *(ep(n) for n in range(1, 7))))).target
    freed = plan(grown, desired(backend("web", *(ep(n) for n in (1, 2, 3, 4, 6))))).target
    settings = SETTINGS.backend
    assert plan_full_sync(freed)[-4:] == (
        AddServer("be_web", 5, settings, None, twin=True),
        SetServer("be_web", 5, None, twin=True, twin_state=True),
        AddServer("be_web", 6, settings, ep(6), twin=True),
        SetServer("be_web", 6, ep(6), twin=True, twin_state=True),
    )
    assert plan_full_sync(freed)[0] == SetServer("be_web", 1, ep(1), twin=True)


def test_huge_backends_grow_by_a_quarter_not_by_doubling() -> None:
    assert [slot_count(n) for n in (1, 3, 8, 9, 200, 256)] == [1, 4, 8, 16, 256, 256]
    assert slot_count(257) == 336  # 257 + 64, rounded up to 16
    assert slot_count(10_000) == 12_512  # not 16,384


def test_new_slots_prefer_long_free_slots_over_just_freed_ones() -> None:
    slots, grown = assign_slots((ep(1), ep(2), None, None), [ep(1), ep(5)], 4)
    assert not grown
    assert slots == (ep(1), None, ep(5), None)


def test_slots_holding_the_very_endpoints_are_kept_as_they_are() -> None:
    # A full sync of an unchanged Service: translate's memo hands back the same
    # Endpoint objects, and plan keeps the slots without placing them again.
    one, two, three = ep(1), ep(2), ep(3)
    current = (two, None, one, None)
    same, grown = assign_slots(current, [one, two], 4)
    assert same is current and not grown
    # Equal endpoints that are other objects (a state file read back, a pod
    # renamed on the same address): placed as before, each in its slot.
    renamed = Endpoint("10.0.0.1", 8080, ServerState.READY, "pod-b")
    placed, _ = assign_slots(current, [renamed, two], 4)
    assert placed == current and placed[2] is renamed
    # The same objects but one more, or one fewer: not the fast path.
    assert assign_slots(current, [one, two, three], 4)[0] == (two, three, one, None)
    assert assign_slots(current, [one], 4)[0] == (None, None, one, None)
    # The same object twice cannot pass for two endpoints (placed as before).
    assert assign_slots((one, None, one), [one, two], 3)[0] == (one, two, one)
    web = backend("web", one, two)
    first = plan(None, desired(web))
    again = plan(first.target, desired(web))
    assert not again.reload and again.operations == ()
    assert again.target.servers["be_web"] is first.target.servers["be_web"]


def test_new_backend_reloads_and_removed_backend_lingers() -> None:
    first = plan(None, desired(backend("web", ep(1))))
    added = plan(first.target, desired(backend("web", ep(1)), backend("api", ep(2))))
    assert added.reload_reasons == ("backend be_api added",)
    removed = plan(added.target, desired(backend("web", ep(1))))
    assert not removed.reload
    assert [b.name for b in removed.target.structure.backends] == ["be_api", "be_web"]
    assert removed.operations == (SetServer("be_api", 1, None, ep(2), twin=True),)
    # The next reload for another reason drops it.
    later = plan(removed.target, desired(backend("web", ep(1)), backend("new", ep(3))))
    assert [b.name for b in later.target.structure.backends] == ["be_new", "be_web"]
    # ... and re-adding a lingering backend needs no reload at all.
    back = plan(removed.target, desired(backend("web", ep(1)), backend("api", ep(4))))
    assert not back.reload


def test_settings_changes_reload_with_reasons() -> None:
    first = plan(None, desired(backend("web", ep(1))))
    tuned = BackendSettings(balance="roundrobin")
    result = plan(first.target, desired(backend("web", ep(1), settings=tuned)))
    assert result.reload_reasons == ("backend be_web settings changed",)
    result = plan(
        first.target, desired(backend("web", ep(1)), settings=replace(SETTINGS, maxconn=100))
    )
    assert result.reload_reasons == ("global settings changed",)


def test_route_changes_are_map_replacements() -> None:
    first = plan(None, desired(backend("web", ep(1))))
    maps = RoutingMaps(exact=(("h/a", "be_web"),), prefix=(("h/a/", "be_web"),))
    result = plan(first.target, desired(backend("web", ep(1)), maps=maps))
    assert not result.reload
    assert result.operations == (
        ReplaceMap("exact", maps.exact),
        ReplaceMap("prefix", maps.prefix),
    )


def test_certificate_changes_are_runtime_operations() -> None:
    one = Certificate("default_one", "PEM1", ("a.example.com",))
    first = plan(None, desired(certificates=(one,)))
    renewed = replace(one, pem="PEM2")
    rehosted = replace(one, hosts=("a.example.com", "b.example.com"))
    two = Certificate("default_two", "PEM3", ("c.example.com",))
    assert plan(first.target, desired(certificates=(renewed,))).operations == (
        PutCertificate(renewed, loaded=True, hosts_changed=False),
    )
    assert plan(first.target, desired(certificates=(rehosted,))).operations == (
        PutCertificate(rehosted, loaded=True, hosts_changed=True),
    )
    result = plan(first.target, desired(certificates=(two,)))
    assert not result.reload
    assert result.operations == (
        RemoveCertificate("default_one"),
        PutCertificate(two, loaded=False, hosts_changed=True),
    )


def test_a_host_with_a_line_of_its_own_changing_certificate_reloads() -> None:
    """A host with handshake options (HostTLS) has a crt-list line of its own:
    on its certificate's, or on the default certificate's, which only a
    reload rewrites. Moving between the two reloads; other hosts' certificate
    changes stay runtime operations."""
    guarded = (HostTLS("a.example.com", ciphers="ECDHE-RSA-AES128-GCM-SHA256"),)
    own = Certificate("default_one", "PEM1", ("a.example.com",))
    other = Certificate("default_two", "PEM2", ("c.example.com",))
    first = plan(None, replace(desired(certificates=(own,)), host_tls=guarded))
    result = plan(first.target, replace(desired(certificates=()), host_tls=guarded))
    assert result.reload_reasons == ("a host with a crt-list line of its own changed certificate",)
    result = plan(first.target, replace(desired(certificates=(own, other)), host_tls=guarded))
    assert not result.reload
    back = plan(None, replace(desired(certificates=()), host_tls=guarded))
    assert plan(back.target, replace(desired(certificates=(own,)), host_tls=guarded)).reload


def test_always_reload_baseline_turns_runtime_changes_into_reloads() -> None:
    first = plan(None, desired(backend("web", ep(1))))
    result = plan(first.target, desired(backend("web", ep(1), ep(2))), always_reload=True)
    assert result.reload_reasons == ("reload on every change",)
    assert plan(first.target, desired(backend("web", ep(1))), always_reload=True).empty


def test_twins_need_checks_and_a_maxconn_that_splits() -> None:
    assert BackendSettings().twins
    assert not BackendSettings(health_check=False).twins  # track needs a checked server
    assert not BackendSettings(maxconn=1).twins
    assert not BackendSettings(affinity="cookie").twins  # a twin would share the cookie
    assert BackendSettings().slot_maxconn is None
    # A slot and its twin share the pod's limit: never more than asked for.
    for limit in (2, 3, 100, 101):
        slot, twin = BackendSettings(maxconn=limit).slot_maxconn or (0, 0)
        assert slot + twin == limit and slot >= 1 and twin >= 1
    assert BackendSettings(maxconn=1, health_check=True).slot_maxconn == (1, 0)


def test_slot_changes_say_whether_the_slot_has_a_twin() -> None:
    unchecked = replace(SETTINGS.backend, health_check=False)
    current = plan(
        None, desired(backend("web", ep(1)), backend("api", ep(2), settings=unchecked))
    ).target
    result = plan(
        current,
        desired(backend("web", ep(1), ep(3)), backend("api", ep(2), ep(4), settings=unchecked)),
    )
    assert not result.reload
    assert result.operations == (
        SetServer("be_api", 2, ep(4), twin=False),
        SetServer("be_web", 2, ep(3), twin=True),
    )


def test_a_twin_gets_the_slot_address_and_follows_its_state() -> None:
    words = [c.words for c in server_commands(SetServer("be_web", 3, ep(5), twin=True))]
    assert words == [
        ("set", "server", "be_web/s3", "addr", "10.0.0.5", "port", "8080"),
        ("set", "server", "be_web/t3", "addr", "10.0.0.5", "port", "8080"),
        ("set", "server", "be_web/s3", "state", "ready"),
    ]
    drain = SetServer("be_web", 3, ep(5, ServerState.DRAIN), ep(5), twin=True)
    assert [c.words for c in server_commands(drain)] == [
        ("set", "server", "be_web/s3", "state", "drain")
    ]
    freed = SetServer("be_web", 3, None, ep(5), twin=True)
    assert [c.words for c in server_commands(freed)] == [
        ("set", "server", "be_web/s3", "state", "maint")
    ]
    alone = SetServer("be_web", 3, ep(5), twin=False)
    assert [c.words[2] for c in server_commands(alone)] == ["be_web/s3", "be_web/s3"]


def test_planning_only_the_refreshed_backends_matches_the_full_plan() -> None:
    # A removed backend lingers with free slots in what HAProxy runs.
    before = desired(backend("api", ep(1)), backend("web", ep(1), ep(2)), backend("old", ep(9)))
    kept = tuple(b for b in before.backends if b.name != "be_old")
    running = plan(plan(None, before).target, replace(before, backends=kept))
    assert running.target.servers["be_old"] == (None,) * 4
    web = backend("web", ep(2), ep(3, ServerState.DRAIN))
    after = desired(backend("api", ep(1)), web)
    quick = plan_endpoints(running.target, after, [web])
    assert quick is not None
    assert quick == plan(running.target, after)
    assert [(op.backend, op.slot) for op in quick.operations] == [("be_web", 1), ("be_web", 3)]


def test_planning_only_the_refreshed_backends_grows_at_run_time() -> None:
    running = plan(None, desired(backend("web", ep(1)))).target
    grown = backend("web", *(ep(n) for n in range(1, 6)))
    fast = plan_endpoints(running, desired(grown), [grown])
    assert fast is not None
    assert fast == plan(running, desired(grown))
    # Unless the full plan must decide: an unknown backend, balance source,
    # or checked slots past the descriptor limit (it sheds checks).
    unknown = backend("new", ep(1))
    assert plan_endpoints(running, desired(backend("web", ep(1)), unknown), [unknown]) is None
    source = plan(None, desired(backend("web", ep(1), settings=SOURCE))).target
    grown_source = backend("web", *(ep(n) for n in range(1, 6)), settings=SOURCE)
    assert plan_endpoints(source, desired(grown_source), [grown_source]) is None
    need = Budget(limit=0, listeners=4, threads=2).needed(fast.target)
    tight = Budget(limit=need - 1, listeners=4, threads=2)
    assert plan_endpoints(running, desired(grown), [grown], budget=tight) is None
    roomy = Budget(limit=need, listeners=4, threads=2)
    assert plan_endpoints(running, desired(grown), [grown], budget=roomy) == fast


def test_an_owned_address_list_changes_at_run_time_and_a_new_list_reloads() -> None:
    def with_policy(policy: AccessPolicy) -> DesiredState:
        return replace(desired(backend("web", ep(1))), policies=(policy,))

    owned = AccessPolicy(("10.0.0.0/8",), owner="default/admin")
    running = plan(None, with_policy(owned)).target
    edited = replace(owned, allow_sources=("10.0.0.0/8", "192.0.2.0/24"), deny_sources=())
    assert edited.name == owned.name
    step = plan(running, with_policy(edited))
    assert not step.reload
    assert step.operations == (
        ReplaceAddressList(owned.name, False, ("10.0.0.0/8", "192.0.2.0/24")),
    )
    assert step.target.structure.policies == (edited,)
    # A deny-list appearing changes the rules (a new name): a reload.
    denying = replace(owned, deny_sources=("192.0.2.1/32",))
    assert denying.name != owned.name
    assert plan(running, with_policy(denying)).reload
    # Without an owner the name is the content, shared by equal rules.
    assert AccessPolicy(("10.0.0.0/8",)).name != AccessPolicy(("10.0.0.0/9",)).name


def test_checks_are_shed_when_the_checked_slots_would_not_fit_the_descriptor_limit() -> None:
    small = desired(backend("web", ep(1)), backend("api", ep(2)))
    big = desired(*(backend(f"b{i}", ep(i)) for i in range(10)))
    budget = Budget(limit=10_000, listeners=4, threads=2)
    running = plan(None, small, budget=budget).target
    assert not running.structure.checks_shed
    # 10 backends x 4 checked slots: more than a limit that fits 2 backends.
    fits_two = budget.needed(running) + 4
    tight = Budget(limit=fits_two, listeners=4, threads=2)
    step = plan(running, big, budget=tight)
    assert step.reload and step.reload_reasons[0].startswith("active health checks off")
    assert len(step.reload_reasons) == 1  # not one "settings changed" per backend
    # Every slot set after the reload (the plan without checks' list, made once).
    assert step.operations == plan_full_sync(step.target)
    assert step.target.structure.checks_shed
    assert not any(b.settings.health_check for b in step.target.structure.backends)
    # Backends that shared a settings object share its unchecked copy (at 10k
    # Ingresses, one copy per backend was 10,000 objects held while applied).
    assert len({id(b.settings) for b in step.target.structure.backends}) == 1
    assert tight.needed(step.target) <= fits_two
    # Steady: the same cluster plans nothing more.
    assert plan(step.target, big, budget=tight).empty
    # Back on only below 90 % of the limit: at the edge they stay off ...
    edge = Budget(limit=int(budget.needed(plan(None, big).target) / 0.95), listeners=4, threads=2)
    assert plan(step.target, big, budget=edge).empty
    # ... and with room, one reload brings them back.
    back = plan(step.target, big, budget=budget)
    assert back.reload_reasons == (
        f"active health checks back on: {budget.needed(back.target)} file descriptors of 10000",
    )
    assert not back.target.structure.checks_shed
    assert all(b.settings.health_check for b in back.target.structure.backends)


def test_the_endpoint_fast_path_keeps_to_what_haproxy_runs_with_checks_shed() -> None:
    web = backend("web", ep(1), ep(2))
    running = plan(None, desired(web), budget=Budget(limit=150, listeners=4, threads=2)).target
    assert running.structure.checks_shed  # no check, so no twin servers either
    moved = backend("web", ep(1), ep(3))
    quick = plan_endpoints(running, desired(moved), [moved])
    assert quick is not None and quick.operations
    assert not any(op.twin for op in quick.operations if isinstance(op, SetServer))


def test_check_intervals_stretch_by_powers_of_two_past_the_rate_with_hysteresis() -> None:
    assert check_stretch(900, 1000, 1) == 1
    assert check_stretch(1001, 1000, 1) == 2
    assert check_stretch(15_000, 1000, 1) == 16
    assert check_stretch(15_000, 0, 1) == 1  # no maximum
    assert check_stretch(10**12, 1000, 1) == 1024  # capped
    # Down only once the smaller stretch fits 90 % of the maximum.
    assert check_stretch(1900, 1000, 2) == 2
    assert check_stretch(1700, 1000, 2) == 2  # 1700/1 > 900: stays
    assert check_stretch(850, 1000, 2) == 1
    assert check_stretch(850, 1000, 4) == 1


def test_the_check_rate_counts_checked_servers_only() -> None:
    web = backend("web", ep(1), ep(2), ep(3, ServerState.MAINT), ep(4, ServerState.DRAIN))
    target = plan(None, desired(web)).target
    # 3 checked (maintenance is not), every 2 s; free slots are not checked.
    assert check_rate(target) == 1.5
    grown = plan(target, desired(backend("web", *(ep(n) for n in range(1, 7))))).target
    assert check_rate(grown) == 6 / 2


def test_past_the_check_rate_intervals_stretch_in_one_reload_and_come_back() -> None:
    settings = replace(SETTINGS, check_max_rate=6, slots_min=1)

    def pods(count: int) -> DesiredState:
        apps = [backend(f"app{n}", *(ep(i) for i in range(1, count + 1))) for n in range(10)]
        return desired(*apps, settings=settings)

    start = plan(None, pods(1))  # 10 pods every 2 s: 5 checks/s
    assert start.target.structure.check_stretch == 1
    # 10 pods added at run time: 10 checks/s.
    grown = plan(start.target, pods(2))
    assert grown.reload_reasons == (
        "active check intervals x2: 10 checks/s at the configured intervals, "
        "health-check-max-rate 6",
    )
    assert grown.target.structure.check_stretch == 2
    assert [b.slots for b in grown.target.structure.backends] == [2] * 10  # declared
    steady = plan(grown.target, pods(2))
    assert steady.empty and steady.target.structure.check_stretch == 2
    # Back to 5 checks/s: fits 90 % of 6 without stretching.
    down = plan(steady.target, pods(1))
    assert down.reload_reasons[0].startswith("active check intervals x1: 5 checks/s")
    # Checks shed for descriptors: nothing to stretch.
    shed = plan(None, pods(2), budget=Budget(limit=30, listeners=4, threads=2))
    assert shed.target.structure.checks_shed and shed.target.structure.check_stretch == 1


def test_declaring_what_is_declared_returns_the_very_same_state() -> None:
    """The reconciler knows what HAProxy runs by identity (sync.Reconciler)."""
    target = plan(None, desired(backend("web", ep(1), ep(2)))).target
    assert declared(target) is target
