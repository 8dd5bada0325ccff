# The image manifests/40-deployment.yaml names: Debian's HAProxy 2.6 + the controller.
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends haproxy libcap2-bin \
    # Non-root HAProxy binds :80/:443 through this file capability where exec may
    # gain it (docker run --user 10001). Not in the shipped Pod: non-root starts
    # with no permitted capabilities and allowPrivilegeEscalation: false sets
    # no_new_privs; there the Pod's sysctl ip_unprivileged_port_start=80 does it.
    # hack/image.py builds the same image without Docker (tests/unit/test_image_recipe.py).
    && setcap cap_net_bind_service=+ep /usr/sbin/haproxy \
    && apt-get purge -y libcap2-bin && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 haproxy-ingress \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/haproxy-ingress haproxy-ingress \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/haproxy-ingress

WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY templates ./templates
RUN pip install --no-cache-dir . && rm -rf /src

USER 10001:10001
WORKDIR /var/lib/haproxy-ingress
ENTRYPOINT ["haproxy-ingress"]
CMD ["run"]
