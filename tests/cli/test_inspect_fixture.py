#!/usr/bin/python3
"""test_inspect_fixture.py: `qshard inspect` on the real fixture ../shared/fixtures/tinyllama-a
reports LlamaForCausalLM, 4 layers, hidden 256, GQA 4/2 heads, 3,410,176 parameters (text and
--json), and the parameter count equals the sum over the safetensors header read here.
Skips (77) without ../shared unless QS_REQUIRE_SHARED=1."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qstest as Q  # noqa: E402
from qstest import check  # noqa: E402

model = os.path.join(Q.need_shared(), "tinyllama-a")
r = Q.run([Q.QS, "inspect", model, "--json"])
info = json.loads(r.stdout) if r.returncode == 0 else {}
want = {"architecture": "LlamaForCausalLM", "num_hidden_layers": 4, "hidden_size": 256,
        "num_attention_heads": 4, "num_key_value_heads": 2, "parameters": 3410176}
for k, v in want.items():
    check(info.get(k) == v, f"{k} = {info.get(k)}, want {v}")
header, _ = Q.safetensors_header(os.path.join(model, "model.safetensors"))
total = 0
for name, t in header.items():
    if name == "__metadata__":
        continue
    c = 1
    for d in t["shape"]:
        c *= d
    total += c
check(total == info.get("parameters"), f"header count {total} != {info.get('parameters')}")
check(len(info.get("tensors", [])) == len([k for k in header if k != "__metadata__"]),
      "tensor table size")
r = Q.run([Q.QS, "inspect", model])
for s in ("LlamaForCausalLM", "3,410,176", "4 heads, 2 kv heads (GQA)", "layers:       4",
          "hidden:       256"):
    check(s in r.stdout, f"text output lacks '{s}'")
Q.finish()
