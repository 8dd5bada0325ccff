"""The first sync waits until every watched kind is listed, however long that takes.

A big cluster lists some kinds long after others. Syncing before the last
one is in applies a half-listed cluster: Ingresses whose Services are not
listed yet get BackendNotFound warnings, and the config HAProxy starts with
lacks their backends. Here the API server answers the controller's LIST of
Services only after the controller's start-up timeout (2 s) has passed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Kube, service_manifest, suffix, wait_for
from tests.e2e.operator import events_for, ingress, start_controller
from tests.e2e.slowlist import SlowListProxy

pytestmark = pytest.mark.e2e

LIST_DELAY = 5.0  # > ControllerConfig.startup_timeout (2 s)


@pytest.fixture
def slow_services(cluster: Kube) -> Iterator[SlowListProxy]:
    proxy = SlowListProxy(cluster.server, "/api/v1/services", LIST_DELAY)
    yield proxy
    proxy.close()


def test_the_first_sync_waits_for_a_kind_that_lists_slowly(
    cluster: Kube, namespace: str, slow_services: SlowListProxy, tmp_path: Path
) -> None:
    host = f"site-{suffix()}.example.com"
    cluster.apply(service_manifest(namespace, "web"))
    cluster.apply(ingress(namespace, "site", host, "web"))
    started = time.monotonic()
    controller = start_controller(
        cluster, tmp_path, api_server=slow_services.url, api_ca=slow_services.ca_pem
    )
    try:
        first_sync = time.monotonic() - started
        assert slow_services.delayed >= 1
        # Known Service, no pod: 503 from the backend (a missing one would be 404/503
        # with a BackendNotFound warning).
        wait_for(lambda: controller.get(host)[0] == 503, what="the route")
        wait_for(lambda: controller.probe("/readyz")[0] == 200, what="readiness")
        reasons = [event["reason"] for event in events_for(cluster, namespace, "site")]
        assert "BackendNotFound" not in reasons, reasons
        assert first_sync >= LIST_DELAY
    finally:
        controller.stop()
