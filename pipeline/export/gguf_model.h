/* gguf_model.h: a Llama / Mistral / Qwen2 checkpoint as llama.cpp's converter
 * (convert_hf_to_gguf.py, gguf-py) lays it out in GGUF: architecture name, hyper-parameter
 * keys, tensor names, the q/k row permutation, generated tensors and default tensor types.
 *
 * Architecture: "llama" for LlamaForCausalLM and MistralForCausalLM (the converter maps
 * both to LLAMA), "qwen2" for Qwen2ForCausalLM.
 *
 * Metadata (qs_gguf_meta_add_model), in this order:
 *   general.architecture, general.type = "model", general.sampling.* from the model
 *   directory's generation_config.json (sequence, top_k, top_p, min_p, xtc_probability,
 *   xtc_threshold, temperature -> temp, penalty_last_n, penalty_repeat, mirostat,
 *   mirostat_tau, mirostat_eta; i32 / f32 / string as the converter; values of another JSON
 *   type, or an unreadable file, are skipped as the converter skips them), general.name;
 *   <arch>.block_count, .context_length, .embedding_length, .feed_forward_length,
 *   .attention.head_count, .attention.head_count_kv, .rope.freq_base (f32),
 *   .attention.layer_norm_rms_epsilon (f32), .attention.key_length / .value_length
 *   (= head_dim), rope scaling for `linear` RoPE (.rope.scaling.type "linear",
 *   .rope.scaling.factor), and for llama only .vocab_size and .rope.dimension_count;
 *   general.file_type (u32), general.quantization_version = 2.
 * All integers are u32 as the converter writes them. Differences from the converter, on
 * purpose: the values are the effective ones of qs_hf_config (Hugging Face defaults filled
 * in) and every key is written even when config.json omits it (the converter then omits
 * the key; llama.cpp would fall back to the same value, except for rms epsilon and the
 * context length, which it requires); key_length/value_length are written always (the
 * converter: only when config.json has head_dim). general.name is the caller's (the
 * converter's fallback is the model directory's name); the converter's other general.*
 * keys from the model card (basename, size_label, license, ...) are not written. Mistral's
 * sliding window is not written (neither does the converter: llama.cpp's llama
 * architecture has none). rope_freqs uses the rope_scaling's
 * original_max_position_embeddings, which transformers uses too (the converter reads a
 * top-level key of that name, default 8192, which equals it for Llama 3.1 / 3.2).
 *
 * Tensors (qs_gguf_model_tensors), in file order: rope_freqs.weight (only for `llama3`
 * RoPE, (head_dim/2,) F32 factors computed as the converter does), token_embd.weight, per
 * block N: blk.N.attn_norm, attn_q, attn_k, attn_v, attn_output (with .bias where the
 * config has biases: Qwen2's q/k/v), ffn_norm, ffn_gate, ffn_up, ffn_down; then
 * output_norm.weight and output.weight (omitted when the embeddings are tied: llama.cpp then
 * uses token_embd). Llama/Mistral q and k rows (weights and biases) are permuted from
 * Hugging Face's rotate-half layout to GGML's interleaved RoPE layout (the converter's
 * LlamaModel.permute, with the KV head count for k); Qwen2 keeps Hugging Face's order.
 * Default types as the converter: 1-D tensors and norms F32, every other tensor the
 * caller's weight type.
 *
 * Ownership: qs_gguf_model_tensors allocates the list; free() it. Nothing else allocates.
 */
#ifndef QS_GGUF_MODEL_H
#define QS_GGUF_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "gguf_file.h"
#include "hf_config.h"
#include "hf_model.h"
#include "status.h"

/* "llama" (Llama, Mistral) or "qwen2". */
const char *qs_gguf_arch_name(qs_arch arch);

/* GGUF name of Hugging Face tensor `hf_name` ("model.layers.3.self_attn.q_proj.weight" ->
 * "blk.3.attn_q.weight"). Returns 0, or -1 for a name llama.cpp does not load. */
int qs_gguf_tensor_name(const char *hf_name, char *buf, size_t n);

