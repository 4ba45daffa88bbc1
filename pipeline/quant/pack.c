/* pack.c: GPTQ checkpoint layout (qweight, qzeros, scales, g_idx): sizes, pack, unpack. */
#include "pack.h"

#include <stdlib.h>
#include <string.h>

#include "quant.h"

int qs_pack_unit(int bits) {
    switch (bits) {
    case 2: return 16;
    case 3: return 32;
    case 4: return 8;
    case 8: return 4;
    default: return 0;
    }
}

qs_status qs_pack_sizes(int64_t d_out, int64_t d_in, int bits, int group_size,
                        qs_pack_bytes *sizes, qs_err *err) {
    memset(sizes, 0, sizeof(*sizes));
    int unit = qs_pack_unit(bits);
    if (unit == 0)
        return QS_FAIL(err, QS_ERR_INPUT, "GPTQ layout: %d bits cannot be packed (2, 3, 4, 8 only)",
                       bits);
    if (d_out < 1 || d_in < 1)
        return QS_FAIL(err, QS_ERR_INPUT, "GPTQ layout: empty shape (%lld, %lld)",
                       (long long)d_out, (long long)d_in);
    if (group_size != -1 && group_size < 1)
        return QS_FAIL(err, QS_ERR_INPUT, "GPTQ layout: group size %d is neither -1 nor >= 1",
                       group_size);
    if (d_in % unit != 0)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "GPTQ layout: input size %lld is not a multiple of %d (packing unit at %d bits)",
                       (long long)d_in, unit, bits);
    if (d_out % unit != 0)
        return QS_FAIL(err, QS_ERR_INPUT,
                       "GPTQ layout: output size %lld is not a multiple of %d (packing unit at %d bits)",
                       (long long)d_out, unit, bits);
    int64_t G = qs_quant_ngroups(d_in, group_size);
    sizes->qweight = d_in * bits / 32 * d_out * 4; /* d_in*bits is a multiple of 32 */
    sizes->qzeros = G * (d_out * bits / 32) * 4;
    sizes->scales = G * d_out * 2;
    sizes->g_idx = d_in * 4;
    sizes->total = sizes->qweight + sizes->qzeros + sizes->scales + sizes->g_idx;
    return QS_OK;
}

int qs_pack_can_serve(int64_t d_out, int64_t d_in, int bits, int group_size, qs_err *why) {
    qs_pack_bytes s;
    if (qs_pack_sizes(d_out, d_in, bits, group_size, &s, why) != QS_OK) return 0;
    if (group_size >= 1 && d_in % group_size != 0) {
        QS_FAIL(why, QS_ERR_INPUT, "GPTQ layout: input size %lld is not a multiple of group size %d",
                (long long)d_in, group_size);
        return 0;
    }
    return 1;
}

void qs_pack_stream(const uint32_t *vals, int64_t count, int bits, uint32_t *words,
                    int64_t stride) {
    const uint32_t mask = (1u << bits) - 1u;
    for (int64_t i = 0; i < count; ++i) {
        int64_t bit = i * bits, w = bit >> 5;
        int off = (int)(bit & 31);
        uint32_t v = vals[i] & mask;
        words[w * stride] |= v << off;
        if (off + bits > 32) words[(w + 1) * stride] |= v >> (32 - off);
    }
}

void qs_unpack_stream(const uint32_t *words, int64_t count, int bits, int64_t stride,
                      uint32_t *vals) {
    const uint32_t mask = (1u << bits) - 1u;
    for (int64_t i = 0; i < count; ++i) {
        int64_t bit = i * bits, w = bit >> 5;
        int off = (int)(bit & 31);
        uint32_t v = words[w * stride] >> off;
        if (off + bits > 32) v |= words[(w + 1) * stride] << (32 - off);
        vals[i] = v & mask;
    }
}

/* What packing and unpacking one linear share: its checked layout, group count, words per
 * qzeros row, one row of scratch and a g_idx whose groups lie in [0, G). */
typedef struct pack_job {
    qs_pack_bytes sz;
    int64_t G;     /* groups per row */
    int64_t zrow;  /* words per qzeros row */
    uint32_t *tmp; /* (max(d_in, d_out),) owned: one row of codes or zeros */
} pack_job;

/* Starts a pack (packing = 1) or unpack (0) of a (d_out, d_in) linear; g_idx (d_in,) is
 * checked. The caller frees job->tmp (also on failure). */
