"""regex.py's reading of character classes: the '^' rule and a route's literal prefix.

A ']' right after '[' or '[^' is a literal in PCRE2, so '[]|]' is a class
of ']' and '|': a '|' or '^' in it is neither an alternation nor an anchor.
"""

from __future__ import annotations

import pytest

from haproxy_ingress.regex import literal_prefix, path_pattern
from haproxy_ingress.validate import Invalid


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        ("/api/(v1|v2)", "/api/"),
        ("/a|/b", ""),  # a top-level alternation: its matches share no prefix
        ("/(a|b)[]|]", "/"),  # the second '|' is in a class, not an alternation
        ("/x[]|]y", "/x"),
        ("/x[^]|]y", "/x"),
        ("/v1\\.0/.*", "/v1.0/"),
        ("/ab*", "/a"),  # 'b' may repeat zero times
    ],
)
def test_literal_prefix_reads_classes_as_pcre2_does(pattern: str, prefix: str) -> None:
    assert literal_prefix(pattern) == prefix


@pytest.mark.parametrize("pattern", ["/[x^]", "/[]^]", "/a[^]^]b", "^/a"])
def test_a_caret_in_a_class_or_leading_is_accepted(pattern: str) -> None:
    assert path_pattern(pattern, "f") == pattern.removeprefix("^")


@pytest.mark.parametrize("pattern", ["/a^b", "/[]]^", "/\\[^"])
def test_a_caret_outside_classes_is_refused(pattern: str) -> None:
    with pytest.raises(Invalid, match="'\\^' may only start"):
        path_pattern(pattern, "f")


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [("/[a", "unclosed '\\['"), ("/[]", "unclosed '\\['"), ("/[\\q]", "escape \\\\q")],
)
def test_class_shape_errors(pattern: str, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        path_pattern(pattern, "f")
