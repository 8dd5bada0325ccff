"""The pure core imports without the operator layer (Kopf, the Kubernetes client, aiohttp)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

OPERATOR = Path(__file__).resolve().parents[2] / "operator"
PURE = (
    "haproxy_ingress",
    "haproxy_ingress.translate",
    "haproxy_ingress.plan",
    "haproxy_ingress.state",
    "haproxy_ingress.haproxy.config",
    "haproxy_ingress.haproxy.commands",
)
OPERATOR_LAYER = ("kopf", "kubernetes_asyncio", "aiohttp")


def run_fresh(code: str) -> str:
    """``code``'s output in a fresh interpreter with the operator's source (no imports yet)."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(OPERATOR)},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_without_the_operator_layer(module: str) -> None:
    probe = (
        f"import sys, {module}; print(sorted(m for m in {OPERATOR_LAYER!r} if m in sys.modules))"
    )
    output = run_fresh(probe)
    assert output.strip() == "[]", output
