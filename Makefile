# The verbs people type. `make test` is what CI runs (through .ci/run).
PYTHON ?= python3
PYTEST ?= $(PYTHON) -m pytest
# `make run` and `make test` work on a fresh machine: the first run installs
# HAProxy (Debian's package) and the Python dependencies, then remembers it.
DEPS := .make/deps.stamp

.PHONY: help install test test-unit test-haproxy test-e2e test-node image lint typecheck format golden run cluster-up cluster-down clean bench-churn bench-translate bench-scale bench-watchgap bench-hand bench-controller-rss

help:
	@echo "make run          run the controller (starts a local control plane and HAProxy when KUBECONFIG is unset)"
	@echo "make run NODE=1   the same on a real node: controller image, kubectl apply -k, pods by the kubelet"
	@echo "make test         lint, type-check and run every test (unit, real HAProxy, real API server)"
	@echo "make test-unit    pure tests only (seconds)"
	@echo "make lint         ruff + mypy --strict"
	@echo "make golden       regenerate the golden render files after an intended change"
	@echo "make cluster-up   start the local control plane (built once per machine); NODE=1: with a real node"
	@echo "make image        the controller's image without Docker, imported into the node if one runs"
	@echo "make test-node    real-node tests: kubelet + containerd + runc + CNI (root)"
	@echo "make bench-churn  failed requests, reloads and convergence under endpoint churn"
	@echo "make bench-translate  the pure stages at scale"
	@echo "make bench-scale  10k Ingresses: full sync, render, HAProxy start, endpoint-change blocking"
	@echo "make bench-hand   req/s and HAProxy CPU per request: our config vs a minimal hand-written one"
	@echo "make bench-watchgap  API requests and seconds to consistency per watch gap, 1k and 10k Ingresses"
	@echo "make bench-controller-rss  the controller process's RSS at 10k Ingresses / 50k endpoints"

install: $(DEPS)

$(DEPS): pyproject.toml
	@mkdir -p .make
	@if ! command -v haproxy >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1 \
		|| ! command -v iptables >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "== installing haproxy, iproute2 and iptables (Debian packages)"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy iproute2 iptables >/dev/null; \
		else \
			echo "haproxy, ip or iptables is missing: sudo apt-get install haproxy iproute2 iptables" >&2; exit 1; \
		fi; \
	fi
	@echo "== installing the Python dependencies"
	$(PYTHON) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

# Everything, then the real-node tests (tests/node: kubelet + containerd + runc +
# CNI, root; they queue for the machine's one node slot).
test: $(DEPS) lint
	$(PYTEST) -q
	$(PYTEST) -q -m node tests/node

# Every pure test: no haproxy binary, no control plane (the marked ones need them).
test-unit: $(DEPS)
	$(PYTEST) -q -m "not haproxy and not e2e" tests/unit tests/property

test-haproxy: $(DEPS)
	$(PYTEST) -q tests/haproxy

test-e2e: $(DEPS)
	$(PYTEST) -q tests/e2e

# A real node alone: kubelet + containerd + runc + CNI, the controller from its image.
test-node: $(DEPS)
	$(PYTEST) -q -m node tests/node

# The controller's image without Docker (hack/image.py); imported into the local
# node when `make cluster-up NODE=1` runs one.
image: $(DEPS)
	$(PYTHON) hack/image.py build --import-if-node

lint: $(DEPS) typecheck
	$(PYTHON) -m ruff check operator tests hack bench
	$(PYTHON) -m ruff format --check operator tests hack bench

typecheck: $(DEPS)
	$(PYTHON) -m mypy

format:
	$(PYTHON) -m ruff format operator tests hack bench
	$(PYTHON) -m ruff check --fix operator tests hack bench

golden: $(DEPS)
	$(PYTEST) -q tests/unit/test_render_golden.py --update-golden

run: $(DEPS)
	NODE=$(NODE) $(PYTHON) hack/run.py

# The pure stages at scale (full translation vs endpoint fast path, plan, render).
bench-translate: $(DEPS)
	$(PYTHON) bench/translate.py $(BENCH_ARGS)

# Endpoint churn under load: one JSON line per mode and scenario (see bench/README.md).
# BENCH_ARGS passes flags, e.g. make bench-churn BENCH_ARGS="--rate 2000 --modes controller"
bench-churn: $(DEPS)
	$(PYTHON) bench/churn.py $(BENCH_ARGS)

# Issue 13's figures at 10,000 Ingresses and 1,000 TLS Secrets (one JSON line each).
bench-scale: $(DEPS)
	$(PYTHON) bench/scale.py $(BENCH_ARGS)

bench-watchgap: $(DEPS)
	$(PYTHON) bench/watchgap.py $(BENCH_ARGS)

# Issue 13's request path: our rendered config vs a minimal hand-written one, 1 and
# 10k Ingresses side by side (one JSON line per round, a summary with ratios per size).
bench-hand: $(DEPS)
	$(PYTHON) -m bench.hand_config $(BENCH_ARGS)

# Issue 13's whole-process RSS: a control plane, the synthetic cluster, the controller as users run it.
bench-controller-rss: $(DEPS)
	$(PYTHON) bench/controller_rss.py $(BENCH_ARGS)

# NODE=1: also a real node (kubelet + containerd + runc + CNI + kube-proxy; root).
cluster-up:
	$(PYTHON) hack/localcluster.py up $(if $(NODE),--node)

cluster-down:
	$(PYTHON) hack/localcluster.py down

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist
