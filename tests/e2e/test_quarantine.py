"""A value HAProxy refuses never stops another tenant's Ingress (real API server).

The controller runs as users run it, with its HAProxy behind a wrapper that
makes ``haproxy -c`` refuse one marker value (the validators accept it, as
they would any value HAProxy refuses that they do not know about yet); the
master, its reloads and the traffic are the real binary's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Kube, service_manifest, suffix, wait_for
from tests.e2e.operator import (
    PodNetwork,
    RunningController,
    Workload,
    events_for,
    ingress,
    start_controller,
)
from tests.haproxy.conftest import HAPROXY

pytestmark = pytest.mark.e2e

INTERVAL = "haproxy-ingress.kopf.dev/health-check-interval"
REFUSED = "4242ms"
WRAPPER = f"""#!/bin/sh
if [ "$1" = "-c" ] && grep -qs 'inter {REFUSED}' "$3"; then
    echo "[ALERT]    ($$) : config : [$3:1] : test marker refused" >&2
    exit 1
fi
exec {HAPROXY} "$@"
"""


@pytest.fixture(scope="module")
def pod_network() -> Iterator[PodNetwork]:
    # Own name and subnet: other e2e modules (and benchmarks) may run meanwhile.
    with PodNetwork("hi-quar", subnet=ipaddress.IPv4Network("198.18.7.0/24")) as network:
        yield network


@pytest.fixture(scope="module")
def controller(
    cluster: Kube, pod_network: PodNetwork, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningController]:
    workdir = tmp_path_factory.mktemp("quarantine")
    wrapper = workdir / "haproxy-refusing"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    running = start_controller(cluster, workdir, "--haproxy-binary", str(wrapper))
    yield running
    running.stop()


def with_interval(obj: dict[str, Any], value: str) -> dict[str, Any]:
    obj["metadata"]["annotations"] = {INTERVAL: value}
    return obj


def test_refused_ingress_is_quarantined_and_the_next_one_is_served(
    cluster: Kube,
    controller: RunningController,
    pod_network: PodNetwork,
    namespace: str,
    node: str,
) -> None:
    workload = Workload(cluster, pod_network, namespace, "app", node)
    pod = workload.add_pod("app-1")
    cluster.apply(service_manifest(namespace, "app"))
    bad_host, good_host = f"bad-{suffix()}.example.com", f"good-{suffix()}.example.com"
    cluster.apply(with_interval(ingress(namespace, "refused", bad_host, "app"), REFUSED))

    def warning() -> list[dict[str, Any]]:
        return [
            e
            for e in events_for(cluster, namespace, "refused")
            if e["type"] == "Warning" and e["reason"] == "ConfigRejected"
        ]

    (event,) = wait_for(warning, timeout=60, what="a ConfigRejected Event on the refused Ingress")
    assert "test marker refused" in event["message"]
    assert event["involvedObject"]["kind"] == "Ingress"

    # Another tenant's Ingress, created after the refused one, is served.
    cluster.apply(ingress(namespace, "after", good_host, "app"))
    wait_for(lambda: controller.get(good_host)[0] == 200, what="the later Ingress served")
    assert controller.get(good_host)[1].startswith(pod.name)
    assert controller.get(bad_host)[0] == 404
    assert controller.total("haproxy_ingress_quarantined_objects") == 1
    assert len(warning()) == 1  # posted once, not on every sync

    # Fixed by its owner: tried again and served.
    cluster.apply(with_interval(ingress(namespace, "refused", bad_host, "app"), "2s"))
    wait_for(lambda: controller.get(bad_host)[0] == 200, what="the fixed Ingress served")
    assert controller.get(good_host)[0] == 200
    assert controller.total("haproxy_ingress_quarantined_objects") == 0
