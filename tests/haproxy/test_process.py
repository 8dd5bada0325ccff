"""Master-worker control against a real HAProxy 2.6: start, reload, adopt, stop."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from haproxy_ingress.haproxy.commands import set_server_addr, set_server_state
from haproxy_ingress.haproxy.files import atomic_write, atomic_write_chunks, remove_if_exists
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.haproxy.process import (
    ConfigCheckError,
    HAProxyError,
    HAProxyProcess,
    ReloadError,
    check_config,
)
from haproxy_ingress.haproxy.runtime import RuntimeClient
from tests.backends import Backend
from tests.haproxy.conftest import (
    HAPROXY,
    free_port,
    global_section,
    servers_state,
    set_weight,
    slots,
)
from tests.haproxy.stack import get

pytestmark = [pytest.mark.haproxy]


def write_config(
    paths: HAProxyPaths, port: int, version: str, extra: str = "", servers: str | None = None
) -> None:
    paths.config.write_text(
        global_section(paths)
        + f"""
frontend fe_http
    bind 127.0.0.1:{port}
    use_backend be_app if {{ path_beg /app }}
    default_backend be_version
{extra}
backend be_version
    http-request return status 200 content-type text/plain string {version}

backend be_app
    balance roundrobin
{slots(4) if servers is None else servers}"""
    )


class Instance:
    def __init__(self, base: Path) -> None:
        self.paths = HAProxyPaths(base)
        self.paths.ensure()
        self.port = free_port()
        self.process = HAProxyProcess(self.paths, binary=HAPROXY, stop_timeout=3.0)


@pytest.fixture
async def hx_instance(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Instance]:
    # A short base directory: UNIX socket paths are limited to 107 bytes.
    instance = Instance(tmp_path_factory.mktemp("p"))
    write_config(instance.paths, instance.port, "v1")
    try:
        yield instance
    finally:
        await instance.process.stop()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as proc_stat:
        return proc_stat.read().rsplit(")", 1)[1].split()[0] != "Z"


async def test_start_reload_and_broken_config(
    hx_instance: Instance, session: aiohttp.ClientSession
) -> None:
    process = hx_instance.process
    started = await process.start()
    assert process.running
    assert started.master_pid == process.master_pid
    assert len(started.worker_pids) == 1
    assert (started.reloads, started.failed) == (0, 0)
    assert await get(session, hx_instance.port, "/", "x") == (200, "v1")

    write_config(hx_instance.paths, hx_instance.port, "v2")
    reloaded = await process.reload()
    assert reloaded.master_pid == started.master_pid
    assert reloaded.reloads == started.reloads + 1
    assert len(reloaded.worker_pids) == 1
    assert reloaded.worker_pids[0] not in started.worker_pids
    assert await get(session, hx_instance.port, "/", "x") == (200, "v2")

    hx_instance.paths.config.write_text(
        hx_instance.paths.config.read_text() + "\nbackend be_broken\n    bogus_keyword 1\n"
    )
    # The caller's check (the applier runs it once, on the candidate file)...
    with pytest.raises(ConfigCheckError) as caught:
        await check_config(hx_instance.paths.config, binary=HAPROXY)
    assert "[ALERT]" in caught.value.output and "bogus_keyword" in caught.value.output
    # ...and HAProxy's own refusal if it is reloaded anyway: the old worker serves on.
    with pytest.raises(ReloadError, match="failed to load"):
        await process.reload()
    unchanged = await process.show_proc()
    assert unchanged.worker_pids == reloaded.worker_pids
    assert unchanged.failed == reloaded.failed + 1
    assert await get(session, hx_instance.port, "/", "x") == (200, "v2")


async def test_load_failure_after_a_valid_check_keeps_the_old_worker(
    hx_instance: Instance, session: aiohttp.ClientSession
) -> None:
    process = hx_instance.process
    started = await process.start()
    # `haproxy -c` does not bind, so a port taken by someone else only fails
    # when the master loads the configuration.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy_port = taken.getsockname()[1]
        write_config(
            hx_instance.paths,
            hx_instance.port,
            "v2",
            extra=f"\nfrontend fe_busy\n    bind 127.0.0.1:{busy_port}\n"
            "    default_backend be_version\n",
        )
        with pytest.raises(ReloadError):
            await process.reload()
    after = await process.show_proc()
    assert after.failed == started.failed + 1
    assert after.worker_pids == started.worker_pids
    assert await get(session, hx_instance.port, "/", "x") == (200, "v1")

    write_config(hx_instance.paths, hx_instance.port, "v3")  # and it recovers
    recovered = await process.reload()
    assert recovered.worker_pids != started.worker_pids
    assert await get(session, hx_instance.port, "/", "x") == (200, "v3")


async def test_server_state_survives_reload_and_client_follows(
    hx_instance: Instance, hx_backends: list[Backend], session: aiohttp.ClientSession
) -> None:
    alpha, beta = hx_backends
    process = hx_instance.process
    await process.start()
    addr = ipaddress.ip_address
    async with RuntimeClient(hx_instance.paths.runtime_socket) as client:
        await client.execute(
            [
                set_server_addr("be_app", "s1", addr(alpha.host), alpha.port),
                set_server_state("be_app", "s1", "ready"),
                set_weight("be_app", "s1", 7),
                set_server_addr("be_app", "s2", addr(beta.host), beta.port),
                set_server_state("be_app", "s2", "ready"),
                set_server_state("be_app", "s2", "drain"),
                set_server_addr("be_app", "s3", addr("127.0.0.4"), 9),
                set_server_state("be_app", "s3", "ready"),
                set_server_state("be_app", "s3", "maint"),
                # Filled at runtime, but the new render frees it again.
                set_server_addr("be_app", "s4", addr("127.0.0.5"), 7),
                set_server_state("be_app", "s4", "ready"),
            ]
        )
        old_worker = client.worker_pid

        # What the controller renders for that state: filled slots with their
        # current address, free ones as disabled placeholders.
        rendered = (
            f"    server s1 127.0.0.2:{alpha.port}\n"
            f"    server s2 127.0.0.3:{beta.port}\n"
            "    server s3 127.0.0.4:9\n"
            "    server s4 127.0.0.1:1 disabled\n"
        )
        write_config(hx_instance.paths, hx_instance.port, "v2", servers=rendered)
        layout = {
            ("be_app", "s1"): (alpha.host, alpha.port),
            ("be_app", "s2"): (beta.host, beta.port),
            ("be_app", "s3"): ("127.0.0.4", 9),
        }
        info = await process.reload(layout)
        assert not hx_instance.paths.server_state.exists()  # true only for that instant

        # The client was attached to the old worker: it must follow on its own.
        rows = await servers_state(client, "be_app")
        assert client.worker_pid in info.worker_pids and client.worker_pid != old_worker

    s1, s2, s3, s4 = (rows[f"s{i}"] for i in range(1, 5))
    assert (s1["srv_addr"], s1["srv_port"], s1["srv_op_state"]) == (
        "127.0.0.2",
        str(alpha.port),
        "2",
    )
    assert int(s1["srv_admin_state"]) & 0x9 == 0  # neither maint nor drain
    assert s1["srv_uweight"] == "7"
    assert (s2["srv_addr"], s2["srv_port"]) == ("127.0.0.3", str(beta.port))
    assert int(s2["srv_admin_state"]) & 0x8  # drain kept
    assert s3["srv_op_state"] != "2"  # still out of traffic
    # The freed slot stays down: without the filter 2.6.12 brings it back
    # READY at 127.0.0.1:7 (saved port, config address).
    assert int(s4["srv_admin_state"]) & 0x1
    assert (s4["srv_addr"], s4["srv_port"]) == ("127.0.0.1", "1")

    # Traffic after the reload: the drained slot gets no new clients.
    bodies = {(await get(session, hx_instance.port, "/app", "x"))[1] for _ in range(6)}
    assert bodies == {"alpha /app"}


async def test_a_change_sent_right_after_a_reload_reaches_the_new_worker(
    hx_instance: Instance,
) -> None:
    """The first batch goes out behind the liveness probe, in one write (runtime.py):
    on a stopping worker it runs there for nothing and must be sent again."""
    process = hx_instance.process
    await process.start()
    async with RuntimeClient(hx_instance.paths.runtime_socket) as client:
        await client.execute([set_weight("be_app", "s1", 7)])
        old_worker = client.worker_pid
        info = await process.reload()
        await client.execute([set_weight("be_app", "s1", 9)])  # the connection is on old_worker
        new_worker = client.worker_pid
        assert new_worker in info.worker_pids and new_worker != old_worker
    async with RuntimeClient(hx_instance.paths.runtime_socket) as fresh:
        assert fresh.worker_pid == new_worker
        assert (await servers_state(fresh, "be_app"))["s1"]["srv_uweight"] == "9"


async def test_adopt_and_stop_an_adopted_master(
    hx_instance: Instance, tmp_path_factory: pytest.TempPathFactory, session: aiohttp.ClientSession
) -> None:
    assert await HAProxyProcess(HAProxyPaths(tmp_path_factory.mktemp("e"))).adopt() is None

    started = await hx_instance.process.start()
    with pytest.raises(HAProxyError, match="adopt"):
        await HAProxyProcess(hx_instance.paths, binary=HAPROXY).start()

    # A restarted controller: a new object attaches to the running master.
    adopter = HAProxyProcess(hx_instance.paths, binary=HAPROXY, stop_timeout=3.0)
    adopted = await adopter.adopt()
    assert adopted is not None and adopter.running
    assert adopted.master_pid == started.master_pid
    assert adopted.worker_pids == started.worker_pids

    write_config(hx_instance.paths, hx_instance.port, "v2")
    reloaded = await adopter.reload()
    assert reloaded.worker_pids != started.worker_pids
    assert await get(session, hx_instance.port, "/", "x") == (200, "v2")

    await adopter.stop()
    for pid in (started.master_pid, *reloaded.worker_pids):
        assert not alive(pid)
    assert not adopter.running


async def test_stop_leaves_no_process(hx_instance: Instance) -> None:
    process = hx_instance.process
    started = await process.start()
    write_config(hx_instance.paths, hx_instance.port, "v2")
    reloaded = await process.reload()
    pids = {started.master_pid, *started.worker_pids, *reloaded.worker_pids}
    await process.stop()
    assert not process.running
    assert [pid for pid in pids if alive(pid)] == []
    await process.stop()  # idempotent


async def test_start_refuses_a_broken_config(hx_instance: Instance) -> None:
    hx_instance.paths.config.write_text("global\n    no_such_keyword\n")
    with pytest.raises(HAProxyError, match="no_such_keyword"):
        await hx_instance.process.start()
    assert not hx_instance.process.running


# --- the file writes the reload relies on --------------------------------------------


def test_atomic_write_skips_identical_content_and_fixes_mode(tmp_path: Path) -> None:
    target = tmp_path / "key.pem"
    assert atomic_write(target, b"one", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    inode = target.stat().st_ino
    assert not atomic_write(target, b"one", mode=0o600)
    assert target.stat().st_ino == inode  # not rewritten
    target.chmod(0o644)
    assert not atomic_write(target, b"one", mode=0o600)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert atomic_write(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two"
    assert atomic_write(target, b"longer", mode=0o600)  # another size: not read to compare
    assert target.read_bytes() == b"longer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key.pem"]


def test_atomic_write_keeps_the_old_file_when_the_disk_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "hosts.map"
    atomic_write(target, b"old content\n")

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError) as caught:
        atomic_write(target, b"new content\n")
    assert caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts.map"]


def test_atomic_write_keeps_the_old_file_on_a_read_only_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root ignores directory permissions, so the refusal a read-only mount
    # gives at file creation is injected where the kernel would raise it.
    target = tmp_path / "f"
    atomic_write(target, b"old")

    def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OSError) as caught:
        atomic_write(target, b"new")
    assert caught.value.errno == errno.EROFS
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_file_written_in_chunks_is_whole_or_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "applied.json"
    atomic_write(target, b"old")

    def failing() -> Iterator[bytes]:
        yield b"{"
        raise RuntimeError("the encoder failed half-way")

    with pytest.raises(RuntimeError):
        atomic_write_chunks(target, failing(), mode=0o600)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["applied.json"]
    atomic_write_chunks(target, iter([b"{", b'"a":1', b"}"]), mode=0o600)
    assert target.read_bytes() == b'{"a":1}'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_file_written_in_chunks_is_left_alone_when_unchanged(tmp_path: Path) -> None:
    target = tmp_path / "haproxy.cfg"
    assert atomic_write_chunks(target, [b"global\n", b"defaults\n"], mode=0o600)
    os.utime(target, (1, 1))
    os.chmod(target, 0o644)
    # The same bytes in other pieces: not rewritten (mtime kept), only the mode put right.
    assert not atomic_write_chunks(target, [b"glo", b"bal\ndefaults\n"], mode=0o600)
    assert target.stat().st_mtime == 1
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # A prefix, a longer file, one byte else: each replaces the file.
    for content in (b"global\n", b"global\ndefaults\n\n", b"global\ndefaultz\n"):
        assert atomic_write_chunks(target, [content[:4], content[4:]], mode=0o600)
        assert target.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["haproxy.cfg"]


def test_remove_if_exists(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"x")
    assert remove_if_exists(target)
    assert not remove_if_exists(target)
