"""A one-shot view (``compact=False``: ``render``, ``audit``) translates as the controller's.

The controller's indexes keep compact deep copies of the objects; the
offline commands keep the same fields without the copy. What translation
makes of either must be the same, problems included.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings

from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.model import TranslateOptions
from haproxy_ingress.translate import translate
from tests.property.strategies import clusters

OPTIONS = TranslateOptions()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objects=clusters())
def test_a_view_without_the_compact_copy_translates_the_same(objects: list[dict[str, Any]]) -> None:
    compact, _ = ClusterView.from_objects(objects, OPTIONS)
    shared, _ = ClusterView.from_objects(objects, OPTIONS, compact=False)
    assert shared == compact
    assert translate(shared, OPTIONS) == translate(compact, OPTIONS)
