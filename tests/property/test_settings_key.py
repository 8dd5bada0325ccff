"""``settings_key`` is exactly what ``ingress_settings`` reads of the annotations.

translate parses each distinct key once and hands the result to every Ingress
that has it, so the key must cover everything the parse depends on: two
annotation maps with the same key must parse the same (problems included),
whatever else they carry.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.model import GlobalSettings, TranslateOptions
from haproxy_ingress.registry import NGINX_PREFIX
from haproxy_ingress.settings import (
    ANNOTATION_PREFIX,
    IngressSettings,
    SettingsMemo,
    ingress_settings,
    settings_key,
)
from haproxy_ingress.translate import translate
from tests.kube import configmap
from tests.property.strategies import annotations, clusters

OPTIONS = TranslateOptions()

# Keys that look like ours but are not under either prefix, and a few others.
OTHER_KEYS = st.sampled_from(
    [
        "haproxy-ingress.kopf.dev",
        "nginx.ingress.kubernetes.io",
        "x.nginx.ingress.kubernetes.io/rewrite-target",
        "kubernetes.io/ingress.class",
        "example.com/owner",
        "ingress.kubernetes.io/ssl-redirect",
    ]
)


def comparable(asked: IngressSettings) -> IngressSettings:
    """Refusals are exceptions, which compare by identity: compare what they say."""
    return dataclasses.replace(
        asked,
        errors=tuple((e.field, e.reason) for e in asked.errors),  # type: ignore[arg-type]
    )


@st.composite
def annotation_maps(draw: st.DrawFn) -> dict[str, Any]:
    ours = draw(st.lists(annotations, max_size=3))
    prefix = draw(st.sampled_from([ANNOTATION_PREFIX, NGINX_PREFIX]))
    result: dict[str, Any] = {prefix + key: value for key, value in ours}
    for key in draw(st.lists(OTHER_KEYS, max_size=3)):
        result[key] = draw(st.text(max_size=20))
    return result


@given(annotation_maps(), st.lists(st.tuples(OTHER_KEYS, st.text(max_size=20)), max_size=3))
def test_annotations_outside_the_prefixes_change_neither_key_nor_settings(
    first: dict[str, Any], extra: list[tuple[str, str]]
) -> None:
    second = {k: v for k, v in first.items() if k.startswith((ANNOTATION_PREFIX, NGINX_PREFIX))}
    second.update(extra)
    assert settings_key(first) == settings_key(second)
    defaults = GlobalSettings()
    assert comparable(ingress_settings(first, defaults)) == comparable(
        ingress_settings(second, defaults)
    )


@given(annotation_maps())
def test_the_key_does_not_depend_on_the_order_of_the_annotations(first: dict[str, Any]) -> None:
    assert settings_key(dict(reversed(first.items()))) == settings_key(first)


def test_a_value_or_key_that_is_not_a_string_has_no_key() -> None:
    # Offline YAML: `ssl-redirect: false` unquoted, `1: x`. Parsed each time.
    assert settings_key({ANNOTATION_PREFIX + "ssl-redirect": False}) is None
    assert settings_key({1: "x"}) is None
    # Outside the prefixes, a non-string value is never read.
    assert settings_key({"example.com/owner": 3}) == ()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=clusters(),
    second=clusters(),
    timeouts=st.lists(st.sampled_from(["", "5s", "90s"]), min_size=3, max_size=3),
)
def test_a_memo_kept_across_translations_changes_no_result(
    first: list[dict[str, Any]], second: list[dict[str, Any]], timeouts: list[str]
) -> None:
    # As the reconciler keeps it: across full syncs of changing clusters and
    # ConfigMaps (whose settings are the parse's other input), swept after each.
    memo = SettingsMemo()
    for objects, timeout in zip((first, second, first), timeouts, strict=True):
        extra = [configmap({"timeout-server": timeout})] if timeout else []
        view, _ = ClusterView.from_objects([*objects, *extra], OPTIONS)
        assert translate(view, OPTIONS, settings_memo=memo) == translate(view, OPTIONS)
        memo.sweep()


def test_the_memo_forgets_what_no_ingress_has_any_more() -> None:
    memo, defaults = SettingsMemo(), GlobalSettings()
    memo.parse({ANNOTATION_PREFIX + "timeout-server": "5s"}, defaults)
    memo.parse({}, defaults)
    memo.sweep()
    assert len(memo) == 2
    memo.parse({}, defaults)
    memo.sweep()
    assert len(memo) == 1
    # Equal defaults (a new object from the same ConfigMap) keep the entries.
    memo.parse({}, GlobalSettings())
    assert len(memo) == 1
