# prepbot container image.
#
#   docker build -t prepbot .
#   docker run --rm -e PREPBOT_SLACK__BOT_TOKEN=... -e PREPBOT_SLACK__APP_TOKEN=... \
#       -e PREPBOT_DATABASE__URL=postgresql://USER:PASSWORD@HOST/DB -p 8080:8080 prepbot
#
# Or `docker compose up` (see docker-compose.yml and .env.example) for prepbot with PostgreSQL.
# Plain Dockerfile syntax only (no BuildKit mounts) so the legacy builder that Debian's
# docker-compose v1 may use can build it too.

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: a virtualenv at /opt/venv with prepbot and its dependencies -------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, read from pyproject.toml, so this layer is rebuilt only when they change.
# Every dependency ships manylinux wheels for CPython 3.11: no compiler is needed.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# Then the project itself: a wheel (hatchling bundles content/ as prepbot/_builtin_content).
COPY README.md ./
COPY src ./src
COPY content ./content
RUN pip wheel --no-deps -w /wheels . \
    && pip install --no-deps /wheels/prepbot-*.whl \
    && pip check \
    && prepbot --help > /dev/null \
    && prepbot content check

# --- runtime: the virtualenv and a non-root user, nothing else -------------------------------
FROM ${PYTHON_IMAGE} AS runtime

RUN groupadd --gid 10001 prepbot \
    && useradd --uid 10001 --gid 10001 --no-log-init --create-home --home-dir /home/prepbot \
        --shell /usr/sbin/nologin prepbot

COPY --from=builder /opt/venv /opt/venv

# PREPBOT_REQUIRE_PLATFORM: with no Slack or Discord token the bot exits with an error instead
# of falling back to the terminal study group, which makes no sense in a container.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PREPBOT_REQUIRE_PLATFORM=true \
    PREPBOT_HTTP__HOST=0.0.0.0 \
    PREPBOT_HTTP__PORT=8080 \
    PREPBOT_LOG__FORMAT=json

WORKDIR /home/prepbot

# 8080: /healthz and /metrics. 3000: Slack HTTP mode (PREPBOT_SLACK__MODE=http) only.
EXPOSE 8080 3000

# No curl in slim images: ask Python. Proxies are bypassed (an HTTP_PROXY in the environment
# must not swallow a request to 127.0.0.1); a non-2xx answer or no answer exits non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/healthz' % os.environ.get('PREPBOT_HTTP__PORT', '8080'), timeout=4)"]

USER prepbot

ENTRYPOINT ["prepbot"]
CMD ["run"]
