"""The desired state: what HAProxy should do, as frozen, sorted, serialisable data.

This is the intermediate representation between :mod:`translate` (Kubernetes
objects in) and :mod:`plan` / :mod:`render` (HAProxy out). Every collection is a
sorted tuple so that the same cluster always yields equal values and the same
rendered bytes. Nothing here is user text that has not passed :mod:`validate`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class ServerState(enum.StrEnum):
    """A server slot's administrative state, in HAProxy's runtime-API words."""

    READY = "ready"  # takes new traffic
    DRAIN = "drain"  # finishes what it has (and sticky clients), takes no new clients
    MAINT = "maint"  # takes nothing


class PathType(enum.StrEnum):
    EXACT = "Exact"
    PREFIX = "Prefix"
    IMPLEMENTATION_SPECIFIC = "ImplementationSpecific"


@dataclass(frozen=True, order=True)
class ObjectRef:
    """A Kubernetes object that a problem or a route comes from."""

    kind: str
    namespace: str
    name: str
    uid: str = field(default="", compare=False)

    def __str__(self) -> str:
        return (
            f"{self.kind} {self.namespace}/{self.name}"
            if self.namespace
            else (f"{self.kind} {self.name}")
        )


@dataclass(frozen=True, order=True)
class Problem:
    """Why (part of) an object was left out or cannot be served as written."""

    source: ObjectRef
    field: str
    reason: str
    # The Kubernetes Event reason users filter on (`kubectl get events`).
    event: str = "Invalid"

    @property
    def message(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


@dataclass(frozen=True, order=True)
class Endpoint:
    """One pod address a backend sends traffic to."""

    address: str
    port: int
    state: ServerState = ServerState.READY
    target: str = field(default="", compare=False)  # the pod name, for logs only

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)


@dataclass(frozen=True)
class BackendSettings:
    """Per-backend HAProxy tuning; structural (a change needs a reload)."""

    balance: str = "leastconn"
    timeout_connect: str = "5s"
    timeout_server: str = "60s"
    # 9 of 10 pods gone at once: each retry may pick another dead pod (or its
    # slot twin) until passive checks mark them down; 5 sufficed before twins,
    # 10 with them (measured with bench/churn.py at 2,000 req/s, see README).
    retries: int = 10
    retry_on: tuple[str, ...] = ("conn-failure", "empty-response", "response-timeout")
    redispatch: bool = True
    drain: bool = True  # terminating-but-serving endpoints drain (else: maintenance)
    health_check: bool = True
    check_inter: str = "2s"
    check_fall: int = 3
    check_rise: int = 2
    # Passive checks: real traffic errors count against a server (nginx's max_fails).
    observe: str = "layer4"  # none | layer4 (connection errors) | layer7 (also 5xx)
    error_limit: int = 1  # one refused connection marks a pod down; checks bring it back
    on_error: str = "mark-down"
    slowstart: str | None = None
    maxconn: int | None = None
    # How HAProxy talks to the pods (ingress-nginx's backend-protocol):
    # HTTP, HTTPS, GRPC, GRPCS or H2C. TLS to pods is not verified, as nginx's
    # proxy_ssl_verify defaults to off.
    protocol: str = "HTTP"
    # Sticky sessions (ingress-nginx's affinity: cookie): HAProxy inserts a
    # cookie derived from the pod's address (dynamic cookies), so a client
    # stays on its pod across reloads and slot moves.
    affinity: str | None = None  # None or "cookie"
    cookie_name: str = "INGRESSCOOKIE"
    cookie_path: str | None = None
    cookie_domain: str | None = None
    cookie_samesite: str | None = None  # None | Lax | Strict
    cookie_secure: bool = False
    cookie_max_age: int | None = None  # seconds: a Max-Age attribute
    # SameSite=None left out for browsers that reject it (ingress-nginx's
    # session-cookie-conditional-samesite-none and its list of user agents).
    cookie_conditional_samesite_none: bool = False
    # Consistent hashing (ingress-nginx's upstream-hash-by): an HAProxy
    # sample expression for ``balance hash`` (registry.upstream_hash_by), or
    # None for ``balance``.
    hash_by: str | None = None
    # Send to the Service's cluster IP instead of its pods (service-upstream):
    # kube-proxy balances; endpoint changes do not touch the backend.
    service_upstream: bool = False
    # TLS to the pods (ingress-nginx's proxy-ssl-*), with HTTPS or GRPCS: a
    # client certificate and CA from a Secret of the Ingress's namespace
    # (UpstreamTLS.name), verification of the pod's certificate, its name.
    proxy_ssl_secret: str | None = None  # "namespace/name"
    proxy_ssl_verify: bool = False
    proxy_ssl_verify_depth: int = 1
    proxy_ssl_name: str | None = None
    proxy_ssl_server_name: bool = False
    # proxy-ssl-ciphers (an OpenSSL list for TLS 1.2 and below, checked by
    # auth.ssl_ciphers) and proxy-ssl-protocols (min, max): None is HAProxy's
    # defaults.
    proxy_ssl_ciphers: str | None = None
    proxy_ssl_protocols: tuple[str, str] | None = None

    @property
    def twins(self) -> bool:
        """Whether each slot ``sN`` has a twin ``tN``: same address, ``track sN``, no check.

        HAProxy 2.6 waits min(timeout connect, 1 s) before retrying after a
        refused connection whenever at most one server is left up, even when
        the retry goes to another server (src/backend.c, back_handle_st_cer:
        ``srv_act <= 1``). A passive check marks the refusing pod down before
        that test, so a request meeting the last-but-one pod as it dies waited
        ~1 s. With twins, one live pod is two servers up, the retry goes to it
        at once, and ``timeout connect`` stays long enough for slow backends.
        ``track`` needs the tracked server to have a check; a server maxconn of
        1 cannot be split between a slot and its twin; with cookie affinity a
        twin would get its slot's dynamic cookie, and HAProxy warns about every
        such pair ("two equal cookies") as if the key were wrong.
        """
        return self.health_check and self.maxconn != 1 and self.affinity != "cookie"

    def twins_at(self, slots: int) -> bool:
        """Whether a backend of ``slots`` server slots has its twins (see :attr:`twins`).

        Only from two slots: a backend with one slot has one pod at most,
        and when it fails there is no other to retry on, twin or not (an L7
        retry goes to the same pod either way). A twin is not free: under
        leastconn an idle server is always picked first, so a pod's requests
        alternate between slot and twin and their idle connections, which
        cost ~4 µs of HAProxy CPU per request with one pod (bench/hand_config.py).
        A backend that grows to two slots at run time gets the twin of its
        first slot then (plan.AddServer). With a maxconn, which slot and twin
        share, every slot has its twin from the start.
        """
        return self.twins and (slots >= 2 or self.maxconn is not None)

    @property
    def runtime_growth(self) -> bool:
        """Whether slots may be added at run time (``add server``) instead of reloading.

        HAProxy 2.6 refuses dynamic servers in a backend whose algorithm is
        not dynamic: ``balance source`` hashes without ``hash-type
        consistent`` (``upstream-hash-by`` renders consistent hashing, so it
        can). Such backends keep power-of-two headroom and reload to grow.
        """
        return self.hash_by is not None or self.balance != "source"

    @property
    def slot_maxconn(self) -> tuple[int, int] | None:
        """Server maxconn of a slot and of its twin: together, the pod's limit."""
        if self.maxconn is None:
            return None
        if not self.twins:
            return (self.maxconn, 0)
        return ((self.maxconn + 1) // 2, self.maxconn // 2)


@dataclass(frozen=True, order=True)
class ServiceRef:
    """A Service port that Ingress backends point to; identifies one HAProxy backend."""

    namespace: str
    name: str
    port: str  # a port number as decimal text, or a port name

    @property
    def backend_name(self) -> str:
        # Namespaces, Service names and port names never contain '_', so this
        # is injective: two different ServiceRefs can never share a backend.
        return f"be_{self.namespace}_{self.name}_{self.port}"


# Certificate file stems longer than this get a hashed form. A file name is at
# most 255 bytes (NAME_MAX); "<stem>.pem" must fit, and so must the temporary
# ".<stem>.pem.XXXXXXXX.tmp" that atomic_write renames into place (+18).
MAX_CERTIFICATE_STEM = 200
_HASHED_PREFIX = 64


def certificate_name(namespace: str, secret: str) -> str:
    """The file stem of a Secret's certificate, injective and at most MAX_CERTIFICATE_STEM.

    Short names stay readable: ``<namespace>_<secret>``. A namespace (63) and
    a Secret name (253) can make that 317 characters, so longer ones become
    ``<namespace>_<first 64 of secret>_<sha256 of namespace/secret>``.
    Kubernetes names never contain '_': a readable stem has exactly one, a
    hashed one exactly two, so the two forms cannot meet, readable stems
    are injective by construction, and two hashed ones would need a SHA-256
    collision.
    """
    readable = f"{namespace}_{secret}"
    if len(readable) <= MAX_CERTIFICATE_STEM:
        return readable
    digest = hashlib.sha256(f"{namespace}/{secret}".encode()).hexdigest()
    return f"{namespace}_{secret[:_HASHED_PREFIX]}_{digest}"


@dataclass(frozen=True, order=True)
class UpstreamTLS:
    """A proxy-ssl-secret's files: the client certificate and the CA (re-serialised PEM)."""

    secret: str  # "namespace/name", as BackendSettings.proxy_ssl_secret
    name: str  # file stem (certificate_name), injective
    pem: str = ""  # chain + key; "" if the Secret has none
    ca: str = ""  # "" if it has no ca.crt


@dataclass(frozen=True)
class Backend:
    name: str
    service: ServiceRef
    settings: BackendSettings
    endpoints: tuple[Endpoint, ...]  # sorted by (address, port)


@dataclass(frozen=True, order=True)
class Passthrough:
    """ssl-passthrough: TLS connections whose SNI is ``host`` go, unterminated, to these pods.

    Exact host only (lowered, as the SNI is looked up): a wildcard or a
    missing SNI never reaches a passthrough backend. The backend is one of
    a pre-allocated pool (plan.py assigns it), so a host costs no reload.
    """

    host: str
    service: ServiceRef
    endpoints: tuple[Endpoint, ...]  # sorted by (address, port)
    source: ObjectRef = field(compare=False)


def passthrough_backend_name(index: int) -> str:
    """The ``index``-th (1-based) backend of the passthrough pool.

    Three words where a Service's backend name has four (ServiceRef.backend_name:
    namespaces and names never contain '_'), so the two can never meet.
    """
    return f"be_passthrough_{index}"


@dataclass(frozen=True, order=True)
class RateLimit:
    """ingress-nginx's limit-rps / limit-rpm / limit-connections for one policy.

    Counted per client address (the trusted one, txn.client) in a stick
    table of the policy's own: a request is let in while the requests let
    in over the last ``burst`` seconds (rps) or ``burst`` minutes (rpm) are
    fewer than ``rate * burst``, so the long-run rate is the set one and a
    burst of ``rate * burst`` passes at once. Denied requests are not
    counted. Each HAProxy replica counts on its own.
    """

    rps: int = 0  # 0: no limit
    rpm: int = 0
    burst: int = 5  # limit-burst-multiplier
    connections: int = 0  # concurrent requests per client
    exempt: tuple[str, ...] = ()  # limit-allowlist: CIDR networks never limited

    @property
    def active(self) -> bool:
        return bool(self.rps or self.rpm or self.connections)


@dataclass(frozen=True, order=True)
class ExternalAuth:
    """ingress-nginx's auth-url: a subrequest decides (ingress.lua, HAProxy's httpclient).

    2xx lets the request in (copying ``response_headers`` onto it), 401 answers
    401 (or redirects to ``signin``), 403 answers 403, anything else — another
    status, a timeout, a refused connection — answers 500: fail closed.
    """

    url: str = ""  # checked by auth.auth_url; "" is off
    method: str = "GET"
    signin: str = ""
    signin_param: str = "rd"  # the query parameter carrying the original URL
    response_headers: tuple[str, ...] = ()
    request_redirect: str = ""
    timeout_ms: int = 5000


# ingress-nginx's auth-tls-verify-client values.
VERIFY_MODES = ("on", "optional", "optional_no_ca", "off")


@dataclass(frozen=True, order=True)
class ClientAuth:
    """ingress-nginx's auth-tls-*: client certificates a route asks for (part of its policy).

    The handshake side (the CA, its CRL) lives on the crt-list line of the
    route's host (:class:`HostTLS`): HAProxy asks for a certificate with
    ``verify optional`` and lets a bad one through the handshake
    (``ca-ignore-err all crt-ignore-err all`` on the bind), so the frontend
    decides per request: 400 (or ``error_page``) like nginx, and 421 when the
    connection was not verified against this CA (its SNI chose another host's
    crt-list line). An empty ``ca`` (unusable Secret) lets nobody in.
    """

    ca_name: str = ""  # HostTLS.ca_name of the CA the connection must have used
    verify: str = "on"  # one of VERIFY_MODES
    depth: int = 1  # auth-tls-verify-depth: intermediates allowed between certificate and CA
    # How many of them the client may send: ``depth`` less the most a chain can
    # take from the CA bundle (tls.bundle_intermediates); ingress.lua counts
    # the non-self-signed certificates of the chain sent (ssl_c_chain_der).
    chain_limit: int = 1
    error_page: str = ""  # a checked URL: failed verifications are redirected there (302)
    pass_cert: bool = False  # the URL-encoded PEM in ssl-client-cert
    match_cn: str = ""  # a checked PCRE2 pattern searched in the subject DN (RFC 2253)


@dataclass(frozen=True, order=True)
class HostTLS:
    """One host's handshake settings: the options of its crt-list line.

    The CA (and CRL) of ``auth-tls-secret``, and the ``ssl-ciphers`` of its
    Ingress; the oldest Ingress that sets them for the host decides. The
    line names the CA file by its Secret, so new content in the same Secret
    (a rotated CA, a fresh CRL) is not a new line: the runtime API replaces
    the files' content (``set``/``commit ssl ca-file``, ``crl-file``).
    """

    host: str  # exact or *.wildcard, as in spec.rules
    secret: str = ""  # "namespace/name" of the CA Secret; "" without client certificates
    crl_file: bool = False  # the line names a CRL file (the Secret has ca.crl)
    ciphers: str | None = None  # OpenSSL cipher list (TLS 1.2 and below)
    ca: str = field(default="", compare=False)  # re-serialised PEM certificates
    crl: str = field(default="", compare=False)  # re-serialised PEM CRLs

    @property
    def ca_name(self) -> str:
        """The file stem of the CA (and CRL) files; "" without client certificates."""
        if not self.secret:
            return ""
        # Two '_' and 24 hex digits: never a certificate_name stem (one '_',
        # or two ending in 64 hex digits) nor an upstream_ one.
        return f"client_ca_{hashlib.sha256(self.secret.encode()).hexdigest()[:24]}"


@dataclass(frozen=True, order=True)
class AccessPolicy:
    """Who may use a route: checked in the frontend, per route, before any backend.

    Access rules belong to routes, not to backends: two Ingresses may send
    different paths to one Service with different rules, and neither can drop
    or weaken the other's (a backend-scoped rule would be lost to a conflict).
    A policy is named by a hash of its content, so the same rule written in
    two Ingresses is one policy, and a route's map entry names it. A policy
    with address lists of its own Ingress (``owner``) is named by the owner
    and the rest of its content instead: its lists live in ACL files that
    the runtime API replaces, so editing a list costs no reload.
    """

    allow_sources: tuple[str, ...] = ()  # CIDR networks, normalised and sorted
    # Networks refused even when allowed or authenticated (denylist-source-range).
    deny_sources: tuple[str, ...] = ()
    # Basic authentication (auth-type: basic). With no users nobody gets in.
    basic_auth: bool = False
    realm: str = ""  # checked by auth.realm: printable, no quotes or backslashes
    # (user, crypt hash) verified by an HAProxy userlist (libcrypt: bcrypt,
    # SHA-256/512 crypt, MD5 crypt, yescrypt) ...
    users: tuple[tuple[str, str], ...] = ()
    # ... and Apache's $apr1$ hashes, which libcrypt lacks: verified in Lua.
    apr1_users: tuple[tuple[str, str], ...] = ()
    # satisfy: any — an allowed source OR valid credentials (else both).
    satisfy_any: bool = False
    limit: RateLimit = RateLimit()
    external: ExternalAuth = ExternalAuth()
    # Client certificates (auth-tls-*); None: not asked for.
    client_auth: ClientAuth | None = None
    # "namespace/name" of the Ingress whose allow- or deny-list this is ("":
    # none of its own); see the class docstring.
    owner: str = ""

    @property
    def name(self) -> str:
        if self.owner:
            # Which lists exist shapes the rules (a reload); their networks do not.
            shape = dataclasses.replace(
                self,
                allow_sources=("*",) if self.allow_sources else (),
                deny_sources=("*",) if self.deny_sources else (),
            )
            digest = hashlib.sha256(repr(shape).encode()).hexdigest()
        elif self == AccessPolicy(self.allow_sources):
            # An allow-list alone keeps the name it had before the other fields.
            digest = hashlib.sha256(repr(self.allow_sources).encode()).hexdigest()
        else:
            digest = hashlib.sha256(repr(self).encode()).hexdigest()
        return f"p{digest[:16]}"

    @property
    def userlist(self) -> str:
        """The HAProxy userlist of this policy's crypt users."""
        return f"ul_{self.name}"


@dataclass(frozen=True, order=True)
class Canary:
    """ingress-nginx's canary rules: which requests of a route go to another backend.

    Read from a canary Ingress (``canary: "true"``) and attached to the
    options of the route it shadows (same host and path, same namespace),
    so every rule, the weight included, is a map value: a change is a map
    update, never a reload. The first rule that decides wins: the header
    (``header_value`` or ``header_pattern`` if set, else ``always`` /
    ``never``), then the cookie (``always`` / ``never``), then the weight.
    """

    enabled: bool = False
    backend: str = ""  # the canary Service port's backend (set when attached)
    weight: int = 0
    total: int = 100
    header: str | None = None
    header_value: str | None = None
    header_pattern: str | None = None  # a checked PCRE2 pattern (regex.py)
    cookie: str | None = None
    # affinity-canary-behavior: "sticky" (a client keeps the side it was
    # sent to, when that side has cookie affinity) or "legacy" (decided on
    # every request). Translate fills the sticky_* fields when attaching.
    affinity_behavior: str = "sticky"
    # The decision cookie ("<session cookie>-canary": 1 canary, 0 main) and
    # the Set-Cookie attributes it is sent with (the sticky side's).
    sticky_cookie: str | None = None
    sticky_attributes: str = ""
    sticky_canary: bool = False  # the canary backend has cookie affinity
    sticky_main: bool = False  # the main backend has cookie affinity

    @property
    def threshold(self) -> int:
        """A request goes to the canary when ``rand`` (0 <= r < 2**32) is below this."""
        return min(self.weight, self.total) * 2**32 // self.total


@dataclass(frozen=True, order=True)
class Cors:
    """ingress-nginx's enable-cors and cors-* for a route (see cors.py)."""

    enabled: bool = False
    origins: tuple[str, ...] = ("*",)  # lowered; "*" or scheme://[*.]host[:port]
    methods: str = "GET, PUT, POST, DELETE, PATCH, OPTIONS"
    headers: str = (
        "DNT, Keep-Alive, User-Agent, X-Requested-With, If-Modified-Since, Cache-Control, "
        "Content-Type, Range, Authorization"
    )
    credentials: bool = True  # never sent with "*" in origins
    expose: str = ""
    max_age: int = 1728000


@dataclass(frozen=True, order=True)
class RouteOptions:
    """What a route does to a request besides choosing its backend (map-driven).

    Like an AccessPolicy, named by a hash of its content: the route's map
    entry names it and the frontend looks its values up in per-feature maps
    (haproxy/config.py), so changing one is a map update, never a reload,
    and one Ingress's options never reach another Ingress's routes.
    """

    force_https: bool = False  # plain HTTP gets a 308 to https, with or without TLS
    # Plain HTTP is never redirected to https, whatever the host's TLS says:
    # ssl-redirect "false" on the route's Ingress (ingress-nginx decides per
    # location) or a path under no-tls-redirect-locations (translate).
    plain_http: bool = False
    # Every request answered with a redirect there (permanent wins over temporal).
    permanent_redirect: str | None = None
    permanent_redirect_code: int = 301
    temporal_redirect: str | None = None
    temporal_redirect_code: int = 302
    app_root: str | None = None  # "/" answered with a 302 there
    rewrite_target: str | None = None  # the path the backend receives (query kept)
    upstream_vhost: str | None = None  # the Host header the backend receives
    x_forwarded_prefix: str | None = None  # an X-Forwarded-Prefix header
    body_max: int | None = None  # bytes; a larger Content-Length gets 413
    # A regular-expression route's pattern, set when rewrite_target uses its
    # capture groups ($1…): the rewrite matches it again to read them.
    path_regex: str | None = None
    canary: Canary | None = None  # set on the route a canary Ingress shadows
    cors: Cors | None = None  # enable-cors
    # The https redirect keeps a trailing '/' (ingress-nginx strips it unless
    # preserve-trailing-slash is set).
    keep_slash: bool = False
    access_log: bool = True  # False: HAProxy logs nothing for these paths
    # custom-headers: set on the responses (name, value), checked by
    # headers.header_set; values are literal text, never log-format.
    response_headers: tuple[tuple[str, str], ...] = ()
    # Answer 503 (ingress-nginx's answer when custom-headers names a missing
    # or invalid ConfigMap).
    unavailable: bool = False
    # custom-http-errors: responses with these statuses are replaced by the
    # error backend's answer to a request carrying ingress-nginx's X-Code,
    # X-Original-URI… headers. With default-backend, the error backend also
    # serves the route's requests while its Service has no usable server.
    error_codes: tuple[int, ...] = ()
    error_backend: str | None = None  # a backend name (set by translate)
    # The Ingress's namespace and name, for X-Namespace and X-Ingress-Name.
    error_source: str | None = None
    fallback: bool = False  # default-backend: no usable server → error backend
    # An nginx snippet's operations (snippets.encode), run by ingress.lua.
    snippet: str | None = None
    # proxy-redirect-from/-to and proxy-cookie-domain/-path (responses.py):
    # the pods' Location/Refresh prefixes and Set-Cookie Domain/Path
    # attributes that ingress.lua rewrites, as literal text.
    proxy_redirect_from: str | None = None
    proxy_redirect_to: str | None = None
    proxy_cookie_domain: tuple[str, str] | None = None  # (from, lowered, no dot; to)
    proxy_cookie_path: tuple[str, str] | None = None  # (from prefix, to)
    # connection-proxy-header: the Connection header the pods receive
    # (registry.connection_tokens: tokens joined by ',').
    connection_header: str | None = None
    # proxy-request-buffering: the body (up to one buffer, tune.bufsize) is
    # received before the request goes to a pod (HAProxy's wait-for-body);
    # False streams it.
    request_buffering: bool = True

    # Cached: routes share their Ingress's options object, and comparing ~40
    # fields per route cost 0.3 s of a 10k-Ingress translation. (A frozen
    # dataclass still has a __dict__, which is where cached_property writes.)
    @functools.cached_property
    def name(self) -> str:
        digest = hashlib.sha256(repr(self).encode()).hexdigest()
        return f"o{digest[:16]}"

    @functools.cached_property
    def empty(self) -> bool:
        return self == RouteOptions()


@dataclass(frozen=True, order=True)
class Route:
    """One host + path of an Ingress rule, sent to one backend."""

    host: str  # "" matches any host; "*.example.com" one extra label
    path: str  # canonical (canonical.canonical_path), as requests are matched
    path_type: PathType
    backend: str
    source: ObjectRef = field(compare=False)
    policy: str = ""  # an AccessPolicy name; "" lets everyone in
    options: RouteOptions = RouteOptions()
    # ``path`` is a regular expression (use-regex): matched case-insensitively
    # from the path's start, as ingress-nginx's ``location ~* "^path"``.
    regex: bool = False
    written: str = field(default="", compare=False)  # the path as the Ingress wrote it


@dataclass(frozen=True)
class RoutingMaps:
    """The contents of the map files the frontend consults, in lookup order.

    Keys are ``<host><path>`` where host is an exact host, ``*.<parent>`` for
    wildcards, or empty for rules without a host. ``exact`` is looked up with
    ``map_str`` (whole-key match) and ``prefix`` with ``map_beg`` (HAProxy keeps
    prefix maps in a tree and returns the longest matching key).
    """

    exact: tuple[tuple[str, str], ...] = ()
    prefix: tuple[tuple[str, str], ...] = ()
    # Hosts (exact or ``*.parent``) whose plain-HTTP requests get a 308 to https.
    redirect: tuple[tuple[str, str], ...] = ()
    # Hosts (exact or ``*.parent``) that have rules: such a host owns its
    # requests, which are matched against its rules only (as ingress-nginx's
    # server blocks do), never against another Ingress's wildcard or host-less rules.
    hosts: tuple[tuple[str, str], ...] = ()
    # Route options (RouteOptions.name → value), one map per feature, in
    # the order of ROUTE_OPTION_MAPS; every map is always present.
    options: tuple[tuple[tuple[str, str], ...], ...] = ()
    # Regular-expression routes (map_reg: the first key that matches, in
    # order), keyed by ``^<escaped scope>(?=/)(?i:<pattern>)`` (regex.scoped_key).
    regex: tuple[tuple[str, str], ...] = ()
    # The ConfigMap's denylist-source-range (map_ip: network → "1"), checked
    # before routing; a map, so a change needs no reload.
    deny: tuple[tuple[str, str], ...] = ()
    # CORS values (RouteOptions.name → value), in the order of CORS_MAPS.
    cors: tuple[tuple[tuple[str, str], ...], ...] = ()
    # Hosts (exact or ``*.parent``) that some Ingress lists in spec.tls: their
    # HTTPS responses carry HSTS when the ConfigMap's hsts is on.
    tls: tuple[tuple[str, str], ...] = ()
    # Every host of the crt-list (exact or ``*.parent``, as its SNI filters)
    # → HostTLS.ca_name of its line, or "-": which CA verified a connection
    # whose SNI chose that line (ssl_fc_sni looked up as HAProxy does).
    sni: tuple[tuple[str, str], ...] = ()
    # from-to-www-redirect: a host without rules → the host of the Ingress
    # that asked (``www.`` added or removed) its requests are redirected to.
    www: tuple[tuple[str, str], ...] = ()
    # The ConfigMap's header sets: "request" (proxy-set-headers) and
    # "response" (add-headers) → base64 of "Name: value" lines.
    headers: tuple[tuple[str, str], ...] = ()

    def files(self) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
        """Each map file's stem and entries."""
        options = self.options or ((),) * len(ROUTE_OPTION_MAPS)
        cors = self.cors or ((),) * len(CORS_MAPS)
        return (
            ("exact", self.exact),
            ("prefix", self.prefix),
            ("redirect", self.redirect),
            ("hosts", self.hosts),
            ("regex", self.regex),
            ("deny", self.deny),
            ("tls", self.tls),
            ("www", self.www),
            ("headers", self.headers),
            ("sni", self.sni),
            *zip(ROUTE_OPTION_MAPS, options, strict=True),
            *zip(CORS_MAPS, cors, strict=True),
        )


# The map files of route options (routing.option_maps fills them).
ROUTE_OPTION_MAPS = (
    "opt-https",
    "opt-redirect",
    "opt-redirect-code",
    "opt-app-root",
    "opt-rewrite",
    "opt-vhost",
    "opt-prefix",
    "opt-body-max",
    "opt-rewrite-regex",
    "opt-canary",
    "opt-canary-threshold",
    "opt-canary-header",
    "opt-canary-value",
    "opt-canary-pattern",
    "opt-canary-cookie",
    "opt-canary-sticky",
    "opt-keep-slash",
    "opt-no-log",
    "opt-headers",
    "opt-unavailable",
    "opt-error-backend",
    "opt-error-codes",
    "opt-error-source",
    "opt-fallback",
    "opt-snippet",
    "opt-redirect-from",
    "opt-redirect-to",
    "opt-cookie-domain",
    "opt-cookie-path",
    "opt-connection",
    "opt-stream",
    "opt-plain",
)


# The map files of CORS values (cors.cors_maps fills them).
CORS_MAPS = (
    "cors-origins",
    "cors-methods",
    "cors-headers",
    "cors-expose",
    "cors-max-age",
    "cors-credentials",
)

# The maps whose frontend rules haproxy.cfg.j2 renders only while one of them
# has entries (Structure.frontend_maps): every route option's but opt-stream
# (request buffering is on unless a route streams), CORS, the global deny-
# list and header sets, from-to-www-redirect, regex routes and the https
# redirect of TLS hosts. The rest (exact, prefix, hosts, tls, sni, opt-stream)
# are read by every request's routing, or cost it nothing.
OPTIONAL_MAPS = tuple(
    sorted(
        (
            "deny",
            "headers",
            "redirect",
            "regex",
            "www",
            *(name for name in ROUTE_OPTION_MAPS if name != "opt-stream"),
            *CORS_MAPS,
        )
    )
)


# Not a map: the frontend's second routing pass (a host's wildcard form, then
# the rules without a host), which a request of a host without rules needs
# only while some route has a wildcard host or none (haproxy.cfg.j2). Kept
# with the optional maps' names (Structure.frontend_maps): its rules are
# left out, and come back with a reload, the same way.
OTHER_SCOPES = "other-scopes"


def frontend_maps(maps: RoutingMaps, other_scopes: bool) -> tuple[str, ...]:
    """The optional maps of ``maps`` that have entries (sorted): the rules the frontend needs.

    ``other_scopes``: some route has a wildcard host or none (OTHER_SCOPES).
    """
    names = [name for name, entries in maps.files() if entries and name in OPTIONAL_MAPS]
    if other_scopes:
        names.append(OTHER_SCOPES)
    return tuple(sorted(names))


def has_other_scopes(routes: Iterable[Route]) -> bool:
    """Whether a route has a wildcard host or none (:data:`OTHER_SCOPES`)."""
    return any(not route.host or route.host.startswith("*.") for route in routes)


@dataclass(frozen=True, order=True)
class Certificate:
    """A TLS certificate and key, served for ``hosts`` by SNI."""

    name: str  # file stem from certificate_name(); injective like backend names
    pem: str = field(compare=False)  # re-serialised chain + key, never user bytes verbatim
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class GlobalSettings:
    """Controller-wide settings from the controller's ConfigMap; structural."""

    timeout_client: str = "60s"
    timeout_http_request: str = "10s"
    timeout_http_keep_alive: str = "60s"
    timeout_queue: str = "30s"
    hard_stop_after: str = "30m"
    maxconn: int | None = None  # None: HAProxy derives it from the file-descriptor limit
    # Slots declared per backend at least (see plan.assign_slots); more are
    # added at run time.
    slots_min: int = 1
    # Active checks per second in all (plan.stretch_checks); 0: no limit.
    check_max_rate: int = 1000
    # Trust X-Forwarded-* from clients whose address is in proxy_real_ip_cidr
    # (ingress-nginx's use-forwarded-headers); otherwise they are replaced.
    use_forwarded_headers: bool = False
    # ingress-nginx's global-auth-*: external auth for every Ingress without
    # an auth-url of its own (global_auth).
    global_auth_url: str | None = None
    global_auth_method: str = "GET"
    global_auth_signin: str | None = None
    global_auth_signin_param: str = "rd"
    global_auth_response_headers: tuple[str, ...] | None = None
    global_auth_request_redirect: str | None = None
    global_auth_timeout_ms: int = 5000
    # ingress-nginx's allow-snippet-annotations: off, the *-snippet annotations
    # are ignored (settings.ingress_settings), those holding an access rule denying.
    allow_snippets: bool = True
    proxy_real_ip_cidr: tuple[str, ...] = ("0.0.0.0/0", "::/0")
    # Routes whose path starts with one of these are never redirected to
    # https (ingress-nginx's no-tls-redirect-locations: ACME challenges).
    no_tls_redirect_locations: tuple[str, ...] = ("/.well-known/acme-challenge",)
    use_proxy_protocol: bool = False  # binds accept the PROXY protocol
    # Sent as Server on every response that has none (the backend's wins);
    # the Ingress conformance tests expect one, as ingress-nginx sends. None: off.
    server_header: str | None = "haproxy-ingress"
    # Strict-Transport-Security on HTTPS responses of TLS hosts (ingress-nginx's
    # hsts, hsts-max-age, hsts-include-subdomains, hsts-preload).
    hsts: bool = True
    hsts_max_age: int = 31_536_000
    hsts_include_subdomains: bool = True
    hsts_preload: bool = False
    # ConfigMaps (namespace, name) of headers for every request to the pods
    # (proxy-set-headers) and every response (add-headers); the names
    # custom-headers may set (global-allowed-response-headers; empty: any).
    add_headers: tuple[str, str] | None = None
    proxy_set_headers: tuple[str, str] | None = None
    allowed_response_headers: tuple[str, ...] = ()
    # Every route without an allow-list of its own, and the default backend.
    default_policy: AccessPolicy | None = None
    # Networks refused everywhere, before routing (denylist-source-range).
    deny_sources: tuple[str, ...] = ()
    # The status of a request refused by limit-rps/-rpm and limit-connections.
    limit_req_status: int = 503
    limit_conn_status: int = 503
    # TLS policy of every HTTPS bind: OpenSSL cipher list (None: HAProxy's
    # default) and the (min, max) protocol versions.
    ssl_ciphers: str | None = None
    ssl_protocols: tuple[str, str] = ("TLSv1.2", "TLSv1.3")
    backend: BackendSettings = BackendSettings()
    route: RouteOptions = RouteOptions()  # every route's options unless its Ingress sets them

    @property
    def global_auth(self) -> ExternalAuth | None:
        """The ConfigMap's global-auth-* as the external auth they ask for (None: unset)."""
        if not self.global_auth_url:
            return None
        return ExternalAuth(
            url=self.global_auth_url,
            method=self.global_auth_method,
            signin=self.global_auth_signin or "",
            signin_param=self.global_auth_signin_param,
            response_headers=self.global_auth_response_headers or (),
            request_redirect=self.global_auth_request_redirect or "",
            timeout_ms=self.global_auth_timeout_ms,
        )


@dataclass(frozen=True)
class DesiredState:
    """Everything HAProxy should serve, derived from the cluster by :func:`translate`."""

    settings: GlobalSettings
    backends: tuple[Backend, ...]
    default_backend: str | None  # a backend name, or None for the built-in 404
    routes: tuple[Route, ...]
    maps: RoutingMaps
    certificates: tuple[Certificate, ...]
    problems: tuple[Problem, ...] = ()
    policies: tuple[AccessPolicy, ...] = ()  # every policy a route or the default names
    upstream_tls: tuple[UpstreamTLS, ...] = ()  # proxy-ssl-secret files, by secret
    # --enable-ssl-passthrough: the HTTPS binds are a TCP frontend routing by
    # SNI, to ``passthrough`` hosts' pods or (anything else) to the HTTPS frontend.
    ssl_passthrough: bool = False
    passthrough: tuple[Passthrough, ...] = ()  # sorted by host
    host_tls: tuple[HostTLS, ...] = ()  # per-host crt-list options, by host

    def backend(self, name: str) -> Backend | None:
        for backend in self.backends:
            if backend.name == name:
                return backend
        return None


# --- what HAProxy runs: the planner's output, rendered and saved as is -------------

Slots = tuple[Endpoint | None, ...]  # slot i is HAProxy server "s{i+1}"; None = free


@dataclass(frozen=True)
class BackendLayout:
    """A backend as haproxy.cfg declares it."""

    name: str
    settings: BackendSettings
    slots: int


@dataclass(frozen=True)
class Structure:
    """Everything in haproxy.cfg that only a reload can change."""

    settings: GlobalSettings
    backends: tuple[BackendLayout, ...]  # sorted by name
    default_backend: str | None
    # The access policies the frontend checks (sorted): a map entry may name
    # only these, so a new policy reloads before any route refers to it.
    policies: tuple[AccessPolicy, ...] = ()
    # proxy-ssl-secret files: HAProxy reads them when it starts, so a new or
    # changed one reloads.
    upstream_tls: tuple[UpstreamTLS, ...] = ()
    # The passthrough pool (TCP backends be_passthrough_N, sorted by N): empty
    # unless --enable-ssl-passthrough. Hosts come and go through the SNI map
    # and the servers of a free pool backend, without a reload.
    passthrough: tuple[BackendLayout, ...] = ()

    @property
    def ssl_passthrough(self) -> bool:
        return bool(self.passthrough)

    # Per-host crt-list options and their CA/CRL files: HAProxy loads a CA
    # file when a crt-list line names it, so a change reloads (see README).
    host_tls: tuple[HostTLS, ...] = ()
    # Active health checks turned off for every backend because the checked
    # slots would not fit HAProxy's file-descriptor limit (plan.py).
    checks_shed: bool = False
    # Every check interval of healthy servers multiplied by this power of two
    # to keep the total check rate under GlobalSettings.check_max_rate (plan.py).
    check_stretch: int = 1
    # The optional maps (OPTIONAL_MAPS) whose frontend rules haproxy.cfg has,
    # sorted: those with entries when it was rendered, and any kept since
    # (plan.py). A rule no route needs still costs every request its turn,
    # so the frontend leaves out the others' rules; a map gaining its first
    # entries then reloads. The default renders every rule.
    frontend_maps: tuple[str, ...] = tuple(sorted((*OPTIONAL_MAPS, OTHER_SCOPES)))
    # Whether the frontend reads routes' access policies (the route map
    # values' second field, routing.py): the rules that take txn.policy from
    # the route and refuse a name it does not know. Left out while no route
    # names a policy and there is no default policy (plan.py); the first
    # route map entry naming one then reloads, so no route ever names a
    # policy HAProxy would not check. The default renders them.
    route_policies: bool = True


def names_policy(maps: RoutingMaps) -> bool:
    """Whether a route map value names an access policy (``be~policy…``, routing.py)."""
    # Most values have no '~' at all: the substring test first (30k entries
    # at 10k Ingresses: 1 ms instead of 13).
    return any(
        "~" in value and value.partition("~")[2][:1] not in ("", "~", "@")
        for table in (maps.exact, maps.prefix, maps.regex)
        for _, value in table
    )


@dataclass(frozen=True)
class AppliedState:
    """What HAProxy runs (or will run once a plan is applied)."""

    structure: Structure
    servers: Mapping[str, Slots]  # backend name → slots (the passthrough pool's too)
    maps: RoutingMaps
    certificates: tuple[Certificate, ...]  # sorted by name
    # The SNI map (sorted): passthrough host → its pool backend (plan.py).
    sni: tuple[tuple[str, str], ...] = ()


# --- how this controller instance is configured (flags, not user input) -----------

DEFAULT_CONTROLLER_NAME = "haproxy-ingress.kopf.dev/controller"
DEFAULT_INGRESS_CLASS = "haproxy"
DEFAULT_NAMESPACE = "haproxy-ingress"
DEFAULT_CONFIGMAP = "haproxy-ingress"


@dataclass(frozen=True)
class TranslateOptions:
    """How this controller instance is configured (flags, not user input)."""

    controller_name: str = DEFAULT_CONTROLLER_NAME
    ingress_class: str = DEFAULT_INGRESS_CLASS  # the class for the legacy annotation
    configmap_namespace: str = DEFAULT_NAMESPACE
    configmap_name: str = DEFAULT_CONFIGMAP
    default_backend: ServiceRef | None = None  # a flag; the ConfigMap may also set one
    # The controller's own listening ports (health, metrics): never an auth-url's.
    reserved_ports: tuple[int, ...] = ()
    # Also serve ingress-nginx's Ingresses (IngressClasses of its controller,
    # the legacy class annotation "nginx"): the take-over path of the README.
    serve_nginx: bool = False
    # ingress-nginx's --enable-ssl-passthrough: the ssl-passthrough annotation
    # is honoured (else ignored with a Warning).
    ssl_passthrough: bool = False
