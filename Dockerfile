# Robust Transfer Explorer: the demo in a container (CPU). Build: docker build -t rtx .
# Run: docker run -p 8501:8501 -p 7860:7860 rtx   (explorer on :8501, upload demo on :7860)
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends make dataset-fashion-mnist \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md Makefile ./
COPY compute ./compute
COPY app ./app
COPY assets ./assets
COPY scripts ./scripts
RUN python -m venv .venv && .venv/bin/pip install --no-cache-dir -e . \
 && touch .venv/.installed

ENV RTX_CACHE=/app/cache GRADIO_ANALYTICS_ENABLED=False
RUN .venv/bin/rtx precompute --preset demo --no-progress
EXPOSE 8501 7860
CMD [".venv/bin/rtx", "serve", "--host", "0.0.0.0"]
