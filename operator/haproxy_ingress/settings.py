"""The controller's ConfigMap and an Ingress's annotations → settings (pure).

What each key means, its validator and default are declared once in
:mod:`registry`; this module reads the ConfigMap and the annotations with
those declarations, under our prefix and ingress-nginx's. Only the cluster
admin can write the ConfigMap in the controller's namespace, but its values
still pass the validators: a typo must become a clear Event, not a
haproxy.cfg that fails to load. A bad key is reported and its default kept.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from haproxy_ingress import registry, snippets, validate
from haproxy_ingress.auth import AccessAsk, ClientTLSAsk
from haproxy_ingress.cors import set_cors
from haproxy_ingress.cors import skipped_origins as cors_skipped
from haproxy_ingress.memo import Swept
from haproxy_ingress.model import (
    AccessPolicy,
    BackendSettings,
    Canary,
    Cors,
    GlobalSettings,
    ObjectRef,
    Problem,
    RouteOptions,
    ServiceRef,
)
from haproxy_ingress.registry import ANNOTATION_PREFIX, NGINX_PREFIX, Scope, parse_service_ref
from haproxy_ingress.validate import Invalid

__all__ = [
    "ANNOTATION_PREFIX",
    "NGINX_PREFIX",
    "IngressSettings",
    "Notice",
    "SettingsMemo",
    "ingress_settings",
    "parse_configmap",
    "parse_service_ref",
    "settings_key",
]

_ALLOWLIST = registry.BY_KEY["allowlist-source-range"]
_SSL_REDIRECT = registry.BY_KEY["ssl-redirect"]
_SSL_PASSTHROUGH = registry.BY_KEY["ssl-passthrough"]
_DEFAULT_BACKEND = registry.BY_KEY["default-backend-service"]
_USE_REGEX = registry.BY_KEY["use-regex"]
_DENYLIST = registry.BY_KEY["denylist-source-range"]
_SERVER_ALIAS = registry.BY_KEY["server-alias"]
_FROM_TO_WWW = registry.BY_KEY["from-to-www-redirect"]
_CUSTOM_HEADERS = registry.BY_KEY["custom-headers"]
_DEFAULT_BACKEND_ANNOTATION = registry.BY_KEY["default-backend"]
_CONFIGURATION_SNIPPET = registry.BY_KEY["configuration-snippet"]
_SERVER_SNIPPET = registry.BY_KEY["server-snippet"]
_SSL_CIPHERS = registry.BY_KEY["ssl-ciphers"]
_CORS_ORIGIN = registry.BY_KEY["cors-allow-origin"]

# ingress-nginx keys whose absence would open access or weaken TLS: an
# Ingress that sets one we do not honour is not served as if it had not
# (its paths answer 403 until the key is removed or supported).
_ACCESS_FAMILIES = re.compile(
    r"auth-.*|.*-source-range|limit-.*|global-rate-limit.*|satisfy|denylist-.*"
)
# auth-* keys that only tune the auth request (connection reuse, a response
# cache, cookies on refusals): without them every request asks the auth
# service, which is never weaker, so they are ignored with a Warning.
_AUTH_TUNING = frozenset(
    {
        "auth-keepalive",
        "auth-keepalive-requests",
        "auth-keepalive-timeout",
        "auth-keepalive-share-vars",
        "auth-cache-key",
        "auth-cache-duration",
        "auth-always-set-cookie",
    }
)
# Keys that weaken security only when switched on: the web application
# firewall a team relied on.
_WEAKENING_WHEN_ON = frozenset({"enable-modsecurity", "enable-owasp-core-rules"})
# Text that ingress-nginx pasted into nginx.conf. Never pasted here.
_SNIPPET = re.compile(r".*-snippet")
# nginx directives that grant or refuse access (snippets.ACCESS_WORD): a
# snippet holding one is an access rule we cannot honour, so the Ingress
# fails closed.
_ACCESS_DIRECTIVES = snippets.ACCESS_WORD


@dataclass(frozen=True)
class Notice:
    """A Warning about an annotation that does not stop the Ingress being served."""

    field: str
    reason: str
    event: str


@dataclass(frozen=True)
class IngressSettings:
    """What an Ingress's annotations ask for."""

    backend: BackendSettings
    options: RouteOptions
    policy: AccessPolicy | None
    ssl_redirect: bool
    errors: tuple[Invalid, ...] = ()  # the Ingress cannot be served as written
    notices: tuple[Notice, ...] = ()  # served; the author should know
    # It sets an access rule of its own (valid or not, honoured or not): on
    # any error its paths are kept and deny everyone (fail closed).
    access_rule: bool = False
    # Its paths are regular expressions: use-regex, or a rewrite-target
    # that names capture groups (ingress-nginx implies use-regex then).
    use_regex: bool = False
    canary: Canary | None = None  # canary: "true" — see translate
    # Deny-list, basic auth and satisfy (auth.AccessAsk): translate reads the Secret.
    access: AccessAsk = field(default_factory=AccessAsk)
    # server-alias and from-to-www-redirect: more names for the Ingress's
    # hosts, which translate grants only where no other Ingress has rules.
    aliases: tuple[str, ...] = ()
    www_redirect: bool = False
    # custom-headers as written, and the annotation that set it.
    custom_headers: tuple[str, str] | None = None
    default_backend: str | None = None  # default-backend: a Service of its namespace
    # A server-snippet's program, for the Ingress's hosts (translate decides
    # whether the Ingress may act on them) and the annotation that set it.
    server_snippet: str = ""
    server_snippet_field: str = ""
    server_snippet_answers: bool = False  # it holds a return (snippets.Interpreted)
    # ssl-passthrough, and the annotation that set it (translate decides).
    ssl_passthrough: bool = False
    ssl_passthrough_field: str = ""
    # auth-tls-*: client certificates (translate reads the Secret), and
    # ssl-ciphers for the Ingress's hosts (None: the ConfigMap's).
    client_tls: ClientTLSAsk | None = None
    ssl_ciphers: str | None = None


