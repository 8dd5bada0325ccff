"""Async client for HAProxy's runtime API (the worker's UNIX stats socket).

Everything the controller changes without a reload goes through here: server
slots (address, port, state, weight), map transactions and TLS certificates.
The behaviour this module relies on was checked against HAProxy 2.6.12 (see the
reply patterns next to each builder); where 2.6.12 is surprising, the comment
says so.

Wire format, as observed on 2.6.12:

* After ``prompt`` the connection is interactive: each reply is the command's
  output followed by ``"\\n> "``; non-empty outputs end with their own newline.
* A command line ending in ``<<`` starts a payload; every following line up to
  an empty line belongs to the payload and is taken literally (``;``, ``#``,
  ``\\`` and ``<<`` inside a payload line are plain characters). While reading
  the payload HAProxy echoes one ``"+ "`` for the command line and one for each
  payload line, so the reply to a payload command starts with
  ``"+ " * (1 + len(payload))``.
* On a command line, ``;`` separates commands, ``\\`` escapes, whitespace splits
  words and a line that merely *ends* with ``<<`` (``v2<<``) switches to payload
  mode and swallows the following commands. Hence the strict word check.
* A command whose line plus payload exceeds the 16 KB buffer (about 16.3 KB
  observed) makes HAProxy close the connection without any error message.
* The connection stays attached to the worker that accepted it, also after a
  reload: the listening socket is handed over to the new worker (same inode),
  and the old, stopping worker keeps answering on already open connections
  until its CLI idle timeout. Changes sent there are lost. The client therefore
  asks ``show info`` before every :meth:`RuntimeClient.execute` and reconnects
  when the worker reports ``Stopping: 1`` or the connection was closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import ipaddress
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

logger = logging.getLogger(__name__)

#: Upper bound for one encoded command, command line and payload included.
#: HAProxy's CLI reads a whole command (payload too) into one 16 KB buffer and
#: drops the connection silently beyond ~16.3 KB; stay well below.
MAX_COMMAND_BYTES: Final = 15_000

#: Payload bytes per ``add map`` command when a map is replaced in chunks.
MAP_CHUNK_BYTES: Final = 8_000

#: Accepts any reply: for read-only commands whose output the caller parses.
ANY_REPLY: Final = re.compile(r".*", re.DOTALL)

_PROMPT: Final = b"\n> "
_PAYLOAD_ECHO: Final = "+ "
# A `show stat` or `show servers state` of a big configuration is one reply;
# the reader must be able to buffer it whole.
_READ_LIMIT: Final = 64 * 1024 * 1024
# Words may contain printable ASCII except the CLI's separators and escapes.
_WORD_RE: Final = re.compile(r"[!-~]+")
_WORD_FORBIDDEN: Final = frozenset(";\\#")
_PAYLOAD_LINE_RE: Final = re.compile(r"[ -~]+")
# Proxy and server names as HAProxy accepts them in the configuration.
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.:-]+")
_MAP_KEY_RE: Final = re.compile(r"[!-~]+")
_MAP_VALUE_RE: Final = re.compile(r"[!-~](?:[ -~]*[!-~])?")
_SNI_RE: Final = re.compile(
    r"(?:\*\.)?[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
_ALPN_RE: Final = re.compile(r"[A-Za-z0-9._/-]+(?:,[A-Za-z0-9._/-]+)*")
_NEW_MAP_VERSION_RE: Final = re.compile(r"New version created: (\d+)")
_CERT_TRANSACTION_RE: Final = re.compile(r"Transaction (?:created|updated) for certificate (\S+)!")
_CRT_LIST_LINE_RE: Final = re.compile(
    r"(?P<cert>\S+):(?P<line>\d+)(?: \[(?P<options>[^\]]*)\])?(?P<filters>(?: \S+)*)"
)


class UnsafeArgumentError(ValueError):
    """An argument that could smuggle a second command or a payload, or not fit."""


class RuntimeConnectionError(Exception):
    """The runtime socket is unreachable, or the connection broke mid-exchange.

    When raised from :meth:`RuntimeClient.execute` after commands were sent,
    those commands may or may not have been executed: the caller must re-read
    the state rather than assume either.
    """


class RuntimeCommandError(Exception):
    """HAProxy answered a command with something other than the expected reply."""

    def __init__(self, command: Command, reply: str, *, index: int = 0) -> None:
        # The payload may hold a private key: only the command line is shown.
        super().__init__(f"{command.describe()!r} (#{index}) got {reply!r}")
        self.command = command
        self.reply = reply
        self.index = index


@dataclass(frozen=True)
class Command:
    """One runtime API command and the reply that counts as success."""

    words: tuple[str, ...]
    # repr=False: payloads carry private keys, and dataclass reprs end up in logs.
    payload: tuple[str, ...] | None = field(default=None, repr=False)
    ok: re.Pattern[str] | None = None

    def encode(self) -> bytes:
        """The exact bytes sent to HAProxy, or UnsafeArgumentError."""
        if not self.words:
            raise UnsafeArgumentError("a command needs at least one word")
        for word in self.words:
            _check_word(word)
        line = " ".join(self.words)
        if self.payload is None:
            data = f"{line}\n".encode("ascii")
        else:
            if not self.payload:
                raise UnsafeArgumentError(f"{line!r}: empty payload")
            for payload_line in self.payload:
                _check_payload_line(payload_line)
            data = (line + " <<\n" + "\n".join(self.payload) + "\n\n").encode("ascii")
        if len(data) >= MAX_COMMAND_BYTES:
            raise UnsafeArgumentError(
                f"{line!r}: {len(data)} bytes with payload, HAProxy drops commands near 16 KB"
                f" (limit here {MAX_COMMAND_BYTES})"
            )
        return data

    def describe(self) -> str:
        """The command for logs and errors, without the payload."""
        text = " ".join(self.words)
        if self.payload is not None:
            text += f" << ({len(self.payload)} lines)"
        return text

    def accepts(self, reply: str) -> bool:
        if self.ok is None:
            return reply == ""
        return self.ok.fullmatch(reply) is not None


def _check_word(word: str) -> None:
    if not _WORD_RE.fullmatch(word):
        raise UnsafeArgumentError(
            f"{word!r}: words must be non-empty printable ASCII without whitespace"
        )
    if _WORD_FORBIDDEN.intersection(word):
        raise UnsafeArgumentError(f"{word!r}: ';', '\\\\' and '#' are CLI syntax")
    if "<<" in word:
        # Not only a leading '<<': any line ending in '<<' switches to payload mode.
        raise UnsafeArgumentError(f"{word!r}: '<<' starts a payload")


def _check_payload_line(line: str) -> None:
    if not line:
        raise UnsafeArgumentError("an empty payload line would end the payload early")
    if not _PAYLOAD_LINE_RE.fullmatch(line):
        raise UnsafeArgumentError(f"{line[:60]!r}: payload lines must be printable ASCII")


def _check_name(kind: str, name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise UnsafeArgumentError(f"{kind} name {name!r} is not a valid HAProxy name")
    return name


def _path_word(path: Path) -> str:
    if not path.is_absolute():
        # HAProxy resolves relative names against its own cwd, not ours.
        raise UnsafeArgumentError(f"{path}: runtime API paths must be absolute")
    word = str(path)
    _check_word(word)
    return word


def _server_ref(backend: str, server: str) -> str:
    return f"{_check_name('backend', backend)}/{_check_name('server', server)}"


# --- builders for server slots ---------------------------------------------------


def set_server_addr(
    backend: str,
    server: str,
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
    port: int,
) -> Command:
    """``set server BE/SRV addr A port P``.

    2.6.12 replies, on one line, ``IP changed from '<old>' to '<new>'`` or ``no
    need to change the addr``, then ``, port changed from '<old>' to '<new>'``
    or ``, no need to change the port``, then `` by 'stats socket command'``.
    The new address is echoed as typed, so it is matched exactly. The port is
    range-checked here because 2.6.12 silently wraps ``99999`` to 34463 and
    accepts 0; trailing garbage words are silently ignored too.
    """
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id is not None:
        raise UnsafeArgumentError(f"{addr}: scoped IPv6 addresses are not supported")
    if not 1 <= port <= 65535:
        raise UnsafeArgumentError(f"port {port} out of range 1-65535")
    text = str(addr)
    ok = re.compile(
        rf"(?:IP changed from '[^']*' to '{re.escape(text)}'|no need to change the addr), "
        rf"(?:port changed from '\d+' to '{port}'|no need to change the port)"
        r" by 'stats socket command'"
    )
    return Command(
        ("set", "server", _server_ref(backend, server), "addr", text, "port", str(port)), ok=ok
    )


def set_server_state(
    backend: str, server: str, state: Literal["ready", "drain", "maint"]
) -> Command:
    """``set server BE/SRV state ready|drain|maint``: 2.6.12 replies nothing on success."""
    if state not in ("ready", "drain", "maint"):
        raise UnsafeArgumentError(f"unknown server state {state!r}")
    return Command(("set", "server", _server_ref(backend, server), "state", state))


def set_server_weight(backend: str, server: str, weight: int) -> Command:
    """``set server BE/SRV weight N`` (absolute, 0-256): empty reply on success."""
    if not 0 <= weight <= 256:
        raise UnsafeArgumentError(f"weight {weight} out of range 0-256")
    return Command(("set", "server", _server_ref(backend, server), "weight", str(weight)))


def show_servers_state(backend: str | None = None) -> Command:
    """``show servers state [BE]``: parse the reply with :func:`parse_servers_state`."""
    words: tuple[str, ...] = ("show", "servers", "state")
    if backend is not None:
        words += (_check_name("backend", backend),)
    return Command(words, ok=re.compile(r"1\n# be_id .*", re.DOTALL))


def show_stat(backend: str | None = None) -> Command:
    """``show stat [BE 4 -1]`` (servers only when a backend is given): CSV."""
    words: tuple[str, ...] = ("show", "stat")
    if backend is not None:
        words += (_check_name("backend", backend), "4", "-1")
    return Command(words, ok=re.compile(r"# pxname,.*", re.DOTALL))


# --- parsers -------------------------------------------------------------------


def parse_csv_stat(text: str) -> list[dict[str, str]]:
    """Rows of ``show stat`` keyed by column name (columns move between versions)."""
    lines = text.strip("\n").splitlines()
    for index, line in enumerate(lines):
        if line.startswith("# "):
            header = line[2:].split(",")
            body = lines[index + 1 :]
            break
    else:
        raise ValueError("no '# pxname,...' header in show stat output")
    rows = []
    # Free-text fields (check_desc, ...) are CSV-quoted when they hold commas.
    for row in csv.reader(line for line in body if line):
        rows.append({name: value for name, value in zip(header, row, strict=False) if name})
    return rows


def parse_servers_state(text: str) -> list[dict[str, str]]:
    """Rows of ``show servers state`` (format 1) keyed by column name."""
    lines = [line for line in text.strip("\n").splitlines() if line]
    if not lines or lines[0].strip() != "1":
        raise ValueError(f"unsupported servers state format: {lines[:1]!r}")
    if len(lines) < 2 or not lines[1].startswith("# "):
        raise ValueError("no '# be_id ...' header in show servers state output")
    header = lines[1][2:].split()
    rows = []
    for line in lines[2:]:
        values = line.split()
        if len(values) != len(header):
            raise ValueError(f"servers state row has {len(values)} fields, expected {len(header)}")
        rows.append(dict(zip(header, values, strict=True)))
    return rows


@dataclass(frozen=True)
class CrtListEntry:
    """One line of a crt-list as the running worker holds it."""

    cert: Path
    line: int
    options: str
    sni_filters: tuple[str, ...]


def parse_crt_list(text: str) -> list[CrtListEntry]:
    """Parse ``show ssl crt-list -n LIST``.

    2.6.12 prints the ALPN option with a stray NUL byte (``[alpn h2\\x00]``);
    it is dropped here.
    """
    entries = []
    for line in text.replace("\x00", "").splitlines():
        if not line or line.startswith("#"):
            continue
        match = _CRT_LIST_LINE_RE.fullmatch(line)
        if match is None:
            raise ValueError(f"unexpected crt-list line {line!r}")
        entries.append(
            CrtListEntry(
                cert=Path(match["cert"]),
                line=int(match["line"]),
                options=(match["options"] or "").strip(),
                sni_filters=tuple(match["filters"].split()),
            )
        )
    return entries


@dataclass(frozen=True)
class _WorkerInfo:
    pid: int
    stopping: bool


class _ConnectionLostError(Exception):
    """Raised by the idle probe only: nothing but a read-only probe was lost."""


# --- the client -------------------------------------------------------------------


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
        path_word = _path_word(map_path)
        lines = []
        seen: set[str] = set()
        for key, value in entries:
            lines.append(_map_line(key, value))
            if key in seen:
                raise ValueError(f"duplicate map key {key!r}: add map does not de-duplicate")
            seen.add(key)
        chunks = _chunk_lines(lines, MAP_CHUNK_BYTES)
        prepare = Command(("prepare", "map", path_word), ok=_NEW_MAP_VERSION_RE)
        async with self._lock:
            [reply] = await self._execute_locked([prepare])
            match = _NEW_MAP_VERSION_RE.fullmatch(reply)
            assert match is not None  # guaranteed by prepare.ok
            version = f"@{match[1]}"
            adds = [
                Command(("add", "map", version, path_word), payload=tuple(chunk))
                for chunk in chunks
            ]
            await self._execute_locked(adds)
            await self._execute_locked([Command(("commit", "map", version, path_word))])
        logger.debug(
            "map replaced path=%s version=%s entries=%d chunks=%d",
            map_path,
            version,
            len(lines),
            len(chunks),
            extra={"map": str(map_path), "entries": len(lines)},
        )
        return int(version[1:])

    # --- TLS --------------------------------------------------------------------

    async def replace_cert(self, path: Path, pem: str) -> None:
        """Load or renew the certificate stored under ``path`` (cert + key PEM).

        ``new ssl cert`` (no-op if present) → ``set ssl cert`` with the PEM as
        payload → ``commit ssl cert``, each sent only after the previous one
        succeeded, so a failed ``set`` can never commit a leftover transaction.

        2.6.12 keeps one certificate transaction at a time and, when one is
        already open for another file, a ``set ssl cert`` silently *updates that
        other* transaction with our PEM ("Transaction updated for certificate
        <other>!"). Such a leftover (from an earlier interrupted call) is
        aborted and the ``set`` repeated once; nothing was committed meanwhile.
        """
        word = _path_word(path)
        escaped = re.escape(word)
        lines = _pem_lines(pem)
        new = Command(
            ("new", "ssl", "cert", word),
            ok=re.compile(
                rf"New empty certificate store '{escaped}'!|Certificate '{escaped}' already exists!"
            ),
        )
        set_cert = Command(
            ("set", "ssl", "cert", word),
            payload=lines,
            ok=re.compile(rf"Transaction (?:created|updated) for certificate {escaped}!"),
        )
        # "Committing <file>" is followed by one dot per updated certificate instance.
        commit = Command(
            ("commit", "ssl", "cert", word), ok=re.compile(rf"Committing {escaped}\.*\nSuccess!")
        )
        set_cert.encode()  # size check before anything is sent
        async with self._lock:
            [created] = await self._execute_locked([new])
            try:
                try:
                    await self._execute_locked([set_cert])
                except RuntimeCommandError as error:
                    if not await self._abort_foreign_cert_transaction(error.reply, word):
                        raise
                    await self._execute_locked([set_cert])
                await self._execute_locked([commit])
            except RuntimeCommandError:
                await self._execute_locked([Command(("abort", "ssl", "cert", word), ok=ANY_REPLY)])
                if created.startswith("New empty"):
                    # Do not leave an empty store behind that blocks nothing but
                    # would make a later crt-list insert fail with "is empty".
                    await self._execute_locked(
                        [Command(("del", "ssl", "cert", word), ok=ANY_REPLY)]
                    )
                raise
        logger.debug(
            "certificate loaded path=%s created=%s",
            path,
            created.startswith("New empty"),
            extra={"cert": str(path)},
        )

    async def _abort_foreign_cert_transaction(self, reply: str, ours: str) -> bool:
        match = _CERT_TRANSACTION_RE.fullmatch(reply)
        if match is None or match[1] == ours:
            return False
        other = match[1]
        try:
            _check_word(other)
        except UnsafeArgumentError:
            return False
        logger.warning(
            "aborting leftover ssl cert transaction path=%s (blocked %s)",
            other,
            ours,
            extra={"cert": other},
        )
        await self._execute_locked(
            [
                Command(
                    ("abort", "ssl", "cert", other),
                    ok=re.compile(rf"Transaction aborted for certificate '{re.escape(other)}'!"),
                )
            ]
        )
        return True

    async def del_cert(self, path: Path) -> bool:
        """``del ssl cert``: True if deleted, False if HAProxy did not have it.

        Refused by HAProxy (RuntimeCommandError) while a crt-list still uses it.
        """
        word = _path_word(path)
        escaped = re.escape(word)
        command = Command(
            ("del", "ssl", "cert", word),
            ok=re.compile(
                rf"Certificate '{escaped}' deleted!"
                rf"|Can't remove the certificate: certificate '{escaped}' doesn't exist!"
            ),
        )
        [reply] = await self.execute([command])
        return reply.startswith("Certificate")

    async def crt_list_entries(self, crt_list: Path) -> list[CrtListEntry]:
        """The entries of a loaded crt-list, with their line numbers."""
        async with self._lock:
            return await self._crt_list_entries(crt_list)

    async def _crt_list_entries(self, crt_list: Path) -> list[CrtListEntry]:
        word = _path_word(crt_list)
        command = Command(
            ("show", "ssl", "crt-list", "-n", word),
            ok=re.compile(rf"# {re.escape(word)}(?:\n.*)?", re.DOTALL),
        )
        [reply] = await self._execute_locked([command])
        return parse_crt_list(reply)

    async def add_crt_list_entry(
        self, crt_list: Path, cert: Path, sni: str, alpn: str | None
    ) -> bool:
        """Serve the (already loaded) ``cert`` for ``sni`` on ``crt_list``'s binds.

        Uses the payload form: in 2.6 the one-line form drops options and SNI
        filters. ``add ssl crt-list`` does not de-duplicate, so an identical
        entry is looked up first; returns False when it was already there.
        """
        list_word = _path_word(crt_list)
        cert_word = _path_word(cert)
        if len(sni) > 253 or not _SNI_RE.fullmatch(sni):
            raise UnsafeArgumentError(f"{sni!r} is not a lowercase host name or *.wildcard")
        if alpn is not None and not _ALPN_RE.fullmatch(alpn):
            raise UnsafeArgumentError(f"{alpn!r} is not a comma-separated ALPN list")
        options = f"alpn {alpn}" if alpn else ""
        line = f"{cert_word} [{options}] {sni}" if options else f"{cert_word} {sni}"
        command = Command(
            ("add", "ssl", "crt-list", list_word),
            payload=(line,),
            ok=re.compile(
                rf"Inserting certificate '{re.escape(cert_word)}' "
                rf"in crt-list '{re.escape(list_word)}'\.\nSuccess!"
            ),
        )
        command.encode()
        async with self._lock:
            for entry in await self._crt_list_entries(crt_list):
                if entry.cert == cert and entry.options == options and entry.sni_filters == (sni,):
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
        list_word = _path_word(crt_list)
        cert_word = _path_word(cert)
        ok = re.compile(
            rf"Entry '{re.escape(cert_word)}' deleted in crtlist '{re.escape(list_word)}'!"
        )
        async with self._lock:
            lines = [e.line for e in await self._crt_list_entries(crt_list) if e.cert == cert]
            await self._execute_locked(
                [
                    Command(("del", "ssl", "crt-list", list_word, f"{cert_word}:{n}"), ok=ok)
                    for n in lines
                ]
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
        await self._ensure_fresh()
        replies: list[str] = []
        for start in range(0, len(commands), self._batch_size):
            batch = commands[start : start + self._batch_size]
            failure = None
            try:
                writer = self._require_writer()
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
            echo = _PAYLOAD_ECHO * (1 + len(command.payload))
            if not text.startswith(echo):
                raise EOFError(f"payload echo missing in reply to {command.describe()!r}")
            text = text[len(echo) :]
        return text.strip()

    async def _ensure_fresh(self) -> None:
        """Make sure the next batch reaches a live, current worker.

        A read-only ``show info`` goes first: if HAProxy closed the idle
        connection, only that probe is lost and reconnecting is safe; if the
        worker is stopping (a reload happened), changes sent there would die
        with it.
        """
        if self._connected():
            try:
                info = await self._probe()
            except _ConnectionLostError:
                logger.debug("runtime connection closed while idle, reconnecting")
            else:
                if not info.stopping:
                    return
                logger.debug(
                    "runtime connection is on a stopping worker pid=%d, reconnecting",
                    info.pid,
                    extra={"worker_pid": info.pid},
                )
        await self._drop_connection()
        await self._open()

    async def _probe(self) -> _WorkerInfo:
        try:
            self._require_writer().write(b"show info\n")
            text = await self._read_reply(None)
        except (OSError, EOFError, asyncio.IncompleteReadError, TimeoutError) as error:
            raise _ConnectionLostError from error
        pid = stopping = None
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if name == "Pid":
                pid = int(value)
            elif name == "Stopping":
                stopping = value.strip() == "1"
        if pid is None:
            raise _ConnectionLostError(f"unexpected show info reply {text[:80]!r}")
        return _WorkerInfo(pid=pid, stopping=bool(stopping))

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


def _map_line(key: str, value: str) -> str:
    # Keys split at the first blank; a key without value would swallow the
    # next payload line in 2.6.12. A leading '#' is literal at runtime but a
    # comment in the map file the next reload reads, so runtime and file would
    # disagree.
    if not _MAP_KEY_RE.fullmatch(key) or key.startswith("#"):
        raise UnsafeArgumentError(f"map key {key!r}: printable ASCII, no blanks, no leading '#'")
    if not _MAP_VALUE_RE.fullmatch(value):
        raise UnsafeArgumentError(
            f"map value {value!r}: non-empty printable ASCII without outer blanks"
        )
    line = f"{key} {value}"
    if len(line) >= MAP_CHUNK_BYTES:
        raise UnsafeArgumentError(f"map entry {key[:60]!r}... is too long")
    return line


def _chunk_lines(lines: Sequence[str], limit: int) -> list[list[str]]:
    chunks: list[list[str]] = []
    current: list[str] = []
    size = 0
    for line in lines:
        if current and size + len(line) + 1 > limit:
            chunks.append(current)
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        chunks.append(current)
    return chunks


def _pem_lines(pem: str) -> tuple[str, ...]:
    # Blank lines are insignificant in PEM but would end the payload early.
    lines = tuple(line.strip() for line in pem.splitlines() if line.strip())
    if not any(line.startswith("-----BEGIN ") for line in lines):
        raise UnsafeArgumentError("not a PEM document")
    return lines
