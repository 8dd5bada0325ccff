"""What an operator sees: defaults that do not collide, --help, health, levels, metrics.

Pure tests (a real listening socket for the bind diagnosis; no mocks).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from haproxy_ingress import publish, serving
from haproxy_ingress.cli import build_parser
from haproxy_ingress.config import FLAGS, ControllerConfig, env_name
from haproxy_ingress.haproxy import messages
from haproxy_ingress.haproxy.binds import BindFailure, bind_failures, describe, holder
from haproxy_ingress.haproxy.process import HAProxyError
from haproxy_ingress.health import Health, summarize
from haproxy_ingress.metrics import Metrics
from haproxy_ingress.model import Backend, BackendSettings, Endpoint, ServerState, ServiceRef

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _port(bind: str) -> int:
    return int(bind.rsplit(":", 1)[1])


def test_default_binds_collide_neither_with_each_other_nor_with_the_readme() -> None:
    config = ControllerConfig()
    assert config.metrics_bind and config.health_bind
    defaults = [
        *map(_port, config.http_binds),
        *map(_port, config.https_binds),
        _port(config.metrics_bind),
        _port(config.health_bind),
    ]
    assert len(set(defaults)) == len(defaults)
    # Every host:port the README's examples bind (127.0.0.1:8080 and friends).
    examples = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", README)}
    assert examples, "the README shows no example bind any more"
    assert not examples & {_port(config.metrics_bind), _port(config.health_bind)}
    # Kopf's own liveness endpoint (0.0.0.0:8080 before) is off unless asked for.
    args = build_parser().parse_args(["run"])
    assert args.liveness is None


def test_readme_debugging_binds_need_no_root() -> None:
    for port in re.findall(r"HAPROXY_INGRESS_HTTPS?_BINDS=[\w.*]*:(\d+)", README):
        assert int(port) >= 1024


def test_run_help_shows_default_help_and_variable_of_every_flag() -> None:
    parser = build_parser()
    run = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        "run"
    ]
    for action in run._actions:
        if action.dest == "help":
            continue
        assert action.help, action.option_strings
        assert "default" in action.help, action.option_strings
        assert "env " in action.help or "no env" in action.help, action.option_strings
    text = run.format_help()
    for flag, (name, _) in FLAGS.items():
        assert flag in text
        assert env_name(name) in text.replace("\n", " ").replace("  ", " ") or env_name(
            name
        ) in "".join(text.split())


def test_a_taken_port_is_named_with_the_process_holding_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        alert = (
            f"[ALERT]    (42) : Binding [/x/haproxy.cfg:27] for frontend fe_http: cannot bind "
            f"socket (Address already in use) for [127.0.0.1:{port}]"
        )
        (failure,) = bind_failures(alert)
        assert failure == BindFailure("fe_http", f"127.0.0.1:{port}", "Address already in use")
        assert f"pid {os.getpid()} " in (holder(f"127.0.0.1:{port}") or "")
        line = summarize(HAProxyError(f"haproxy exited with status 1 during start:\n{alert}"))
    assert "\n" not in line
    assert line.startswith(f"HAProxy cannot listen on 127.0.0.1:{port} (frontend fe_http)")
    assert f"held by pid {os.getpid()} " in line
    low = BindFailure("fe_http", "0.0.0.0:443", "Permission denied")
    assert "CAP_NET_BIND_SERVICE" in describe(low)


def test_health_fails_until_the_first_full_sync_and_while_haproxy_is_wrong() -> None:
    now = [0.0]
    health = Health(clock=lambda: now[0])
    assert not health.status(haproxy_running=False).live
    health.applied(full=True)  # before Kopf listed everything: not a full view
    health.synced = False
    health.mark_indexed()
    assert health.status(True) == health.status(True)
    assert health.status(True).live and not health.status(True).ready
    health.applied(full=True)
    assert health.status(True).ready
    assert health.failed("HAProxy cannot listen on 127.0.0.1:8080")  # logged at ERROR
    assert not health.failed("HAProxy cannot listen on 127.0.0.1:8080")  # a repeat: DEBUG
    now[0] = 61.0
    assert health.failed("HAProxy cannot listen on 127.0.0.1:8080")  # still failing: again
    status = health.status(True)
    assert (status.live, status.ready) == (False, False)
    assert "127.0.0.1:8080" in status.reason
    assert health.backoff() > 1
    health.applied(full=False)
    assert health.status(True).ready and health.backoff() == 1


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("[WARNING]  (6843) : Proxy fe_http stopped (cumulated conns: FE: 0, BE: 0).", "DEBUG"),
        (
            "[WARNING]  (5) : config : config: Can't open global server state file "
            "'/s/run/server-state': No such file or directory",
            "DEBUG",
        ),
        ("[WARNING]  (1) : Former worker (6843) exited with code 0 (Exit)", "DEBUG"),
        ("[NOTICE]   (1) : New worker (7096) forked", "DEBUG"),
        (
            "[WARNING]  (1) : Former worker (6843) exited with code 139 (Segmentation fault)",
            "WARNING",
        ),
        ("[ALERT]    (7) : backend 'be_demo_echo_http' has no server available!", "WARNING"),
        ("[ALERT]    (7) : something we did not foresee", "ERROR"),
    ],
)
def test_haproxy_messages_get_their_level(line: str, level: str) -> None:
    assert logging.getLevelName(messages.level(line)) == level


def test_alerts_during_a_start_are_left_to_the_one_error_line() -> None:
    alert = "[ALERT]    (1) : Binding [c:9] for frontend x: cannot bind socket (x) for [a:1]"
    assert messages.level(alert, transition=True) == logging.DEBUG


def test_metric_families_in_the_readme_exist_at_zero_from_the_start() -> None:
    text = generate_latest(Metrics().registry).decode()
    section = README.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(haproxy_ingress_\w+)", section))
    assert len(documented) >= 9
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    for family in documented:
        present = [k for k in samples if re.match(rf"{family}(_total|_count)?(\{{|$)", k)]
        assert present, family
    for series in (
        'haproxy_ingress_runtime_operations_total{kind="server"}',
        'haproxy_ingress_reloads_total{reason="initial configuration"}',
        'haproxy_ingress_syncs_total{result="error"}',
        'haproxy_ingress_endpoints{state="ready"}',
        'haproxy_ingress_problems{kind="Ingress"}',
    ):
        assert samples[series] == 0.0, series


def _backend(name: str, port: str, *endpoints: Endpoint) -> Backend:
    return Backend(name, ServiceRef("demo", "echo", port), BackendSettings(), endpoints)


def test_a_pod_behind_two_backends_counts_once() -> None:
    pod = "198.18.0.10"
    backends = [
        _backend("be_http", "http", Endpoint(pod, 8080)),
        _backend("be_admin", "admin", Endpoint(pod, 9090)),
        _backend("be_other", "http", Endpoint("198.18.0.11", 8080, ServerState.DRAIN)),
    ]
    assert serving.endpoint_counts(backends) == {"ready": 1, "drain": 1, "maint": 0}


def test_a_backend_without_usable_server_says_why() -> None:
    empty = _backend("be_empty", "http")
    draining = _backend("be_drain", "http", Endpoint("198.18.0.11", 8080, ServerState.DRAIN))
    fine = _backend("be_fine", "http", Endpoint("198.18.0.12", 8080))
    reasons = serving.unusable([empty, draining, fine])
    assert set(reasons) == {"be_empty", "be_drain"}
    assert "list no endpoint" in reasons["be_empty"]
    assert "1 drain" in reasons["be_drain"]
    assert serving.changes(reasons, {"be_empty": reasons["be_empty"]}) == [("be_drain", None)]


def test_publish_service_prefers_load_balancer_then_external_ips_then_nodes() -> None:
    service = {
        "spec": {"externalIPs": ["198.51.100.4"]},
        "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}},
    }
    assert publish.addresses(service) == [{"hostname": "lb.example.com"}]
    del service["status"]
    assert publish.addresses(service) == [{"ip": "198.51.100.4"}]
    node = {
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": "10.0.0.5"},
                {"type": "ExternalIP", "address": "203.0.113.5"},
            ]
        }
    }
    internal = {"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.6"}]}}
    assert publish.addresses({"spec": {}}, [node, internal, node]) == [
        {"ip": "10.0.0.6"},
        {"ip": "203.0.113.5"},
    ]
    slices = [
        {
            "metadata": {"namespace": "ns", "labels": {publish.SERVICE_NAME_LABEL: "ctl"}},
            "endpoints": [
                {"nodeName": "b", "conditions": {"ready": True}},
                {"nodeName": "a"},
                {"nodeName": "c", "conditions": {"ready": False}},
            ],
        },
        {"metadata": {"namespace": "other", "labels": {publish.SERVICE_NAME_LABEL: "ctl"}}},
    ]
    assert publish.service_nodes(slices, "ns", "ctl") == ["a", "b"]
    assert publish.parse("ctl", "haproxy-ingress") == ("haproxy-ingress", "ctl")
    assert publish.parse("x/ctl", "haproxy-ingress") == ("x", "ctl")
