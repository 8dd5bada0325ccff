"""The offline loader: large files are parsed in worker processes, with the same result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from haproxy_ingress import loader

# Documents that a naive cut could split: a block scalar whose lines look like
# separators when indented, a document starting on its separator's line, and
# a document end marker.
DOCUMENTS = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: a%(i)d}
data:
  script: |
    echo ---
     --- indented, inside the scalar
    done
--- {apiVersion: v1, kind: Service, metadata: {name: s%(i)d}}
---
apiVersion: v1
kind: Secret
metadata: {name: t%(i)d}
stringData: {k: "--- not a separator"}
...
---
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_large_file_parsed_in_parts_gives_the_same_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "".join(DOCUMENTS % {"i": i} for i in range(300))
    monkeypatch.setattr(loader, "PARALLEL_BYTES", 1)
    chunks = loader._chunks(text, 4)
    assert len(chunks) == 4 and "".join(chunks) == text
    assert all(chunk.startswith("---") for chunk in chunks[1:])
    objects = loader.load_objects([_write(tmp_path, text)])
    assert objects == [d for d in yaml.safe_load_all(text) if d is not None]
    assert len(objects) == 900


def test_an_error_in_one_part_names_its_line_in_the_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "".join(DOCUMENTS % {"i": i} for i in range(50)) + "---\nkind: [unclosed\n"
    monkeypatch.setattr(loader, "PARALLEL_BYTES", 1)
    with pytest.raises(loader.LoadError) as parallel:
        loader.load_objects([_write(tmp_path, text)])
    monkeypatch.setattr(loader, "PARALLEL_BYTES", 1 << 40)
    with pytest.raises(loader.LoadError) as whole:
        loader.load_objects([_write(tmp_path, text)])
    assert str(parallel.value) == str(whole.value)
    assert f"line {text.count(chr(10)) + 1}" in str(whole.value)


def test_a_directive_keeps_the_file_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "PARALLEL_BYTES", 1)
    text = "%YAML 1.1\n---\na: 1\n" + "---\nb: 2\n" * 10
    assert loader._chunks(text, 4) == [text]
    assert loader._chunks("a: 1\n---\nb: 2\n", 1) == ["a: 1\n---\nb: 2\n"]


# YAML whose objects PyYAML builds in less common ways: the fast construction
# (loader._FastLoader) must give exactly the same, or leave it to PyYAML.
UNUSUAL = [
    "a: 1\nb: true\nc: null\nd: 1.5\ne: 2026-01-01\nf: 0x1f\ng: ~\nh: '1'\n",
    "base: &base {x: 1, y: [a, b]}\nmerged:\n  <<: *base\n  y: [c]\n",  # merge key
    "list: &l [1, 2]\nagain: *l\nmap: &m {k: v}\nsame: *m\n",  # aliases
    "? [a, b]\n: unhashable key\n",
    "1: int key\ntrue: bool key\n",
    "=: value key\n",
    "tagged: !!str 12\nset: !!set {a, b}\nomap: !!omap [a: 1, b: 2]\n",
    "bytes: !!binary aGVsbG8=\n",
    "empty: {}\nnothing: []\nblank:\n",
    "- a\n- {b: [c, {d: e}]}\n",
    "recursive: &r [*r]\n",
    # The same text plain and quoted, again (loader._FastLoader.resolve keeps tags).
    "a: 1\nb: '1'\nc: 1\nd: \"1\"\ne: true\nf: 'true'\ng: true\nh: null\ni: 'null'\nj: null\n",
]


@pytest.mark.parametrize("text", UNUSUAL)
def test_documents_are_built_as_pyyaml_builds_them(text: str) -> None:
    try:
        expected = list(yaml.load_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as error:
        with pytest.raises(type(error)):
            loader._parse(text)
        return
    built = loader._parse(text)
    if text.startswith("recursive"):  # equal by structure: a list inside itself
        assert built[0]["recursive"][0] is built[0]["recursive"]
        assert expected[0]["recursive"][0] is expected[0]["recursive"]
    else:
        assert built == expected
        assert [type(d) for d in built] == [type(d) for d in expected]


def test_an_alias_is_the_object_already_built() -> None:
    # So an alias bomb stays as small as PyYAML keeps it: nine levels of ten
    # aliases are a billion strings if expanded, and nine lists here.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 10):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]")
    (document,) = loader._parse("\n".join(lines) + "\n")
    top = document["a9"]
    assert len(top) == 10 and all(item is top[0] for item in top)
    assert document["a8"] is top[0]


def test_a_json_file_is_read_by_the_json_parser_with_the_same_objects(tmp_path: Path) -> None:
    items = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}"}, "spec": {}}
        for i in range(3)
    ]
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2)
    path = tmp_path / "cluster.json"
    path.write_text(text, encoding="utf-8")
    assert loader._json_document(text) is not None
    assert loader.load_objects([path]) == items == yaml.safe_load(text)["items"]


@pytest.mark.parametrize(
    "text",
    [
        "{apiVersion: v1, kind: Service, metadata: {name: flow}}",  # YAML flow style
        '{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "x": NaN}',
        '{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}\n---\n'
        "apiVersion: v1\nkind: Service\nmetadata: {name: t}\n",
    ],
)
def test_what_json_refuses_is_read_as_yaml(tmp_path: Path, text: str) -> None:
    assert loader._json_document(text) is None
    assert loader.load_objects([_write(tmp_path, text)]) == [
        d for d in yaml.safe_load_all(text) if d is not None
    ]


# A List as kubectl writes it, with what a cut at the items' "- " lines could
# get wrong: block scalars holding such lines (indented, as they must be),
# comments at column 0, an item that is a "-" line alone, keys after the items.
LIST_ITEM = """\
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: c%(i)d
  data:
    script: |
      - not an item
      --- nor a document
    quoted: "a
      - b"