def _guards(setting: registry.Setting) -> bool:
    """Whether naming ``setting`` makes the Ingress fail closed on any error."""
    return setting is _ALLOWLIST or setting in registry.ACCESS or setting in registry.CLIENT_TLS


def _field(name: str) -> str:
    return f"metadata.annotations[{name}]"


def settings_key(annotations: Mapping[str, Any]) -> SettingsKey | None:
    """What :func:`ingress_settings` reads of ``annotations``, as a hashable key.

    Only keys under the two prefixes count, so Ingresses made from one template
    (a chart's, a team's) share a key whatever else they are annotated with:
    translate parses each key once. None when a key or value is not a string
    (offline input), which is parsed each time.
    """
    items = []
    for name, value in annotations.items():
        if not isinstance(name, str):
            return None
        if name.startswith((ANNOTATION_PREFIX, NGINX_PREFIX)):
            if not isinstance(value, str):
                return None
            items.append((name, value))
    return tuple(sorted(items))


SettingsKey = tuple[tuple[str, str], ...]


class SettingsMemo:
    """:func:`ingress_settings` by :func:`settings_key`, kept across translations while used.

    A full sync at 10k Ingresses parses the same annotations as the last one
    but for the Ingress that changed (~40 µs per Ingress with a few
    annotations). A hit returns what the parse would, as the key is all it
    reads; a change of the ConfigMap's settings (the parse's other input)
    empties the memo. Owned by the reconciler (never module state);
    :meth:`sweep` after each full translation forgets the sets no Ingress
    has any more, so memory follows the cluster.
    """

    def __init__(self) -> None:
        self._defaults: GlobalSettings | None = None
        self._entries: Swept[SettingsKey, IngressSettings] = Swept()

    def __len__(self) -> int:
        return len(self._entries)

    def parse(self, annotations: Mapping[str, Any], defaults: GlobalSettings) -> IngressSettings:
        """:func:`ingress_settings`, memoised."""
        if defaults is not self._defaults:
            if defaults != self._defaults:
                self._entries.clear()
            self._defaults = defaults
        key = settings_key(annotations)
        if key is None:
            return ingress_settings(annotations, defaults)
        return self._entries.recall(key, lambda: ingress_settings(annotations, defaults))

    def sweep(self) -> None:
        """Forget every entry not read since the last sweep."""
        self._entries.sweep()


