"""Serving ingress-nginx's Ingresses unchanged (--serve-nginx): translate and the CLI."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from haproxy_ingress import config as controller_config
from haproxy_ingress.cli import main
from haproxy_ingress.config import ControllerConfig
from haproxy_ingress.model import TranslateOptions
from tests.kube import ingress, ingress_class, path, rule
from tests.unit.test_translate import run, with_defaults

NGINX_CONTROLLER = "k8s.io/ingress-nginx"
TAKEOVER = TranslateOptions(serve_nginx=True)


def nginx_ingresses() -> tuple[dict[str, Any], ...]:
    legacy = ingress("legacy", rule("legacy.example.com", path("/")), class_name=None)
    legacy["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "nginx"}
    return (
        ingress_class("nginx", controller=NGINX_CONTROLLER),
        ingress_class("internal", controller=NGINX_CONTROLLER),
        ingress_class("traefik", controller="traefik.io/ingress-controller"),
        ingress("by-class", rule("class.example.com", path("/")), class_name="nginx"),
        ingress("other-class", rule("internal.example.com", path("/")), class_name="internal"),
        legacy,
        ingress("ours", rule("ours.example.com", path("/"))),
        ingress("foreign", rule("traefik.example.com", path("/")), class_name="traefik"),
    )


def hosts(options: TranslateOptions) -> set[str]:
    return {r.host for r in run(*with_defaults(*nginx_ingresses()), options=options).routes}


def test_without_the_flag_only_our_class_is_served() -> None:
    assert hosts(TranslateOptions()) == {"ours.example.com"}


def test_with_the_flag_ingress_nginx_classes_and_legacy_annotation_are_served() -> None:
    assert hosts(TAKEOVER) == {
        "ours.example.com",
        "class.example.com",
        "internal.example.com",  # any IngressClass of ingress-nginx's controller
        "legacy.example.com",
    }


def test_ingress_nginx_default_class_takes_classless_ingresses_only_with_the_flag() -> None:
    classless = ingress("bare", rule("bare.example.com", path("/")), class_name=None)
    objects = (ingress_class("nginx", controller=NGINX_CONTROLLER, default=True), classless)
    assert not run(*with_defaults(*objects)).routes
    assert {r.host for r in run(*with_defaults(*objects), options=TAKEOVER).routes} == {
        "bare.example.com"
    }


def test_render_flag(tmp_path: Path) -> None:
    source = tmp_path / "in.yaml"
    source.write_text(yaml.safe_dump_all(list(with_defaults(*nginx_ingresses()))))
    out = tmp_path / "out"
    assert main(["render", "-f", str(source), "--out", str(out)]) == 0
    assert "class.example.com" not in (out / "maps" / "hosts.map").read_text()
    assert main(["render", "-f", str(source), "--out", str(out), "--serve-nginx"]) == 0
    served = (out / "maps" / "hosts.map").read_text()
    assert "class.example.com" in served and "legacy.example.com" in served
    assert "traefik.example.com" not in served


@pytest.mark.parametrize(
    ("env", "flags", "expected"),
    [
        ({}, [], False),
        ({"HAPROXY_INGRESS_SERVE_NGINX": "true"}, [], True),
        ({}, ["--serve-nginx"], True),
    ],
)
def test_run_flag_and_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], flags: list[str], expected: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    parser = argparse.ArgumentParser()
    controller_config.add_arguments(parser)
    config = controller_config.from_arguments(parser.parse_args(flags))
    assert config.serve_nginx is expected
    assert config.translate_options().serve_nginx is expected
    assert ControllerConfig.from_env(config.to_env()) == config
