"""The applied state on disk, so a restarted controller can adopt a running HAProxy.

The applied state is plain frozen data; it is written as JSON next to the
files it was rendered into, after every successful apply. A controller that
finds HAProxy still running (it restarted, HAProxy did not) reads it back and
plans against it instead of reloading. Anything unreadable means "unknown",
which costs one reload, never a wrong plan.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from typing import Any

from haproxy_ingress.memo import per_object
from haproxy_ingress.model import (
    AccessPolicy,
    AppliedState,
    BackendLayout,
    BackendSettings,
    Canary,
    Certificate,
    ClientAuth,
    Cors,
    Endpoint,
    ExternalAuth,
    GlobalSettings,
    HostTLS,
    RateLimit,
    RouteOptions,
    RoutingMaps,
    ServerState,
    Slots,
    Structure,
    UpstreamTLS,
)

# 4: tls, www and headers maps; keep-slash, no-log, headers, 503 option maps;
# 5: access control (policies with auth, limits, external auth; deny and CORS maps)
# 6: proxy-ssl-ciphers/-protocols; proxy_redirect and proxy_cookie_* option maps;
#    the ssl-passthrough pool and its SNI map; client certificates (policies'
#    client_auth, host_tls, the client-CA sni map); owner-named policies;
#    checks_shed
# 7: servers added at run time (slots past BackendLayout.slots), check_stretch
# 8: frontend_maps (the optional maps whose rules haproxy.cfg has)
# 9: route_policies (whether haproxy.cfg reads routes' access policies); the
#    hosts map values each host by itself
FORMAT = 9


def dump(state: AppliedState) -> bytes:
    """The state as compact JSON (:func:`chunks`, joined)."""
    return b"".join(chunks(state))


def chunks(state: AppliedState) -> Iterator[bytes]:
    """The state as compact JSON, in pieces that are each small.

    At 10k Ingresses the state is ~14 MB. One ``json.dumps`` of it runs in C
    without releasing the GIL for ~0.5 s, and the writer thread that calls
    this would stall the event loop that long; encoding backend by backend
    and map by map lets the loop in between. The pieces go to the file one
    by one (files.atomic_write_chunks): joined, then encoded, they were 40-50
    MiB of the controller's peak memory at 10k. Field order is fixed, so the
    output is deterministic without sorting keys.
    """

    def encode(value: object) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    def members(pairs: Iterable[tuple[str, Iterable[bytes]]]) -> Iterator[bytes]:
        yield b"{"
        for index, (key, value) in enumerate(pairs):
            yield (b"," if index else b"") + encode(key) + b":"
            yield from value

    def array(items: Iterable[bytes]) -> Iterator[bytes]:
        yield b"["
        for index, item in enumerate(items):
            yield (b"," if index else b"") + item
        yield b"]"

    def closed(parts: Iterator[bytes]) -> Iterator[bytes]:
        yield from parts
        yield b"}"

    servers = (
        (name, (encode([None if s is None else _endpoint(s) for s in slots]),))
        for name, slots in sorted(state.servers.items())
    )
    maps = (
        (field.name, (encode(_plain(getattr(state.maps, field.name))),))
        for field in dataclasses.fields(state.maps)
    )
    # Layouts share their settings objects (an Ingress's, the ConfigMap's):
    # each is made plain once, not per backend (0.35 s of 0.6 at 10k).
    plain = per_object(dataclasses.asdict)

    def layout(item: BackendLayout) -> bytes:
        return encode({"name": item.name, "settings": plain(item.settings), "slots": item.slots})

    structure = (
        (
            field.name,
            array(layout(item) for item in getattr(state.structure, field.name))
            if field.name in _LAYOUTS
            else (encode(_plain(getattr(state.structure, field.name))),),
        )
        for field in dataclasses.fields(state.structure)
    )
    yield from closed(
        members(
            (
                ("format", (encode(FORMAT),)),
                ("structure", closed(members(structure))),
                ("servers", closed(members(servers))),
                ("maps", closed(members(maps))),
                (
                    "certificates",
                    array(encode(dataclasses.asdict(c)) for c in state.certificates),
                ),
                ("sni", (encode([list(entry) for entry in state.sni]),)),
            )
        )
    )


_LAYOUTS = frozenset({"backends", "passthrough"})  # Structure's tuples of BackendLayout


def _endpoint(slot: Endpoint) -> dict[str, object]:
    """``dataclasses.asdict(slot)``, field by field: 50,000 slots at 10k Ingresses took
    0.5 s through ``asdict``'s generic recursion, on every write of the state."""
    return {"address": slot.address, "port": slot.port, "state": slot.state, "target": slot.target}


