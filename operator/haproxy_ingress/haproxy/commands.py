"""HAProxy runtime API commands as data: encoding, validation and reply parsing (pure).

Everything the controller changes without a reload is a :class:`Command`:
server slots (address, port, state), map transactions and TLS certificates.
Each builder validates its arguments and carries the reply that counts as
success; :mod:`haproxy_ingress.haproxy.runtime` only moves the bytes. The
behaviour relied on was checked against HAProxy 2.6.12 (see the reply
patterns next to each builder); where 2.6.12 is surprising, the comment says so.

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

import csv
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

#: Upper bound for one encoded command, command line and payload included.
#: HAProxy's CLI reads a whole command (payload too) into one 16 KB buffer and
#: drops the connection silently beyond ~16.3 KB; stay well below.
MAX_COMMAND_BYTES: Final = 15_000

#: Payload bytes per ``add map`` command when a map is replaced in chunks.
MAP_CHUNK_BYTES: Final = 8_000

#: Accepts any reply: for read-only commands whose output the caller parses.
ANY_REPLY: Final = re.compile(r".*", re.DOTALL)

PAYLOAD_ECHO: Final = "+ "
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
    # What the named groups of ``ok`` must hold where they matched: one
    # compiled pattern serves every address (compiling one per command cost
    # 0.2 ms, 6 s of CPU for the 30,000 slots a full sync sets at 10k).
    expect: tuple[tuple[str, str], ...] = ()

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
        match = self.ok.fullmatch(reply)
        return match is not None and all(
            match[name] in (None, value) for name, value in self.expect
        )


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


def path_word(path: Path) -> str:
    if not path.is_absolute():
        # HAProxy resolves relative names against its own cwd, not ours.
        raise UnsafeArgumentError(f"{path}: runtime API paths must be absolute")
    word = str(path)
    _check_word(word)
    return word


def _server_ref(backend: str, server: str) -> str:
    return f"{_check_name('backend', backend)}/{_check_name('server', server)}"


# --- builders for server slots ---------------------------------------------------


def _check_endpoint(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> None:
    """A pod address HAProxy takes as given (2.6.12 wraps ``99999`` to 34463, accepts 0)."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id is not None:
        raise UnsafeArgumentError(f"{addr}: scoped IPv6 addresses are not supported")
    if not 1 <= port <= 65535:
        raise UnsafeArgumentError(f"port {port} out of range 1-65535")


_SET_SERVER_ADDR_OK: Final = re.compile(
    r"(?:IP changed from '[^']*' to '(?P<addr>[^']*)'|no need to change the addr), "
    r"(?:port changed from '\d+' to '(?P<port>\d+)'|no need to change the port)"
    r" by 'stats socket command'"
)


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
    _check_endpoint(addr, port)
    text = str(addr)
    return Command(
        ("set", "server", _server_ref(backend, server), "addr", text, "port", str(port)),
        ok=_SET_SERVER_ADDR_OK,
        expect=(("addr", text), ("port", str(port))),
    )


def set_server_state(
    backend: str, server: str, state: Literal["ready", "drain", "maint"]
) -> Command:
    """``set server BE/SRV state ready|drain|maint``: 2.6.12 replies nothing on success."""
    if state not in ("ready", "drain", "maint"):
        raise UnsafeArgumentError(f"unknown server state {state!r}")
    return Command(("set", "server", _server_ref(backend, server), "state", state))


# Options 2.6.12 gives config-file servers but not dynamic ones: without them
# an added server never reuses a connection (HAProxy's own defaults).
DYNAMIC_SERVER_POOL: Final = ("pool-purge-delay", "5s", "pool-max-conn", "-1")
_ADD_SERVER_OK: Final = re.compile(
    r"New server registered\.|Already exists a server with the same name in backend\."
    r"|'id' : custom id (?P<id>\d+) already used at \S+ \('server (?P<name>[^']*)'\)\."
)


