"""Routes' access policies (Structure.route_policies): read only while a route names one.

The rules that take a route's policy from its map value and refuse a policy
HAProxy does not know cost every request their turn, so the frontend leaves
them out while no route names a policy. Fail closed: a route map entry
naming a policy is never sent to a HAProxy without them; the first one
reloads with the rules, whatever else the plan would do by map.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from haproxy_ingress.haproxy.config import RenderOptions, map_path, render
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.model import (
    AccessPolicy,
    AppliedState,
    DesiredState,
    GlobalSettings,
    RoutingMaps,
    Structure,
    names_policy,
)
from haproxy_ingress.plan import ReplaceMap, plan
from tests.kube import configmap, ingress, path, rule
from tests.unit.test_translate import run, with_defaults

N = "nginx.ingress.kubernetes.io/"
PATHS = HAProxyPaths(Path("/var/lib/haproxy-ingress"))
REASON = "frontend rules for routes' access policies added"


def config(route_policies: bool) -> str:
    structure = Structure(GlobalSettings(), (), None, route_policies=route_policies)
    state = AppliedState(structure, {}, RoutingMaps(), ())
    options = RenderOptions(PATHS, http_binds=("*:8080",), https_binds=())
    return render(state, options).config.content.decode()


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("be_default_a_80", False),
        ("be_default_a_80~~o1", False),  # options, no policy
        ("be_default_a_80@4", False),  # a prefix route in a regex scope
        ("be_default_a_80~~o1@4", False),
        ("be_default_a_80~p1", True),
        ("be_default_a_80~p1~o1", True),
        ("be_default_a_80~p1@4", True),
    ],
)
def test_a_map_value_names_a_policy_in_its_second_field(value: str, named: bool) -> None:
    for maps in (
        RoutingMaps(exact=(("a.example.com/x", value),)),
        RoutingMaps(prefix=(("a.example.com/", value),)),
        RoutingMaps(regex=(("^a\\.example\\.com(?i:/x)", value),)),
    ):
        assert names_policy(maps) is named, maps


def test_the_rules_are_rendered_only_when_routes_name_policies() -> None:
    without, with_ = config(False), config(True)
    policies = str(map_path(PATHS, "policies"))
    assert "txn.policy" not in without
    assert policies not in without
    # Fail closed: with them, a name this configuration does not know is refused.
    assert any(
        line.strip().startswith("http-request deny deny_status 403") and policies in line
        for line in with_.splitlines()
    )
    # The sni map stays named either way: the runtime API updates it.
    assert str(map_path(PATHS, "sni")) in without


def test_the_default_structure_renders_the_rules() -> None:
    assert Structure(GlobalSettings(), (), None).route_policies is True


def cluster(allow: str | None, *, settings: dict[str, str] | None = None) -> DesiredState:
    annotations = {N + "whitelist-source-range": allow} if allow else {}
    return run(
        *with_defaults(
            ingress("a", rule("a.example.com", path("/")), annotations=annotations),
            configmap({"ssl-redirect": "false", **(settings or {})}),
        )
    )


def test_the_first_route_naming_a_policy_reloads_with_the_rules() -> None:
    plain = plan(None, cluster(None)).target
    assert plain.structure.route_policies is False
    first = plan(plain, cluster("10.0.0.0/8"))
    assert REASON in first.reload_reasons
    assert first.target.structure.route_policies is True
    # No route names one any more: the rules stay until something else reloads.
    dropped = plan(first.target, cluster(None))
    assert dropped.reload_reasons == ()
    assert dropped.target.structure.route_policies is True
    again = plan(dropped.target, cluster("10.0.0.0/8"))
    assert REASON not in again.reload_reasons
    # A reload for another reason leaves them out again.
    other = plan(dropped.target, cluster(None, settings={"proxy-read-timeout": "61"}))
    assert other.reload_reasons
    assert other.target.structure.route_policies is False


def test_a_known_policy_named_by_a_route_for_the_first_time_still_reloads() -> None:
    """The guard does not rest on policies being structural: a configuration that
    knows the policy but not the rules reading it is reloaded, not sent the map."""
    named = cluster("10.0.0.0/8")
    assert names_policy(named.maps)
    before = plan(None, named).target
    without_rules = dataclasses.replace(
        before,
        structure=dataclasses.replace(before.structure, route_policies=False),
        maps=cluster(None).maps,
    )
    step = plan(without_rules, named)
    assert step.reload_reasons == (REASON,)
    assert step.target.structure.route_policies is True


def test_a_default_policy_needs_the_rules() -> None:
    desired = cluster(None)
    settings = dataclasses.replace(
        desired.settings, default_policy=AccessPolicy(allow_sources=("10.0.0.0/8",))
    )
    target = plan(None, dataclasses.replace(desired, settings=settings)).target
    assert target.structure.route_policies


def test_no_map_naming_a_policy_reaches_a_configuration_without_the_rules() -> None:
    states = [cluster(None), cluster("10.0.0.0/8"), cluster("192.0.2.0/24"), cluster(None)]
    current = None
    for desired in states + states[::-1] + states:
        step = plan(current, desired)
        if names_policy(step.target.maps):
            assert step.target.structure.route_policies, step
        if not step.reload_reasons and current is not None:
            assert current.structure.route_policies or not any(
                isinstance(op, ReplaceMap) and names_policy(RoutingMaps(exact=op.entries))
                for op in step.operations
            )
        current = step.target
