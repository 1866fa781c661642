# syntax=docker/dockerfile:1
#
# One image for every FlowForge role: the command picks it (up, api, scheduler, worker, status, ...).
#
#   docker build -t flowforge:0.1.0 .
#   docker run --rm -p 127.0.0.1:8080:8080 -e FLOWFORGE_API_TOKEN=... flowforge:0.1.0 up --host 0.0.0.0 --examples
#
# Two stages: the builder turns the package and its dependencies into wheels; the final stage installs
# those wheels only (no index, no compiler) and keeps none of the build's leftovers. Needs BuildKit
# (the default builder since Docker Engine 23, and always with `docker compose build`).
# tests/test_deploy.py checks this file by reading it: docs/DEPLOYMENT.md says what it checks.

# A full version and Debian release, never `latest`: the same tag gives the same Python.
ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

# ---- builder: wheels for FlowForge and every dependency ------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# README.md is read by the build (it is the package's long description). The .dockerignore lets in
# only what these COPY lines name.
COPY pyproject.toml README.md ./
COPY flowforge ./flowforge
# With the `all` extra (psycopg and redis), so that one image runs every role on PostgreSQL and Redis.
# psycopg[binary] and every other dependency ship binary wheels for linux/amd64 and linux/arm64, so
# nothing is compiled here either.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels ".[all]"

# ---- final: the runtime ------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# The package version; tests/test_deploy.py keeps this default equal to flowforge.__version__, and
# the install below refuses a wheel of any other version.
ARG VERSION=0.1.0

LABEL org.opencontainers.image.title="FlowForge" \
      org.opencontainers.image.description="A DAG workflow scheduler for shell-command tasks: api, scheduler, worker or everything in one process (up)." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Tasks are shell commands sent over the API: never run them as root. A numeric UID, so that
# Kubernetes' runAsNonRoot can verify it (deploy/kubernetes sets the same runAsUser).
RUN groupadd --gid 10001 flowforge \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/flowforge flowforge

# The wheels come in through a bind mount of the builder stage, so no layer of this image keeps them.
# setuptools and wheel (in the base image for building) go: nothing here builds packages.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "flowforge[all]==${VERSION}" \
 && pip uninstall --yes setuptools wheel \
 && flowforge --version

ENV HOME=/home/flowforge \
    FLOWFORGE_HOME=/home/flowforge/.flowforge
# The data directory of `flowforge up` (SQLite), owned by the user so that a volume mounted here
# starts out writable. Roles on PostgreSQL write nothing to it.
RUN mkdir -p /home/flowforge/.flowforge && chown 10001:10001 /home/flowforge/.flowforge

# The working directory: tasks run here (the user's home, so a task can write relative paths).
# Nothing is copied from the source tree: the example DAGs of `flowforge up --examples` ship inside
# the package.
WORKDIR /home/flowforge

USER 10001:10001

EXPOSE 8080

# Liveness of `up` and `api` on the default port (slim has no curl; /health needs no token). A
# scheduler or worker serves no API: docker-compose.yml gives those their own check on the metrics port.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]

ENTRYPOINT ["flowforge"]
CMD ["--help"]
