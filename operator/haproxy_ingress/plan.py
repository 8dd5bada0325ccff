"""Applied state + desired state → what to do to HAProxy (pure).

HAProxy's runtime API can change a server slot's address, port and state, the
contents of a map and the TLS certificates, all without a reload. What it
cannot change (in 2.6) is the set of backends, their settings and the global
settings: that is the *structure*, and only a change to it costs a reload.
:func:`plan` keeps the structure whenever it can, so endpoint churn and route
changes are runtime operations only. A backend short of slots gets new ones
with ``add server`` (:class:`AddServer`); haproxy.cfg declares them at the
next reload (:func:`declared`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from haproxy_ingress.haproxy.limits import Budget, checked_slots
from haproxy_ingress.memo import per_object
from haproxy_ingress.model import (
    AccessPolicy,
    AppliedState,
    Backend,
    BackendLayout,
    BackendSettings,
    Certificate,
    DesiredState,
    Endpoint,
    GlobalSettings,
    HostTLS,
    ServerState,
    Slots,
    Structure,
    frontend_maps,
    has_other_scopes,
    names_policy,
    passthrough_backend_name,
)
from haproxy_ingress.validate import duration_ms

# How much traffic a state lets in, to compare them: READY > DRAIN > MAINT.
_OPENNESS = {ServerState.MAINT: 0, ServerState.DRAIN: 1, ServerState.READY: 2}


def hold_unconfirmed(desired: DesiredState, current: AppliedState | None) -> DesiredState:
    """``desired`` with no server gaining traffic over ``current``: for an unconfirmed view.

    Between a watch gap and the LIST that verifies the view, the indexes may
    still hold EndpointSlices deleted meanwhile, whose pod IPs the cluster may
    already have given to other pods (another tenant's, perhaps). So a server
    is kept only where ``current`` (what HAProxy runs, derived from a view the
    API server last vouched for) already has it, in the same backend and at
    the same address and port, and never in a state letting in more traffic
    than it had: a server is never added, moved to another backend, nor
    re-enabled (MAINT/DRAIN to READY) from such a view. Removals and state
    reductions go through: taking traffic away never sends it to a stranger.
    A backend new since then gets no server (503) until the view is verified.
    """
    before: dict[str, dict[tuple[str, int], Endpoint]] = {}
    if current is not None:
        before = {
            name: {slot.key: slot for slot in slots if slot is not None}
            for name, slots in current.servers.items()
        }

    def held(
        endpoints: Sequence[Endpoint], known: Mapping[tuple[str, int], Endpoint]
    ) -> tuple[Endpoint, ...]:
        kept = []
        for endpoint in endpoints:
            old = known.get(endpoint.key)
            if old is None:
                continue
            opener = _OPENNESS[endpoint.state] > _OPENNESS[old.state]
            kept.append(dataclasses.replace(endpoint, state=old.state) if opener else endpoint)
        return tuple(kept)

    backends = [
        dataclasses.replace(b, endpoints=held(b.endpoints, before.get(b.name, {})))
        for b in desired.backends
    ]
    # A passthrough host's servers are those of the pool backend it had.
    pool = dict(current.sni) if current is not None else {}
    passthrough = [
        dataclasses.replace(p, endpoints=held(p.endpoints, before.get(pool.get(p.host, ""), {})))
        for p in desired.passthrough
    ]
    return dataclasses.replace(desired, backends=tuple(backends), passthrough=tuple(passthrough))


# Slot operations come by the hundred thousand after a reload at 10k
# Ingresses (plan_full_sync): without a __dict__ each is ~40% smaller.
@dataclass(frozen=True, slots=True)
class SetServer:
    """Point a slot at an endpoint (address, port, state), or free it (maintenance)."""

    backend: str
    slot: int  # 1-based, as in the server name "s<slot>"
    endpoint: Endpoint | None
    previous: Endpoint | None = None
    twin: bool = False  # the slot has a twin (BackendSettings.twins_at) to re-address too
    # The twin was added at run time: HAProxy 2.6 cannot ``track`` a dynamic
    # server, so the twin has its own check and gets the slot's state too.
    twin_state: bool = False

    @property
    def server(self) -> str:
        return f"s{self.slot}"

    @property
    def twin_server(self) -> str | None:
        return twin_name(self.server) if self.twin else None


@dataclass(frozen=True, slots=True)  # as SetServer
class AddServer:
    """Declare slot ``s<slot>`` (and its twin) at run time, in maintenance.

    The SetServer of the same slot follows and gives it its state. HAProxy
    2.6 applies no ``default-server`` to a dynamic server, so the apply
    repeats the backend's server options (haproxy/config.server_options).
    """

    backend: str
    slot: int
    settings: BackendSettings
    endpoint: Endpoint | None  # None: a free slot (re-added on adoption)
    pool: bool = False  # a passthrough pool backend (TCP, no twins)
    twin: bool = False  # with its twin (BackendSettings.twins_at)
    # The slot exists (declared with no twin): its twin alone, as a backend
    # reaches two slots.
    only_twin: bool = False

    @property
    def server(self) -> str:
        return f"s{self.slot}"

    @property
    def names(self) -> tuple[str, ...]:
        """The servers this adds."""
        twin = (twin_name(self.server),) if self.twin else ()
        return twin if self.only_twin else (self.server, *twin)


def twin_name(server: str) -> str:
    """The twin of slot ``sN`` is ``tN`` (see BackendSettings.twins)."""
    return "t" + server[1:]


@dataclass(frozen=True)
class ReplaceMap:
    """Swap a map's whole content atomically (prepare / add / commit)."""

    name: str  # the map file's stem (RoutingMaps.files)
    entries: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PutCertificate:
    """Load a new certificate or renew one, and serve it for its hosts."""

    certificate: Certificate
    loaded: bool  # already in HAProxy's memory (renewal) or not (new)
    hosts_changed: bool


@dataclass(frozen=True)
class RemoveCertificate:
    name: str


@dataclass(frozen=True)
class PutClientCA:
    """New content for a loaded CA file and its CRL (the same auth-tls Secret, updated)."""

    name: str  # HostTLS.ca_name
    ca: str
    crl: str  # "" when the crt-list line names no CRL file


@dataclass(frozen=True)
class ReplaceAddressList:
    """New networks for a policy's allow- or deny-list (its ACL file), without a reload."""

    policy: str  # AccessPolicy.name
    deny: bool  # the deny-list (denylist-source-range); else the allow-list
    networks: tuple[str, ...]


Operation = (
    AddServer
    | SetServer
    | ReplaceMap
    | PutCertificate
    | RemoveCertificate
    | PutClientCA
    | ReplaceAddressList
)

# A CA bundle or CRL above this many PEM bytes is not sent through the
# runtime API (one command must stay under commands.MAX_COMMAND_BYTES with
# its path): it reloads instead.
MAX_RUNTIME_PEM = 14_000


@dataclass(frozen=True)
class Plan:
    target: AppliedState
    reload_reasons: tuple[str, ...]  # empty: runtime operations suffice
    # After a reload, if there is one: then every slot set (plan_full_sync).
    operations: tuple[Operation, ...]

    @property
    def reload(self) -> bool:
        return bool(self.reload_reasons)

    @property
    def empty(self) -> bool:
        return not self.reload_reasons and not self.operations


def _structural(settings: GlobalSettings) -> GlobalSettings:
    """The settings that haproxy.cfg holds: the global deny-list is a map (maps.deny),
    and allow-snippet-annotations only changes what translate puts in the maps."""
    return dataclasses.replace(settings, deny_sources=(), allow_snippets=True)


# Checks shed for the descriptor limit come back only below this share of it,
# so a cluster hovering at the limit does not reload back and forth.
CHECKS_BACK_BELOW = 0.9


def plan(
    current: AppliedState | None,
    desired: DesiredState,
    *,
    always_reload: bool = False,
    budget: Budget | None = None,
) -> Plan:
    """The cheapest way from ``current`` to ``desired``.

    ``current`` is None when nothing is known to run (first start): then the
    plan is a reload with every slot filled from scratch. ``always_reload``
    turns every change into a reload, the way template-and-reload controllers
    work; it exists as a benchmark baseline.

    ``budget``: HAProxy's file descriptors. Every health-checked slot costs
    one at start (haproxy/limits.py), so a large cluster can need more than
    the limit, and HAProxy would not start at all. Rather than leave
    Ingresses out, the plan then turns active checks off everywhere
    (``Structure.checks_shed``): pods are taken out by their EndpointSlices,
    and retries with redispatch cover the race, as ingress-nginx works
    without active checks. They come back once they fit in
    ``CHECKS_BACK_BELOW`` of the limit.

    Then the check rate: see :func:`check_stretch`.
    """
    result = _plan_with_budget(current, desired, always_reload, budget)
    target = result.target
    before = current.structure.check_stretch if current is not None else 1
    maximum = desired.settings.check_max_rate
    rate, stretch = 0.0, 1
    if maximum > 0 and not target.structure.checks_shed:
        rate = check_rate(target)
        stretch = check_stretch(rate, maximum, before)
    if target.structure.check_stretch != stretch:
        target = dataclasses.replace(
            target, structure=dataclasses.replace(target.structure, check_stretch=stretch)
        )
    if result.reload or stretch == before:
        return dataclasses.replace(result, target=target)
    target = declared(target)
    reason = (
        f"active check intervals x{stretch}: {rate:.0f} checks/s at the configured intervals, "
        f"health-check-max-rate {maximum}"
    )
    return Plan(target, (reason,), plan_full_sync(target))


# Past this many times the configured interval, checks are not stretched
# further (2 s becomes ~34 min).
MAX_CHECK_STRETCH = 1024


def check_rate(target: AppliedState) -> float:
    """Active checks per second of ``target``'s servers at their configured intervals.

    A free slot or a pod in maintenance is not checked (HAProxy skips
    servers in maintenance), nor is a twin, which tracks its slot. (A twin
    added at run time checks on its own until the next reload declares it:
    not counted, since changing the stretch is a reload anyway.)
    """
    rate = 0.0
    for layout in (*target.structure.backends, *target.structure.passthrough):
        settings = layout.settings
        if settings.health_check:
            checked = sum(
                slot is not None and slot.state is not ServerState.MAINT
                for slot in target.servers.get(layout.name, ())
            )
            rate += checked * 1000 / duration_ms(settings.check_inter)
    return rate


def check_stretch(rate: float, maximum: int, before: int) -> int:
    """The power of two by which healthy servers' check intervals are multiplied.

    An idle pod costs HAProxy a check every interval (a TCP connection,
    ~16 µs of CPU measured with bench/scale.py --live-pods), so 30,000 pods
    checked every 2 s take a quarter of a core without a request. Past
    ``maximum`` checks per second every interval is doubled until the rate
    fits; servers that are down or changing state keep the
    configured pace (``downinter``/``fastinter``), and passive checks
    (``observe``) still take a failing pod out at its first refused
    connection. The stretch comes down once the rate fits
    ``CHECKS_BACK_BELOW`` of the maximum with a smaller one, so a cluster
    hovering at the limit does not reload back and forth. 0: no maximum.
    """
    if maximum <= 0 or rate <= 0:
        return 1

    def smallest(limit: float) -> int:
        stretch = 1
        while rate / stretch > limit and stretch < MAX_CHECK_STRETCH:
            stretch *= 2
        return stretch

    up = smallest(maximum)
    if up > before:
        return up
    down = smallest(maximum * CHECKS_BACK_BELOW)
    return min(down, before)


def _plan_with_budget(
    current: AppliedState | None,
    desired: DesiredState,
    always_reload: bool,
    budget: Budget | None,
) -> Plan:
    step = _plan(current, desired, always_reload)
    if budget is None:
        return step
    shed_before = current is not None and current.structure.checks_shed
    room = budget.limit * (CHECKS_BACK_BELOW if shed_before else 1.0)
    needed = budget.needed(step.target)
    if needed <= room or not checked_slots(step.target):
        if shed_before and step.reload:
            # One reason, not one "settings changed" per backend (thousands).
            reason = f"active health checks back on: {needed} file descriptors of {budget.limit}"
            return dataclasses.replace(step, reload_reasons=(reason,))
        return step
    # Not kept while the plan without checks is made: after a reload its slot
    # operations are one per slot (50,000 at 10k Ingresses, ~6 MiB).
    del step
    shed = _plan(current, _without_checks(desired), always_reload)
    target = dataclasses.replace(
        shed.target, structure=dataclasses.replace(shed.target.structure, checks_shed=True)
    )
    reasons = shed.reload_reasons
    if not shed_before:
        reasons = (
            f"active health checks off: {needed} file descriptors needed, limit {budget.limit}",
        )
    if reasons:
        # A reload's slot operations are the same list: checks_shed is not
        # among what plan_full_sync reads.
        return Plan(target, reasons, shed.operations if shed.reload else plan_full_sync(target))
    return dataclasses.replace(shed, target=target)


def _without_checks(desired: DesiredState) -> DesiredState:
    """``desired`` with active health checks off in every backend and the defaults."""

    # Backends share settings objects (an Ingress's, the ConfigMap's): each
    # is copied once, and the copies stay shared. One copy per backend was
    # 10,000 settings objects at 10k Ingresses, for as long as the plan is
    # the applied state (and each made plain again by state.dump).
    @per_object
    def off(settings: BackendSettings) -> BackendSettings:
        return dataclasses.replace(settings, health_check=False)

    return dataclasses.replace(
        desired,
        settings=dataclasses.replace(desired.settings, backend=off(desired.settings.backend)),
        backends=tuple(dataclasses.replace(b, settings=off(b.settings)) for b in desired.backends),
    )


def _plan(current: AppliedState | None, desired: DesiredState, always_reload: bool) -> Plan:
    reasons: list[str] = []
    old_layouts = {b.name: b for b in current.structure.backends} if current else {}
    old_servers: Mapping[str, Slots] = current.servers if current else {}
    if current is None:
        reasons.append("initial configuration")
    else:
        if _structural(current.structure.settings) != _structural(desired.settings):
            reasons.append("global settings changed")
        if current.structure.default_backend != desired.default_backend:
            reasons.append("default backend changed")
        if current.structure.host_tls != desired.host_tls:
            # A crt-list line naming a CA file HAProxy has not loaded is
            # refused at run time ("unable to load"); see README.
            reasons.append(
                "per-host TLS settings (client CA, ciphers, default-certificate lines) changed"
            )
        elif any(
            max(len(change.ca), len(change.crl)) > MAX_RUNTIME_PEM
            for change in _client_ca_changes(current.structure.host_tls, desired.host_tls)
        ):
            reasons.append("a client CA bundle or CRL too large for the runtime API changed")
        elif _handshake_certificates(
            current.certificates, current.structure.host_tls
        ) != _handshake_certificates(desired.certificates, desired.host_tls):
            reasons.append("a host with a crt-list line of its own changed certificate")

    layouts: dict[str, BackendLayout] = {}
    servers: dict[str, Slots] = {}
    for backend in desired.backends:
        old_layout = old_layouts.get(backend.name)
        growth = backend.settings.runtime_growth
        slots, needed = assign_slots(
            old_servers.get(backend.name, ()),
            backend.endpoints,
            desired.settings.slots_min,
            exact=growth,
        )
        # Slots added at run time stay undeclared until a reload (declared()).
        count = old_layout.slots if old_layout is not None else len(slots)
        layouts[backend.name] = BackendLayout(backend.name, backend.settings, count)
        servers[backend.name] = slots
        if old_layout is None:
            if current is not None:
                reasons.append(f"backend {backend.name} added")
        elif old_layout.settings != backend.settings:
            reasons.append(f"backend {backend.name} settings changed")
        elif needed and not growth:
            reasons.append(
                f"backend {backend.name} needs {len(backend.endpoints)} server slots, "
                f"has {old_layout.slots}"
            )

    pool = _passthrough_pool(current, desired)
    reasons.extend(pool.reasons)
    servers.update(pool.servers)

    # Policies by name: a policy with its own address lists is named by its
    # owner (AccessPolicy.owner), so new list content under a known name is
    # a runtime swap of its ACL files (ReplaceAddressList), not a new policy.
    old_policies = {p.name: p for p in current.structure.policies} if current else {}
    policies = {p.name: p for p in desired.policies}
    for name in sorted(set(policies) - set(old_policies)):
        if current is not None:
            reasons.append(f"access policy {name} added")

    # The frontend has the rules of an optional map only while it has
    # entries (Structure.frontend_maps): a map's first entries need its rules.
    rules = frontend_maps(desired.maps, has_other_scopes(desired.routes))
    if current is not None:
        missing = sorted(set(rules) - set(current.structure.frontend_maps))
        if missing:
            reasons.append(f"frontend rules for the {', '.join(missing)} maps added")
    # The route-policy rules (Structure.route_policies): the first route
    # naming a policy reloads with them, whatever else changed.
    route_policies = desired.settings.default_policy is not None or names_policy(desired.maps)
    if current is not None and route_policies and not current.structure.route_policies:
        reasons.append("frontend rules for routes' access policies added")
    if desired.ssl_passthrough and "redirect" not in rules:
        # A passthrough host's plain HTTP is redirected to https (translate):
        # with the rules there from the start (turning passthrough on
        # reloads), its hosts come and go by map.
        rules = tuple(sorted((*rules, "redirect")))

    # A backend no route uses any more is harmless: keep it (all slots free)
    # until something else forces a reload, so deleting an Ingress is free.
    # The same holds for an access policy no route names any more, and for
    # the rules of a map that has lost its entries.
    leftovers = sorted(set(old_layouts) - set(layouts))
    if not reasons:
        for name in leftovers:
            layouts[name] = old_layouts[name]
            servers[name] = tuple(None for _ in old_servers.get(name, ()))
        policies = {**old_policies, **policies}
        if current is not None:
            rules = current.structure.frontend_maps
            route_policies = current.structure.route_policies

    target = AppliedState(
        structure=Structure(
            settings=desired.settings,
            backends=tuple(layouts[name] for name in sorted(layouts)),
            default_backend=desired.default_backend,
            policies=tuple(sorted(policies.values())),
            upstream_tls=desired.upstream_tls,
            passthrough=pool.layouts,
            host_tls=desired.host_tls,
            frontend_maps=rules,
            route_policies=route_policies,
        ),
        servers=servers,
        maps=desired.maps,
        certificates=desired.certificates,
        sni=pool.sni,
    )
    if reasons:
        target = declared(target)
        return Plan(target, tuple(reasons), plan_full_sync(target))
    assert current is not None
    if always_reload and target != current:
        target = declared(target)
        return Plan(target, ("reload on every change",), plan_full_sync(target))
    operations: list[Operation] = []
    operations.extend(_client_ca_changes(current.structure.host_tls, target.structure.host_tls))
    operations.extend(_certificate_changes(current.certificates, target.certificates))
    layouts_now = {layout.name: layout for layout in target.structure.backends}
    pool_now = {layout.name: layout for layout in target.structure.passthrough}
    for name in sorted(target.servers):
        layout = layouts_now.get(name) or pool_now[name]
        operations.extend(
            _slot_changes(
                layout, current.servers.get(name, ()), target.servers[name], pool=name in pool_now
            )
        )
    operations.extend(_address_list_changes(old_policies, policies))
    for (name, entries), (_, before) in zip(target.maps.files(), current.maps.files(), strict=True):
        if entries != before:
            operations.append(ReplaceMap(name, entries))
    if target.sni != current.sni:
        # After the servers (apply runs server commands first): a new host's
        # pool backend has its pods before the SNI map sends it traffic, and
        # a removed host's servers are gone before the entry is.
        operations.append(ReplaceMap(PASSTHROUGH_MAP, target.sni))
    return Plan(target, (), tuple(operations))


def plan_endpoints(
    current: AppliedState,
    desired: DesiredState,
    changed: Sequence[Backend],
    *,
    budget: Budget | None = None,
    layouts: Mapping[str, BackendLayout] | None = None,
) -> Plan | None:
    """:func:`plan` for the endpoint fast path, in time proportional to ``changed``.

    Only valid when ``current`` is what HAProxy runs for the desired state
    that ``desired`` was refreshed from (:func:`translate.refresh_endpoints`),
    and ``changed`` are the backends whose endpoints differ: then every other
    backend's slots, every map, certificate and setting would come out of
    :func:`plan` unchanged, and walking 20,000 backends to find that out cost
    70-290 ms per endpoint event at 10k Ingresses. A backend short of slots
    gets new ones at run time (AddServer). None when that is not possible (an
    unknown backend, ``balance source``, checked slots past ``budget``): the
    full plan decides, and it reloads. ``layouts``: ``current.structure``'s
    backend layouts by name, if the caller keeps them (else a walk of every
    backend finds the changed ones).
    """
    servers = dict(current.servers)  # a copy in C: ~0.1 ms for 10,000 backends
    operations: list[AddServer | SetServer] = []
    # Layouts as HAProxy runs them: with checks shed (plan) there are no
    # twins, whatever the desired backend asks.
    if layouts is None:
        names = {backend.name for backend in changed}
        layouts = {
            layout.name: layout for layout in current.structure.backends if layout.name in names
        }
    grew = False
    for backend in changed:
        before = current.servers.get(backend.name)
        layout = layouts.get(backend.name)
        if before is None or layout is None:
            return None
        growth = layout.settings.runtime_growth
        slots, grown = assign_slots(
            before, backend.endpoints, desired.settings.slots_min, exact=growth
        )
        if len(slots) != len(before) and not growth:
            return None
        grew = grew or grown
        servers[backend.name] = slots
        operations.extend(_slot_changes(layout, before, slots))
    # Per backend and slot, an AddServer before its SetServer.
    operations.sort(key=lambda op: (op.backend, op.slot, isinstance(op, SetServer)))
    target = dataclasses.replace(current, servers=servers)
    shedding = grew and budget is not None and not current.structure.checks_shed
    if shedding and budget is not None and budget.needed(target) > budget.limit:
        return None  # past the descriptor limit: plan() sheds checks (a reload)
    return Plan(target, (), tuple(operations))


# The map of passthrough hosts (AppliedState.sni): SNI → pool backend. (The
# maps/sni.map of RoutingMaps is another: host → client CA.)
PASSTHROUGH_MAP = "passthrough"
# Pool backends allocated when passthrough is turned on: the first hosts
# cost no reload.
PASSTHROUGH_POOL_MIN = 4


@dataclass(frozen=True)
class _Pool:
    layouts: tuple[BackendLayout, ...]
    servers: dict[str, Slots]
    sni: tuple[tuple[str, str], ...]
    reasons: tuple[str, ...]


def _passthrough_pool(current: AppliedState | None, desired: DesiredState) -> _Pool:
    """The passthrough pool: which backend serves each host, and its slots.

    As server slots do for pods: a host keeps its pool backend for as long
    as it exists; a new host takes a backend that was already free before
    this plan (preferring one with enough slots for its pods), never one
    freed by this plan: the runtime commands re-address servers before the
    SNI map changes, so a just-freed backend could briefly carry the old
    host's connections to the new host's pods. Only when no such backend is
    left does the pool grow, which reloads (then everything is set afresh).
    """
    if not desired.ssl_passthrough:
        turned_off = current is not None and current.structure.ssl_passthrough
        return _Pool((), {}, (), ("ssl passthrough turned off",) if turned_off else ())
    minimum = desired.settings.slots_min
    settings = desired.settings.backend
    old = {b.name: b for b in current.structure.passthrough} if current else {}
    old_servers: Mapping[str, Slots] = current.servers if current else {}
    old_sni = dict(current.sni) if current else {}
    hosts = {p.host: p for p in desired.passthrough}
    reasons: list[str] = []
    if current is not None and not old:
        reasons.append("ssl passthrough turned on")
    assigned = {h: b for h, b in old_sni.items() if h in hosts and b in old}
    taken = set(old_sni.values())
    free = [b for b in old if b not in taken]  # free before this plan, in pool order
    just_freed = [b for b in old if b in taken and b not in assigned.values()]

    def place(candidates: list[str], host: str) -> bool:
        wanted = len(hosts[host].endpoints)
        fitting = [b for b in candidates if old[b].slots >= wanted]
        if not (fitting or candidates):
            return False
        pick = (fitting or candidates)[0]
        candidates.remove(pick)
        assigned[host] = pick
        return True

    pending = [h for h in sorted(hosts) if h not in assigned]
    unplaced = [h for h in pending if not place(free, h)]
    size = len(old)
    if unplaced:
        if old:
            reasons.append(
                f"passthrough pool exhausted: {len(hosts)} hosts, {len(old)} pool backends"
            )
        # A reload sets every server and the map at once: a just-freed backend is safe.
        unplaced = [h for h in unplaced if not place(just_freed, h)]
        size = max(PASSTHROUGH_POOL_MIN, slot_count(len(hosts)), size + len(unplaced))
    size = max(size, PASSTHROUGH_POOL_MIN)
    names = [passthrough_backend_name(i) for i in range(1, size + 1)]
    fresh = iter(b for b in names if b not in old)
    for host in unplaced:
        assigned[host] = next(fresh)
    host_of = {b: h for h, b in assigned.items()}
    layouts = []
    servers: dict[str, Slots] = {}
    for name in names:
        before = old_servers.get(name, ())
        served = host_of.get(name)
        if served is not None and old_sni.get(served) != name:
            before = tuple(None for _ in before)  # another host's slots: start afresh
        endpoints = hosts[served].endpoints if served is not None else ()
        growth = settings.runtime_growth
        slots, grown = assign_slots(before, endpoints, minimum, exact=growth)
        if served is None:
            slots = tuple(None for _ in slots)
        servers[name] = slots
        layout = old.get(name)
        # Slots added at run time stay undeclared until a reload (declared()).
        count = len(slots) if layout is None else layout.slots
        layouts.append(BackendLayout(name, settings, count))
        if layout is None:
            continue
        if layout.settings != settings:
            reasons.append(f"passthrough backend {name} settings changed")
        elif grown and not growth:
            reasons.append(
                f"passthrough backend {name} ({served}) needs {len(endpoints)} server slots, "
                f"has {layout.slots}"
            )
    if current is not None and old and len(names) > len(old) and not unplaced:
        reasons.append(f"passthrough pool grown to {len(names)} backends")
    return _Pool(tuple(layouts), servers, tuple(sorted(assigned.items())), tuple(reasons))


def assign_slots(
    current: Slots, endpoints: Sequence[Endpoint], minimum: int, *, exact: bool = False
) -> tuple[Slots, bool]:
    """Place endpoints in slots; returns the slots and whether they had to grow.

    An endpoint keeps its slot for as long as it exists, so a state change is one
    runtime command and sticky sessions stay on their server. New endpoints go
    to slots that were already free before slots freed just now: a just-freed
    slot may still hold the old pod's idle connections.

    ``exact``: slots can be added at run time (BackendSettings.runtime_growth),
    so there are exactly as many as needed (at least ``minimum``): a free
    slot costs HAProxy ~5.4 KiB and, checked, a file descriptor. Otherwise
    growth reloads, and the slots grow ahead (slot_count).
    """
    if current and {id(s) for s in current if s is not None} == {id(e) for e in endpoints}:
        # The slots hold these very endpoints, and only them (a full sync of
        # an unchanged Service: translate's ObjectMemo gives the same objects
        # again). Below, each slot would get its own endpoint back and none
        # would be pending: the same slots, without the work.
        return current, False
    wanted = {endpoint.key: endpoint for endpoint in endpoints}
    slots: list[Endpoint | None] = [
        wanted.get(slot.key) if slot is not None else None for slot in current
    ]
    placed = {slot.key for slot in slots if slot is not None}
    pending = [endpoint for endpoint in endpoints if endpoint.key not in placed]
    free = [i for i, slot in enumerate(current) if slot is None]
    free += [i for i, slot in enumerate(current) if slot is not None and slots[i] is None]
    grown = len(pending) > len(free)
    if grown or not current:
        size = max(minimum, len(endpoints) if exact else slot_count(len(endpoints)))
        free += list(range(len(current), size))
        slots.extend([None] * (size - len(current)))
    for endpoint, index in zip(pending, free, strict=False):
        slots[index] = endpoint
    return tuple(slots), grown and bool(current)


# Past this many slots a backend grows by a quarter, not by doubling: every
# slot costs HAProxy memory (and a file descriptor with health checks), and
# `haproxy -c` is super-linear in servers per backend (2k -> 16k servers:
# 0.07 -> 4.35 s), so 10,000 endpoints should not become 16,384 slots.
DOUBLING_LIMIT = 256
GROWTH_STEP = 16


def slot_count(endpoints: int) -> int:
    """Slots for ``endpoints``: the next power of two while small, then +25 %."""
    if endpoints <= DOUBLING_LIMIT:
        return 1 << max(0, endpoints - 1).bit_length()
    wanted = endpoints + endpoints // 4
    return -(-wanted // GROWTH_STEP) * GROWTH_STEP


def _slot_changes(
    layout: BackendLayout, current: Slots, target: Slots, *, pool: bool = False
) -> list[AddServer | SetServer]:
    """The commands from ``current`` to ``target`` slots; new slots are added first.

    ``pool``: a passthrough pool backend, whose slots have no twins. A
    backend reaching two slots gets the twins of the slots it had
    (BackendSettings.twins_at), set afresh.
    """
    if target is current:
        return []  # same length, so no new twins either (assign_slots' fast path)
    changes: list[AddServer | SetServer] = []
    settings = layout.settings
    twin = not pool and settings.twins_at(len(target))
    twinned = twin and not settings.twins_at(len(current))
    # Twins haproxy.cfg declares track their slot; the others need its state too.
    declared_twins = settings.twins_at(layout.slots)
    for index, endpoint in enumerate(target):
        previous = current[index] if index < len(current) else None
        if index >= len(current):
            changes.append(AddServer(layout.name, index + 1, settings, endpoint, pool, twin))
        elif twinned:
            changes.append(
                AddServer(layout.name, index + 1, settings, endpoint, twin=True, only_twin=True)
            )
            previous = None  # the new twin needs the address too
        if endpoint != previous or (twinned and endpoint is None):
            changes.append(
                SetServer(
                    layout.name,
                    index + 1,
                    endpoint,
                    previous,
                    twin,
                    twin_state=twin and (index >= layout.slots or not declared_twins),
                )
            )
    return changes


def declared(target: AppliedState) -> AppliedState:
    """``target`` as a reload runs it: haproxy.cfg declares every slot.

    A reload drops the servers added at run time, so the configuration
    declares them. Free slots past the last filled one (and past
    ``server-slots``) are left out where slots can be added back at run
    time: a scaled-down backend gives its memory back at the next reload.
    """
    minimum = target.structure.settings.slots_min
    servers = dict(target.servers)
    changed = False

    def declare(layouts: tuple[BackendLayout, ...]) -> tuple[BackendLayout, ...]:
        nonlocal changed
        result = []
        for layout in layouts:
            slots = servers.get(layout.name, ())
            if layout.settings.runtime_growth:
                keep = len(slots)
                while keep > minimum and slots[keep - 1] is None:
                    keep -= 1
                if keep != len(slots):
                    slots = servers[layout.name] = slots[:keep]
                    changed = True
            if layout.slots != len(slots):
                changed = True
                result.append(dataclasses.replace(layout, slots=len(slots)))
            else:
                result.append(layout)
        return tuple(result)

    backends = declare(target.structure.backends)
    passthrough = declare(target.structure.passthrough)
    if not changed:
        # The very object: the reconciler recognises what HAProxy runs by
        # identity (sync.Reconciler._basis), and a reload applies this.
        return target
    structure = dataclasses.replace(target.structure, backends=backends, passthrough=passthrough)
    return dataclasses.replace(target, structure=structure, servers=servers)


def plan_full_sync(target: AppliedState) -> tuple[Operation, ...]:
    """Set every slot, whatever the state file restored (after a reload, on adoption).

    A slot past what haproxy.cfg declares was added at run time: it is added
    again first ("already exists" counts as done), for a HAProxy that a
    restart left without it.
    """
    layouts = {layout.name: layout for layout in target.structure.backends}
    pool = {layout.name: layout for layout in target.structure.passthrough}
    operations: list[Operation] = []
    for name in sorted(target.servers):
        layout = layouts.get(name) or pool[name]
        slots = target.servers[name]
        settings = layout.settings
        twin = name not in pool and settings.twins_at(len(slots))
        declared_twins = settings.twins_at(layout.slots)
        for index, endpoint in enumerate(slots):
            dynamic = index >= layout.slots
            if dynamic:
                operations.append(
                    AddServer(name, index + 1, settings, endpoint, name in pool, twin)
                )
            elif twin and not declared_twins:
                operations.append(
                    AddServer(name, index + 1, settings, endpoint, twin=True, only_twin=True)
                )
            operations.append(
                SetServer(
                    name,
                    index + 1,
                    endpoint,
                    twin=twin,
                    twin_state=twin and (dynamic or not declared_twins),
                )
            )
    return tuple(operations)


def _address_list_changes(
    current: Mapping[str, AccessPolicy], target: Mapping[str, AccessPolicy]
) -> list[ReplaceAddressList]:
    """The lists of policies kept under their name whose networks changed."""
    changes = []
    for name in sorted(set(current) & set(target)):
        before, after = current[name], target[name]
        if before.allow_sources != after.allow_sources:
            changes.append(ReplaceAddressList(name, False, after.allow_sources))
        if before.deny_sources != after.deny_sources:
            changes.append(ReplaceAddressList(name, True, after.deny_sources))
    return changes


def _handshake_certificates(
    certificates: Sequence[Certificate], host_tls: Sequence[HostTLS]
) -> dict[str, str]:
    """Each host with a crt-list line of its own → the certificate on it ("": the default).

    The runtime API replaces a certificate's lines, not the default
    certificate's (config.crt_list writes those): a host moving between
    the two would keep a stale line, or get two for one SNI.
    """
    if not host_tls:
        return {}
    by_host = {host: cert.name for cert in certificates for host in cert.hosts}
    return {tls.host: by_host.get(tls.host, "") for tls in host_tls}


def _client_ca_changes(current: Sequence[HostTLS], target: Sequence[HostTLS]) -> list[PutClientCA]:
    """The CA files whose content changed while their crt-list lines did not."""
    before = {tls.ca_name: tls for tls in current if tls.secret}
    changes: dict[str, PutClientCA] = {}
    for tls in target:
        old = before.get(tls.ca_name) if tls.secret else None
        if old is not None and (old.ca, old.crl) != (tls.ca, tls.crl):
            changes[tls.ca_name] = PutClientCA(tls.ca_name, tls.ca, tls.crl)
    return [changes[name] for name in sorted(changes)]


def _certificate_changes(
    current: Sequence[Certificate], target: Sequence[Certificate]
) -> list[Operation]:
    old = {cert.name: cert for cert in current}
    new = {cert.name: cert for cert in target}
    changes: list[Operation] = [RemoveCertificate(name) for name in sorted(set(old) - set(new))]
    for name in sorted(new):
        cert = new[name]
        before = old.get(name)
        if before is None:
            changes.append(PutCertificate(cert, loaded=False, hosts_changed=True))
        elif before.pem != cert.pem or before.hosts != cert.hosts:
            changes.append(
                PutCertificate(cert, loaded=True, hosts_changed=before.hosts != cert.hosts)
            )
    return changes
