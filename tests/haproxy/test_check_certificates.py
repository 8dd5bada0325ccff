"""``haproxy -c`` loads only the crt-list lines the last passing check did not.

HAProxy 2.6 spends most of a 10k-Ingress check loading certificates
(apply.Applier._check). A wrapper around the real binary records the
crt-list each check reads and refuses one whose lines name a marker host;
everything else (the master, its reloads, the handshakes) is the real
HAProxy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from haproxy_ingress.apply import crt_list_keys
from haproxy_ingress.haproxy.config import RenderedFile
from haproxy_ingress.haproxy.paths import HAProxyPaths
from tests.haproxy.conftest import HAPROXY, tls_handshake
from tests.haproxy.stack import Stack
from tests.kube import ingress, ingress_class, path, rule, service, tls_secret
from tests.unit.test_translate import make_cert

pytestmark = pytest.mark.haproxy

REFUSED_HOST = "refused.example.com"

WRAPPER = """#!/bin/sh
# `haproxy -c -f CONFIG`: note the crt-list it reads, refuse the marker host.
if [ "$1" = "-c" ]; then
    list=$(sed -n 's/.* crt-list \\([^ ]*\\) .*/\\1/p' "$3" | head -n 1)
    { echo "== check"; cat "$list"; } >> "{log}"
    if grep -qs "{refused}" "$list"; then
        echo "[ALERT]    ($$) : config : [$3:1] : test marker refused" >&2
        exit 1
    fi
fi
exec {haproxy} "$@"
"""


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    wrapper = tmp_path / "haproxy-noting"
    wrapper.write_text(
        WRAPPER.replace("{log}", str(tmp_path / "checks.log"))
        .replace("{refused}", REFUSED_HOST)
        .replace("{haproxy}", HAPROXY)
    )
    wrapper.chmod(0o755)
    result = Stack(tmp_path / "haproxy", binary=str(wrapper))
    result.put(ingress_class(default=True))
    yield result
    await result.close()


def last_check(stack: Stack) -> list[str]:
    """The hosts of the crt-list lines the last ``haproxy -c`` loaded."""
    checks = (stack.base.parent / "checks.log").read_text().split("== check\n")
    return sorted(line.split()[-1] for line in checks[-1].splitlines())


def tls_app(
    name: str, host: str, secret: str, certificate: str | None = None
) -> list[dict[str, Any]]:
    crt, key = make_cert(certificate or host)
    return [
        service(name),
        tls_secret(secret, crt, key),
        ingress(
            name,
            rule(host, path("/", name)),
            tls=[{"hosts": [host], "secretName": secret}],
        ),
    ]


async def test_a_reload_checks_only_certificates_haproxy_has_not_loaded(stack: Stack) -> None:
    stack.put(*tls_app("a", "a.example.com", "a-tls"), *tls_app("b", "b.example.com", "b-tls"))
    assert (await stack.sync()).plan.reload
    assert last_check(stack) == ["a.example.com", "b.example.com"]

    # A new backend reloads; no certificate changed, so the check loads none.
    stack.put(service("c"), ingress("c", rule("c.example.com", path("/", "c"))))
    assert (await stack.sync()).plan.reload
    assert last_check(stack) == []
    # The reload itself loaded every line.
    assert (await tls_handshake(stack.https_port, "a.example.com")).common_name == "a.example.com"
    assert (await tls_handshake(stack.https_port, "b.example.com")).common_name == "b.example.com"

    # b's Secret rotated (HAProxy takes it at run time), then a reload: its
    # new content is checked; a's is not.
    stack.put(*tls_app("b", "b.example.com", "b-tls", certificate="b2.example.com"))
    await stack.sync()
    stack.put(service("d"), ingress("d", rule("d.example.com", path("/", "d"))))
    assert (await stack.sync()).plan.reload
    assert last_check(stack) == ["b.example.com"]
    assert (await tls_handshake(stack.https_port, "b.example.com")).common_name == "b2.example.com"


async def test_a_refused_new_certificate_is_still_caught(stack: Stack) -> None:
    stack.put(*tls_app("a", "a.example.com", "a-tls"))
    await stack.sync()
    stack.put(*tls_app("r", REFUSED_HOST, "r-tls"))
    outcome = await stack.sync()
    (problem,) = [p for p in outcome.desired.problems if p.event == "ConfigRejected"]
    assert problem.source.name == "r" and "test marker refused" in problem.reason
    assert (await tls_handshake(stack.https_port, "a.example.com")).common_name == "a.example.com"
    assert (await tls_handshake(stack.https_port, REFUSED_HOST)).common_name != REFUSED_HOST


def test_a_line_is_known_by_its_files_and_what_it_is_loaded_under(tmp_path: Path) -> None:
    live_paths = HAProxyPaths(tmp_path / "live")

    def keys(
        base: Path, pem: bytes = b"pem", bind: str = "alpn h2", last: str = "alpn h2"
    ) -> dict[str, bytes | None]:
        paths = HAProxyPaths(base)
        line = f"{paths.certs}/a.pem [alpn h2] a.example.com\n"
        other = f"{paths.certs}/default.pem [alpn h2 verify optional] b.example.com\n"
        # A scratch check keeps the live sockets (apply._ScratchPaths).
        config = (
            f"global\n    stats socket {live_paths.runtime_socket}\n    crt-base /x\n\n"
            f"defaults\n    mode http\n\nfrontend fe\n"
            f"    bind :443 ssl crt-list {paths.crt_list} {bind}\n"
            f"    bind :8080\n"
            # A second bind reading it, on the last line (no newline after it).
            f"    bind :8443 ssl crt-list {paths.crt_list} {last}"
        )
        files = (
            RenderedFile(paths.certs / "a.pem", pem),
            RenderedFile(paths.crt_list, (line + other).encode()),
        )
        written = tmp_path / "haproxy.cfg"
        written.write_text(config)
        found = crt_list_keys(written, files, paths, live=live_paths)
        assert found[other] is None  # names a file that is not rendered: always checked
        return {line.replace(str(base), ""): key for line, key in found.items()}

    live = keys(live_paths.base)
    assert keys(live_paths.base / ".check-x") == live
    assert keys(live_paths.base, pem=b"rotated") != live
    assert keys(live_paths.base, bind="alpn http/1.1") != live
    assert keys(live_paths.base, last="alpn http/1.1") != live
