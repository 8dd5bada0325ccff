"""HAProxy's templates, shipped as the package data of ``haproxy_ingress.templates``.

pyproject.toml maps this directory to that package, so the templates stay at
the top of the repository and are found through :mod:`importlib.resources`
whether the package is installed from a wheel or in editable mode.
"""
