/* synth.h: deterministic synthetic decoder models in Hugging Face layout, for tests,
 * benchmarks and the demo.
 *
 * qs_synth_write writes OUT/config.json and OUT/model.safetensors, or, with shards > 1,
 * OUT/model-0000i-of-0000K.safetensors + OUT/model.safetensors.index.json. Every value
 * comes from a counter-based generator keyed by (seed, tensor name, element index) using
 * only integer hashing and IEEE additions/multiplications, so equal options give
 * byte-identical files on any machine, whatever the chunking. Weights look trained-ish:
 * linears ~ N(0, 1/d_in), a few outlier input channels (x4) per linear, embeddings with a
 * few large hidden channels, RMSNorm weights ~ 1 + small noise. Files are written
 * sequentially in small chunks (memory does not grow with the model), through a temp file,
 * fsync and rename.
 */
#ifndef QS_SYNTH_H
#define QS_SYNTH_H

#include <stdint.h>

#include "hf_config.h"
#include "safetensors.h"
#include "status.h"

typedef struct qs_synth_opts {
    qs_arch arch;              /* llama | mistral | qwen2 (qwen2 always has q/k/v biases) */
    int64_t layers;            /* default 2 */
    int64_t hidden;            /* default 256 */
    int64_t intermediate;      /* 0 = 8/3 hidden rounded up to a multiple of 64 */
    int64_t heads;             /* 0 = max(1, hidden / 64) */
    int64_t kv_heads;          /* 0 = heads */
    int64_t head_dim;          /* 0 = hidden / heads */
    int64_t vocab;             /* default 512 */
    qs_dtype dtype;            /* F32, F16 or BF16 (default BF16) */
    int64_t shards;            /* default 1 */
    int64_t seed;              /* default 0 */
    int tie_embeddings;        /* 1: no lm_head.weight, config tie_word_embeddings true */
    int64_t sliding_window;    /* mistral only; 0 = none (written as null) */
    int attention_bias;        /* llama only: q/k/v/o biases (config attention_bias) */
    int64_t max_position;      /* default 2048 */
    double rope_theta;         /* default 10000 */
    double rms_norm_eps;       /* default 1e-5 */
} qs_synth_opts;

void qs_synth_opts_default(qs_synth_opts *o);

/* "llama" | "mistral" | "qwen2" -> arch; QS_ERR_INPUT (no message) otherwise. */
qs_status qs_synth_parse_arch(const char *s, qs_arch *arch);
/* "bf16" | "f16" | "f32" (also "bfloat16", "float16", "float32") -> dtype. */
qs_status qs_synth_parse_dtype(const char *s, qs_dtype *dtype);

/* The qs_hf_config the options describe (defaults resolved); QS_ERR_INPUT for
 * inconsistent options (hidden % heads, heads % kv_heads, odd head_dim, shards > tensors). */
qs_status qs_synth_config(const qs_synth_opts *o, qs_hf_config *cfg, qs_err *err);

/* Writes the model into out_dir (created if missing; same-named files are replaced, and a
 * stale model.safetensors / index of the other layout is removed). */
qs_status qs_synth_write(const qs_synth_opts *o, const char *out_dir, qs_err *err);

/* Writes out_dir/tokens.u32: n little-endian uint32 token ids in [0, vocab), deterministic
 * in (seed, n), Zipf-like in frequency; id 1 (BOS) starts every 256-token block. */
qs_status qs_synth_write_tokens(const qs_synth_opts *o, const char *out_dir, int64_t n,
                                qs_err *err);

#endif /* QS_SYNTH_H */
