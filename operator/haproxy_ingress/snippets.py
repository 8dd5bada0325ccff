"""ingress-nginx snippets, interpreted into our own model — never pasted (pure).

``configuration-snippet``, ``server-snippet`` and ``auth-snippet`` hold nginx
directives that ingress-nginx pasted into nginx.conf. Here the text is read
by a tokenizer that follows nginx's own (``ngx_conf_read_token``: quotes,
backslash escapes, ``;``, braces, ``#`` comments, ``${var}``), then a small
interpreter turns the directives it knows into operations of our own, each
value checked by an allow-list validator. Anything outside the subset leaves
the whole snippet unapplied (:class:`Interpreted` ``refused``), and a snippet
holding an access rule it cannot honour says so (``access``): the Ingress
then fails closed.

The operations are encoded as :data:`RECORD`/:data:`FIELD`-separated text
(:func:`encode`), which reaches HAProxy only base64-encoded in a map and is
executed by ``ingress_snippet`` in ``ingress.lua``: the Lua code sets a
header, a method or a reply from data, so no byte of a snippet is ever read
as configuration, as a log-format (``%[``) or as a Lua pattern.

Supported (everything else is refused, naming the directive):

* ``add_header NAME VALUE [always]`` — a response header (2xx/3xx only
  unless ``always``, as nginx);
* ``more_set_headers [-s CODES] [-t TYPES] 'NAME: VALUE'…`` — response
  headers replaced (``'NAME:'`` clears); ``more_clear_headers`` clears
  (``X-*`` wildcards); ``proxy_hide_header NAME`` too;
* ``proxy_set_header NAME VALUE`` — a request header to the pod (an empty
  value removes it); ``more_set_input_headers [-r] [-t TYPES] 'NAME: VALUE'…``;
  ``more_clear_input_headers NAME…``;
* ``proxy_method METHOD``;
* ``return CODE [TEXT|URL]`` and ``return URL``; ``rewrite REGEX URL
  redirect|permanent`` for the regexes ``^``, ``^(.*)$``, ``^/(.*)$`` (and
  without ``$``);
* ``set $name VALUE`` (substituted where used) and ``if (COND) { … }`` with
  ``$var``, ``$var = text`` or ``$var != text`` around ``return``,
  ``rewrite``, ``add_header`` and ``more_set_(input_)headers``.

Variables: ``$host``, ``$server_name``, ``$scheme``, ``$https``,
``$request_uri``, ``$uri``, ``$document_uri``, ``$args``, ``$query_string``,
``$is_args``, ``$remote_addr``, ``$remote_port``, ``$server_port``,
``$request_method``, ``$proxy_add_x_forwarded_for``, ``$http_NAME``,
``$cookie_NAME``, ``$arg_NAME``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from haproxy_ingress.headers import FRAMING
from haproxy_ingress.model import ObjectRef, Problem, Route

# Separators of the encoded program: control characters no validated value
# holds (values are printable ASCII), so a value can never split a record.
RECORD = "\x1e"
FIELD = "\x1f"
PART = "\x1d"

MAX_SNIPPET_BYTES = 16_384  # ingress-nginx users' snippets are a few lines
MAX_DIRECTIVES = 200
MAX_DEPTH = 8
# The encoded program is a map value (base64: 4/3 larger) and a runtime
# `add map` command, which HAProxy drops near 16 KB (runtime.MAX_COMMAND_BYTES).
MAX_PROGRAM_BYTES = 8_192
MAX_VALUE_LENGTH = 4_096

# Directives whose absence would open access: a snippet that holds one is an
# access rule we cannot honour (fail closed). ``return`` is one only when the
# snippet is left unapplied: a path it hid or refused would otherwise be served.
ACCESS_DIRECTIVE = re.compile(r"deny|allow|auth_.*|limit_.*|satisfy|access_by_lua.*")

# In text that is not nginx syntax (or a snippet never read, settings.py):
# any word that could be an access rule.
ACCESS_WORD = re.compile(r"(?:^|[\s;{}])(?:return|" + ACCESS_DIRECTIVE.pattern + r")\b")
_NAME = re.compile(r"[A-Za-z0-9_]+")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
_WILDCARD_NAME = re.compile(r"[!#$%&'+.^_`|~0-9A-Za-z-]{1,128}\*?")
# Printable ASCII and spaces: no control character (CR, LF, NUL, tabs).
_TEXT = re.compile(r"[\x20-\x7e]*")
# A reply body (never a header) may also hold line breaks and tabs.
_BODY = re.compile(r"[\x20-\x7e\t\r\n]*")
_METHOD = re.compile(r"[A-Z]{1,20}")
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+*-]{1,64}")
# nginx's add_header without `always`: these statuses only.
ADD_HEADER_STATUSES = "200,201,204,206,301,302,303,304,307,308"
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
SIMPLE_VARIABLES = {
    "host": "host",
    "server_name": "host",
    "scheme": "scheme",
    "https": "https",
    "request_uri": "request_uri",
    "uri": "uri",
    "document_uri": "uri",
    "args": "args",
    "query_string": "args",
    "is_args": "is_args",
    "remote_addr": "remote_addr",
    "remote_port": "remote_port",
    "server_port": "server_port",
    "request_method": "request_method",
    "proxy_add_x_forwarded_for": "xff",
}
# $http_x_foo → header X-Foo; $cookie_x → cookie x; $arg_x → query parameter x.
PREFIXED_VARIABLES = {"http_": "hdr:", "cookie_": "cookie:", "arg_": "arg:"}


class Refused(Exception):
    """The snippet cannot be applied as written (the reason names the directive)."""

    def __init__(self, reason: str, *, access: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.access = access


# --- tokenizer ------------------------------------------------------------------


@dataclass(frozen=True)
class Directive:
    name: str
    args: tuple[str, ...]
    block: tuple[Directive, ...] | None = None  # ``name args { … }``
    line: int = 1


_SPACE = " \t\r\n"
_SPECIAL = _SPACE + ";{}\"'#"
_QUOTED_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "t": "\t", "r": "\r", "n": "\n"}


def _tokens(text: str) -> Iterator[tuple[str, int, bool]]:
    """(token, line, is a bare ``;``/``{``/``}``), as nginx's configuration reader splits."""
    index, line, length = 0, 1, len(text)
    while index < length:
        char = text[index]
        if char == "\n":
            line += 1
            index += 1
        elif char in _SPACE:
            index += 1
        elif char == "#":
            end = text.find("\n", index)
            index = length if end < 0 else end
        elif char in ";{}":
            yield char, line, True
            index += 1
        elif char in "\"'":
            out = []
            index += 1
            while True:
                if index >= length:
                    raise Refused(f"line {line}: unterminated {char} quote")
                current = text[index]
                if current == "\\" and index + 1 < length:
                    following = text[index + 1]
                    out.append(_QUOTED_ESCAPES.get(following, "\\" + following))
                    index += 2
                    continue
                if current == char:
                    index += 1
                    break
                if current == "\n":
                    line += 1
                out.append(current)
                index += 1
            # nginx allows a ')' right after a quoted string: `if ($a = "b")`.
            if index < length and text[index] == ")":
                yield "".join(out), line, False
                yield ")", line, False
                index += 1
                continue
            if index < length and text[index] not in _SPACE + ";{}":
                raise Refused(f"line {line}: unexpected {text[index]!r} after a quoted string")
            yield "".join(out), line, False
        else:
            out = []
            while index < length and text[index] not in _SPECIAL:
                current = text[index]
                if current == "\\" and index + 1 < length:
                    out.append(text[index + 1])
                    index += 2
                    continue
                if current == "$" and text.startswith("{", index + 1):
                    end = text.find("}", index)
                    if end < 0:
                        raise Refused(f"line {line}: unterminated ${{")
                    out.append(text[index : end + 1])
                    index = end + 1
                    continue
                out.append(current)
                index += 1
            yield "".join(out), line, False


