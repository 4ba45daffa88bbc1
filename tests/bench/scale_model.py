#!/usr/bin/python3
"""scale_model.py: predicted wall time of `qshard run` (the default pipeline: reconstruct with
quantized inputs, GPTQ, C candidates, objective error or relative, the final pass, write) for
Llama-3-70B and -405B on N nodes x R ranks x T threads, from per-stage throughputs measured on
this machine (docs/performance.md "Scale model"; not a test).

Model of one layer (N_tok calibration tokens in K chunks of S samples x seq tokens):
  forward, twice (the Hessian pass on the float layer, the propagation through the quantized
    one): 2 x (2 P_lin N_tok + 4 seq q N_tok) FLOP, at rate f_fwd x peak per worker, over
    min(workers, K x ceil(S seq / row_tile)) workers (chunks over ranks, row tiles over threads)
  Hessian partials: N_tok (2 h^2 + q^2 + i^2) FLOP at f_fwd (the same tiles), and the reduction:
    every chunk's partial (SH x 4 B, SH = 2 h^2 + q^2 + i^2) goes to rank 0, which adds it in
    chunk order into f64 (SH x 20 B of memory traffic per chunk, at the node's memory
    bandwidth BW_mem over its threads); partials from other nodes cross the network at BW_net
  factors: the four GPTQ factors (2/3 d^3 FLOP each: one Cholesky and one triangular inverse,
    chol_tiled.c; at f_prep on the rank's threads, one group per rank: the largest, d = i,
    sets the time; --prep-threads 1 for the single-threaded LAPACK chain of before, at
    4/3 d^3 use --f-prep half as large) and their broadcast (SH x 4 B, a binomial tree: ceil(log2 nodes) x SH x 4 / BW_net)
  solve: per linear (d_out, d_in) and candidate d_out d_in^2 FLOP (GPTQ's updates; its error
    from the solve's own sums), plus 2 d_out d_in^2 per linear (W H W^T, once, by the first
    candidate's pieces) at f_solve, in pieces of row_block rows over all workers:
    time = max(total / workers, one piece) (pieces are independent)
  final pass: the same with one candidate, for the layers from the first whose allocation
    differs from the propagate candidate (assumed: all)
  write: model bytes at the quantized size / BW_disk (parallel HDF5 and the export).
Rates default to fractions of the single-thread sgemm peak measured on this machine
(docs/performance.md "Scale model": bench_threads' calibrate and reconstruct 0.68-0.81 of P1,
bench_prepare's tiled factor at n = 11008 0.75 of P1); PEAK is GFLOP/s per core. The
assumptions are printed with the table.
Usage: scale_model.py [--peak 97] [--f-fwd F] [--f-solve F] [--f-prep F] [--bw-net 12]
       [--bw-mem 20] [--bw-disk 2] [--cands 8] [--tokens 128x2048] [--chunk 8]
       [--nodes 1,4,16,64] [--cores 64] [--ranks-per-node 8]"""
import argparse
import math

MODELS = {  # name: layers, hidden, intermediate, heads, kv heads, head_dim, vocab
    "Llama-3-70B": (80, 8192, 28672, 64, 8, 128, 128256),
    "Llama-3-405B": (126, 16384, 53248, 128, 8, 128, 128256),
}

ap = argparse.ArgumentParser()
ap.add_argument("--peak", type=float, default=97.0, help="sgemm GFLOP/s per core")
ap.add_argument("--f-fwd", type=float, default=0.75, help="forward + Hessian partials, fraction")
ap.add_argument("--f-solve", type=float, default=0.75, help="GPTQ solve + errors, fraction")
ap.add_argument("--f-prep", type=float, default=0.75, help="the tiled factor, fraction")
ap.add_argument("--bw-net", type=float, default=12.0, help="GB/s per node (100 Gb/s IB)")
ap.add_argument("--bw-mem", type=float, default=20.0, help="GB/s of f64 accumulation on a node")
ap.add_argument("--bw-disk", type=float, default=2.0, help="GB/s of the shared file system")
ap.add_argument("--cands", type=int, default=8)
ap.add_argument("--tokens", default="128x2048")
ap.add_argument("--chunk", type=int, default=8)
ap.add_argument("--row-block", type=int, default=256)
ap.add_argument("--row-tile", type=int, default=64, help="forward row tile (QS_ROW_TILE)")
ap.add_argument("--nodes", default="1,4,16,64")
ap.add_argument("--cores", type=int, default=64, help="cores per node")
ap.add_argument("--ranks-per-node", type=int, default=8)
ap.add_argument("--prep-threads", type=int, default=0,
                help="threads of one factor (0: all of the rank's, as qs_gptq_prepare_pool)")
