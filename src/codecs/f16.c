/* f16.c - the f16 KV codec: rows stored as IEEE half floats (round to nearest even), 2 bytes
 * per element, relative error <= 2^-11 in the normal range. Scores and sums are computed in
 * f32 against the f32 query. The SIMD encoders use the F16C conversion, bit-identical to
 * kvc_f32_to_f16 for all non-NaN inputs (NaN payloads may differ). */
#include "codec_impl.h"

static size_t f16_row_bytes(const void *cfg, int d) {
    (void)cfg;
    return d > 0 ? (size_t)d * 2 : 0;
}
static kvc_status f16_check_dim(const void *cfg, int d, kvc_error *err) {
    (void)cfg;
    if (d <= 0) return kvc_fail(err, KVC_ERR_ARG, "KV codec 'f16': head dim %d must be positive", d);
    return KVC_OK;
}
static int f16_floats(const void *cfg, int d) {
    (void)cfg;
    return d;
}

/* ---- scalar ---- */

static void f16_encode(const struct kv_slot *s, const float *x, int pos0, int n, void *dst) {
    (void)pos0;
    size_t m = (size_t)n * (size_t)s->info.d;
    uint16_t *h = (uint16_t *)dst;
    for (size_t i = 0; i < m; i++) h[i] = kvc_f32_to_f16(x[i]);
}
static void f16_decode(const struct kv_slot *s, const void *src, int pos0, int n, float *y) {
    (void)pos0;
    size_t m = (size_t)n * (size_t)s->info.d;
    const uint16_t *h = (const uint16_t *)src;
    for (size_t i = 0; i < m; i++) y[i] = kvc_f16_to_f32(h[i]);
}
static void f16_prepare(const struct kv_slot *s, const float *q, float *qp) {
    memcpy(qp, q, (size_t)s->info.d * 4);
}
static void f16_score(const struct kv_slot *s, const float *qp, const void *keys, int pos0,
                      int n, float *out) {
    (void)pos0;
    const int d = s->info.d;
    const uint16_t *k = (const uint16_t *)keys;
    for (int i = 0; i < n; i++, k += d) {
        double acc = 0;
        for (int j = 0; j < d; j++) acc += (double)qp[j] * kvc_f16_to_f32(k[j]);
        out[i] = (float)acc;
    }
}
static void f16_accumulate(const struct kv_slot *s, const float *w, const void *vals, int pos0,
                           int n, float *acc) {
    (void)pos0;
    const int d = s->info.d;
    const uint16_t *v = (const uint16_t *)vals;
    for (int i = 0; i < n; i++, v += d) {
        if (w[i] == 0.0f) continue;
        for (int j = 0; j < d; j++) acc[j] += w[i] * kvc_f16_to_f32(v[j]);
    }
}

/* ---- AVX2 ---- */

