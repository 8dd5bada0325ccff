"""The churn benchmark's real-node mode as a test: counts, never times.

Same code as ``make bench-churn --kubelet real`` (bench/churn_node.py) at a low
rate: the controller and HAProxy as in tests/e2e/test_churn.py, but the pods are a
Deployment run by the real kubelet, scaled, restarted and killed as a user and
the runtime do it. Asserts no failed request and no reload.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.churn import Api, Bench, Settings, running_mode
from bench.churn_node import RealBench

from tests.e2e.test_churn import check
from tests.node.conftest import NodeKube

RATE = 50.0


@pytest.fixture(scope="module")
def bench(node_cluster: NodeKube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    settings = Settings(rate=RATE, quick=True, warmup=1.0, tail=1.0)
    with running_mode(
        kube=node_cluster,
        api=Api(node_cluster),
        network=None,
        node=node_cluster.node_name,
        mode="controller",
        settings=settings,
        workdir=Path(tmp_path_factory.mktemp("churn-node")),
        configure=False,
        bench_class=RealBench,
        bench_options={"image": node_cluster.agnhost},
    ) as running:
        yield running


def test_real_scale_up_and_down_fails_no_request_and_reloads_nothing(bench: Bench) -> None:
    check(bench.scenario_scale(), bench)


def test_real_rollout_restart_fails_no_request(bench: Bench) -> None:
    check(bench.scenario_rolling(), bench)


def test_real_container_sigterm_through_the_runtime_fails_no_request(bench: Bench) -> None:
    check(bench.scenario_race_a(), bench)


def test_real_container_sigkill_through_the_runtime_fails_no_request(bench: Bench) -> None:
    check(bench.scenario_kill(), bench)
