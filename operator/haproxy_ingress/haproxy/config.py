"""Applied state → the files HAProxy reads: haproxy.cfg, maps, certificates.

Rendering is deterministic (sorted input, no clock), so an unchanged cluster
gives identical bytes. Every dynamic value placed in a file passes
:func:`safe_token` at the point of rendering: validation already happened in
translate, and this is the second lock on the same door.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import jinja2

from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.memo import per_object
from haproxy_ingress.model import (
    CORS_MAPS,
    ROUTE_OPTION_MAPS,
    AccessPolicy,
    AppliedState,
    BackendLayout,
    BackendSettings,
    Certificate,
    Endpoint,
    HostTLS,
    ServerState,
    Slots,
    Structure,
)
from haproxy_ingress.plan import PASSTHROUGH_MAP, twin_name
from haproxy_ingress.validate import MAX_DURATION_MS, duration_ms

TEMPLATES_PACKAGE = "haproxy_ingress.templates"
TEMPLATE = "haproxy.cfg.j2"
# The request canonicaliser (see canonical.py), copied next to haproxy.cfg.
LUA = "ingress.lua"
# Placeholder address of a free slot; `disabled` keeps it out of traffic and checks.
FREE_SLOT_ENDPOINT = ("127.0.0.1", 1)
FREE_SLOT_ADDRESS = "{}:{}".format(*FREE_SLOT_ENDPOINT)
ALPN = "h2,http/1.1"
# The statuses HAProxy's redirect can answer with.
REDIRECT_CODES = (301, 302, 303, 307, 308)
# haproxy.cfg is rendered and written in pieces of about this many characters
# (render_config): small beside the ~11 MB of a 10k-Ingress configuration. A
# backend's section is one template output (SectionMemo), so the outputs are
# tens of thousands, not millions: measuring each costs nothing worth saving.
CONFIG_PIECE_CHARS = 64 << 10
# haproxy.cfg holds the userlists' password hashes: private like the keys.
CONFIG_MODE = 0o600
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_.:/@*\[\]%,=~!$&'()+-]+")


class UnsafeValueError(ValueError):
    """A value that would change the meaning of a rendered line."""


def safe_token(value: object) -> str:
    """One whitespace-free token with no character that HAProxy's parser treats specially."""
    text = str(value)
    if not _SAFE_TOKEN.fullmatch(text):
        raise UnsafeValueError(f"refusing to render {text!r}")
    return text


@dataclass(frozen=True)
class RenderOptions:
    """Where HAProxy listens and keeps its files (controller flags, not user input)."""

    paths: HAProxyPaths
    http_binds: tuple[str, ...] = ("*:80",)
    https_binds: tuple[str, ...] = ("*:443",)
    log_target: str | None = None  # e.g. "stdout"; None: HAProxy logs nothing


@dataclass(frozen=True)
class RenderedFile:
    path: Path
    content: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class Rendered:
    config: RenderedFile
    files: tuple[RenderedFile, ...] = field(default=())  # maps, certificates, crt-list

    @property
    def all(self) -> tuple[RenderedFile, ...]:
        return (*self.files, self.config)


# Server ids, explicit so that a slot added at run time (plan.AddServer) has
# the id it keeps once a reload declares it: consistent hashing places a
# server by its id, and 2.6.12's random and hash algorithms starve dynamic
# servers without one. Slot sN is id N; its twin tN is TWIN_ID_BASE + N.
TWIN_ID_BASE = 1_000_000


def server_id(server: str) -> int:
    """The id of slot ``sN`` or twin ``tN``."""
    index = int(server[1:])
    if not 0 < index < TWIN_ID_BASE:
        raise UnsafeValueError(f"server {server!r} out of the id range")
    return index if server[0] == "s" else TWIN_ID_BASE + index


def check_options(settings: BackendSettings, stretch: int, *, layer7: bool = True) -> list[str]:
    """Active and passive check options; ``stretch``: see plan.check_stretch.

    Stretched, only healthy servers are checked less often: a server going
    down or coming back (``fastinter``) and one that is down (``downinter``)
    keep the configured interval.
    """
    if not settings.health_check:
        return []
    if stretch == 1:
        words = ["check", "inter", settings.check_inter]
    else:
        stretched = min(int(duration_ms(settings.check_inter)) * stretch, MAX_DURATION_MS)
        words = ["check", "inter", f"{stretched}ms"]
        words += ["fastinter", settings.check_inter, "downinter", settings.check_inter]
    words += ["fall", str(settings.check_fall), "rise", str(settings.check_rise)]
    if settings.observe == "layer4" or (layer7 and settings.observe != "none"):
        words += ["observe", settings.observe, "error-limit", str(settings.error_limit)]
        words += ["on-error", settings.on_error]
    return words


