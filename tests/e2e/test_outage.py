"""The API server goes away and comes back; the controller neither storms nor goes stale.

While the API server is down, an Ingress is deleted straight from etcd, the
way objects disappear while a controller cannot watch: after the restart the
old watches get 410 Gone, Kopf re-lists, and no DELETED event ever comes. The
LIST verification (at once after the gap, or the periodic one) must drop it;
everything else must keep serving, without a reload.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.conftest import Kube, service_manifest, suffix, wait_for
from tests.e2e.operator import RunningController, ingress, start_controller

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def controller(
    cluster: Kube, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningController]:
    running = start_controller(cluster, tmp_path_factory.mktemp("outage-controller"))
    yield running
    running.stop()


def steady(read: Callable[[], float], *, quiet: float, limit: float = 60.0) -> float:
    """``read()`` once it has not changed for ``quiet`` seconds."""
    deadline = time.monotonic() + limit
    value = read()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        again = read()
        if again == value:
            return value
        value = again
    raise AssertionError(f"still changing after {limit} s: {value}")


def _etcd(etcd_url: str, method: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        f"{etcd_url}/v3/kv/{method}", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def delete_from_etcd(etcd_url: str, namespace: str, name: str) -> None:
    """Delete the Ingress's key behind the API server's back."""
    prefix = "/registry/"
    found = _etcd(
        etcd_url,
        "range",
        {"key": _b64(prefix), "range_end": _b64(prefix[:-1] + "0"), "keys_only": True},
    )
    keys = [
        base64.b64decode(str(kv["key"])).decode()  # type: ignore[index]
        for kv in found.get("kvs", [])  # type: ignore[union-attr]
    ]
    (key,) = [k for k in keys if "ingress" in k and k.endswith(f"/{namespace}/{name}")]
    deleted = _etcd(etcd_url, "deleterange", {"key": _b64(key)})
    assert deleted.get("deleted") == "1", deleted


def test_api_server_restart_resumes_watches_without_stale_routes_or_reloads(
    cluster: Kube, controller: RunningController, namespace: str
) -> None:
    gone, kept = f"gone-{suffix()}.example.com", f"kept-{suffix()}.example.com"
    cluster.apply(service_manifest(namespace, "web"))
    cluster.apply(ingress(namespace, "gone", gone, "web"))
    cluster.apply(ingress(namespace, "kept", kept, "web"))
    # No pods: a route answers 503, no route 404.
    wait_for(
        lambda: controller.get(gone)[0] == 503 and controller.get(kept)[0] == 503,
        what="both routes",
    )
    wait_for(lambda: controller.total("haproxy_ingress_syncs_total") > 0)
    # The baseline: no reload for longer than a resync interval (3 s here).
    # The controller watches the whole cluster, where earlier modules' objects
    # may still be going away; the claim is that the restart adds no reload.
    reloads = steady(lambda: controller.total("haproxy_ingress_reloads_total"), quiet=4.0)

    cluster.cluster.restart_apiserver(
        lambda etcd_url: delete_from_etcd(etcd_url, namespace, "gone")
    )

    wait_for(lambda: controller.get(gone)[0] == 404, timeout=60, what="the stale route to go")
    assert controller.get(kept)[0] == 503
    # Watches resumed: a new Ingress after the restart is served.
    new = f"new-{suffix()}.example.com"
    cluster.apply(ingress(namespace, "new", new, "web"))
    wait_for(lambda: controller.get(new)[0] == 503, what="a route created after the restart")
    reloaded = {k: v for k, v in controller.metrics().items() if "reloads_total" in k and v}
    applied = [line for line in controller.log_tail(400).splitlines() if "reload=True" in line]
    assert controller.total("haproxy_ingress_reloads_total") == reloads, (reloaded, applied)
    assert "Traceback" not in controller.log.read_text(errors="replace")


def test_kopf_run_works_as_documented(
    cluster: Kube, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``kopf run -m haproxy_ingress.handlers --standalone -A --verbose``, set by environment."""
    running = start_controller(cluster, tmp_path_factory.mktemp("kopf-run"), via_kopf=True)
    try:
        host = f"kopf-{suffix()}.example.com"
        cluster.apply(service_manifest(namespace, "web"))
        cluster.apply(ingress(namespace, "web", host, "web"))
        wait_for(lambda: running.get(host)[0] == 503, what="the route (no pods: 503)")
        assert running.get("nothing.example.com")[0] == 404
        assert "Traceback" not in running.log.read_text(errors="replace")
    finally:
        running.stop()
