"""The validators' limits, checked against a real ``haproxy -c``.

Each boundary value the validators accept is rendered through the offline
``render`` command and must pass ``haproxy -c``; each value they refuse is
shown to fail ``haproxy -c`` when written into a configuration by hand, so
the refusal is HAProxy's rule, not a guess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from haproxy_ingress import validate
from haproxy_ingress.cli import main
from tests.haproxy.test_config_check import haproxy_check

pytestmark = pytest.mark.haproxy

# The most extreme values accepted, all at once (the allow-list: MAX_CIDRS
# full-length IPv6 networks, read from a file).
EXTREMES = {
    "timeout-connect": "24d",
    "timeout-server": "1us",
    "timeout-client": "2147483s",
    "timeout-http-request": "1",
    "timeout-http-keep-alive": "596h",
    "timeout-queue": "35791m",
    "hard-stop-after": "1us",
    "health-check-interval": "1us",
    "health-check-fall": "100",
    "health-check-rise": "1",
    "health-check-error-limit": "100",
    "health-check-observe": "layer7",
    "slowstart": "24d",
    "server-maxconn": "1000000",
    "retries": "100",
    "server-header": "A" * 64 + "/" + "9." * 16,
    "retry-on": " ".join(["all-retryable-errors", "404", "none"][:2] * 40),
    "allowlist-source-range": " ".join(
        f"ffff:ffff:ffff:ffff:ffff:ffff:ffff:{i:04x}/128" for i in range(validate.MAX_CIDRS)
    ),
}


def cluster(data: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": "haproxy"},
            "spec": {"controller": "haproxy-ingress.kopf.dev/controller"},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "haproxy-ingress", "namespace": "haproxy-ingress"},
            "data": data,
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "i", "namespace": "ns"},
            "spec": {
                "ingressClassName": "haproxy",
                "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
            },
        },
    ]


def render(tmp_path: Path, data: dict[str, str]) -> tuple[int, Path]:
    source = tmp_path / "in.yaml"
    source.write_text(yaml.safe_dump_all(cluster(data)))
    out = tmp_path / "out"
    code = main(
        [
            "render",
            "-f",
            str(source),
            "--out",
            str(out),
            "--http-bind",
            "127.0.0.1:18080",
            "--https-bind",
            "127.0.0.1:18443",
        ]
    )
    return code, out / "haproxy.cfg"


def test_extreme_accepted_values_pass_haproxy_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, config = render(tmp_path, EXTREMES)
    # The Service does not exist: one BackendNotFound line, nothing about the
    # settings, and render's summary.
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[1].startswith("Ingresses: 1 served"), lines
    assert code == 1
    text = config.read_text()
    assert "inter 1us fall 100 rise 1" in text
    assert "retry-on all-retryable-errors 404\n" in text
    result = haproxy_check(config)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("key", "value", "line"),
    [
        ("health-check-interval", "0", "    default-server check inter 0"),
        ("health-check-interval", "25d", "    default-server check inter 25d"),
        ("health-check-fall", "0", "    default-server check fall 0"),
        ("health-check-rise", "0", "    default-server check rise 0"),
        ("health-check-error-limit", "0", "    default-server check observe layer4 error-limit 0"),
        ("timeout-server", "2147483648", "    timeout server 2147483648"),
        ("slowstart", "25d", "    default-server slowstart 25d"),
        ("retry-on", "none 404", "    retry-on none 404"),
        ("retry-on", " ".join(["404"] * 70), "    retry-on" + " 404" * 70),
    ],
)
def test_refused_values_are_refused_by_haproxy_too(
    key: str, value: str, line: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Refused by the validator, except 70 duplicates, which collapse to one word.
    collapses = key == "retry-on" and "none" not in value
    render(tmp_path, {key: value})
    err = capsys.readouterr().err
    assert (f"data.{key}:" in err) is not collapses
    config = tmp_path / "hand.cfg"
    config.write_text(
        "defaults\n    mode http\n    timeout client 1s\n    timeout connect 1s\n"
        "    timeout server 1s\nbackend b\n" + line + "\n    server s1 127.0.0.1:1\n"
    )
    result = haproxy_check(config)
    assert result.returncode == 1, result.stderr
    assert "[ALERT]" in result.stderr
