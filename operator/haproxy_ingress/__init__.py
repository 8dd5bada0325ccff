"""haproxy-ingress: a Kubernetes Ingress controller on Kopf that drives HAProxy.

The package root imports nothing: the pure core (translate, plan, render)
loads without Kopf. The Kopf handlers live in :mod:`haproxy_ingress.handlers`,
so ``kopf run -m haproxy_ingress.handlers`` runs the controller.
"""