def _plain(value: object) -> object:
    """What ``dataclasses.asdict`` makes of one field's value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def load(data: bytes) -> AppliedState | None:
    """The state, or None if it is not one this version wrote."""
    try:
        body = json.loads(data)
        if body.get("format") != FORMAT:
            return None
        return _state(body)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _state(body: dict[str, Any]) -> AppliedState:
    structure = body["structure"]
    settings = dict(structure["settings"])
    settings["backend"] = _backend_settings(settings["backend"])
    route = dict(settings["route"])
    if route.get("canary") is not None:
        route["canary"] = Canary(**route["canary"])
    if route.get("cors") is not None:
        route["cors"] = Cors(**{**route["cors"], "origins": tuple(route["cors"]["origins"])})
    route["response_headers"] = tuple((name, value) for name, value in route["response_headers"])
    route["error_codes"] = tuple(route["error_codes"])
    for key in ("proxy_cookie_domain", "proxy_cookie_path"):
        if route[key] is not None:
            route[key] = (str(route[key][0]), str(route[key][1]))
    settings["route"] = RouteOptions(**route)
    settings["proxy_real_ip_cidr"] = tuple(settings["proxy_real_ip_cidr"])
    if "no_tls_redirect_locations" in settings:  # absent from a state saved before it
        settings["no_tls_redirect_locations"] = tuple(settings["no_tls_redirect_locations"])
    settings["deny_sources"] = tuple(settings["deny_sources"])
    settings["ssl_protocols"] = tuple(settings["ssl_protocols"])
    settings["allowed_response_headers"] = tuple(settings["allowed_response_headers"])
    if settings.get("global_auth_response_headers") is not None:  # absent before it
        settings["global_auth_response_headers"] = tuple(settings["global_auth_response_headers"])
    for key in ("add_headers", "proxy_set_headers"):
        if settings[key] is not None:
            settings[key] = (str(settings[key][0]), str(settings[key][1]))
    if settings["default_policy"] is not None:
        settings["default_policy"] = _policy(settings["default_policy"])
    return AppliedState(
        structure=Structure(
            settings=GlobalSettings(**settings),
            backends=tuple(
                BackendLayout(b["name"], _backend_settings(b["settings"]), int(b["slots"]))
                for b in structure["backends"]
            ),
            default_backend=structure["default_backend"],
            policies=tuple(_policy(p) for p in structure["policies"]),
            upstream_tls=tuple(UpstreamTLS(**u) for u in structure["upstream_tls"]),
            passthrough=tuple(
                BackendLayout(b["name"], _backend_settings(b["settings"]), int(b["slots"]))
                for b in structure["passthrough"]
            ),
            host_tls=tuple(HostTLS(**h) for h in structure["host_tls"]),
            checks_shed=bool(structure["checks_shed"]),
            check_stretch=int(structure["check_stretch"]),
            frontend_maps=tuple(str(name) for name in structure["frontend_maps"]),
            route_policies=bool(structure["route_policies"]),
        ),
        servers={name: _slots(slots) for name, slots in body["servers"].items()},
        maps=RoutingMaps(
            exact=tuple((k, v) for k, v in body["maps"]["exact"]),
            prefix=tuple((k, v) for k, v in body["maps"]["prefix"]),
            redirect=tuple((k, v) for k, v in body["maps"]["redirect"]),
            hosts=tuple((k, v) for k, v in body["maps"]["hosts"]),
            regex=tuple((k, v) for k, v in body["maps"]["regex"]),
            deny=tuple((k, v) for k, v in body["maps"]["deny"]),
            cors=tuple(tuple((k, v) for k, v in entries) for entries in body["maps"]["cors"]),
            tls=tuple((k, v) for k, v in body["maps"]["tls"]),
            www=tuple((k, v) for k, v in body["maps"]["www"]),
            headers=tuple((k, v) for k, v in body["maps"]["headers"]),
            sni=tuple((k, v) for k, v in body["maps"]["sni"]),
            options=tuple(tuple((k, v) for k, v in entries) for entries in body["maps"]["options"]),
        ),
        certificates=tuple(
            Certificate(c["name"], c["pem"], tuple(c["hosts"])) for c in body["certificates"]
        ),
        sni=tuple((str(host), str(backend)) for host, backend in body["sni"]),
    )


def _backend_settings(raw: dict[str, Any]) -> BackendSettings:
    protocols = raw["proxy_ssl_protocols"]
    return BackendSettings(
        **{
            **raw,
            "retry_on": tuple(raw["retry_on"]),
            "proxy_ssl_protocols": None if protocols is None else (protocols[0], protocols[1]),
        }
    )


def _policy(raw: dict[str, Any]) -> AccessPolicy:
    return AccessPolicy(
        allow_sources=tuple(raw["allow_sources"]),
        deny_sources=tuple(raw["deny_sources"]),
        basic_auth=bool(raw["basic_auth"]),
        realm=str(raw["realm"]),
        users=tuple((str(u), str(h)) for u, h in raw["users"]),
        apr1_users=tuple((str(u), str(h)) for u, h in raw["apr1_users"]),
        satisfy_any=bool(raw["satisfy_any"]),
        limit=RateLimit(**{**raw["limit"], "exempt": tuple(raw["limit"]["exempt"])}),
        external=ExternalAuth(
            **{
                **raw["external"],
                "response_headers": tuple(raw["external"]["response_headers"]),
            }
        ),
        client_auth=ClientAuth(**raw["client_auth"]) if raw["client_auth"] is not None else None,
        owner=str(raw["owner"]),
    )


def _slots(raw: list[dict[str, Any] | None]) -> Slots:
    return tuple(
        None
        if slot is None
        else Endpoint(
            slot["address"], int(slot["port"]), ServerState(slot["state"]), slot.get("target", "")
        )
        for slot in raw
    )
