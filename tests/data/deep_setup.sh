#!/bin/sh
# deep_setup.sh [VENV]: a venv with CPU torch, transformers, safetensors, sentencepiece and numpy
# for tests/data/make_deep_model.py and tests/study/deep_check.py (not CI; ~1 GB).
# torch comes from the PyTorch CPU index when reachable, else from plain PyPI.
# Idempotent: a venv where all five import is left alone. Default VENV: /work/venv-torch.
set -eu
venv=${1:-${QS_TORCH_VENV:-/work/venv-torch}}
check='import torch, transformers, safetensors, sentencepiece, numpy'
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" 2>/dev/null; then
    echo "deep_setup: $venv already has torch and transformers"; exit 0
fi
/usr/bin/python3 -m venv "$venv"
pip="$venv/bin/pip"
"$pip" install -q --upgrade pip
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    "$pip" install -q torch --index-url https://download.pytorch.org/whl/cpu \
        || "$pip" install -q torch
fi
"$pip" install -q transformers safetensors sentencepiece numpy
"$venv/bin/python" -c "$check; print('torch', torch.__version__, 'transformers', transformers.__version__)"
