"""How long the pure stages take at cluster scale: full path vs endpoint fast path.

    python bench/translate.py [--ingresses 1000] [--pods 5] [--repeat 5]

Builds a synthetic cluster (one Service, one EndpointSlice and one two-path
Ingress per app), then times a full translation, the endpoint fast path for
one Service, planning, and rendering. Prints one JSON line of medians (ms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.kube import (
    endpoint,
    endpoint_slice,
    ingress,
    ingress_class,
    path,
    rule,
    service,
)

from haproxy_ingress.cluster import ClusterView
from haproxy_ingress.haproxy.config import RenderOptions, environment, render
from haproxy_ingress.haproxy.paths import HAProxyPaths
from haproxy_ingress.model import TranslateOptions
from haproxy_ingress.plan import plan
from haproxy_ingress.translate import refresh_endpoints, translate


def cluster(apps: int, pods: int, *, scaled: int | None = None) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = [ingress_class(default=True)]
    for i in range(apps):
        count = pods + 1 if i == scaled else pods
        objects.append(service(f"app{i}"))
        objects.append(
            endpoint_slice(
                f"app{i}",
                *(endpoint(f"10.{i // 250}.{i % 250}.{j + 1}") for j in range(count)),
            )
        )
        objects.append(
            ingress(
                f"app{i}",
                rule(
                    f"app{i}.example.com",
                    path("/", f"app{i}"),
                    path("/api", f"app{i}", path_type="Exact"),
                ),
            )
        )
    return objects


def median_ms(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ingresses", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    options = TranslateOptions()
    before = ClusterView.from_objects(cluster(args.ingresses, args.pods), options)[0]
    after = ClusterView.from_objects(cluster(args.ingresses, args.pods, scaled=0), options)[0]
    desired = translate(before, options)
    applied = plan(None, desired).target
    scaled = translate(after, options)
    render_options = RenderOptions(HAProxyPaths(Path("/nonexistent")))
    templates = environment()
    result = {
        "ingresses": args.ingresses,
        "endpoints": args.ingresses * args.pods,
        "translate_full_ms": median_ms(lambda: translate(after, options), args.repeat),
        "translate_fast_path_ms": median_ms(
            lambda: refresh_endpoints(desired, after, {("default", "app0")}), args.repeat
        ),
        "plan_ms": median_ms(lambda: plan(applied, scaled), args.repeat),
        "render_ms": median_ms(lambda: render(applied, render_options, templates), args.repeat),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
