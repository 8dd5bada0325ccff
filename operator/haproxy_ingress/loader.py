"""Kubernetes objects from YAML or JSON files, for the offline ``render`` command."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import yaml

SUFFIXES = (".yaml", ".yml", ".json")
# libyaml's loader parses ~10x faster than the pure-Python one (68 % of a
# 10k-Ingress render went to the latter); PyYAML wheels ship it, but a build
# without libyaml still works, only slower.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LoadError(Exception):
    """Input that cannot be read as Kubernetes objects at all."""


def load_objects(sources: Iterable[Path]) -> list[Mapping[str, Any]]:
    """Every object in the files (directories are walked, sorted); ``List`` kinds unpacked."""
    objects: list[Mapping[str, Any]] = []
    for source in sources:
        for path in _files(source):
            objects.extend(_objects_in(path))
    return objects


def _files(source: Path) -> Iterator[Path]:
    if source.is_dir():
        yield from sorted(p for p in source.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    elif source.is_file() or str(source) == "/dev/stdin":
        yield source
    else:
        raise LoadError(f"{source}: no such file or directory")


# Past this size a file's documents are parsed in worker processes: even on
# libyaml, PyYAML builds the Python objects in Python (3.3 s of a 10k-Ingress
# render), and a render is a one-shot run that leaves the other cores idle.
PARALLEL_BYTES = 4 << 20
MAX_WORKERS = 4
# A line starting a document: at column 0 it ends any block scalar too, so
# cutting there never splits a document.
_DOCUMENT_START = re.compile(r"^---(?=[ \t\r\n]|$)", re.MULTILINE)


_STR, _SEQ, _MAP = (f"tag:yaml.org,2002:{name}" for name in ("str", "seq", "map"))


class _Unusual(Exception):
    """A node the fast construction leaves to PyYAML's own (see _FastLoader)."""


class _FastLoader(_Loader):  # type: ignore[valid-type,misc]
    """PyYAML's safe loader, with plain mappings, lists and strings built in one pass.

    Even on libyaml, PyYAML builds each object through its generic machinery:
    a constructor looked up per node, a generator per collection. Kubernetes
    objects are almost only mappings with string keys, lists and strings,
    and this builds those directly: a third less time per document. Every
    other scalar (ints, booleans, nulls, ...) is PyYAML's own. A collection
    met again through an alias is the object already built, as in PyYAML
    (so an alias bomb stays small). A document with anything else (a key that
    is not a plain string, such as a merge key ``<<``; an explicit tag; a
    collection inside itself) is built again wholly by PyYAML. Either way
    the result is what SafeLoader gives.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        try:
            data = self._build(node, {}, set())
        except _Unusual:
            return super().construct_document(node)
        # What PyYAML resets after each document (scalars built by it above).
        self.constructed_objects: dict[yaml.Node, Any] = {}
        self.recursive_objects: dict[yaml.Node, None] = {}
        return data

    def _build(self, node: yaml.Node, built: dict[int, Any], open_nodes: set[int]) -> Any:
        kind = type(node)
        if kind is yaml.ScalarNode:
            return node.value if node.tag == _STR else self.construct_object(node, deep=True)
        if id(node) in built:
            return built[id(node)]
        if id(node) in open_nodes:
            raise _Unusual  # PyYAML builds such a recursive structure lazily
        open_nodes.add(id(node))
        result: Any
        if kind is yaml.MappingNode and node.tag == _MAP:
            result = {}
            for key_node, value_node in node.value:
                if type(key_node) is not yaml.ScalarNode or key_node.tag != _STR:
                    raise _Unusual
                result[key_node.value] = self._build(value_node, built, open_nodes)
        elif kind is yaml.SequenceNode and node.tag == _SEQ:
            result = [self._build(item, built, open_nodes) for item in node.value]
        else:
            raise _Unusual
        open_nodes.discard(id(node))
        built[id(node)] = result
        return result


def _parse(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=_FastLoader))


def _chunks(text: str, parts: int) -> list[str]:
    """``text`` cut at document starts into about ``parts`` pieces of whole documents."""
    if parts < 2 or len(text) < PARALLEL_BYTES or re.search(r"^%", text, re.MULTILINE):
        return [text]  # small, or a directive (%YAML, %TAG) that binds the next document
    starts = [match.start() for match in _DOCUMENT_START.finditer(text)]
    cuts: list[int] = []
    for part in range(1, parts):
        wanted = len(text) * part // parts
        cut = next((start for start in starts if start >= wanted), None)
        if cut is not None and (not cuts or cut > cuts[-1]):
            cuts.append(cut)
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if a < b]


def _json_document(text: str) -> list[Any] | None:
    """A file that is one JSON value (``kubectl get -o json``), read as JSON; else None.

    The JSON parser is C and builds what PyYAML would from the same text
    (JSON is YAML) some ten times faster, and with JSON's own reading of
    numbers such as ``1e3``, as the API server reads a JSON body. Anything
    it refuses, YAML's flow style (``{a: b}``) among it, is left to PyYAML.
    """

    def refuse(constant: str) -> Any:
        raise ValueError(constant)  # NaN, Infinity: not JSON

    try:
        return [json.loads(text, parse_constant=refuse)]
    except ValueError:  # json.JSONDecodeError included
        return None


def _documents(text: str) -> list[Any]:
    if text.lstrip()[:1] in ("{", "["):
        documents = _json_document(text)
        if documents is not None:
            return documents
    chunks = _chunks(text, min(MAX_WORKERS, len(os.sched_getaffinity(0))))
    if len(chunks) > 1:
        try:
            # fork: the workers need nothing but this module, already loaded.
            # The first chunk is parsed here meanwhile: one worker fewer, and
            # a quarter to a half of the documents never pickled back.
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(len(chunks) - 1, mp_context=context) as pool:
                rest = pool.map(_parse, chunks[1:])
                first = _parse(chunks[0])
                return [*first, *(document for part in rest for document in part)]
        except yaml.YAMLError:
            pass  # parsed whole below, so that the error names its real line
    return _parse(text)


def _objects_in(path: Path) -> Iterator[Mapping[str, Any]]:
    try:
        documents = _documents(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise LoadError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise LoadError(f"{path}: not valid YAML: {error}") from None
    for index, document in enumerate(documents):
        if document is None:
            continue
        if not isinstance(document, Mapping) or "kind" not in document:
            raise LoadError(f"{path}: document {index + 1} is not a Kubernetes object")
        if str(document["kind"]).endswith("List") and isinstance(document.get("items"), list):
            for item in document["items"]:
                if not isinstance(item, Mapping):
                    raise LoadError(f"{path}: a List item is not a Kubernetes object")
                yield item
        else:
            yield document
