/* gguf_types.c: the GGML type table (see gguf_types.h). */
#include "gguf_types.h"

#include <strings.h>

typedef struct type_row {
    qs_gguf_type type;
    const char *name;
    int64_t block_elems;
    int64_t block_bytes;
} type_row;

/* (ggml-common.h block structs; sizes checked against gguf-py's GGML_QUANT_SIZES in tests) */
static const type_row k_types[] = {
    {QS_GGUF_F32, "F32", 1, 4},
    {QS_GGUF_F16, "F16", 1, 2},
    {QS_GGUF_BF16, "BF16", 1, 2},
    {QS_GGUF_Q4_0, "Q4_0", QS_GGUF_QK_LEGACY, 2 + 16},         /* d, 32 nibbles */
    {QS_GGUF_Q4_1, "Q4_1", QS_GGUF_QK_LEGACY, 2 + 2 + 16},     /* d, m, 32 nibbles */
    {QS_GGUF_Q5_0, "Q5_0", QS_GGUF_QK_LEGACY, 2 + 4 + 16},     /* d, qh, nibbles */
    {QS_GGUF_Q5_1, "Q5_1", QS_GGUF_QK_LEGACY, 2 + 2 + 4 + 16}, /* d, m, qh, nibbles */
    {QS_GGUF_Q8_0, "Q8_0", QS_GGUF_QK_LEGACY, 2 + 32},         /* d, 32 int8 */
    {QS_GGUF_Q2_K, "Q2_K", QS_GGUF_QK_K, 16 + 64 + 2 + 2},     /* scales, qs, d, dmin */
    {QS_GGUF_Q3_K, "Q3_K", QS_GGUF_QK_K, 32 + 64 + 12 + 2},    /* hmask, qs, scales, d */
    {QS_GGUF_Q4_K, "Q4_K", QS_GGUF_QK_K, 2 + 2 + 12 + 128},    /* d, dmin, scales, qs */
    {QS_GGUF_Q5_K, "Q5_K", QS_GGUF_QK_K, 2 + 2 + 12 + 32 + 128}, /* d, dmin, scales, qh, qs */
    {QS_GGUF_Q6_K, "Q6_K", QS_GGUF_QK_K, 128 + 64 + 16 + 2},   /* ql, qh, scales, d */
};

static const type_row *row_of(int t) {
    for (size_t i = 0; i < sizeof(k_types) / sizeof(k_types[0]); ++i)
        if ((int)k_types[i].type == t) return &k_types[i];
    return NULL;
}

int qs_gguf_type_known(int t) { return row_of(t) != NULL; }

int64_t qs_gguf_block_elems(qs_gguf_type t) {
    const type_row *r = row_of((int)t);
    return r ? r->block_elems : 0;
}

int64_t qs_gguf_block_bytes(qs_gguf_type t) {
    const type_row *r = row_of((int)t);
    return r ? r->block_bytes : 0;
}

int64_t qs_gguf_row_bytes(qs_gguf_type t, int64_t n) {
    const type_row *r = row_of((int)t);
    if (!r || n < 0 || n % r->block_elems != 0) return -1;
    return n / r->block_elems * r->block_bytes;
}

const char *qs_gguf_type_name(qs_gguf_type t) {
    const type_row *r = row_of((int)t);
    return r ? r->name : "?";
}

int qs_gguf_type_parse(const char *s, qs_gguf_type *out) {
    for (size_t i = 0; i < sizeof(k_types) / sizeof(k_types[0]); ++i)
        if (strcasecmp(s, k_types[i].name) == 0) {
            *out = k_types[i].type;
            return 0;
        }
    return -1;
}
