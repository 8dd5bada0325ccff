"""The offline ``haproxy-ingress render`` command: files out, problems on stderr, exit codes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from haproxy_ingress import tls
from haproxy_ingress.cli import main
from haproxy_ingress.config import ControllerConfig
from haproxy_ingress.model import DEFAULT_CONTROLLER_NAME, DEFAULT_INGRESS_CLASS
from tests.certs import secret_data
from tests.kube import ingress, ingress_class, path, rule, service, tls_secret
from tests.unit.test_render_golden import CLUSTERS

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def test_render_writes_config_maps_and_private_certificates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render", "-f", str(CLUSTERS / "basic"), "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().err.splitlines() == ["Ingresses: 1 served, 0 ignored, 0 rejected"]
    config = (tmp_path / "haproxy.cfg").read_text()
    assert f"map_str({tmp_path}/maps/exact.map)" in config
    assert "shop.example.com/api/ be_shop_api_8000" in (tmp_path / "maps/prefix.map").read_text()
    pem = tmp_path / "certs" / "shop_shop-tls.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "certs" / "default.pem").stat().st_mode) == 0o600
    assert str(pem) in (tmp_path / "certs" / "crt-list.txt").read_text()


def test_rejected_objects_are_listed_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["render", "-f", str(CLUSTERS / "conflicts" / "all.yaml"), "--out", str(tmp_path)])
    assert code == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("Ingress team/hostile: spec.rules[0].host: must be a DNS name")
    assert lines[1].startswith("Ingress team/newer: spec.rules: host 'app.example.com'")
    assert lines[2].startswith("Ingress team/other-class: left out (undefined class): ")
    assert lines[3] == "Ingresses: 2 served, 1 ignored (1 undefined class), 1 rejected"
    assert len(lines) == 4
    assert (tmp_path / "haproxy.cfg").exists()


@pytest.mark.parametrize("stdout", ["pipe", "file"])
def test_the_command_exits_with_its_code_and_all_its_output(tmp_path: Path, stdout: str) -> None:
    # `render` and `audit` end with os._exit (cli.script): what they print must
    # be flushed first, to a pipe or to a block-buffered file alike.
    out = tmp_path / "stdout.txt"
    command = [sys.executable, "-m", "haproxy_ingress.cli"]
    source = str(CLUSTERS / "conflicts" / "all.yaml")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with out.open("w") as sink:
        rendered = subprocess.run(
            [*command, "render", "-f", source, "--out", str(tmp_path / "out")],
            env=env, stderr=subprocess.PIPE, text=True, check=False, timeout=60,
        )  # fmt: skip
        audited = subprocess.run(
            [*command, "audit", "-f", source],
            env=env, stdout=subprocess.PIPE if stdout == "pipe" else sink, text=True,
            check=False, timeout=60,
        )  # fmt: skip
    assert rendered.returncode == 1
    assert rendered.stderr.splitlines()[-1] == (
        "Ingresses: 2 served, 1 ignored (1 undefined class), 1 rejected"
    )
    assert (tmp_path / "out" / "haproxy.cfg").exists()
    assert audited.returncode == 1
    report = audited.stdout if stdout == "pipe" else out.read_text()
    assert "team/hostile" in report
    assert report.endswith("\n")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kind: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "is not a Kubernetes object"),
    ],
)
def test_unusable_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    source = tmp_path / "in.yaml"
    source.write_text(content)
    assert main(["render", "-f", str(source), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_file_and_bad_flag_exit_2(tmp_path: Path) -> None:
    assert main(["render", "-f", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert (
        main(
            [
                "render",
                "-f",
                str(CLUSTERS / "basic"),
                "--out",
                str(tmp_path),
                "--default-backend",
                "not a ref",
            ]
        )
        == 2
    )


def test_flags_override_class_and_controller(tmp_path: Path) -> None:
    source = tmp_path / "in.yaml"
    source.write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "IngressClass",
                    "metadata": {"name": "edge"},
                    "spec": {"controller": "example.com/edge"},
                },
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "Ingress",
                    "metadata": {"name": "a", "namespace": "default"},
                    "spec": {
                        "ingressClassName": "edge",
                        "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
                    },
                },
            ]
        )
    )
    out = tmp_path / "out"
    main(["render", "-f", str(source), "--out", str(out)])
    assert "be_default_web_80" not in (out / "haproxy.cfg").read_text()
    main(["render", "-f", str(source), "--out", str(out), "--controller-name", "example.com/edge"])
    assert "be_default_web_80" in (out / "haproxy.cfg").read_text()


def test_defaults_match_the_shipped_ingress_class() -> None:
    shipped = yaml.safe_load((MANIFESTS / "10-ingressclass.yaml").read_text())
    assert shipped["metadata"]["name"] == DEFAULT_INGRESS_CLASS
    assert shipped["spec"]["controller"] == DEFAULT_CONTROLLER_NAME


def test_controller_config_from_environment() -> None:
    config = ControllerConfig.from_env(
        {
            "HAPROXY_INGRESS_STATE_DIR": "/tmp/x",
            "HAPROXY_INGRESS_HTTP_BINDS": "127.0.0.1:80, 127.0.0.2:80",
            "HAPROXY_INGRESS_DEBOUNCE": "0.2",
            "HAPROXY_INGRESS_ALWAYS_RELOAD": "true",
            "HAPROXY_INGRESS_PUBLISH_ADDRESS": "",
        }
    )
    assert str(config.state_dir) == "/tmp/x"
    assert config.http_binds == ("127.0.0.1:80", "127.0.0.2:80")
    assert config.debounce == 0.2
    assert config.always_reload is True
    assert config.publish_address is None
    assert ControllerConfig.from_env(config.to_env()) == config


def test_render_names_each_ingress_it_leaves_out_and_sums_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The example alone: its IngressClass lives in manifests/, not next to it.
    examples = str(MANIFESTS / "examples")
    assert main(["render", "-f", examples, "--out", str(tmp_path / "a")]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("Ingress demo/echo: left out (undefined class): ")
    assert "'haproxy' names no IngressClass" in lines[0]
    assert lines[-1] == "Ingresses: 0 served, 1 ignored (1 undefined class), 0 rejected"

    classes = str(MANIFESTS / "10-ingressclass.yaml")
    assert main(["render", "-f", examples, "-f", classes, "--out", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().err.splitlines() == ["Ingresses: 1 served, 0 ignored, 0 rejected"]

    foreign = tmp_path / "foreign.yaml"
    foreign.write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "IngressClass",
                    "metadata": {"name": "nginx"},
                    "spec": {"controller": "k8s.io/ingress-nginx"},
                },
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "Ingress",
                    "metadata": {"name": "theirs", "namespace": "demo"},
                    "spec": {
                        "ingressClassName": "nginx",
                        "defaultBackend": {"service": {"name": "echo", "port": {"number": 80}}},
                    },
                },
            ]
        )
    )
    code = main(
        ["render", "-f", examples, "-f", classes, "-f", str(foreign), "--out", str(tmp_path / "c")]
    )
    assert code == 0  # another controller's Ingress is no mistake
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "Ingress demo/theirs: left out (foreign class): IngressClass 'nginx' belongs to "
        "'k8s.io/ingress-nginx'",
        "Ingresses: 1 served, 1 ignored (1 foreign class), 0 rejected",
    ]


def test_render_checks_many_certificates_aside_with_the_same_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # From PARALLEL_CHECKS Secrets on, render checks them in a worker process
    # while it translates (CertificateCache.check_ahead).
    count = tls.PARALLEL_CHECKS
    crt, _ = secret_data("x.example.com")
    secrets = [tls_secret(f"s{i}", *secret_data(f"h{i}.example.com")) for i in range(count)]
    secrets.append(tls_secret("broken", crt, secret_data("y.example.com")[1]))
    objects: list[dict[str, Any]] = [ingress_class(default=True), service("web")]
    for i, secret in enumerate(secrets):
        host = f"h{i}.example.com"
        name = secret["metadata"]["name"]
        tls_hosts = [{"hosts": [host], "secretName": name}]
        objects += [secret, ingress(f"ing{i}", rule(host, path("/", "web")), tls=tls_hosts)]
    source = tmp_path / "cluster.yaml"
    source.write_text(yaml.safe_dump_all(objects))
    out = tmp_path / "out"
    assert main(["render", "-f", str(source), "--out", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3  # the Ingress's problem, the Secret's, the sum
    assert "TLS Secret default/broken data[tls.key] does not match the certificate" in err[0]
    assert err[1].startswith("Secret default/broken: data[tls.key]: does not match")
    assert err[2] == f"Ingresses: {count + 1} served, 0 ignored, 0 rejected"
    for secret in secrets[:count]:
        pem = (out / "certs" / f"default_{secret['metadata']['name']}.pem").read_text()
        assert pem == tls.certificate_from_secret(secret).pem
    assert not (out / "certs" / "default_broken.pem").exists()


def test_render_rejects_objects_whose_metadata_is_not_an_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Read before translate checks metadata (the certificates looked for
    # ahead): such an object is rejected alone, as translate rejects it.
    bad = {**ingress("bad", rule("a.example.com", path("/", "web"))), "metadata": "oops"}
    good = ingress("good", rule("b.example.com", path("/", "web")))
    odd_secret = {**tls_secret("s", *secret_data("a.example.com")), "metadata": "oops"}
    source = tmp_path / "cluster.yaml"
    objects = [ingress_class(default=True), service("web"), bad, good, odd_secret]
    source.write_text(yaml.safe_dump_all(objects))
    assert main(["render", "-f", str(source), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert sum("metadata: must be an object" in line for line in err) == 2
    assert err[-1] == "Ingresses: 1 served, 0 ignored, 1 rejected"
