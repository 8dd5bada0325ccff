"""What pyproject.toml ships: every package, and the templates as package data."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from haproxy_ingress.haproxy.config import LUA, TEMPLATE, template_source

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_source_package_is_shipped() -> None:
    setuptools = PROJECT["tool"]["setuptools"]
    found = {
        ".".join(init.parent.relative_to(ROOT / "operator").parts)
        for init in (ROOT / "operator").rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == found | {"haproxy_ingress.templates"}
    # The package is a symlink to the top-level templates/, so a source tree
    # on PYTHONPATH reads its own templates (not an editable install's).
    link = ROOT / "operator" / "haproxy_ingress" / "templates"
    assert link.is_symlink()
    assert link.resolve() == (ROOT / "templates").resolve()


def test_the_templates_are_package_data_read_from_the_top_level_directory() -> None:
    patterns = PROJECT["tool"]["setuptools"]["package-data"]["haproxy_ingress.templates"]
    shipped = {p.name for pattern in patterns for p in (ROOT / "templates").glob(pattern)}
    # The configuration's template, the partials it includes, and the Lua.
    partials = set(re.findall(r'{%-? include "([^"]+)"', template_source(TEMPLATE)))
    assert shipped == {TEMPLATE, LUA, *partials}
    for name in shipped:
        assert template_source(name) == (ROOT / "templates" / name).read_text()