def server_options(
    settings: BackendSettings, tls: tuple[str, str], stretch: int = 1
) -> tuple[str, ...]:
    """The options every slot of a backend has, but its maxconn.

    haproxy.cfg gives them in the backend's ``default-server`` line; a
    server added at run time gets them on its ``add server`` line, since
    HAProxy 2.6 applies no default-server to dynamic servers. ``tls``: the
    proxy-ssl-secret's client certificate and CA files ("" for none).
    """
    crt, ca = tls
    words: list[str] = []
    if settings.protocol in ("HTTPS", "GRPCS"):
        words.append("ssl")
        if settings.proxy_ssl_verify and ca:
            words += ["verify", "required", "ca-file", ca]
            if settings.proxy_ssl_name:
                words += ["verifyhost", settings.proxy_ssl_name]
        else:
            words += ["verify", "none"]
        if crt:
            words += ["crt", crt]
        if settings.proxy_ssl_ciphers:
            words += ["ciphers", settings.proxy_ssl_ciphers]
        if settings.proxy_ssl_protocols:
            low, high = settings.proxy_ssl_protocols
            words += ["ssl-min-ver", low, "ssl-max-ver", high]
        if settings.proxy_ssl_server_name:
            name = settings.proxy_ssl_name
            words += ["sni", f"str({name})" if name else "req.hdr(host),field(1,:)"]
        words += ["alpn", "http/1.1" if settings.protocol == "HTTPS" else "h2"]
    elif settings.protocol in ("GRPC", "H2C"):
        words += ["proto", "h2"]
    words += check_options(settings, stretch)
    if settings.slowstart:
        words += ["slowstart", settings.slowstart]
    return tuple(safe_token(word) for word in words)


def pool_server_options(settings: BackendSettings, stretch: int = 1) -> tuple[str, ...]:
    """:func:`server_options` of a passthrough pool backend (TCP: no TLS, no layer 7)."""
    words = check_options(settings, stretch, layer7=False)
    if settings.slowstart:
        words += ["slowstart", settings.slowstart]
    return tuple(safe_token(word) for word in words)


def upstream_tls_files(paths: HAProxyPaths, structure: Structure) -> dict[str, tuple[str, str]]:
    """proxy-ssl-secret ("namespace/name") → its client certificate and CA files."""
    return {
        tls.secret: (
            str(upstream_client_path(paths, tls.name)) if tls.pem else "",
            str(upstream_ca_path(paths, tls.name)) if tls.ca else "",
        )
        for tls in structure.upstream_tls
    }


@dataclass(frozen=True)
class _Server:
    name: str
    address: str
    disabled: bool

    @property
    def id(self) -> int:
        return server_id(self.name)

    @property
    def twin(self) -> str:
        return twin_name(self.name)

    @property
    def twin_id(self) -> int:
        return server_id(self.twin)


@dataclass(frozen=True)
class _BackendView:
    name: str
    settings: BackendSettings
    servers: tuple[_Server, ...]
    options: tuple[str, ...]  # server_options or pool_server_options
    twins: bool = False  # each slot has its twin (BackendSettings.twins_at)
    # Where its rendered section is kept (SectionMemo), if it is, and its slots.
    memo_key: _SectionKey | None = None
    memo_slots: Slots = ()

    @property
    def server_lines(self) -> tuple[_Line, ...]:
        """The ``server`` lines: each slot, then (with :attr:`twins`) each slot's twin.

        Twins (model.BackendSettings.twins): one live pod stays two servers
        up, so HAProxy retries on it at once instead of after min(timeout
        connect, 1 s). A twin follows its slot's state (track); it has no
        check of its own, so the observe it inherits from default-server does
        nothing. (A twin added at run time cannot track, as 2.6 refuses to
        track a dynamic server: it has its own check and is given its slot's
        state, see plan.SetServer.) Servers carry explicit ids (server_id).
        Made here, not in the template: 80,000 slots at 10k Ingresses, whose
        lines cost Jinja a lookup and a finalize per value (a seventh of a
        render's instructions, counted by callgrind at 1k Ingresses).
        """
        addresses = [safe_token(server.address) for server in self.servers]
        lines = [
            _Line(
                f"server {server.name} {address} id {server.id}"
                + (" disabled" if server.disabled else "")
            )
            for server, address in zip(self.servers, addresses, strict=True)
        ]
        if self.twins:
            limits = self.settings.slot_maxconn
            maxconn = f" maxconn {limits[1]}" if limits is not None else ""
            lines.extend(
                _Line(
                    f"server {server.twin} {address} id {server.twin_id} "
                    f"track {server.name} no-check{maxconn}"
                )
                for server, address in zip(self.servers, addresses, strict=True)
            )
        return tuple(lines)


