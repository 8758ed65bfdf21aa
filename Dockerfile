# The stream-app worker image (docker-compose.yml builds it). Run time needs no torch:
# onnxruntime, the tokenizer and the committed int8 model in onnx_models/.
#
# Python packages come from the same hash-checked locks as `make setup`
# (requirements/bootstrap.lock for uv, then requirements/dev.lock; docs/development.md):
# exact versions, every file's sha256 checked, wheels only. The lock also holds the test and
# tools extras (pytest, matplotlib, ...); there is no run-time-only lock yet, so they are in
# the image too (docs/deployment.md).
FROM python:3.11-slim

ENV VIRTUAL_ENV=/opt/venv
COPY requirements/bootstrap.lock requirements/dev.lock /tmp/requirements/
RUN python -m venv $VIRTUAL_ENV \
    && $VIRTUAL_ENV/bin/pip install --no-cache-dir --require-hashes --no-deps \
        --only-binary :all: -r /tmp/requirements/bootstrap.lock \
    && $VIRTUAL_ENV/bin/uv pip sync --no-cache --python $VIRTUAL_ENV/bin/python \
        --require-hashes --only-binary :all: \
        /tmp/requirements/dev.lock /tmp/requirements/bootstrap.lock

WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream_app ./stream_app
COPY schemas ./schemas
COPY onnx_models ./onnx_models
# the package itself only (--no-deps): everything it needs came from the lock above
RUN $VIRTUAL_ENV/bin/uv pip install --no-cache --python $VIRTUAL_ENV/bin/python \
        --no-deps --no-build-isolation . \
    && $VIRTUAL_ENV/bin/uv pip check --python $VIRTUAL_ENV/bin/python \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /var/lib/stream-app/state && chown app /var/lib/stream-app/state
USER app

# /metrics and /healthz on every interface (a container's loopback is its own);
# state on a path that docker-compose.yml keeps on a volume
ENV PATH=$VIRTUAL_ENV/bin:$PATH \
    STREAM_APP_SENTIMENT_MODEL_DIR=/app/onnx_models/sentiment \
    STREAM_APP_METRICS_PORT=9308 \
    STREAM_APP_METRICS_BIND_ADDRESS=0.0.0.0 \
    STREAM_APP_STATE_DIR=/var/lib/stream-app/state
EXPOSE 9308
ENTRYPOINT ["stream-app"]
CMD ["worker"]
