"""ConfigMap and annotation settings: every value the validators accept loads in HAProxy.

The limits here were found with ``haproxy -c`` on 2.6.12 (see
tests/haproxy/test_setting_limits.py, which checks them on the binary).
"""

from __future__ import annotations

import pytest

from haproxy_ingress.model import BackendSettings, GlobalSettings
from haproxy_ingress.settings import BACKEND_KEYS, GLOBAL_KEYS
from haproxy_ingress.validate import Invalid

DURATION_KEYS = [
    "timeout-connect",
    "timeout-server",
    "health-check-interval",
]
GLOBAL_DURATION_KEYS = [
    "timeout-client",
    "timeout-http-request",
    "timeout-http-keep-alive",
    "timeout-queue",
    "hard-stop-after",
]


@pytest.mark.parametrize("key", DURATION_KEYS)
@pytest.mark.parametrize("value", ["0", "0s", "0us", "2147483648", "25d"])
def test_backend_durations_refuse_zero_and_overflow(key: str, value: str) -> None:
    with pytest.raises(Invalid):
        BACKEND_KEYS[key](BackendSettings(), value, "f")


@pytest.mark.parametrize("key", GLOBAL_DURATION_KEYS)
@pytest.mark.parametrize("value", ["0", "0ms", "2147483648"])
def test_global_durations_refuse_zero_and_overflow(key: str, value: str) -> None:
    with pytest.raises(Invalid):
        GLOBAL_KEYS[key](GlobalSettings(), value, "f")


@pytest.mark.parametrize("value", ["0", "0s", "000ms", ""])
def test_slowstart_zero_in_any_unit_means_off(value: str) -> None:
    assert BACKEND_KEYS["slowstart"](BackendSettings(), value, "f").slowstart is None


@pytest.mark.parametrize(
    "key", ["health-check-fall", "health-check-rise", "health-check-error-limit"]
)
def test_check_counts_refuse_zero(key: str) -> None:
    # haproxy -c: "'fall' has to be > 0" (and rise, error-limit).
    with pytest.raises(Invalid):
        BACKEND_KEYS[key](BackendSettings(), "0", "f")


@pytest.mark.parametrize("value", ["none 404", "conn-failure none", "none 404 none"])
def test_retry_on_none_is_alone(value: str) -> None:
    with pytest.raises(Invalid, match="none"):
        BACKEND_KEYS["retry-on"](BackendSettings(), value, "f")


def test_retry_on_duplicates_collapse_to_fit_one_line() -> None:
    settings = BACKEND_KEYS["retry-on"](BackendSettings(), " ".join(["404"] * 100), "f")
    assert settings.retry_on == ("404",)
    settings = BACKEND_KEYS["retry-on"](BackendSettings(), "all-retryable-errors 404 503", "f")
    assert settings.retry_on == ("all-retryable-errors", "404", "503")
    # HAProxy refuses "none none"; rendered once, it is just "none".
    assert BACKEND_KEYS["retry-on"](BackendSettings(), "none none", "f").retry_on == ("none",)