class _Line(str):
    """Whole lines of haproxy.cfg made by this module, every value in them checked.

    The template's finalize passes it through whole (whitespace included);
    anything else it renders must be one safe token. Only made of values that
    passed :func:`safe_token` or that this module generates (slot names and
    ids), or of a backend's section as this template rendered it (SectionMemo).
    """

    __slots__ = ()


# A backend section's inputs but its slots: its name, slot count and settings
# (by id), and its server options, which name the proxy-ssl files the section
# reads (server_options: "crt", "ca-file" or "verify none" without a CA).
_SectionKey = tuple[str, int, int, tuple[str, ...]]
# What a key keeps: the settings its id names, the slots, the section.
_Kept = tuple[BackendSettings, Slots, _Line]


class SectionMemo:
    """Each backend's section of haproxy.cfg, kept from one render to the next.

    A full sync renders the whole configuration again (the background
    writer, a reload) when one Ingress changed: at 10k Ingresses that was
    10,000 backend sections rendered to the same text, most of a render's
    time. A section depends on its backend's name, slot count and settings,
    its server options (with its proxy-ssl files) and the endpoints in its
    slots, and nothing else of the template. The settings and endpoint
    objects are the ones translate keeps (settings.SettingsMemo,
    translate.ObjectMemo) while their input is unchanged. So the settings
    are keyed by identity, as memo.ByIdentity does (hashing fifty fields
    would cost what rendering does), and each entry holds its settings
    object, so no id in a live key can be reused. The slots are compared,
    not hashed: equal endpoints render alike, and the same objects compare
    at once.

    Each render reads the entries of the last finished one and builds its
    own (:class:`SectionPass`); only a render that ran to its end replaces
    them. So memory is one configuration's sections, a render given up
    half-way leaves the memo as it was, and two renders in different
    threads never write the same dictionary.
    """

    __slots__ = ("_kept",)

    def __init__(self) -> None:
        self._kept: dict[_SectionKey, _Kept] = {}

    def __len__(self) -> int:
        return len(self._kept)

    def start(self) -> SectionPass:
        return SectionPass(self, self._kept)

    def _finished(self, kept: dict[_SectionKey, _Kept]) -> None:
        self._kept = kept


class SectionPass:
    """One render's use of a :class:`SectionMemo` (see there)."""

    __slots__ = ("_fresh", "_memo", "_previous")

    def __init__(
        self,
        memo: SectionMemo | None,
        previous: Mapping[_SectionKey, _Kept],
    ) -> None:
        self._memo, self._previous = memo, previous
        self._fresh: dict[_SectionKey, _Kept] = {}

    def recall(self, key: _SectionKey, slots: Slots) -> _Line | None:
        entry = self._previous.get(key)
        if entry is None or entry[1] != slots:
            return None
        self._fresh[key] = entry
        return entry[2]

    def keep(self, backend: _BackendView, section: str) -> _Line:
        """``backend``'s section as the template rendered it (every value through finalize)."""
        text = _Line(section)
        if backend.memo_key is not None:
            self._fresh[backend.memo_key] = (backend.settings, backend.memo_slots, text)
        return text

    def finish(self) -> None:
        if self._memo is not None:
            self._memo._finished(self._fresh)  # the pair works as one


def template_source(name: str) -> str:
    """A shipped template's text (package data of :mod:`haproxy_ingress.templates`)."""
    return resources.files(TEMPLATES_PACKAGE).joinpath(name).read_text(encoding="utf-8")


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(template_source),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_Finalize().__call__,
    )