ap.add_argument("--bits", type=float, default=4.25, help="bpw of the written model")
a = ap.parse_args()

ns, seq = (int(x) for x in a.tokens.split("x"))
ntok = ns * seq
K = math.ceil(ns / a.chunk)


def layer_seconds(m, nodes):
    L, h, i, H, kv, hd, V = MODELS[m]
    q, k = H * hd, kv * hd
    lin = [(q, h), (k, h), (k, h), (h, q), (i, h), (i, h), (h, i)]
    plin = sum(o * n for o, n in lin)
    ranks = nodes * a.ranks_per_node
    thr = a.cores // a.ranks_per_node
    workers = ranks * thr
    peak = a.peak * 1e9
    SH = 2 * h * h + q * q + i * i
    # forward (twice) and the Hessian partials: chunks over ranks, row tiles over threads
    fwd_flop = 2 * (2 * plin * ntok + 4 * seq * q * ntok) + ntok * SH
    par_fwd = min(workers, K * math.ceil(a.chunk * seq / a.row_tile))
    par_fwd = min(par_fwd, min(ranks, K) * thr)
    t_fwd = fwd_flop / (a.f_fwd * peak * par_fwd)
    # reduction of the chunk partials on rank 0, in chunk order
    remote = K * (1 - 1 / nodes) if nodes > 1 else 0
    t_red = K * SH * 20 / (a.bw_mem * 1e9) + remote * SH * 4 / (a.bw_net * 1e9)
    # factors: one group per rank (4 groups), then a broadcast
    pt = thr if a.prep_threads <= 0 else min(a.prep_threads, thr)
    t_prep = 2 / 3 * max(d ** 3 for d in (h, q, i)) / (a.f_prep * peak * pt) \
        + math.ceil(math.log2(max(nodes, 1)) + 1) * SH * 4 / (a.bw_net * 1e9)
    # solve: pieces of row_block rows
    solve = sum(o * n * n for o, n in lin)  # one candidate; W H W^T is 2 x this, once
    pieces = sum(math.ceil(o / a.row_block) for o, n in lin) * a.cands
    piece_max = max(3 * min(o, a.row_block) * n * n for o, n in lin)
    t_solve = max(solve * (a.cands + 2) / (a.f_solve * peak * min(workers, pieces)),
                  piece_max / (a.f_solve * peak))
    # the final pass: one candidate
    pieces1 = sum(math.ceil(o / a.row_block) for o, n in lin)
    t_final = t_fwd + t_red + t_prep + max(3 * solve / (a.f_solve * peak * min(workers, pieces1)),
                                           piece_max / (a.f_solve * peak))
    return {"fwd": t_fwd, "reduce": t_red, "prep": t_prep, "solve": t_solve, "final": t_final}


print(f"calibration {ns} x {seq} tokens in {K} chunks of {a.chunk}; {a.cands} candidates; "
      f"{a.cores} cores per node as {a.ranks_per_node} ranks x {a.cores // a.ranks_per_node} "
      f"threads; peak {a.peak} GFLOP/s per core; f_fwd {a.f_fwd}, f_solve {a.f_solve}, f_prep "
      f"{a.f_prep} on {a.prep_threads or 'all the rank'}'s thread(s); network {a.bw_net} GB/s, f64 accumulation {a.bw_mem} GB/s, disk "
      f"{a.bw_disk} GB/s")
print()
print("| model | nodes | forward + Hessians | reduction on rank 0 | factors | solve "
      "(C cands) | final pass | write | total (h) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for m, dims in MODELS.items():
    L, h, i, H, kv, hd, V = dims
    params = L * (h * H * hd * 2 + 2 * h * kv * hd + 3 * h * i) + 2 * V * h
    for nodes in (int(x) for x in a.nodes.split(",")):
        t = layer_seconds(m, nodes)
        t_write = params * a.bits / 8 / (a.bw_disk * 1e9)
        per = t["fwd"] + t["reduce"] + t["prep"] + t["solve"]
        total = L * (per + t["final"]) + t_write
        print(f"| {m} | {nodes} | {L * t['fwd'] / 3600:.2f} h | {L * t['reduce'] / 3600:.2f} h "
              f"| {L * t['prep'] / 3600:.2f} h | {L * t['solve'] / 3600:.2f} h "
              f"| {L * t['final'] / 3600:.2f} h | {t_write / 60:.1f} min | {total / 3600:.1f} |")
