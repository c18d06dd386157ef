# leakwatch as a container: `docker build -t leakwatch .`
# Not built in this project's CI (no Docker engine runs there);
# tests/integration/test_deploy_files.py checks that everything it copies and runs exists.

# --- build: dependencies, then the package, into one virtualenv ---------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/leakwatch && /opt/leakwatch/bin/pip install --upgrade pip

# Dependencies in a layer of their own, at the versions CI tested (constraints.txt):
# a change to leakwatch's code does not reinstall them.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/leakwatch/bin/pip install -c constraints.txt -r requirements.txt

COPY README.md alembic.ini ./
COPY alembic ./alembic
COPY leakwatch ./leakwatch
RUN /opt/leakwatch/bin/pip install --no-deps -c constraints.txt . \
 && /opt/leakwatch/bin/pip check

# --- run: the virtualenv only, as an unprivileged user --------------------------------
FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/leakwatch --create-home leakwatch
COPY --from=build /opt/leakwatch /opt/leakwatch
# The environment wins over the config file: LEAKWATCH_HEALTH_ADDRESS here beats
# [daemon] health_address. Set it (not the file) to move the port; the HEALTHCHECK
# reads the same variable, then the file, then the default.
ENV PATH=/opt/leakwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LEAKWATCH_CONFIG=/etc/leakwatch/leakwatch.toml \
    LEAKWATCH_HEALTH_ADDRESS=0.0.0.0:9108
USER leakwatch
WORKDIR /var/lib/leakwatch
# State (.gz seek indexes, the SQLite store if you use one) and reports live here.
VOLUME ["/var/lib/leakwatch"]
EXPOSE 9108
# /healthz answers 200 while the process is alive and (as leader) its cycles are fresh.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-m", "leakwatch.daemon.healthcheck"]
STOPSIGNAL SIGTERM
CMD ["leakwatch", "run"]
