# The stream-app worker image (docker-compose.yml builds it). Run time needs no torch:
# onnxruntime, the tokenizer and the committed int8 model in onnx_models/.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream_app ./stream_app
COPY schemas ./schemas
COPY onnx_models ./onnx_models
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 app
USER app

ENV STREAM_APP_SENTIMENT_MODEL_DIR=/app/onnx_models/sentiment \
    STREAM_APP_METRICS_PORT=9308
EXPOSE 9308
ENTRYPOINT ["stream-app"]
CMD ["worker"]
