# One image for both Ghost Engine services. The default command runs the orchestrator;
# the worker's ECS task definition overrides it with ["python", "worker.py"] (and sets
# PORT=8081, which the HEALTHCHECK follows).
FROM python:3.11.14-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0

WORKDIR /app

# Dependencies first: this layer is reused until requirements.txt changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin ghost

# Only the runtime modules (tests/test_dockerfile.py keeps this list equal to what
# orchestrator.py, worker.py and healthcheck.py import), openapi.json, which apidoc.py serves
# at GET /openapi.json, and the web console's files, which webconsole.py serves at GET /.
# Owned by root, so the service cannot rewrite its code.
COPY orchestrator.py worker.py healthcheck.py dispatcher.py workerclient.py leases.py backoff.py loops.py awsconfig.py \
     store.py dynamostore.py httpkit.py httphead.py httpserver.py jsonbody.py config.py logjson.py metrics.py \
     scene.py cpugate.py apidoc.py jobapi.py watch.py joblist.py dynamolist.py webconsole.py openapi.json ./
COPY console/index.html console/app.js console/app.css console/icon.svg ./console/

USER 10001

EXPOSE 8080 8081

# The same command as the ECS task definitions' healthCheck: GET http://127.0.0.1:$PORT/healthz
# (PORT read when the check runs, default 8080), exit 0 on 2xx, else 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "healthcheck.py"]

CMD ["python", "orchestrator.py"]
