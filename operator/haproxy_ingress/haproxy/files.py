"""Crash-safe file replacement for everything HAProxy reads at (re)load time.

HAProxy re-reads haproxy.cfg, map files, PEM files and the crt-list on every
reload, and a reload can happen at any moment after a write. A reader must
therefore see either the old bytes or the new bytes, never a torn file, and a
full or read-only disk must leave the previous (working) file in place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = True) -> bool:
    """Replace ``path`` with ``data`` atomically; return False if nothing changed.

    Identical content is not rewritten, so an unchanged render never bumps
    mtimes or costs an fsync; only a wrong permission is corrected in place
    (a PEM must never stay world-readable just because its bytes match).

    The temporary file lives in the same directory so ``os.replace`` is a
    rename within one filesystem (atomic), it is created private and chmod-ed
    before any byte is written (a key is never readable by others, even
    briefly), and it is fsync-ed before the rename so a crash cannot leave a
    renamed-but-empty file (``durable=False`` skips the fsyncs, for files no
    HAProxy reads yet, as the offline render writes). Any OSError (ENOSPC,
    EROFS, ...) propagates with the old file untouched and the temporary file
    removed.
    """
    try:
        # A file of another size differs: not read (haproxy.cfg is ~10 MB at 10k Ingresses).
        current = path.read_bytes() if path.stat().st_size == len(data) else None
    except FileNotFoundError:
        current = None
    if current == data:
        if path.stat().st_mode & 0o7777 != mode:
            os.chmod(path, mode)
        return False

    _replace(path, data, mode=mode, durable=durable)
    return True


def atomic_write_chunks(
    path: Path, chunks: Iterable[bytes], *, mode: int = 0o644, durable: bool = True
) -> bool:
    """:func:`atomic_write` of the chunks' concatenation, never held whole in memory.

    For files as big as the cluster (haproxy.cfg, ~11 MB at 10k Ingresses,
    and the applied state, ~14 MB: joined, encoded and compared with the old
    file they were tens of MiB of the controller's peak). The chunks go to
    the temporary file as they come and are compared on the way with the
    current file, read alongside; if the two turn out the same, the temporary
    file is dropped (mtime kept, no fsync, as :func:`atomic_write`) and False
    returned. An exception from ``chunks`` leaves the old file as it was.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    size = 0
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(os.close, fd)
            try:
                current: BinaryIO | None = stack.enter_context(path.open("rb"))
            except FileNotFoundError:
                current = None
            os.fchmod(fd, mode)
            for chunk in chunks:
                # Read along only while everything so far matched.
                if current is not None and current.read(len(chunk)) != chunk:
                    current = None
                _write_all(fd, chunk)
                size += len(chunk)
            unchanged = current is not None and current.read(1) == b""
            if durable and not unchanged:
                os.fsync(fd)
        if unchanged:
            os.unlink(tmp_name)
            if path.stat().st_mode & 0o7777 != mode:
                os.chmod(path, mode)
            return False
        _install(tmp_name, path, durable=durable, size=size)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return True


def _replace(path: Path, data: bytes, *, mode: int, durable: bool) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, mode)
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        _install(tmp_name, path, durable=durable, size=len(data))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _install(tmp_name: str, path: Path, *, durable: bool, size: int) -> None:
    """The written temporary file becomes ``path`` (its directory synced when durable)."""
    os.replace(tmp_name, path)
    if durable:
        _fsync_directory(path.parent)
    logger.debug("file written path=%s bytes=%d", path, size, extra={"path": str(path)})


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def remove_if_exists(path: Path) -> bool:
    """Delete ``path``; return False if it was already gone (idempotent cleanup)."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    _fsync_directory(path.parent)
    return True


def _fsync_directory(directory: Path) -> None:
    # The rename/unlink is only durable once the directory entry is on disk.
    # Some filesystems refuse fsync on a directory; durability is then the
    # filesystem's business and not worth failing the write for.
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
