/* synth.h: deterministic synthetic models in Hugging Face layout (config.json + safetensors,
 * optionally sharded with model.safetensors.index.json) and synthetic token files.
 *
 * Used by `qshard synth-model` and by tests that need models of any size without network
 * access. Equal options give byte-identical files on any machine: values come from a
 * counter-based generator (splitmix64 of seed, tensor index and element index) and only
 * +, * and sqrt, with f32 -> bf16/f16 rounding to nearest even. Tensors are generated in
 * blocks while they are written, so memory use does not grow with the model size.
 * Every file is written to `<path>.tmp.<pid>`, fsynced and renamed.
 *
 * Ownership: options are plain values; nothing to free.
 */
#ifndef QS_SYNTH_H
#define QS_SYNTH_H

#include <stdint.h>

#include "hf_config.h"   /* qs_arch */
#include "safetensors.h" /* qs_dtype */
#include "status.h"

typedef struct qs_synth_opts {
    qs_arch arch;
    long long layers;
    long long hidden;
    long long intermediate;   /* 0 = 8/3 hidden rounded up to a multiple of 64 */
    long long heads;          /* 0 = hidden / 64, at least 1 */
    long long kv_heads;       /* 0 = heads */
    long long head_dim;       /* 0 = hidden / heads */
    long long vocab;
    long long shards;         /* 1 = model.safetensors; K > 1 = K shards + index */
    long long seed;
    long long sliding_window; /* Mistral only; 0 = none (written as null) */
    qs_dtype dtype;           /* BF16, F16 or F32 */
    int tie_embeddings;       /* 1 = no lm_head.weight, tie_word_embeddings true */
} qs_synth_opts;

/* Defaults: llama, 2 layers, hidden 256, derived intermediate/heads/kv_heads/head_dim,
 * vocab 512, bf16, 1 shard, seed 0, untied, no sliding window. */
void qs_synth_opts_default(qs_synth_opts *o);

/* "llama" | "mistral" | "qwen2" -> arch; anything else is QS_ERR_INPUT (out untouched). */
qs_status qs_synth_parse_arch(const char *s, qs_arch *out);

/* "bf16" | "f16" | "f32" -> dtype; anything else is QS_ERR_INPUT (out untouched). */
qs_status qs_synth_parse_dtype(const char *s, qs_dtype *out);

/* Writes config.json and the safetensors file(s) into out_dir (created like mkdir -p).
 * Inconsistent options (hidden % heads, heads % kv_heads, more shards than tensors, ...)
 * are QS_ERR_INPUT naming the option; I/O failures are QS_ERR_RUNTIME naming the file. */
qs_status qs_synth_write(const qs_synth_opts *o, const char *out_dir, qs_err *err);

/* Writes out_dir/tokens.u32: n little-endian uint32 ids < o->vocab, deterministic from
 * o->seed (and independent of the model tensors). */
qs_status qs_synth_write_tokens(const qs_synth_opts *o, const char *out_dir, int64_t n,
                                qs_err *err);

#endif /* QS_SYNTH_H */