def ingress_settings(annotations: Mapping[str, Any], defaults: GlobalSettings) -> IngressSettings:
    """An Ingress's annotations under both prefixes, over the ConfigMap's ``defaults``.

    Unknown keys under our prefix are refused (a typo must not pass
    silently); unknown ingress-nginx keys get a Warning and are ignored,
    except access and TLS ones, which fail closed. If both prefixes set a
    key, ours wins, with a Warning.
    """
    errors: list[Invalid] = []
    notices: list[Notice] = []
    access_rule = False
    # The settings this Ingress names: the loop below visits only those (in
    # the registry's order), so an Ingress without annotations costs nothing
    # per declared key (10k Ingresses: 1.8 s of a full translation before).
    named: dict[int, registry.Setting] = {}
    # Offline input may have non-string keys (YAML `1: x`), which neither sort
    # with strings nor can be ours.
    for name in sorted(k for k in annotations if isinstance(k, str)):
        field = _field(name)
        if name.startswith(ANNOTATION_PREFIX):
            setting = registry.BY_KEY.get(name[len(ANNOTATION_PREFIX) :])
            if setting is None or not setting.annotation:
                errors.append(Invalid(field, "unknown annotation"))
            else:
                named[id(setting)] = setting
                access_rule = access_rule or _guards(setting)
        elif name.startswith(NGINX_PREFIX):
            key = name[len(NGINX_PREFIX) :]
            setting = registry.BY_NGINX.get(key)
            if setting is not None and setting.annotation:
                named[id(setting)] = setting
                access_rule = access_rule or _guards(setting)
                continue
            refusal = _unsupported_nginx(key, annotations[name])
            if refusal is None:
                notices.append(
                    Notice(field, "not supported by this controller; ignored", "Unsupported")
                )
            elif isinstance(refusal, Notice):
                notices.append(dataclasses.replace(refusal, field=field))
            else:
                access_rule = access_rule or refusal[1]
                errors.append(Invalid(field, refusal[0]))

    backend = defaults.backend
    options = defaults.route
    policy = defaults.default_policy
    ssl_redirect = True
    use_regex = False
    aliases: tuple[str, ...] = ()
    www_redirect = False
    custom_headers: tuple[str, str] | None = None
    default_backend: str | None = None
    canary = Canary()
    access = AccessAsk()
    cors = Cors()
    server_snippet = server_field = ""
    server_answers = False
    ssl_passthrough, passthrough_field = False, ""
    client_tls: ClientTLSAsk | None = None
    ssl_ciphers: str | None = None
    # Collected, then applied together (registry.apply_all).
    backend_changes: list[tuple[registry.Setting, Any]] = []
    option_changes: list[tuple[registry.Setting, Any]] = []
    snippet: str | None = None
    for setting in sorted(named.values(), key=lambda s: registry.POSITION[id(s)]):
        theirs = [n for n in setting.nginx_annotations if n in annotations]
        ours = setting.annotation_name if setting.annotation_name in annotations else None
        if ours is not None and theirs:
            notices.append(
                Notice(
                    _field(theirs[0]),
                    f"also set as {ours}, which wins",
                    "Conflict",
                )
            )
        if ours is None and not theirs:
            continue
        name = ours or theirs[0]
        field = _field(name)
        value = annotations[name]
        if ours is None and isinstance(value, str):
            # ingress-nginx trims every line of a value before reading it
            # (its parser's normalizeString): "legacy " is "legacy" there.
            value = "\n".join(line.strip() for line in value.split("\n"))
        if ours is None and _empty(value) and not _guards(setting):
            # ingress-nginx reads an empty value as no value (its parsers
            # refuse it and the default applies; charts render `key: ""` for
            # an unset option), so a migrating Ingress keeps being served.
            # Access rules are not read that way: an empty allow-list or
            # auth-url still fails closed below.
            notices.append(
                Notice(
                    field,
                    "empty: ignored, as ingress-nginx does (the default applies)",
                    "InvalidSetting",
                )
            )
            continue
        try:
            if setting in (_SSL_REDIRECT, _SSL_PASSTHROUGH) and isinstance(value, bool):
                value = str(value).lower()  # unquoted in offline YAML
            if not isinstance(value, str):
                raise Invalid(field, "must be a string")
            parsed = setting.parse(value, field) if ours else setting.parse_nginx(value, field)
            if setting.scope is Scope.BACKEND:
                backend_changes.append((setting, parsed))
            elif setting is _ALLOWLIST:
                policy = parsed
            elif setting is _SSL_REDIRECT:
                ssl_redirect = parsed
            elif setting is _SSL_PASSTHROUGH:
                ssl_passthrough, passthrough_field = parsed, field
            elif setting is _USE_REGEX:
                use_regex = parsed
            elif setting is _SERVER_ALIAS:
                aliases = parsed
            elif setting is _FROM_TO_WWW:
                www_redirect = parsed
            elif setting is _CUSTOM_HEADERS:
                custom_headers = (parsed, field)
            elif setting is _DEFAULT_BACKEND_ANNOTATION:
                default_backend = parsed
            elif setting in registry.CANARY:
                canary = registry.apply(canary, setting, parsed)
            elif setting in registry.ACCESS:
                access = registry.apply(access, setting, parsed)
            elif setting in registry.CORS:
                cors = registry.apply(cors, setting, parsed)
                skipped = cors_skipped(value) if setting is _CORS_ORIGIN and ours is None else ()
                if skipped:
                    notices.append(
                        Notice(
                            field,
                            "not origins, skipped as ingress-nginx does: "
                            + ", ".join(validate.printable(w) for w in skipped),
                            "InvalidSetting",
                        )
                    )
            elif setting in registry.CLIENT_TLS:
                client_tls = registry.apply(client_tls or ClientTLSAsk(), setting, parsed)
            elif setting is _SSL_CIPHERS:
                ssl_ciphers = parsed
            elif setting in registry.SNIPPETS:
                if not defaults.allow_snippets:
                    # Off by the admin: as refused, so one holding an access
                    # rule (or a return) still fails closed.
                    parsed = dataclasses.replace(
                        parsed,
                        refused="snippets are off (ConfigMap allow-snippet-annotations)",
                        access=parsed.access
                        or parsed.answers
                        or bool(_ACCESS_DIRECTIVES.search(str(value))),
                    )
                if parsed.refused:
                    reason = f"nginx snippet not applied: {parsed.refused}"
                    if parsed.access:
                        # Unapplied, its access rule would be dropped: fail closed.
                        access_rule = True
                        raise Invalid(field, reason + "; it holds an access rule")
                    notices.append(Notice(field, reason, "Refused"))
                elif setting is _CONFIGURATION_SNIPPET:
                    snippet = parsed.program or None
                    # A return refuses (or hides) requests: an access rule, so
                    # any error keeps the paths denying rather than left out.
                    access_rule = access_rule or parsed.answers
                elif setting is _SERVER_SNIPPET:
                    server_snippet, server_field = parsed.program, field
                    server_answers = parsed.answers
                    access_rule = access_rule or parsed.answers
                elif parsed.answers:
                    # auth-snippet is never applied: its return would be lost.
                    access_rule = True
                    raise Invalid(
                        field,
                        "holds a return, which is not applied: auth-url requests are built by "
                        "ingress.lua and take no snippet",
                    )
                else:
                    notices.append(
                        Notice(
                            field,
                            "checked, not applied: auth-url requests are built by "
                            "ingress.lua and take no snippet",
                            "Unsupported",
                        )
                    )
            else:
                option_changes.append((setting, parsed))
        except Invalid as error:
            errors.append(error)
        except ValueError as error:
            # A parser that tripped over a value instead of refusing it (int()
            # past 4,300 digits, a lone surrogate): still this Ingress's
            # problem alone, never an exception that ends every sync.
            errors.append(Invalid(field, f"cannot be read: {type(error).__name__}"))
    backend = registry.apply_all(backend, backend_changes)
    options = registry.apply_all(options, option_changes)
    if snippet is not None:
        options = dataclasses.replace(options, snippet=snippet)
    options = set_cors(options, cors)
    return IngressSettings(
        backend=backend,
        options=options,
        policy=policy,
        ssl_redirect=ssl_redirect,
        errors=tuple(errors),
        notices=tuple(notices),
        access_rule=access_rule,
        use_regex=use_regex
        or bool(options.rewrite_target and registry.CAPTURE.search(options.rewrite_target)),
        canary=canary if canary.enabled else None,
        access=access,
        aliases=aliases,
        www_redirect=www_redirect,
        custom_headers=custom_headers,
        default_backend=default_backend,
        server_snippet=server_snippet,
        server_snippet_field=server_field,
        server_snippet_answers=server_answers,
        ssl_passthrough=ssl_passthrough,
        ssl_passthrough_field=passthrough_field,
        client_tls=client_tls,
        ssl_ciphers=ssl_ciphers,
    )


