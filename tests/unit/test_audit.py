"""The migration report, offline: every annotation classified from translate's own Problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from haproxy_ingress import audit, registry
from haproxy_ingress.audit import Verdict
from haproxy_ingress.cli import main
from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.loader import load_objects
from haproxy_ingress.model import TranslateOptions

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "audit" / "ingresses.yaml"
N = registry.NGINX_PREFIX


def report() -> audit.Report:
    options = TranslateOptions(serve_nginx=True)
    view, _ = ClusterView.from_objects(load_objects([FIXTURE]), options)
    return audit.audit(view, options)


def test_each_annotation_is_classified() -> None:
    result = report()
    verdicts = {
        (r.ingress.name, line.annotation): line.verdict
        for r in result.ingresses
        for line in r.lines
    }
    assert verdicts == {
        ("shop", N + "rewrite-target"): Verdict.HONOURED,
        ("shop", N + "proxy-read-timeout"): Verdict.HONOURED,
        ("shop", N + "configuration-snippet"): Verdict.HONOURED,
        ("shop", N + "enable-opentelemetry"): Verdict.IGNORED,
        ("blog", N + "server-snippet"): Verdict.REFUSED,
        ("admin", N + "auth-tls-secret"): Verdict.FAIL_CLOSED,
        ("admin", N + "ssl-redirect"): Verdict.HONOURED,
        ("broken", N + "proxy-body-size"): Verdict.REJECTED,
    }
    states = {r.ingress.name: r.state for r in result.ingresses}
    # "elsewhere" is traefik's: not listed.
    assert states == {
        "shop": Verdict.HONOURED,
        "blog": Verdict.HONOURED,
        "admin": Verdict.FAIL_CLOSED,
        "broken": Verdict.REJECTED,
    }
    assert result.counts == {
        Verdict.HONOURED: 4,
        Verdict.IGNORED: 1,
        Verdict.REFUSED: 1,
        Verdict.FAIL_CLOSED: 1,
        Verdict.REJECTED: 1,
    }
    # The fail-closed Ingress does not take the Service's tuning from the served one.
    (shop,) = [r for r in result.ingresses if r.ingress.name == "shop"]
    assert shop.other == ()


def test_cli_prints_the_report_and_exits_1_when_something_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["audit", "-f", str(FIXTURE)]) == 1
    out = capsys.readouterr().out
    assert "Ingress default/admin: FAIL-CLOSED (403)" in out
    assert "proxy_buffering: directive not supported" in out
    assert out.splitlines()[-1] == (
        "4 Ingresses: 2 served, 1 fail closed, 1 rejected; "
        "4 honoured, 1 ignored, 1 refused, 1 fail-closed, 1 rejected annotations"
    )
    # Without --serve-nginx only our own class counts: nothing here is ours.
    assert main(["audit", "-f", str(FIXTURE), "--no-serve-nginx"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("0 Ingresses")


def test_cli_exit_0_when_all_is_served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = FIXTURE.read_text()
    served = "\n---\n".join(
        doc
        for doc in text.split("\n---\n")
        if "name: admin" not in doc and "name: broken" not in doc
    )
    (tmp_path / "ok.yaml").write_text(served)
    assert main(["audit", "-f", str(tmp_path / "ok.yaml")]) == 0
    assert "2 served, 0 fail closed, 0 rejected" in capsys.readouterr().out
    assert main(["audit", "-f", str(tmp_path / "missing.yaml")]) == 2


def test_a_global_access_key_in_the_configmap_fails_every_ingress_closed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = FIXTURE.read_text()
    served = "\n---\n".join(
        doc
        for doc in text.split("\n---\n")
        if "name: admin" not in doc and "name: broken" not in doc
    )
    configmap = (
        "apiVersion: v1\nkind: ConfigMap\n"
        "metadata: {name: haproxy-ingress, namespace: haproxy-ingress}\n"
        "data: {block-cidrs: '198.51.100.0/24'}\n"
    )
    (tmp_path / "global.yaml").write_text(served + "\n---\n" + configmap)
    assert main(["audit", "-f", str(tmp_path / "global.yaml")]) == 1
    out = capsys.readouterr().out
    assert "2 served" not in out and "0 served, 2 fail closed" in out
    assert "data.block-cidrs: block-cidrs (a global block list)" in out


def test_every_nginx_key_we_do_not_honour_is_named_in_a_warning_or_fails_closed() -> None:
    """Item 5: no ingress-nginx key passes silently (the audit's gap line never shows)."""
    # The annotations of ingress-nginx's docs (annotations.md) we do not declare.
    names = [
        "enable-cors",
        "cors-allow-origin",
        "canary-weight",
        "custom-http-errors",
        "default-backend",
        "enable-access-log",
        "proxy-buffering",
        "proxy-ssl-secret",
        "service-upstream",
        "upstream-hash-by",
        "from-to-www-redirect",
        "server-alias",
        "mirror-target",
        "enable-opentelemetry",
        "stream-snippet",
        "modsecurity-snippet",
        "auth-url",
        "auth-tls-secret",
        "limit-rps",
        "limit-connections",
        "denylist-source-range",
        "satisfy",
        "global-rate-limit",
        "enable-modsecurity",
        "ssl-ciphers",
        "http2-push-preload",
    ]
    for name in names:
        if name in registry.BY_NGINX:
            continue  # honoured meanwhile
        options = TranslateOptions(serve_nginx=True)
        objects = [
            o
            for o in load_objects([FIXTURE])
            if o["metadata"].get("name") in ("nginx", "shop", "web")
        ]
        objects[1]["metadata"]["annotations"] = {N + name: "x"}
        view, _ = ClusterView.from_objects(objects, options)
        ((line,),) = [r.lines for r in audit.audit(view, options).ingresses]
        assert line.verdict in (Verdict.IGNORED, Verdict.REFUSED, Verdict.FAIL_CLOSED), name
        assert "not declared in the registry" not in line.reason, name
        weakening = name.startswith(("auth-", "limit-", "global-rate-limit")) or name in (
            "satisfy",
            "denylist-source-range",
            "modsecurity-snippet",
        )
        assert (line.verdict is Verdict.FAIL_CLOSED) is weakening, name


@pytest.mark.parametrize(
    ("key", "value", "closed"),
    [
        ("proxy-ssl-verify", "on", True),
        ("proxy-ssl-verify", "off", False),
        ("enable-modsecurity", "true", True),
        ("enable-owasp-core-rules", "true", True),
        ("enable-modsecurity", "false", False),
        ("global-rate-limit-key", "$remote_addr", True),
    ],
)
def test_protections_switched_on_fail_closed(key: str, value: str, closed: bool) -> None:
    # Once honoured (the registry declares it), it is served as asked instead.
    closed = closed and key not in registry.BY_NGINX
    options = TranslateOptions(serve_nginx=True)
    objects = [
        o for o in load_objects([FIXTURE]) if o["metadata"].get("name") in ("nginx", "shop", "web")
    ]
    objects[1]["metadata"]["annotations"] = {N + key: value}
    view, _ = ClusterView.from_objects(objects, options)
    ((line,),) = [r.lines for r in audit.audit(view, options).ingresses]
    assert (line.verdict is Verdict.FAIL_CLOSED) is closed
