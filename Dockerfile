# leakwatch as a container: `docker build -t leakwatch .`
# Not built in this project's CI (no Docker engine runs there); kept simple on purpose.

# --- build: a wheel and its dependencies, compiled where needed -------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY leakwatch ./leakwatch
RUN python -m venv /opt/leakwatch \
 && /opt/leakwatch/bin/pip install --upgrade pip \
 && /opt/leakwatch/bin/pip install .

# --- run: the virtualenv only, as an unprivileged user ---------------------------
FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/leakwatch --create-home leakwatch
COPY --from=build /opt/leakwatch /opt/leakwatch
ENV PATH=/opt/leakwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LEAKWATCH_CONFIG=/etc/leakwatch/leakwatch.toml \
    LEAKWATCH_HEALTH_ADDRESS=0.0.0.0:9108
USER leakwatch
WORKDIR /var/lib/leakwatch
EXPOSE 9108
# /healthz answers 200 when the process is alive and (as leader) its cycles are fresh.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4).status == 200 else 1)"
STOPSIGNAL SIGTERM
CMD ["leakwatch", "run"]