def _empty(value: object) -> bool:
    """Whether ingress-nginx reads ``value`` as empty (its parsers trim each line)."""
    return isinstance(value, str) and not value.strip()


def _unsupported_nginx(key: str, value: object) -> Notice | tuple[str, bool] | None:
    """Why an ingress-nginx key we do not honour matters.

    None: ignored with a Warning. A Notice: ignored with that Warning.
    (reason, fails closed): the Ingress is not served as written.
    """
    if key == "modsecurity-snippet":
        return ("modsecurity rules are a protection this controller does not honour", True)
    if _SNIPPET.fullmatch(key):
        if isinstance(value, str) and _ACCESS_DIRECTIVES.search(value):
            return (
                "an nginx snippet holding an access rule is never pasted nor honoured; "
                "the Ingress fails closed",
                True,
            )
        return Notice("", "nginx snippets are never pasted into HAProxy; ignored", "Refused")
    if key in _AUTH_TUNING:
        return Notice(
            "",
            "tunes the auth request only; ignored: every request asks the auth service",
            "Unsupported",
        )
    if _ACCESS_FAMILIES.fullmatch(key):
        return (f"{key} is an access rule this controller does not honour yet", True)
    if key in _WEAKENING_WHEN_ON and str(value).strip().lower() in ("on", "true"):
        return (f"{key} is a protection this controller does not honour yet", True)
    return None


