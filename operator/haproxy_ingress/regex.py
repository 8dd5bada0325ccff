"""Regular expressions from users (use-regex paths, canary header patterns), checked (pure).

HAProxy runs them with PCRE2 (map_reg keys, the Lua ``Regex`` class), on
every request, on the event loop of its thread. So a pattern is accepted
only when all of these hold:

* at most :data:`MAX_LENGTH` visible ASCII characters (no space, quote,
  ``#`` or ``~``: they would end a map key or a map value's field);
* a small, linear-time subset: literals, ``.``, classes ``[...]``, groups
  ``(...)`` and ``(?:...)``, alternation, quantifiers ``? * + {n} {n,m}``
  (at most :data:`MAX_REPEAT`) and the escapes ``\\d \\D \\w \\W \\s \\S \\b \\B``
  and ``\\`` before punctuation. No back-references, lookarounds, inline
  options, recursion, callouts, verbs or ``\\Q``: each either breaks out of
  the group we wrap the pattern in or costs more than linear time;
* no repeated group that itself repeats or alternates (``(a+)+``,
  ``(a|aa)*``): the shapes that backtrack exponentially;
* PCRE2, the library HAProxy is linked with, compiles it (libpcre2-8, by
  ctypes). Without that library nothing is accepted: fail closed.

Measured with bench/regex_cost.py: the costliest accepted pattern against
a 2 KiB path takes microseconds, where ``(a+)+$`` or ``.*.*.*x$`` stop
at PCRE2's match limit after 100-180 ms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import re
from collections.abc import Iterator

from haproxy_ingress.validate import Invalid

MAX_LENGTH = 256
MAX_REPEAT = 100
# Repeats multiply: two overlapping ones ("/.*.*x$") cost n**2 steps on an
# n-byte path, 20-60 ms at 2 KiB without JIT (bench/regex_cost.py); one is linear.
MAX_UNBOUNDED = 1
# A trailing ".*" or "(.*)" (ingress-nginx's capture of "the rest") takes the
# rest of the path in one step, never backtracking: it does not count.
_FREE_TAIL = re.compile(r"(?:\(\.\*\)|\.\*)\$?$")
_VISIBLE = re.compile(r"[\x21-\x7e]+")
_FORBIDDEN_CHARS = "\"'#~`"
_CLASS_ESCAPES = "dDwWsSbB"
_UNBOUNDED = re.compile(r"\{([0-9]+)(,([0-9]*))?\}")
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


@functools.cache
def _pcre2() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("pcre2-8") or "libpcre2-8.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.pcre2_compile_8.restype = ctypes.c_void_p
    lib.pcre2_compile_8.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint32,
        ctypes.POINTER(ctypes.c_int),
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_void_p,
    ]
    lib.pcre2_code_free_8.argtypes = [ctypes.c_void_p]
    return lib


def pcre2_error(pattern: str) -> str | None:
    """Why PCRE2 refuses ``pattern``, or None if it compiles."""
    lib = _pcre2()
    if lib is None:
        return "cannot be checked: libpcre2-8 (HAProxy's regex library) is not installed"
    code = ctypes.c_int()
    offset = ctypes.c_size_t()
    raw = pattern.encode()
    compiled = lib.pcre2_compile_8(raw, len(raw), 0, ctypes.byref(code), ctypes.byref(offset), None)
    if compiled:
        lib.pcre2_code_free_8(compiled)
        return None
    return f"PCRE2 error {code.value} at offset {offset.value}"


def _shape_error(pattern: str) -> str | None:
    """Why ``pattern`` is outside the linear-time subset, or None."""
    # Per open group: whether it holds a quantifier or an alternation.
    groups: list[bool] = []
    # Whether the atom just closed is a group holding one (for the next quantifier).
    last_group_risky = False
    unbounded_count = 0
    i = 0
    n = len(pattern)
    while i < n:
        char = pattern[i]
        risky_atom = False
        if char == "\\":
            if i + 1 >= n:
                return "ends with a lone backslash"
            nxt = pattern[i + 1]
            if not (nxt in _CLASS_ESCAPES or (nxt.isascii() and not nxt.isalnum())):
                return (
                    f"escape \\{nxt} is not allowed "
                    "(only \\d \\w \\s \\b, their capitals, and \\ before punctuation)"
                )
            i += 2
        elif char == "[":
            end = _class_end(pattern, i)
            if end < 0:
                return "has an unclosed '['"
            for escape in _ESCAPED.finditer(pattern, i + 1, end):
                escaped = escape.group(1)
                if escaped.isalnum() and escaped not in _CLASS_ESCAPES:
                    return f"escape \\{escaped} is not allowed in a class"
            i = end + 1
        elif char == "(":
            if pattern.startswith("(?:", i):
                i += 3
            elif i + 1 < n and pattern[i + 1] in "?*":
                return "only (...) and (?:...) groups are allowed (no lookarounds, options, verbs)"
            else:
                i += 1
            groups.append(False)
            last_group_risky = False
            continue
        elif char == ")":
            if not groups:
                return "has an unbalanced ')'"
            risky_atom = groups.pop()
            i += 1
        elif char == "|":
            if groups:
                groups[-1] = True
            i += 1
        elif char in "*+?{":
            unbounded = char in "*+"
            length = 1
            if char == "{":
                match = _UNBOUNDED.match(pattern, i)
                if match is None:
                    return "has a '{' that is not a repeat count {n}, {n,} or {n,m}"
                low, comma, high = match.group(1), match.group(2), match.group(3)
                if comma and not high:
                    unbounded = True
                if int(low) > MAX_REPEAT or (high and int(high) > MAX_REPEAT):
                    return f"repeat counts above {MAX_REPEAT} are not allowed"
                unbounded = unbounded or bool(high and int(high) > 1)
                length = len(match.group(0))
            unbounded_count += unbounded
            if unbounded_count > MAX_UNBOUNDED:
                return f"has more than {MAX_UNBOUNDED} unbounded repeats (*, +, {{n,}}, {{n,m}})"
            if unbounded and last_group_risky:
                return (
                    "repeats a group that itself repeats or alternates "
                    "(exponential backtracking), e.g. (a+)+ or (a|b)*"
                )
            if groups:
                groups[-1] = True
            i += length
            # A lazy or possessive suffix.
            if i < n and pattern[i] in "?+":
                i += 1
            last_group_risky = False
            continue
        else:
            i += 1
        last_group_risky = risky_atom
    if groups:
        return "has an unclosed '('"
    return None


def pattern(value: object, field: str) -> str:
    """A PCRE2 pattern HAProxy can run on every request at bounded cost."""
    if not isinstance(value, str) or not value or len(value) > MAX_LENGTH:
        raise Invalid(field, f"must be a regular expression of 1-{MAX_LENGTH} characters")
    if not _VISIBLE.fullmatch(value) or any(c in value for c in _FORBIDDEN_CHARS):
        raise Invalid(
            field,
            f"must be visible ASCII without spaces, quotes, '#', '~' or '`', got {value[:60]!r}",
        )
    reason = _shape_error(_FREE_TAIL.sub("", value)) or pcre2_error(value)
    if reason is not None:
        raise Invalid(field, f"regular expression {value[:60]!r} {reason}")
    return value


def path_pattern(value: object, field: str) -> str:
    """A use-regex path: a pattern starting with '/', matched from the path's start.

    ingress-nginx writes ``location ~* "^<path>"``: a leading '^' is
    redundant and dropped; any other '^' outside a class could never match
    after the host we put in front, so it is refused.
    """
    if isinstance(value, str) and value.startswith("^"):
        value = value[1:]
    checked = pattern(value, field)
    if not checked.startswith("/"):
        raise Invalid(field, f"a regular-expression path must start with '/', got {checked[:60]!r}")
    if "^" in _outside_classes(checked):
        raise Invalid(field, "'^' may only start a regular-expression path")
    return checked


def _class_end(value: str, start: int) -> int:
    """The index of the ']' that closes the class opened at ``value[start]``, or -1.

    As PCRE2 reads a class: a ']' first (after '[' or '[^') is a literal,
    and a backslash escapes the next character. The one reading of classes
    for the shape check, the '^' rule and a route's literal prefix.
    """
    j = start + 1
    if value.startswith("^", j):
        j += 1
    if value.startswith("]", j):
        j += 1
    while j < len(value) and value[j] != "]":
        j += 2 if value[j] == "\\" else 1
    return j if j < len(value) else -1


def _outside_classes(value: str) -> Iterator[str]:
    """The characters of ``value`` that are neither escaped nor inside a class, in order."""
    i = 0
    while i < len(value):
        char = value[i]
        if char == "\\":
            i += 2
        elif char == "[":
            end = _class_end(value, i)
            if end < 0:
                return
            i = end + 1
        else:
            yield char
            i += 1


def literal_prefix(value: str) -> str:
    """The text every match of ``value`` starts with (how specific a regex route is)."""
    if _top_level_alternation(value):
        return ""
    out: list[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char in "*?{":
            if out:
                out.pop()
            break
        if char == "\\" and i + 1 < len(value) and not value[i + 1].isalnum():
            out.append(value[i + 1])
            i += 2
            continue
        if char in ".[]()+|^$\\":
            break
        out.append(char)
        i += 1
    return "".join(out)


def _top_level_alternation(value: str) -> bool:
    """Whether ``value`` has a '|' outside every group (its matches share no prefix)."""
    depth = 0
    for char in _outside_classes(value):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
    return False


def scoped_key(scope: str, pattern: str) -> str:
    """The regex map key of a path ``pattern`` in a host's ``scope`` ("": no host).

    Requests are looked up as ``<scope><path>``, and a path starts with '/',
    which no host holds. A pattern checked by :func:`path_pattern` starts with
    '/', but only its first alternative has to: ``/x|.*`` or ``/x|\\.com/.*``
    would match after a shorter scope and reach other hosts' requests
    (``victim.example.com/admin`` for a host-less rule). The lookahead makes
    every alternative start where the path does, right after this scope.
    """
    return f"^{pcre_escape(scope)}(?=/)(?i:{pattern})"


def pcre_escape(text: str) -> str:
    """``text`` matched literally (hosts are DNS names: only '.', '*' and '-' need care)."""
    return re.sub(r"([^A-Za-z0-9_/-])", r"\\\1", text)
