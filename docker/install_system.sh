#!/usr/bin/env bash
# System packages for the image, on a Debian (python:3.11-slim) or Ubuntu (nvidia/cuda) base: Python 3.11 with
# venv when the base lacks it, make, and Debian's Fashion-MNIST (the demo's source data, no download at run time).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(make ca-certificates dataset-fashion-mnist)
command -v python3.11 >/dev/null 2>&1 || packages+=(python3.11 python3.11-venv)
apt-get update
apt-get install -y --no-install-recommends "${packages[@]}"
rm -rf /var/lib/apt/lists/*
