"""Every fixture cluster renders a configuration that a real ``haproxy -c`` accepts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from haproxy_ingress.cli import main
from tests.unit.test_render_golden import CLUSTERS, cluster_flags, cluster_names

pytestmark = pytest.mark.haproxy
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def haproxy_check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("name", cluster_names())
def test_fixture_cluster_passes_haproxy_check(name: str, tmp_path: Path) -> None:
    code = main(
        [
            "render",
            "-f",
            str(CLUSTERS / name),
            "--out",
            str(tmp_path),
            "--http-bind",
            "127.0.0.1:8080",
            "--https-bind",
            "127.0.0.1:8443",
            *cluster_flags(CLUSTERS / name),
        ]
    )
    expected_problems = (CLUSTERS / name / "expected" / "problems.txt").read_text()
    assert code == (1 if expected_problems else 0)
    result = haproxy_check(tmp_path / "haproxy.cfg")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ALERT]" not in result.stderr
