/* kernels.c: fp32 decoder kernels (RMSNorm, RoPE, linear, attention, SwiGLU, embedding,
 * NLL) on OpenBLAS. See kernels.h for the contracts and docs/model.md for the numerics. */
#include "kernels.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

#define QS_TWO_PI 6.283185307179586476925286766559

void qs_rmsnorm(const float *x, const float *weight, float *y, int64_t rows, int64_t d,
                float eps) {
    for (int64_t r = 0; r < rows; ++r) {
        const float *xr = x + r * d;  // (d)
        float *yr = y + r * d;        // (d)
        double ss = 0.0;
        for (int64_t i = 0; i < d; ++i) ss += (double)xr[i] * (double)xr[i];
        float var = (float)(ss / (double)d);
        float inv = 1.0f / sqrtf(var + eps);
        for (int64_t i = 0; i < d; ++i) yr[i] = weight[i] * (xr[i] * inv);
    }
}

void qs_rope_inv_freq(const qs_rope_params *p, int64_t head_dim, float *inv_freq) {
    const int64_t half = head_dim / 2;
    const float base = (float)p->theta;
    for (int64_t i = 0; i < half; ++i) {
        float e = (float)(2 * i) / (float)head_dim;
        inv_freq[i] = 1.0f / powf(base, e);
    }
    if (p->scaling == QS_ROPE_SCALING_LINEAR) {
        const float f = (float)p->factor;
        for (int64_t i = 0; i < half; ++i) inv_freq[i] = inv_freq[i] / f;
    } else if (p->scaling == QS_ROPE_SCALING_LLAMA3) {
        /* HF _compute_llama3_parameters, op by op in f32 */
        const float factor = (float)p->factor;
        const float lo = (float)p->low_freq_factor;
        const double old_ctx = (double)p->original_max_position;
        const float low_wl = (float)(old_ctx / p->low_freq_factor);
        const float high_wl = (float)(old_ctx / p->high_freq_factor);
        const float span = (float)(p->high_freq_factor - p->low_freq_factor);
        const float two_pi = (float)QS_TWO_PI;
        for (int64_t i = 0; i < half; ++i) {
            float f = inv_freq[i];
            float wl = two_pi / f;
            float fl = wl > low_wl ? f / factor : f;
            float smooth = ((float)old_ctx / wl - lo) / span;
            float smoothed = (1.0f - smooth) * fl / factor + smooth * fl;
            int medium = !(wl < high_wl) && !(wl > low_wl);
            inv_freq[i] = medium ? smoothed : fl;
        }
    }
}

void qs_rope_table(const float *inv_freq, int64_t half, int64_t npos, float *cos_t,
                   float *sin_t) {
    for (int64_t t = 0; t < npos; ++t) {
        for (int64_t i = 0; i < half; ++i) {
            float a = (float)t * inv_freq[i];
            cos_t[t * half + i] = (float)cos((double)a);
            sin_t[t * half + i] = (float)sin((double)a);
        }
    }
}

void qs_rope_apply_rows(float *x, int64_t r0, int64_t nrows, int64_t seqlen, int64_t nheads,
                        int64_t head_dim, const float *cos_t, const float *sin_t) {
    const int64_t half = head_dim / 2;
    const int64_t width = nheads * head_dim;
    for (int64_t i = 0; i < nrows; ++i) {
        const int64_t t = (r0 + i) % seqlen;
        float *row = x + i * width;            // (nheads, head_dim)
        const float *c = cos_t + t * half;     // (half)
        const float *sn = sin_t + t * half;    // (half)
        for (int64_t h = 0; h < nheads; ++h) {
            float *v = row + h * head_dim;
            for (int64_t j = 0; j < half; ++j) {
                float a = v[j], b = v[j + half];
                v[j] = a * c[j] - b * sn[j];
                v[j + half] = b * c[j] + a * sn[j];
            }
        }
    }
}

void qs_rope_apply(float *x, int64_t nseq, int64_t seqlen, int64_t nheads, int64_t head_dim,
                   const float *cos_t, const float *sin_t) {
    qs_rope_apply_rows(x, 0, nseq * seqlen, seqlen, nheads, head_dim, cos_t, sin_t);
}