def parse(text: str) -> tuple[Directive, ...]:
    """The directives of a snippet, blocks nested; :class:`Refused` if it is not nginx syntax."""
    try:
        size = len(text.encode())
    except UnicodeEncodeError:  # a lone surrogate (YAML's "\ud800", offline input)
        raise Refused("is not UTF-8 text") from None
    if size > MAX_SNIPPET_BYTES:
        raise Refused(f"longer than {MAX_SNIPPET_BYTES} bytes")
    stack: list[tuple[list[Directive], str, tuple[str, ...], int]] = []
    current: list[Directive] = []
    words: list[str] = []
    start = 1
    count = 0
    for token, line, special in _tokens(text):
        if not words:
            start = line
        if not special:
            words.append(token)
            continue
        if token == "}":
            if words:
                raise Refused(f"line {line}: unexpected '}}' (missing ';' after {words[0]!r})")
            if not stack:
                raise Refused(f"line {line}: unexpected '}}'")
            outer, name, args, opened = stack.pop()
            outer.append(Directive(name, args, tuple(current), opened))
            current = outer
            continue
        if not words:
            raise Refused(f"line {line}: unexpected {token!r}")
        count += 1
        if count > MAX_DIRECTIVES:
            raise Refused(f"more than {MAX_DIRECTIVES} directives")
        if token == ";":
            current.append(Directive(words[0], tuple(words[1:]), None, start))
        else:  # "{"
            if len(stack) >= MAX_DEPTH:
                raise Refused(f"line {line}: blocks nested deeper than {MAX_DEPTH}")
            stack.append((current, words[0], tuple(words[1:]), start))
            current = []
        words = []
    if words:
        raise Refused(f"unexpected end of snippet (missing ';' after {words[0]!r})")
    if stack:
        raise Refused(f"line {stack[-1][3]}: unclosed block {stack[-1][1]!r}")
    return tuple(current)


