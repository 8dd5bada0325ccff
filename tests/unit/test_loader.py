"""The offline loader: large files are parsed in worker processes, with the same result."""

from __future__ import annotations

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