def add_server(
    backend: str,
    server: str,
    server_id: int,
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
    port: int,
    *,
    options: Sequence[str],
) -> Command:
    """``add server BE/SRV ADDR:PORT id N <options>``: a server added in maintenance.

    2.6.12 replies ``New server registered.``; a server of that name that
    exists already (one added before a controller restart) counts as done,
    since the SetServer that follows sets its address and state (2.6.12
    checks the id first: "custom id N already used at (null):0 ('server
    sN')" says the same of the same server). Never with
    ``enabled``: in 2.6.12 it corrupts the backend's count of active servers
    (503 with a healthy server); the state is set with ``set server`` instead.
    """
    _check_endpoint(addr, port)
    if server_id < 1:
        raise UnsafeArgumentError(f"server id {server_id} must be positive")
    if "enabled" in options:
        raise UnsafeArgumentError("'enabled' corrupts a 2.6.12 backend's server count")
    host = f"[{addr}]" if addr.version == 6 else str(addr)
    target = (_server_ref(backend, server), f"{host}:{port}", "id", str(server_id))
    return Command(
        ("add", "server", *target, *options, *DYNAMIC_SERVER_POOL),
        ok=_ADD_SERVER_OK,
        expect=(("id", str(server_id)), ("name", server)),
    )


def enable_health(backend: str, server: str) -> Command:
    """``enable health BE/SRV``: a dynamic server's check starts off; 2.6.12 replies nothing."""
    return Command(("enable", "health", _server_ref(backend, server)))


def enable_dynamic_cookie(backend: str) -> Command:
    """``enable dynamic-cookie backend BE``: (re)computes every server's cookie.

    A server added at run time has no cookie until then (2.6.12), and
    ``cookie`` is refused on its ``add server`` line. Replies nothing.
    """
    return Command(("enable", "dynamic-cookie", "backend", _check_name("backend", backend)))


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


@dataclass(frozen=True)
class ServersState:
    """``show servers state`` (format 1): its columns and one row per server."""

    columns: tuple[str, ...]
    rows: tuple[dict[str, str], ...]

    def file(self, rows: Sequence[Mapping[str, str]]) -> str:
        """``rows`` in the format of a server-state file (``load-server-state-from-file``)."""
        lines = ["1", "# " + " ".join(self.columns)]
        lines += [" ".join(row[column] for column in self.columns) for row in rows]
        return "\n".join(lines) + "\n"


def parse_servers_state(text: str) -> ServersState:
    """``show servers state`` (format 1), rows keyed by column name."""
    lines = [line for line in text.strip("\n").splitlines() if line]
    if not lines or lines[0].strip() != "1":
        raise ValueError(f"unsupported servers state format: {lines[:1]!r}")
    if len(lines) < 2 or not lines[1].startswith("# "):
        raise ValueError("no '# be_id ...' header in show servers state output")
    header = tuple(lines[1][2:].split())
    rows = []
    for line in lines[2:]:
        values = line.split()
        if len(values) != len(header):
            raise ValueError(f"servers state row has {len(values)} fields, expected {len(header)}")
        rows.append(dict(zip(header, values, strict=True)))
    return ServersState(header, tuple(rows))


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
class WorkerInfo:
    pid: int
    stopping: bool


def parse_show_info(text: str) -> WorkerInfo | None:
    """The worker's pid and whether it is stopping, from ``show info``; None if not one."""
    pid = stopping = None
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if name == "Pid":
            pid = int(value)
        elif name == "Stopping":
            stopping = value.strip() == "1"
    return None if pid is None else WorkerInfo(pid=pid, stopping=bool(stopping))


# --- maps ---------------------------------------------------------------------------


def prepare_map(map_path: Path) -> Command:
    """``prepare map``: opens a new, invisible version; see :func:`map_version`."""
    return Command(("prepare", "map", path_word(map_path)), ok=_NEW_MAP_VERSION_RE)


def map_version(reply: str) -> str:
    """``@V`` from ``prepare map``'s reply (already checked by the command's ``ok``)."""
    match = _NEW_MAP_VERSION_RE.fullmatch(reply)
    if match is None:
        raise ValueError(f"not a prepare map reply: {reply!r}")
    return f"@{match[1]}"