def directive_names(directives: tuple[Directive, ...]) -> Iterator[str]:
    for directive in directives:
        yield directive.name
        if directive.block is not None:
            yield from directive_names(directive.block)


# --- values -------------------------------------------------------------------------

# A value: literal text and variables, in order (("L", text) or ("V", variable)).
Part = tuple[str, str]
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z0-9_]*)\}|([A-Za-z0-9_]*))")


def _variable(name: str, where: str) -> str:
    if name in SIMPLE_VARIABLES:
        return SIMPLE_VARIABLES[name]
    for prefix, kind in PREFIXED_VARIABLES.items():
        suffix = name[len(prefix) :]
        if name.startswith(prefix) and suffix and len(suffix) <= 64:
            # nginx: $http_x_foo is the header X-Foo (case-insensitive).
            return kind + (suffix.replace("_", "-").lower() if kind == "hdr:" else suffix)
    raise Refused(f"{where}: variable ${name} is not supported")


@dataclass
class _Scope:
    """What the interpreter knows while reading a snippet."""

    sets: dict[str, tuple[Part, ...]] = field(default_factory=dict)


def value(text: str, scope: _Scope, where: str, *, body: bool = False) -> tuple[Part, ...]:
    """``text`` with its variables resolved; literal text checked (printable ASCII)."""
    if len(text) > MAX_VALUE_LENGTH:
        raise Refused(f"{where}: value longer than {MAX_VALUE_LENGTH} characters")
    parts: list[Part] = []
    position = 0
    for match in _VARIABLE.finditer(text):
        if match.start() > position:
            parts.append(("L", text[position : match.start()]))
        name = match.group(1) if match.group(1) is not None else match.group(2)
        if not name:
            raise Refused(f"{where}: a '$' that names no variable")
        if name in scope.sets:
            parts.extend(scope.sets[name])
        else:
            parts.append(("V", _variable(name, where)))
        position = match.end()
    if position < len(text):
        parts.append(("L", text[position:]))
    for kind, literal in parts:
        if kind == "L" and not (_BODY if body else _TEXT).fullmatch(literal):
            raise Refused(
                f"{where}: only printable ASCII is allowed (no CR, LF, tabs or "
                f"control characters), got {literal!r:.60}"
            )
    return _merged(parts)


