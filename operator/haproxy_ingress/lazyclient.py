"""Load kubernetes-asyncio's generated client one name at a time.

``kubernetes_asyncio.client`` (with ``.models`` and ``.api``) is generated
code whose package ``__init__`` imports all of it eagerly: about 800
model and API modules, 55 MiB of the controller's RSS, 1,100 modules. The
controller uses a dozen of them (Events, Leases, Ingress status, its
ConfigMap), and Kopf imports the package only to recognise two model
classes (``kopf._cogs.helpers.thirdparty``). Issue 13 measures the whole
process, so :func:`install` puts in ``sys.modules`` packages that import a
name's module when the name is first used (PEP 562), before anything
imports the client.

The names and where they come from are read from the generated
``__init__.py`` files themselves (lines ``from <module> import <Name>``),
so an upgrade of kubernetes-asyncio needs nothing here; a package whose
``__init__`` holds anything else is left to load eagerly.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
import types
from pathlib import Path
from typing import Any

TOP = "kubernetes_asyncio"
CLIENT = f"{TOP}.client"
# Parents first: a child is an attribute of its parent.
LAZY_PACKAGES = (CLIENT, f"{CLIENT}.models", f"{CLIENT}.api")

_IMPORT = re.compile(r"from (kubernetes_asyncio\.client[\w.]*) import (\w+)")
# What else a generated __init__ holds: its docstring, a __future__ import,
# ``__version__ = "..."`` and an ``__all__`` list of the imported names.
_VERSION = re.compile(r'__version__ = "([\w.+-]+)"')


class LazyPackage(types.ModuleType):
    """A package whose names are imported from their modules on first access."""

    def __init__(self, name: str, names: dict[str, str]) -> None:
        super().__init__(name)
        self._lazy_names = names

    def __getattr__(self, name: str) -> Any:
        # Only names not yet in the module's dict get here.
        module = self.__dict__.get("_lazy_names", {}).get(name)
        if module is not None or not name.startswith("__"):
            # The eager order: ``kubernetes_asyncio`` (which imports its
            # ``config``, and that ``client.ApiClient``) before any client
            # module. Importing ``a.b.c`` imports ``a`` only if ``a.b`` is
            # missing, and ours are in ``sys.modules`` from the start.
            importlib.import_module(TOP)
        if module is not None:
            value = getattr(importlib.import_module(module), name)
        elif _is_submodule(self, name):
            # An eager package has its imported submodules as attributes.
            value = importlib.import_module(f"{self.__name__}.{name}")
        else:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        setattr(self, name, value)
        return value

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._lazy_names))


def _is_submodule(package: types.ModuleType, name: str) -> bool:
    if name.startswith("__"):
        return False
    path = getattr(package, "__path__", None)
    return importlib.machinery.PathFinder.find_spec(f"{package.__name__}.{name}", path) is not None


def parse_init(source: str) -> tuple[dict[str, str], str | None] | None:
    """A generated ``__init__``'s names → their modules, and its version; None if it does more."""
    names: dict[str, str] = {}
    version: str | None = None
    body = re.sub(r'""".*?"""', "", source, flags=re.S)
    body = re.sub(r"^__all__ = \[.*?\]", "", body, flags=re.S | re.M)
    for raw in body.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line == "from __future__ import absolute_import":
            continue
        if (found := _IMPORT.fullmatch(line)) is not None:
            names[found[2]] = found[1]
        elif (found := _VERSION.fullmatch(line)) is not None:
            version = found[1]
        else:
            return None
    return names, version


def install() -> bool:
    """Make the generated client lazy; False if it is imported already or not lazy-able.

    Must run before anything imports ``kubernetes_asyncio`` (``kopf`` does):
    :mod:`haproxy_ingress` calls it first thing. Under ``kopf run`` Kopf is
    imported before our package, so the client loads eagerly as it would
    without us.
    """
    if any(name in sys.modules for name in (TOP, *LAZY_PACKAGES)):
        return False
    top = importlib.util.find_spec(TOP)  # a top-level name: not imported
    if top is None or not top.submodule_search_locations:
        return False
    packages: list[LazyPackage] = []
    search = list(top.submodule_search_locations)
    for name in LAZY_PACKAGES:
        spec = importlib.machinery.PathFinder.find_spec(name, search)
        if spec is None or spec.origin is None or not spec.submodule_search_locations:
            return False
        parsed = parse_init(Path(spec.origin).read_text(encoding="utf-8"))
        if parsed is None:
            return False
        names, version = parsed
        package = LazyPackage(name, names)
        package.__spec__ = spec
        package.__file__ = spec.origin
        package.__path__ = list(spec.submodule_search_locations)
        package.__package__ = name
        package.__loader__ = spec.loader
        package.__all__ = sorted(names)  # type: ignore[attr-defined]
        if version is not None:
            package.__version__ = version  # type: ignore[attr-defined]
        packages.append(package)
        if name == CLIENT:
            search = package.__path__
    for package in packages:
        sys.modules[package.__name__] = package
    client, models, api = packages
    client.models = models  # type: ignore[attr-defined]
    client.api = api  # type: ignore[attr-defined]
    return True
