#!/usr/bin/python3
"""test_inspect_fixture.py: `qshard inspect` on the real fixture ../shared/fixtures/tinyllama-a
reports LlamaForCausalLM, 4 layers, hidden 256, GQA 4/2 heads, 3,410,176 parameters (text and
--json), and the parameter count equals the sum over the safetensors header read here.
Skips (77) without ../shared unless QS_REQUIRE_SHARED=1."""
import json
import os
import struct
import subprocess
import sys

QS = os.environ["QS_BIN"]
shared = os.environ.get("QS_SHARED_DIR", "")
model = os.path.join(shared, "fixtures", "tinyllama-a")
if not os.path.isdir(model):
    if os.environ.get("QS_REQUIRE_SHARED") == "1":
        print(f"fixture missing: {model}", file=sys.stderr)
        sys.exit(1)
    print("skip: no shared fixtures")
    sys.exit(77)

ok = True
r = subprocess.run([QS, "inspect", model, "--json"], capture_output=True, text=True)
info = json.loads(r.stdout) if r.returncode == 0 else {}
want = {"architecture": "LlamaForCausalLM", "num_hidden_layers": 4, "hidden_size": 256,
        "num_attention_heads": 4, "num_key_value_heads": 2, "parameters": 3410176}
for k, v in want.items():
    if info.get(k) != v:
        print(f"FAIL: {k} = {info.get(k)}, want {v}", file=sys.stderr)
        ok = False
with open(os.path.join(model, "model.safetensors"), "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
total = 0
for name, t in header.items():
    if name == "__metadata__":
        continue
    c = 1
    for d in t["shape"]:
        c *= d
    total += c
if total != info.get("parameters"):
    print(f"FAIL: header count {total} != {info.get('parameters')}", file=sys.stderr)
    ok = False
if len(info.get("tensors", [])) != len([k for k in header if k != "__metadata__"]):
    print("FAIL: tensor table size", file=sys.stderr)
    ok = False
r = subprocess.run([QS, "inspect", model], capture_output=True, text=True)
for s in ("LlamaForCausalLM", "3,410,176", "4 heads, 2 kv heads (GQA)", "layers:       4",
          "hidden:       256"):
    if s not in r.stdout:
        print(f"FAIL: text output lacks '{s}'", file=sys.stderr)
        ok = False
print("inspect fixture:", "ok" if ok else "FAILED")
sys.exit(0 if ok else 1)
