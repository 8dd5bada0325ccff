"""Why HAProxy could not bind: one line naming the address and, if known, who holds it.

HAProxy 2.6 says ``[ALERT] (pid) : Binding [haproxy.cfg:12] for frontend http:
cannot bind socket (Address already in use) for [127.0.0.1:8080]``. The holder
is found as ``ss -ltnp`` does: the listening socket's inode in /proc/net/tcp(6),
then the process with an fd on ``socket:[inode]``. Processes of other users are
not readable without privileges; the line then says so instead of guessing.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_BIND_ALERT: Final = re.compile(
    r"for (?:frontend|proxy|listener) (?P<proxy>\S+): cannot bind socket "
    r"\((?P<reason>[^)]*)\) for \[(?P<address>[^\]]+)\]"
)
_LISTEN: Final = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


@dataclass(frozen=True)
class BindFailure:
    proxy: str  # HAProxy's frontend name
    address: str  # as HAProxy printed it: host:port
    reason: str  # strerror, e.g. "Address already in use"


def bind_failures(output: str) -> list[BindFailure]:
    """Every "cannot bind socket" alert in HAProxy's output."""
    return [
        BindFailure(m["proxy"], m["address"], m["reason"]) for m in _BIND_ALERT.finditer(output)
    ]


def _split(address: str) -> tuple[str, int] | None:
    host, _, port = address.rpartition(":")
    if not port.isascii() or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _listeners(port: int, proc: Path) -> set[int]:
    """Inodes of TCP sockets listening on ``port`` (any address)."""
    inodes: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            local_port = int(fields[1].rpartition(":")[2], 16)
            if local_port == port:
                inodes.add(int(fields[9]))
    return inodes


def _owners(inodes: set[int], proc: Path) -> list[str]:
    targets = {f"socket:[{inode}]" for inode in inodes}
    owners: list[str] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue  # gone, or another user's (no privileges)
        for fd in fds:
            try:
                if os.readlink(fd) in targets:
                    break
            except OSError:
                continue
        else:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
            command = cmdline.decode("utf-8", errors="replace")[:120]
        except OSError:
            command = "?"
        owners.append(f"pid {entry.name} ({command})")
    return owners


def holder(address: str, *, proc: Path = Path("/proc")) -> str | None:
    """Who listens on the port of ``address``, as "pid N (command)", or None."""
    parsed = _split(address)
    if parsed is None:
        return None
    inodes = _listeners(parsed[1], proc)
    if not inodes:
        return None
    owners = _owners(inodes, proc)
    if not owners:
        return "a process this user cannot see"
    return ", ".join(sorted(owners))


def describe(failure: BindFailure, *, proc: Path = Path("/proc")) -> str:
    """One line: which address, why, and which process holds it if known."""
    text = (
        f"HAProxy cannot listen on {failure.address} (frontend {failure.proxy}): {failure.reason}"
    )
    if "in use" in failure.reason:
        owner = holder(failure.address, proc=proc)
        text += f"; held by {owner}" if owner else "; no listener found any more (retrying)"
    elif "denied" in failure.reason.lower():
        parsed = _split(failure.address)
        if parsed is not None and parsed[1] < 1024:
            text += "; ports below 1024 need root or CAP_NET_BIND_SERVICE"
    else:
        parsed = _split(failure.address)
        host = parsed[0] if parsed else ""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            text += "; is the address configured on this host?"
    return text
