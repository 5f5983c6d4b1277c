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
# orchestrator.py and worker.py import). Owned by root, so the service cannot rewrite its code.
COPY orchestrator.py worker.py dispatcher.py workerclient.py httpkit.py config.py logjson.py \
     metrics.py scene.py store.py dynamostore.py ./

USER 10001

EXPOSE 8080 8081

# Slim images have no curl; the interpreter is enough. Checks http://127.0.0.1:${PORT:-8080}/healthz,
# PORT read when the check runs; urlopen raises (exit 1) on refusal, timeout or a non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + (os.environ.get('PORT') or '8080') + '/healthz', timeout=3)"]

CMD ["python", "orchestrator.py"]