static qs_status pack_job_start(int64_t d_out, int64_t d_in, int bits, int group_size,
                                const int32_t *g_idx, int packing, pack_job *job,
                                qs_err *err) {
    qs_status st = QS_OK;
    job->tmp = NULL;
    QS_CHECK(qs_pack_sizes(d_out, d_in, bits, group_size, &job->sz, err));
    job->G = qs_quant_ngroups(d_in, group_size);
    job->zrow = d_out * bits / 32;
    job->tmp = qs_malloc((size_t)(d_in > d_out ? d_in : d_out) * sizeof(uint32_t), err,
                         packing ? "pack row" : "unpack row");
    if (!job->tmp) QS_THROW(err, QS_ERR_RUNTIME, "out of memory");
    for (int64_t j = 0; j < d_in; ++j)
        if (g_idx[j] < 0 || g_idx[j] >= job->G)
            QS_THROW(err, QS_ERR_INPUT, "GPTQ %sg_idx[%lld] = %d is outside [0, %lld)",
                     packing ? "pack: " : "", (long long)j, g_idx[j], (long long)job->G);
done:
    return st;
}

qs_status qs_pack_gptq(const uint8_t *codes, const uint16_t *scales, const int32_t *zeros,
                       const int32_t *g_idx, int64_t d_out, int64_t d_in, int bits,
                       int group_size, int v1, int32_t *qweight, int32_t *qzeros,
                       uint16_t *scales_t, int32_t *g_idx_out, qs_err *err) {
    qs_status st = QS_OK;
    pack_job job;
    QS_CHECK(pack_job_start(d_out, d_in, bits, group_size, g_idx, 1, &job, err));
    const int64_t G = job.G, zrow = job.zrow;
    uint32_t *tmp = job.tmp;
    const int32_t maxq = (1 << bits) - 1;
    memset(qweight, 0, (size_t)job.sz.qweight);
    memset(qzeros, 0, (size_t)job.sz.qzeros);
    for (int64_t o = 0; o < d_out; ++o) {
        for (int64_t j = 0; j < d_in; ++j) {
            if (codes[o * d_in + j] > maxq)
                QS_THROW(err, QS_ERR_INPUT, "GPTQ pack: code %d at (%lld, %lld) exceeds %d bits",
                         codes[o * d_in + j], (long long)o, (long long)j, bits);
            tmp[j] = codes[o * d_in + j];
        }
        qs_pack_stream(tmp, d_in, bits, (uint32_t *)qweight + o, d_out);
    }
    for (int64_t g = 0; g < G; ++g) {
        for (int64_t o = 0; o < d_out; ++o) {
            int32_t z = zeros[o * G + g];
            if (z < (v1 ? 1 : 0) || z > maxq)
                QS_THROW(err, QS_ERR_INPUT,
                         "GPTQ pack: zero point %d at (%lld, %lld) outside [%d, %d]%s", z,
                         (long long)o, (long long)g, v1 ? 1 : 0, maxq,
                         v1 ? " (v1 stores zero-1: quantize with zero_min1)" : "");
            tmp[o] = (uint32_t)(v1 ? z - 1 : z);
            scales_t[g * d_out + o] = scales[o * G + g];
        }
        qs_pack_stream(tmp, d_out, bits, (uint32_t *)qzeros + g * zrow, 1);
    }
    memcpy(g_idx_out, g_idx, (size_t)d_in * sizeof(int32_t));
done:
    free(job.tmp);
    return st;
}

qs_status qs_unpack_gptq(const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales_t,
                         const int32_t *g_idx_in, int64_t d_out, int64_t d_in, int bits,
                         int group_size, int v1, uint8_t *codes, uint16_t *scales,
                         int32_t *zeros, int32_t *g_idx, qs_err *err) {
    qs_status st = QS_OK;
    pack_job job;
    QS_CHECK(pack_job_start(d_out, d_in, bits, group_size, g_idx_in, 0, &job, err));
    const int64_t G = job.G, zrow = job.zrow;
    uint32_t *tmp = job.tmp;
    memcpy(g_idx, g_idx_in, (size_t)d_in * sizeof(int32_t));
    for (int64_t o = 0; o < d_out; ++o) {
        qs_unpack_stream((const uint32_t *)qweight + o, d_in, bits, d_out, tmp);
        for (int64_t j = 0; j < d_in; ++j) codes[o * d_in + j] = (uint8_t)tmp[j];
    }
    for (int64_t g = 0; g < G; ++g) {
        qs_unpack_stream((const uint32_t *)qzeros + g * zrow, d_out, bits, 1, tmp);
        for (int64_t o = 0; o < d_out; ++o) {
            /* v1 stores zero-1: readers add 1 back (a foreign all-ones gives maxq+1) */
            zeros[o * G + g] = v1 ? (int32_t)tmp[o] + 1 : (int32_t)tmp[o];
            scales[o * G + g] = scales_t[g * d_out + o];
        }
    }
done:
    free(job.tmp);
    return st;
}
