"""Encoding and validation of runtime API commands, without HAProxy.

The reply strings below were captured from HAProxy 2.6.12 (Debian bookworm).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haproxy_ingress.haproxy.commands import (
    MAX_COMMAND_BYTES,
    Command,
    UnsafeArgumentError,
    add_server,
    parse_crt_list,
    parse_csv_stat,
    parse_servers_state,
    set_server_addr,
    set_server_state,
)
from haproxy_ingress.haproxy.process import filter_server_state, parse_show_proc
from haproxy_ingress.haproxy.runtime import RuntimeClient, RuntimeConnectionError

NOWHERE = Path("/nonexistent/haproxy.sock")


def test_plain_command_is_one_line() -> None:
    command = Command(("set", "server", "be_x/s1", "state", "ready"))
    assert command.encode() == b"set server be_x/s1 state ready\n"


def test_payload_command_ends_with_an_empty_line() -> None:
    command = Command(("add", "map", "@3", "/m.map"), payload=("a.example be_a", "b be_b"))
    assert command.encode() == b"add map @3 /m.map <<\na.example be_a\nb be_b\n\n"


@pytest.mark.parametrize(
    "word",
    [
        "",
        "a b",
        "a\tb",
        "a\nb",
        "a\rb",
        "a\x00b",
        "a\x1bb",
        "a;b",
        "show;",
        "a\\b",
        "#ref",
        "a#b",
        "<<",
        "<<x",
        "x<<",  # a line merely ending in '<<' switches 2.6 into payload mode
        "a<<b",
        "héllo",
        "a\x7fb",
    ],
)
def test_unsafe_words_are_refused(word: str) -> None:
    with pytest.raises(UnsafeArgumentError):
        Command(("show", word)).encode()


def test_empty_command_is_refused() -> None:
    with pytest.raises(UnsafeArgumentError):
        Command(()).encode()


@pytest.mark.parametrize("line", ["", "a\nb", "a\rb", "a\x00b", "a\tb", "ünïcode", "a\x7f"])
def test_unsafe_payload_lines_are_refused(line: str) -> None:
    with pytest.raises(UnsafeArgumentError):
        Command(("add", "map", "/m.map"), payload=("ok line", line)).encode()


def test_empty_payload_is_refused() -> None:
    with pytest.raises(UnsafeArgumentError):
        Command(("add", "map", "/m.map"), payload=()).encode()


def test_payload_takes_cli_syntax_literally() -> None:
    # Verified on 2.6.12: inside a payload ';', '#', '\\' and '<<' are plain text.
    command = Command(("add", "map", "/m.map"), payload=("a;b x#y", "c\\d <<", "<< e"))
    assert b"a;b x#y\nc\\d <<\n<< e\n\n" in command.encode()


def test_size_limit_counts_the_whole_command_with_payload() -> None:
    # 2.6.12 drops the connection once line + payload pass ~16.3 KB, even when
    # every single line is short.
    lines = tuple(f"key{i:05d} value" for i in range(1000))  # ~16 KB
    with pytest.raises(UnsafeArgumentError):
        Command(("add", "map", "/m.map"), payload=lines).encode()
    fits = tuple(f"key{i:05d} value" for i in range(800))
    assert len(Command(("add", "map", "/m.map"), payload=fits).encode()) < MAX_COMMAND_BYTES


def test_size_limit_on_a_single_line() -> None:
    with pytest.raises(UnsafeArgumentError):
        Command(("show", "x" * MAX_COMMAND_BYTES)).encode()
    Command(("show", "x" * (MAX_COMMAND_BYTES - 100))).encode()


def test_payload_is_not_in_repr_or_errors() -> None:
    command = Command(("set", "ssl", "cert", "/c.pem"), payload=("SECRET-KEY-MATERIAL",))
    assert "SECRET" not in repr(command)
    assert "SECRET" not in command.describe()


@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=5))
def test_accepted_words_round_trip(words: list[str]) -> None:
    command = Command(tuple(words))
    try:
        data = command.encode()
    except UnsafeArgumentError:
        return
    text = data.decode("ascii")
    assert text.endswith("\n") and text.count("\n") == 1
    assert ";" not in text and "\\" not in text and "<<" not in text
    assert text[:-1].split(" ") == words


# --- builders and the replies 2.6.12 really gives -----------------------------------


@pytest.mark.parametrize(
    ("addr", "port", "reply"),
    [
        (
            "10.0.0.5",
            8080,
            "IP changed from '127.0.0.1' to '10.0.0.5', port changed from '1' to '8080'"
            " by 'stats socket command'",
        ),
        (
            "10.0.0.5",
            8080,
            "no need to change the addr, no need to change the port by 'stats socket command'",
        ),
        (
            "10.0.0.6",
            8080,
            "IP changed from '10.0.0.5' to '10.0.0.6', no need to change the port"
            " by 'stats socket command'",
        ),
        (
            "10.0.0.6",
            8081,
            "no need to change the addr, port changed from '8080' to '8081'"
            " by 'stats socket command'",
        ),
        (
            "2001:db8:0:1::1",
            80,
            "IP changed from '10.0.0.7' to '2001:db8:0:1::1', port changed from '0' to '80'"
            " by 'stats socket command'",
        ),
    ],
)
def test_set_server_addr_accepts_real_replies(addr: str, port: int, reply: str) -> None:
    command = set_server_addr("be_x", "s1", ipaddress.ip_address(addr), port)
    assert command.words == ("set", "server", "be_x/s1", "addr", addr, "port", str(port))
    assert command.accepts(reply)


@pytest.mark.parametrize(
    "reply",
    [
        "No such server.",
        "No such backend.",
        "Invalid addr '10.0.0.9' by 'stats socket command'",
        # a different address or port than asked for
        "IP changed from '127.0.0.1' to '10.0.0.9', port changed from '1' to '8080'"
        " by 'stats socket command'",
        "IP changed from '127.0.0.1' to '10.0.0.5', port changed from '1' to '34463'"
        " by 'stats socket command'",
        "",
    ],
)
def test_set_server_addr_rejects_other_replies(reply: str) -> None:
    command = set_server_addr("be_x", "s1", ipaddress.ip_address("10.0.0.5"), 8080)
    assert not command.accepts(reply)


@pytest.mark.parametrize(
    ("reply", "accepted"),
    [
        ("New server registered.", True),
        ("Already exists a server with the same name in backend.", True),
        # 2.6.12 checks the id first: the same server, added before a restart
        ("'id' : custom id 3 already used at (null):0 ('server s3').", True),
        # the id taken by another server, or another id
        ("'id' : custom id 3 already used at (null):0 ('server s4').", False),
        ("'id' : custom id 30 already used at (null):0 ('server s3').", False),
        ("No such backend.", False),
    ],
)
def test_add_server_replies(reply: str, accepted: bool) -> None:
    command = add_server("be_x", "s3", 3, ipaddress.ip_address("10.0.0.5"), 80, options=())
    assert command.accepts(reply) is accepted


@pytest.mark.parametrize("port", [0, -1, 65536, 99999])
def test_set_server_addr_port_range(port: int) -> None:
    # 2.6.12 accepts port 0 and silently wraps 99999 to 34463.
    with pytest.raises(UnsafeArgumentError):
        set_server_addr("be_x", "s1", ipaddress.ip_address("10.0.0.5"), port)


def test_set_server_addr_refuses_scoped_ipv6() -> None:
    with pytest.raises(UnsafeArgumentError):
        set_server_addr("be_x", "s1", ipaddress.IPv6Address("fe80::1%eth0"), 80)


@pytest.mark.parametrize(
    ("backend", "server"),
    [("be x", "s1"), ("be;x", "s1"), ("be/x", "s1"), ("be", "s1/x"), ("", "s1")],
)
def test_server_builders_refuse_bad_names(backend: str, server: str) -> None:
    with pytest.raises(UnsafeArgumentError):
        set_server_state(backend, server, "ready")


def test_state_expects_an_empty_reply() -> None:
    state = set_server_state("be_x", "s1", "drain")
    assert state.encode() == b"set server be_x/s1 state drain\n"
    assert state.accepts("")
    assert not state.accepts("No such server.")
    assert not state.accepts("'set server <srv> state' expects 'ready', 'drain' and 'maint'.")
    with pytest.raises(UnsafeArgumentError):
        set_server_state("be_x", "s1", "up")  # type: ignore[arg-type]


# --- validation happens before any I/O ------------------------------------------------


async def test_execute_validates_every_command_before_connecting() -> None:
    client = RuntimeClient(NOWHERE)
    good = set_server_state("be_x", "s1", "ready")
    with pytest.raises(UnsafeArgumentError):
        await client.execute([good, Command(("show", "a;b"))])
    with pytest.raises(RuntimeConnectionError):
        await client.execute([good])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("a b", "be"),
        ("#comment", "be"),  # a comment in the map file the next reload reads
        ("", "be"),
        ("k", ""),  # 2.6.12: a key without value swallows the next payload line
        ("k", " be"),
        ("k", "be "),
        ("k", "b\te"),
        ("k\x00", "be"),
        ("ké", "be"),
    ],
)
async def test_replace_map_validates_entries_before_connecting(key: str, value: str) -> None:
    with pytest.raises(UnsafeArgumentError):
        await RuntimeClient(NOWHERE).replace_map(Path("/m.map"), [("ok", "be"), (key, value)])


async def test_replace_map_refuses_duplicates_and_relative_paths() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        await RuntimeClient(NOWHERE).replace_map(Path("/m.map"), [("k", "a"), ("k", "b")])
    with pytest.raises(UnsafeArgumentError):
        await RuntimeClient(NOWHERE).replace_map(Path("m.map"), [("k", "a")])


async def test_tls_helpers_validate_before_connecting() -> None:
    client = RuntimeClient(NOWHERE)
    with pytest.raises(UnsafeArgumentError):
        await client.replace_cert(Path("/c.pem"), "not a pem")
    with pytest.raises(UnsafeArgumentError):
        await client.replace_cert(Path("/c.pem"), "-----BEGIN X-----\n" + "A" * 64 * 300)
    for sni in ("Upper.example", "a b", "a;b", "*.*.x", "x" * 254, "-a.example", ""):
        with pytest.raises(UnsafeArgumentError):
            await client.add_crt_list_entry(Path("/l"), Path("/c.pem"), sni, None)
    with pytest.raises(UnsafeArgumentError):
        await client.add_crt_list_entry(Path("/l"), Path("/c.pem"), "a.example", "h2 x")


# --- parsers, on real output ----------------------------------------------------------

SERVERS_STATE = """\
1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight \
srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state \
srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl \
srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 be_x 1 s1 10.0.0.5 2 4 10 1 0 1 0 0 8 0 0 0 - 8080 - 0 0 - - 0
3 be_x 2 s2 127.0.0.1 0 5 1 1 17 1 0 0 8 0 0 0 - 1 - 0 0 - - 0
"""


def test_parse_servers_state() -> None:
    state = parse_servers_state(SERVERS_STATE)
    rows = state.rows
    assert state.file(rows) == SERVERS_STATE
    assert [(r["srv_name"], r["srv_addr"], r["srv_port"], r["srv_admin_state"]) for r in rows] == [
        ("s1", "10.0.0.5", "8080", "4"),
        ("s2", "127.0.0.1", "1", "5"),
    ]


def test_parse_csv_stat_by_column_name() -> None:
    text = (
        "# pxname,svname,qcur,scur,status,weight,check_desc,addr,\n"
        'be_x,s1,0,3,UP,10,"Layer4 check passed, fine",10.0.0.5:8080,\n'
        "be_x,s2,0,0,MAINT,1,,127.0.0.1:1,\n"
    )
    rows = parse_csv_stat(text)
    assert rows[0]["scur"] == "3" and rows[0]["check_desc"] == "Layer4 check passed, fine"
    assert rows[1]["status"] == "MAINT" and rows[1]["addr"] == "127.0.0.1:1"
    assert "" not in rows[0]


def test_parse_crt_list_drops_the_alpn_nul_byte() -> None:
    text = (
        "# /c/crt-list.txt\n/c/default.pem:1\n/c/a.pem:3 a.example\n"
        "/c/a.pem:4 [alpn h2,http/1.1\x00] *.a.example b.example\n"
    )
    entries = parse_crt_list(text)
    assert [(str(e.cert), e.line, e.options, e.sni_filters) for e in entries] == [
        ("/c/default.pem", 1, "", ()),
        ("/c/a.pem", 3, "", ("a.example",)),
        ("/c/a.pem", 4, "alpn h2,http/1.1", ("*.a.example", "b.example")),
    ]


def test_parse_show_proc() -> None:
    text = (
        "#<PID>          <type>          <reloads>       <uptime>        <version>      \n"
        "3912            master          5 [failed: 1]   0d00h12m39s     2.6.12-1+deb12u4\n"
        "# workers\n"
        "21656           worker          0               0d00h00m02s     2.6.12-1+deb12u4\n"
        "# old workers\n"
        "21490           worker          1               0d00h00m20s     2.6.12-1+deb12u4\n"
        "# programs\n\n"
    )
    info = parse_show_proc(text)
    assert (info.master_pid, info.reloads, info.failed) == (3912, 5, 1)
    assert info.worker_pids == (21656,)
    assert info.old_worker_pids == (21490,)


def test_filter_server_state_lets_the_config_win() -> None:
    header = (
        "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight"
        " srv_iweight srv_time_since_last_change srv_check_status srv_check_result"
        " srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id"
        " srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr"
        " srv_agent_addr srv_agent_port\n"
    )

    def row(backend: str, server: str, addr: str, port: int, admin: int = 4) -> str:
        return f"3 {backend} 1 {server} {addr} 2 {admin} 1 1 0 1 0 0 8 0 0 0 - {port} - 0 0 - - 0"

    rows = [
        row("be", "same", "10.0.0.5", 8080, admin=12),
        row("be", "freed", "10.0.0.6", 8080),
        row("be", "moved", "10.0.0.7", 8080),
        row("be", "reported", "10.0.0.8", 8080),
        row("be", "gone", "10.0.0.9", 8080),
        row("be", "six", "2001:db8::7", 82),
        row("named", "web", "10.1.1.1", 80),
    ]
    # The enabled slots of the new configuration: "freed" is free, "moved" and
    # "reported" now point elsewhere, "gone" does not exist any more.
    layout = {
        ("be", "same"): ("10.0.0.5", 8080),
        ("be", "moved"): ("10.0.0.70", 8080),
        ("be", "reported"): ("10.0.0.8", 9090),
        ("be", "six"): ("2001:db8:0::7", 82),
        ("named", "web"): ("10.1.1.1", 80),
    }
    state = parse_servers_state(header + "\n".join(rows) + "\n")
    kept, dropped = filter_server_state(state, layout)
    assert kept == header + "\n".join([rows[0], rows[5], rows[6]]) + "\n"
    assert dropped == ["be/freed", "be/moved", "be/reported", "be/gone"]
