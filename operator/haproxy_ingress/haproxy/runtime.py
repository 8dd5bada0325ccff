"""The runtime API's socket client: HAProxy's CLI sockets, the worker's and the master's.

What is sent is built and checked in :mod:`haproxy_ingress.haproxy.commands`;
this module moves the bytes. Connection facts, as observed on 2.6.12:

* After ``prompt`` the connection is interactive: each reply is the command's
  output followed by ``"\\n> "``. In non-interactive mode the master CLI answers
  but keeps the connection open until the client shuts down its side, so a
  one-shot command (:func:`oneshot`) is sent with a write-EOF.
* The connection stays attached to the worker that accepted it, also after a
  reload: the listening socket is handed over to the new worker (same inode),
  and the old, stopping worker keeps answering on already open connections
  until its CLI idle timeout. Changes sent there are lost. The client therefore
  asks ``show info`` before every :meth:`RuntimeClient.execute` and reconnects
  when the worker reports ``Stopping: 1`` or the connection was closed.
* A command whose line plus payload exceeds the 16 KB buffer makes HAProxy
  close the connection without any error message (hence the size check).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, NoReturn

from haproxy_ingress.haproxy import commands
from haproxy_ingress.haproxy.commands import (
    ANY_REPLY,
    PAYLOAD_ECHO,
    Command,
    RuntimeCommandError,
    WorkerInfo,
)

logger = logging.getLogger(__name__)

_PROMPT: Final = b"\n> "
# A `show stat` or `show servers state` of a big configuration is one reply;
# the reader must be able to buffer it whole.
_READ_LIMIT: Final = 64 * 1024 * 1024


class RuntimeConnectionError(Exception):
    """The runtime socket is unreachable, or the connection broke mid-exchange.

    When raised from :meth:`RuntimeClient.execute` after commands were sent,
    those commands may or may not have been executed: the caller must re-read
    the state rather than assume either.
    """


class _ConnectionLostError(Exception):
    """Raised by the idle probe only: nothing but a read-only probe was lost."""


class RuntimeClient:
    """One persistent, interactive connection to a worker's runtime socket.

    Commands are pipelined in batches (write a batch, then read its replies) so
    thousands of commands cost a few round trips; replies are read while the
    batch is still being flushed, so neither side can block on a full buffer.
    A lock serialises callers: a batch and its replies are never interleaved
    with another caller's.
    """

    def __init__(self, socket_path: Path, *, timeout: float = 10.0, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._socket_path = socket_path
        self._timeout = timeout
        self._batch_size = batch_size
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._worker_pid: int | None = None

    @property
    def socket_path(self) -> Path:
        return self._socket_path

    @property
    def worker_pid(self) -> int | None:
        """The worker the connection is attached to (None when disconnected)."""
        return self._worker_pid

    async def __aenter__(self) -> RuntimeClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        async with self._lock:
            if not self._connected():
                await self._open()

    async def close(self) -> None:
        async with self._lock:
            await self._drop_connection()

    async def execute(self, commands: Sequence[Command]) -> list[str]:
        """Run ``commands`` in order and return their replies (stripped).

        Every command is validated before anything is sent. On the first reply
        that fails its check, the rest of that batch's replies are still read
        (the connection stays usable) and RuntimeCommandError is raised; later
        batches are not sent. Commands after the failing one *in the same batch*
        were executed by HAProxy: a command that must only run if an earlier
        one succeeded belongs in a separate ``execute`` call.
        """
        encoded = [command.encode() for command in commands]
        if not commands:
            return []
        async with self._lock:
            return await self._execute_locked(commands, encoded)

    async def run(
        self,
        *words: str,
        ok: re.Pattern[str] | None = ANY_REPLY,
        payload: Sequence[str] | None = None,
    ) -> str:
        """Run one command; by default any reply is accepted and returned."""
        command = Command(tuple(words), None if payload is None else tuple(payload), ok)
        [reply] = await self.execute([command])
        return reply

    # --- maps ------------------------------------------------------------------

    async def replace_map(self, map_path: Path, entries: Sequence[tuple[str, str]]) -> int:
        """Atomically replace a loaded map's content; return the committed version.

        ``prepare map`` opens an invisible version, the entries go in with
        ``add map @V`` in payload chunks of ~8 KB (order is kept: ``map_beg``
        and friends pick the first match), and only once every chunk was
        accepted is ``commit map @V`` sent: traffic sees the old content until
        that single swap. A failure leaves the uncommitted version behind,
        which the next commit discards.
        """
        prepare = commands.prepare_map(map_path)
        commands.add_map("@0", map_path, entries)  # validate before anything is sent
        async with self._lock:
            [reply] = await self._execute_locked([prepare])
            version = commands.map_version(reply)
            adds = commands.add_map(version, map_path, entries)
            await self._execute_locked(adds)
            await self._execute_locked([commands.commit_map(version, map_path)])
        logger.debug(
            "map replaced path=%s version=%s entries=%d chunks=%d",
            map_path,
            version,
            len(entries),
            len(adds),
            extra={"map": str(map_path), "entries": len(entries)},
        )
        return int(version[1:])

    async def replace_acl(self, acl_path: Path, patterns: Sequence[str]) -> int:
        """Atomically replace a pattern file's content (prepare / add / commit), as maps.

        Traffic sees the old patterns until the commit; a refused pattern
        leaves an uncommitted version, which the next commit discards.
        """
        prepare = commands.prepare_acl(acl_path)
        async with self._lock:
            [reply] = await self._execute_locked([prepare])
            version = commands.map_version(reply)
            adds = commands.add_acl(version, acl_path, patterns)
            if adds:
                await self._execute_locked(adds)
            await self._execute_locked([commands.commit_acl(version, acl_path)])
        logger.debug(
            "acl replaced path=%s version=%s patterns=%d",
            acl_path,
            version,
            len(patterns),
            extra={"acl": str(acl_path), "entries": len(patterns)},
        )
        return int(version[1:])

    # --- TLS --------------------------------------------------------------------

    async def replace_cert(self, path: Path, pem: str) -> None:
        """Load or renew the certificate stored under ``path`` (cert + key PEM).

        ``new ssl cert`` (no-op if present) → ``set ssl cert`` with the PEM as
        payload → ``commit ssl cert``, each sent only after the previous one
        succeeded, so a failed ``set`` can never commit a leftover transaction.
        A leftover transaction of another file (from an earlier interrupted
        call) that swallowed our ``set`` is aborted and the ``set`` repeated
        once (see :func:`commands.foreign_cert_transaction`).
        """
        set_cert = commands.set_cert(path, pem)
        set_cert.encode()  # size check before anything is sent
        async with self._lock:
            [created] = await self._execute_locked([commands.new_cert(path)])
            try:
                try:
                    await self._execute_locked([set_cert])
                except RuntimeCommandError as error:
                    abort = commands.foreign_cert_transaction(error.reply, path)
                    if abort is None:
                        raise
                    logger.warning(
                        "aborting leftover ssl cert transaction path=%s (blocked %s)",
                        abort.words[-1],
                        path,
                        extra={"cert": abort.words[-1]},
                    )
                    await self._execute_locked([abort])
                    await self._execute_locked([set_cert])
                await self._execute_locked([commands.commit_cert(path)])
            except RuntimeCommandError:
                await self._execute_locked([commands.abort_cert(path)])
                if commands.created_empty(created):
                    # Do not leave an empty store behind that blocks nothing but
                    # would make a later crt-list insert fail with "is empty".
                    await self._execute_locked(
                        [Command(commands.del_cert(path).words, ok=ANY_REPLY)]
                    )
                raise
        logger.debug(
            "certificate loaded path=%s created=%s",
            path,
            commands.created_empty(created),
            extra={"cert": str(path)},
        )

    async def replace_ssl_file(
        self, kind: Literal["ca-file", "crl-file"], path: Path, pem: str
    ) -> None:
        """New content for a loaded CA or CRL file: ``set`` then ``commit ssl <kind>``.

        Every crt-list line naming it verifies with the new content from the
        commit on (checked on 2.6.12); a failed step aborts the transaction.
        """
        set_file = commands.set_ssl_file(kind, path, pem)
        set_file.encode()  # size check before anything is sent
        async with self._lock:
            try:
                await self._execute_locked([set_file])
                await self._execute_locked([commands.commit_ssl_file(kind, path)])
            except RuntimeCommandError:
                await self._execute_locked([commands.abort_ssl_file(kind, path)])
                raise
        logger.debug("%s replaced path=%s", kind, path, extra={"cert": str(path)})

    async def del_cert(self, path: Path) -> bool:
        """``del ssl cert``: True if deleted, False if HAProxy did not have it.

        Refused by HAProxy (RuntimeCommandError) while a crt-list still uses it.
        """
        [reply] = await self.execute([commands.del_cert(path)])
        return reply.startswith("Certificate")

    async def _crt_list_entries(self, crt_list: Path) -> list[commands.CrtListEntry]:
        [reply] = await self._execute_locked([commands.show_crt_list(crt_list)])
        return commands.parse_crt_list(reply)

    async def add_crt_list_entry(
        self,
        crt_list: Path,
        cert: Path,
        sni: str,
        alpn: str | None,
        extra: Sequence[str] = (),
    ) -> bool:
        """Serve the (already loaded) ``cert`` for ``sni`` on ``crt_list``'s binds.

        ``add ssl crt-list`` does not de-duplicate, so an identical entry is
        looked up first; returns False when it was already there.
        """
        command = commands.add_crt_list_entry(crt_list, cert, sni, alpn, extra)
        # `show ssl crt-list` reorders the options (verify before ca-file).
        options = sorted(commands.crt_list_options(alpn, extra).split())
        async with self._lock:
            for entry in await self._crt_list_entries(crt_list):
                if (
                    entry.cert == cert
                    and sorted(entry.options.split()) == options
                    and entry.sni_filters == (sni,)
                ):
                    return False
            await self._execute_locked([command])
        logger.debug(
            "crt-list entry added list=%s cert=%s sni=%s",
            crt_list,
            cert,
            sni,
            extra={"cert": str(cert), "sni": sni},
        )
        return True

    async def del_crt_list_entries(self, crt_list: Path, cert: Path) -> int:
        """Remove every entry of ``cert`` from ``crt_list``; return how many.

        With several entries for one certificate HAProxy wants ``cert:LINE``;
        line numbers stay stable across deletions, so one batch deletes all.
        """
        async with self._lock:
            lines = [e.line for e in await self._crt_list_entries(crt_list) if e.cert == cert]
            await self._execute_locked(
                [commands.del_crt_list_entry(crt_list, cert, n) for n in lines]
            )
        if lines:
            logger.debug(
                "crt-list entries deleted list=%s cert=%s count=%d",
                crt_list,
                cert,
                len(lines),
                extra={"cert": str(cert)},
            )
        return len(lines)

    # --- connection handling ---------------------------------------------------

    def _connected(self) -> bool:
        return (
            self._reader is not None
            and self._writer is not None
            and not self._reader.at_eof()
            and not self._writer.is_closing()
        )

    async def _execute_locked(
        self, commands: Sequence[Command], encoded: Sequence[bytes] | None = None
    ) -> list[str]:
        if not commands:
            return []
        data = [command.encode() for command in commands] if encoded is None else encoded
        first_sent = await self._ensure_fresh(b"".join(data[: self._batch_size]))
        replies: list[str] = []
        for start in range(0, len(commands), self._batch_size):
            batch = commands[start : start + self._batch_size]
            failure = None
            try:
                writer = self._require_writer()
                if start or not first_sent:
                    writer.write(b"".join(data[start : start + self._batch_size]))
                # Read before draining: replies must flow while a large batch is
                # still being written, or both sides could wait on full buffers.
                for offset, command in enumerate(batch):
                    reply = await self._read_reply(command)
                    replies.append(reply)
                    if failure is None and not command.accepts(reply):
                        failure = RuntimeCommandError(command, reply, index=start + offset)
                await writer.drain()
            except (
                OSError,
                EOFError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                TimeoutError,
            ) as error:
                await self._drop_connection()
                raise RuntimeConnectionError(
                    f"runtime connection lost after sending {start + len(batch)} of"
                    f" {len(commands)} commands ({error!r}); the last batch may have been"
                    " executed"
                ) from error
            except BaseException:
                # Cancelled mid-batch: the unread replies would be taken for the
                # next caller's, so this connection cannot be reused.
                await self._drop_connection()
                raise
            if failure is not None:
                logger.warning(
                    "runtime command failed command=%r reply=%r",
                    failure.command.describe(),
                    failure.reply,
                    extra={"command": failure.command.describe(), "reply": failure.reply},
                )
                raise failure
        return replies

    def _require_writer(self) -> asyncio.StreamWriter:
        if self._writer is None:
            raise RuntimeConnectionError("not connected")
        return self._writer

    async def _read_reply(self, command: Command | None) -> str:
        if self._reader is None:
            raise RuntimeConnectionError("not connected")
        async with asyncio.timeout(self._timeout):
            raw = await self._reader.readuntil(_PROMPT)
        text = raw[: -len(_PROMPT)].decode("utf-8", errors="replace")
        if command is not None and command.payload is not None:
            echo = PAYLOAD_ECHO * (1 + len(command.payload))
            if not text.startswith(echo):
                raise EOFError(f"payload echo missing in reply to {command.describe()!r}")
            text = text[len(echo) :]
        return text.strip()

    async def _ensure_fresh(self, ahead: bytes) -> bool:
        """Make sure the next batch reaches a live, current worker; True if ``ahead`` went along.

        A read-only ``show info`` goes first: if HAProxy closed the idle
        connection, only that probe is lost and reconnecting is safe; if the
        worker is stopping (a reload happened), changes sent there would die
        with it. On a connection in use, the first batch (``ahead``) is
        written right behind the probe, in one write: a round trip fewer
        per apply, each a wake-up that a busy machine can delay. A connection
        HAProxy closed while idle reads nothing, so ``ahead`` did not run; on
        a stopping worker it ran but dies with it. Either way the batch is
        sent again on a new connection (False).
        """
        if self._connected():
            try:
                info = await self._probe(ahead)
            except _ConnectionLostError:
                logger.debug("runtime connection closed while idle, reconnecting")
            else:
                if not info.stopping:
                    return True
                logger.debug(
                    "runtime connection is on a stopping worker pid=%d, reconnecting",
                    info.pid,
                    extra={"worker_pid": info.pid},
                )
        await self._drop_connection()
        await self._open()
        return False

    async def _probe(self, ahead: bytes = b"") -> WorkerInfo:
        """``show info``, with ``ahead`` written behind it.

        Raises _ConnectionLostError only when nothing was read back: HAProxy
        read none of it. Anything else, once ``ahead`` was sent, may have run
        it: RuntimeConnectionError, as for a batch lost midway.
        """
        try:
            self._require_writer().write(b"show info\n" + ahead)
            text = await self._read_reply(None)
        except asyncio.IncompleteReadError as error:
            if ahead and error.partial:
                await self._lost_with(ahead, error)
            raise _ConnectionLostError from error
        except (OSError, EOFError) as error:
            raise _ConnectionLostError from error
        except TimeoutError as error:
            if ahead:
                await self._lost_with(ahead, error)
            raise _ConnectionLostError from error
        info = commands.parse_show_info(text)
        if info is None:
            unexpected = EOFError(f"unexpected show info reply {text[:80]!r}")
            if ahead:
                await self._lost_with(ahead, unexpected)
            raise _ConnectionLostError(str(unexpected))
        return info

    async def _lost_with(self, ahead: bytes, error: BaseException) -> NoReturn:
        await self._drop_connection()
        sent = ahead.count(b"\n")
        raise RuntimeConnectionError(
            f"runtime connection lost after sending {sent} commands behind a probe"
            f" ({error!r}); they may have been executed"
        ) from error

    async def _open(self) -> None:
        """Connect, switch to interactive mode, and insist on a non-stopping worker.

        Right after a reload the old worker may still accept on the shared
        listening socket until it has processed its stop signal; such a
        connection is dropped and retried until the deadline.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while True:
            try:
                async with asyncio.timeout(self._timeout):
                    reader, writer = await asyncio.open_unix_connection(
                        self._socket_path, limit=_READ_LIMIT
                    )
                self._reader, self._writer = reader, writer
                writer.write(b"prompt\n")
                await self._read_reply(None)
                info = await self._probe()
            except (
                OSError,
                EOFError,
                asyncio.IncompleteReadError,
                TimeoutError,
                _ConnectionLostError,
            ) as error:
                await self._drop_connection()
                raise RuntimeConnectionError(
                    f"cannot talk to the runtime socket {self._socket_path}: {error!r}"
                ) from error
            if not info.stopping:
                self._worker_pid = info.pid
                logger.debug(
                    "runtime connection opened socket=%s worker_pid=%d",
                    self._socket_path,
                    info.pid,
                    extra={"socket": str(self._socket_path), "worker_pid": info.pid},
                )
                return
            await self._drop_connection()
            if loop.time() >= deadline:
                raise RuntimeConnectionError(
                    f"only a stopping worker answers on {self._socket_path}"
                )
            await asyncio.sleep(0.05)

    async def _drop_connection(self) -> None:
        writer = self._writer
        self._reader = self._writer = None
        self._worker_pid = None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()


async def oneshot(socket_path: Path, command: Command, seconds: float) -> str:
    """One command on a fresh, non-interactive connection; the reply read to EOF.

    The master CLI's way (and fine for a read-only command on a worker's
    socket): the write side is shut down right away, since the master CLI
    otherwise keeps a non-interactive connection open after answering. The
    reply is returned as is; raises OSError or TimeoutError when unreachable.
    """
    data = command.encode()
    async with asyncio.timeout(seconds):
        reader, writer = await asyncio.open_unix_connection(socket_path, limit=_READ_LIMIT)
        try:
            writer.write(data)
            writer.write_eof()
            reply = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return reply.decode("utf-8", errors="replace")