class _Finalize:
    """The template's finalize: a :class:`_Line` whole, anything else one :func:`safe_token`.

    At 10k Ingresses a render finalizes some 250,000 strings, of which about
    10,000 differ (each backend repeats its timeouts and keywords): the ones
    that passed are remembered, so a repeat costs one set lookup. The
    environment lives as long as the controller, so at most ``KEEP`` of at
    most ``LONGEST`` characters are (then all are forgotten at once): ~2 MiB.
    """

    KEEP = 20_000
    LONGEST = 64
    __slots__ = ("_safe",)

    def __init__(self) -> None:
        self._safe: set[str] = set()

    def __call__(self, value: object) -> str:
        if type(value) is _Line:
            return value
        if type(value) is not str:
            return safe_token(value)
        if value in self._safe:
            return value
        text = safe_token(value)
        if len(text) <= self.LONGEST:
            if len(self._safe) >= self.KEEP:
                self._safe = set()
            self._safe.add(text)
        return text


def map_path(paths: HAProxyPaths, name: str) -> Path:
    return paths.maps / f"{safe_token(name)}.map"


def certificate_path(paths: HAProxyPaths, name: str) -> Path:
    return paths.certs / f"{safe_token(name)}.pem"


def upstream_client_path(paths: HAProxyPaths, name: str) -> Path:
    """proxy-ssl-secret's client certificate and key (model.UpstreamTLS)."""
    return paths.certs / f"{safe_token(name)}.client.pem"


def upstream_ca_path(paths: HAProxyPaths, name: str) -> Path:
    return paths.certs / f"{safe_token(name)}.ca.pem"


def client_ca_path(paths: HAProxyPaths, name: str) -> Path:
    """A host's auth-tls CA bundle (HostTLS.ca_name)."""
    return paths.certs / f"{safe_token(name)}.pem"


def client_crl_path(paths: HAProxyPaths, name: str) -> Path:
    return paths.certs / f"{safe_token(name)}.crl.pem"


def host_tls_files(paths: HAProxyPaths, host_tls: Iterable[HostTLS]) -> list[RenderedFile]:
    """The CA and CRL files the crt-list names (public data: 0644)."""
    files: dict[Path, bytes] = {}
    for tls in host_tls:
        if tls.secret:
            files[client_ca_path(paths, tls.ca_name)] = tls.ca.encode("ascii")
            if tls.crl_file:
                files[client_crl_path(paths, tls.ca_name)] = tls.crl.encode("ascii")
    return [RenderedFile(path, content) for path, content in sorted(files.items())]


def default_certificate_path(paths: HAProxyPaths) -> Path:
    return paths.certs / "default.pem"


def address_list_path(paths: HAProxyPaths, policy: str, *, deny: bool) -> Path:
    """The networks policy ``policy`` (a name) lets in, or refuses: one per line."""
    return paths.maps / f"{safe_token(policy)}{'.deny' if deny else ''}.acl"


def policy_path(paths: HAProxyPaths, policy: AccessPolicy) -> Path:
    """The networks an access policy lets in, one per line (no line-length limit)."""
    return address_list_path(paths, policy.name, deny=False)


def deny_path(paths: HAProxyPaths, policy: AccessPolicy) -> Path:
    """The networks an access policy refuses, one per line."""
    return address_list_path(paths, policy.name, deny=True)


def exempt_path(paths: HAProxyPaths, policy: AccessPolicy) -> Path:
    """The networks a policy's rate and connection limits never count (limit-allowlist)."""
    return paths.maps / f"{safe_token(policy.name)}.exempt.acl"


@dataclass(frozen=True)
class _LimitView:
    """A policy's stick table (model.RateLimit): its windows and thresholds."""

    table: str
    exempt: Path | None
    rps: int  # requests let in per window of `burst` seconds (0: no limit)
    rpm: int  # … per window of `burst` minutes
    connections: int
    rps_window: str
    rpm_window: str
    expire: str


@dataclass(frozen=True)
class _PolicyView:
    name: str
    allow: Path
    deny: Path | None
    policy: AccessPolicy
    limit: _LimitView | None


def _policy_view(paths: HAProxyPaths, policy: AccessPolicy) -> _PolicyView:
    limit = None
    if policy.limit.active:
        rate = policy.limit
        limit = _LimitView(
            table=f"st_{policy.name}",
            exempt=exempt_path(paths, policy) if rate.exempt else None,
            rps=rate.rps * rate.burst,
            rpm=rate.rpm * rate.burst,
            connections=rate.connections,
            rps_window=f"{rate.burst}s",
            rpm_window=f"{rate.burst}m",
            # A counter outlives its window, so a client's history is kept.
            expire=f"{rate.burst + 1}m" if rate.rpm else f"{rate.burst + 60}s",
        )
    return _PolicyView(
        policy.name,
        policy_path(paths, policy),
        deny_path(paths, policy) if policy.deny_sources else None,
        policy,
        limit,
    )


