# Robust Transfer Explorer in a container: explorer on :8501, upload demo on :7860 (README, "Docker").
# CPU by default; a CUDA image: --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
# (PyPI's Linux torch wheels carry their own CUDA libraries; the CUDA base adds the runtime the driver pairs with).
# The demo cache is NOT built here: docker/entrypoint.sh fills the mounted /cache volume at first start.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /app
COPY docker/install_system.sh docker/
RUN docker/install_system.sh

COPY pyproject.toml README.md Makefile ./
COPY compute ./compute
COPY app ./app
COPY assets ./assets
COPY scripts ./scripts
# PyPI's Linux torch wheel pulls the CUDA libraries (~5 GB) even for a CPU image; a CPU-only torch index
# (--build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu) installs torch/torchvision from there first,
# at the versions pyproject.toml pins (README, "Docker": untested here, that index is not reachable from our machines).
ARG TORCH_INDEX_URL=""
RUN python3.11 -m venv .venv \
 && if [ -n "${TORCH_INDEX_URL}" ]; then \
      grep -oE '"torch(vision)?==[^"]+"' pyproject.toml | tr -d '"' \
        | xargs .venv/bin/pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}"; \
    fi \
 && .venv/bin/pip install --no-cache-dir -e . \
 && touch .venv/.installed
COPY docker/entrypoint.sh docker/

# Volumes: the cache (demo results, source models), torchvision datasets, checkpoints and the hub cache.
ENV PATH=/app/.venv/bin:$PATH \
    RTX_CACHE=/cache RTX_DATA=/data RTX_CHECKPOINTS=/checkpoints HF_HOME=/checkpoints/huggingface \
    GRADIO_ANALYTICS_ENABLED=False PYTHONUNBUFFERED=1
VOLUME ["/cache", "/data", "/checkpoints"]
EXPOSE 8501 7860
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["rtx", "serve", "--host", "0.0.0.0"]
