#!/bin/sh
# hf_setup.sh [VENV]: a venv with CPU torch, transformers, optimum and gptqmodel for
# tests/clients/hf_ppl.py (not CI; a few GB). Default VENV: /work/venv-hf (or $QS_HF_VENV).
# torch: the CPU-only index when it is reachable, else PyPI's wheel (it pulls the CUDA
# runtime packages, unused here). gptqmodel is pure Python on PyPI (an sdist); its CPU kernels
# (TorchCpuAvx512Linear...) are compiled by torch's cpp_extension on first use, which needs
# g++ and the Python headers (python3-dev). Idempotent: a venv whose imports work is left alone.
set -eu
venv=${1:-${QS_HF_VENV:-/work/venv-hf}}
check='import torch, transformers, optimum, gptqmodel, sentencepiece'
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" 2>/dev/null; then
    echo "hf_setup: $venv already has torch, transformers, optimum, gptqmodel"; exit 0
fi
/usr/bin/python3 -m venv "$venv"
pip="$venv/bin/pip"
"$pip" install -q --upgrade pip
"$pip" install -q torch --index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
    || "$pip" install -q torch
"$pip" install -q transformers optimum accelerate sentencepiece
# no CUDA here: nothing to build at install time (BUILD_CUDA_EXT=0 for older releases' setup.py)
BUILD_CUDA_EXT=0 "$pip" install -q gptqmodel
"$venv/bin/python" -c "$check
from importlib.metadata import version as v
print(' '.join(f'{p} {v(p)}' for p in ('torch', 'transformers', 'optimum', 'gptqmodel', 'accelerate')))"
