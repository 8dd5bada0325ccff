"""A short churn benchmark as a test: counts, never times.

The same code as ``make bench-churn`` (bench/churn.py), at a low rate: a
Service scaled 1 → 4 → 1 and one scale-down where the pod's process stops
accepting *before* its endpoint changes (retries and redispatch must hide
it), each under a steady load through HAProxy. Every request must succeed
and HAProxy must not reload. Timing (latency, convergence) is printed by
the benchmark, never asserted here.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.churn import Api, Bench, Settings, running_mode

from tests.e2e.conftest import Kube
from tests.e2e.operator import PodNetwork

pytestmark = pytest.mark.e2e

RATE = 50.0


@pytest.fixture(scope="module")
def churn_network() -> Iterator[PodNetwork]:
    with PodNetwork("hi-churn", subnet=ipaddress.IPv4Network("198.18.1.0/24")) as network:
        yield network


@pytest.fixture(scope="module")
def bench(
    cluster: Kube, churn_network: PodNetwork, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Bench]:
    node = "churn-test-node"
    cluster.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    settings = Settings(rate=RATE, quick=True, warmup=1.0, tail=1.0)
    # configure=False: the controller keeps the shipped ConfigMap (1 slot,
    # retries on), which other e2e modules share.
    with running_mode(
        kube=cluster,
        api=Api(cluster),
        network=churn_network,
        node=node,
        mode="controller",
        settings=settings,
        workdir=Path(tmp_path_factory.mktemp("churn")),
        configure=False,
    ) as running:
        yield running
    cluster.kubectl("delete", "node", node, "--wait=false", check=False)


def check(result: dict[str, Any], bench: Bench) -> None:
    print(json.dumps(result))  # shown with -s: the numbers behind the counts
    counts = (result["failed_total"], result["unsent"], result["requests"] - result["ok"])
    if result["requests"] == 0 or any(counts) or result["reloads"]:
        log = bench.controller.log.read_text(errors="replace").splitlines()
        events = [line for line in log if " Server " in line or "applied:" in line]
        network = subprocess.run(
            ["ip", "netns", "list"], check=False, capture_output=True, text=True
        )
        pytest.fail(
            f"{json.dumps(result, indent=1)}\n"
            f"network namespaces now: {network.stdout.split()}\n"
            "server events:\n" + "\n".join(events[-60:]),
            pytrace=False,
        )


def test_scale_up_and_down_fails_no_request_and_reloads_nothing(bench: Bench) -> None:
    # Down in the kubelet's order (endpoint terminating, then SIGTERM): the
    # benchmark's default, all pods stopped at once while their endpoints are
    # still listed, is measured by `make bench-churn`, not asserted here.
    check(bench.scenario_scale(down="kubelet"), bench)


def test_pod_stopping_before_its_endpoint_changes_fails_no_request(bench: Bench) -> None:
    check(bench.scenario_race_a(), bench)
