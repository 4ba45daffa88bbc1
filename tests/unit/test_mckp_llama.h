/* test_mckp_llama.h: a Llama-70B-shaped mixed-precision instance for test_mckp and
 * bench_mckp. 80 layers x 4 items (tied q/k/v, o, tied gate/up, down) = 320 items with 8
 * candidates each (bits {2,3,4,8} x group {32,128}), sizes from the GPTQ payload formula
 *   qweight d_in*bits/8*d_out + scales 2*G*d_out + qzeros G*d_out*bits/8 + g_idx 4*d_in,
 *   G = ceil(d_in/group)
 * summed over the parts of a tied item (hidden 8192, intermediate 28672, 64 heads, 8 kv heads,
 * head_dim 128), and costs that fall about 4x per bit with a random per-layer and per-item
 * sensitivity (g32 a little better than g128). Header-only (static functions). */
#ifndef QS_TEST_MCKP_LLAMA_H
#define QS_TEST_MCKP_LLAMA_H

#include <stdint.h>
#include <stdlib.h>

#include "mckp.h"

#define QS_LLAMA_LAYERS 80
#define QS_LLAMA_ITEMS (4 * QS_LLAMA_LAYERS)
#define QS_LLAMA_CANDS 8
enum { QS_LLAMA_W3G128 = 3, QS_LLAMA_W4G128 = 5 }; /* candidate c = 2*bits_index + (g128) */

typedef struct qs_llama_inst {
    qs_mckp_problem p;
    int *nchoice;                    /* (320,) */
    int64_t *size;                   /* (320, 8) */
    double *cost;                    /* (320, 8) */
    int64_t uniform[QS_LLAMA_CANDS]; /* total size of the uniform allocation per candidate */
} qs_llama_inst;

static const int qs_llama_bits[4] = {2, 3, 4, 8};
static const int qs_llama_group[2] = {32, 128};

static int64_t qs_llama_part_bytes(int64_t d_in, int64_t d_out, int bits, int group) {
    int64_t G = (d_in + group - 1) / group;
    return d_in * bits / 8 * d_out + 2 * G * d_out + G * d_out * bits / 8 + 4 * d_in;
}

static uint64_t qs_llama_rng;
static double qs_llama_unif(void) {
    qs_llama_rng ^= qs_llama_rng << 13;
    qs_llama_rng ^= qs_llama_rng >> 7;
    qs_llama_rng ^= qs_llama_rng << 17;
    return (double)(qs_llama_rng >> 11) / 9007199254740992.0;
}

static void qs_llama_inst_free(qs_llama_inst *L) {
    free(L->nchoice);
    free(L->size);
    free(L->cost);
}

/* Builds the instance for a seed; returns 0, or -1 when out of memory. */
static int qs_llama_inst_make(qs_llama_inst *L, uint64_t seed) {
    const int64_t h = 8192, inter = 28672, kv = 8 * 128;
    /* parts per item kind: (d_in, d_out) */
    const int64_t parts[4][3][2] = {{{h, h}, {h, kv}, {h, kv}},
                                    {{h, h}, {0, 0}, {0, 0}},
                                    {{h, inter}, {h, inter}, {0, 0}},
                                    {{inter, h}, {0, 0}, {0, 0}}};
    const double kind_w[4] = {1.0, 0.6, 1.4, 1.1};
    L->nchoice = malloc(QS_LLAMA_ITEMS * sizeof(int));
    L->size = malloc(QS_LLAMA_ITEMS * QS_LLAMA_CANDS * sizeof(int64_t));
    L->cost = malloc(QS_LLAMA_ITEMS * QS_LLAMA_CANDS * sizeof(double));
    if (!L->nchoice || !L->size || !L->cost) {
        qs_llama_inst_free(L);
        return -1;
    }
    qs_llama_rng = seed * 2654435761u + 1;
    for (int c = 0; c < QS_LLAMA_CANDS; ++c) L->uniform[c] = 0;
    for (int l = 0; l < QS_LLAMA_LAYERS; ++l) {
        double u = qs_llama_unif();
        double sens_layer = 0.3 + 3.0 * u * u + (l < 2 || l >= QS_LLAMA_LAYERS - 2 ? 4.0 : 0.0);
        for (int k = 0; k < 4; ++k) {
            int item = 4 * l + k;
            L->nchoice[item] = QS_LLAMA_CANDS;
            double sens = sens_layer * kind_w[k] * (0.5 + qs_llama_unif());
            for (int b = 0; b < 4; ++b)
                for (int g = 0; g < 2; ++g) {
                    int c = 2 * b + g;
                    int64_t s = 0;
                    for (int t = 0; t < 3; ++t)
                        if (parts[k][t][0] > 0)
                            s += qs_llama_part_bytes(parts[k][t][0], parts[k][t][1],
                                                     qs_llama_bits[b], qs_llama_group[g]);
                    /* about 4x less error per extra bit; g32 ~15% better than g128 */
                    double e = sens;
                    for (int t = 0; t < qs_llama_bits[b]; ++t) e *= 0.25;
                    e *= (g == 0 ? 0.85 : 1.0) * (0.95 + 0.1 * qs_llama_unif());
                    L->size[item * QS_LLAMA_CANDS + c] = s;
                    L->cost[item * QS_LLAMA_CANDS + c] = e;
                    L->uniform[c] += s;
                }
        }
    }
    qs_mckp_problem p = {QS_LLAMA_ITEMS, L->nchoice, L->size, L->cost, NULL, NULL};
    L->p = p;
    return 0;
}

#endif /* QS_TEST_MCKP_LLAMA_H */