def parse_configmap(
    configmap: Mapping[str, Any] | None,
) -> tuple[GlobalSettings, ServiceRef | None, list[Problem]]:
    """Settings, the default backend it names (if any), and problems with its keys."""
    settings = registry.defaults()
    if configmap is None:
        return settings, None, []
    meta = configmap.get("metadata") or {}
    meta = meta if isinstance(meta, Mapping) else {}
    source = ObjectRef(
        "ConfigMap",
        validate.printable(meta.get("namespace", "")),
        validate.printable(meta.get("name", "")),
        str(meta.get("uid", "")),
    )
    problems: list[Problem] = []
    default_backend: ServiceRef | None = None
    data = configmap.get("data") or {}
    if not isinstance(data, Mapping):
        return (
            settings,
            None,
            [Problem(source, "data", "must be a map of strings", "InvalidSetting")],
        )
    # Each setting once: ours if set, else one of ingress-nginx's names for it.
    picked: dict[str, str] = {}
    for key in sorted(data, key=str):
        setting = _configmap_setting(key)
        if setting is None:
            field = f"data.{validate.printable(key)}"
            refusal = _global_access_refusal(key, data[key]) if isinstance(key, str) else None
            if refusal is not None:
                # Fail closed: ignored, it would open every route it guarded.
                reason = f"{refusal}; every route answers 403 until it is removed"
                problems.append(Problem(source, field, reason, GLOBAL_ACCESS_REFUSED))
            else:
                problems.append(
                    Problem(source, field, "unknown setting (ignored)", "InvalidSetting")
                )
            continue
        other = picked.setdefault(setting.key, key)
        if other != key:
            winner, loser = (key, other) if key == setting.key else (other, key)
            picked[setting.key] = winner
            problems.append(
                Problem(
                    source, f"data.{loser}", f"also set as {winner}, which wins", "InvalidSetting"
                )
            )
    for setting in registry.SETTINGS:
        if setting.key not in picked:
            continue
        key = picked[setting.key]
        ours = key == setting.key
        field = f"data.{key}"
        value = data[key]
        try:
            if not isinstance(value, str):
                raise Invalid(field, "must be a string")
            if setting in registry.GLOBAL_AUTH and not value.strip():
                continue  # as ingress-nginx reads it: unset (charts render "")
            parsed = setting.parse(value, field) if ours else setting.parse_nginx(value, field)
            if setting is _DEFAULT_BACKEND:
                default_backend = parsed
            elif setting.scope is Scope.BACKEND:
                backend = registry.apply(settings.backend, setting, parsed)
                settings = dataclasses.replace(settings, backend=backend)
            elif setting is _ALLOWLIST:
                settings = dataclasses.replace(settings, default_policy=parsed)
            elif setting is _DENYLIST:
                settings = dataclasses.replace(settings, deny_sources=parsed)
            elif setting.scope is Scope.ROUTE:
                route = registry.apply(settings.route, setting, parsed)
                settings = dataclasses.replace(settings, route=route)
            else:
                settings = registry.apply(settings, setting, parsed)
        except Invalid as error:
            if setting in registry.GLOBAL_AUTH:
                # Unset, it would guard nothing: fail closed instead.
                reason = f"{error.reason}; every route answers 403 until it is fixed"
                problems.append(Problem(source, error.field, reason, GLOBAL_ACCESS_REFUSED))
            else:
                problems.append(Problem(source, error.field, error.reason, "InvalidSetting"))
        except ValueError as error:  # as in ingress_settings: reported, default kept
            reason = f"cannot be read: {type(error).__name__}"
            event = GLOBAL_ACCESS_REFUSED if setting in registry.GLOBAL_AUTH else "InvalidSetting"
            problems.append(Problem(source, field, reason, event))
    return settings, default_backend, problems


# The Event reason of an ingress-nginx ConfigMap key that guards every route
# and that this controller does not honour: then every route denies.
GLOBAL_ACCESS_REFUSED = "GlobalAccessDenied"


def _global_access_refusal(key: str, value: object) -> str | None:
    """Why an unknown ingress-nginx ConfigMap key guards every route, if it does."""
    text = str(value).strip()
    if key == "global-auth-snippet" and _ACCESS_DIRECTIVES.search(text):
        return "global-auth-snippet holds an access rule, which is never pasted nor honoured"
    if key in ("block-cidrs", "block-user-agents", "block-referers") and text:
        return f"{key} (a global block list) is not honoured"
    if key in ("enable-modsecurity", "enable-owasp-modsecurity-crs") and text.lower() in (
        "true",
        "on",
    ):
        return f"{key} (a web application firewall) is not honoured"
    return None


def _configmap_setting(key: object) -> registry.Setting | None:
    if not isinstance(key, str):
        return None
    setting = registry.BY_KEY.get(key)
    if setting is not None and setting.configmap:
        return setting
    setting = registry.BY_NGINX.get(key)
    return setting if setting is not None and setting.nginx_configmap else None
