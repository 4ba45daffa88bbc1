#!/bin/sh
# hf_setup.sh [VENV]: a venv with CPU torch, transformers, optimum and gptqmodel for
# tests/clients/hf_ppl.py (not CI; a few GB). Default VENV: /work/venv-hf (or $QS_HF_VENV).
# torch: PyPI's wheel (the CPU-only wheel index is not reachable here; PyPI's pulls the CUDA
# runtime packages, unused on CPU). gptqmodel is pure Python on PyPI (an sdist); its CPU kernels
# (TorchCpuAvx512Linear...) are compiled by torch's cpp_extension on first use, which needs
# g++ and the Python headers (python3-dev). Idempotent: a venv whose imports work is left alone.
set -eu
venv=${1:-${QS_HF_VENV:-/work/venv-hf}}
py=$venv/bin/python
check='import torch, transformers, optimum, gptqmodel, sentencepiece'
"$py" -c "$check" 2>/dev/null && { echo "hf_setup: $venv is ready"; exit 0; }
/usr/bin/python3 -m venv "$venv"
# pip itself, then the versions docs/export.md's numbers were measured with (torch first, so
# gptqmodel finds it); no CUDA here: nothing to build at install time (BUILD_CUDA_EXT=0 for
# older gptqmodel releases' setup.py)
for req in pip "torch==2.15.0" \
    "transformers==5.25.0 optimum==2.3.0 accelerate==1.16.0 sentencepiece==0.2.3" \
    "gptqmodel==7.7.0"; do
    # shellcheck disable=SC2086 # $req is a list of requirements
    BUILD_CUDA_EXT=0 "$py" -m pip install -q --upgrade $req
done
"$py" -c "$check
from importlib.metadata import version as v
print(' '.join(f'{p} {v(p)}' for p in ('torch', 'transformers', 'optimum', 'gptqmodel', 'accelerate')))"
