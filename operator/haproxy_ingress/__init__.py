"""haproxy-ingress: a Kubernetes Ingress controller on Kopf that drives HAProxy.

The package root imports nothing but the standard library: the pure core
(translate, plan, render) loads without Kopf. The Kopf handlers live in
:mod:`haproxy_ingress.handlers`, so ``kopf run -m haproxy_ingress.handlers``
runs the controller. First, before Kopf or we import kubernetes-asyncio,
its generated client is made to load one name at a time (see
:mod:`haproxy_ingress.lazyclient`: 30 MiB and 800 modules fewer).
"""

from haproxy_ingress import lazyclient

lazyclient.install()
