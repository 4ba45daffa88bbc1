/* write_gguf.h: the write stage's GGUF file (output.formats has gguf): run/gguf/model.gguf,
 * every tensor as llama.cpp's converter names and lays it out (export/gguf_model.h), the
 * vocabulary from the model's tokenizer files or output.gguf_tokenizer (export/gguf_vocab.h),
 * the allocation's linears as their GGUF blocks (a GGUF candidate's bytes from the layer
 * file; an integer candidate that is an exact image, w4 sym g32 / w8 sym g32, converted to
 * Q4_0 / Q8_0), linears left in float and every other 2-D tensor in the checkpoint's float
 * type, 1-D tensors F32.
 *
 * Written in parallel like the HDF5 shards (docs/gguf.md): every rank computes the same
 * layout; rank 0 creates `<path>.tmp.<pid>` (the pid broadcast as the tag), the others open
 * it; the owner of layer N (the plan's) writes blk.N.*, the owner of layer 0 token_embd and
 * rope_freqs, the owner of the last layer output_norm and output; each rank fsyncs; the ranks
 * agree; rank 0 commits (fsync, rename, fsync of the directory) or, on any failure, removes
 * the temporary file. The bytes do not depend on the rank count (every byte has one place).
 */
#ifndef QS_WRITE_GGUF_H
#define QS_WRITE_GGUF_H

#include "alloc.h"
#include "candidates.h"
#include "layer_plan.h"
#include "stage.h"

/* Collective. `src` is the layer files' folder ("final" or "recon"); al names each
 * linear's candidate (a name of cs, "" = float). */
qs_status qs_write_gguf_file(const qs_stage_ctx *ctx, const qs_cands *cs, const qs_alloc *al,
                             const qs_plan *plan, const char *src, qs_err *err);

#endif /* QS_WRITE_GGUF_H */