def _realm_entries(policies: Iterable[AccessPolicy]) -> list[tuple[str, str]]:
    """policy → base64 realm: it reaches the 401's header through a map, never the config."""
    return [
        (p.name, base64.b64encode(p.realm.encode()).decode())
        for p in policies
        if p.basic_auth and p.realm
    ]


def _ext_entries(policies: Iterable[AccessPolicy]) -> list[tuple[str, str]]:
    """policy → ``url method timeout signin redirect headers param``, base64 ("-": none).

    One map value, split by ingress.lua, so the settings never meet the config.
    """

    def word(text: str) -> str:
        return base64.b64encode(text.encode()).decode() if text else "-"

    entries = []
    for p in policies:
        ext = p.external
        if ext.url:
            fields = (
                word(ext.url),
                ext.method,
                str(ext.timeout_ms),
                word(ext.signin),
                word(ext.request_redirect),
                word(",".join(ext.response_headers)),
                word(ext.signin_param),
            )
            entries.append((p.name, "~".join(fields)))
    return entries


# The maps of client-certificate checks, keyed by policy (model.ClientAuth).
CLIENT_AUTH_MAPS = ("ca-name", "ca-verify", "ca-error", "ca-cn", "ca-pass", "ca-depth")


def _client_auth_entries(
    policies: Iterable[AccessPolicy],
) -> dict[str, list[tuple[str, str]]]:
    """policy → its CA's name, verify mode, error page, CN pattern (base64), pass flag, and
    how many intermediates the client may send (ClientAuth.chain_limit)."""
    entries: dict[str, list[tuple[str, str]]] = {name: [] for name in CLIENT_AUTH_MAPS}

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    for p in policies:
        check = p.client_auth
        if check is None:
            continue
        entries["ca-name"].append((p.name, check.ca_name))
        entries["ca-verify"].append((p.name, check.verify))
        entries["ca-depth"].append((p.name, str(check.chain_limit)))
        if check.error_page:
            entries["ca-error"].append((p.name, b64(check.error_page)))
        if check.match_cn:
            entries["ca-cn"].append((p.name, b64(check.match_cn)))
        if check.pass_cert:
            entries["ca-pass"].append((p.name, "1"))
    return entries


def _apr1_entries(policies: Iterable[AccessPolicy]) -> list[tuple[str, str]]:
    """``<policy>/<user>`` → ``$apr1$`` hash, which ingress.lua verifies."""
    return [(f"{p.name}/{user}", hashed) for p in policies for user, hashed in p.apr1_users]


def networks_file(networks: Iterable[str]) -> bytes:
    return "".join(f"{safe_token(network)}\n" for network in networks).encode()


def render(
    target: AppliedState,
    options: RenderOptions,
    env: jinja2.Environment | None = None,
    sections: SectionMemo | None = None,
) -> Rendered:
    """All files for ``target``; paths inside point into ``options.paths``."""
    config = b"".join(render_config(target, options, env, sections))
    return Rendered(
        RenderedFile(options.paths.config, config, CONFIG_MODE), render_files(target, options)
    )


