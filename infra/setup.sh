#!/usr/bin/env bash
# Set up climb-etl on a fresh machine that has only Python 3.11: a project venv (.venv) with
# uv inside it, the locked dependencies (uv.lock), and, with --test, the test extras:
# torch (CPU build, installed with pip: uv would pull a multi-GB CUDA build), the streaming
# benchmarks' peer packages, and Debian's chromium for the report screenshot test.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    *) echo "usage: infra/setup.sh [--test]" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  .venv/bin/python -m ensurepip >/dev/null
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check uv
fi
# --inexact: keep what uv does not manage (torch, installed below with pip).
extras=()
[ "$want_test" = 1 ] && extras=(--extra dev)
UV_PROJECT_ENVIRONMENT=.venv .venv/bin/uv sync --frozen --inexact --quiet "${extras[@]}"
if [ "$want_test" = 1 ]; then
  if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
  fi
  # the streaming benchmarks' peers (MosaicML Streaming, WebDataset), which their tests run:
  # without their dependencies, so torch and numpy stay as they are (benchmarks/requirements.txt)
  .venv/bin/uv pip install --python .venv/bin/python --no-deps --quiet -r benchmarks/requirements.txt
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "setup: could not install chromium; the report screenshot test will fail" >&2
    else
      echo "setup: chromium is missing; install Debian's chromium package (sudo apt-get install chromium)" >&2
    fi
  fi
fi
echo "setup: ready (.venv)"
