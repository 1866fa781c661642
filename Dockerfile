# One image for every FlowForge role: the command picks it (api, scheduler, worker, up, ...).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies and package in one layer; psycopg[binary] ships its own libpq, so no system packages.
# README.md is read by the build (it is the package's long description).
COPY pyproject.toml README.md ./
COPY flowforge ./flowforge
RUN pip install .

# The example DAGs, for `flowforge up --examples` (looked up in the working directory).
COPY examples ./examples

# Tasks are shell commands sent over the API: never run them as root.
RUN useradd --create-home --uid 10001 flowforge
USER flowforge
ENV FLOWFORGE_HOME=/home/flowforge/.flowforge

EXPOSE 8080
ENTRYPOINT ["flowforge"]
CMD ["--help"]
