"""What one basic-auth check costs HAProxy, per hash format.

Runs the real pipeline (tests/haproxy/stack.py) on a real HAProxy with one
Ingress guarded by a Secret holding a user of each format, then times
requests with a wrong password (one full check each: HAProxy's userlist
calls crypt(3), $apr1$ runs in ingress.lua) against requests without
credentials (same path, no check). The difference is the check's cost,
paid synchronously on an HAProxy thread. Client addresses rotate over
127.0.0.0/24 so the 10-failures-per-10-s limit does not answer first.

    PYTHONPATH=operator:. python3 -m bench.auth_cost [--requests 40]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from tests.haproxy.stack import Stack
from tests.haproxy.test_access import (
    PASSWORD,
    answer,
    apr1_hash,
    basic,
    crypt_hash,
    htpasswd_secret,
)
from tests.kube import ingress, ingress_class, path, rule, service

FORMATS = {
    "bcrypt $2y$ cost 5 (htpasswd -B)": crypt_hash(PASSWORD, "$2y$05$abcdefghijklmnopqrstuv"),
    "bcrypt $2y$ cost 10": crypt_hash(PASSWORD, "$2y$10$abcdefghijklmnopqrstuv"),
    "SHA-512 $6$ (5000 rounds)": crypt_hash(PASSWORD, "$6$saltsalt$"),
    "SHA-256 $5$ (5000 rounds)": crypt_hash(PASSWORD, "$5$saltsalt$"),
    "MD5 crypt $1$": crypt_hash(PASSWORD, "$1$saltsalt$"),
    "Apache $apr1$ (Lua)": apr1_hash(PASSWORD),
}


async def main(requests: int) -> None:
    with tempfile.TemporaryDirectory() as base:
        stack = Stack(Path(base) / "haproxy")
        users = {f"u{i}": hashed for i, hashed in enumerate(FORMATS.values())}
        stack.put(
            ingress_class(default=True),
            service("web"),
            htpasswd_secret("users", users),
            ingress(
                "guarded",
                rule("app.example.com", path("/", "web")),
                annotations={
                    "haproxy-ingress.kopf.dev/auth-type": "basic",
                    "haproxy-ingress.kopf.dev/auth-secret": "users",
                },
            ),
        )
        try:
            await stack.sync()
            counter = 0

            async def timed(*headers: bytes) -> float:
                nonlocal counter
                counter += 1
                source = f"127.0.0.{2 + counter % 250}"
                start = time.perf_counter()
                status, _ = await answer(stack, "app.example.com", "/", *headers, source=source)
                elapsed = time.perf_counter() - start
                assert status == 401, status
                return elapsed

            baseline = statistics.median([await timed() for _ in range(requests)])
            print(f"no credentials (no check): {baseline * 1e3:.3f} ms per request (median)")
            for (label, _), user in zip(FORMATS.items(), users, strict=True):
                # A new wrong password each time: ingress.lua keeps verdicts.
                times = [await timed(basic(user, f"wrong {i}")) for i in range(requests)]
                cost = statistics.median(times) - baseline
                print(f"{label}: {cost * 1e3:.3f} ms per check (median of {requests})")
        finally:
            await stack.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=40)
    asyncio.run(main(parser.parse_args().requests))
