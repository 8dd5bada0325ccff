"""The lazy kubernetes-asyncio client resolves every name as the eager one does, and loads less."""

from __future__ import annotations

import json

from haproxy_ingress.lazyclient import LAZY_PACKAGES, parse_init
from tests.unit.test_layers import run_fresh

# Every public name of the three generated packages → "module.qualname".
_DUMP = f"""
import importlib, json, sys
out = {{}}
for package in {LAZY_PACKAGES!r}:
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        out[package + ":" + name] = value.__module__ + "." + value.__qualname__
out["models attribute"] = sys.modules[{LAZY_PACKAGES[0]!r}].models.__name__
print(json.dumps(out))
"""


def test_every_name_resolves_to_the_same_class_as_the_eager_import() -> None:
    eager = json.loads(run_fresh(_DUMP))
    lazy = json.loads(run_fresh("from haproxy_ingress import lazyclient\n" + _DUMP))
    assert len(eager) > 700  # the packages really are the big generated ones
    assert lazy == eager


def test_the_controller_loads_a_few_models_and_kopf_recognises_them() -> None:
    probe = """
import json, sys
import haproxy_ingress.handlers  # Kopf, our handlers and every client user
from kopf._cogs.helpers import thirdparty
from kubernetes_asyncio.client.models.v1_object_meta import V1ObjectMeta
print(json.dumps({
    "models": sum(m.startswith("kubernetes_asyncio.client.models.") for m in sys.modules),
    "kopf_sees_the_class": thirdparty.V1ObjectMetaAsync is V1ObjectMeta,
    "lazy": type(sys.modules["kubernetes_asyncio.client"]).__name__,
}))
"""
    found = json.loads(run_fresh(probe))
    assert found == {"models": found["models"], "kopf_sees_the_class": True, "lazy": "LazyPackage"}
    assert found["models"] < 40  # of about 700


def test_responses_deserialise_into_models_loaded_on_demand() -> None:
    probe = """
import asyncio, json
import haproxy_ingress
from kubernetes_asyncio import client

class Response:
    data = json.dumps({"metadata": {"name": "lock"}, "spec": {"holderIdentity": "me"}})

async def main():
    async with client.ApiClient() as api:
        lease = api.deserialize(Response(), "V1Lease")
    print(type(lease).__name__, lease.metadata.name, lease.spec.holder_identity)

asyncio.run(main())
"""
    assert run_fresh(probe).split() == ["V1Lease", "lock", "me"]


def test_an_init_that_does_more_than_import_is_left_eager() -> None:
    generated = '''# coding: utf-8
"""
    Kubernetes
"""
from __future__ import absolute_import
__version__ = "36.1.0"
__all__ = [
    "V1Lease",
]
from kubernetes_asyncio.client.models.v1_lease import V1Lease  # noqa
'''
    assert parse_init(generated) == (
        {"V1Lease": "kubernetes_asyncio.client.models.v1_lease"},
        "36.1.0",
    )
    assert parse_init(generated + "V1Lease.patched = True\n") is None
    assert parse_init(generated + "from os import path\n") is None
