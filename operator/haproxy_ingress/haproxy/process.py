"""Start, adopt, reload and stop HAProxy in master-worker mode.

The master stays in the foreground as our child (``-W`` without ``-D``) and is
driven through its CLI socket. Facts this relies on, checked on 2.6.12:

* ``reload`` on the master CLI prints nothing; success is judged from
  ``show proc``: the master's reload counter grows and a new worker pid shows
  up, while a configuration that fails to load bumps ``failed`` and leaves the
  old worker serving.
* During the re-exec the master socket refuses connections for ~100 ms.
* In non-interactive mode the master CLI answers ``show proc`` but keeps the
  connection open until the client shuts down its side, so every master
  command is sent with a write-EOF.
* The stats socket is handed to the new worker (same inode, no re-bind); the
  old worker keeps serving already open runtime connections until it stops,
  which is why :meth:`HAProxyProcess.reload` waits until every old worker
  reports ``Stopping: 1`` before returning.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import os
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from haproxy_ingress.haproxy import messages
from haproxy_ingress.haproxy.commands import Command, ServersState, parse_servers_state
from haproxy_ingress.haproxy.files import atomic_write, remove_if_exists
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.haproxy.runtime import oneshot

logger = logging.getLogger(__name__)

SHOW_SERVERS_STATE: Final = Command(("show", "servers", "state"))
_MASTER_LINE_RE: Final = re.compile(r"(\d+)\s+master\s+(\d+)\s+\[failed:\s*(\d+)\]")
_PROCESS_LINE_RE: Final = re.compile(r"(\d+)\s+(\S+)\s+(\d+)\s")
_ADOPT_RETRY_SECONDS = 2.0
_POLL_INTERVAL: Final = 0.05
_OUTPUT_LINES_KEPT: Final = 40
# `haproxy -c` of even a huge configuration takes seconds; a hang is a bug.
_CHECK_TIMEOUT: Final = 120.0


class HAProxyError(Exception):
    """HAProxy could not be started, reached, reloaded or stopped."""


class ConfigCheckError(HAProxyError):
    """``haproxy -c`` rejected a configuration; ``output`` holds the [ALERT] lines."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(f"{message}\n{output}" if output else message)
        self.output = output


class ReloadError(HAProxyError):
    """A reload did not produce a new worker; the previous worker keeps serving."""


@dataclass(frozen=True)
class ProcInfo:
    """What the master CLI's ``show proc`` reports."""

    master_pid: int
    reloads: int
    failed: int
    worker_pids: tuple[int, ...]
    old_worker_pids: tuple[int, ...]


def parse_show_proc(text: str) -> ProcInfo:
    """Parse 2.6's ``show proc``.

    The master line reads ``<pid> master <reloads> [failed: <n>] ...``; workers
    follow under ``# workers`` and, while they drain, ``# old workers``.
    """
    master: tuple[int, int, int] | None = None
    workers: list[int] = []
    old_workers: list[int] = []
    section = ""
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.strip("# ").strip()
            continue
        if master is None and (match := _MASTER_LINE_RE.match(line)):
            master = (int(match[1]), int(match[2]), int(match[3]))
            continue
        match = _PROCESS_LINE_RE.match(line)
        if match is None or match[2] != "worker":
            continue
        if section == "workers":
            workers.append(int(match[1]))
        elif section == "old workers":
            old_workers.append(int(match[1]))
    if master is None:
        raise HAProxyError(f"no master line in show proc output {text[:200]!r}")
    return ProcInfo(
        master_pid=master[0],
        reloads=master[1],
        failed=master[2],
        worker_pids=tuple(workers),
        old_worker_pids=tuple(old_workers),
    )


async def check_config(config: Path, *, binary: str = "haproxy") -> None:
    """``haproxy -c -f CONFIG``; raise ConfigCheckError with the alerts on failure.

    Exit status 0 means valid even with warnings (a server-state-file that does
    not exist yet always warns), so warnings are not treated as errors.
    """
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-c",
        "-f",
        str(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT):
            stdout, stderr = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode == 0:
        return
    text = (stderr + stdout).decode("utf-8", errors="replace")
    alerts = [line for line in text.splitlines() if line.startswith("[ALERT]")]
    output = "\n".join(alerts) if alerts else text.strip()
    logger.warning(
        "configuration rejected config=%s rc=%s",
        config,
        proc.returncode,
        extra={"config": str(config), "alerts": output},
    )
    raise ConfigCheckError(f"haproxy -c rejected {config}", output)


# (backend, server) → (address, port): the slots a configuration renders enabled.
ServerLayout = Mapping[tuple[str, str], tuple[str, int]]


