"""Object names as the API server checks them, and certificate file names within NAME_MAX."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.haproxy.config import RenderOptions, render
from haproxy_ingress.haproxy.files import atomic_write
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.model import MAX_CERTIFICATE_STEM, TranslateOptions, certificate_name
from haproxy_ingress.plan import plan
from haproxy_ingress.translate import translate
from tests import kube
from tests.certs import secret_data

OPTIONS = TranslateOptions()
LONGEST_SECRET = ".".join(["s" * 63] * 3) + "." + "s" * 61  # 253 characters
LONGEST_NAMESPACE = "n" * 63


def served(*objects: dict[str, object]) -> tuple[list[str], list[str]]:
    view, _ = ClusterView.from_objects(
        [kube.ingress_class(), kube.service("web"), *objects], OPTIONS
    )
    desired = translate(view, OPTIONS)
    return [r.source.name for r in desired.routes], [
        f"{p.source}: {p.message}" for p in desired.problems
    ]


@pytest.mark.parametrize(
    ("namespace", "name"),
    [("x\ny", "a"), ("ns", "a\nb"), ("ns", "a" * 254), ("NS", "a"), ("ns", "a_b"), ("a.b", "a")],
)
def test_ingress_with_an_invalid_name_is_left_out_alone(namespace: str, name: str) -> None:
    bad = kube.ingress(name, kube.rule("bad.example.com", kube.path("/")), namespace=namespace)
    good = kube.ingress("good", kube.rule("good.example.com", kube.path("/")))
    routes, problems = served(good, bad)
    assert routes == ["good"]
    assert len(problems) == 1
    assert problems[0].startswith("Ingress ")
    assert ": metadata." in problems[0]
    assert problems[0].isprintable()


def test_service_names_are_rfc1035_labels() -> None:
    service = kube.service("web")
    service["metadata"]["name"] = "web.x"
    view, _ = ClusterView.from_objects([service], OPTIONS)
    problems = translate(view, OPTIONS).problems
    assert [(str(p.source), p.field) for p in problems] == [
        ("Service default/web.x", "metadata.name")
    ]


def test_certificate_names_are_short_readable_and_injective() -> None:
    assert certificate_name("ns", "tls") == "ns_tls"
    long_names = {
        certificate_name(LONGEST_NAMESPACE, LONGEST_SECRET),
        certificate_name(LONGEST_NAMESPACE, LONGEST_SECRET[:-1] + "t"),
        certificate_name(LONGEST_NAMESPACE[:-1], LONGEST_SECRET),
        certificate_name("n", "s" * 198),  # readable at exactly 200
        certificate_name("n", "s" * 199),  # hashed at 201
    }
    assert len(long_names) == 5
    assert all(len(name) <= MAX_CERTIFICATE_STEM for name in long_names)
    assert certificate_name("n", "s" * 198).count("_") == 1
    assert certificate_name("n", "s" * 199).count("_") == 2


@pytest.mark.parametrize(
    ("namespace", "secret"), [(LONGEST_NAMESPACE, LONGEST_SECRET), ("n" * 63, LONGEST_SECRET[:190])]
)
def test_maximal_secret_names_render_to_files_that_can_be_written(
    namespace: str, secret: str, tmp_path: Path
) -> None:
    crt, key = secret_data("a.example.com")
    objects = [
        kube.ingress(
            "i",
            kube.rule("a.example.com", kube.path("/")),
            namespace=namespace,
            tls=[{"hosts": ["a.example.com"], "secretName": secret}],
        ),
        kube.tls_secret(secret, crt, key, namespace=namespace),
    ]
    view, _ = ClusterView.from_objects([kube.ingress_class(), *objects], OPTIONS)
    desired = translate(view, OPTIONS)
    assert [p.event for p in desired.problems] == ["BackendNotFound"]
    paths = HAProxyPaths(tmp_path)
    paths.ensure()
    for file in render(plan(None, desired).target, RenderOptions(paths)).all:
        assert len(os.fsencode(file.path.name)) <= 255 - 18
        atomic_write(file.path, file.content, mode=file.mode)  # ENAMETOOLONG before
