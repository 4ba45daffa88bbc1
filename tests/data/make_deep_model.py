#!/usr/bin/env python3
"""make_deep_model.py: trains the 16-layer Llama "deep model" for mixed-precision studies
(docs/model.md, "A deeper trained model for studies") and writes it in Hugging Face format.

Usage (not run by CTest; needs the venv of tests/data/deep_setup.sh, ~40 min on one core):
    sh tests/data/deep_setup.sh /work/venv-torch
    /work/venv-torch/bin/python tests/data/make_deep_model.py --out build/deep-model
or `make deep-model` (with --reuse: nothing is done when the directory already holds a
finished model of this config and recipe). Run with another python, the script re-executes itself with
VENV/bin/python (--venv, default /work/venv-torch) when torch is missing there.

Inputs (--fixtures, default $QS_SHARED_DIR/fixtures, else ../shared/fixtures next to the
repository; exit 2 with one line if absent):
    tinyllama-a/          the trained 4-layer teacher
    tokens/calib.u32      real TinyStories tokens used for training (eval.u32 is never read
                          before training ends; val_cased.u32 is never read: same text as
                          calib + eval)
    tokens/eval.u32       read after training only, for reference.json

Recipe (every constant is below; all seeded; one torch thread, deterministic algorithms):
  1. generation: GEN_SEQS sequences of SEQLEN tokens sampled from the teacher (fp32, KV cache,
     temperature 1, no top-k / top-p, each starting at BOS) in batches of GEN_BATCH.
  2. data: the generated sequences plus the non-overlapping SEQLEN windows of calib.u32,
     shuffled each epoch (seeded).
  3. training: the student (config below, transformers' init, seeded) for STEPS steps of BATCH
     windows, AdamW (betas 0.9/0.95, weight decay 0.1, grad-norm clip 1.0), linear warmup
     WARMUP steps to LR then cosine to LR/10, bf16 autocast with fp32 master weights.
     Loss per predicted token: 0.5 * cross-entropy against the next token + 0.5 * cross-entropy
     against the teacher's next-token distribution (teacher forward under bf16 autocast), which
     gives more signal per token than the sampled token alone in a short CPU budget.
  4. output: config.json (written by hand, like the teacher's), model.safetensors (bf16,
     transformers' tensor names), reference.json (transformers fp32 compute on the bf16 weights:
     perplexity on all of eval.u32 in SEQLEN-token windows, the protocol of the fixtures'
     README), logits_eval_window0.f32 (SEQLEN x vocab float32 little-endian, window 0 of
     eval.u32), train_log.json (losses, wall times per phase and the process's CPU time;
     not deterministic in its times).

Reproducibility: the same command gives bitwise the same model.safetensors with the same torch
build and CPU instruction set (one thread, fixed seeds, deterministic algorithms); other torch
versions or CPUs give a different, equally trained model. --gen-seqs/--steps shrink the recipe
for a quick check of the pipeline (not the documented model).
"""
import argparse
import hashlib
import json
import math
import os
import sys
import time

SEQLEN = 256
GEN_SEQS = 4096          # 4096 x 256 = 1.05M generated tokens
GEN_BATCH = 512
STEPS = 600
BATCH = 16
LR = 1.5e-3
WARMUP = 40
SEED = 19

STUDENT = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 1,
    "dtype": "bfloat16",
    "eos_token_id": 2,
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 256,
    "initializer_range": 0.02,
    "intermediate_size": 768,
    "max_position_embeddings": 1024,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 4,
    "num_hidden_layers": 16,
    "num_key_value_heads": 2,
    "pad_token_id": None,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
    "tie_word_embeddings": False,
    "use_cache": True,
    "vocab_size": 512,
}


def parse_args():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created)")
    shared = os.environ.get("QS_SHARED_DIR") or os.path.join(repo, "..", "shared")
    ap.add_argument("--fixtures", default=os.path.join(shared, "fixtures"),
                    help="default: $QS_SHARED_DIR/fixtures, else ../shared/fixtures")
    ap.add_argument("--venv", default=os.environ.get("QS_TORCH_VENV", "/work/venv-torch"))
    ap.add_argument("--gen-seqs", type=int, default=GEN_SEQS)
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--layers", type=int, default=STUDENT["num_hidden_layers"])
    ap.add_argument("--reuse", action="store_true",
                    help="do nothing when OUT already holds this recipe's model")
    return ap.parse_args()


