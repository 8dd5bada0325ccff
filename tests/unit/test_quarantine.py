"""The quarantine's pure parts: the culprit search (with a fake check), suspects, screening."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Collection, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.model import TranslateOptions
from haproxy_ingress.quarantine import (
    MAX_ALERT,
    NotASuspect,
    ObjectKey,
    Quarantine,
    Search,
    find_culprits,
    first_alert,
    key_of,
    leave_out,
    suspects,
    version,
)
from tests.kube import endpoint, endpoint_slice, ingress, path, rule, service


class FakeCheck:
    """Refuses any inclusion that contains every member of one of ``refused`` (monotone)."""

    def __init__(self, *refused: Collection[int]) -> None:
        self.refused = [set(group) for group in refused]
        self.calls: list[tuple[int, ...]] = []

    async def __call__(self, included: Sequence[int]) -> str | None:
        self.calls.append(tuple(included))
        present = set(included)
        for group in self.refused:
            if group <= present:
                return f"refused {sorted(group)}"
        return None


def bound(culprits: int, suspects: int) -> int:
    """The promised cost: one baseline check, then per culprit a binary search and one more."""
    return 1 + (culprits + 1) * (math.ceil(math.log2(max(suspects, 2))) + 1)


async def test_one_culprit_is_found_in_logarithmic_checks() -> None:
    check = FakeCheck({11})
    search = await find_culprits(list(range(64)), check)
    assert search.culprits == ((11, "refused [11]"),)
    assert search.unresolved == ()
    assert search.checks == len(check.calls) <= bound(1, 64)
    assert check.calls[0] == ()  # the baseline: nothing of the suspects
    assert check.calls[-1] == tuple(n for n in range(64) if n != 11)  # verified at the end


async def test_several_culprits_are_all_found() -> None:
    check = FakeCheck({3}, {40}, {41})
    search = await find_culprits(list(range(50)), check)
    assert [culprit for culprit, _ in search.culprits] == [3, 40, 41]
    assert check.calls[-1] == tuple(n for n in range(50) if n not in {3, 40, 41})


async def test_a_refused_combination_blames_its_last_member() -> None:
    # Two objects refused only together (say, an Ingress and the Service it
    # tunes): the one later in the order goes, the earlier one keeps serving.
    search = await find_culprits(list(range(10)), FakeCheck({2, 7}))
    assert [culprit for culprit, _ in search.culprits] == [7]


async def test_a_culprit_outside_the_suspects_is_reported_as_such() -> None:
    class AlwaysRefused:
        async def __call__(self, included: Sequence[int]) -> str | None:
            return "[ALERT] global maxconn too high"

    with pytest.raises(NotASuspect) as error:
        await find_culprits([1, 2, 3], AlwaysRefused())
    assert error.value.checks == 1
    assert "maxconn" in error.value.refusal


async def test_no_culprit_when_the_full_set_passes() -> None:
    search = await find_culprits(list(range(5)), FakeCheck())
    assert search == Search((), (), 2)


async def test_the_budget_leaves_the_unproven_rest_out_and_keeps_what_was_proven() -> None:
    check = FakeCheck(*({n} for n in range(0, 32, 2)))  # every other suspect refused
    search = await find_culprits(list(range(32)), check, max_checks=12)
    assert search.checks <= 12
    assert search.unresolved
    found = {culprit for culprit, _ in search.culprits}
    assert found <= set(range(0, 32, 2))
    # What is served (neither a culprit nor unresolved) passes the check.
    served = [n for n in range(32) if n not in found and n not in search.unresolved]
    assert await check(served) is None


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=200),
    data=st.data(),
)
def test_search_finds_exactly_the_culprits_within_the_bound(size: int, data: Any) -> None:
    culprits = data.draw(st.sets(st.integers(min_value=0, max_value=max(size - 1, 0)), max_size=6))
    culprits &= set(range(size))
    check = FakeCheck(*({c} for c in culprits))
    search = asyncio.run(find_culprits(list(range(size)), check, max_checks=10_000))
    assert {c for c, _ in search.culprits} == culprits
    assert search.unresolved == ()
    assert search.checks <= bound(len(culprits), size)


# --- suspects and bookkeeping ----------------------------------------------------------


def view_of(*objects: dict[str, Any]) -> ClusterView:
    return ClusterView.from_objects(objects, TranslateOptions())[0]


def test_suspects_are_new_or_changed_objects_ingresses_last_oldest_first() -> None:
    old = ingress("old", rule("a.example.com", path("/")), created="2026-01-01T00:00:00Z")
    web = service("web")
    before = view_of(old, web)
    good = Quarantine()
    good.accepted(before)
    newer = ingress("newer", rule("b.example.com", path("/")), created="2026-01-03T00:00:00Z")
    new = ingress("new", rule("c.example.com", path("/")), created="2026-01-02T00:00:00Z")
    changed_web = {**web, "spec": {**web["spec"], "ports": [{"name": "x", "port": 81}]}}
    after = view_of(old, newer, new, changed_web)
    assert [k.name for k in good.suspects(after)] == ["web", "new", "newer"]
    assert [k.kind for k in suspects(after, None)] == ["Service", "Ingress", "Ingress", "Ingress"]


def test_version_ignores_status_but_not_annotations() -> None:
    obj = ingress("a", rule("a.example.com", path("/")))
    with_status = {**obj, "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}
    assert version(obj) == version(with_status)
    annotated = ingress("a", rule("a.example.com", path("/")), annotations={"x": "y"})
    assert version(obj) != version(annotated)


def test_quarantined_objects_stay_out_until_they_change() -> None:
    bad = ingress("bad", rule("bad.example.com", path("/")), annotations={"k": "1"})
    good = ingress("good", rule("good.example.com", path("/")))
    view = view_of(bad, good)
    key = key_of("Ingress", bad)
    quarantine = Quarantine()
    quarantine.add(view, Search(((key, "[ALERT]    (42) : config : nope"),), (), 3))
    served, problems = quarantine.screen(view)
    assert [i["metadata"]["name"] for i in served.ingresses] == ["good"]
    (problem,) = problems
    assert problem.source == key.ref and problem.event == "ConfigRejected"
    assert problem.reason.endswith(": config : nope")
    # The same problem on every sync (posted once), until the object changes.
    assert quarantine.screen(view)[1] == problems
    fixed = ingress("bad", rule("bad.example.com", path("/")), annotations={"k": "2"})
    served, problems = quarantine.screen(view_of(fixed, good))
    assert len(served.ingresses) == 2 and problems == ()
    assert quarantine.entries == ()


def test_a_recreated_object_is_tried_again() -> None:
    bad = ingress("bad", rule("bad.example.com", path("/")), uid="one")
    quarantine = Quarantine()
    quarantine.add(view_of(bad), Search(((key_of("Ingress", bad), "x"),), (), 1))
    again = ingress("bad", rule("bad.example.com", path("/")), uid="two")
    served, problems = quarantine.screen(view_of(again))
    assert len(served.ingresses) == 1 and problems == ()


def test_unproven_objects_are_retried_at_the_next_sync() -> None:
    obj = ingress("maybe", rule("m.example.com", path("/")))
    view = view_of(obj)
    quarantine = Quarantine()
    quarantine.add(view, Search((), (key_of("Ingress", obj),), 100))
    served, problems = quarantine.screen(view, retry_unproven=False)
    assert served.ingresses == () and "left out for now" in problems[0].reason
    served, problems = quarantine.screen(view)
    assert len(served.ingresses) == 1 and problems == ()


def test_an_endpoint_syncs_view_judges_only_the_entries_of_its_services() -> None:
    """The fast path's view holds only the changed Services and their slices: an entry
    it cannot see is unseen, not gone (its object did not change, or it would be in it)."""
    bad_ingress = ingress("bad", rule("bad.example.com", path("/")))
    bad_slice = endpoint_slice("web", endpoint("10.0.0.1"))
    bad_slice["metadata"]["uid"] = "slice-1"
    whole = view_of(bad_ingress, service("web"), bad_slice, service("api"))
    quarantine = Quarantine()
    culprits = ((key_of("Ingress", bad_ingress), "x"), (key_of("EndpointSlice", bad_slice), "y"))
    quarantine.add(whole, Search(culprits, (), 3))
    api_only = ClusterView(services=(whole.services[1],))
    served, problems = quarantine.screen(api_only, services={("default", "api")})
    assert served == api_only and len(problems) == 2
    assert len(quarantine.entries) == 2  # the whole view's screen judges them, as before
    web_only = ClusterView(services=(whole.services[0],), endpoint_slices=whole.endpoint_slices)
    served, problems = quarantine.screen(web_only, services={("default", "web")})
    assert served.endpoint_slices == () and len(problems) == 2  # web's slice is still out
    changed = endpoint_slice("web", endpoint("10.0.0.2"))
    changed["metadata"]["uid"] = "slice-1"
    served, problems = quarantine.screen(
        view_of(service("web"), changed), services={("default", "web")}
    )
    assert len(served.endpoint_slices) == 1  # changed: tried again
    assert [p.source.kind for p in problems] == ["Ingress"]  # unseen: still out
    served, problems = quarantine.screen(ClusterView(), services={("default", "web")})
    assert [e.key.kind for e in quarantine.entries] == ["Ingress"]


def test_unproven_objects_are_retried_whatever_the_view_holds() -> None:
    obj = ingress("maybe", rule("m.example.com", path("/")))
    quarantine = Quarantine()
    quarantine.add(view_of(obj), Search((), (key_of("Ingress", obj),), 100))
    assert quarantine.screen(ClusterView(), services={("default", "web")})[1] == ()
    assert quarantine.entries == ()


def test_leave_out_keeps_the_configmap_and_other_kinds() -> None:
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"namespace": "haproxy-ingress", "name": "haproxy-ingress"},
    }
    obj = ingress("a", rule("a.example.com", path("/")))
    view = view_of(obj, service("web"), configmap)
    smaller = leave_out(view, [ObjectKey("Ingress", "default", "a", "uid-default-a")])
    assert smaller.ingresses == () and smaller.services == view.services
    assert smaller.configmap == view.configmap


def test_first_alert_is_the_telling_line_without_pid_and_bounded() -> None:
    output = (
        "[ALERT]    (1234) : config : [haproxy.cfg:80] : 'server be_x/s1' : invalid value 0 "
        "for argument 'inter' of server s1.\n"
        "[ALERT]    (1234) : config : Error(s) found in configuration file : haproxy.cfg\n"
        "[ALERT]    (1234) : config : Fatal errors found in configuration."
    )
    assert first_alert(output) == (
        "config : [haproxy.cfg:80] : 'server be_x/s1' : invalid value 0 for argument 'inter' "
        "of server s1."
    )
    noisy = first_alert("[ALERT] (1) : " + "x\x1b" * 400)
    assert len(noisy) == MAX_ALERT and noisy.endswith("...") and "\x1b" not in noisy
    assert first_alert("") == "haproxy -c refused the configuration"
