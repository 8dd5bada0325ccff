"""The log level of each line HAProxy writes on its stderr.

HAProxy prints its own life cycle as ``[WARNING]``: on every reload each old
proxy says "Proxy … stopped" (the same line also reaches the traffic log
stream, raw), the master reports "Former worker … exited with code 0", and a
cold start warns that the server-state file does not exist yet (it is written
only for a reload). None of that is a problem, so it is DEBUG here; routine
notices are DEBUG too (the controller logs one INFO line per reload itself).
What remains is news: servers going down or up, a backend left without any
server, and alerts.
"""

from __future__ import annotations

import logging
import re
from typing import Final

_ROUTINE: Final = re.compile(
    r"Proxy \S+ stopped \(cumulated conns"
    r"|Stopping (?:frontend|backend|proxy) "
    r"|(?:Former|Current) worker \(\d+\) exited with code 0\b"
    r"|Exiting Master process|All workers exited\. Exiting\.\.\. \(0\)"
    r"|server state file"
    r"|haproxy version is |path to executable is "
    r"|New worker \(\d+\) forked|Loading success\.|Reloading HAProxy"
)
_NO_SERVER: Final = re.compile(r"has no server available!")
_SERVER_UP: Final = re.compile(r"Server \S+ is UP\b")


def level(line: str, *, transition: bool = False) -> int:
    """The level to log ``line`` at.

    ``transition``: HAProxy is starting or reloading, and any alert it prints
    then is quoted in the one error line that reports the failed start or
    reload, so it is not logged on its own as well.
    """
    if _ROUTINE.search(line):
        return logging.DEBUG
    if _NO_SERVER.search(line):
        return logging.WARNING  # the users' pods are gone or failing, not us
    if _SERVER_UP.search(line):
        return logging.INFO
    if line.startswith("[ALERT]"):
        return logging.DEBUG if transition else logging.ERROR
    if line.startswith("[WARNING]"):
        return logging.WARNING
    if line.startswith("[NOTICE]"):
        return logging.INFO
    return logging.INFO