def render_config(
    target: AppliedState,
    options: RenderOptions,
    env: jinja2.Environment | None = None,
    sections: SectionMemo | None = None,
) -> Iterator[bytes]:
    """``target``'s haproxy.cfg, encoded, in pieces of about CONFIG_PIECE_CHARS characters.

    The template is rendered as it is read, and each backend's view is made
    only when the template reaches it. At 10k Ingresses haproxy.cfg is ~11
    MB: rendered whole it was the text, the millions of small strings it was
    joined from, the views of every backend and server, and the encoded
    copy, about 42 MiB at once (tracemalloc) of the controller's peak; the
    background writer streams the pieces to the file (files.atomic_write_chunks).
    ``sections``: the backend sections of the last render for these paths,
    reused where their inputs are unchanged (see SectionMemo), and replaced
    by this render's once it is read to the end.
    """
    env = env or environment()
    paths = options.paths
    structure = target.structure
    upstream = upstream_tls_files(paths, structure)
    frontend = frozenset(structure.frontend_maps)

    # Backends share their settings objects (an Ingress's, the ConfigMap's):
    # their server options are worked out once per object, not per backend.
    @per_object
    def options_of(settings: BackendSettings) -> tuple[str, ...]:
        secret = upstream.get(settings.proxy_ssl_secret or "", ("", ""))
        return server_options(settings, secret, structure.check_stretch)

    memo = sections.start() if sections is not None else SectionPass(None, {})

    def backends() -> Iterator[_BackendView | _Line]:
        """Each backend's view, or its section kept from the last render."""
        for b in structure.backends:
            slots = target.servers.get(b.name, ())
            server_options = options_of(b.settings)
            if sections is None:
                yield _backend_view(b, slots, server_options)
                continue
            key = (b.name, b.slots, id(b.settings), server_options)
            yield memo.recall(key, slots) or _backend_view(
                b, slots, server_options, memo_key=key, memo_slots=slots
            )

    pieces = env.get_template(TEMPLATE).generate(
        paths=paths,
        options=options,
        settings=target.structure.settings,
        structure=target.structure,
        # Whether the frontend has the rules of any of these optional maps.
        reads=lambda *names: any(name in frontend for name in names),
        canary_maps=[name for name in ROUTE_OPTION_MAPS if name.startswith("opt-canary")],
        error_maps=("opt-error-backend", "opt-error-codes", "opt-error-source", "opt-fallback"),
        default_certificate=default_certificate_path(paths),
        exact_map=map_path(paths, "exact"),
        prefix_map=map_path(paths, "prefix"),
        redirect_map=map_path(paths, "redirect"),
        hosts_map=map_path(paths, "hosts"),
        regex_map=map_path(paths, "regex"),
        tls_map=map_path(paths, "tls"),
        www_map=map_path(paths, "www"),
        headers_map=map_path(paths, "headers"),
        upstream_tls=upstream,
        policies_map=map_path(paths, "policies"),
        option_maps={name: map_path(paths, name) for name in ROUTE_OPTION_MAPS},
        cors_maps={name: map_path(paths, name) for name in CORS_MAPS},
        redirect_codes=REDIRECT_CODES,
        trusted_proxies=paths.maps / "trusted-proxies.acl",
        lua=paths.base / LUA,
        policies=[_policy_view(paths, policy) for policy in structure.policies],
        userlists=[p for p in structure.policies if p.basic_auth],
        limited=[v for v in (_policy_view(paths, p) for p in structure.policies) if v.limit],
        realm_map=map_path(paths, "realms"),
        external=[p for p in structure.policies if p.external.url],
        ext_map=map_path(paths, "ext-auth"),
        apr1_map=map_path(paths, "apr1"),
        deny_map=map_path(paths, "deny"),
        sni_map=map_path(paths, "sni"),
        # The frontend's client-certificate rules, and the sni map they read.
        client_auth=any(p.client_auth is not None for p in structure.policies)
        or any(tls.secret for tls in structure.host_tls),
        ca_maps={name: map_path(paths, name) for name in CLIENT_AUTH_MAPS},
        default_policy=structure.settings.default_policy,
        default_policy_allow=(
            policy_path(paths, structure.settings.default_policy)
            if structure.settings.default_policy
            else None
        ),
        # Generators: the template walks each list once (for ... in, no length).
        backends=backends(),
        sections=memo,
        passthrough_map=map_path(paths, PASSTHROUGH_MAP),
        https_socket=paths.https_socket,
        passthrough=(
            _backend_view(
                b,
                target.servers.get(b.name, ()),
                pool_server_options(b.settings, structure.check_stretch),
                pool=True,
            )
            for b in structure.passthrough
        ),
    )
    batch: list[str] = []
    size = 0
    for piece in pieces:
        batch.append(piece)
        size += len(piece)
        if size >= CONFIG_PIECE_CHARS:
            yield "".join(batch).encode("utf-8")
            batch, size = [], 0
    yield "".join(batch).encode("utf-8")
    memo.finish()


