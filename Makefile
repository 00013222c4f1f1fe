# approvalgate developer commands. Two matter to a newcomer:
#   make demo   set up .venv and run the main job on the bundled example
#   make test   everything CI runs: lint, types, layering, and the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint testbin peers system-packages clean bench bench-peers lock

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy approvalgate
	$(BIN)/lint-imports

# Real test tools (kube-apiserver, etcd, kubectl, helm) built from pinned Go modules and
# cached outside the repo; a no-op when cached.
testbin: system-packages
	$(PYTHON) tools/testbin.py all

# The peers approvalgate is measured against (issue 18): Kyverno (kyverno, kubectl-kyverno) and
# Gatekeeper (manager, gator) from pinned Go modules (tools/kyverno, tools/gatekeeper), cached
# like testbin. On demand only: ~15 minutes cold on 2 cores (7.5 measured here, docs/design.md),
# about 530 MiB of binaries; never part of testbin, test or CI.
peers:
	$(PYTHON) tools/testbin.py peers

# Debian packages the signer tests use for real: SoftHSM2 (PKCS#11), ssh-agent and ssh-keygen
# with OpenSSH's sk-dummy security-key middleware (tools/system-packages.sh; apt-get as root).
system-packages:
	bash tools/system-packages.sh

# The real tools are built above, so a missing one is a failure, not a skip
# (APPROVALGATE_REQUIRE_E2E=1). Skips are listed at the end; a skip in tests/e2e, tests/chart
# or tests/reliability fails the run (tests/conftest.py).
test: setup lint testbin
	APPROVALGATE_REQUIRE_E2E=1 $(BIN)/python -m pytest

# The image's hash-locked dependencies (requirements/, read by the Dockerfile with
# --require-hashes --no-deps): the runtime dependencies of pyproject.toml and the build
# back-end of its [build-system], resolved from PyPI for CPython 3.11 on Linux (the image's)
# with every file's sha256. Run it after changing either list, or to take newer releases on
# purpose (`make lock LOCK_ARGS=--upgrade`; without it pins still in range are kept), and
# review the diff like code: it is what the image runs. pip-tools is installed,
# pinned, in a venv of its own (.lock-venv), never in .venv.
LOCK_VENV ?= .lock-venv
PIP_TOOLS ?= pip-tools==7.7.0
LOCK_ARGS ?=
PIP_COMPILE := $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS)
lock:
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "make lock: run it with Python 3.11, the image'"'"'s (PYTHON=python3.11)")'
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --disable-pip-version-check '$(PIP_TOOLS)'
	$(PIP_COMPILE) --output-file requirements/image.txt pyproject.toml
	$(PIP_COMPILE) --build-deps-for wheel --only-build-deps --output-file requirements/build.txt \
	  pyproject.toml

clean:
	rm -rf $(VENV) $(LOCK_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (not tests; bounded, minutes): compile vs helm template, check, CLI start-up,
# the webhook's (bench/webhook_bench.py, apiserver_admission.py, view_admission.py) and the
# approval queue's (bench/queue_latency.py: a real API server and controller, ~5 minutes).
# Rewrites docs/benchmarks.md.
bench: setup testbin
	APPROVALGATE_BENCH_COMMAND="make bench" $(BIN)/python bench/run.py

# approvalgate against Kyverno and Gatekeeper on one real API server (issue 18): builds the
# peers first (`make peers`: ~15 minutes cold, cached after), then about 3 minutes of creates
# (200 per arm and phase in each of 5 rounds: 1,000 each), then the CLI part. Rewrites only
# the Peers section of docs/benchmarks.md.
bench-peers: setup testbin
	$(BIN)/python tools/testbin.py peers
	APPROVALGATE_BENCH_COMMAND="make bench-peers" $(BIN)/python bench/peers/run.py --write docs/benchmarks.md
