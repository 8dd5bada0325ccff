"""canonical_path's shortcut for paths already canonical (the walk is the reference)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haproxy_ingress.canonical import PATH_SAFE, _canonical_path, canonical_path

# Every byte the shortcut could be fooled by, and a few it must refuse.
_ALPHABET = sorted({chr(b) for b in PATH_SAFE} | set("/.%;\\?# \0é"))
paths = st.text(alphabet=st.sampled_from(_ALPHABET), max_size=24)
dotted = st.lists(
    st.sampled_from(["", ".", "..", "...", "a", ".a", "a.", "%2e", "b;c"]), max_size=6
)


@given(paths)
def test_the_shortcut_agrees_with_the_walk(value: str) -> None:
    assert canonical_path(value) == _canonical_path(value)


@given(dotted, st.booleans())
def test_the_shortcut_agrees_on_dot_segments(segments: list[str], trailing: bool) -> None:
    value = "/" + "/".join(segments) + ("/" if trailing else "")
    assert canonical_path(value) == _canonical_path(value)


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("", "/"),
        ("/", "/"),
        ("/a/b/", "/a/b/"),
        ("/a//b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/..", None),
        ("/a/.", "/a/"),
        ("/...", "/..."),
        ("/%41", "/A"),
        ("/a;x=1/b", "/a/b"),
    ],
)
def test_paths(value: str, want: str | None) -> None:
    assert canonical_path(value) == want