def add_map(version: str, map_path: Path, entries: Sequence[tuple[str, str]]) -> list[Command]:
    """``add map @V`` with the entries as payload, in chunks of ~8 KB, order kept.

    Keys must be unique: ``add map`` does not de-duplicate.
    """
    word = path_word(map_path)
    lines = []
    seen: set[str] = set()
    for key, value in entries:
        lines.append(_map_line(key, value))
        if key in seen:
            raise ValueError(f"duplicate map key {key!r}: add map does not de-duplicate")
        seen.add(key)
    return [
        Command(("add", "map", version, word), payload=tuple(chunk))
        for chunk in _chunk_lines(lines, MAP_CHUNK_BYTES)
    ]


def commit_map(version: str, map_path: Path) -> Command:
    return Command(("commit", "map", version, path_word(map_path)))


# --- ACL files (-f): the access policies' address lists -------------------------------


def prepare_acl(acl_path: Path) -> Command:
    """``prepare acl``: a new, invisible version of a pattern file, as for maps."""
    return Command(("prepare", "acl", path_word(acl_path)), ok=_NEW_MAP_VERSION_RE)


def add_acl(version: str, acl_path: Path, patterns: Sequence[str]) -> list[Command]:
    """``add acl @V``, one pattern per command: 2.6.12 takes no payload for ACLs
    ("'add acl' expects two parameters", measured), unlike ``add map``."""
    word = path_word(acl_path)
    return [Command(("add", "acl", version, word, pattern)) for pattern in patterns]


def commit_acl(version: str, acl_path: Path) -> Command:
    return Command(("commit", "acl", version, path_word(acl_path)))


# --- TLS certificates ---------------------------------------------------------------


def new_cert(path: Path) -> Command:
    """``new ssl cert``: a no-op when HAProxy already has the certificate."""
    escaped = re.escape(path_word(path))
    return Command(
        ("new", "ssl", "cert", path_word(path)),
        ok=re.compile(
            rf"New empty certificate store '{escaped}'!|Certificate '{escaped}' already exists!"
        ),
    )


def created_empty(reply: str) -> bool:
    """Whether ``new ssl cert`` created the store (rather than finding it)."""
    return reply.startswith("New empty")


def set_cert(path: Path, pem: str) -> Command:
    """``set ssl cert`` with the PEM (certificate and key) as payload."""
    word = path_word(path)
    return Command(
        ("set", "ssl", "cert", word),
        payload=_pem_lines(pem),
        ok=re.compile(rf"Transaction (?:created|updated) for certificate {re.escape(word)}!"),
    )


def commit_cert(path: Path) -> Command:
    word = path_word(path)
    # "Committing <file>" is followed by one dot per updated certificate instance.
    return Command(
        ("commit", "ssl", "cert", word),
        ok=re.compile(rf"Committing {re.escape(word)}\.*\nSuccess!"),
    )


def abort_cert(path: Path) -> Command:
    return Command(("abort", "ssl", "cert", path_word(path)), ok=ANY_REPLY)


def del_cert(path: Path) -> Command:
    """``del ssl cert``; a certificate HAProxy does not have counts as deleted."""
    word = path_word(path)
    escaped = re.escape(word)
    return Command(
        ("del", "ssl", "cert", word),
        ok=re.compile(
            rf"Certificate '{escaped}' deleted!"
            rf"|Can't remove the certificate: certificate '{escaped}' doesn't exist!"
        ),
    )


def foreign_cert_transaction(reply: str, ours: Path) -> Command | None:
    """The ``abort ssl cert`` for another file's transaction that took our ``set``.

    2.6.12 keeps one certificate transaction at a time and, when one is
    already open for another file, a ``set ssl cert`` silently *updates that
    other* transaction with our PEM ("Transaction updated for certificate
    <other>!"). None when ``reply`` is not that case.
    """
    match = _CERT_TRANSACTION_RE.fullmatch(reply)
    if match is None or match[1] == path_word(ours):
        return None
    other = match[1]
    try:
        _check_word(other)
    except UnsafeArgumentError:
        return None
    return Command(
        ("abort", "ssl", "cert", other),
        ok=re.compile(rf"Transaction aborted for certificate '{re.escape(other)}'!"),
    )


# --- CA and CRL files (auth-tls-secret) ------------------------------------------

# What 2.6.12 calls each kind in its replies.
_SSL_FILE_LABELS: Final = {"ca-file": "CA", "crl-file": "CRL"}


