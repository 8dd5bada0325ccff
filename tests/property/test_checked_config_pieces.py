"""The configuration ``haproxy -c`` checks, written in pieces (apply._replaced).

It is haproxy.cfg with the crt-list path of its binds replaced: in pieces of
at most CONFIG_CHUNK bytes, never a second whole copy of an ~11 MB file. The
pieces must join to what one ``bytes.replace`` gives, wherever the path falls
against the pieces' edges.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haproxy_ingress import apply

OLD = b" crt-list /h/crt-list.txt "
NEW = b" crt-list /h/crt-list.check.txt "


@given(
    parts=st.lists(st.binary(max_size=40), min_size=1, max_size=8),
    chunk=st.integers(min_value=1, max_value=50),
)
def test_pieces_join_to_the_whole_replacement(parts: list[bytes], chunk: int) -> None:
    content = OLD.join(parts)  # the path between any two parts, or nowhere
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(apply, "CONFIG_CHUNK", chunk)
        pieces = list(apply._replaced(content, OLD, NEW))
    assert b"".join(pieces) == content.replace(OLD, NEW)
    assert all(len(piece) <= max(chunk, len(NEW)) for piece in pieces)
