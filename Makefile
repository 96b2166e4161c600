# The two commands of the README: `make demo` and `make test`.
# Each creates .venv when missing, installs what is missing, and is a fast no-op otherwise.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
FMNIST  := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
CHROME  := /usr/bin/chromium
export RTX_CACHE ?= $(CURDIR)/cache

.PHONY: demo test setup system explore lint bench clean-cache docker-test

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(FMNIST):
	scripts/apt_install.sh dataset-fashion-mnist

$(CHROME):
	scripts/apt_install.sh chromium

system: $(FMNIST)

setup: $(STAMP) system

demo: setup
	$(BIN)/rtx precompute --preset demo
	$(BIN)/rtx serve

# The numerically sensitive tests (marker `numerics`) once more on another CPU kernel path: ATen's portable
# kernels instead of AVX2/AVX-512, MKL's compatible code path, convolutions without oneDNN, two threads instead of
# one. A test that holds only on the kernels of the machine it was written on fails here on every machine.
KERNEL_PATH := ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE RTX_TEST_MKLDNN=0 RTX_TEST_THREADS=2

test: setup $(CHROME)
	$(BIN)/python -m pytest -q
	$(KERNEL_PATH) $(BIN)/python -m pytest -q -m numerics -p no:cacheprovider --durations 5

lint: setup
	$(BIN)/ruff check .

bench: setup
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

# The Docker image built and served for real (tests/test_docker.py, marker `docker`; about 10-20 min, 7 GB while
# it runs, removed after). Without Docker Hub: `scripts/make_base_image.sh` and RTX_DOCKER_BASE=rtx-base:bookworm.
docker-test: setup $(CHROME)
	RTX_DOCKER_TEST=1 $(BIN)/python -m pytest -q -s -m docker tests/test_docker.py
