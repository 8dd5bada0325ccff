"""Which replica writes Ingress status: the holder of a Lease.

Every replica serves traffic; only one writes ``status.loadBalancer``, so
two replicas with different addresses never flap it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from haproxy_ingress.status import API_ERRORS

logger = logging.getLogger(__name__)

# kubernetes_asyncio's Lease lock logs every refused write with a traceback
# (``logger.exception``), including 409 Conflict: another replica renewed or
# took the Lease first, which is how an election normally goes.
_LEASE_LOCK_LOGGER = "kubernetes_asyncio.leaderelection.resourcelock.leaselock"


class _LeaseWriteRefusals(logging.Filter):
    """Conflicts dropped; any other refusal kept as one line, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, ApiException):
            return True
        if error.status == 409:
            return False
        record.msg = f"{record.getMessage()}: {error.status} {error.reason}"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        return True


def quiet_lease_conflicts() -> None:
    """Install the filter on the library's logger, once per process."""
    lock_logger = logging.getLogger(_LEASE_LOCK_LOGGER)
    if not any(isinstance(f, _LeaseWriteRefusals) for f in lock_logger.filters):
        lock_logger.addFilter(_LeaseWriteRefusals())


class StatusLeader:
    """Runs the Lease election for ever; :attr:`leading` says whether we hold it."""

    def __init__(
        self,
        api: client.ApiClient,
        lease: str,
        namespace: str,
        identity: str,
        on_started: Callable[[], None],
    ) -> None:
        self._api = api
        self._lease = lease
        self._namespace = namespace
        self._identity = identity
        self._on_started = on_started
        self.leading = False

    async def run(self) -> None:
        quiet_lease_conflicts()

        async def started() -> None:
            logger.info("leading: this replica writes Ingress status")
            self.leading = True
            self._on_started()

        async def stopped() -> None:
            logger.info("no longer leading")
            self.leading = False

        while True:
            lock = LeaseLock(self._lease, self._namespace, self._identity, self._api)
            election = leaderelection.LeaderElection(
                electionconfig.Config(
                    lock,
                    lease_duration=15,
                    renew_deadline=10,
                    retry_period=2,
                    onstarted_leading=started,
                    onstopped_leading=stopped,
                )
            )
            try:
                await election.run()  # returns when leadership is lost
            except API_ERRORS as error:
                logger.warning("leader election interrupted (%r); retrying", error)
            self.leading = False
            await asyncio.sleep(2.0)