def _merged(parts: list[Part]) -> tuple[Part, ...]:
    out: list[Part] = []
    for part in parts:
        if part[0] == "L" and out and out[-1][0] == "L":
            out[-1] = ("L", out[-1][1] + part[1])
        elif part != ("L", ""):
            out.append(part)
    return tuple(out)


def _literal(parts: tuple[Part, ...]) -> str | None:
    if not parts:
        return ""
    return parts[0][1] if len(parts) == 1 and parts[0][0] == "L" else None


def _header_name(text: str, where: str, *, wildcard: bool = False) -> str:
    pattern = _WILDCARD_NAME if wildcard else _HEADER_NAME
    if not pattern.fullmatch(text):
        raise Refused(f"{where}: {text!r:.60} is not a header name")
    if text.rstrip("*").lower() in FRAMING or (wildcard and text == "*"):
        raise Refused(f"{where}: header {text!r} may not be set or cleared by a snippet")
    return text.lower()


def _location(parts: tuple[Part, ...], where: str) -> tuple[Part, ...]:
    """A redirect target: no spaces; an absolute path, an http(s) URL or a variable first."""
    for kind, text in parts:
        if kind == "L" and " " in text:
            raise Refused(f"{where}: a redirect URL may not contain spaces")
    first_kind, first = parts[0] if parts else ("L", "")
    if first_kind == "L" and not (
        first.startswith("/") or first.startswith("http://") or first.startswith("https://")
    ):
        raise Refused(f"{where}: a redirect URL must start with '/', http:// or https://")
    return parts


# --- interpreter -------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One operation; ``condition`` is (left, operator, right) or empty: always."""

    code: str
    args: tuple[str | tuple[Part, ...], ...]
    condition: tuple[tuple[Part, ...], str, tuple[Part, ...]] | None = None


@dataclass(frozen=True)
class Interpreted:
    """A snippet read: its program (encoded, "" when nothing applies) or why it was refused."""

    program: str = ""
    refused: str = ""  # non-empty: left unapplied, with this reason
    access: bool = False  # refused and it held an access rule: fail closed
    # Applied and it holds a return: it answers (refuses, hides) some requests
    # itself, so wherever it cannot be applied the paths must deny instead.
    answers: bool = False


def interpret(text: str, *, server: bool = False) -> Interpreted:
    """Read a snippet; never raises. ``server``: a server-snippet (host level)."""
    try:
        directives = parse(text)
    except Refused as refusal:
        # Unparseable: the text may still hold an access rule (fail closed).
        access = bool(ACCESS_WORD.search(text))
        return Interpreted(refused=f"not nginx syntax: {refusal.reason}", access=access)
    names = set(directive_names(directives))
    try:
        ops = _interpret(directives, _Scope(), None, server=server)
        program = encode(ops)
        if len(program.encode()) > MAX_PROGRAM_BYTES:
            raise Refused(f"its operations exceed {MAX_PROGRAM_BYTES} bytes")
    except Refused as refusal:
        access = any(ACCESS_DIRECTIVE.fullmatch(n) for n in names) or "return" in names
        return Interpreted(refused=refusal.reason, access=access)
    return Interpreted(program=program, answers="return" in names)


_IN_IF = frozenset(
    {"return", "rewrite", "add_header", "more_set_headers", "more_set_input_headers"}
)


def _interpret(
    directives: tuple[Directive, ...],
    scope: _Scope,
    condition: tuple[tuple[Part, ...], str, tuple[Part, ...]] | None,
    *,
    server: bool,
) -> list[Op]:
    ops: list[Op] = []
    for directive in directives:
        name = directive.name
        where = f"line {directive.line}: {name}"
        if ACCESS_DIRECTIVE.fullmatch(name):
            raise Refused(f"{where}: access rules in snippets are not honoured", access=True)
        if condition is not None and name not in _IN_IF:
            raise Refused(f"{where}: not supported inside if")
        if directive.block is not None and name != "if":
            raise Refused(f"{where}: blocks ({name} {{ … }}) are not supported")
        handler = _HANDLERS.get(name)
        if name == "if":
            if directive.block is None:
                raise Refused(f"{where}: needs a block")
            inner = _condition(directive.args, scope, where)
            ops.extend(_interpret(directive.block, scope, inner, server=server))
        elif handler is None:
            raise Refused(f"{where}: directive not supported")
        else:
            ops.extend(
                Op(op.code, op.args, condition) for op in handler(directive.args, scope, where)
            )
    return ops


