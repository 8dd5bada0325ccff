"""Log levels the controller sets on libraries' loggers.

Routine work at INFO or DEBUG, users' mistakes at WARNING, our own failures at
ERROR. Two libraries are louder than that: Kopf logs every handler call of
every watch event at INFO, and kubernetes_asyncio logs each API response body
at DEBUG (a Secret's data included), which ``--verbose`` would turn on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

API_BODIES_ENV = "HAPROXY_INGRESS_LOG_API_BODIES"
API_BODY_LOGGER = "kubernetes_asyncio.client.rest"


def api_bodies_wanted(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get(API_BODIES_ENV, "").strip().lower() in {"1", "true", "yes"}


def quiet_defaults(*, verbose: bool | None, api_bodies: bool) -> None:
    """Apply the levels; ``verbose`` None leaves Kopf's own choice (``kopf run``)."""
    if verbose is False:
        # One line per watch event at INFO is noise, not news.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if not api_bodies:
        logging.getLogger(API_BODY_LOGGER).setLevel(logging.INFO)
