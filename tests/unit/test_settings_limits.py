"""ConfigMap and annotation settings: every value the validators accept loads in HAProxy.

The limits here were found with ``haproxy -c`` on 2.6.12 (see
tests/haproxy/test_setting_limits.py, which checks them on the binary).
"""

from __future__ import annotations

import pytest

from haproxy_ingress.registry import BY_KEY
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
        BY_KEY[key].parse(value, "f")


@pytest.mark.parametrize("key", GLOBAL_DURATION_KEYS)
@pytest.mark.parametrize("value", ["0", "0ms", "2147483648"])
def test_global_durations_refuse_zero_and_overflow(key: str, value: str) -> None:
    with pytest.raises(Invalid):
        BY_KEY[key].parse(value, "f")


@pytest.mark.parametrize("value", ["0", "0s", "000ms", ""])
def test_slowstart_zero_in_any_unit_means_off(value: str) -> None:
    assert BY_KEY["slowstart"].parse(value, "f") is None


@pytest.mark.parametrize(
    "key", ["health-check-fall", "health-check-rise", "health-check-error-limit"]
)
def test_check_counts_refuse_zero(key: str) -> None:
    # haproxy -c: "'fall' has to be > 0" (and rise, error-limit).
    with pytest.raises(Invalid):
        BY_KEY[key].parse("0", "f")


@pytest.mark.parametrize("value", ["none 404", "conn-failure none", "none 404 none"])
def test_retry_on_none_is_alone(value: str) -> None:
    with pytest.raises(Invalid, match="none"):
        BY_KEY["retry-on"].parse(value, "f")


def test_retry_on_duplicates_collapse_to_fit_one_line() -> None:
    assert BY_KEY["retry-on"].parse(" ".join(["404"] * 100), "f") == ("404",)
    assert BY_KEY["retry-on"].parse("all-retryable-errors 404 503", "f") == (
        "all-retryable-errors",
        "404",
        "503",
    )
    # HAProxy refuses "none none"; rendered once, it is just "none".
    assert BY_KEY["retry-on"].parse("none none", "f") == ("none",)