KVC_TARGET_AVX2 static void f16_encode_avx2(const struct kv_slot *s, const float *x, int pos0,
                                            int n, void *dst) {
    (void)pos0;
    size_t m = (size_t)n * (size_t)s->info.d, i = 0;
    uint16_t *h = (uint16_t *)dst;
    for (; i + 8 <= m; i += 8)
        _mm_storeu_si128((__m128i *)(h + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < m; i++) h[i] = kvc_f32_to_f16(x[i]);
}
KVC_TARGET_AVX2 static void f16_decode_avx2(const struct kv_slot *s, const void *src, int pos0,
                                            int n, float *y) {
    (void)pos0;
    size_t m = (size_t)n * (size_t)s->info.d, i = 0;
    const uint16_t *h = (const uint16_t *)src;
    for (; i + 8 <= m; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < m; i++) y[i] = kvc_f16_to_f32(h[i]);
}
KVC_TARGET_AVX2 static void f16_score_avx2(const struct kv_slot *s, const float *qp,
                                           const void *keys, int pos0, int n, float *out) {
    const int d = s->info.d;
    if (d == 64) kv256_float_score(KV_ROW_F16, qp, keys, n, 64, out);
    else if (d == 128) kv256_float_score(KV_ROW_F16, qp, keys, n, 128, out);
    else if (d % 8 == 0) kv256_float_score(KV_ROW_F16, qp, keys, n, d, out);
    else f16_score(s, qp, keys, pos0, n, out);
}
KVC_TARGET_AVX2 static void f16_accumulate_avx2(const struct kv_slot *s, const float *w,
                                                const void *vals, int pos0, int n, float *acc) {
    const int d = s->info.d;
    if (d % 8 == 0) kv256_float_acc(KV_ROW_F16, w, vals, n, d, acc);
    else f16_accumulate(s, w, vals, pos0, n, acc);
}

/* ---- AVX-512 ---- */

KVC_TARGET_AVX512 static void f16_encode_avx512(const struct kv_slot *s, const float *x,
                                                int pos0, int n, void *dst) {
    (void)pos0;
    size_t m = (size_t)n * (size_t)s->info.d, i = 0;
    uint16_t *h = (uint16_t *)dst;
    for (; i + 16 <= m; i += 16)
        _mm256_storeu_si256((__m256i *)(h + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < m; i++) h[i] = kvc_f32_to_f16(x[i]);
}
KVC_TARGET_AVX512 static void f16_decode_avx512(const struct kv_slot *s, const void *src,
                                                int pos0, int n, float *y) {
    (void)pos0;
    size_t m = (size_t)n * (size_t)s->info.d, i = 0;
    const uint16_t *h = (const uint16_t *)src;
    for (; i + 16 <= m; i += 16)
        _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
    for (; i < m; i++) y[i] = kvc_f16_to_f32(h[i]);
}
KVC_TARGET_AVX512 static void f16_score_avx512(const struct kv_slot *s, const float *qp,
                                               const void *keys, int pos0, int n, float *out) {
    const int d = s->info.d;
    if (d == 64) kv512_float_score(KV_ROW_F16, qp, keys, n, 64, out);
    else if (d == 128) kv512_float_score(KV_ROW_F16, qp, keys, n, 128, out);
    else if (d % 16 == 0) kv512_float_score(KV_ROW_F16, qp, keys, n, d, out);
    else f16_score(s, qp, keys, pos0, n, out);
}
KVC_TARGET_AVX512 static void f16_accumulate_avx512(const struct kv_slot *s, const float *w,
                                                    const void *vals, int pos0, int n,
                                                    float *acc) {
    const int d = s->info.d;
    if (d % 16 == 0) kv512_float_acc(KV_ROW_F16, w, vals, n, d, acc);
    else f16_accumulate(s, w, vals, pos0, n, acc);
}

KV512_FLOAT_GROUPED(KV_ROW_F16, f16)

const struct kv_codec kv_codec_f16 = {
    .name = "f16",
    .id = KV_CODEC_F16,
    .params = "",
    .about = "IEEE half floats (2 bytes per element)",
    .cfg_size = 0,
    .batch_decode = kv_batch_decode_all,
    .parse = NULL,
    .row_bytes = f16_row_bytes,
    .check_dim = f16_check_dim,
    .state_create = NULL,
    .state_free = NULL,
    .qp_floats = f16_floats,
    .acc_floats = f16_floats,
    .kern = {
        [KVC_ISA_SCALAR] = {f16_encode, f16_decode, f16_prepare, f16_score, f16_accumulate, NULL},
        [KVC_ISA_AVX2] = {f16_encode_avx2, f16_decode_avx2, f16_prepare, f16_score_avx2,
                          f16_accumulate_avx2, NULL},
        [KVC_ISA_AVX512] = {f16_encode_avx512, f16_decode_avx512, f16_prepare, f16_score_avx512,
                            f16_accumulate_avx512, NULL,
                            f16_score_g_avx512, f16_acc_g_avx512},
    },
};
