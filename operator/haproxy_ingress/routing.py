"""Routes → the map files the frontend looks up (pure).

The frontend looks up, in this order, for the request's exact host, then its
wildcard form (``*.`` + the host without its first label), then no host:
the exact map with ``map_str`` (whole key), then the prefix map with ``map_beg``
(longest key first). The first hit picks the backend. So the most specific host
with a matching path wins, and within a host the longest path wins with
``Exact`` beating ``Prefix`` at equal length, as the Ingress spec asks.

Path types map to keys this way (``h`` is the host key):

* ``Exact /p``            → exact ``h/p``
* ``Prefix /p`` (or /p/)  → exact ``h/p`` and prefix ``h/p/``: element-wise, so
  ``/p`` matches ``/p``, ``/p/`` and ``/p/q`` but never ``/pq``
* ``Prefix /``            → prefix ``h/``
* ``ImplementationSpecific /p`` → prefix ``h/p``: a plain string prefix, so
  ``/p`` also matches ``/pq`` (what ``path_beg`` users expect)

When two route kinds produce the same key, ``Exact`` beats ``Prefix`` in the
exact map and ``Prefix`` beats ``ImplementationSpecific`` in the prefix map.

A host that has rules owns its requests: paths are looked up in one scope
only (the exact host if the ``hosts`` map has it, else its wildcard form if
that has rules, else no host). So a request for ``a.example.com`` never
reaches a backend of a ``*.example.com`` or host-less rule because
``a.example.com``'s own rules missed its path; it gets the default backend,
as in ingress-nginx. The frontend looks the path up under the request's own
host first, with no ``hosts`` lookup: only that host's keys can match there
(a host holds no ``/``; other scopes start with ``*.`` or ``/``). Only when
that finds nothing does it ask the ``hosts`` map whether the host has rules
(the miss stands) or not (the wildcard form, then no host, are tried; the
map values each host by itself, so one lookup both tests and sets the
scope). At 10k Ingresses that saves a tree lookup over 10k keys on most
requests (bench/README.md).

A map value is the backend name, followed by ``~`` and the route's access
policy when it has one, and by a second ``~`` and its options' name when it
has options (``be~~o…`` without a policy); the frontend splits it (``~``
never occurs in names). Each option is a map keyed by the options' name
(:func:`option_maps`); string values are base64 in the map, so no byte of
them is ever read as map or configuration syntax, and the frontend decodes
them where it uses them (``b64dec``).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping

from haproxy_ingress.cors import cors_maps
from haproxy_ingress.headers import encode as encode_headers
from haproxy_ingress.model import ROUTE_OPTION_MAPS, PathType, Route, RouteOptions, RoutingMaps
from haproxy_ingress.regex import literal_prefix, scoped_key

# Lower wins when two routes produce the same key.
_EXACT_PRIORITY = {PathType.EXACT: 0, PathType.PREFIX: 1}
_PREFIX_PRIORITY = {PathType.PREFIX: 0, PathType.IMPLEMENTATION_SPECIFIC: 1}


def routing_maps(
    routes: Iterable[Route],
    redirects: Iterable[str] = (),
    *,
    tls: Iterable[str] = (),
    www: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> RoutingMaps:
    """Build the maps; ``routes`` must come oldest-first (the older claim wins).

    ``redirects``: TLS hosts whose plain-HTTP requests are redirected to https;
    ``tls``: the hosts of spec.tls (HSTS); ``www``: from-to-www-redirect's
    host → the host it redirects to.
    """
    exact: dict[str, tuple[int, str]] = {}
    prefix: dict[str, tuple[int, str]] = {}
    hosts: set[str] = set()
    # (literal prefix length, order) → (key, value): map_reg takes the first match.
    regex: dict[str, tuple[int, int, str]] = {}

    def claim(table: dict[str, tuple[int, str]], key: str, priority: int, backend: str) -> None:
        if key not in table or priority < table[key][0]:
            table[key] = (priority, backend)

    for route in routes:
        host = route.host
        if host:
            hosts.add(host)
        value = route.backend
        if route.policy or not route.options.empty:
            value += f"~{route.policy}"
        if not route.options.empty:
            value += f"~{route.options.name}"
        if route.regex:
            key = scoped_key(host, route.path)
            if key not in regex:
                specific = len(literal_prefix(route.path))
                regex[key] = (specific, len(regex), f"{value}@{specific}")
            continue
        if route.path_type is PathType.EXACT:
            claim(exact, host + route.path, _EXACT_PRIORITY[PathType.EXACT], value)
        elif route.path_type is PathType.PREFIX:
            trimmed = route.path.rstrip("/")
            if trimmed:
                claim(exact, host + trimmed, _EXACT_PRIORITY[PathType.PREFIX], value)
            claim(prefix, host + trimmed + "/", _PREFIX_PRIORITY[PathType.PREFIX], value)
        else:
            claim(
                prefix,
                host + route.path,
                _PREFIX_PRIORITY[PathType.IMPLEMENTATION_SPECIFIC],
                value,
            )
    # A regex route competes with the prefix routes of its scope by its
    # literal prefix: a prefix route's value carries its path's length.
    regex_scopes = {route.host for route in routes if route.regex}
    prefix_entries = [
        (
            key,
            value
            if _scope_of(key) not in regex_scopes
            else f"{value}@{len(key) - len(_scope_of(key))}",
        )
        for key, (_, value) in prefix.items()
    ]
    return RoutingMaps(
        exact=tuple(sorted((key, backend) for key, (_, backend) in exact.items())),
        prefix=_longest_first(prefix_entries),
        regex=tuple(
            (key, value)
            for key, (_, _, value) in sorted(regex.items(), key=lambda kv: (-kv[1][0], kv[1][1]))
        ),
        redirect=tuple((host, "https") for host in sorted(set(redirects))),
        # Valued by itself: the frontend takes its scope from the lookup.
        hosts=tuple((host, host) for host in sorted(hosts)),
        tls=tuple((host, "tls") for host in sorted(set(tls))),
        www=tuple(sorted((www or {}).items())),
        headers=tuple(sorted((headers or {}).items())),
        options=option_maps(route.options for route in routes),
        cors=cors_maps(route.options for route in routes),
    )


def _scope_of(key: str) -> str:
    """The host part of a map key (everything before the path's first '/')."""
    return key[: key.index("/")] if "/" in key else key


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def option_maps(
    all_options: Iterable[RouteOptions],
) -> tuple[tuple[tuple[str, str], ...], ...]:
    """The option maps' entries, in ROUTE_OPTION_MAPS order."""
    tables: tuple[list[tuple[str, str]], ...] = tuple([] for _ in ROUTE_OPTION_MAPS)
    (
        https,
        redirect,
        code,
        app_root,
        rewrite,
        vhost,
        prefix,
        body,
        rewrite_regex,
        canary,
        canary_threshold,
        canary_header,
        canary_value,
        canary_pattern,
        canary_cookie,
        canary_sticky,
        keep_slash,
        no_log,
        response_headers,
        unavailable,
        error_backend,
        error_codes,
        error_source,
        fallback,
        snippet,
        redirect_from,
        redirect_to,
        cookie_domain,
        cookie_path,
        connection,
        stream,
        plain,
    ) = tables
    for options in sorted({o for o in all_options if not o.empty}, key=lambda o: o.name):
        name = options.name
        if options.force_https:
            https.append((name, "1"))
        if options.plain_http:
            plain.append((name, "1"))
        if options.permanent_redirect is not None:
            redirect.append((name, _b64(options.permanent_redirect)))
            code.append((name, str(options.permanent_redirect_code)))
        elif options.temporal_redirect is not None:
            redirect.append((name, _b64(options.temporal_redirect)))
            code.append((name, str(options.temporal_redirect_code)))
        for table, value in (
            (app_root, options.app_root),
            (rewrite, options.rewrite_target),
            (vhost, options.upstream_vhost),
            (prefix, options.x_forwarded_prefix),
            (snippet, options.snippet),
        ):
            if value is not None:
                table.append((name, _b64(value)))
        # proxy_redirect: off unless both ends are set.
        if options.proxy_redirect_from is not None and options.proxy_redirect_to is not None:
            redirect_from.append((name, _b64(options.proxy_redirect_from)))
            redirect_to.append((name, _b64(options.proxy_redirect_to)))
        for table, pair in (
            (cookie_domain, options.proxy_cookie_domain),
            (cookie_path, options.proxy_cookie_path),
        ):
            if pair is not None:
                table.append((name, _b64(" ".join(pair))))
        if options.connection_header is not None:
            connection.append((name, options.connection_header))
        if not options.request_buffering:
            stream.append((name, "1"))
        if options.keep_slash:
            keep_slash.append((name, "1"))
        if not options.access_log:
            no_log.append((name, "1"))
        if options.response_headers:
            response_headers.append((name, encode_headers(options.response_headers)))
        if options.unavailable:
            unavailable.append((name, "1"))
        if options.error_backend is not None:
            error_backend.append((name, options.error_backend))
            if options.error_codes:
                error_codes.append((name, ",".join(str(code) for code in options.error_codes)))
            if options.error_source is not None:
                error_source.append((name, options.error_source))
            if options.fallback:
                fallback.append((name, "1"))
        if options.body_max is not None:
            body.append((name, str(options.body_max)))
        if options.path_regex is not None:
            rewrite_regex.append((name, _b64(options.path_regex)))
        if options.canary is not None:
            rule = options.canary
            canary.append((name, rule.backend))
            canary_threshold.append((name, str(rule.threshold)))
            for table, value in (
                (canary_header, rule.header),
                (canary_value, rule.header_value),
                (canary_pattern, rule.header_pattern),
                (canary_cookie, rule.cookie),
            ):
                if value is not None:
                    table.append((name, _b64(value)))
            if rule.sticky_cookie is not None:
                # "<name>\n<attributes>\n<sides>": the values a client may keep.
                sides = ("1" if rule.sticky_canary else "") + ("0" if rule.sticky_main else "")
                canary_sticky.append(
                    (name, _b64(f"{rule.sticky_cookie}\n{rule.sticky_attributes}\n{sides}"))
                )
    if not any(tables):
        return ()  # RoutingMaps' default: the same files, all empty
    return tuple(tuple(table) for table in tables)


def _longest_first(entries: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    # HAProxy indexes map_beg keys in a prefix tree (longest match wins whatever
    # the order), but a file read top-down by a human should say the same.
    return tuple(sorted(entries, key=lambda entry: (-len(entry[0]), entry[0])))


def route_key(route: Route) -> tuple[str, str, PathType]:
    """What two Ingresses must not both claim: host, path and path type."""
    path = route.path
    if route.path_type is PathType.PREFIX:
        path = path.rstrip("/") or "/"
    return (route.host, path, route.path_type)
