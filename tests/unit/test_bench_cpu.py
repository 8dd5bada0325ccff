"""bench/churn.py's account of the machine's CPU: whose it was, and how busy.

A churn run's tails are read against these figures (a tail with every core
busy is the machine's), so they must name the processes right and count
what this process itself burns.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bench.churn import BACKGROUND_GROUPS, CPU_GROUPS, CpuSampler, renice_background


def group_of(argv: list[str]) -> str | None:
    return next((name for name, matches in CPU_GROUPS if matches(argv)), None)


@pytest.mark.parametrize(
    ("argv", "group"),
    [
        (["/usr/bin/python3", "-m", "haproxy_ingress.cli", "run", "--liveness", "x"], "controller"),
        (["/usr/sbin/haproxy", "-W", "-f", "/s/haproxy.cfg"], "haproxy"),
        (["/c/k8s/kube-apiserver", "--etcd-servers=http://127.0.0.1:2379"], "apiserver"),
        (["/c/etcd/etcd", "--data-dir", "/d"], "etcd"),
        (["/c/k8s/kube-controller-manager", "--kubeconfig=/k"], "controller-manager"),
        (["/usr/bin/python3", "-m", "bench.loadgen", "--port", "80"], "loadgen"),
        (["/usr/bin/python3", "/repo/hack/podnet.py", "serve", "--name", "p"], "pods"),
        # Look-alikes stay out: a render is not the running controller, an
        # haproxy -c wrapper script is not HAProxy.
        (["/usr/bin/python3", "-m", "haproxy_ingress.cli", "render", "-f", "x"], None),
        (["/bin/sh", "-c", "haproxy -c -f x"], None),
    ],
)
def test_processes_are_grouped_by_their_command_line(argv: list[str], group: str | None) -> None:
    assert group_of(argv) == group


def test_the_sampler_counts_this_process_and_the_machine_busy() -> None:
    with CpuSampler(interval=0.05) as sampler:
        # Until this process has had 0.4 s of CPU, however busy the machine.
        spent = time.process_time() + 0.4
        while time.process_time() < spent:
            pass
    summary = sampler.summary()
    assert summary["cpu_ms"]["bench"] >= 350  # ticks: 10 ms each
    # While this process could run, one core at least was busy (with it, or
    # with whatever ran instead): a share of the whole machine.
    assert 100 // (os.cpu_count() or 1) - 20 <= summary["busy_pct"] <= 100
    assert len(summary["busy_timeline"]) >= 5
    assert all(0 <= pct <= 100 for _, pct in summary["busy_timeline"])


def test_renice_reaches_every_thread_of_background_children_only(tmp_path: Path) -> None:
    assert "controller" not in BACKGROUND_GROUPS and "haproxy" not in BACKGROUND_GROUPS
    # A "pod" (by its script's name) with a second thread, and a process of no group.
    script = tmp_path / "podnet.py"
    script.write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(30,)).start()\n"
        "time.sleep(30)\n"
    )
    # Under their own parent: this test process may have other children (a
    # control plane for the e2e tests) that are not to be touched.
    parent = subprocess.Popen(
        ["sh", "-c", f'"{sys.executable}" "{script}" serve & sleep 30 & wait'],
        start_new_session=True,
    )
    own_autogroup = (
        Path("/proc/self/autogroup").read_text() if Path("/proc/self/autogroup").exists() else ""
    )
    try:
        deadline = time.monotonic() + 10
        pod = other = 0
        while time.monotonic() < deadline:
            kids = _children(parent.pid)
            pod = next((k for k in kids if "podnet.py" in _cmdline(k)), 0)
            other = next((k for k in kids if _cmdline(k).startswith("sleep")), 0)
            if pod and other and len(os.listdir(f"/proc/{pod}/task")) == 2:
                break
            time.sleep(0.05)
        assert renice_background(5, root=parent.pid) == 1
        tasks = [int(t) for t in os.listdir(f"/proc/{pod}/task")]
        assert len(tasks) == 2
        assert [os.getpriority(os.PRIO_PROCESS, t) for t in tasks] == [5, 5]
        assert os.getpriority(os.PRIO_PROCESS, other) == os.getpriority(os.PRIO_PROCESS, 0)
        # The pod's session (not this test's) is reniced as a whole too, where
        # the kernel schedules by session (autogroup).
        autogroup = Path(f"/proc/{pod}/autogroup")
        if autogroup.exists():
            assert autogroup.read_text().split()[-1] == "5"
            assert Path("/proc/self/autogroup").read_text() == own_autogroup
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _children(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux: /proc/<pid>/task/<pid>/children)."""
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