def _condition(
    args: tuple[str, ...], scope: _Scope, where: str
) -> tuple[tuple[Part, ...], str, tuple[Part, ...]]:
    if not args or not args[0].startswith("(") or not args[-1].endswith(")"):
        raise Refused(f"{where}: condition must be in parentheses")
    words = list(args)
    words[0] = words[0][1:]
    words[-1] = words[-1][:-1]
    words = [w for w in words if w != ""]
    if len(words) == 1 and words[0].startswith("$"):
        return value(words[0], scope, where), "", ()
    if len(words) == 3 and words[1] in ("=", "!=") and words[0].startswith("$"):
        return value(words[0], scope, where), words[1], value(words[2], scope, where)
    raise Refused(
        f"{where}: only ($var), ($var = text) and ($var != text) conditions are supported"
    )


def _arity(args: tuple[str, ...], where: str, low: int, high: int) -> None:
    if not low <= len(args) <= high:
        raise Refused(f"{where}: takes {low}-{high} arguments, got {len(args)}")


def _add_header(args: tuple[str, ...], scope: _Scope, where: str) -> list[Op]:
    _arity(args, where, 2, 3)
    if len(args) == 3 and args[2] != "always":
        raise Refused(f"{where}: the third argument can only be 'always'")
    statuses = "" if len(args) == 3 else ADD_HEADER_STATUSES
    name = _header_name(args[0], where)
    return [Op("res_add", (name, value(args[1], scope, where), statuses, ""))]


def _options(args: tuple[str, ...], where: str, allowed: str) -> tuple[dict[str, str], list[str]]:
    """headers-more's ``-s CODES``, ``-t TYPES``, ``-r`` before its header arguments."""
    options: dict[str, str] = {}
    rest = list(args)
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        if flag not in allowed:
            raise Refused(f"{where}: option {flag!r:.20} is not supported")
        if flag == "-r":
            options["-r"] = "1"
            continue
        if not rest:
            raise Refused(f"{where}: option {flag} needs a value")
        words = rest.pop(0).split()
        if flag == "-s":
            if not words or not all(re.fullmatch(r"[1-5][0-9][0-9]", w) for w in words):
                raise Refused(f"{where}: -s takes status codes")
            options["-s"] = ",".join(words)
        else:
            if not words or not all(_CONTENT_TYPE.fullmatch(w) for w in words):
                raise Refused(f"{where}: -t takes content types")
            options["-t"] = ",".join(w.lower() for w in words)
    if not rest:
        raise Refused(f"{where}: names no header")
    return options, rest


def _more_set(args: tuple[str, ...], scope: _Scope, where: str, *, request: bool) -> list[Op]:
    options, rest = _options(args, where, "-r -t" if request else "-s -t")
    ops = []
    for item in rest:
        name, colon, text = item.partition(":")
        header = _header_name(name.strip(), where)
        parts = value(text.strip(), scope, where) if colon else ()
        if request:
            ops.append(Op("req_set", (header, parts, options.get("-r", ""), options.get("-t", ""))))
        else:
            ops.append(Op("res_set", (header, parts, options.get("-s", ""), options.get("-t", ""))))
    return ops


def _more_clear(args: tuple[str, ...], scope: _Scope, where: str, *, request: bool) -> list[Op]:
    options, rest = _options(args, where, "-t" if request else "-s -t")
    code = "req_set" if request else "res_set"
    return [
        Op(
            code,
            (
                _header_name(name, where, wildcard=True),
                (),
                options.get("-s", ""),
                options.get("-t", ""),
            ),
        )
        for item in rest
        for name in item.split()
    ]


