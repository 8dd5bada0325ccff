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

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._tags: dict[tuple[str, tuple[bool, bool]], str] = {}

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Any) -> str:
        """A scalar's tag, worked out once per text: a tenth of a big file's load.

        libyaml's composer asks for every scalar's tag (a regular expression
        per candidate type), and a cluster repeats its keys and values
        (``name``, ``metadata``, ``http``, ...) many thousand times. With no
        path resolvers (the safe loader has none) the tag depends on the
        text and on whether it was plain or quoted only.
        """
        if kind is not yaml.ScalarNode:
            return super().resolve(kind, value, implicit)  # type: ignore[no-any-return]
        key = (value, implicit)
        tag = self._tags.get(key)
        if tag is None:
            tag = self._tags[key] = super().resolve(kind, value, implicit)
        return tag

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
    return _cut(text, starts, 0, len(text), parts)


def _cut(text: str, starts: list[int], begin: int, end: int, parts: int) -> list[str]:
    """``text[begin:end]`` cut into about ``parts`` pieces, each at the first of ``starts``
    past its share."""
    cuts = [begin]
    for part in range(1, parts):
        wanted = begin + (end - begin) * part // parts
        cut = next((start for start in starts if start >= wanted), None)
        if cut is not None and cut > cuts[-1]:
            cuts.append(cut)
    return [text[a:b] for a, b in itertools.pairwise([*cuts, end]) if a < b]


# A one-document List as kubectl writes it (``kubectl get -o yaml``): a
# top-level ``items:`` line, then the items as a sequence at column 0, each
# starting with a "- " line, up to the next line at column 0 that is not one.
_ITEMS = re.compile(r"^items:[ \t]*\r?\n", re.MULTILINE)
_ITEM_START = re.compile(r"^-(?=[ \t\r\n]|$)", re.MULTILINE)
_ITEMS_END = re.compile(r"^(?!-(?:[ \t\r\n]|$))[^\s#]", re.MULTILINE)
_NOT_ONE_DOCUMENT = re.compile(r"^(?:%|---|\.\.\.)", re.MULTILINE)


def _list_parts(text: str, parts: int) -> list[str] | None:
    """A one-document List's items cut at item starts into about ``parts`` pieces,
    then the document without them (its ``items:`` left empty); else None.

    Each piece is a YAML sequence of whole items, so it parses alone, and the
    pieces' items in order are the List's: a line at column 0 starting with
    "- " can only start an item (a block scalar's lines are indented, a flow
    collection cannot hold it), unless it continues a quoted scalar begun
    before it; then the piece before it ends inside that scalar and fails to
    parse, and the caller parses the file whole. So does an alias to an
    anchor in another piece.
    """
    if parts < 2 or len(text) < PARALLEL_BYTES or _NOT_ONE_DOCUMENT.search(text):
        return None
    heads = list(_ITEMS.finditer(text))
    if len(heads) != 1:
        return None
    head = heads[0].end()
    found_end = _ITEMS_END.search(text, head)
    end = found_end.start() if found_end is not None else len(text)
    starts = [match.start() for match in _ITEM_START.finditer(text, head, end)]
    if not starts:
        return None
    return [*_cut(text, starts, starts[0], end, parts), text[: starts[0]] + text[end:]]


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
    workers = min(MAX_WORKERS, len(os.sched_getaffinity(0)))
    chunks = _chunks(text, workers)
    if len(chunks) > 1:
        parsed = _in_parallel(chunks)
        if parsed is not None:
            return [document for part in parsed for document in part]
    elif (pieces := _list_parts(text, workers)) is not None:
        parsed = _in_parallel(pieces)
        if parsed is not None:
            *items, rest = parsed
            # Each piece is one sequence (it starts with an item at column 0
            # and has no line at column 0 but items and comments); the rest
            # must be the List with its items line, and only that one, empty.
            if len(rest) == 1 and isinstance(rest[0], dict) and rest[0].get("items", "") is None:
                rest[0]["items"] = [item for (sequence,) in items for item in sequence]
                return rest
    # Parsed whole, so that an error names its real line.
    return _parse(text)


def _in_parallel(chunks: list[str]) -> list[list[Any]] | None:
    """Each chunk's documents (None if one is not YAML), in worker processes.

    fork: the workers need nothing but this module, already loaded. The
    first chunk is parsed here meanwhile: one worker fewer, and a quarter to
    a half of the documents never pickled back.
    """
    context = multiprocessing.get_context("fork")
    try:
        with ProcessPoolExecutor(len(chunks) - 1, mp_context=context) as pool:
            rest = pool.map(_parse, chunks[1:])
            return [_parse(chunks[0]), *rest]
    except yaml.YAMLError:
        return None


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