def filter_server_state(state: ServersState, layout: ServerLayout) -> tuple[str, list[str]]:
    """Keep only the state rows the new configuration agrees with.

    Measured on 2.6.12 with ``load-server-state-from-file``:

    * the state file's *address* is not applied to servers configured with an
      IP address, but its *port* is: a slot re-rendered as
      ``127.0.0.1:1 disabled`` comes back as 127.0.0.1:<old port>;
    * a slot that was enabled at runtime and is rendered ``disabled`` again
      comes back READY (the saved admin state lacks the forced-maintenance
      bit), i.e. live traffic to 127.0.0.1:<old port>.

    So the configuration wins wherever it says something else: only rows of
    servers ``layout`` has enabled, at the same address and port, are kept.
    They carry drain, maintenance, weight and check state of the very same
    endpoint across the reload. Returns the file content and the dropped
    ``backend/server`` names.
    """
    kept = []
    dropped = []
    for row in state.rows:
        key = (row.get("be_name", ""), row.get("srv_name", ""))
        expected = layout.get(key)
        if expected is not None and _same_endpoint(row, *expected):
            kept.append(row)
        else:
            dropped.append("/".join(key))
    return state.file(kept), dropped


def _same_endpoint(row: Mapping[str, str], address: str, port: int) -> bool:
    try:
        same_host = ipaddress.ip_address(row.get("srv_addr", "")) == ipaddress.ip_address(address)
    except ValueError:
        return False
    return same_host and row.get("srv_port") == str(port)


