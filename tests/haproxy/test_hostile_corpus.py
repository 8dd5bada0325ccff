"""The hostile corpus through the offline ``render`` command and a real ``haproxy -c``.

Each case must produce exactly its expected problems, leave the good Ingress
serving, and change nothing in the rendered files that a rejected object
could have touched: a case whose objects are all rejected renders the very
same bytes as the base cluster alone.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from haproxy_ingress.cli import main
from haproxy_ingress.translate import DENY_ALL
from tests.haproxy.test_config_check import HAPROXY

pytestmark = pytest.mark.haproxy
CORPUS = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "fixtures" / "hostile" / "corpus.yaml").read_text()
)
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----\n[A-Za-z0-9+/=\n]+-----END \1-----")
COMPARED = (
    "haproxy.cfg",
    "maps/exact.map",
    "maps/prefix.map",
    "maps/www.map",
    "certs/crt-list.txt",
    "maps/opt-snippet.map",
)


def render(
    objects: list[dict[str, Any]],
    out: Path,
    capsys: pytest.CaptureFixture[str],
    flags: tuple[str, ...] = (),
) -> tuple[int, list[str], dict[str, bytes]]:
    source = out.parent / f"{out.name}.yaml"
    source.write_text(yaml.safe_dump_all(objects))
    code = main(["render", "-f", str(source), "--out", str(out), *flags])
    lines = capsys.readouterr().err.splitlines()
    assert lines.pop().startswith("Ingresses: ")  # render's summary, always last
    # The output directory is the one difference two renders may have.
    files = {
        name: (out / name).read_bytes().replace(str(out).encode(), b"OUT") for name in COMPARED
    }
    return code, lines, files


@pytest.mark.parametrize(
    "case", CORPUS["cases"], ids=[case["description"] for case in CORPUS["cases"]]
)
# Every case also with ssl-passthrough on: the TCP frontend and its pool are
# rendered, and the same objects must be refused the same way.
@pytest.mark.parametrize("flags", [(), ("--enable-ssl-passthrough",)], ids=["", "passthrough"])
def test_hostile_case(
    case: dict[str, Any],
    flags: tuple[str, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base_code, base_lines, base_files = render(CORPUS["base"], tmp_path / "base", capsys, flags)
    assert (base_code, base_lines) == (0, [])
    code, lines, files = render(CORPUS["base"] + case["objects"], tmp_path / "case", capsys, flags)
    assert code == (1 if case["expect"] else 0)
    assert [line.split(": ")[0] + ": " + line.split(": ")[1] for line in lines] == case["expect"]
    assert b"good.example.com/ be_hostile_web_80" in files["maps/prefix.map"]
    rejected_only = all(
        not line.endswith(": spec.tls") and not line.startswith("Secret ")
        for line in case["expect"]
    )
    # An access rule that cannot be honoured (the AccessDenied problem on
    # the annotations as a whole) ...
    denied = any(line.endswith(": metadata.annotations") for line in case["expect"]) and any(
        ": metadata.annotations[" in line for line in case["expect"]
    )
    # ... or an auth Secret that gives no usable user.
    guarded = not denied and any(line.endswith("auth-secret]") for line in case["expect"])
    if guarded:
        # Fail closed: the paths are kept and ask for credentials nobody has.
        added = {
            line
            for name in ("maps/exact.map", "maps/prefix.map")
            for line in set(files[name].splitlines()) - set(base_files[name].splitlines())
        }
        policies = {line.split(b" ", 1)[1].split(b"~")[1] for line in added}
        assert len(policies) == 1 and policies != {DENY_ALL.name.encode()}, policies
        assert b"http-request return status 401" in files["haproxy.cfg"]
        assert re.search(rb"^\s+user ", files["haproxy.cfg"], re.MULTILINE) is None
    elif denied:
        # Fail closed: an Ingress whose access rule is refused keeps its paths,
        # and every one of them names the deny-all policy.
        for name in ("maps/exact.map", "maps/prefix.map"):
            added = set(files[name].splitlines()) - set(base_files[name].splitlines())
            assert all(line.endswith(b"~" + DENY_ALL.name.encode()) for line in added), added
        assert DENY_ALL.name.encode() in files["haproxy.cfg"]
    elif case.get("served"):
        # Served with a Warning (a name it asked for is another Ingress's):
        # only its own routes are added; the good Ingress's are untouched.
        for name in ("maps/exact.map", "maps/prefix.map"):
            before, after = set(base_files[name].splitlines()), set(files[name].splitlines())
            assert before <= after
            assert not any(line.startswith(b"good.example.com") for line in after - before)
        assert files["maps/www.map"] == b""
        if any("-snippet]" in line for line in case["expect"]):
            # A refused snippet is not applied in part: no program at all.
            assert files["maps/opt-snippet.map"] == b""
    elif case["expect"] and rejected_only:
        assert files == base_files
    else:
        # A certificate may be served (the case's Secret was accepted): its file
        # holds PEM blocks and nothing else, whatever text the Secret carried.
        for pem in (tmp_path / "case" / "certs").glob("*.pem"):
            assert PEM_BLOCK.sub("", pem.read_text()).strip() == "", pem.name
    check = subprocess.run(
        [HAPROXY, "-c", "-f", str(tmp_path / "case" / "haproxy.cfg")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