# a comment at column 0
-
  apiVersion: v1
  kind: Service
  metadata: {name: s%(i)d}
"""


def _kubectl_list(items: str) -> str:
    return f"apiVersion: v1\nitems:\n{items}kind: List\nmetadata:\n  resourceVersion: ''\n"


def test_a_list_parsed_in_parts_gives_the_same_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _kubectl_list("".join(LIST_ITEM % {"i": i} for i in range(300)))
    monkeypatch.setattr(loader, "PARALLEL_BYTES", 1)
    pieces = loader._list_parts(text, 4)
    assert pieces is not None and len(pieces) == 5
    assert all(piece.startswith("-") for piece in pieces[:-1])
    assert pieces[-1] == "apiVersion: v1\nitems:\nkind: List\nmetadata:\n  resourceVersion: ''\n"
    objects = loader.load_objects([_write(tmp_path, text)])
    assert objects == yaml.safe_load(text)["items"]
    assert len(objects) == 600
    assert objects[0]["data"]["script"] == "- not an item\n--- nor a document\n"


# Lists whose cut a piece must catch: a quoted scalar running over an item's
# "- " line at column 0 (PyYAML reads it as one scalar; a flow collection
# cannot hold such a line), a flow collection over a line at column 0 that is
# no item, an alias to another piece's anchor, a second items key, the
# items line inside a quoted scalar. Each is parsed whole instead, so the
# objects are PyYAML's.
CAUGHT = [
    _kubectl_list('- kind: A\n  q: "x\n- kind: B\n  r: y"\n' * 40),
    _kubectl_list("- kind: A\n  f: [1,\n-2]\n" * 40),  # "-2" at column 0 ends the items
    _kubectl_list("- &a {kind: A}\n" + "- kind: B\n" * 40 + "- *a\n"),
    _kubectl_list("- kind: A\n" * 40) + "items: [{kind: B}]\n",
    _kubectl_list("- kind: A\n" * 40).replace("items:\n", "items:\n- kind: C\n  q: 'x\n", 1)
    + "z: y'\n",
]


@pytest.mark.parametrize("text", CAUGHT)
def test_a_list_cut_inside_a_scalar_or_collection_is_parsed_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setattr(loader, "PARALLEL_BYTES", 1)
    expected = yaml.safe_load(text)
    assert loader._documents(text) == [expected]
    parsed_parts: list[int] = []
    real = loader._in_parallel

    def counted(chunks: list[str]) -> list[list[object]] | None:
        parsed_parts.append(len(chunks))
        return real(chunks)

    monkeypatch.setattr(loader, "_in_parallel", counted)
    loader._documents(text)
    assert parsed_parts  # the cut was tried, and refused