class HAProxyProcess:
    """One HAProxy master (and its workers) living under ``paths``."""

    def __init__(
        self,
        paths: HAProxyPaths,
        *,
        binary: str = "haproxy",
        timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self._paths = paths
        self._binary = binary
        self._timeout = timeout
        self._stop_timeout = stop_timeout
        self._child: asyncio.subprocess.Process | None = None
        self._master_pid: int | None = None
        self._output_task: asyncio.Task[None] | None = None
        # The tail of HAProxy's own output, quoted in start/reload errors.
        self._output: collections.deque[str] = collections.deque(maxlen=_OUTPUT_LINES_KEPT)
        # Starting or reloading: alerts now are quoted in the error that follows.
        self._transition = False

    @property
    def paths(self) -> HAProxyPaths:
        return self._paths

    @property
    def master_pid(self) -> int | None:
        return self._master_pid

    @property
    def running(self) -> bool:
        if self._child is not None:
            return self._child.returncode is None
        return self._master_pid is not None and _pid_alive(self._master_pid)

    # --- lifecycle --------------------------------------------------------------

    async def start(self) -> ProcInfo:
        """Start the master on the (checked) configuration, wait for its first worker.

        A configuration that fails to load raises HAProxyError with HAProxy's
        own alerts. A server-state file left by an earlier instance is removed first: on a
        cold start the rendered configuration is the truth, and stale slot
        addresses must not come back to life.
        """
        if self.running:
            raise HAProxyError("HAProxy is already running under this controller")
        paths = self._paths
        paths.ensure()
        if "," in str(paths.master_socket):
            raise HAProxyError(f"{paths.master_socket}: ',' separates -S options")
        try:
            info = await self.show_proc()
        except HAProxyError:
            pass  # nothing answers: the normal case
        else:
            raise HAProxyError(
                f"a master (pid {info.master_pid}) already answers on {paths.master_socket};"
                " adopt() it instead"
            )
        remove_if_exists(paths.server_state)

        self._output.clear()
        child = await asyncio.create_subprocess_exec(
            self._binary,
            "-W",
            "-S",
            f"{paths.master_socket},mode,600,level,admin",
            "-f",
            str(paths.config),
            "-p",
            str(paths.pid_file),
            stdin=asyncio.subprocess.DEVNULL,
            # Traffic logs (`log stdout`) go straight to our own stdout: passing
            # thousands of lines a second through Python would delay syncs.
            # HAProxy's own messages (stderr) are read, logged and kept for errors.
            stdout=None,
            stderr=asyncio.subprocess.PIPE,
            # Its own session: a Ctrl-C aimed at `kopf run` must not kill the
            # data plane behind the controller's back; stop() does that.
            start_new_session=True,
        )
        self._child = child
        self._master_pid = child.pid
        self._output_task = asyncio.create_task(
            self._forward_output(child), name=f"haproxy-output-{child.pid}"
        )
        logger.debug("haproxy master started pid=%d", child.pid, extra={"master_pid": child.pid})
        self._transition = True
        try:
            info = await self._wait_for_first_worker(child)
        except BaseException:
            await self._terminate()
            raise
        finally:
            self._transition = False
        logger.info(
            "haproxy ready master_pid=%d workers=%s",
            info.master_pid,
            info.worker_pids,
            extra={"master_pid": info.master_pid, "worker_pids": list(info.worker_pids)},
        )
        return info

    async def _wait_for_first_worker(self, child: asyncio.subprocess.Process) -> ProcInfo:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while True:
            if child.returncode is not None:
                if self._output_task is not None:
                    # Let the last lines (the reason it died) reach the buffer.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self._output_task), 1.0)
                raise HAProxyError(
                    f"haproxy exited with status {child.returncode} during start:\n"
                    + self._recent_output()
                )
            with contextlib.suppress(HAProxyError):
                info = await self.show_proc()
                if info.master_pid == child.pid and info.worker_pids:
                    return info
            if loop.time() >= deadline:
                raise HAProxyError(
                    f"no worker within {self._timeout}s of starting haproxy:\n"
                    + self._recent_output()
                )
            await asyncio.sleep(_POLL_INTERVAL)

    async def adopt(self) -> ProcInfo | None:
        """Attach to a master already running on our socket (controller restart).

        A master that is re-executing (a reload) refuses connections for a
        moment, so an existing socket is retried briefly before giving up.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _ADOPT_RETRY_SECONDS
        while True:
            try:
                info = await self.show_proc()
                break
            except HAProxyError as error:
                if not self._paths.master_socket.exists() or loop.time() >= deadline:
                    logger.debug("nothing to adopt: %s", error)
                    return None
                await asyncio.sleep(_POLL_INTERVAL)
        self._master_pid = info.master_pid
        logger.info(
            "adopted running haproxy master_pid=%d workers=%s",
            info.master_pid,
            info.worker_pids,
            extra={"master_pid": info.master_pid, "worker_pids": list(info.worker_pids)},
        )
        return info

    async def show_proc(self) -> ProcInfo:
        try:
            text = await self._master_command("show", "proc")
        except (OSError, TimeoutError) as error:
            raise HAProxyError(
                f"master CLI {self._paths.master_socket} unreachable: {error!r}"
            ) from error
        return parse_show_proc(text)

    async def reload(self, layout: ServerLayout | None = None) -> ProcInfo:
        """Swap in the configuration at ``paths.config`` without dropping traffic.

        The caller has checked the configuration (:func:`check_config`); one
        that fails to load anyway raises ReloadError with the old worker
        untouched. The runtime state of the servers that ``layout`` (the new
        configuration's enabled slots) agrees with is saved to the
        server-state file (see :func:`filter_server_state`), which the master
        reads while loading the new configuration; then the master
        re-executes. The state file is removed afterwards because it is only
        true for this instant. Without a layout no state is carried over.

        Render every filled slot with its current ``addr:port``: 2.6.12 does not
        restore addresses of IP-configured servers from the state file.
        """
        if self._master_pid is None:
            raise HAProxyError("no HAProxy to reload: start() or adopt() first")
        paths = self._paths
        before = await self.show_proc()
        self._transition = True
        try:
            await self._save_server_state(before, layout or {})
            with contextlib.suppress(OSError, TimeoutError):
                # Prints nothing on 2.6, and the master drops the connection as
                # it re-executes; a lost reply here means nothing either way.
                await self._master_command("reload")
            logger.debug(
                "haproxy reload requested reloads=%d workers=%s",
                before.reloads,
                before.worker_pids,
                extra={"master_pid": before.master_pid, "reloads": before.reloads},
            )
            info = await self._wait_for_new_worker(before)
            await self._wait_for_old_workers_stopping(before.worker_pids)
        finally:
            self._transition = False
            remove_if_exists(paths.server_state)
        logger.debug(
            "haproxy reloaded reloads=%d workers=%s old_workers=%s",
            info.reloads,
            info.worker_pids,
            info.old_worker_pids,
            extra={"master_pid": info.master_pid, "worker_pids": list(info.worker_pids)},
        )
        return info

    async def _save_server_state(self, before: ProcInfo, layout: ServerLayout) -> None:
        paths = self._paths
        if not before.worker_pids or not layout:
            # Nothing is serving, so there is no runtime state to carry over;
            # an old file would resurrect stale addresses.
            remove_if_exists(paths.server_state)
            return
        try:
            text = await oneshot(paths.runtime_socket, SHOW_SERVERS_STATE, self._timeout)
        except (OSError, TimeoutError) as error:
            raise ReloadError(
                f"cannot save server state through {paths.runtime_socket}: {error!r};"
                " not reloading, runtime changes would be lost"
            ) from error
        try:
            state = parse_servers_state(text)
        except ValueError as error:
            raise ReloadError(f"unexpected show servers state output: {error}") from None
        kept, dropped = filter_server_state(state, layout)
        atomic_write(paths.server_state, kept.encode(), mode=0o600)
        if dropped:
            logger.debug(
                "server state not carried over for servers=%s",
                ",".join(dropped),
                extra={"servers": dropped},
            )

    async def _wait_for_new_worker(self, before: ProcInfo) -> ProcInfo:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while True:
            try:
                info: ProcInfo | None = await self.show_proc()
            except HAProxyError:
                info = None  # the master refuses connections while re-executing
            if info is not None and info.failed > before.failed:
                raise ReloadError(
                    f"HAProxy failed to load the new configuration (failed={info.failed});"
                    f" worker(s) {info.worker_pids} keep serving the previous one\n"
                    + self._recent_output()
                )
            if (
                info is not None
                and info.reloads > before.reloads
                and set(info.worker_pids) - set(before.worker_pids)
            ):
                return info
            if loop.time() >= deadline:
                raise ReloadError(
                    f"no new worker within {self._timeout}s of the reload\n" + self._recent_output()
                )
            await asyncio.sleep(_POLL_INTERVAL)

    async def _wait_for_old_workers_stopping(self, old_pids: tuple[int, ...]) -> None:
        """Until an old worker has begun to stop, it may still accept runtime
        connections on the shared socket; callers reconnecting right after the
        reload must reach the new worker.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        pending = list(old_pids)
        while pending:
            pid = pending[0]
            try:
                text = await self._master_command(f"@!{pid}", "show", "info")
            except (OSError, TimeoutError):
                text = ""
            if "Stopping: 0" not in text:  # stopping, gone, or unreachable
                pending.pop(0)
                continue
            if loop.time() >= deadline:
                logger.warning("old worker not stopping pid=%d", pid, extra={"worker_pid": pid})
                return
            await asyncio.sleep(_POLL_INTERVAL)

    async def stop(self) -> None:
        """Soft-stop (SIGUSR1: finish in-flight requests), then SIGTERM, then SIGKILL.

        Only the master we started or adopted is signalled, by pid; its workers
        are waited for too, so nothing is left behind. Close runtime clients
        first: an open interactive CLI connection keeps a worker alive until
        the CLI idle timeout.
        """
        pid = self._master_pid
        if pid is None:
            return
        workers: tuple[int, ...] = ()
        with contextlib.suppress(HAProxyError):
            info = await self.show_proc()
            workers = info.worker_pids + info.old_worker_pids
        try:
            for sig, wait in (
                (signal.SIGUSR1, self._stop_timeout),
                (signal.SIGTERM, 5.0),
                (signal.SIGKILL, 5.0),
            ):
                if not self.running:
                    break
                logger.info(
                    "stopping haproxy master_pid=%d signal=%s",
                    pid,
                    sig.name,
                    extra={"master_pid": pid, "signal": sig.name},
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                if await self._wait_master_exit(wait):
                    break
            # Workers notice the master's death and exit on their own; make sure.
            for worker in workers:
                if not await _wait_pid_gone(worker, 5.0):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker, signal.SIGKILL)
                    await _wait_pid_gone(worker, 5.0)
        finally:
            await self._reset()
        logger.info("haproxy stopped master_pid=%d", pid, extra={"master_pid": pid})

    async def _wait_master_exit(self, seconds: float) -> bool:
        if self._child is not None:
            try:
                async with asyncio.timeout(seconds):
                    await self._child.wait()
            except TimeoutError:
                return False
            return True
        assert self._master_pid is not None
        return await _wait_pid_gone(self._master_pid, seconds)

    async def _terminate(self) -> None:
        """Kill a master that failed to start properly."""
        if self._child is not None and self._child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._child.kill()
            await self._child.wait()
        await self._reset()

    async def _reset(self) -> None:
        task = self._output_task
        self._child = None
        self._master_pid = None
        self._output_task = None
        if task is not None:
            # The pipe closes once every haproxy process is gone; do not hang
            # on a straggler that inherited it.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, 2.0)

    # --- plumbing -----------------------------------------------------------------

    async def _master_command(self, *words: str) -> str:
        return await oneshot(self._paths.master_socket, Command(words), self._timeout)

    async def _forward_output(self, child: asyncio.subprocess.Process) -> None:
        assert child.stderr is not None
        extra = {"master_pid": child.pid}
        while line_bytes := await child.stderr.readline():
            line = line_bytes.decode("utf-8", errors="replace").rstrip()
            if not line:
                continue
            self._output.append(line)
            level = messages.level(line, transition=self._transition)
            logger.log(level, "haproxy: %s", line, extra=extra)

    def _recent_output(self) -> str:
        return "\n".join(self._output)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


async def _wait_pid_gone(pid: int, seconds: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while _pid_alive(pid):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(_POLL_INTERVAL)
    return True
