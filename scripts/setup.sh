#!/usr/bin/env bash
# Create .venv and install rtxpack with everything the example and the tests need (CPU-only).
# torch is pinned to 2.13.0: on these machines that is a CPU build from local disk; a bare
# `torch` would pull a CUDA build of several GB.
set -euo pipefail
cd "$(dirname "$0")/.."
# The registry tests start a real CNCF registry and use skopeo and htpasswd (Debian packages).
# As root with apt-get (CI, a fresh machine) they are installed; elsewhere those tests skip.
if ! command -v docker-registry >/dev/null || ! command -v skopeo >/dev/null \
    || ! command -v htpasswd >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry skopeo apache2-utils
    else
        echo "note: docker-registry/skopeo/htpasswd missing and not root: the registry tests will skip" >&2
    fi
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-ci.txt
.venv/bin/python -m pip install --quiet --no-deps -e .
.venv/bin/python -c "import rtxpack, tensorrt_rtx, torch, onnxruntime; print('rtxpack', rtxpack.__version__, '| tensorrt_rtx', tensorrt_rtx.__version__, '| torch', torch.__version__)"