void qs_linear(const float *x, const float *w, const float *b, float *y, int64_t rows,
               int64_t d_in, int64_t d_out) {
    if (rows <= 0 || d_out <= 0) return;
    float beta = 0.0f;
    if (b) {
        for (int64_t r = 0; r < rows; ++r) memcpy(y + r * d_out, b, (size_t)d_out * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)d_out, (int)d_in, 1.0f,
                x, (int)d_in, w, (int)d_in, beta, y, (int)d_out);
}

/* Masked softmax of one score row in place: entries [lo, hi] kept, the rest set to 0. */
static void softmax_row(float *s, int64_t n, int64_t lo, int64_t hi) {
    float m = -FLT_MAX;
    for (int64_t j = lo; j <= hi; ++j) m = s[j] > m ? s[j] : m;
    float sum = 0.0f;
    for (int64_t j = lo; j <= hi; ++j) {
        float e = expf(s[j] - m);
        s[j] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
    for (int64_t j = 0; j < lo; ++j) s[j] = 0.0f;
    for (int64_t j = lo; j <= hi; ++j) s[j] *= inv;
    for (int64_t j = hi + 1; j < n; ++j) s[j] = 0.0f;
}

void qs_attention_head(float *q, const float *k, const float *v, int64_t s, int64_t h,
                       int64_t seqlen, int64_t heads, int64_t kv_heads, int64_t head_dim,
                       int64_t window, float *scores) {
    const int64_t qw = heads * head_dim;     // q row width
    const int64_t kw = kv_heads * head_dim;  // k/v row width
    const int64_t rep = heads / kv_heads;
    const float scale = (float)(1.0 / sqrt((double)head_dim));
    const int T = (int)seqlen;
    float *qh = q + s * seqlen * qw + h * head_dim;                   // (T, hd), ld qw
    const float *kh = k + s * seqlen * kw + (h / rep) * head_dim;     // (T, hd), ld kw
    const float *vh = v + s * seqlen * kw + (h / rep) * head_dim;     // (T, hd), ld kw
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, (int)head_dim, scale, qh,
                (int)qw, kh, (int)kw, 0.0f, scores, T);
    for (int64_t i = 0; i < seqlen; ++i) {
        int64_t lo = 0;
        if (window > 0 && i - window + 1 > 0) lo = i - window + 1;
        softmax_row(scores + i * seqlen, seqlen, lo, i);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, (int)head_dim, T, 1.0f,
                scores, T, vh, (int)kw, 0.0f, qh, (int)qw);
}

void qs_attention(float *q, const float *k, const float *v, int64_t nseq, int64_t seqlen,
                  int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t window,
                  float *scores) {
    for (int64_t s = 0; s < nseq; ++s)
        for (int64_t h = 0; h < heads; ++h)
            qs_attention_head(q, k, v, s, h, seqlen, heads, kv_heads, head_dim, window, scores);
}

void qs_swiglu(float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        float g = gate[i];
        float act = g / (1.0f + expf(-g));
        gate[i] = act * up[i];
    }
}

void qs_add_inplace(float *x, const float *y, int64_t rows, int64_t d) {
    const int64_t n = rows * d;
    for (int64_t i = 0; i < n; ++i) x[i] = x[i] + y[i];
}

qs_status qs_embed_gather(const float *embed, int64_t vocab, int64_t hidden,
                          const uint32_t *tokens, int64_t n, float *x, qs_err *err) {
    for (int64_t i = 0; i < n; ++i) {
        if ((int64_t)tokens[i] >= vocab)
            return QS_FAIL(err, QS_ERR_INPUT,
                           "token id %u at index %lld is out of range for vocab size %lld",
                           (unsigned)tokens[i], (long long)i, (long long)vocab);
        memcpy(x + i * hidden, embed + (int64_t)tokens[i] * hidden,
               (size_t)hidden * sizeof(float));
    }
    return QS_OK;
}

double qs_nll_row(const float *logits, int64_t vocab, uint32_t target) {
    double m = -HUGE_VAL;
    for (int64_t j = 0; j < vocab; ++j) m = logits[j] > m ? logits[j] : m;
    double sum = 0.0;
    for (int64_t j = 0; j < vocab; ++j) sum += exp((double)logits[j] - m);
    return m + log(sum) - (double)logits[target];
}
