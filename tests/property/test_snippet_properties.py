"""Fuzzed nginx snippets: the interpreter never raises, never lets a control byte
through, and never applies a snippet that holds an access rule.

snippets.interpret reads text any Ingress author writes. Whatever it is given,
it must answer (a program or a refusal, not an exception that would stop a
sync), every literal that reaches the program must be printable ASCII (it ends
up in header values and redirect URLs), and an access directive anywhere in
the text, at any depth, must leave the snippet unapplied and fail closed.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from haproxy_ingress import snippets

NAMES = st.sampled_from(
    [
        "add_header", "more_set_headers", "more_clear_headers", "proxy_set_header",
        "more_set_input_headers", "more_clear_input_headers", "proxy_hide_header",
        "proxy_method", "return", "rewrite", "set", "if", "deny", "allow", "auth_basic",
        "auth_request", "limit_req", "satisfy", "access_by_lua_block", "proxy_pass",
        "include", "location", "content_by_lua", "x",
    ]
)  # fmt: skip
WORDS = st.sampled_from(
    [
        "X-A", "x-b", "Set-Cookie", "Host", "Transfer-Encoding", "$http_x_a", "$host",
        "$request_uri", "$cookie_c", "$arg_a", "$1", "$unknown", "/x", "/$1",
        "https://a.example.com/p", "javascript:x", "200", "302", "403", "999", "-s",
        "-t", "'200 404'", "redirect", "permanent", "break", "^/(.*)$", "(a+)+$",
        "($http_x", "=", "~", "~*", "!=", "a)", "\"quoted value\"", "'single'",
        "\"a\\r\\nb\"", "\"\\\"\"", "\\", "\x00", "\t", "é", "all", "10.0.0.0/8",
        "GET", "zone=x", "on",
    ]
)  # fmt: skip
SEPARATORS = st.sampled_from([" ", ";", ";\n", " { ", " } ", "}", "{", "\n", "# c\n", "\r\n"])


@st.composite
def snippet_texts(draw: st.DrawFn) -> str:
    pieces: list[str] = []
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        pieces.append(draw(NAMES))
        for _ in range(draw(st.integers(min_value=0, max_value=4))):
            pieces.append(" " + draw(WORDS))
        pieces.append(draw(SEPARATORS))
    return "".join(pieces)


# Well-formed directives of the subset with fuzzed values: most are applied,
# so the checks on what an applied program holds are exercised.
VALUES = st.text(
    alphabet=st.sampled_from(list("aZ09 -_/.:;{}$#'\"\\\t\r\n\x00é~%?&=()*")), max_size=24
)
HEADER_NAMES = st.sampled_from(["X-A", "x-b", "Cache-Control", "Host", "Content-Length", "X A"])
TEMPLATES = st.sampled_from(
    [
        "add_header {n} {q};",
        "more_set_headers {q};",
        'more_set_headers "{n}: {v}";',
        "proxy_set_header {n} {q};",
        "more_set_input_headers {q};",
        "more_clear_headers {n};",
        "return 302 {q};",
        "return 200 {q};",
        "rewrite ^/(.*)$ {q} redirect;",
        "set $a {q};",
        'if ($http_x_a = {q}) {{ add_header {n} "$a"; }}',
    ]
)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def directive_texts(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        value = draw(VALUES)
        lines.append(draw(TEMPLATES).format(n=draw(HEADER_NAMES), q=_quoted(value), v=value))
    return "\n".join(lines)


TEXTS = st.one_of(snippet_texts(), directive_texts(), st.text(max_size=80))


def _literals(program: str) -> list[tuple[bool, str]]:
    """Every literal part of every field of an encoded program: (is a reply body, text).

    A record is condition (3 fields), code, arguments; a ``reply``'s last
    argument is a response body, where CR, LF and tabs are content, not framing.
    """
    found = []
    for record in program.split(snippets.RECORD):
        fields = record.split(snippets.FIELD)
        for index, field in enumerate(fields):
            body = len(fields) > 3 and fields[3] == "reply" and index == len(fields) - 1
            for part in field.split(snippets.PART):
                if part.startswith("L"):
                    found.append((body, part[1:]))
    return found


def _access_directive_anywhere(directives: tuple[snippets.Directive, ...]) -> bool:
    return any(
        snippets.ACCESS_DIRECTIVE.fullmatch(d.name)
        or (d.block is not None and _access_directive_anywhere(d.block))
        for d in directives
    )


@settings(max_examples=600, deadline=None)
@given(TEXTS, st.booleans())
def test_interpret_answers_and_applies_nothing_unsafe(text: str, server: bool) -> None:
    result = snippets.interpret(text, server=server)
    if result.refused:
        assert result.program == ""
        return
    assert len(result.program.encode()) <= snippets.MAX_PROGRAM_BYTES
    for body, literal in _literals(result.program):
        assert all(" " <= c <= "~" or (body and c in "\t\r\n") for c in literal), literal
    # Applied, so it held no access directive at any depth.
    assert not _access_directive_anywhere(snippets.parse(text))


@settings(max_examples=300, deadline=None)
@given(snippet_texts(), st.sampled_from(["deny all;", "allow 10.0.0.0/8;", "auth_basic x;"]))
def test_an_access_directive_anywhere_fails_closed(text: str, rule: str) -> None:
    # After the text, a ";" first ends whatever directive the text left open
    # (without it, "add_header" + "deny all;" is a header named deny).
    for placed in (rule + "\n" + text, text + ";\n" + rule, f"if ($http_x) {{ {rule} }}\n{text}"):
        result = snippets.interpret(placed)
        assert result.refused and result.access, placed
