"""The loader's cut of a kubectl List gives PyYAML's objects, whatever the items hold.

loader._list_parts cuts a one-document List at its items' "- " lines at column
0 and parses the pieces apart. Strings that look like items or documents
("\\n- a", "\\n---"), quotes, comments, long lines folded by the emitter and
line ends of either kind must not move a cut inside a value: every file,
whether cut or parsed whole, must load as ``yaml.safe_load`` reads it.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haproxy_ingress import loader

# Text built from the pieces a wrong cut would trip on.
TRICKY = st.lists(
    st.sampled_from(
        ["- ", "-", "---", "...", "#", "'", '"', ":", " ", "\n", "\t", "items:", "a", "é"]
    ),
    max_size=12,
).map("".join)
VALUES: st.SearchStrategy[Any] = st.recursive(
    TRICKY | st.integers() | st.booleans() | st.none(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY, inner, max_size=3),
    max_leaves=8,
)
ITEMS = st.lists(
    st.fixed_dictionaries(
        {"apiVersion": st.just("v1"), "kind": st.just("ConfigMap"), "data": VALUES}
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=ITEMS,
    width=st.integers(min_value=20, max_value=120),
    style=st.sampled_from([None, '"', "'", "|"]),
    crlf=st.booleans(),
)
def test_a_cut_list_loads_as_pyyaml_reads_it(
    items: list[dict[str, Any]], width: int, style: str | None, crlf: bool
) -> None:
    document = {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {}}
    try:
        text = yaml.safe_dump(
            document, width=width, default_style=style, allow_unicode=True, sort_keys=False
        )
    except yaml.YAMLError:  # a string PyYAML cannot emit in that style
        return
    if crlf:
        text = text.replace("\n", "\r\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loader, "PARALLEL_BYTES", 1)
        assert loader._documents(text) == [yaml.safe_load(text)]
        if style is None:  # (in the other styles the keys are quoted: not cut)
            # What PyYAML writes is always cut (its values never start a line
            # at column 0), and each piece parses: the objects above came from it.
            pieces = loader._list_parts(text, 3)
            assert pieces is not None
            assert loader._in_parallel(pieces) is not None
