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

test: setup $(CHROME)
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

bench: setup
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

# The Docker image built and served for real (tests/test_docker.py, marker `docker`; about 10-20 min, 7 GB while
# it runs, removed after). Without Docker Hub: `scripts/make_base_image.sh` and RTX_DOCKER_BASE=rtx-base:bookworm.
docker-test: setup $(CHROME)
	RTX_DOCKER_TEST=1 $(BIN)/python -m pytest -q -s -m docker tests/test_docker.py