/* One tensor of the GGUF file of a model. */
typedef struct qs_gguf_model_tensor {
    char name[QS_GGUF_NAME_MAX];   /* GGUF name */
    char hf_name[128];             /* checkpoint tensor; "" for generated rope_freqs */
    int64_t layer;                 /* block index, -1 outside the blocks */
    int linear;                    /* qs_linear_kind of a linear's weight or bias, else -1 */
    int bias;                      /* 1 for a linear's bias */
    int ndim;                      /* 1 or 2 */
    int64_t shape[2];              /* row-major, as in the checkpoint: (d_out, d_in) or (n,) */
    int64_t permute_head_rows;     /* > 0: rows permuted per head of this many rows */
    qs_gguf_type type;             /* the converter's default (see above); the caller may
                                      change it before computing the layout */
} qs_gguf_model_tensor;

/* The tensors of the model `hf` describes, in file order, with default types (weight_type
 * for 2-D tensors). *out (n,) is allocated; free() it. */
qs_status qs_gguf_model_tensors(const qs_hf_config *hf, qs_gguf_type weight_type,
                                qs_gguf_model_tensor **out, int64_t *n, qs_err *err);

/* Declarations for qs_gguf_layout_compute: d (n,) pointing into t's names. */
void qs_gguf_model_decls(const qs_gguf_model_tensor *t, int64_t n, qs_gguf_tensor_decl *d);

/* llama.cpp's file type (LlamaFileType, general.file_type) of a file with these tensors:
 * "mostly" the type holding the most elements among the 2-D tensors: F32 0, F16 1, Q4_0 2,
 * Q4_1 3, Q8_0 7, Q5_0 8, Q5_1 9, Q2_K 10, Q3_K 11 (Q3_K_S), Q4_K 14 (Q4_K_S), Q5_K 16
 * (Q5_K_S), Q6_K 18, BF16 32 (ties: the lower type id). */
uint32_t qs_gguf_file_type(const qs_gguf_model_tensor *t, int64_t n);

/* Adds the general.* and <arch>.* keys above. `name`: general.name (non-empty);
 * model_dir: where generation_config.json is looked for (NULL: no sampling keys). */
qs_status qs_gguf_meta_add_model(qs_gguf_meta *m, const qs_hf_config *hf, const char *model_dir,
                                 const char *name, uint32_t file_type, qs_err *err);

/* Reorders rows like the converter's permute: within each group of head_rows rows (one
 * head; head_rows even), row 2i + j of the output is row j * head_rows/2 + i of the input
 * (j in {0, 1}). src and dst (rows, row_bytes) must not overlap; rows must be a multiple
 * of head_rows. Rows may be of any type: block quantization runs along rows, so permuting
 * quantized rows equals quantizing permuted rows. */
void qs_gguf_permute_rows(const void *src, void *dst, int64_t rows, size_t row_bytes,
                          int64_t head_rows);

/* The rope_freqs factors of `llama3` RoPE, out (head_dim/2,), computed in f32 in the
 * converter's order of operations. */
void qs_gguf_rope_freqs(const qs_hf_config *hf, float *out);

/* Writes tensor mt (layout index t) from the checkpoint: reads it as f32 in row chunks,
 * permutes q/k rows, encodes to the layout's type (F32, F16 or BF16) and writes it; a
 * generated rope_freqs is computed. QS_ERR_INPUT for a block type (use
 * qs_gguf_write_tensor_bytes with the quantizer's bytes). */
qs_status qs_gguf_write_checkpoint_tensor(qs_gguf_file *f, const qs_gguf_layout *L,
                                          int64_t t, const qs_model *m,
                                          const qs_gguf_model_tensor *mt, qs_err *err);

/* Writes tensor mt (layout index t) from caller bytes: the whole tensor, rows in the
 * checkpoint's (Hugging Face) order, `nbytes` = the layout's size; q/k rows are permuted
 * here. */
qs_status qs_gguf_write_tensor_bytes(qs_gguf_file *f, const qs_gguf_layout *L, int64_t t,
                                     const qs_gguf_model_tensor *mt, const void *bytes,
                                     size_t nbytes, qs_err *err);

#endif /* QS_GGUF_MODEL_H */