def _proxy_set_header(args: tuple[str, ...], scope: _Scope, where: str) -> list[Op]:
    _arity(args, where, 2, 2)
    return [Op("req_set", (_header_name(args[0], where), value(args[1], scope, where), "", ""))]


def _proxy_hide_header(args: tuple[str, ...], scope: _Scope, where: str) -> list[Op]:
    _arity(args, where, 1, 1)
    return [Op("res_set", (_header_name(args[0], where), (), "", ""))]


def _proxy_method(args: tuple[str, ...], scope: _Scope, where: str) -> list[Op]:
    _arity(args, where, 1, 1)
    if not _METHOD.fullmatch(args[0]):
        raise Refused(f"{where}: {args[0]!r:.30} is not an HTTP method")
    return [Op("method", (args[0],))]


def _return(args: tuple[str, ...], scope: _Scope, where: str) -> list[Op]:
    _arity(args, where, 1, 2)
    if len(args) == 1 and not re.fullmatch(r"[0-9]{3}", args[0]):
        # `return URL`: a 302 (nginx: the URL must start with http(s):// or $scheme).
        return [Op("redirect", ("302", _location(value(args[0], scope, where), where)))]
    if not re.fullmatch(r"[1-5][0-9][0-9]", args[0]) or int(args[0]) < 200:
        raise Refused(f"{where}: status {args[0]!r:.10} must be 200-599")
    code = int(args[0])
    text = args[1] if len(args) == 2 else ""
    if code in REDIRECT_STATUSES:
        return [Op("redirect", (str(code), _location(value(text, scope, where), where)))]
    return [Op("reply", (str(code), value(text, scope, where, body=True)))]


# rewrite regexes whose result is a redirect we can compute: regex → what $1 is.
_REWRITES = {
    "^": "",
    "^.*$": "",
    "^(.*)$": "uri",
    "^(.*)": "uri",
    "^/(.*)$": "uri1",
    "^/(.*)": "uri1",
}


def _rewrite(args: tuple[str, ...], scope: _Scope, where: str) -> list[Op]:
    _arity(args, where, 3, 3)
    regex, replacement, flag = args
    if flag not in ("redirect", "permanent"):
        raise Refused(f"{where}: only the redirect and permanent flags are supported")
    if regex not in _REWRITES:
        raise Refused(f"{where}: only the regexes {', '.join(_REWRITES)} are supported")
    capture = _REWRITES[regex]
    if "$1" in replacement and not capture:
        raise Refused(f"{where}: $1 without a capture group")
    inner = _Scope(dict(scope.sets))
    if capture:
        inner.sets["1"] = (("V", capture),)
    parts = _location(value(replacement, inner, where), where)
    # nginx appends the request's arguments unless the replacement ends in '?'.
    keep_args = "0" if replacement.endswith("?") else "1"
    if keep_args == "0":
        parts = _merged([*parts[:-1], ("L", parts[-1][1][:-1])])
    code = "301" if flag == "permanent" else "302"
    return [Op("redirect", (code, parts, keep_args))]


def _set(args: tuple[str, ...], scope: _Scope, where: str) -> list[Op]:
    _arity(args, where, 2, 2)
    name = args[0][1:] if args[0].startswith("$") else ""
    if not _NAME.fullmatch(name) or name in SIMPLE_VARIABLES or name.isdigit():
        raise Refused(f"{where}: {args[0]!r:.30} cannot be set")
    scope.sets[name] = value(args[1], scope, where)
    return []


_HANDLERS = {
    "add_header": _add_header,
    "more_set_headers": lambda a, s, w: _more_set(a, s, w, request=False),
    "more_set_input_headers": lambda a, s, w: _more_set(a, s, w, request=True),
    "more_clear_headers": lambda a, s, w: _more_clear(a, s, w, request=False),
    "more_clear_input_headers": lambda a, s, w: _more_clear(a, s, w, request=True),
    "proxy_set_header": _proxy_set_header,
    "proxy_hide_header": _proxy_hide_header,
    "proxy_method": _proxy_method,
    "return": _return,
    "rewrite": _rewrite,
    "set": _set,
}
SUPPORTED_DIRECTIVES = ("if", *sorted(_HANDLERS))