def already_made(args):
    """True when OUT holds a finished model of this config and recipe (train_log.json is the
    last file written)."""
    try:
        with open(os.path.join(args.out, "config.json")) as f:
            cfg = json.load(f)
        with open(os.path.join(args.out, "train_log.json")) as f:
            tl = json.load(f)
    except (OSError, ValueError):
        return False
    cfg.pop("transformers_version", None)
    want = dict(STUDENT, num_hidden_layers=args.layers)
    return (cfg == want and tl.get("gen_seqs") == args.gen_seqs and tl.get("steps") == args.steps
            and all(os.path.exists(os.path.join(args.out, n)) for n in
                    ("model.safetensors", "reference.json", "logits_eval_window0.f32")))


def reexec_in_venv(venv):
    """Re-runs this script with VENV/bin/python when torch is not importable here."""
    try:
        import torch  # noqa: F401
        return
    except ImportError:
        pass
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py) or os.path.realpath(sys.prefix) == os.path.realpath(venv):
        print(f"make_deep_model: no torch in {sys.executable} nor {py} "
              "(run tests/data/deep_setup.sh)", file=sys.stderr)
        sys.exit(2)
    os.execv(py, [py] + sys.argv)


def read_tokens(path):
    import numpy as np
    return np.fromfile(path, dtype="<u4").astype("int64")


def generate(teacher, n_seqs, log):
    """(n_seqs, SEQLEN) int64 token ids sampled from the teacher, each starting at BOS."""
    import torch
    g = torch.Generator().manual_seed(SEED)
    out = []
    t0 = time.time()
    with torch.no_grad():
        for start in range(0, n_seqs, GEN_BATCH):
            b = min(GEN_BATCH, n_seqs - start)
            seq = torch.full((b, SEQLEN), 1, dtype=torch.long)  # (b, SEQLEN)
            res = teacher(input_ids=seq[:, :1], use_cache=True)
            for t in range(1, SEQLEN):
                p = torch.softmax(res.logits[:, -1].float(), dim=-1)  # (b, vocab)
                seq[:, t] = torch.multinomial(p, 1, generator=g)[:, 0]
                res = teacher(input_ids=seq[:, t:t + 1], past_key_values=res.past_key_values,
                              use_cache=True)
            out.append(seq)
            log(f"generated {start + b}/{n_seqs} sequences, {time.time() - t0:.0f} s")
    return torch.cat(out)