def render_files(target: AppliedState, options: RenderOptions) -> tuple[RenderedFile, ...]:
    """Every file for ``target`` but haproxy.cfg: maps, certificates, the crt-list, lists."""
    paths = options.paths
    structure = target.structure
    files = [
        RenderedFile(map_path(paths, name), map_file(entries))
        for name, entries in target.maps.files()
    ]
    files.append(
        RenderedFile(paths.crt_list, crt_list(paths, target.certificates, structure.host_tls))
    )
    files.extend(host_tls_files(paths, structure.host_tls))
    if structure.ssl_passthrough:
        files.append(RenderedFile(map_path(paths, PASSTHROUGH_MAP), map_file(target.sni)))
    files.append(
        RenderedFile(
            map_path(paths, "policies"),
            map_file((policy.name, "known") for policy in structure.policies),
        )
    )
    files.extend(
        RenderedFile(policy_path(paths, policy), networks_file(policy.allow_sources))
        for policy in structure.policies
    )
    files.extend(
        RenderedFile(deny_path(paths, policy), networks_file(policy.deny_sources))
        for policy in structure.policies
        if policy.deny_sources
    )
    files.extend(
        RenderedFile(exempt_path(paths, policy), networks_file(policy.limit.exempt))
        for policy in structure.policies
        if policy.limit.active and policy.limit.exempt
    )
    files.append(
        RenderedFile(map_path(paths, "realms"), map_file(_realm_entries(structure.policies)))
    )
    files.append(
        RenderedFile(map_path(paths, "ext-auth"), map_file(_ext_entries(structure.policies)))
    )
    files.extend(
        RenderedFile(map_path(paths, name), map_file(entries))
        for name, entries in _client_auth_entries(structure.policies).items()
    )
    # Password hashes: readable by HAProxy only (as certificate keys are).
    files.append(
        RenderedFile(map_path(paths, "apr1"), map_file(_apr1_entries(structure.policies)), 0o600)
    )
    files.append(
        RenderedFile(
            paths.maps / "trusted-proxies.acl",
            networks_file(structure.settings.proxy_real_ip_cidr),
        )
    )
    files.append(RenderedFile(paths.base / LUA, lua_source()))
    for tls in structure.upstream_tls:
        if tls.pem:
            files.append(
                RenderedFile(upstream_client_path(paths, tls.name), tls.pem.encode("ascii"), 0o600)
            )
        if tls.ca:
            files.append(RenderedFile(upstream_ca_path(paths, tls.name), tls.ca.encode("ascii")))
    files.extend(
        RenderedFile(certificate_path(paths, cert.name), cert.pem.encode("ascii"), 0o600)
        for cert in target.certificates
    )
    return tuple(files)


def lua_source() -> bytes:
    """``ingress.lua`` as shipped: a static file, not a template (nothing is interpolated)."""
    return template_source(LUA).encode()


# A regex map key (regex.scoped_key: ``^<escaped host>(?=/)(?i:<pattern>)``, the
# pattern checked by regex.py): visible ASCII, no '#', quotes or blanks.
_SAFE_PATTERN = re.compile(r"\^[\x21-\x7e]+")


def map_file(entries: Iterable[tuple[str, str]]) -> bytes:
    return "".join(f"{_safe_key(key)} {safe_token(value)}\n" for key, value in entries).encode()


def _safe_key(key: str) -> str:
    if key.startswith("^"):
        if not _SAFE_PATTERN.fullmatch(key) or any(c in key for c in "#\"'`"):
            raise UnsafeValueError(f"refusing to render pattern {key!r}")
        return key
    return safe_token(key)


# Limits of one crt-list line, measured on haproxy 2.6.12: more than 2,048
# words ("too many args", so about 2,045 SNI filters) or 65,535 characters
# ("line too long") fail haproxy -c, so 2,100 Ingresses sharing a wildcard
# Secret broke the whole configuration. The same PEM may appear on several
# lines (checked), so a certificate's hosts are spread over as many lines as
# needed, each short enough to be replayed as one runtime `add ssl crt-list`
# payload too (HAProxy drops commands near 16 KB, see runtime.MAX_COMMAND_BYTES).
CRT_LIST_MAX_HOSTS = 1000
CRT_LIST_MAX_LINE = 12_000


def crt_list_options(paths: HAProxyPaths, tls: HostTLS | None) -> tuple[str, ...]:
    """The option words of a host's crt-list line (what ``add ssl crt-list`` takes too).

    With a CA (auth-tls-secret) the client is asked for a certificate but
    the handshake never fails on it (``verify optional`` here, and
    ``ca-ignore-err``/``crt-ignore-err all`` on the bind, which a crt-list
    line cannot carry): the frontend decides per request (model.ClientAuth).
    """
    words = ["alpn", ALPN]
    if tls is not None:
        if tls.secret:
            words += ["ca-file", str(client_ca_path(paths, tls.ca_name)), "verify", "optional"]
            if tls.crl_file:
                words += ["crl-file", str(client_crl_path(paths, tls.ca_name))]
        if tls.ciphers:
            words += ["ciphers", safe_token(tls.ciphers)]
    return tuple(words)


