"""haproxy-ingress: a Kubernetes Ingress controller on Kopf that drives HAProxy.

Importing the package registers the Kopf handlers, so that
``kopf run -m haproxy_ingress`` runs the controller.
"""

from haproxy_ingress import handlers as handlers