def lr_at(step, steps):
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    frac = (step - WARMUP) / max(1, steps - WARMUP)
    return LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def train(student, teacher, data, steps, log):
    """Trains student in place on data (n, SEQLEN); returns the per-step losses."""
    import torch
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(SEED + 1)
    decay = [p for n, p in student.named_parameters() if p.dim() >= 2]
    nodecay = [p for n, p in student.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": nodecay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95), eps=1e-8)
    order = torch.randperm(len(data), generator=g)
    pos, losses, t0 = 0, [], time.time()
    student.train()
    for step in range(steps):
        if pos + BATCH > len(order):
            order, pos = torch.randperm(len(data), generator=g), 0
        x = data[order[pos:pos + BATCH]]  # (BATCH, SEQLEN)
        pos += BATCH
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            tlog = teacher(input_ids=x).logits[:, :-1].float()  # (BATCH, SEQLEN-1, vocab)
        tprob = torch.softmax(tlog, dim=-1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = student(input_ids=x).logits[:, :-1]
        logp = F.log_softmax(logits.float(), dim=-1)  # (BATCH, SEQLEN-1, vocab)
        hard = F.nll_loss(logp.reshape(-1, logp.shape[-1]), x[:, 1:].reshape(-1))
        soft = -(tprob * logp).sum(-1).mean()
        loss = 0.5 * hard + 0.5 * soft
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        losses.append([round(hard.item(), 5), round(soft.item(), 5)])
        if step % 20 == 0 or step == steps - 1:
            log(f"step {step}/{steps} lr {lr_at(step, steps):.2e} hard {hard.item():.4f} "
                f"soft {soft.item():.4f} {time.time() - t0:.0f} s")
    return losses


def write_model(student, cfg, out):
    import torch
    from safetensors.torch import save_file
    sd = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in student.state_dict().items()}
    save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def reference(out, eval_path, log):
    """reference.json and logits_eval_window0.f32 from the written bf16 weights, fp32 compute."""
    import numpy as np
    import torch
    import transformers
    model = transformers.LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    toks = read_tokens(eval_path)
    n = len(toks) // SEQLEN
    win = torch.from_numpy(toks[:n * SEQLEN].reshape(n, SEQLEN))  # (n, SEQLEN)
    nll, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, n, 16):
            x = win[s:s + 16]
            logits = model(input_ids=x).logits.float()  # (b, SEQLEN, vocab)
            if s == 0:
                logits[0].numpy().astype("<f4").tofile(
                    os.path.join(out, "logits_eval_window0.f32"))
            lp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
            nll -= lp.gather(-1, x[:, 1:, None]).sum().item()
            count += x[:, 1:].numel()
    ppl = math.exp(nll / count)
    log(f"transformers fp32 ppl on eval.u32: {ppl:.6f} ({n} windows)")
    ref = {
        "computed_by": f"Hugging Face transformers {transformers.__version__} "
                       "(LlamaForCausalLM), fp32 compute on the bf16 weights in this folder",
        "eval_tokens": "tokens/eval.u32 of the fixtures",
        "window": SEQLEN,
        "windows": n,
        "eval_ppl": ppl,
        "logits_file": "logits_eval_window0.f32",
        "logits_shape": [SEQLEN, model.config.vocab_size],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "numpy": np.__version__},
    }
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    return ppl


def main():
    args = parse_args()
    fx = args.fixtures
    need = [os.path.join(fx, "tinyllama-a", "model.safetensors"),
            os.path.join(fx, "tokens", "calib.u32"), os.path.join(fx, "tokens", "eval.u32")]
    for p in need:
        if not os.path.exists(p):
            print(f"make_deep_model: {p}: fixture missing (--fixtures DIR)", file=sys.stderr)
            sys.exit(2)
    if args.reuse and already_made(args):
        print(f"make_deep_model: {args.out} already holds this model (--reuse)")
        return
    reexec_in_venv(args.venv)
    import torch
    import transformers

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()

    def log(msg):
        print(f"make_deep_model: {msg}", flush=True)

    teacher = transformers.LlamaForCausalLM.from_pretrained(
        os.path.join(fx, "tinyllama-a"), dtype=torch.float32).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    gen = generate(teacher, args.gen_seqs, log)  # (gen_seqs, SEQLEN)
    t_gen = time.time() - t_start
    calib = read_tokens(need[1])
    nc = len(calib) // SEQLEN
    real = torch.from_numpy(calib[:nc * SEQLEN].reshape(nc, SEQLEN))  # (nc, SEQLEN)
    data = torch.cat([gen, real])
    log(f"data: {len(gen)} generated + {nc} calib windows of {SEQLEN}")

    cfg = dict(STUDENT, num_hidden_layers=args.layers,
               transformers_version=transformers.__version__)
    torch.manual_seed(SEED)
    student = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).float()
    losses = train(student, teacher, data, args.steps, log)
    t_train = time.time() - t_start - t_gen
    write_model(student, cfg, args.out)
    with open(os.path.join(args.out, "model.safetensors"), "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    log(f"model.safetensors sha256 {sha}")
    ppl = reference(args.out, need[2], log)
    t_ref = time.time() - t_start - t_gen - t_train
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump({"sha256": sha, "eval_ppl": ppl, "gen_seqs": args.gen_seqs,
                   "steps": args.steps, "batch": BATCH, "seqlen": SEQLEN,
                   "seconds": {"generate": round(t_gen, 1), "train": round(t_train, 1),
                               "reference": round(t_ref, 1)},
                   "cpu_seconds": round(time.process_time(), 1),
                   "losses_hard_soft": losses}, f)
        f.write("\n")
    log(f"done: generate {t_gen:.0f} s, train {t_train:.0f} s, reference {t_ref:.0f} s")


if __name__ == "__main__":
    main()