# --- encoding (read by ingress_snippet in ingress.lua) ---------------------------------


def _encode_value(parts: tuple[Part, ...]) -> str:
    return PART.join(kind + text for kind, text in parts)


def encode(ops: list[Op]) -> str:
    """One record per operation: condition (left, operator, right), code, arguments.

    A value is its parts joined by PART, each ``L`` + text or ``V`` + variable.
    """
    records = []
    for op in ops:
        left, operator, right = op.condition or ((), "", ())
        fields = [
            _encode_value(left),
            operator or ("?" if op.condition else ""),
            _encode_value(right),
            op.code,
        ]
        fields.extend(arg if isinstance(arg, str) else _encode_value(arg) for arg in op.args)
        records.append(FIELD.join(fields))
    return RECORD.join(records)


def combine(*programs: str) -> str:
    """Programs run one after the other (a server-snippet's before the location's)."""
    return RECORD.join(p for p in programs if p)


# --- server-snippet: the host's routes ----------------------------------------------


@dataclass(frozen=True)
class ServerSnippet:
    """An Ingress's server-snippet: its program and whether it holds a return."""

    source: ObjectRef
    field: str  # the annotation that set it
    program: str
    answers: bool = False


def with_server_snippets(
    routes: list[Route], claims: list[ServerSnippet]
) -> tuple[list[Route], list[Problem], set[tuple[ObjectRef, str]]]:
    """``routes`` with each server-snippet applied to the routes of its Ingress's hosts.

    ``claims`` come oldest Ingress first. A server-snippet acts on a whole
    host (an nginx server block), but one tenant's snippet never touches
    another tenant's paths: it applies to the routes of its Ingress's
    namespace on the host, and per host and namespace only the oldest
    Ingress's applies. (It was refused outright where another namespace
    served the host too, so any other tenant adding one path there switched
    off a snippet that refused requests.) Its operations run before the
    route's own configuration-snippet, as nginx's server rewrite phase runs
    first. Also returned: (Ingress, host) pairs whose routes must deny, a
    younger Ingress's snippet holding a return that another's displaced
    (fail closed: a refusal that cannot be applied).
    """
    problems: list[Problem] = []
    denied: set[tuple[ObjectRef, str]] = set()
    programs: dict[tuple[str, str], tuple[str, ObjectRef]] = {}
    # Each Ingress's hosts, in one pass: per claim, a scan of every route
    # would cost claims times routes on every full translation.
    hosts_of: dict[ObjectRef, set[str]] = {}
    if claims:
        for route in routes:
            hosts_of.setdefault(route.source, set()).add(route.host)
    for claim in claims:
        source = claim.source
        for host in sorted(hosts_of.get(source, ())):
            owner = programs.setdefault((host, source.namespace), (claim.program, source))[1]
            if owner != source:
                problems.append(
                    Problem(
                        source,
                        claim.field,
                        f"not applied to host {host or '*'!r}: Ingress "
                        f"{owner.namespace}/{owner.name} has the host's server-snippet"
                        + (
                            "; it holds a return, so this Ingress's paths there answer 403"
                            if claim.answers
                            else ""
                        ),
                        "Conflict",
                    )
                )
                if claim.answers:
                    denied.add((source, host))
    if not programs:
        return routes, problems, denied
    return (
        [
            _with_server_snippet(route, programs.get((route.host, route.source.namespace)))
            for route in routes
        ],
        problems,
        denied,
    )


def _with_server_snippet(route: Route, found: tuple[str, ObjectRef] | None) -> Route:
    if found is None:
        return route
    snippet = combine(found[0], route.options.snippet or "")
    return dataclasses.replace(route, options=dataclasses.replace(route.options, snippet=snippet))
