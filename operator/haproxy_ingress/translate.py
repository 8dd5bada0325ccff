"""Cluster view → desired state (pure: no I/O, no clock, no globals).

One processor per kind, as in Contour's DAG builder: ingress classes decide which
Ingresses are ours; each Ingress becomes routes and TLS claims; Services and
EndpointSlices become backends; TLS Secrets become certificates. Anything that
cannot be served as written becomes a :class:`Problem` on its object, and only
that object (or that rule) is left out.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import defaultdict
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from haproxy_ingress import auth, headers, regex, snippets, validate
from haproxy_ingress.canonical import canonical_path
from haproxy_ingress.cluster import WATCHED, ClusterView, KubeObject
from haproxy_ingress.ingress_class import classifier
from haproxy_ingress.memo import ByIdentity
from haproxy_ingress.model import (
    AccessPolicy,
    Backend,
    BackendSettings,
    Canary,
    Certificate,
    ClientAuth,
    DesiredState,
    Endpoint,
    ExternalAuth,
    GlobalSettings,
    HostTLS,
    ObjectRef,
    Passthrough,
    PathType,
    Problem,
    RateLimit,
    Route,
    RouteOptions,
    ServerState,
    ServiceRef,
    TranslateOptions,
    UpstreamTLS,
    certificate_name,
)
from haproxy_ingress.registry import CAPTURE, NGINX_PREFIX
from haproxy_ingress.routing import route_key, routing_maps
from haproxy_ingress.settings import (
    ANNOTATION_PREFIX,
    GLOBAL_ACCESS_REFUSED,
    IngressSettings,
    SettingsMemo,
    parse_configmap,
)
from haproxy_ingress.tls import (
    CertificateCache,
    bundle_intermediates,
    ca_from_secret,
    certificate_from_secret,
    crl_from_secret,
)
from haproxy_ingress.validate import Invalid

# Lets nobody in: the paths of an Ingress whose access rule cannot be honoured.
DENY_ALL = AccessPolicy(())
EVERYONE = ("0.0.0.0/0", "::/0")  # an allow-list that lets every address in
DENIED_REASON = (
    "the Ingress has an access rule but cannot be served as written; "
    "its paths answer 403 until it is fixed"
)
NO_OPTIONS = RouteOptions()
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

_T = TypeVar("_T")


class ObjectMemo:
    """What a translation made of each Ingress, each Service with its EndpointSlices,
    and which objects' metadata passed.

    A full sync at 10k Ingresses re-parses 10k Ingresses and 30k endpoints
    that are the very objects the last one parsed, but for the one that
    changed: half of a warm translation. By object identity
    (:class:`~haproxy_ingress.memo.ByIdentity`), with the parse's other inputs
    in the key, so a hit is what parsing again would give. A backend kept so
    is the very object of the last translation, endpoints included, which
    lets plan keep its slots at a glance (plan.assign_slots). Owned by the
    reconciler (never module state), swept after each full translation.
    """

    __slots__ = ("backends", "endpoints", "ingresses", "named")

    def __init__(self) -> None:
        self.ingresses: ByIdentity[_ParsedIngress] = ByIdentity()
        self.endpoints: ByIdentity[tuple[tuple[Endpoint, ...], tuple[Problem, ...]]] = ByIdentity()
        self.backends: ByIdentity[tuple[Backend, tuple[Problem, ...]]] = ByIdentity()
        # Per kind, the objects whose metadata the last translation found well
        # formed, by id (each held, so that no id is reused while it is here).
        self.named: dict[str, dict[int, KubeObject]] = {}

    def sweep(self) -> None:
        """Forget the objects the last full translation did not read."""
        self.ingresses.sweep()
        self.endpoints.sweep()
        self.backends.sweep()


def translate(
    view: ClusterView,
    options: TranslateOptions,
    *,
    now: datetime.datetime | None = None,
    certificate_cache: CertificateCache | None = None,
    settings_memo: SettingsMemo | None = None,
    object_memo: ObjectMemo | None = None,
) -> DesiredState:
    """The whole desired state of HAProxy for this cluster view.

    ``now`` (the caller's clock: translate reads none) enables warnings for
    certificates outside their validity period; they are still served.
    ``certificate_cache`` memoises the parsing of TLS Secrets across calls (the
    result is the same with or without it); ``settings_memo`` likewise the
    parsing of annotations (without one, each distinct set is parsed once per call),
    ``object_memo`` that of Ingresses, Services with their EndpointSlices and
    object names (the objects of ``view`` must then never be modified, as the
    controller's are not).
    """
    settings, configured_default, problems = parse_configmap(view.configmap)
    if settings_memo is None:  # (not `or`: an empty memo is falsy)
        settings_memo = SettingsMemo()
    view = _well_named(view, problems, object_memo)
    services = _by_name(view.services)
    slices = _slices_by_service(view.endpoint_slices)
    secrets = _by_name(view.secrets)

    left_out = classifier(view.ingress_classes, options)
    ingresses = sorted((ing for ing in view.ingresses if left_out(ing) is None), key=_age_key)
    routes: list[Route] = []
    claims: dict[tuple[str, str, PathType], ObjectRef] = {}
    tls_asks: list[_TlsAsk] = []
    service_refs: dict[ServiceRef, ObjectRef] = {}
    tuning: dict[ServiceRef, tuple[BackendSettings, ObjectRef]] = {}
    redirects: set[str] = set()
    server_snippets: list[snippets.ServerSnippet] = []
    policies: set[AccessPolicy] = set()
    if settings.default_policy is not None:
        policies.add(settings.default_policy)
    canaries: list[tuple[ObjectRef, IngressSettings, _ParsedIngress]] = []
    tls_hosts: set[str] = set()
    header_sets = _header_sets(view, options)
    upstream_tls: dict[str, UpstreamTLS] = {}
    # Per host, the oldest claim of a CA (auth-tls-secret) and of ssl-ciphers.
    ca_claims: dict[str, tuple[HostTLS, ObjectRef]] = {}
    cipher_claims: dict[str, tuple[str, ObjectRef]] = {}
    denied_hosts: list[tuple[ObjectRef, str]] = []
    cas: dict[str, HostTLS] = {}  # by ca_name
    default_ref = configured_default or options.default_backend
    # server-alias and from-to-www-redirect: granted once every Ingress's
    # hosts are known (_more_names).
    names: list[_MoreNames] = []
    # ssl-passthrough: host → the oldest Ingress's grant (host, Service port),
    # and host → the oldest Ingress with a route for it (Ingresses come oldest first).
    passed: dict[str, _PassthroughAsk] = {}
    served_by: dict[str, ObjectRef] = {}
    for ingress in ingresses:
        source = _ref("Ingress", ingress)
        try:
            annotations = validate.mapping(
                (ingress.get("metadata") or {}).get("annotations"), "metadata.annotations"
            )
        except Invalid as error:
            problems.append(Problem(source, error.field, error.reason, "Rejected"))
            continue
        asked = settings_memo.parse(annotations, settings)
        problems.extend(Problem(source, n.field, n.reason, n.event) for n in asked.notices)
        errors = list(asked.errors)
        client = _client_tls(asked, source, secrets=secrets, errors=errors, annotations=annotations)
        if client is not None:
            cas.setdefault(client[1].ca_name, client[1])
        if asked.canary is not None:
            parsed_canary = _canary_ingress(ingress, source, asked, problems)
            if parsed_canary is not None:
                canaries.append((source, asked, parsed_canary))
            continue
        policy = _access_policy(
            asked,
            source,
            secrets=secrets,
            errors=errors,
            problems=problems,
            annotations=annotations,
            reserved_ports=options.reserved_ports,
            client_auth=client[0] if client is not None else None,
            global_auth=settings.global_auth,
        )
        backend_settings, upstream, tls_failed = _upstream_tls(
            asked.backend, source, secrets, problems
        )
        if upstream is not None:
            upstream_tls.setdefault(upstream.secret, upstream)
        if tls_failed:
            # Fail closed: never to the pods without the verification asked for.
            asked = dataclasses.replace(
                asked, options=dataclasses.replace(asked.options, unavailable=True)
            )
        # A bad access rule is no rule: nothing below may serve it.
        if errors and asked.access_rule:
            policy = None
        try:
            route_options = _error_pages(
                _custom_headers(
                    asked,
                    source,
                    header_sets,
                    settings=settings,
                    options=options,
                    problems=problems,
                ),
                asked,
                source,
                services=services,
                default_ref=default_ref,
                service_refs=service_refs,
                problems=problems,
            )
            parsed = _parsed_ingress(
                ingress, policy.name if policy else "", route_options, asked.use_regex, object_memo
            )
        except Invalid as error:
            if not asked.access_rule:
                problems.extend(
                    Problem(source, e.field, e.reason, "Rejected") for e in [*errors, error]
                )
                continue
            # It guards its paths: those that parse are kept and deny
            # everyone (below), else they would fall through to another rule.
            salvaged: list[Invalid] = []
            try:
                parsed = _parse_ingress(ingress, regex=asked.use_regex, salvage=salvaged)
            except Invalid:  # the spec itself is unreadable: no path to keep
                problems.extend(
                    Problem(source, e.field, e.reason, "Rejected") for e in [*errors, error]
                )
                continue
            errors.extend(salvaged or [error])
        if asked.client_tls is not None and any(not r.host for r, _ in parsed.routes):
            errors.append(
                Invalid(
                    _annotation("auth-tls-secret", annotations),
                    "needs a host on every rule: client certificates are asked for by host (SNI)",
                )
            )
        if asked.access.url is not None:
            errors.extend(
                _auth_url_hosts(
                    asked.access.url,
                    [*(r.host for r, _ in parsed.routes), *asked.aliases],
                    _annotation("auth-url", annotations),
                )
            )
        if errors:
            problems.extend(Problem(source, e.field, e.reason, "Rejected") for e in errors)
            if not asked.access_rule:
                continue
            # Fail closed: an Ingress that guards its paths but cannot be
            # served as written keeps its paths, and they deny everyone; left
            # out, they would fall through to another rule (a catch-all "/").
            problems.append(Problem(source, "metadata.annotations", DENIED_REASON, "AccessDenied"))
            policy = DENY_ALL
            parsed = _ParsedIngress(
                routes=tuple(
                    (dataclasses.replace(r, policy=policy.name, options=NO_OPTIONS), s)
                    for r, s in parsed.routes
                )
            )
            backend_settings = settings.backend
        accepted: list[Route] = []
        ruled = frozenset(r.host for r, _ in parsed.routes if r.host)
        if asked.ssl_passthrough:
            granted = _grant_passthrough(
                _passthrough_ask(
                    asked,
                    source,
                    parsed,
                    annotations,
                    enabled=options.ssl_passthrough,
                    refused=bool(errors),
                    problems=problems,
                ),
                served_by,
                passed,
                problems,
            )
            if granted:
                # A TCP connection has no path: the host's rules are the grant.
                # Plain HTTP for it is only redirected to https (ssl-redirect).
                parsed = dataclasses.replace(
                    parsed, routes=tuple((r, s) for r, s in parsed.routes if r.host not in granted)
                )
                if asked.ssl_redirect:
                    redirects.update(granted)
        exempt = settings.no_tls_redirect_locations
        for written, service in parsed.routes:
            route = _plain_http(written, asked.ssl_redirect, exempt)
            if not _service_usable(service, services, source, route, problems):
                continue
            key = route_key(route)
            owner = claims.setdefault(key, source)
            if owner != source:
                problems.append(
                    Problem(
                        source,
                        "spec.rules",
                        f"host {route.host or '*'!r} path {route.path!r} ({route.path_type}) "
                        f"is already served by Ingress {owner.namespace}/{owner.name}",
                        "Conflict",
                    )
                )
                continue
            routes.append(route)
            accepted.append(route)
            served_by.setdefault(route.host, source)
            if policy is not None:
                policies.add(policy)
            service_refs.setdefault(service, source)
            if policy is DENY_ALL:
                continue  # its paths deny everyone: no say in the Service's tuning
            tuned, tuned_by = tuning.setdefault(service, (backend_settings, source))
            # Identity first: dataclass equality compares every field, even of one object.
            if tuned is not backend_settings and tuned != backend_settings and tuned_by != source:
                problems.append(
                    Problem(
                        source,
                        "metadata.annotations",
                        f"Service {service.namespace}/{service.name} port {service.port} is "
                        f"tuned differently by Ingress {tuned_by.namespace}/{tuned_by.name}, "
                        "whose settings apply",
                        "Conflict",
                    )
                )
        if policy is not DENY_ALL:
            _claim_host_tls(
                source,
                sorted({r.host for r in accepted if r.host}),
                client[1] if client is not None else None,
                asked.ssl_ciphers,
                ca_claims=ca_claims,
                cipher_claims=cipher_claims,
                denied=denied_hosts,
                problems=problems,
            )
        # Which of its spec.tls hosts it may have is known once every
        # Ingress's rules are (_own_tls).
        tls_asks.append(_TlsAsk(source, tuple(parsed.tls), ruled, asked.ssl_redirect))
        own_tls = {host for _, hosts in parsed.tls for host in hosts}
        if asked.server_snippet and policy is not DENY_ALL:
            server_snippets.append(
                snippets.ServerSnippet(
                    source,
                    asked.server_snippet_field,
                    asked.server_snippet,
                    asked.server_snippet_answers,
                )
            )
        if not errors and (asked.aliases or asked.www_redirect):
            names.append(
                _MoreNames(
                    source,
                    accepted,
                    asked.aliases,
                    asked.www_redirect,
                    tls=bool(own_tls & {r.host for r in accepted}),
                    redirect=asked.ssl_redirect,
                )
            )

    www = _more_names(
        names,
        routes,
        owned={host: ask.source for host, ask in passed.items()},
        claims=claims,
        redirects=redirects,
        tls_hosts=tls_hosts,
        problems=problems,
    )
    tls_claims = _own_tls(
        tls_asks, routes, passed, redirects=redirects, tls_hosts=tls_hosts, problems=problems
    )
    # A granted server-alias takes the CA of the routes it copies: its own
    # crt-list line must ask for the certificate they check.
    _claim_alias_cas(routes, policies, cas, ca_claims)

    passthrough = _passthrough(
        passed,
        routes,
        services=services,
        slices=slices,
        settings=settings.backend,
        problems=problems,
    )
    routes = _attach_canaries(
        routes,
        canaries,
        services=services,
        service_refs=service_refs,
        tuning=tuning,
        defaults=settings.backend,
        problems=problems,
    )
    if denied_hosts:
        routes = _deny_routes(routes, set(denied_hosts))
        # Only what a route (or the ConfigMap) still names: a denied Ingress's
        # policy would name a CA no crt-list line carries.
        named = {route.policy for route in routes} | {DENY_ALL.name}
        kept = {p for p in policies if p.name in named or p is settings.default_policy}
        policies = kept | {DENY_ALL}
    if any(p.event == GLOBAL_ACCESS_REFUSED for p in problems):
        # The ConfigMap guards every route with a rule this controller cannot
        # honour: every route, the unrouted requests and passthrough deny.
        routes = [
            dataclasses.replace(route, policy=DENY_ALL.name, options=NO_OPTIONS) for route in routes
        ]
        policies = {DENY_ALL}
        settings = dataclasses.replace(settings, default_policy=DENY_ALL)
        server_snippets = []
        passthrough = ()  # terminated here, where the deny applies
    routes, snippet_problems, displaced = snippets.with_server_snippets(routes, server_snippets)
    problems.extend(snippet_problems)
    if displaced:
        routes = _deny_routes(routes, displaced)
        policies.add(DENY_ALL)
        problems.extend(
            Problem(source, "metadata.annotations", DENIED_REASON, "AccessDenied")
            for source in sorted({source for source, _ in displaced})
        )
    if default_ref is not None:
        service_refs.setdefault(
            default_ref,
            ObjectRef("ConfigMap", options.configmap_namespace, options.configmap_name),
        )
    backends = tuple(
        _backend(
            ref,
            services=services,
            slices=slices,
            settings=tuning[ref][0] if ref in tuning else settings.backend,
            problems=problems,
            reported_on=reported_on,
            memo=object_memo,
        )
        for ref, reported_on in sorted(service_refs.items())
    )
    certificates, owners = _certificates(tls_claims, secrets, problems, now, certificate_cache)
    certificates, host_tls = _sni_under_wildcards(
        certificates, owners, _host_tls(ca_claims, cipher_claims), routes
    )
    return DesiredState(
        settings=settings,
        backends=backends,
        default_backend=default_ref.backend_name if default_ref else None,
        routes=tuple(sorted(routes)),
        maps=dataclasses.replace(
            routing_maps(
                routes,
                redirects,
                tls=tls_hosts,
                www=www,
                headers=_global_headers(settings, header_sets, options, problems),
            ),
            deny=tuple((network, "1") for network in settings.deny_sources),
            sni=sni_entries(certificates, host_tls),
        ),
        certificates=certificates,
        problems=tuple(sorted(set(problems))),
        policies=tuple(sorted(policies)),
        upstream_tls=tuple(
            sorted(
                u
                for u in upstream_tls.values()
                if any(b.settings.proxy_ssl_secret == u.secret for b in backends)
            )
        ),
        ssl_passthrough=options.ssl_passthrough,
        passthrough=passthrough,
        host_tls=host_tls,
    )


@dataclass(frozen=True)
class Refreshed:
    """What :func:`refresh_services` re-derived."""

    desired: DesiredState
    # The backends whose servers were re-derived (new objects, in the order
    # of ``desired.backends``): the only ones whose slots may need planning.
    backends: tuple[Backend, ...]


class _Problems:
    """One problems tuple's problems by source, and as a set (built once per tuple)."""

    __slots__ = ("by_source", "ordered", "problems", "set")

    def __init__(self, problems: tuple[Problem, ...]) -> None:
        self.problems = problems
        self.set = frozenset(problems)
        # Sorted without duplicates, as translate leaves it: then it is its own result.
        self.ordered = all(problems[i] < problems[i + 1] for i in range(len(problems) - 1))
        by_source: dict[ObjectRef, set[Problem]] = {}
        for problem in problems:
            by_source.setdefault(problem.source, set()).add(problem)
        self.by_source = by_source


def _places_by_service(
    items: Sequence[Backend | Passthrough],
) -> dict[tuple[str, str], tuple[int, ...]]:
    places: dict[tuple[str, str], list[int]] = {}
    for place, item in enumerate(items):
        places.setdefault((item.service.namespace, item.service.name), []).append(place)
    return {key: tuple(found) for key, found in places.items()}


def _places_of(
    table: Mapping[tuple[str, str], tuple[int, ...]],
    items: Sequence[Backend | Passthrough],
    keys: Collection[tuple[str, str]],
) -> list[int] | None:
    """The places ``table`` gives for ``keys``, if ``items`` has those Services there."""
    places = sorted(place for key in keys for place in table.get(key, ()))
    for place in places:
        service = items[place].service
        if (service.namespace, service.name) not in keys:
            return None
    return places


class BackendIndex:
    """Where each Service's backends and passthrough hosts sit in a desired state.

    The fast path re-derives the servers of a few Services; finding their
    backends among all of them was a walk of every backend (10,000 at 10,000
    Ingresses) on every endpoint event. A refresh keeps every backend in its
    place (same names, same order) and only replaces some, so the places
    found once, after a full translation, hold for every state refreshed
    from it: :meth:`fits` checks the counts, each lookup that the places it
    gives hold the asked Services' backends, and :func:`refresh_services`
    walks as before when they do not. It also keeps the last problems tuple
    it was asked about by source (they are replaced only when a refreshed
    slice has or had one), so an unchanged tuple costs nothing to consult.
    """

    __slots__ = ("_backends", "_count", "_passthrough", "_problems")

    def __init__(self, state: DesiredState) -> None:
        self._backends = _places_by_service(state.backends)
        self._passthrough = _places_by_service(state.passthrough)
        self._count = (len(state.backends), len(state.passthrough))
        self._problems = _Problems(state.problems)

    def fits(self, state: DesiredState) -> bool:
        """Whether ``state`` may have its backends where this index says (as many:
        refreshes and :func:`plan.hold_unconfirmed` keep every backend in its place)."""
        return (len(state.backends), len(state.passthrough)) == self._count

    def backends(self, state: DesiredState, keys: Collection[tuple[str, str]]) -> list[int] | None:
        """Where ``state`` has the backends of these Services (None: not where this index says)."""
        return _places_of(self._backends, state.backends, keys)

    def passthrough(
        self, state: DesiredState, keys: Collection[tuple[str, str]]
    ) -> list[int] | None:
        """Where ``state`` has the passthrough hosts of these Services (None: as above)."""
        return _places_of(self._passthrough, state.passthrough, keys)

    def problems(self, problems: tuple[Problem, ...]) -> _Problems:
        """``problems`` by source and as a set (remembered for the same tuple: ``is``)."""
        if self._problems.problems is not problems:
            self._problems = _Problems(problems)
        return self._problems


def refresh_endpoints(
    previous: DesiredState, view: ClusterView, services: Collection[tuple[str, str]]
) -> DesiredState:
    """``previous`` with only the endpoints of ``services`` re-derived: the fast path.

    For EndpointSlice changes alone (scaling, rolling updates, pods dying):
    nothing but those backends' servers can change, so the Ingresses, TLS and
    routing maps are not translated again. Any other change takes the full
    :func:`translate`. Problems of the affected Services' slices are replaced;
    those of a slice that was deleted outright go at the next full translate.
    """
    return refresh_services(previous, view, services).desired


def refresh_services(
    previous: DesiredState,
    view: ClusterView,
    services: Collection[tuple[str, str]],
    index: BackendIndex | None = None,
) -> Refreshed:
    """:func:`refresh_endpoints`, and which backends it re-derived.

    ``view`` may hold only ``services`` and their slices
    (:meth:`haproxy_ingress.cluster.IndexedView.of_services`); nothing else
    of it is read. With ``index`` (built from the full translation
    ``previous`` was refreshed from), the work is proportional to
    ``services``, not to the cluster: the backends are found by place, and
    an unchanged problems tuple is kept as it is.
    """
    wanted = set(services)
    names = {name for _, name in wanted}

    def named(obj: KubeObject, label: str | None = None) -> bool:
        """A first test by the name alone (the object's, or its ``label``'s), cheap enough
        to run on every Service and slice of the view; the exact one follows."""
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping):
            return False  # malformed: _well_named leaves it out anyway
        if label is None:
            return str(meta.get("name", "")) in names
        labels = meta.get("labels")
        value = labels.get(label) if isinstance(labels, Mapping) else None
        return isinstance(value, str) and value in names

    # Only these Services and their slices, then the name checks the full
    # translate made (their problems were reported then): checking all 30k
    # objects of a 10k-Ingress view cost ~100 ms per endpoint event, and
    # even picking these out took 55 ms at 10k until the names came first
    # (and 16-19 ms after: hence views of only these, IndexedView.of_services).
    view = _well_named(
        ClusterView(
            services=tuple(s for s in view.services if named(s) and _meta_key(s) in wanted),
            endpoint_slices=tuple(
                s
                for s in view.endpoint_slices
                if named(s, SERVICE_NAME_LABEL) and _slice_service(s) in wanted
            ),
        ),
        [],
    )
    service_objects = _by_name(view.services)

    def sends_to_cluster_ip(backend: Backend) -> bool:
        # A service-upstream backend sends to the cluster IP, so its pods do
        # not matter, unless the Service has none (headless): then it uses
        # its pods like any other, as translate does.
        if not backend.settings.service_upstream:
            return False
        service = service_objects.get((backend.service.namespace, backend.service.name))
        return service is not None and _cluster_address(service, backend.service) is not None

    backend_places = passthrough_places = None
    if index is not None and index.fits(previous):
        backend_places = index.backends(previous, wanted)
        passthrough_places = index.passthrough(previous, wanted)
    if backend_places is None or passthrough_places is None:
        index = None
        backend_places = [
            place
            for place, b in enumerate(previous.backends)
            if b.service.name in names and (b.service.namespace, b.service.name) in wanted
        ]
        passthrough_places = [
            place
            for place, p in enumerate(previous.passthrough)
            if (p.service.namespace, p.service.name) in wanted
        ]
    affected = [
        place for place in backend_places if not sends_to_cluster_ip(previous.backends[place])
    ]
    passing = [
        place
        for place in passthrough_places
        if not sends_to_cluster_ip(
            Backend("", previous.passthrough[place].service, previous.settings.backend, ())
        )
    ]
    if not affected and not passing:
        return Refreshed(previous, ())
    slices = _slices_by_service(view.endpoint_slices)
    stale = {_ref("EndpointSlice", s) for group in slices.values() for s in group}
    found: list[Problem] = []  # the refreshed slices' problems, as translate finds them

    def endpoints_of(ref: ServiceRef, drain: bool) -> tuple[Endpoint, ...]:
        service = service_objects.get((ref.namespace, ref.name))
        port_name = _service_port_name(service, ref) if service is not None else None
        if port_name is None:
            return ()
        return _endpoints(slices.get((ref.namespace, ref.name), []), port_name, drain, found)

    backends = list(previous.backends)
    for place in affected:
        backend = backends[place]
        backends[place] = dataclasses.replace(
            backend, endpoints=endpoints_of(backend.service, backend.settings.drain)
        )
    passthrough = list(previous.passthrough)
    for place in passing:
        passthrough[place] = dataclasses.replace(
            passthrough[place],
            endpoints=endpoints_of(passthrough[place].service, previous.settings.backend.drain),
        )
    return Refreshed(
        dataclasses.replace(
            previous,
            backends=tuple(backends),
            passthrough=tuple(passthrough),
            problems=_refreshed_problems(previous.problems, stale, found, index),
        ),
        tuple(backends[place] for place in affected),
    )


def _refreshed_problems(
    problems: tuple[Problem, ...],
    stale: set[ObjectRef],
    found: list[Problem],
    index: BackendIndex | None,
) -> tuple[Problem, ...]:
    """``problems`` with those of the ``stale`` slices replaced by ``found`` (sorted, unique).

    Slices rarely have problems: when the refreshed ones had none and have
    none, or the same, the tuple is kept as it is (``index`` knows it by
    source) instead of sorted again, along with every other object's.
    """
    if index is not None:
        known = index.problems(problems)
        before = set().union(*(known.by_source.get(ref, ()) for ref in stale))
        if known.ordered and before == set(found):
            return problems
    return tuple(sorted({*(p for p in problems if p.source not in stale), *found}))


# --- access control ----------------------------------------------------------------


def _access_policy(
    asked: IngressSettings,
    source: ObjectRef,
    *,
    secrets: Mapping[tuple[str, str], KubeObject],
    errors: list[Invalid],
    problems: list[Problem],
    annotations: Mapping[str, Any],
    reserved_ports: tuple[int, ...],
    client_auth: ClientAuth | None = None,
    global_auth: ExternalAuth | None = None,
) -> AccessPolicy | None:
    """The policy of the Ingress's routes: allow- and deny-lists, basic auth, satisfy.

    An annotation that cannot be honoured goes to ``errors`` (the Ingress's
    paths then deny everyone); a Secret or user that cannot be used is a
    Warning, and the paths ask for credentials nobody has (401). The
    ConfigMap's ``global_auth`` applies unless the Ingress has an auth-url
    of its own or sets enable-global-auth "false" (as ingress-nginx).
    """
    allow = asked.policy
    ask = asked.access
    if ask.auth_type is None and ask.auth_secret is not None:
        errors.append(
            Invalid(
                _annotation("auth-secret", annotations),
                "is set without auth-type: basic; not honoured",
            )
        )
    if (
        allow is None
        and not ask.deny_sources
        and not ask.basic
        and not (ask.limit_rps or ask.limit_rpm or ask.limit_connections)
        and ask.url is None
        and not (ask.global_auth and global_auth is not None)
        and client_auth is None
    ):
        # Nothing to guard (most Ingresses): what the rest would conclude,
        # without building the parts of a policy that is not there.
        return None
    limit = RateLimit(
        rps=ask.limit_rps or 0,
        rpm=ask.limit_rpm or 0,
        burst=ask.limit_burst,
        connections=ask.limit_connections or 0,
        exempt=ask.limit_exempt,
    )
    if not limit.active:
        limit = RateLimit()
    external = ExternalAuth()
    if ask.url is None and ask.global_auth and global_auth is not None:
        external = global_auth
    if ask.url is not None:
        if auth.url_port(ask.url) in reserved_ports:
            errors.append(
                Invalid(
                    _annotation("auth-url", annotations),
                    f"port {auth.url_port(ask.url)} is the controller's own; refused",
                )
            )
        external = ExternalAuth(
            url=ask.url,
            method=ask.method,
            signin=ask.signin or "",
            signin_param=ask.signin_param or "rd",
            response_headers=ask.response_headers,
            request_redirect=ask.request_redirect or "",
            timeout_ms=ask.timeout_ms,
        )
    if errors:
        return None  # not served as written: the caller denies or leaves it out
    if (
        allow is None
        and not ask.deny_sources
        and not ask.basic
        and not limit.active
        and not external.url
        and client_auth is None
    ):
        return None
    policy = AccessPolicy(
        allow_sources=allow.allow_sources if allow is not None else EVERYONE,
        deny_sources=ask.deny_sources,
        limit=limit,
        external=external,
        # ingress-nginx: satisfy any means the allow-list OR the credentials;
        # with no allow-list of its own there is nothing to satisfy instead.
        satisfy_any=ask.satisfy_any and allow is not None and (ask.basic or bool(external.url)),
        client_auth=client_auth,
        # Its own lists: named by this Ingress, so editing them is no reload.
        # Its limits too: as ingress-nginx's zone per Ingress, its stick
        # table counts its own requests only, never those a client sends to
        # another Ingress (another tenant's) that sets the same limit.
        owner=f"{source.namespace}/{source.name}"
        if allow is not None or ask.deny_sources or limit.active
        else "",
    )
    if not ask.basic:
        return policy
    field = _annotation("auth-secret", annotations)
    users = auth.Users((), (), (Invalid("", "is missing: nobody can log in"),))
    if ask.auth_secret is not None:
        namespace, _, name = ask.auth_secret.rpartition("/")
        if namespace and namespace != source.namespace:
            errors.append(Invalid(field, "must name a Secret in the Ingress's own namespace"))
            return None
        users = auth.users_from_secret(secrets.get((source.namespace, name)), ask.secret_type)
    for problem in users.problems:
        where = f"Secret {ask.auth_secret} " if ask.auth_secret is not None else ""
        problems.append(
            Problem(
                source,
                field,
                f"{where}{problem.field + ': ' if problem.field else ''}{problem.reason}",
                "AuthSecretInvalid",
            )
        )
    if not users.crypt and not users.apr1:
        problems.append(
            Problem(source, field, "no usable user: the paths answer 401", "AuthSecretInvalid")
        )
    return dataclasses.replace(
        policy,
        basic_auth=True,
        realm=ask.realm,
        users=users.crypt,
        apr1_users=users.apr1,
    )


def _client_tls(
    asked: IngressSettings,
    source: ObjectRef,
    *,
    secrets: Mapping[tuple[str, str], KubeObject],
    errors: list[Invalid],
    annotations: Mapping[str, Any],
) -> tuple[ClientAuth, HostTLS] | None:
    """auth-tls-*: the check on the Ingress's routes, and its hosts' handshake CA.

    Anything that keeps the CA from being used (no Secret named, another
    namespace's, missing, no PEM ``ca.crt``, a broken ``ca.crl``) goes to
    ``errors``: the Ingress guards its paths (fail closed, 403).
    """
    ask = asked.client_tls
    if ask is None:
        return None
    field = _annotation("auth-tls-secret", annotations)
    if ask.secret is None:
        errors.append(Invalid(field, "is missing: auth-tls-* need the Secret holding ca.crt"))
        return None
    namespace, _, name = ask.secret.rpartition("/")
    if namespace and namespace != source.namespace:
        errors.append(Invalid(field, "must name a Secret in the Ingress's own namespace"))
        return None
    secret = secrets.get((source.namespace, name))
    try:
        if secret is None:
            raise Invalid("", "not found")
        ca = ca_from_secret(secret)
        crl = crl_from_secret(secret)
    except Invalid as error:
        where = f"{error.field} " if error.field else ""
        errors.append(Invalid(field, f"Secret {source.namespace}/{name} {where}{error.reason}"))
        return None
    host = HostTLS("", f"{source.namespace}/{name}", bool(crl), ca=ca, crl=crl)
    check = ClientAuth(
        ca_name=host.ca_name,
        verify=ask.verify,
        depth=ask.depth,
        chain_limit=ask.depth - bundle_intermediates(ca),
        error_page=ask.error_page or "",
        pass_cert=ask.pass_cert,
        match_cn=ask.match_cn or "",
    )
    return check, host


def _claim_host_tls(
    source: ObjectRef,
    hosts: Iterable[str],
    ca: HostTLS | None,
    ciphers: str | None,
    *,
    ca_claims: dict[str, tuple[HostTLS, ObjectRef]],
    cipher_claims: dict[str, tuple[str, ObjectRef]],
    denied: list[tuple[ObjectRef, str]],
    problems: list[Problem],
) -> None:
    """Per host, the oldest Ingress's CA and ciphers win (Ingresses come oldest first).

    One handshake serves every Ingress of a host, so a younger Ingress that
    asks for another CA cannot have it: its paths on that host deny (403),
    never served under a CA its author did not choose. Other ciphers are
    only a Warning.
    """
    for host in hosts:
        if ca is not None:
            held, owner = ca_claims.setdefault(host, (ca, source))
            if held.secret != ca.secret:
                denied.append((source, host))
                problems.append(
                    Problem(
                        source,
                        "metadata.annotations",
                        f"host {host!r} already verifies client certificates with the CA of "
                        f"Ingress {owner.namespace}/{owner.name}; this Ingress's paths on it "
                        "answer 403",
                        "Conflict",
                    )
                )
        if ciphers is not None:
            held_ciphers, owner = cipher_claims.setdefault(host, (ciphers, source))
            if held_ciphers != ciphers:
                problems.append(
                    Problem(
                        source,
                        "metadata.annotations",
                        f"host {host!r} already has the ssl-ciphers of Ingress "
                        f"{owner.namespace}/{owner.name}, which apply",
                        "Conflict",
                    )
                )


def _claim_alias_cas(
    routes: Iterable[Route],
    policies: Iterable[AccessPolicy],
    cas: Mapping[str, HostTLS],
    ca_claims: dict[str, tuple[HostTLS, ObjectRef]],
) -> None:
    """Hosts with no CA whose routes check one (granted aliases) get that CA.

    An alias is granted only where no other Ingress has rules, so the only
    routes of such a host are the copies of one Ingress's.
    """
    checks = {p.name: p.client_auth for p in policies if p.client_auth is not None}
    for route in routes:
        check = checks.get(route.policy)
        if check is not None and route.host and route.host not in ca_claims:
            ca_claims[route.host] = (cas[check.ca_name], route.source)


def _deny_routes(routes: list[Route], denied: set[tuple[ObjectRef, str]]) -> list[Route]:
    """``routes`` with those of (Ingress, host) in ``denied`` denying everyone."""
    return [
        dataclasses.replace(route, policy=DENY_ALL.name, options=NO_OPTIONS)
        if (route.source, route.host) in denied
        else route
        for route in routes
    ]


def _auth_url_hosts(url: str, hosts: Iterable[str], field: str) -> list[Invalid]:
    """Why auth-url's ``$host`` cannot be honoured for these rule hosts (empty: it can).

    ingress.lua puts the request's host in its place. Where every rule (and
    alias) names an exact host, that is one of them, each checked here as
    if written out (no metadata name, no numeric address); a wildcard or a
    rule without a host would let the client's Host header choose where the
    auth request goes.
    """
    if auth.url_host(url) != auth.HOST_VARIABLE:
        return []
    hosts = sorted(set(hosts))
    if any(not host or host.startswith("*.") for host in hosts):
        return [
            Invalid(
                field,
                "names $host, so every rule must name an exact host: with a wildcard or no "
                "host, the request's Host header would choose where the auth request goes",
            )
        ]
    errors = []
    for host in hosts:
        try:
            auth.auth_url_for(url, host, field)
        except Invalid as error:
            errors.append(error)
    return errors


def _host_tls(
    ca_claims: Mapping[str, tuple[HostTLS, ObjectRef]],
    cipher_claims: Mapping[str, tuple[str, ObjectRef]],
) -> tuple[HostTLS, ...]:
    result = []
    for host in sorted(set(ca_claims) | set(cipher_claims)):
        ca = ca_claims[host][0] if host in ca_claims else HostTLS("")
        ciphers = cipher_claims[host][0] if host in cipher_claims else None
        result.append(dataclasses.replace(ca, host=host, ciphers=ciphers))
    return tuple(result)


def sni_entries(
    certificates: Iterable[Certificate], host_tls: Iterable[HostTLS]
) -> tuple[tuple[str, str], ...]:
    """The sni map: every crt-list host → the CA its line verifies with, or "-".

    Empty without any CA: haproxy.cfg names the map only then (and a CA
    appearing or going reloads), so a runtime update never meets a map
    HAProxy does not know.
    """
    host_tls = tuple(host_tls)
    if not any(tls.secret for tls in host_tls):
        return ()
    entries = {host: "-" for cert in certificates for host in cert.hosts}
    entries.update({tls.host: tls.ca_name or "-" for tls in host_tls})
    return tuple(sorted(entries.items()))


def _annotation(key: str, annotations: Mapping[str, Any]) -> str:
    """The field of the annotation that set ``key``: ours, else ingress-nginx's."""
    name = ANNOTATION_PREFIX + key
    if name not in annotations and NGINX_PREFIX + key in annotations:
        name = NGINX_PREFIX + key
    return f"metadata.annotations[{name}]"


# --- ingresses -----------------------------------------------------------------


@dataclass(frozen=True)
class _ParsedIngress:
    # Tuples: a parse may be shared by translations (ObjectMemo).
    routes: tuple[tuple[Route, ServiceRef], ...] = ()
    tls: tuple[tuple[str, tuple[str, ...]], ...] = ()


def _parse_ingress(
    ingress: KubeObject,
    policy: str = "",
    options: RouteOptions = NO_OPTIONS,
    *,
    regex: bool = False,
    salvage: list[Invalid] | None = None,
) -> _ParsedIngress:
    """Validate the whole Ingress; one bad field rejects it (no half-served Ingress).

    ``policy`` names the access policy every route of the Ingress carries,
    ``options`` what its routes do besides choosing a backend. With
    ``regex`` (use-regex) its Prefix and ImplementationSpecific paths are
    regular expressions; Exact paths stay literal. With ``salvage``, a bad
    rule, path or TLS entry goes there instead and only it is left out: the
    routes that parse are what a rejected Ingress with an access rule keeps,
    denying everyone, so they cannot fall through to another rule.
    """
    source = _ref("Ingress", ingress)
    namespace = source.namespace
    spec = validate.mapping(ingress.get("spec"), "spec")
    if not isinstance(spec.get("ingressClassName", ""), str | None):
        raise Invalid("spec.ingressClassName", "must be a string")
    routes: list[tuple[Route, ServiceRef]] = []
    tls: list[tuple[str, tuple[str, ...]]] = []
    explicit_roots: set[str] = set()
    hosts: list[str] = []

    def salvaged(error: Invalid) -> None:
        """With ``salvage``, note ``error`` (the caller skips its item); else raise it."""
        if salvage is None:
            raise error
        salvage.append(error)

    def each(value: object, field: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """validate.objects, with a bad item (or list) salvaged past when asked."""
        try:
            items = validate.sequence(value, field)
        except Invalid as error:
            salvaged(error)
            return
        for index, item in enumerate(items):
            item_field = f"{field}[{index}]"
            try:
                yield item_field, validate.mapping(item, item_field)
            except Invalid as error:
                salvaged(error)

    for rule_field, rule in each(spec.get("rules"), "spec.rules"):
        try:
            host = validate.host(rule["host"], f"{rule_field}.host") if rule.get("host") else ""
            http = validate.mapping(rule.get("http"), f"{rule_field}.http")
        except Invalid as error:
            salvaged(error)
            continue
        hosts.append(host)
        for path_field, item in each(http.get("paths"), f"{rule_field}.http.paths"):
            try:
                path_type = _path_type(item.get("pathType"), f"{path_field}.pathType")
                written = item.get("path", "/") or "/"
                is_regex = regex and path_type is not PathType.EXACT
                route_options = options
                if is_regex:
                    path = _regex_path(written, f"{path_field}.path")
                    if options.rewrite_target and CAPTURE.search(options.rewrite_target):
                        route_options = dataclasses.replace(options, path_regex=path)
                else:
                    path = _route_path(written, f"{path_field}.path")
                service = _service_ref(namespace, item.get("backend"), f"{path_field}.backend")
            except Invalid as error:
                salvaged(error)
                continue
            if path_type is not PathType.EXACT and path.rstrip("/") == "":
                explicit_roots.add(host)
            routes.append(
                (
                    Route(
                        host,
                        path,
                        path_type,
                        service.backend_name,
                        source,
                        policy,
                        route_options,
                        regex=is_regex,
                        written=str(written),
                    ),
                    service,
                )
            )
    if spec.get("defaultBackend") is not None:
        try:
            service = _service_ref(namespace, spec["defaultBackend"], "spec.defaultBackend")
        except Invalid as error:
            salvaged(error)
        else:
            # An Ingress's default backend serves the paths its hosts do not
            # match; without rules it serves any host.
            for host in sorted(set(hosts or [""]) - explicit_roots):
                routes.append(
                    (
                        Route(
                            host,
                            "/",
                            PathType.PREFIX,
                            service.backend_name,
                            source,
                            policy,
                            options,
                        ),
                        service,
                    )
                )
    for tls_field, entry in each(spec.get("tls"), "spec.tls"):
        try:
            secret = validate.dns_subdomain(entry.get("secretName"), f"{tls_field}.secretName")
            tls_hosts = tuple(
                validate.host(h, f"{tls_field}.hosts[{i}]")
                for i, h in enumerate(validate.sequence(entry.get("hosts"), f"{tls_field}.hosts"))
            )
        except Invalid as error:
            salvaged(error)
            continue
        tls.append((secret, tls_hosts))
    if not routes and not tls and salvage is None:
        raise Invalid("spec", "has neither rules with paths nor a defaultBackend")
    return _ParsedIngress(tuple(routes), tuple(tls))


def _parsed_ingress(
    ingress: KubeObject,
    policy: str,
    options: RouteOptions,
    regex: bool,
    memo: ObjectMemo | None,
) -> _ParsedIngress:
    """:func:`_parse_ingress` (without salvage), through ``memo`` if given.

    A refusal is not kept: it raises again on every translation, as rare
    as it should be.
    """
    if memo is None:
        return _parse_ingress(ingress, policy, options, regex=regex)
    # The options by identity too: hashing them (a dataclass of some thirty
    # fields) cost more than the lookup. They are the annotations' parse
    # (SettingsMemo), the same object from one translation to the next.
    return memo.ingresses.recall(
        (ingress, options),
        (policy, regex),
        lambda: _parse_ingress(ingress, policy, options, regex=regex),
    )


def _route_path(value: object, field: str) -> str:
    """The rule's path in the canonical form requests are matched in (see canonical.py).

    ``/a/./b`` and ``/a//b`` are the rule ``/a/b``: a request for either is
    matched as ``/a/b`` too, so the rule means what its author sees.
    """
    path = canonical_path(validate.path(value, field))
    if path is None:
        raise Invalid(
            field, f"does not resolve to a path ('..' above the root, or %00), got {value!r:.60}"
        )
    return path


def _regex_path(value: object, field: str) -> str:
    return regex.path_pattern(value, field)


def _header_sets(view: ClusterView, options: TranslateOptions) -> dict[str, KubeObject]:
    """The ConfigMaps of the controller's namespace by name (header sets)."""
    result: dict[str, KubeObject] = {}
    for configmap in view.header_configmaps:
        meta = configmap.get("metadata") or {}
        if isinstance(meta, Mapping) and meta.get("namespace") == options.configmap_namespace:
            result[str(meta.get("name", ""))] = configmap
    return result


def _header_set(
    ref: tuple[str, str],
    field: str,
    sets: Mapping[str, KubeObject],
    options: TranslateOptions,
    allowed: Iterable[str] = (),
) -> tuple[tuple[str, str], ...]:
    namespace, name = ref
    if namespace != options.configmap_namespace:
        raise Invalid(
            field,
            f"must name a ConfigMap in the controller's namespace {options.configmap_namespace} "
            f"(got {namespace}/{name}): it reads no other namespace's ConfigMaps",
        )
    return headers.header_set(sets.get(name), field, allowed)


def _custom_headers(
    asked: IngressSettings,
    source: ObjectRef,
    sets: Mapping[str, KubeObject],
    *,
    settings: GlobalSettings,
    options: TranslateOptions,
    problems: list[Problem],
) -> RouteOptions:
    """The Ingress's route options with its custom-headers resolved.

    As in ingress-nginx, a header set that is missing or invalid makes the
    paths answer 503 (with a Warning), never served without the headers.
    """
    if asked.custom_headers is None:
        return asked.options
    value, field = asked.custom_headers
    try:
        ref = headers.configmap_ref(value, field, source.namespace)
        found = _header_set(ref, field, sets, options, settings.allowed_response_headers)
    except Invalid as error:
        problems.append(Problem(source, error.field, error.reason + "; its paths answer 503"))
        return dataclasses.replace(asked.options, unavailable=True)
    return dataclasses.replace(asked.options, response_headers=found)


def _upstream_tls(
    asked: BackendSettings,
    source: ObjectRef,
    secrets: Mapping[tuple[str, str], KubeObject],
    problems: list[Problem],
) -> tuple[BackendSettings, UpstreamTLS | None, bool]:
    """proxy-ssl-secret's files; (settings to use, files, whether to fail closed).

    The Secret must be in the Ingress's namespace (one tenant never presents
    another's client certificate). Unusable with proxy-ssl-verify on: the
    Ingress's paths answer 503; with it off, the pods are reached without it.
    """
    ref = asked.proxy_ssl_secret
    if ref is None and not asked.proxy_ssl_verify:
        return asked, None, False
    try:
        if ref is None:
            raise Invalid("metadata.annotations", "proxy-ssl-verify needs proxy-ssl-secret")
        namespace, _, name = ref.partition("/")
        field = "metadata.annotations"
        if namespace != source.namespace:
            raise Invalid(field, f"proxy-ssl-secret {ref} is not in the Ingress's namespace")
        secret = secrets.get((namespace, name))
        if secret is None:
            raise Invalid(field, f"proxy-ssl-secret {ref} not found")
        data = secret.get("data") or {}
        pem = ""
        if isinstance(data, Mapping) and data.get("tls.crt"):
            pem = certificate_from_secret(secret).pem
        ca = ca_from_secret(secret) if isinstance(data, Mapping) and data.get("ca.crt") else ""
        if asked.proxy_ssl_verify and not ca:
            raise Invalid(field, f"proxy-ssl-secret {ref} has no ca.crt to verify the pods with")
    except Invalid as error:
        closed = asked.proxy_ssl_verify
        problems.append(
            Problem(
                source,
                error.field,
                error.reason + ("; its paths answer 503" if closed else "; not used"),
                "Rejected" if closed else "Invalid",
            )
        )
        plain = dataclasses.replace(asked, proxy_ssl_secret=None, proxy_ssl_verify=False)
        return plain, None, closed
    return asked, UpstreamTLS(ref, "upstream_" + certificate_name(namespace, name), pem, ca), False


def _error_pages(
    route: RouteOptions,
    asked: IngressSettings,
    source: ObjectRef,
    *,
    services: Mapping[tuple[str, str], KubeObject],
    default_ref: ServiceRef | None,
    service_refs: dict[ServiceRef, ObjectRef],
    problems: list[Problem],
) -> RouteOptions:
    """default-backend and custom-http-errors: the route's error backend, if any.

    The annotation's Service must be in the Ingress's namespace (ingress-nginx
    reads it there too); without it, custom-http-errors use the cluster's
    default backend, and without either they cannot apply (a Warning).
    """
    error_ref = None
    if asked.default_backend is not None:
        field = f"metadata.annotations[{NGINX_PREFIX}default-backend]"
        service = services.get((source.namespace, asked.default_backend))
        port = _first_port(service) if service is not None else None
        if port is None:
            problems.append(
                Problem(
                    source,
                    field,
                    f"Service {source.namespace}/{asked.default_backend} not found or has no "
                    "port; ignored",
                    "BackendNotFound",
                )
            )
        else:
            error_ref = ServiceRef(source.namespace, asked.default_backend, port)
    fallback = error_ref is not None
    if error_ref is None and route.error_codes:
        error_ref = default_ref
        if error_ref is None:
            problems.append(
                Problem(
                    source,
                    "metadata.annotations",
                    "custom-http-errors needs default-backend or the ConfigMap's "
                    "default-backend-service; ignored",
                    "Unsupported",
                )
            )
            return dataclasses.replace(route, error_codes=())
    if error_ref is None:
        return route
    service_refs.setdefault(error_ref, source)
    return dataclasses.replace(
        route,
        error_backend=error_ref.backend_name,
        error_source=f"{source.namespace}/{source.name}",
        fallback=fallback,
    )


def _first_port(service: KubeObject) -> str | None:
    spec = service.get("spec") or {}
    ports = spec.get("ports") if isinstance(spec, Mapping) else None
    if not isinstance(ports, list) or not ports or not isinstance(ports[0], Mapping):
        return None
    try:
        return str(validate.port_number(ports[0].get("port"), "spec.ports[0].port"))
    except Invalid:
        return None


def _global_headers(
    settings: GlobalSettings,
    sets: Mapping[str, KubeObject],
    options: TranslateOptions,
    problems: list[Problem],
) -> dict[str, str]:
    """The ConfigMap's proxy-set-headers and add-headers: the headers map's entries."""
    result = {}
    source = ObjectRef("ConfigMap", options.configmap_namespace, options.configmap_name)
    for key, ref, setting in (
        ("request", settings.proxy_set_headers, "proxy-set-headers"),
        ("response", settings.add_headers, "add-headers"),
    ):
        if ref is None:
            continue
        try:
            found = _header_set(ref, f"data.{setting}", sets, options)
        except Invalid as error:
            problems.append(Problem(source, error.field, error.reason, "InvalidSetting"))
            continue
        if found:
            result[key] = headers.encode(found)
    return result


@dataclass(frozen=True)
class _MoreNames:
    """An Ingress's server-alias and from-to-www-redirect, with the routes it was granted."""

    source: ObjectRef
    routes: list[Route]
    aliases: tuple[str, ...]
    www: bool
    tls: bool  # one of its served hosts is in its spec.tls
    redirect: bool  # and ssl-redirect is on


def _more_names(
    requests: list[_MoreNames],
    routes: list[Route],
    *,
    owned: Mapping[str, ObjectRef],
    claims: dict[tuple[str, str, PathType], ObjectRef],
    redirects: set[str],
    tls_hosts: set[str],
    problems: list[Problem],
) -> dict[str, str]:
    """Grant aliases (appending their routes) and www redirects; the www map.

    Host ownership, as for rules: a name is granted only if no Ingress has
    rules for it, nor for its wildcard form (whose requests it would take),
    and the oldest Ingress that asks gets it. So one tenant's annotation
    never takes a host another tenant serves.
    """
    owners: dict[str, set[ObjectRef]] = defaultdict(set)
    for route in routes:
        if route.host:
            owners[route.host].add(route.source)
    for host, source in owned.items():  # ssl-passthrough hosts
        owners[host].add(source)
    granted: dict[str, ObjectRef] = {}

    def taken(name: str, source: ObjectRef, what: str) -> bool:
        if source in owners.get(name, set()):
            return True  # one of its own hosts: nothing to add
        parent = "*." + name.split(".", 1)[1] if "." in name else ""
        others = (owners.get(name, set()) | owners.get(parent, set())) - {source}
        holder = granted.get(name)
        if others or holder not in (None, source):
            owner = min(others) if others else holder
            assert owner is not None
            problems.append(
                Problem(
                    source,
                    "metadata.annotations",
                    f"{what} {name!r}: Ingress {owner.namespace}/{owner.name} already serves "
                    "it; skipped",
                    "Conflict",
                )
            )
            return True
        return holder is not None  # granted to it already

    for request in requests:
        for alias in request.aliases:
            if taken(alias, request.source, "server-alias"):
                continue
            granted[alias] = request.source
            if request.tls:
                tls_hosts.add(alias)
                if request.redirect:
                    redirects.add(alias)
            for route in request.routes:
                copy = dataclasses.replace(route, host=alias)
                if claims.setdefault(route_key(copy), request.source) == request.source:
                    routes.append(copy)
    www: dict[str, str] = {}
    for request in requests:
        if not request.www:
            continue
        for host in sorted({r.host for r in request.routes if r.host}):
            if host.startswith("*."):
                continue
            other = host[4:] if host.startswith("www.") else "www." + host
            if "." not in other or len(other) > 253:
                continue
            if www.get(other) == host:
                continue  # an older Ingress of the same host asked for the same
            if taken(other, request.source, "from-to-www-redirect"):
                continue
            granted[other] = request.source
            www[other] = host
    return www


# --- ssl-passthrough -------------------------------------------------------------

# Annotations that say nothing about requests: no Warning that passthrough skips them.
_PASSTHROUGH_NEUTRAL = frozenset({"ssl-passthrough", "ssl-redirect", "force-ssl-redirect"})
PASSTHROUGH_FLAG_OFF = (
    "ssl-passthrough needs the controller flag --enable-ssl-passthrough, which is off; "
    "TLS is terminated here as for any Ingress"
)


@dataclass(frozen=True)
class _PassthroughAsk:
    """An Ingress's ssl-passthrough: its hosts, each with the Service port it names."""

    source: ObjectRef
    field: str
    hosts: tuple[tuple[str, ServiceRef], ...]


def _passthrough_ask(
    asked: IngressSettings,
    source: ObjectRef,
    parsed: _ParsedIngress,
    annotations: Mapping[str, Any],
    *,
    enabled: bool,
    refused: bool,
    problems: list[Problem],
) -> _PassthroughAsk | None:
    """What an Ingress with ``ssl-passthrough: "true"`` asks for, or None (with a Warning).

    As in ingress-nginx, only each rule's host and the backend of its path
    ``/`` (else its first path) matter: a TCP connection has no path. Hosts
    must be exact (the SNI is matched whole). An Ingress with an access rule
    keeps TLS terminated here, where its rule is enforced: passthrough would
    hand its connections to the pods unchecked (fail closed).
    """
    field = asked.ssl_passthrough_field
    if not enabled:
        problems.append(Problem(source, field, PASSTHROUGH_FLAG_OFF, "Unsupported"))
        return None
    if refused:
        return None  # its errors are reported; nothing of it is served as written
    if asked.access_rule:
        problems.append(
            Problem(
                source,
                field,
                "not honoured: the Ingress has an access rule that a TLS connection passed "
                "to the pods unterminated would bypass; TLS is terminated here",
                "Unsupported",
            )
        )
        return None
    chosen: dict[str, ServiceRef] = {}
    rooted: set[str] = set()
    for route, service in parsed.routes:
        if not route.host or route.host.startswith("*."):
            problems.append(
                Problem(
                    source,
                    "spec.rules",
                    f"host {route.host or '*'!r}: ssl-passthrough needs an exact host to match "
                    "the SNI; its TLS is terminated here",
                    "Unsupported",
                )
            )
            continue
        root = route.path == "/" and route.path_type is not PathType.EXACT and not route.regex
        if root and route.host not in rooted:
            chosen[route.host] = service
            rooted.add(route.host)
        else:
            chosen.setdefault(route.host, service)
    if not chosen:
        return None
    problems.extend(
        Problem(
            source,
            f"metadata.annotations[{name}]",
            "does not apply to the ssl-passthrough hosts: their TLS connections reach the "
            "pods unterminated",
            "Unsupported",
        )
        for name in sorted(k for k in annotations if isinstance(k, str))
        if name.startswith((ANNOTATION_PREFIX, NGINX_PREFIX))
        and name.partition("/")[2] not in _PASSTHROUGH_NEUTRAL
    )
    return _PassthroughAsk(source, field, tuple(sorted(chosen.items())))


def _grant_passthrough(
    ask: _PassthroughAsk | None,
    served_by: Mapping[str, ObjectRef],
    passed: dict[str, _PassthroughAsk],
    problems: list[Problem],
) -> set[str]:
    """The hosts of ``ask`` it gets (added to ``passed``); the others get a Conflict.

    A passthrough host takes every TLS connection for that name, so, as for
    any conflict, the oldest Ingress wins: Ingresses are translated oldest
    first, so ``served_by`` (hosts with routes) and ``passed`` hold exactly
    the older Ingresses' claims, and a host one of them serves (rules or
    passthrough, any namespace) stays theirs, with its TLS terminated here.
    """
    if ask is None:
        return set()
    granted = set()
    for host, ref in ask.hosts:
        owner = passed[host].source if host in passed else served_by.get(host)
        if owner is not None:
            problems.append(
                Problem(
                    ask.source,
                    ask.field,
                    f"host {host!r} is already served by Ingress {owner.namespace}/"
                    f"{owner.name}; its TLS is terminated here, not passed through",
                    "Conflict",
                )
            )
            continue
        passed[host] = _PassthroughAsk(ask.source, ask.field, ((host, ref),))
        granted.add(host)
    return granted


def _passthrough(
    passed: Mapping[str, _PassthroughAsk],
    routes: list[Route],
    *,
    services: Mapping[tuple[str, str], KubeObject],
    slices: Mapping[tuple[str, str], list[KubeObject]],
    settings: BackendSettings,
    problems: list[Problem],
) -> tuple[Passthrough, ...]:
    """The granted passthrough hosts with their pods, sorted by host.

    A newer Ingress with rules for a granted host is told its rules get the
    host's plain-HTTP requests only.
    """
    result = []
    sources: dict[str, set[ObjectRef]] = defaultdict(set)
    for route in routes:
        if route.host in passed:
            sources[route.host].add(route.source)
    for host in sorted(passed):
        ask = passed[host]
        ref = ask.hosts[0][1]
        for other in sorted(sources[host] - {ask.source}):
            problems.append(
                Problem(
                    other,
                    "spec.rules",
                    f"host {host!r}: its TLS connections go unterminated to the pods of Ingress "
                    f"{ask.source.namespace}/{ask.source.name} (ssl-passthrough, older); "
                    "these rules get its plain-HTTP requests only",
                    "Conflict",
                )
            )
        spec = (services.get((ref.namespace, ref.name)) or {}).get("spec")
        if isinstance(spec, Mapping) and spec.get("type") == "ExternalName":
            problems.append(
                Problem(
                    ask.source,
                    ask.field,
                    f"host {host!r}: Service {ref.namespace}/{ref.name} is of type "
                    "ExternalName, which this controller does not proxy; connections fail",
                    "Unsupported",
                )
            )
            result.append(Passthrough(host, ref, (), ask.source))
            continue
        backend = _backend(
            ref,
            services=services,
            slices=slices,
            settings=settings,
            problems=problems,
            reported_on=ask.source,
        )
        result.append(Passthrough(host, ref, backend.endpoints, ask.source))
    return tuple(result)


def _canary_ingress(
    ingress: KubeObject, source: ObjectRef, asked: IngressSettings, problems: list[Problem]
) -> _ParsedIngress | None:
    """A canary Ingress's paths, or None (with problems) if it cannot be one.

    As in ingress-nginx, a canary's other route annotations are ignored: its
    requests get the main Ingress's options and access rule. So a canary that
    sets an access rule of its own is left out: served under the main rule it
    would let in clients its author meant to keep out (fail closed).
    """
    if asked.errors or asked.access_rule:
        problems.extend(Problem(source, e.field, e.reason, "Rejected") for e in asked.errors)
        if asked.access_rule:
            problems.append(
                Problem(
                    source,
                    "metadata.annotations",
                    "a canary Ingress takes the main Ingress's access rule and cannot set "
                    "its own; this canary is left out",
                    "Rejected",
                )
            )
        return None
    try:
        # Its paths are matched to the main Ingress's as written: literal,
        # or regular expressions where the main Ingress has use-regex.
        return _parse_ingress(ingress)
    except Invalid as literal_error:
        try:
            return _parse_ingress(ingress, regex=True)
        except Invalid:
            problems.append(Problem(source, literal_error.field, literal_error.reason, "Rejected"))
            return None


def _attach_canaries(
    routes: list[Route],
    canaries: list[tuple[ObjectRef, IngressSettings, _ParsedIngress]],
    *,
    services: Mapping[tuple[str, str], KubeObject],
    service_refs: dict[ServiceRef, ObjectRef],
    tuning: dict[ServiceRef, tuple[BackendSettings, ObjectRef]],
    defaults: BackendSettings,
    problems: list[Problem],
) -> list[Route]:
    """``routes`` with each canary attached to the main route of its host and path.

    The main route must belong to an Ingress of the canary's namespace: one
    tenant's canary never takes another tenant's traffic. One canary per
    route (ingress-nginx keeps one too): the older canary wins.
    """
    # Host, path as written and path type, as ingress-nginx merges a canary
    # into a location: another Ingress's route of the same path but another
    # type is not the main route (and must not make a canary lose it).
    index = {
        (r.host, r.written or r.path, r.path_type): i for i, r in reversed(list(enumerate(routes)))
    }
    result = list(routes)
    # The main routes' backend settings, by backend name (their Services' tuning).
    tuned = {ref.backend_name: settings for ref, (settings, _) in tuning.items()}
    for source, asked, parsed in canaries:
        assert asked.canary is not None
        for route, service in parsed.routes:
            at = index.get((route.host, route.written or route.path, route.path_type))
            if at is None or result[at].source.namespace != source.namespace:
                problems.append(
                    Problem(
                        source,
                        "spec.rules",
                        f"canary for host {route.host or '*'!r} path {route.written!r}: no "
                        f"Ingress in namespace {source.namespace} serves it; left out",
                        "CanaryWithoutMain",
                    )
                )
                continue
            main = result[at]
            if main.options.canary is not None:
                problems.append(
                    Problem(
                        source,
                        "spec.rules",
                        f"host {route.host or '*'!r} path {route.written!r} already has a canary "
                        f"(backend {main.options.canary.backend}); left out",
                        "Conflict",
                    )
                )
                continue
            if not _service_usable(service, services, source, route, problems):
                continue
            service_refs.setdefault(service, source)
            canary_settings, _ = tuning.setdefault(service, (asked.backend, source))
            canary = _sticky(
                dataclasses.replace(asked.canary, backend=service.backend_name),
                canary_settings,
                tuned.get(main.backend, defaults),
            )
            result[at] = dataclasses.replace(
                main, options=dataclasses.replace(main.options, canary=canary)
            )
    return result


def _sticky(canary: Canary, settings: BackendSettings, main: BackendSettings) -> Canary:
    """affinity-canary-behavior: sticky keeps a client on the side that has cookie affinity.

    As ingress-nginx's balancer: a request carrying the affinity of the
    main backend stays there, one carrying the canary's goes to the canary,
    any other is decided by the rules. Here the side is a second cookie,
    named after the session cookie, sent with the attributes of the sticky
    side's session cookie.
    """
    on_canary, on_main = settings.affinity == "cookie", main.affinity == "cookie"
    if canary.affinity_behavior != "sticky" or not (on_canary or on_main):
        return canary
    cookie = settings if on_canary else main
    attributes = f"; Path={cookie.cookie_path or '/'}"
    if cookie.cookie_domain:
        attributes += f"; Domain={cookie.cookie_domain}"
    if cookie.cookie_max_age:
        attributes += f"; Max-Age={cookie.cookie_max_age}"
    if cookie.cookie_samesite:
        attributes += f"; SameSite={cookie.cookie_samesite}"
    if cookie.cookie_secure:
        attributes += "; Secure"
    return dataclasses.replace(
        canary,
        sticky_cookie=f"{cookie.cookie_name}-canary",
        sticky_attributes=attributes + "; HttpOnly",
        sticky_canary=on_canary,
        sticky_main=on_main,
    )


_PATH_TYPES = {path_type.value: path_type for path_type in PathType}


def _path_type(value: object, field: str) -> PathType:
    found = _PATH_TYPES.get(value) if isinstance(value, str) else None
    if found is not None:
        return found
    raise Invalid(field, f"must be Exact, Prefix or ImplementationSpecific, got {value!r}")


def _service_ref(namespace: str, backend: object, field: str) -> ServiceRef:
    backend = validate.mapping(backend, field)
    if backend.get("resource") is not None:
        raise Invalid(f"{field}.resource", "resource backends are not supported by HAProxy")
    service = validate.mapping(backend.get("service"), f"{field}.service")
    if not service:
        raise Invalid(f"{field}.service", "is missing")
    name = validate.service_name(service.get("name"), f"{field}.service.name")
    port = validate.mapping(service.get("port"), f"{field}.service.port")
    if port.get("number") is not None:
        number = validate.port_number(port["number"], f"{field}.service.port.number")
        return ServiceRef(namespace, name, str(number))
    if port.get("name") is not None:
        return ServiceRef(
            namespace, name, validate.port_name(port["name"], f"{field}.service.port.name")
        )
    raise Invalid(f"{field}.service.port", "needs a number or a name")


def _service_usable(
    ref: ServiceRef,
    services: Mapping[tuple[str, str], KubeObject],
    source: ObjectRef,
    route: Route,
    problems: list[Problem],
) -> bool:
    """False for Services HAProxy cannot reach by pod address (route left out).

    A route with an access policy is kept (True), answering 503 behind its
    policy: left out, its path would fall through to another rule, such as
    another Ingress's catch-all '/', without the policy (fail closed).
    """
    service = services.get((ref.namespace, ref.name))
    if service is None:
        return True  # served as 503 until it exists; reported with the backend
    spec = service.get("spec") or {}
    if isinstance(spec, Mapping) and spec.get("type") == "ExternalName":
        kept = "answers 503 behind its access rule" if route.policy else "left out"
        problems.append(
            Problem(
                source,
                "spec.rules",
                f"Service {ref.namespace}/{ref.name} is of type ExternalName, which this "
                f"controller does not proxy; path {route.path!r} {kept}",
                "Unsupported",
            )
        )
        return bool(route.policy)
    return True


# --- services and endpoints ------------------------------------------------------


def _backend(
    ref: ServiceRef,
    *,
    services: Mapping[tuple[str, str], KubeObject],
    slices: Mapping[tuple[str, str], list[KubeObject]],
    settings: BackendSettings,
    problems: list[Problem],
    reported_on: ObjectRef,
    memo: ObjectMemo | None = None,
) -> Backend:
    """The backend of ``ref``: its Service's endpoints, through ``memo`` if given
    (by the identity of the Service, its slices and ``settings``, which are all
    it reads; its problems included)."""
    service = services.get((ref.namespace, ref.name))
    service_slices = slices.get((ref.namespace, ref.name), [])
    if memo is None:
        return _make_backend(
            ref, service, service_slices, settings, problems=problems, reported_on=reported_on
        )

    return _recall_reporting(
        memo.backends,
        (service, settings, *service_slices),
        (ref, reported_on),
        lambda found: _make_backend(
            ref,
            service,
            service_slices,
            settings,
            problems=found,
            reported_on=reported_on,
            memo=memo,
        ),
        problems,
    )


def _make_backend(
    ref: ServiceRef,
    service: KubeObject | None,
    slices: list[KubeObject],
    settings: BackendSettings,
    *,
    problems: list[Problem],
    reported_on: ObjectRef,
    memo: ObjectMemo | None = None,
) -> Backend:
    endpoints: tuple[Endpoint, ...] = ()
    if service is None:
        problems.append(
            Problem(
                reported_on,
                "backend",
                f"Service {ref.namespace}/{ref.name} not found; its paths answer 503",
                "BackendNotFound",
            )
        )
    else:
        port_name = _service_port_name(service, ref)
        if port_name is None:
            problems.append(
                Problem(
                    reported_on,
                    "backend",
                    f"Service {ref.namespace}/{ref.name} has no port {ref.port}; "
                    "its paths answer 503",
                    "BackendNotFound",
                )
            )
        else:
            cluster_ip = _cluster_address(service, ref) if settings.service_upstream else None
            if cluster_ip is not None:
                endpoints = (cluster_ip,)
            else:
                if settings.service_upstream:
                    problems.append(
                        Problem(
                            reported_on,
                            "metadata.annotations",
                            f"service-upstream: Service {ref.namespace}/{ref.name} has no "
                            "cluster IP; its pods are used",
                            "Unsupported",
                        )
                    )
                endpoints = _service_endpoints(
                    slices,
                    port_name,
                    settings.drain,
                    problems,
                    memo,
                )
    return Backend(ref.backend_name, ref, settings, endpoints)


def _cluster_address(service: KubeObject, ref: ServiceRef) -> Endpoint | None:
    """The Service's cluster IP and port (service-upstream), or None if headless."""
    spec = service.get("spec") or {}
    address = spec.get("clusterIP") if isinstance(spec, Mapping) else None
    ports = spec.get("ports") if isinstance(spec, Mapping) else None
    if not isinstance(address, str) or not isinstance(ports, list):
        return None
    try:
        checked = validate.ip_address(address, "spec.clusterIP")
    except Invalid:
        return None  # "None" (headless) or malformed
    for port in ports:
        if not isinstance(port, Mapping):
            continue
        if (ref.port.isdigit() and port.get("port") == int(ref.port)) or (
            not ref.port.isdigit() and port.get("name") == ref.port
        ):
            try:
                return Endpoint(checked, validate.port_number(port.get("port"), "spec.ports"))
            except Invalid:
                return None
    return None


def _service_port_name(service: KubeObject, ref: ServiceRef) -> str | None:
    """The name EndpointSlices give the referenced Service port ("" if unnamed)."""
    spec = service.get("spec") or {}
    ports = spec.get("ports") if isinstance(spec, Mapping) else None
    for port in ports if isinstance(ports, list) else []:
        if not isinstance(port, Mapping):
            continue
        if ref.port.isdigit() and port.get("port") == int(ref.port):
            return str(port.get("name") or "")
        if not ref.port.isdigit() and port.get("name") == ref.port:
            return ref.port
    return None


_STATE_RANK = {ServerState.READY: 0, ServerState.DRAIN: 1, ServerState.MAINT: 2}


def _endpoints(
    slices: list[KubeObject], port_name: str, drain: bool, problems: list[Problem]
) -> tuple[Endpoint, ...]:
    """All addresses of the Service port, one per address:port, best state first.

    During a slice hand-over an address can sit in two slices; the best
    condition wins so a pod is never drained because of bookkeeping.
    """
    found: dict[tuple[str, int], Endpoint] = {}
    for endpoint_slice in slices:
        source = _ref("EndpointSlice", endpoint_slice)
        # A tuple, not a set: a malformed (unhashable) value must compare unequal, not raise.
        if endpoint_slice.get("addressType") not in ("IPv4", "IPv6"):
            continue
        try:
            port = _slice_port(endpoint_slice, port_name)
            if port is None:
                continue
            for item_field, item in validate.objects(endpoint_slice.get("endpoints"), "endpoints"):
                addresses = validate.sequence(item.get("addresses"), f"{item_field}.addresses")
                if not addresses:
                    continue
                # Consumers use the first address: the others are duplicates of it.
                address = validate.ip_address(addresses[0], f"{item_field}.addresses[0]")
                target = item.get("targetRef") or {}
                state = _endpoint_state(validate.mapping(item.get("conditions"), "conditions"))
                if state is ServerState.DRAIN and not drain:
                    state = ServerState.MAINT
                endpoint = Endpoint(
                    address,
                    port,
                    state,
                    str(target.get("name", "")) if isinstance(target, Mapping) else "",
                )
                known = found.get(endpoint.key)
                if known is None or _STATE_RANK[endpoint.state] < _STATE_RANK[known.state]:
                    found[endpoint.key] = endpoint
        except Invalid as error:
            problems.append(Problem(source, error.field, error.reason))
    return tuple(sorted(found.values()))


def _service_endpoints(
    slices: list[KubeObject],
    port_name: str,
    drain: bool,
    problems: list[Problem],
    memo: ObjectMemo | None,
) -> tuple[Endpoint, ...]:
    """:func:`_endpoints`, through ``memo`` if given (its problems included)."""
    if memo is None:
        return _endpoints(slices, port_name, drain, problems)
    return _recall_reporting(
        memo.endpoints,
        tuple(slices),
        (port_name, drain),
        lambda found: _endpoints(slices, port_name, drain, found),
        problems,
    )


def _recall_reporting(
    table: ByIdentity[tuple[_T, tuple[Problem, ...]]],
    objects: tuple[object, ...],
    rest: Hashable,
    make: Callable[[list[Problem]], _T],
    problems: list[Problem],
) -> _T:
    """``make(problems)`` through ``table``: a hit reports again what the making reported."""

    def made() -> tuple[_T, tuple[Problem, ...]]:
        found: list[Problem] = []
        return make(found), tuple(found)

    result, found = table.recall(objects, rest, made)
    problems.extend(found)
    return result


def _slice_port(endpoint_slice: KubeObject, port_name: str) -> int | None:
    for port_field, port in validate.objects(endpoint_slice.get("ports"), "ports"):
        if (port.get("name") or "") == port_name and port.get("protocol", "TCP") == "TCP":
            return validate.port_number(port.get("port"), f"{port_field}.port")
    return None


def _endpoint_state(conditions: Mapping[str, Any]) -> ServerState:
    """EndpointSlice conditions → slot state (unset ready/serving mean true)."""
    ready = conditions.get("ready") is not False
    serving = conditions.get("serving", ready) is not False
    terminating = conditions.get("terminating") is True
    if ready and not terminating:
        return ServerState.READY
    if serving and terminating:
        return ServerState.DRAIN
    return ServerState.MAINT


# --- TLS ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _TlsClaim:
    source: ObjectRef
    secret: str
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class _TlsAsk:
    """An Ingress's spec.tls, with the hosts of its own rules and its ssl-redirect."""

    source: ObjectRef
    entries: tuple[tuple[str, tuple[str, ...]], ...]  # (secretName, hosts)
    ruled: frozenset[str]
    redirect: bool


def _own_tls(
    asks: Iterable[_TlsAsk],
    routes: Iterable[Route],
    passed: Mapping[str, _PassthroughAsk],
    *,
    redirects: set[str],
    tls_hosts: set[str],
    problems: list[Problem],
) -> list[_TlsClaim]:
    """The spec.tls hosts each Ingress may give its certificate, https redirect and HSTS.

    A host's TLS belongs to those who serve it: ingress-nginx gives a server
    a certificate only from an Ingress with a rule for its host. So a host
    that Ingresses of another namespace serve (rules, a granted alias,
    ssl-passthrough) is kept only by an Ingress with a rule for it; else
    one tenant's spec.tls would put its certificate (whose key it holds),
    a 308 to https and HSTS on another tenant's host. A wildcard is kept
    only if no other namespace serves a name it covers (its SNI filter and
    redirect would reach that name). Hosts of the Ingress's own namespace
    or of nobody stay allowed: a team may split TLS and rules over two
    Ingresses, or list names before it serves them.
    """
    serving: dict[str, set[str]] = defaultdict(set)  # host as written → namespaces
    covered: dict[str, set[str]] = defaultdict(set)  # "*.p" → namespaces serving an "x.p"
    for host, namespace in [
        *((route.host, route.source.namespace) for route in routes if route.host),
        *((host, ask.source.namespace) for host, ask in passed.items()),
    ]:
        serving[host].add(namespace)
        if not host.startswith("*.") and "." in host:
            covered["*." + host.split(".", 1)[1]].add(namespace)

    def served_by(host: str) -> set[str]:
        if host.startswith("*."):
            return serving.get(host, set()) | covered.get(host, set())
        if host in serving:
            return serving[host]
        # No rules of its own: its requests go to its wildcard's rules.
        return serving.get("*." + host.split(".", 1)[1], set()) if "." in host else set()

    claims = []
    for ask in asks:
        for secret, hosts in ask.entries:
            kept = []
            for host in hosts:
                others = sorted(served_by(host) - {ask.source.namespace})
                if others and host not in ask.ruled:
                    problems.append(
                        Problem(
                            ask.source,
                            "spec.tls",
                            f"host {host!r} is served by Ingresses of other namespaces "
                            f"({', '.join(others)}) and by no rule of this Ingress; "
                            "its TLS entry is ignored",
                            "Conflict",
                        )
                    )
                    continue
                kept.append(host)
            if kept:
                claims.append(_TlsClaim(ask.source, secret, tuple(kept)))
                tls_hosts.update(kept)
                if ask.redirect:
                    redirects.update(kept)
    _extend_wildcards(claims, routes, redirects=redirects, tls_hosts=tls_hosts)
    return claims


def _plain_http(route: Route, ssl_redirect: bool, exempt: tuple[str, ...]) -> Route:
    """``route``, marked ``plain_http`` where ingress-nginx keeps its plain HTTP.

    ingress-nginx decides per location: a path under no-tls-redirect-locations
    (ACME HTTP-01 challenges, which must answer on port 80) is never
    redirected, force-ssl-redirect included; otherwise force-ssl-redirect
    redirects, and ssl-redirect "false" on the location's own Ingress keeps
    plain HTTP even where another Ingress's TLS redirects the host.
    """
    options = route.options
    if exempt and route.path.startswith(exempt):
        options = dataclasses.replace(options, force_https=False, plain_http=True)
    elif not ssl_redirect and not options.force_https:
        options = dataclasses.replace(options, plain_http=True)
    else:
        return route
    return dataclasses.replace(route, options=options)


def _extend_wildcards(
    claims: Iterable[_TlsClaim],
    routes: Iterable[Route],
    *,
    redirects: set[str],
    tls_hosts: set[str],
) -> None:
    """Give a wildcard's https redirect and HSTS to the hosts with rules it may reach.

    haproxy.cfg reads a request's wildcard form in the redirect and HSTS
    maps only when its host has no rules of its own; a host with rules is
    looked up by its exact name. So a wildcard's TLS reaches such a host only
    through an exact entry, added here when every namespace serving that host
    claimed the wildcard (a team's ``*.shop`` certificate and ``a.shop``
    rules): another tenant's ``b.shop`` keeps its plain HTTP, as ingress-nginx
    gives a host a certificate only from an Ingress with a rule for it. A
    host with a TLS entry of its own keeps its own redirect setting.
    """
    claimants: dict[str, set[str]] = defaultdict(set)  # "*.p" → namespaces that kept it
    for claim in claims:
        for host in claim.hosts:
            if host.startswith("*."):
                claimants[host].add(claim.source.namespace)
    if not claimants:
        return
    serving: dict[str, set[str]] = defaultdict(set)
    for route in routes:
        if route.host and not route.host.startswith("*.") and "." in route.host:
            serving[route.host].add(route.source.namespace)
    for host, namespaces in sorted(serving.items()):
        wildcard = "*." + host.split(".", 1)[1]
        if host in tls_hosts or not namespaces <= claimants.get(wildcard, set()):
            continue
        tls_hosts.add(host)
        if wildcard in redirects:
            redirects.add(host)


def _certificates(
    claims: list[_TlsClaim],
    secrets: Mapping[tuple[str, str], KubeObject],
    problems: list[Problem],
    now: datetime.datetime | None,
    cache: CertificateCache | None,
) -> tuple[tuple[Certificate, ...], dict[str, str]]:
    """One certificate per Secret; a host served by two Secrets goes to the older Ingress.

    Also each served host → the namespace of the Secret it got.
    """
    host_owner: dict[str, tuple[str, str]] = {}
    pems: dict[tuple[str, str], str] = {}
    hosts_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    # Every named Secret checked first, together (see CertificateCache.get_all).
    found = [
        k for k in dict.fromkeys((c.source.namespace, c.secret) for c in claims) if k in secrets
    ]
    cache = cache if cache is not None else CertificateCache()  # (not `or`: an empty one is falsy)
    checks = dict(zip(found, cache.get_all([secrets[key] for key in found]), strict=True))
    for claim in claims:
        key = (claim.source.namespace, claim.secret)
        if key not in pems:
            secret = secrets.get(key)
            if secret is None:
                problems.append(
                    Problem(
                        claim.source,
                        "spec.tls",
                        f"TLS Secret {key[0]}/{key[1]} not found; its hosts get the "
                        "default certificate",
                        "SecretNotFound",
                    )
                )
                continue
            checked = checks[key]
            if isinstance(checked, Invalid):
                problems.append(
                    Problem(
                        claim.source,
                        "spec.tls",
                        f"TLS Secret {key[0]}/{key[1]} {checked.field} {checked.reason}; its "
                        "hosts get the default certificate",
                        "InvalidCertificate",
                    )
                )
                problems.append(
                    Problem(
                        _ref("Secret", secret), checked.field, checked.reason, "InvalidCertificate"
                    )
                )
                continue
            pems[key] = checked.pem
            if now is not None and not checked.not_before <= now <= checked.not_after:
                when = "expired on" if now > checked.not_after else "is not valid before"
                date = checked.not_after if now > checked.not_after else checked.not_before
                problems.append(
                    Problem(
                        _ref("Secret", secret),
                        "data[tls.crt]",
                        f"certificate {checked.subject} {when} {date:%Y-%m-%d %H:%M} UTC; "
                        "served anyway",
                        "CertificateNotValidNow",
                    )
                )
        for host in claim.hosts:
            owner = host_owner.setdefault(host, key)
            if owner != key:
                problems.append(
                    Problem(
                        claim.source,
                        "spec.tls",
                        f"host {host!r} already has the certificate of Secret "
                        f"{owner[0]}/{owner[1]}",
                        "Conflict",
                    )
                )
                continue
            hosts_of[key].add(host)
    certificates = tuple(
        sorted(
            Certificate(
                certificate_name(namespace, name), pem, tuple(sorted(hosts_of[(namespace, name)]))
            )
            for (namespace, name), pem in pems.items()
            if hosts_of[(namespace, name)]
        )
    )
    return certificates, {host: key[0] for key, hosts in hosts_of.items() for host in hosts}


def _sni_under_wildcards(
    certificates: tuple[Certificate, ...],
    owners: Mapping[str, str],
    host_tls: tuple[HostTLS, ...],
    routes: Iterable[Route],
) -> tuple[tuple[Certificate, ...], tuple[HostTLS, ...]]:
    """Which certificate a host with rules but no certificate of its own gets by SNI.

    HAProxy picks a crt-list line by exact SNI, then by its wildcard form.
    ingress-nginx gives a server block a certificate only from an Ingress
    with a rule for its host, so another tenant's ``*.p`` certificate must
    not answer for ``b.p`` (its holder's name would vouch for b's pods):
    a host that the wildcard Secret's namespace has no rule for gets an
    empty :class:`HostTLS`, that is a default-certificate line of its own
    (config.crt_list; a change reloads, like other crt-list options). A
    host the wildcard's namespace serves keeps the wildcard, as
    ingress-nginx's server block for it takes the certificate from that
    namespace's Ingress, other Ingresses on the host or not (so no other
    tenant can take it away by adding a path). One with handshake options
    (a client CA, ciphers) joins the wildcard certificate's hosts, so its
    line carries both; before, it fell to the default certificate.
    """
    by_name = {host: cert for cert in certificates for host in cert.hosts}
    if not any(host.startswith("*.") for host in by_name):
        return certificates, host_tls  # the usual case: one pass over the hosts only
    options = {tls.host: tls for tls in host_tls}
    serving: dict[str, set[str]] = defaultdict(set)  # hosts under a wildcard → namespaces
    for route in routes:
        host = route.host
        if (
            host
            and host not in by_name
            and not host.startswith("*.")
            and "." in host
            and "*." + host.split(".", 1)[1] in by_name
        ):
            serving[host].add(route.source.namespace)
    joined: dict[str, list[str]] = defaultdict(list)  # certificate name → hosts
    shielded = []
    for host, namespaces in sorted(serving.items()):
        wildcard = "*." + host.split(".", 1)[1]
        cert = by_name[wildcard]
        if owners[wildcard] in namespaces:
            if host in options:
                joined[cert.name].append(host)
        elif host not in options:
            shielded.append(HostTLS(host))
    if not joined and not shielded:
        return certificates, host_tls
    certificates = tuple(
        dataclasses.replace(cert, hosts=tuple(sorted((*cert.hosts, *joined[cert.name]))))
        if cert.name in joined
        else cert
        for cert in certificates
    )
    return certificates, tuple(sorted((*host_tls, *shielded)))


# --- helpers -------------------------------------------------------------------


def _well_named(
    view: ClusterView, problems: list[Problem], memo: ObjectMemo | None = None
) -> ClusterView:
    """The view without objects whose metadata the API server would refuse.

    Names become file and backend names and go into log lines and Events, so
    an object with a malformed one (possible in offline input) is left out
    with a problem whose reference shows the name only as a short repr. With
    ``memo``, an object that passed last time passes again unchecked: the
    same object (never modified) has the same metadata.
    """

    def keep(kind: str, objects: tuple[KubeObject, ...]) -> tuple[KubeObject, ...]:
        passed = memo.named.get(kind, {}) if memo is not None else {}
        kept = []
        for obj in objects:
            if passed.get(id(obj)) is obj:
                kept.append(obj)
                continue
            try:
                validate.object_metadata(kind, obj)
            except Invalid as error:
                meta = obj.get("metadata")
                meta = meta if isinstance(meta, Mapping) else {}
                ref = ObjectRef(
                    kind,
                    validate.printable(meta.get("namespace", "")),
                    validate.printable(meta["name"]) if "name" in meta else "(unnamed)",
                )
                problems.append(Problem(ref, error.field, error.reason, "Rejected"))
            else:
                kept.append(obj)
        if memo is not None:
            memo.named[kind] = {id(obj): obj for obj in kept}
        return tuple(kept)

    return ClusterView.of(
        {kind.field: keep(kind.kind, view.objects(kind)) for kind in WATCHED},
        view.configmap,
        view.header_configmaps,
    )


def _ref(kind: str, obj: KubeObject) -> ObjectRef:
    meta = obj.get("metadata") or {}
    return ObjectRef(
        kind, str(meta.get("namespace", "")), str(meta.get("name", "")), str(meta.get("uid", ""))
    )


def _age_key(obj: KubeObject) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    # RFC 3339 UTC timestamps sort chronologically as strings.
    return (
        str(meta.get("creationTimestamp", "")),
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
    )


def _meta_key(obj: KubeObject) -> tuple[str, str] | None:
    """(namespace, name), or None for metadata that is not a mapping (offline input)."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return None
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


def tls_secrets_named(view: ClusterView) -> list[KubeObject]:
    """The Secrets of ``view`` that some Ingress names in ``spec.tls``, once each.

    What a translation of ``view`` will check as certificates (give or take
    Ingresses it leaves out), for :meth:`CertificateCache.check_ahead`: a
    guess read leniently, never a check (translate validates every field,
    metadata included: this runs before it, so it skips what it cannot read).
    """
    secrets = {key: s for s in view.secrets if (key := _meta_key(s)) is not None}
    named: dict[tuple[str, str], KubeObject] = {}
    for ingress in view.ingresses:
        ingress_key = _meta_key(ingress)
        spec = ingress.get("spec")
        if ingress_key is None or not isinstance(spec, Mapping):
            continue
        namespace = ingress_key[0]
        entries = spec.get("tls")
        for entry in entries if isinstance(entries, list) else ():
            name = entry.get("secretName") if isinstance(entry, Mapping) else None
            key = (namespace, name if isinstance(name, str) else "")
            if key in secrets:
                named.setdefault(key, secrets[key])
    return list(named.values())


def _by_name(objects: Iterable[KubeObject]) -> dict[tuple[str, str], KubeObject]:
    result: dict[tuple[str, str], KubeObject] = {}
    for obj in objects:
        meta = obj.get("metadata") or {}
        result[(str(meta.get("namespace", "")), str(meta.get("name", "")))] = obj
    return result


def _slice_service(endpoint_slice: KubeObject) -> tuple[str, str] | None:
    """The (namespace, Service name) an EndpointSlice belongs to, by its label."""
    meta = endpoint_slice.get("metadata") or {}
    labels = meta.get("labels") or {}
    service = labels.get(SERVICE_NAME_LABEL) if isinstance(labels, Mapping) else None
    return (str(meta.get("namespace", "")), service) if isinstance(service, str) else None


def _slices_by_service(slices: Iterable[KubeObject]) -> dict[tuple[str, str], list[KubeObject]]:
    result: dict[tuple[str, str], list[KubeObject]] = defaultdict(list)
    for endpoint_slice in sorted(slices, key=lambda s: _age_key(s)[1:]):
        key = _slice_service(endpoint_slice)
        if key is not None:
            result[key].append(endpoint_slice)
    return result
