"""Optional frontend rules (Structure.frontend_maps): rendered only while their maps have entries.

A rule costs every request its turn even when no route uses it, so the
frontend leaves out the rules of optional maps (model.OPTIONAL_MAPS) that
are empty; the map's first entries then reload, after which its changes
are map updates again. HAProxy knows a map only if a rule names it, so a
left-out map must never be sent to the runtime API either.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from haproxy_ingress.haproxy.config import RenderOptions, map_path, render
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.model import (
    OPTIONAL_MAPS,
    OTHER_SCOPES,
    AppliedState,
    DesiredState,
    GlobalSettings,
    RoutingMaps,
    Structure,
    frontend_maps,
    has_other_scopes,
)
from haproxy_ingress.plan import ReplaceMap, plan
from tests.kube import configmap, ingress, path, rule
from tests.unit.test_translate import run, with_defaults

N = "nginx.ingress.kubernetes.io/"
PATHS = HAProxyPaths(Path("/var/lib/haproxy-ingress"))


def config(rules: tuple[str, ...]) -> str:
    structure = Structure(GlobalSettings(), (), None, frontend_maps=rules)
    state = AppliedState(structure, {}, RoutingMaps(), ())
    options = RenderOptions(PATHS, http_binds=("*:8080",), https_binds=())
    return render(state, options).config.content.decode()


def lines_naming(text: str, name: str) -> list[str]:
    file = str(map_path(PATHS, name))
    return [line for line in text.splitlines() if file in line]


def test_no_optional_map_is_named_when_none_has_rules() -> None:
    text = config(())
    for name in OPTIONAL_MAPS:
        assert lines_naming(text, name) == [], name


@pytest.mark.parametrize("name", OPTIONAL_MAPS)
def test_a_map_with_rules_gets_every_rule_that_reads_it(name: str) -> None:
    everything = config(OPTIONAL_MAPS)
    alone = config((name,))
    assert lines_naming(everything, name)
    assert lines_naming(alone, name) == lines_naming(everything, name)
    # The variables its rules set are read by the same rules as with every map.
    assigned = {
        var
        for line in lines_naming(everything, name)
        for var in re.findall(r"set-var\((txn\.\w+)\)", line)
    }
    for var in assigned:
        readers = [line for line in everything.splitlines() if f"var({var})" in line]
        assert [line for line in alone.splitlines() if f"var({var})" in line] == readers, var


def test_the_default_structure_renders_every_rule() -> None:
    assert Structure(GlobalSettings(), (), None).frontend_maps == tuple(
        sorted((*OPTIONAL_MAPS, OTHER_SCOPES))
    )


def cors(enabled: bool, origin: str = "https://a.example.com") -> DesiredState:
    annotations = {N + "enable-cors": "true", N + "cors-allow-origin": origin} if enabled else {}
    return run(
        *with_defaults(
            ingress("a", rule("a.example.com", path("/")), annotations=annotations),
            configmap({"ssl-redirect": "false"}),
        )
    )


def test_a_feature_used_for_the_first_time_reloads_then_changes_by_map() -> None:
    plain = plan(None, cors(False)).target
    assert "cors-origins" not in plain.structure.frontend_maps
    first = plan(plain, cors(True))
    assert first.reload_reasons == (
        "frontend rules for the cors-credentials, cors-headers, cors-max-age, cors-methods, "
        "cors-origins maps added",
    )
    assert set(first.target.structure.frontend_maps) >= {"cors-origins", "cors-methods"}
    # Another origin: a map update.
    other = plan(first.target, cors(True, "https://b.example.com"))
    assert other.reload_reasons == ()
    assert "cors-origins" in {op.name for op in other.operations if isinstance(op, ReplaceMap)}
    # No route uses CORS any more: the rules stay until something else reloads.
    dropped = plan(other.target, cors(False))
    assert dropped.reload_reasons == ()
    assert dropped.target.structure.frontend_maps == first.target.structure.frontend_maps
    again = plan(dropped.target, cors(True))
    assert again.reload_reasons == ()


def test_a_reload_for_another_reason_drops_unused_rules() -> None:
    used = plan(None, cors(True)).target
    plain = cors(False)
    changed = dataclasses.replace(
        plain, settings=dataclasses.replace(plain.settings, timeout_client="61s")
    )
    step = plan(used, changed)
    assert step.reload_reasons == ("global settings changed",)
    assert step.target.structure.frontend_maps == frontend_maps(
        plain.maps, has_other_scopes(plain.routes)
    )
    assert "cors-origins" not in step.target.structure.frontend_maps


def test_no_runtime_map_update_names_a_map_without_rules() -> None:
    """Whatever the change, a map left out of the configuration is never replaced."""
    states = [cors(False), cors(True), cors(True, "https://b.example.com"), cors(False)]
    current = None
    for desired in states + states[::-1]:
        step = plan(current, desired)
        kept = set(step.target.structure.frontend_maps)
        for op in step.operations:
            if isinstance(op, ReplaceMap) and op.name in OPTIONAL_MAPS:
                assert op.name in kept, op
        current = step.target


def test_the_second_routing_pass_is_rendered_while_a_route_needs_it() -> None:
    """Hosts without rules need the second pass (model.OTHER_SCOPES) only when
    some route has a wildcard host or none; the first such route reloads."""
    exact = run(*with_defaults(ingress("a", rule("a.example.com", path("/a")))))
    first = plan(None, exact)
    assert OTHER_SCOPES not in first.target.structure.frontend_maps
    assert "txn.wildcard),map_str(" in config(first.target.structure.frontend_maps)
    assert "map_str(/var/lib/haproxy-ingress/maps/hosts.map,)" not in config(
        first.target.structure.frontend_maps
    )
    for extra in (rule(None, path("/any")), rule("*.w.example.com", path("/"))):
        wider = run(*with_defaults(ingress("a", rule("a.example.com", path("/a")), extra)))
        step = plan(first.target, wider)
        assert step.reload_reasons == ("frontend rules for the other-scopes maps added",)
        assert "maps/hosts.map,)" in config(step.target.structure.frontend_maps)
    # The default structure (a state saved before) renders both passes.
    assert OTHER_SCOPES in Structure(GlobalSettings(), (), None).frontend_maps
