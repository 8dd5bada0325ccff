"""The status Lease: a lost race for it is routine, not a traceback in the log."""

from __future__ import annotations

import logging

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from haproxy_ingress.leader import quiet_lease_conflicts

LOCK_LOGGER = "kubernetes_asyncio.leaderelection.resourcelock.leaselock"


def refused(status: int, reason: str) -> None:
    """What the library does when a Lease write is refused."""
    try:
        raise ApiException(status=status, reason=reason)
    except ApiException:
        logging.getLogger(LOCK_LOGGER).exception("Failed to update lock")


def test_a_conflict_is_dropped_and_other_refusals_are_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    quiet_lease_conflicts()
    quiet_lease_conflicts()  # once per process, however often it is called
    assert len(logging.getLogger(LOCK_LOGGER).filters) == 1
    with caplog.at_level(logging.DEBUG, logger=LOCK_LOGGER):
        refused(409, "Conflict")
        refused(403, "Forbidden")
    (record,) = caplog.records
    assert record.getMessage() == "Failed to update lock: 403 Forbidden"
    assert record.exc_info is None
    assert "Traceback" not in caplog.text