def crt_list_lines(
    paths: HAProxyPaths, cert: Certificate, host_tls: Mapping[str, HostTLS] | None = None
) -> list[str]:
    """``<pem> [alpn … ca-file …] <sni>…`` lines: the words ``add ssl crt-list`` takes.

    Hosts with the same options share lines; a host with options of its own
    (host_tls) gets lines of its own.
    """
    by_options: dict[tuple[str, ...], list[str]] = {}
    for host in cert.hosts:
        tls = (host_tls or {}).get(host)
        by_options.setdefault(crt_list_options(paths, tls), []).append(host)
    lines: list[str] = []
    for options, hosts in sorted(by_options.items()):
        lines.extend(_crt_list_group(certificate_path(paths, cert.name), options, hosts))
    return lines


def _crt_list_group(pem: Path, options: tuple[str, ...], hosts: Iterable[str]) -> list[str]:
    head = f"{pem} [{' '.join(options)}]"
    lines: list[str] = []
    current: list[str] = []
    size = len(head)
    for host in hosts:
        word = safe_token(host)
        if current and (
            len(current) >= CRT_LIST_MAX_HOSTS or size + 1 + len(word) > CRT_LIST_MAX_LINE
        ):
            lines.append(" ".join([head, *current]))
            current, size = [], len(head)
        current.append(word)
        size += 1 + len(word)
    lines.append(" ".join([head, *current]))
    return lines


def crt_list(
    paths: HAProxyPaths, certificates: Iterable[Certificate], host_tls: Iterable[HostTLS] = ()
) -> bytes:
    """Every certificate's lines, then the default certificate's for hosts with
    handshake options (a CA, ciphers) but no certificate of their own."""
    by_host = {tls.host: tls for tls in host_tls}
    lines = []
    covered: set[str] = set()
    for cert in certificates:
        lines.extend(crt_list_lines(paths, cert, by_host))
        covered.update(cert.hosts)
    for host in sorted(set(by_host) - covered):
        lines.extend(
            _crt_list_group(
                default_certificate_path(paths), crt_list_options(paths, by_host[host]), [host]
            )
        )
    return "".join(line + "\n" for line in lines).encode()


def server_address(endpoint: Endpoint) -> str:
    """``addr:port`` as haproxy.cfg wants it (IPv6 in brackets).

    Endpoint addresses are already in ``ipaddress``'s normal form (translate
    takes them through validate.ip_address; the state file holds what it
    gave): only IPv6 ones have a ':'. Parsing them again was a sixth of
    rendering 10k Ingresses. Whatever the address, the rendered token still
    passes safe_token (the environment's finalize).
    """
    if ":" in endpoint.address:
        return f"[{endpoint.address}]:{endpoint.port}"
    return f"{endpoint.address}:{endpoint.port}"


def enabled_servers(target: AppliedState) -> dict[tuple[str, str], tuple[str, int]]:
    """(backend, server) → (address, port) of every slot haproxy.cfg renders enabled.

    What a reload may carry runtime state over for (process.filter_server_state).
    """
    return {
        (view.name, server.name): (endpoint.address, endpoint.port)
        for layout in (*target.structure.backends, *target.structure.passthrough)
        for view, server, endpoint in _servers(layout, target.servers.get(layout.name, ()))
        if endpoint is not None and not server.disabled
    }


def _servers(
    layout: BackendLayout, slots: tuple[Endpoint | None, ...]
) -> list[tuple[BackendLayout, _Server, Endpoint | None]]:
    result = []
    for index in range(layout.slots):
        endpoint = slots[index] if index < len(slots) else None
        if endpoint is None:
            server = _Server(f"s{index + 1}", FREE_SLOT_ADDRESS, True)
        else:
            server = _Server(
                f"s{index + 1}", server_address(endpoint), endpoint.state is ServerState.MAINT
            )
        result.append((layout, server, endpoint))
    return result


def _backend_view(
    layout: BackendLayout,
    slots: tuple[Endpoint | None, ...],
    options: tuple[str, ...],
    *,
    pool: bool = False,
    memo_key: _SectionKey | None = None,
    memo_slots: Slots = (),
) -> _BackendView:
    """A backend's view; a passthrough ``pool`` has no twins (as plan.AddServer's ``pool``)."""
    servers = tuple(server for _, server, _ in _servers(layout, slots))
    twins = not pool and layout.settings.twins_at(layout.slots)
    return _BackendView(layout.name, layout.settings, servers, options, twins, memo_key, memo_slots)
