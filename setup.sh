#!/usr/bin/env bash
# One-time set-up: system packages (when run as root with apt), a virtual environment in .venv,
# PyTorch (CPU build, installed first: a bare `torch` requirement would pull multi-GB CUDA
# wheels), then mnistlab with its test tools.
set -euo pipefail
cd "$(dirname "$0")"

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    # chromium: the browser tests. dataset-fashion-mnist: full Fashion-MNIST offline. wrk: the
    # load generator of bench/serve.py. fonts-dejavu-core, fonts-liberation: the typed digits
    # the robustness section scores every model on.
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium dataset-fashion-mnist wrk \
        fonts-dejavu-core fonts-liberation >/dev/null
else
    echo "setup: not root or no apt-get; skipping the optional system packages" \
         "(chromium for the browser test, dataset-fashion-mnist, fonts)" >&2
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q ${TORCH_SPEC:-torch==2.13.0}
.venv/bin/python -m pip install -q -e '.[test,fast]'
echo "setup: done. Run the study with: .venv/bin/mnistlab study"
