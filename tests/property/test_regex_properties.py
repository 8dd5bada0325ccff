"""Generated patterns and canary values: whatever regex.py and the canary validators accept is safe.

Accepted patterns, wrapped as routing.py wraps them for the map key, still
compile in PCRE2, stay inside their group (the host prefix keeps anchoring
them), and hold no byte that would end a map key; hostile header values and
cookie names (CRLF, quotes, NUL) are refused.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from haproxy_ingress import regex
from haproxy_ingress.registry import header_value
from haproxy_ingress.validate import Invalid, token

PIECES = st.sampled_from(
    [
        "/", "a", ".", "*", "+", "?", "(", ")", "(?:", "|", "[", "]", "{2,3}", "{1000}",
        "\\", "\\d", "\\1", "(?=", "(*", "$", "^", "\r", "\n", '"', "'", "#", " ", "\x00", "~",
    ]
)  # fmt: skip
PATTERNS = st.lists(PIECES, max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(PATTERNS)
def test_accepted_path_patterns_compile_wrapped_and_stay_in_their_group(value: str) -> None:
    try:
        checked = regex.path_pattern(value, "f")
    except Invalid:
        return
    assert not any(c in checked for c in "\r\n \"'#~\x00")
    key = regex.scoped_key("a.example.com", checked)
    assert regex.pcre2_error(key) is None
    # The wrapped pattern cannot match another host: its group never closes early.
    assert regex.pcre2_error(f"(?i:{checked})") is None
    # Nor can any alternative of it start elsewhere than the path: a request is
    # looked up as scope + path, so a longer host's key, or any host's key for
    # a host-less pattern, never matches (Python's re reads this subset as PCRE2).
    for scope, other in (("a.example", "a.example.com"), ("", "a.example.com")):
        for rest in ("/", "/a", "/aa/a", ".com/a", "//a"):
            assert re.match(regex.scoped_key(scope, checked), other + rest) is None


@given(st.text(max_size=40))
def test_header_values_and_cookie_names_never_carry_control_characters(value: str) -> None:
    for check in (header_value, token):
        try:
            accepted = check(value, "f")
        except Invalid:
            continue
        assert accepted.isascii() and accepted.isprintable()
        assert accepted == accepted.strip()
