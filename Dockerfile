# syntax=docker/dockerfile:1
# The approvalgate webhook image. Same steps as the README's install (`pip install .`), split
# in two stages: the builder turns the source into a wheel; the final stage installs only that
# wheel and its runtime dependencies (binary wheels from PyPI), with no compiler, no build
# front-end and no source tree. Not built in this repository's CI (no Docker engine there);
# tests/chart/test_dockerfile.py runs its pip commands as written.
#
# Every package either stage installs from PyPI is pinned with its sha256 in requirements/
# (`make lock`; docs/deploy.md "The image"): the runtime dependencies in image.txt, the build
# back-end in build.txt. `--require-hashes --no-deps --only-binary :all:` installs those wheels
# and nothing else, so two builds of one commit ship the same code, and a new release of a
# dependency, or of one of theirs, reaches the image only through a reviewed change of the
# lock. `pip check` fails the build if the lock misses one.
#
#   docker build -t ghcr.io/proompteng/approvalgate:0.1.0 .
#
# The chart (charts/approvalgate) passes the same arguments as CMD below; keep them in step.
# It adds the pinned bundle-signing keys (--bundle-key ...): without them the image refuses
# to start (exit 2, with advice): keys are the operator's, never the image's.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY . .
RUN pip install --require-hashes --no-deps --only-binary :all: -r requirements/build.txt \
    && pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && cp requirements/image.txt /wheels/requirements.txt

FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY --from=builder /wheels /wheels
RUN pip install --require-hashes --no-deps --only-binary :all: -r /wheels/requirements.txt \
    && pip install --no-deps --no-index /wheels/approvalgate-*.whl \
    && pip check \
    && rm -rf /wheels \
    && groupadd --system --gid 65532 approvalgate \
    && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin approvalgate
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["approvalgate"]
CMD ["webhook", "serve", "--bundle", "/etc/approvalgate/bundle/bundle.json", "--tls-cert", "/etc/approvalgate/tls/tls.crt", "--tls-key", "/etc/approvalgate/tls/tls.key", "--port", "8443", "--metrics-port", "9090", "--workers", "1", "--max-connections", "256", "--log-level", "info", "--cluster-view", "auto", "--view-max-age", "30"]
