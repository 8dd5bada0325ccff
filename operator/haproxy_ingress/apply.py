"""Plan → HAProxy: write files, reload when the plan says so, run runtime operations.

The only stage that drives the HAProxy adapter. It keeps the applied state
(what HAProxy runs) so that the next plan is a diff against reality, and it
falls back to a reload when the runtime API refuses an operation: a reload
from freshly written files always converges.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import ipaddress
import logging
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from haproxy_ingress import state
from haproxy_ingress.gcpause import cyclic_gc_paused
from haproxy_ingress.haproxy import commands, limits
from haproxy_ingress.haproxy.commands import Command, RuntimeCommandError, parse_servers_state
from haproxy_ingress.haproxy.config import (
    ALPN,
    CONFIG_MODE,
    FREE_SLOT_ENDPOINT,
    RenderedFile,
    RenderOptions,
    SectionMemo,
    address_list_path,
    certificate_path,
    client_ca_path,
    client_crl_path,
    crt_list_options,
    default_certificate_path,
    enabled_servers,
    environment,
    map_path,
    pool_server_options,
    render_config,
    render_files,
    server_id,
    server_options,
    upstream_ca_path,
    upstream_client_path,
    upstream_tls_files,
)
from haproxy_ingress.haproxy.files import atomic_write, atomic_write_chunks, remove_if_exists
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.haproxy.process import ConfigCheckError, HAProxyProcess, check_config
from haproxy_ingress.haproxy.runtime import RuntimeClient
from haproxy_ingress.model import OPTIONAL_MAPS, AppliedState, HostTLS, ServerState
from haproxy_ingress.plan import (
    PASSTHROUGH_MAP,
    AddServer,
    Operation,
    Plan,
    PutCertificate,
    PutClientCA,
    RemoveCertificate,
    ReplaceAddressList,
    ReplaceMap,
    SetServer,
    declared,
    plan_full_sync,
    twin_name,
)

logger = logging.getLogger(__name__)

# The background writer of runtime-only applies waits for a quiet moment
# (see Applier._quiet_moment), but never longer than the max delay. A write
# renders and serialises the whole cluster: about 1.7 s of CPU at 10,000
# Ingresses, which after every change of a steady trickle of endpoint changes
# kept a core busy (bench/controller_rss.py --latency). The files only matter
# at the next reload (which writes them first) or restart (which re-asserts
# what HAProxy runs), so they may lag this far behind.
WRITE_QUIET = 1.0
WRITE_MAX_DELAY = 10.0
# Server commands are built and sent this many at a time: the slots of a full
# sync after a reload at 10k Ingresses (100,000 commands, and their encodings)
# held at once were ~17 MiB of the controller's peak. Each chunk is checked
# whole before it is sent, as RuntimeClient.execute does.
EXECUTE_CHUNK = 4096
# The configuration `haproxy -c` checks is written in pieces of whole lines of
# about this many bytes (see _replaced).
CHECKED_CHUNK = 1 << 16


@dataclass(frozen=True)
class ApplyResult:
    reloaded: bool
    reload_reasons: tuple[str, ...]
    operations: int  # runtime operations executed
    runtime_fallback: bool  # the runtime API refused something; a reload fixed it
    seconds: float


class Applier:
    """Owns HAProxy's files and process, and remembers what HAProxy runs."""

    def __init__(
        self,
        process: HAProxyProcess,
        client: RuntimeClient,
        options: RenderOptions,
        *,
        binary: str = "haproxy",
    ) -> None:
        self._process = process
        self._client = client
        self._options = options
        self._binary = binary
        self._templates = environment()  # compiled once, rendered on every apply
        # Backend sections of the last haproxy.cfg rendered for the live paths.
        self._sections = SectionMemo()
        self.applied: AppliedState | None = None
        # Runtime-only applies leave their files to a writer in a worker
        # thread (see _persist_later); the latest target waits here.
        self._unwritten: AppliedState | None = None
        self._writer: asyncio.Task[None] | None = None
        self._write_error: OSError | None = None
        self._write_now = asyncio.Event()  # flush(): no more waiting for a quiet moment
        # Held by the writer while it writes, and by writer_paused's blocks.
        self._writing = asyncio.Lock()
        # Set while a block of writer_paused waits or runs: the write under way gives up.
        self._stop = threading.Event()
        self._abandoned = False  # the last write was given up (see _write_unwritten)
        # crt-list lines the last passing `haproxy -c` loaded (see _check).
        self._loaded_lines: frozenset[bytes] = frozenset()

    async def apply(self, plan: Plan) -> ApplyResult:
        """Bring HAProxy to ``plan.target``.

        Raises ConfigCheckError (nothing swapped in, the old config keeps serving)
        or ReloadError.
        """
        started = time.monotonic()
        if not plan.reload:
            try:
                await self._execute(plan.operations, plan.target)
            except RuntimeCommandError as error:
                reason = f"runtime API refused {' '.join(error.command.words[:3])!r}: {error.reply}"
                logger.warning("runtime operation failed, falling back to a reload: %s", reason)
                try:
                    done = await self._reload(plan.target, (reason,))
                except ConfigCheckError:
                    # Part of the plan already runs (the operations before the
                    # refused one), so HAProxy is neither at `applied` nor at the
                    # target: forget what it runs, and the next plan reloads all.
                    self.applied = None
                    raise
                return ApplyResult(
                    True, (reason,), len(plan.operations) + done, True, time.monotonic() - started
                )
            self.applied = plan.target
            self._persist_later(plan.target)
            return ApplyResult(False, (), len(plan.operations), False, time.monotonic() - started)
        done = await self._reload(plan.target, plan.reload_reasons, plan.operations)
        return ApplyResult(True, plan.reload_reasons, done, False, time.monotonic() - started)

    async def adopt(self) -> bool:
        """Take over a HAProxy that outlived its controller; True if one runs.

        If the applied state saved by the previous controller still matches
        the configuration HAProxy runs, it becomes ours and the next plan is
        a diff (no reload); every runtime-controlled value is re-asserted, in
        case the previous controller died half-way through an apply.
        Otherwise the applied state stays unknown and the next plan reloads.
        """
        if await self._process.adopt() is None:
            return False
        paths = self._options.paths
        try:
            saved = state.load(self._state_path.read_bytes())
            running = paths.config.read_bytes()
        except OSError:
            saved = None
        if saved is None or self._config_of(saved) != running:
            logger.info("adopted a running HAProxy with unknown state; the next sync reloads")
            return True
        await self._execute(
            (
                *await self._missing_servers_only(plan_full_sync(saved)),
                # A map whose rules the configuration leaves out is unknown to
                # HAProxy (and empty: Structure.frontend_maps).
                *(
                    ReplaceMap(name, entries)
                    for name, entries in saved.maps.files()
                    if name not in OPTIONAL_MAPS or name in saved.structure.frontend_maps
                ),
                # Lists edited at run time (owner-named policies) may be newer in
                # HAProxy than in the saved state, like maps: the saved ones again.
                *(
                    ReplaceAddressList(p.name, deny, networks)
                    for p in saved.structure.policies
                    if p.owner
                    for deny, networks in ((False, p.allow_sources), (True, p.deny_sources))
                    if networks
                ),
                *(
                    (ReplaceMap(PASSTHROUGH_MAP, saved.sni),)
                    if saved.structure.ssl_passthrough
                    else ()
                ),
            ),
            saved,
        )
        self.applied = saved
        logger.info("adopted a running HAProxy and its applied state; no reload needed")
        return True

    async def _missing_servers_only(self, operations: Sequence[Operation]) -> tuple[Operation, ...]:
        """``operations`` without adding the servers HAProxy has already.

        Adding one again is harmless (commands.add_server accepts the reply)
        but HAProxy logs an [ALERT] for each, and an adopted HAProxy normally
        has them all: it ran them before the controller restarted.
        """
        if not any(isinstance(op, AddServer) for op in operations):
            return tuple(operations)
        text = await self._client.run("show", "servers", "state")
        have = {(row["be_name"], row["srv_name"]) for row in parse_servers_state(text).rows}

        def present(op: AddServer) -> bool:
            return all((op.backend, name) in have for name in op.names)

        return tuple(op for op in operations if not (isinstance(op, AddServer) and present(op)))

    async def healthy(self) -> bool:
        """False (and the applied state forgotten) when our HAProxy is gone.

        A killed worker takes its master down (exit-on-failure), so the master
        being alive is the whole check; the next apply starts HAProxy afresh.
        """
        if self.applied is not None and not self._process.running:
            logger.error("HAProxy is gone; the next sync starts it and re-applies everything")
            self.applied = None
            return False
        return True

    async def check(self, target: AppliedState) -> None:
        """``haproxy -c`` on ``target``'s files, written to a scratch directory.

        Raises ConfigCheckError as :meth:`apply` would, with the scratch
        directory cut out of the alerts. The live files are never touched, so
        candidates can be tried while HAProxy serves. The scratch directory
        sits in the state directory (private, writable even with a read-only
        root filesystem); sockets and the server-state file keep their live
        paths, since `haproxy -c` limits a socket path's length but binds nothing.
        """
        # Arithmetic first: the quarantine's search runs many checks, and a
        # candidate past the file-descriptor limit needs no rendering to refuse.
        target = declared(target)  # what a reload would run
        self._check_limits(target)
        live = self._options.paths
        with tempfile.TemporaryDirectory(prefix=".check-", dir=live.base) as scratch:
            paths = _ScratchPaths(Path(scratch), live=live)
            paths.ensure()
            default_certificate_path(paths).symlink_to(default_certificate_path(live))
            options = dataclasses.replace(self._options, paths=paths)
            files = render_files(target, options)
            config = render_config(target, options, self._templates)
            for path, pieces, mode in (
                *((file.path, (file.content,), file.mode) for file in files),
                (paths.config, config, CONFIG_MODE),
            ):
                # Private directory, thrown away: no atomic rename, no fsync.
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
                with os.fdopen(descriptor, "wb") as output:
                    output.writelines(pieces)
            try:
                await self._check(paths.config, files, paths)
            except ConfigCheckError as error:
                alerts = error.output.replace(f"{scratch}/", "")
                raise ConfigCheckError("haproxy -c rejected a candidate", alerts) from None

    def budget(self) -> limits.Budget | None:
        """HAProxy's file descriptors, for plans (None: no limit)."""
        limit = limits.descriptor_limit()
        if limit is None:
            return None
        # Room for the passthrough hop's socket whether or not it is on.
        return limits.Budget(limit, self._listeners(passthrough=True), limits.threads())

    def _listeners(self, *, passthrough: bool) -> int:
        """Our binds, the master and stats sockets, and fe_http's private TLS socket."""
        binds = len(self._options.http_binds) + len(self._options.https_binds)
        return binds + 2 + int(passthrough)

    async def _check(
        self, config: Path, files: Sequence[RenderedFile], paths: HAProxyPaths | None = None
    ) -> None:
        """``haproxy -c`` of ``config`` and ``files``, written out, less the certificates
        it loaded last time.

        Loading a crt-list line costs HAProxy 2.6 (OpenSSL 3.0: a key decoder
        set up for the key, the certificate's public key and DH parameters,
        and an SSL_CTX) about 0.8 ms of CPU whatever the key type: 0.8 of the
        1.4 s `haproxy -c` took at 10,000 Ingresses with 1,000 TLS Secrets,
        and a reload rarely changes a certificate. A line whose key
        (:func:`crt_list_keys`: its text, the files it names, what it is
        loaded under) is one the last passing check loaded stays out of the
        crt-list this check reads. The reload itself loads every line; one
        that failed there anyway would leave the old worker serving
        (ReloadError). The alerts name the checked configuration's lines as
        ``config``'s (same numbering); a crt-list alert names the checked
        crt-list.
        """
        paths = paths or self._options.paths
        keys = crt_list_keys(config, files, paths, live=self._options.paths)
        fresh = [line for line, key in keys.items() if key is None or key not in self._loaded_lines]
        if len(fresh) == len(keys):
            await check_config(config, binary=self._binary)
        else:
            crt_list = paths.crt_list.with_name("crt-list.check.txt")
            checked = config.with_name(config.name + ".check")
            live_bind = f" crt-list {paths.crt_list} ".encode()
            check_bind = f" crt-list {crt_list} ".encode()
            try:
                atomic_write(crt_list, "".join(fresh).encode(), mode=0o600, durable=False)
                with config.open("rb") as source:
                    content = _replaced(source, live_bind, check_bind)
                    atomic_write_chunks(checked, content, mode=0o600, durable=False)
                await check_config(checked, binary=self._binary)
            except ConfigCheckError as error:
                alerts = error.output.replace(str(checked), str(config))
                raise ConfigCheckError(f"haproxy -c rejected {config}", alerts) from None
            finally:
                remove_if_exists(checked)
                remove_if_exists(crt_list)
        self._loaded_lines = frozenset(key for key in keys.values() if key is not None)

    def _check_limits(self, target: AppliedState) -> None:
        """What haproxy -c lets through but HAProxy's start refuses (see limits.py)."""
        listeners = self._listeners(passthrough=target.structure.ssl_passthrough)
        alert = limits.refusal(target, listeners, limits.descriptor_limit())
        if alert is not None:
            raise ConfigCheckError("HAProxy could not start this configuration", alert)

    def _config_of(self, target: AppliedState) -> bytes:
        """``target``'s haproxy.cfg, whole: only adoption compares it, before any sync."""
        with cyclic_gc_paused():  # a big cluster: see gcpause
            return b"".join(render_config(target, self._options, self._templates, self._sections))

    @property
    def _state_path(self) -> Path:
        return self._options.paths.base / "applied.json"

    async def _reload(
        self,
        target: AppliedState,
        reasons: Sequence[str],
        planned: Sequence[Operation] | None = None,
    ) -> int:
        """The one way to a reload: render, check once, swap in, reload, set every slot.

        ``planned``: a reload plan's operations, which set every slot of its
        target (Plan.operations), used instead of a second such list (one
        operation per slot: 50,000 at 10k Ingresses) if the target needs no
        declaring. Returns how many runtime operations followed the reload.
        """
        # A runtime apply's fallback brings slots added at run time: a reload
        # declares them (plan.declared; a planned reload's target already does).
        declared_target = declared(target)
        if declared_target is not target:
            target, planned = declared_target, None
        # Files written in the background for an earlier target must not land
        # over this one's.
        await self.flush()
        await self._swap_in(target)
        logger.debug("reloading HAProxy: %s", "; ".join(reasons))
        if not self._process.running and await self._process.adopt() is None:
            await self._process.start()
        else:
            # A running master (ours, or one a previous controller left) loads
            # the new files; clients keep their connections, and the slots the
            # new configuration agrees with keep their runtime state.
            await self._process.reload(enabled_servers(target))
        operations = planned if planned is not None else plan_full_sync(target)
        await self._execute(operations, target)
        self.applied = target
        await asyncio.to_thread(self._finish, target)
        return len(operations)

    async def _swap_in(self, target: AppliedState) -> None:
        """Render ``target``, write its files, check haproxy.cfg, and put it in place.

        haproxy.cfg (~11 MB at 10k Ingresses) streams from the template to
        its file, and the check reads it back from there: held whole, with
        the other rendered files it was ~23 MiB of a 10k first sync's peak.
        A method of its own so that the other files are freed before the
        reload's slot commands are built.
        """
        candidate = self._options.paths.config.with_suffix(".cfg.next")

        def write() -> tuple[RenderedFile, ...]:
            # Rendering a big cluster runs in a worker thread: see gcpause.
            with cyclic_gc_paused():
                files = render_files(target, self._options)
                for file in files:
                    atomic_write(file.path, file.content, mode=file.mode)
                config = render_config(target, self._options, self._templates, self._sections)
                atomic_write_chunks(candidate, config, mode=CONFIG_MODE)
            return files

        files = await asyncio.to_thread(write)
        self._check_limits(target)
        await self._check(candidate, files)
        candidate.replace(self._options.paths.config)

    def _finish(self, target: AppliedState, stop: threading.Event | None = None) -> None:
        # Keys of Secrets no longer served must not stay on disk.
        self._remove_stale_certificates(target)
        with cyclic_gc_paused():
            atomic_write_chunks(self._state_path, _unless(stop, state.chunks(target)), mode=0o600)

    def _persist(self, target: AppliedState, stop: threading.Event) -> None:
        """The background writer's work, in a worker thread: ``target``'s files, then its state.

        haproxy.cfg streams from the template to its file, never whole in
        memory (config.render_config). Once ``stop`` is set the write gives
        up (:class:`_Abandoned`) at its next file or piece (see
        writer_paused), as a crash half-way would leave it: some files newer
        than the state, which is written last, and all of them behind
        HAProxy. A restarted controller adopts the older state and re-asserts
        it, or, if haproxy.cfg is not the one the state renders, reloads.
        """
        with cyclic_gc_paused():
            for file in render_files(target, self._options):
                if stop.is_set():
                    raise _Abandoned
                atomic_write(file.path, file.content, mode=file.mode)
            config = render_config(target, self._options, self._templates, self._sections)
            atomic_write_chunks(self._options.paths.config, _unless(stop, config), mode=CONFIG_MODE)
        self._finish(target, stop)

    def _persist_later(self, target: AppliedState) -> None:
        """Write ``target``'s files and state soon, off the event loop.

        HAProxy already runs ``target`` (runtime commands); its files matter
        only at the next reload or controller restart, and rendering and
        serialising them grows with the cluster (about 2 s at 10k Ingresses).
        So a single writer task does it in a worker thread, always for the
        latest target: a burst of endpoint changes costs one write, and the
        event loop stays free for the next event. What is on disk lags
        behind HAProxy, never ahead of it: a controller that restarts before
        the write adopts the previous state and re-asserts it, and the next
        sync brings HAProxy forward again.
        """
        self._unwritten = target
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_unwritten(), name="applier-writer")

    async def _quiet_moment(self) -> None:
        """Wait until no newer target came for WRITE_QUIET s (at most WRITE_MAX_DELAY s).

        The write renders and serialises the whole cluster in a thread that
        shares the interpreter with the event loop: started in the middle of a
        burst of endpoint events (a rollout), it slows every one of them that
        follows. Waiting for the burst to end costs nothing the design relies
        on, as the files only ever lag behind HAProxy.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WRITE_MAX_DELAY
        while not self._write_now.is_set():
            seen, remaining = self._unwritten, deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._write_now.wait(), min(WRITE_QUIET, remaining))
            except TimeoutError:
                if self._unwritten is seen:
                    return

    async def _write_unwritten(self) -> None:
        while self._unwritten is not None:
            await self._quiet_moment()
            async with self._writing:
                target = self._unwritten
                if target is None:
                    return
                # Once in a row at most, so that a steady run of full syncs
                # cannot hold the files back for ever: the next write finishes.
                stop = self._stop if not self._abandoned else threading.Event()
                try:
                    await asyncio.to_thread(self._persist, target, stop)
                except _Abandoned:
                    self._abandoned = True
                    continue
                except OSError as error:
                    # Kept for the next attempt: the next runtime apply, flush or
                    # reload (which renders everything anyway) tries again.
                    self._write_error = error
                    logger.error("could not write HAProxy's files for the applied state: %s", error)
                    return
            self._abandoned = False
            self._write_error = None
            if self._unwritten is target:
                self._unwritten = None

    @contextlib.asynccontextmanager
    async def writer_paused(self) -> AsyncIterator[None]:
        """No background write runs in the block; one under way gives up at its next piece.

        For a full sync's translation and plan. The writer renders and
        encodes the whole cluster (haproxy.cfg, the state) of the last
        runtime-only apply; done at the same time as a translation and plan
        of the next view, two generations of the biggest objects lived at
        once, and that made the controller's high-water mark at 10k Ingresses
        (bench/README.md, controller memory). The write is worth nothing
        then: once the sync applies, the files of its target are due instead.
        A write that was given up is not given up for the next pause (see
        _write_unwritten): it finishes, and the block waits for it.
        """
        self._stop.set()
        try:
            async with self._writing:
                yield
        finally:
            self._stop.clear()

    async def flush(self) -> None:
        """Write the files of every runtime-only apply now; raises OSError if they cannot be."""
        if self._unwritten is not None and (self._writer is None or self._writer.done()):
            self._writer = asyncio.create_task(self._write_unwritten(), name="applier-writer")
        if self._writer is not None:
            self._write_now.set()
            try:
                await asyncio.shield(self._writer)
            finally:
                self._write_now.clear()
        if self._unwritten is not None and self._write_error is not None:
            raise self._write_error

    def _remove_stale_certificates(self, target: AppliedState) -> None:
        paths = self._options.paths
        keep = {certificate_path(paths, c.name) for c in target.certificates}
        # proxy-ssl-secret's files (config.upstream_*_path).
        keep |= {
            path
            for tls in target.structure.upstream_tls
            for path in (upstream_client_path(paths, tls.name), upstream_ca_path(paths, tls.name))
        }
        # auth-tls CA and CRL files (config.host_tls_files).
        keep |= {
            path
            for tls in target.structure.host_tls
            if tls.secret
            for path in (client_ca_path(paths, tls.ca_name), client_crl_path(paths, tls.ca_name))
        }
        for pem in self._options.paths.certs.glob("*.pem"):
            if pem not in keep and pem.name != "default.pem":
                remove_if_exists(pem)

    async def _execute(self, operations: Sequence[Operation], target: AppliedState) -> None:
        paths = self._options.paths
        # A host's crt-list entry carries its options (client CA, ciphers):
        # unchanged since the last reload, or the plan would have reloaded.
        # Only certificate changes read them: an endpoint change does not
        # build the table of every TLS host (1,000 at 10k Ingresses).
        host_tls: Mapping[str, HostTLS] = (
            {tls.host: tls for tls in target.structure.host_tls}
            if any(isinstance(op, PutCertificate) for op in operations)
            else {}
        )
        upstream: Mapping[str, tuple[str, str]] | None = None  # only if a server is added
        added: list[Command] = []
        cookies: dict[str, Command] = {}
        for operation in operations:
            if isinstance(operation, AddServer):
                if upstream is None:
                    upstream = upstream_tls_files(paths, target.structure)
                added.extend(
                    add_server_commands(operation, upstream, target.structure.check_stretch)
                )
                if operation.settings.affinity == "cookie" and not operation.pool:
                    cookies[operation.backend] = commands.enable_dynamic_cookie(operation.backend)

        def chunks() -> Iterator[list[Command]]:
            # New servers exist (in maintenance, with their cookies) before any
            # state command: a refused add fails the batch before traffic moves.
            chunk = [*added, *cookies.values()]
            for operation in operations:
                if isinstance(operation, SetServer):
                    chunk.extend(server_commands(operation))
                    if len(chunk) >= EXECUTE_CHUNK:
                        yield chunk
                        chunk = []
            if chunk:
                yield chunk

        for chunk in chunks():
            await self._client.execute(chunk)
        for operation in operations:
            if isinstance(operation, ReplaceMap):
                await self._client.replace_map(map_path(paths, operation.name), operation.entries)
            elif isinstance(operation, PutCertificate):
                cert = operation.certificate
                pem_path = certificate_path(paths, cert.name)
                await self._client.replace_cert(pem_path, cert.pem)
                if operation.hosts_changed:
                    if operation.loaded:
                        await self._client.del_crt_list_entries(paths.crt_list, pem_path)
                    for host in cert.hosts:
                        words = crt_list_options(paths, host_tls.get(host))
                        await self._client.add_crt_list_entry(
                            paths.crt_list, pem_path, host, ALPN, words[2:]
                        )
            elif isinstance(operation, PutClientCA):
                # The same Secret, new content (a rotated CA, a fresh CRL).
                await self._client.replace_ssl_file(
                    "ca-file", client_ca_path(paths, operation.name), operation.ca
                )
                if operation.crl:
                    await self._client.replace_ssl_file(
                        "crl-file", client_crl_path(paths, operation.name), operation.crl
                    )
            elif isinstance(operation, ReplaceAddressList):
                await self._client.replace_acl(
                    address_list_path(paths, operation.policy, deny=operation.deny),
                    operation.networks,
                )
            elif isinstance(operation, RemoveCertificate):
                pem_path = certificate_path(paths, operation.name)
                await self._client.del_crt_list_entries(paths.crt_list, pem_path)
                await self._client.del_cert(pem_path)


def crt_list_keys(
    config: Path, files: Iterable[RenderedFile], paths: HAProxyPaths, *, live: HAProxyPaths
) -> dict[str, bytes | None]:
    """Each line of the crt-list among ``files`` (newline kept) → what loading it depends on.

    That is one digest of the line, the content of every file it names,
    and what every line is loaded under: the global section of ``config``
    (crt-base, ssl-default-bind-*, tune.ssl.*) and its binds that read the
    crt-list. Paths count relative to ``paths.base`` and ``live.base`` (a
    check in a scratch directory keeps the live sockets), so a scratch check
    and the live files agree. A line naming a file that is not among
    ``files`` (the default certificate, written once at start) has no key:
    always checked.
    """
    # The scratch directory lies inside the live one: the longer first.
    bases = sorted({f"{paths.base}/", f"{live.base}/"}, key=len, reverse=True)

    def relative(text: str) -> bytes:
        for base in bases:
            text = text.replace(base, "")
        return text.encode()

    contents = {str(file.path): file.content for file in files}
    # The global section and the binds naming the crt-list, read line by
    # line: haproxy.cfg (~11 MB at 10k Ingresses) is never whole in memory.
    needle = f" crt-list {paths.crt_list} ".encode()
    context: list[bytes] = []
    in_global = True
    with config.open("rb") as lines:
        for text in lines:
            in_global = in_global and not text.startswith(b"defaults")
            if in_global or needle in text:
                context.append(text)
    shared = hashlib.sha256(relative(b"".join(context).decode())).digest()
    keys: dict[str, bytes | None] = {}
    for line in contents.get(str(paths.crt_list), b"").decode().splitlines(keepends=True):
        digest = hashlib.sha256(shared + relative(line))
        for word in line.replace("[", " ").replace("]", " ").split():
            if word.startswith("/"):
                if word not in contents:
                    keys[line] = None
                    break
                digest.update(hashlib.sha256(contents[word]).digest())
        else:
            keys[line] = digest.digest()
    return keys


def _replaced(source: BinaryIO, old: bytes, new: bytes) -> Iterator[bytes]:
    """``source``'s content with ``old`` replaced by ``new``, in pieces of whole lines.

    For the configuration ``haproxy -c`` checks (Applier._check): replaced
    whole, it was a second copy of haproxy.cfg (~11 MB at 10k Ingresses).
    ``old`` must not span lines (a bind's crt-list path does not).
    """
    while lines := source.readlines(CHECKED_CHUNK):
        yield b"".join(lines).replace(old, new)


class _Abandoned(Exception):
    """A background write gave up for a full sync (Applier.writer_paused)."""


def _unless(stop: threading.Event | None, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks``, raising _Abandoned before the next one once ``stop`` is set."""
    for chunk in chunks:
        if stop is not None and stop.is_set():
            raise _Abandoned
        yield chunk


@dataclass(frozen=True)
class _ScratchPaths(HAProxyPaths):
    """Files under a scratch directory, sockets and server state where HAProxy has them."""

    live: HAProxyPaths

    @property
    def runtime_socket(self) -> Path:
        return self.live.runtime_socket

    @property
    def master_socket(self) -> Path:
        return self.live.master_socket

    @property
    def https_socket(self) -> Path:
        return self.live.https_socket

    @property
    def pid_file(self) -> Path:
        return self.live.pid_file

    @property
    def server_state(self) -> Path:
        return self.live.server_state


def add_server_commands(
    operation: AddServer, upstream: Mapping[str, tuple[str, str]], stretch: int = 1
) -> list[Command]:
    """``add server`` for a slot (and its twin), with its checks on; it stays in maintenance.

    The options are the backend's default-server ones (config.server_options)
    and the slot's share of maxconn. A twin added at run time cannot track
    its slot (2.6 refuses to track a dynamic server), so it has a check of
    its own and gets the slot's state from SetServer.twin_state.
    """
    settings = operation.settings
    endpoint = operation.endpoint
    address, port = (
        (endpoint.address, endpoint.port) if endpoint is not None else FREE_SLOT_ENDPOINT
    )
    if operation.pool:  # TCP, no twins, the pod's whole maxconn
        options = pool_server_options(settings, stretch)
        servers = [(operation.server, settings.maxconn)]
    else:
        tls = upstream.get(settings.proxy_ssl_secret or "", ("", ""))
        options = server_options(settings, tls, stretch)
        shares = settings.slot_maxconn or (None, None)
        servers = [] if operation.only_twin else [(operation.server, shares[0])]
        if operation.twin:
            servers.append((twin_name(operation.server), shares[1]))
    result = []
    for name, maxconn in servers:
        words = options if maxconn is None else (*options, "maxconn", str(maxconn))
        result.append(
            commands.add_server(
                operation.backend,
                name,
                server_id(name),
                ipaddress.ip_address(address),
                port,
                options=words,
            )
        )
        if settings.health_check:
            result.append(commands.enable_health(operation.backend, name))
    return result


def server_commands(operation: SetServer) -> list[Command]:
    """The runtime commands for one slot change (address first, then state).

    A twin gets the slot's address; its state follows the slot's (``track``:
    HAProxy passes maintenance and drain on to the servers tracking it), or
    is set with it when the twin was added at run time (``twin_state``).
    """
    backend, server = operation.backend, operation.server
    states = [server]
    if operation.twin_state and operation.twin_server is not None:
        states.append(operation.twin_server)
    endpoint = operation.endpoint
    if endpoint is None:
        return [
            commands.set_server_state(backend, name, ServerState.MAINT.value) for name in states
        ]
    result = []
    previous = operation.previous
    if previous is None or previous.key != endpoint.key:
        address = ipaddress.ip_address(endpoint.address)
        for name in (server, operation.twin_server):
            if name is not None:
                result.append(commands.set_server_addr(backend, name, address, endpoint.port))
    result.extend(commands.set_server_state(backend, name, endpoint.state.value) for name in states)
    return result
