# The app image: both processes of the Procfile (`agentbot web`, `agentbot worker`), installed from the
# hash-locked requirements.lock so every build gets the same packages. The code sandbox is another image
# (sandbox/Dockerfile), run by the worker on a Docker engine.
#   docker build -t agentbot:latest .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first: this layer is reused until the lockfile changes.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock

COPY pyproject.toml README.md ./
COPY agentbot ./agentbot
COPY worker ./worker
RUN pip install --no-deps --no-build-isolation . \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /app agentbot

USER 10001:10001
EXPOSE 3000
# `web` serves Slack on $PORT; compose and Kubernetes run `agentbot worker` from the same image.
CMD ["agentbot", "web"]
