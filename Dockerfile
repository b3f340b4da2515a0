# cartsync service image: `docker build -t cartsync:0.1.0 .`
#
# It needs CARTSYNC_REDIS_URL (and CARTSYNC_JWT_SECRETS) at run time. The embedded Redis that
# `cartsync serve` starts when CARTSYNC_REDIS_URL is unset is for local use only, and this image
# ships no redis-server for it: without the URL the container exits 1 and says so.
# Settings: docs/configuration.md. Local stack: compose.yaml. Kubernetes: k8s/.

# Both stages use the same base, so the venv's python symlink resolves in the runtime stage.
ARG PYTHON_IMAGE=python:3.11.17-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Exactly the versions in requirements.lock (`make lock`), each checked against its hash, so
# every build installs the same dependencies; all have binary wheels, so no compiler is needed.
# This layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN python -m venv /opt/cartsync \
 && /opt/cartsync/bin/pip install --require-hashes --only-binary :all: -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY service ./service
# service/cartsync/pages/static/cartsync.js links to the JS client's source; the wheel takes its content.
COPY clients/js/src/cartsync.js ./clients/js/src/cartsync.js
# cartsync itself on top, resolving nothing: the lock already holds all it needs.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/cartsync/bin/pip install --no-deps /wheels/cartsync-*.whl \
 && /opt/cartsync/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 cartsync \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin cartsync
COPY --from=builder /opt/cartsync /opt/cartsync
ENV PATH=/opt/cartsync/bin:$PATH \
    CARTSYNC_HOST=0.0.0.0 \
    CARTSYNC_DATA_DIR=/tmp/cartsync \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# /metrics (CARTSYNC_METRICS_PORT), kept apart from the API port; publish it only to Prometheus.
EXPOSE 9100
# slim has no curl; the venv's python asks /healthz (process up, not Redis: that is /readyz).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:' + os.environ.get('CARTSYNC_PORT', '8000') + '/healthz'; sys.exit(0 if urllib.request.urlopen(url, timeout=2).status == 200 else 1)"]
# Exec form: cartsync is PID 1 and gets SIGTERM itself (websockets close with 1001, exit 0).
ENTRYPOINT ["cartsync", "serve"]
