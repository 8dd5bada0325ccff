"""Where the files of one HAProxy instance live.

Everything HAProxy reads or writes for this controller sits under one directory
that the controller owns, so the rendered configuration can point at absolute
paths and an offline render (``haproxy-ingress render --out DIR``) is a complete,
checkable instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HAProxyPaths:
    """The file layout of one HAProxy instance under ``base``."""

    base: Path

    @property
    def config(self) -> Path:
        return self.base / "haproxy.cfg"

    @property
    def runtime_socket(self) -> Path:
        """The stats socket (runtime API, level admin) of the current worker."""
        return self.base / "run" / "haproxy.sock"

    @property
    def master_socket(self) -> Path:
        """The master CLI socket (master-worker mode)."""
        return self.base / "run" / "master.sock"

    @property
    def https_socket(self) -> Path:
        """fe_http's TLS listener behind fe_https (--enable-ssl-passthrough): HAProxy's own."""
        return self.base / "run" / "https.sock"

    @property
    def pid_file(self) -> Path:
        return self.base / "run" / "haproxy.pid"

    @property
    def server_state(self) -> Path:
        """``show servers state`` saved just before a reload and loaded by the new worker."""
        return self.base / "run" / "server-state"

    @property
    def maps(self) -> Path:
        return self.base / "maps"

    @property
    def certs(self) -> Path:
        return self.base / "certs"

    @property
    def crt_list(self) -> Path:
        return self.base / "certs" / "crt-list.txt"

    @property
    def errors(self) -> Path:
        return self.base / "errors"

    def ensure(self) -> None:
        """Create the directories (private: they hold keys and admin sockets)."""
        for directory in (self.base, self.base / "run", self.maps, self.certs, self.errors):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
