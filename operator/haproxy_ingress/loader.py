"""Kubernetes objects from YAML or JSON files, for the offline ``render`` command."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
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


def _objects_in(path: Path) -> Iterator[Mapping[str, Any]]:
    try:
        documents = list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=_Loader))
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
