"""The configuration ``haproxy -c`` checks, written in pieces (apply._replaced).

It is haproxy.cfg, read back from its file, with the crt-list path of its
binds replaced: in pieces of whole lines, never a second whole copy of an
~11 MB file. The pieces must join to what one ``bytes.replace`` gives,
wherever the path and the line ends fall against the pieces' edges.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haproxy_ingress import apply

OLD = b" crt-list /h/crt-list.txt "
NEW = b" crt-list /h/crt-list.check.txt "
# Text without line ends, and a line of it with the path inside.
TEXT = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b""))
LINE = st.one_of(TEXT, st.tuples(TEXT, TEXT).map(OLD.join))


@given(
    lines=st.lists(LINE, min_size=1, max_size=12),
    last_newline=st.booleans(),
    chunk=st.integers(min_value=1, max_value=80),
)
def test_pieces_join_to_the_whole_replacement(
    lines: list[bytes], last_newline: bool, chunk: int
) -> None:
    content = b"\n".join(lines) + (b"\n" if last_newline else b"")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(apply, "CHECKED_CHUNK", chunk)
        pieces = list(apply._replaced(io.BytesIO(content), OLD, NEW))
    assert b"".join(pieces) == content.replace(OLD, NEW)
    longest = max(len(line) for line in lines) + len(NEW)
    assert all(len(piece) <= chunk + longest + 1 for piece in pieces)
