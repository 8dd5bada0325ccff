"""Property: any field of a valid cluster replaced by any JSON value never crashes.

Offline ``render`` input has no API server (and no schema) in front of it, so
a string can be a list, an object can be a number, a name can hold a newline.
Whatever the mutation, translate + plan + render finish and the damage shows
up as Problems only; no Problem's source can split a line (stderr, Events).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.haproxy.config import RenderOptions, render
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.model import TranslateOptions
from haproxy_ingress.plan import plan
from haproxy_ingress.translate import translate
from tests import kube
from tests.certs import secret_data

OPTIONS = TranslateOptions()
CRT, KEY = secret_data("a.example.com")


def base_cluster() -> list[dict[str, Any]]:
    return [
        kube.ingress_class(default=True),
        kube.ingress(
            "ing",
            kube.rule("a.example.com", kube.path("/", "web", 80), kube.path("/x", "web", "http")),
            annotations={"haproxy-ingress.kopf.dev/retries": "3"},
            tls=[{"hosts": ["a.example.com"], "secretName": "tls"}],
            default_backend=kube.backend("web", 80),
        ),
        kube.service("web"),
        kube.endpoint_slice("web", kube.endpoint("10.0.0.1")),
        kube.tls_secret("tls", CRT, KEY),
        kube.configmap(
            {"retries": "2", "default-backend-service": "default/web:80", "retry-on": "503"}
        ),
    ]


def paths(value: object, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in ``value`` that holds a value (dict keys, list indexes)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from paths(item, (*prefix, index))


BASE = base_cluster()
PLACES = sorted(
    (
        (index, path)
        for index, obj in enumerate(BASE)
        for path in paths(obj)
        if path[:1] not in {("apiVersion",), ("kind",)}
    ),
    key=repr,
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.sampled_from(["\n", "80", "\u0663", "a" * 300, "fe80::%}", "", "x\ny", "0"])
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=10) | st.integers(0, 3), children, max_size=3)
    ),
    max_leaves=6,
)
MUTATIONS = st.lists(st.tuples(st.sampled_from(PLACES), JSON), min_size=1, max_size=3)


def mutated(mutations: list[tuple[tuple[int, tuple[Any, ...]], Any]]) -> list[dict[str, Any]]:
    objects = copy.deepcopy(BASE)
    for (index, path), value in mutations:
        target: Any = objects[index]
        for step in path[:-1]:
            try:
                target = target[step]
            except (KeyError, IndexError, TypeError):
                break
        else:
            if isinstance(target, dict) or (
                isinstance(target, list) and isinstance(path[-1], int) and path[-1] < len(target)
            ):
                target[path[-1]] = value
    return objects


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MUTATIONS)
def test_any_mutation_gives_problems_never_a_crash(
    mutations: list[tuple[tuple[int, tuple[Any, ...]], Any]],
) -> None:
    objects = mutated(mutations)
    view, _ = ClusterView.from_objects(objects, OPTIONS)
    desired = translate(view, OPTIONS)
    for problem in desired.problems:
        line = f"{problem.source}: {problem.message}"
        assert line.isprintable(), line
    with tempfile.TemporaryDirectory() as base:
        render(plan(None, desired).target, RenderOptions(HAProxyPaths(Path(base))))


def test_the_unmutated_base_is_served_without_problems() -> None:
    view, _ = ClusterView.from_objects(copy.deepcopy(BASE), OPTIONS)
    desired = translate(view, OPTIONS)
    assert desired.problems == ()
    assert desired.certificates and desired.backends[0].endpoints