def set_ssl_file(kind: Literal["ca-file", "crl-file"], path: Path, pem: str) -> Command:
    """``set ssl ca-file|crl-file`` with the PEM as payload: new content, same name.

    Only for a file HAProxy loaded (a crt-list line names it); a new file
    would need ``new ssl ca-file`` and a crt-list line, which reloads here.
    """
    word = path_word(path)
    label = _SSL_FILE_LABELS[kind]
    return Command(
        ("set", "ssl", kind, word),
        payload=_pem_lines(pem),
        ok=re.compile(rf"transaction (?:created|updated) for {label} {re.escape(word)}!"),
    )


def commit_ssl_file(kind: Literal["ca-file", "crl-file"], path: Path) -> Command:
    word = path_word(path)
    # One dot per crt-list instance using it, as for certificates.
    return Command(
        ("commit", "ssl", kind, word), ok=re.compile(rf"Committing {re.escape(word)}\.*\nSuccess!")
    )


def abort_ssl_file(kind: Literal["ca-file", "crl-file"], path: Path) -> Command:
    return Command(("abort", "ssl", kind, path_word(path)), ok=ANY_REPLY)


# --- crt-lists -------------------------------------------------------------------


def show_crt_list(crt_list: Path) -> Command:
    """``show ssl crt-list -n LIST``: parse the reply with :func:`parse_crt_list`."""
    word = path_word(crt_list)
    return Command(
        ("show", "ssl", "crt-list", "-n", word),
        ok=re.compile(rf"# {re.escape(word)}(?:\n.*)?", re.DOTALL),
    )


# Option words after alpn (config.crt_list_options): keywords, file paths, a cipher list.
_CRT_OPTION_KEYWORDS: Final = frozenset({"ca-file", "crl-file", "verify", "ciphers"})
_CRT_OPTION_VALUE_RE: Final = re.compile(r"[A-Za-z0-9_.:/@+!=-]+")


def crt_list_options(alpn: str | None, extra: Sequence[str] = ()) -> str:
    """The bracketed options of a crt-list line: ALPN, then ``keyword value`` pairs."""
    if alpn is not None and not _ALPN_RE.fullmatch(alpn):
        raise UnsafeArgumentError(f"{alpn!r} is not a comma-separated ALPN list")
    if len(extra) % 2 or any(
        extra[i] not in _CRT_OPTION_KEYWORDS or not _CRT_OPTION_VALUE_RE.fullmatch(extra[i + 1])
        for i in range(0, len(extra), 2)
    ):
        raise UnsafeArgumentError(f"{' '.join(extra)[:80]!r} are not crt-list options")
    words = ([f"alpn {alpn}"] if alpn else []) + list(extra)
    return " ".join(words)


def add_crt_list_entry(
    crt_list: Path, cert: Path, sni: str, alpn: str | None, extra: Sequence[str] = ()
) -> Command:
    """``add ssl crt-list`` in the payload form (in 2.6 the one-line form drops options)."""
    list_word = path_word(crt_list)
    cert_word = path_word(cert)
    if len(sni) > 253 or not _SNI_RE.fullmatch(sni):
        raise UnsafeArgumentError(f"{sni!r} is not a lowercase host name or *.wildcard")
    options = crt_list_options(alpn, extra)
    line = f"{cert_word} [{options}] {sni}" if options else f"{cert_word} {sni}"
    command = Command(
        ("add", "ssl", "crt-list", list_word),
        payload=(line,),
        ok=re.compile(
            rf"Inserting certificate '{re.escape(cert_word)}' "
            rf"in crt-list '{re.escape(list_word)}'\.\nSuccess!"
        ),
    )
    command.encode()  # size check before anything is sent
    return command


def del_crt_list_entry(crt_list: Path, cert: Path, line: int) -> Command:
    """``del ssl crt-list LIST CERT:LINE`` (line numbers stay stable across deletions)."""
    list_word = path_word(crt_list)
    cert_word = path_word(cert)
    return Command(
        ("del", "ssl", "crt-list", list_word, f"{cert_word}:{line}"),
        ok=re.compile(
            rf"Entry '{re.escape(cert_word)}' deleted in crtlist '{re.escape(list_word)}'!"
        ),
    )


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
