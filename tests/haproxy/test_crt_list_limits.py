"""One certificate for more hosts than one crt-list line can hold (haproxy 2.6.12).

A crt-list line takes at most 2,048 words and 65,535 characters; 2,100
Ingresses sharing a wildcard Secret (no malice needed) used to put all their
hosts on one line and fail ``haproxy -c`` for every tenant. The renderer now
spreads a certificate's hosts over several lines of the same PEM.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from haproxy_ingress.haproxy.config import CRT_LIST_MAX_HOSTS, CRT_LIST_MAX_LINE
from tests.certs import self_signed
from tests.haproxy.conftest import tls_handshake
from tests.haproxy.stack import Stack
from tests.haproxy.test_config_check import haproxy_check
from tests.kube import ingress, path, rule, tls_secret
from tests.unit.test_translate import make_cert

pytestmark = pytest.mark.haproxy
HOSTS = 2100


def test_one_line_with_2100_hosts_is_what_haproxy_refuses(tmp_path: Path) -> None:
    cert, key = self_signed("x.apps.example.com")
    pem = tmp_path / "c.pem"
    pem.write_bytes(cert + key)
    hosts = " ".join(f"h{i}.apps.example.com" for i in range(HOSTS))
    (tmp_path / "list").write_text(f"{pem} [alpn h2,http/1.1] {hosts}\n")
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "defaults\n    mode http\n    timeout client 1s\n    timeout connect 1s\n"
        f"    timeout server 1s\nfrontend f\n    bind 127.0.0.1:18997 ssl crt {pem} "
        f"crt-list {tmp_path / 'list'}\n"
    )
    result = haproxy_check(config)
    assert result.returncode == 1 and "too many args" in result.stderr
    # The same PEM on several lines is fine.
    (tmp_path / "list").write_text(
        "".join(
            f"{pem} [alpn h2,http/1.1] {' '.join(hosts.split()[start : start + 1000])}\n"
            for start in range(0, HOSTS, 1000)
        )
    )
    result = haproxy_check(config)
    assert result.returncode == 0, result.stderr


async def test_2100_ingresses_share_one_certificate(stack: Stack) -> None:
    crt, key = make_cert("*.apps.example.com")
    stack.put(tls_secret("wild", crt, key))
    for i in range(HOSTS):
        host = f"h{i}.apps.example.com"
        stack.put(
            ingress(f"i{i}", rule(host, path("/")), tls=[{"hosts": [host], "secretName": "wild"}])
        )
    await stack.sync()
    lines = stack.paths.crt_list.read_text().splitlines()
    assert len(lines) >= HOSTS // CRT_LIST_MAX_HOSTS + 1
    assert all(len(line) <= CRT_LIST_MAX_LINE for line in lines)
    assert sum(len(line.split()) - 3 for line in lines) == HOSTS
    for host in ("h0.apps.example.com", "h1049.apps.example.com", "h2099.apps.example.com"):
        assert (await tls_handshake(stack.https_port, host)).common_name == "*.apps.example.com"
    assert (
        await tls_handshake(stack.https_port, "other.example.com")
    ).common_name != "*.apps.example.com"
