/* bf16.c - the bf16 KV codec: rows stored as bfloat16 (the top 16 bits of an f32, round to
 * nearest even), 2 bytes per element, relative error <= 2^-8 with f32's full range. Scores and
 * sums are computed in f32; the SIMD encoders do the same integer rounding as
 * kvc_f32_to_bf16, so every level writes identical bytes (NaNs included). */
#include "codec_impl.h"

static size_t bf16_row_bytes(const void *cfg, int d) {
    (void)cfg;
    return d > 0 ? (size_t)d * 2 : 0;
}
static kvc_status bf16_check_dim(const void *cfg, int d, kvc_error *err) {
    (void)cfg;
    if (d <= 0)
        return kvc_fail(err, KVC_ERR_ARG, "KV codec 'bf16': head dim %d must be positive", d);
    return KVC_OK;
}
static int bf16_floats(const void *cfg, int d) {
    (void)cfg;
    return d;
}

/* ---- scalar ---- */

static void bf16_encode(const struct kv_slot *s, const float *x, int pos0, int n, void *dst) {
    (void)pos0;
    size_t m = (size_t)n * (size_t)s->info.d;
    uint16_t *h = (uint16_t *)dst;
    for (size_t i = 0; i < m; i++) h[i] = kvc_f32_to_bf16(x[i]);
}
static void bf16_decode(const struct kv_slot *s, const void *src, int pos0, int n, float *y) {
    (void)pos0;
    size_t m = (size_t)n * (size_t)s->info.d;
    const uint16_t *h = (const uint16_t *)src;
    for (size_t i = 0; i < m; i++) y[i] = kvc_bf16_to_f32(h[i]);
}
static void bf16_prepare(const struct kv_slot *s, const float *q, float *qp) {
    memcpy(qp, q, (size_t)s->info.d * 4);
}
static void bf16_score(const struct kv_slot *s, const float *qp, const void *keys, int pos0,
                       int n, float *out) {
    (void)pos0;
    const int d = s->info.d;
    const uint16_t *k = (const uint16_t *)keys;
    for (int i = 0; i < n; i++, k += d) {
        double acc = 0;
        for (int j = 0; j < d; j++) acc += (double)qp[j] * kvc_bf16_to_f32(k[j]);
        out[i] = (float)acc;
    }
}
static void bf16_accumulate(const struct kv_slot *s, const float *w, const void *vals, int pos0,
                            int n, float *acc) {
    (void)pos0;
    const int d = s->info.d;
    const uint16_t *v = (const uint16_t *)vals;
    for (int i = 0; i < n; i++, v += d) {
        if (w[i] == 0.0f) continue;
        for (int j = 0; j < d; j++) acc[j] += w[i] * kvc_bf16_to_f32(v[j]);
    }
}

/* ---- AVX2 ---- */

/* 8 floats -> 8 bf16 (round to nearest even, NaN -> quiet NaN), as kvc_f32_to_bf16. */
KVC_TARGET_AVX2 static inline __m128i bf16_round8(__m256 v) {
    __m256i x = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb), 16);
    __m256i ax = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
    __m256i nan = _mm256_cmpgt_epi32(ax, _mm256_set1_epi32(0x7f800000));
    __m256i qn = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
    r = _mm256_blendv_epi8(r, qn, nan);
    /* values are < 65536: pack the 8 dwords to 8 words */
    return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}
KVC_TARGET_AVX2 static void bf16_encode_avx2(const struct kv_slot *s, const float *x, int pos0,
                                             int n, void *dst) {
    (void)pos0;
    size_t m = (size_t)n * (size_t)s->info.d, i = 0;
    uint16_t *h = (uint16_t *)dst;
    for (; i + 8 <= m; i += 8)
        _mm_storeu_si128((__m128i *)(h + i), bf16_round8(_mm256_loadu_ps(x + i)));
    for (; i < m; i++) h[i] = kvc_f32_to_bf16(x[i]);
}
KVC_TARGET_AVX2 static void bf16_score_avx2(const struct kv_slot *s, const float *qp,
                                            const void *keys, int pos0, int n, float *out) {
    const int d = s->info.d;
    if (d == 64) kv256_float_score(KV_ROW_BF16, qp, keys, n, 64, out);
    else if (d == 128) kv256_float_score(KV_ROW_BF16, qp, keys, n, 128, out);
    else if (d % 8 == 0) kv256_float_score(KV_ROW_BF16, qp, keys, n, d, out);
    else bf16_score(s, qp, keys, pos0, n, out);
}
KVC_TARGET_AVX2 static void bf16_accumulate_avx2(const struct kv_slot *s, const float *w,
                                                 const void *vals, int pos0, int n, float *acc) {
    const int d = s->info.d;
    if (d % 8 == 0) kv256_float_acc(KV_ROW_BF16, w, vals, n, d, acc);
    else bf16_accumulate(s, w, vals, pos0, n, acc);
}

/* ---- AVX-512 ---- */

KVC_TARGET_AVX512 static void bf16_encode_avx512(const struct kv_slot *s, const float *x,
                                                 int pos0, int n, void *dst) {
    (void)pos0;
    size_t m = (size_t)n * (size_t)s->info.d, i = 0;
    uint16_t *h = (uint16_t *)dst;
    const __m512i one = _mm512_set1_epi32(1), rnd = _mm512_set1_epi32(0x7fff);
    for (; i + 16 <= m; i += 16) {
        __m512i xi = _mm512_castps_si512(_mm512_loadu_ps(x + i));
        __m512i hi = _mm512_srli_epi32(xi, 16);
        __m512i r = _mm512_srli_epi32(
            _mm512_add_epi32(_mm512_add_epi32(xi, rnd), _mm512_and_si512(hi, one)), 16);
        __mmask16 nan = _mm512_cmpgt_epi32_mask(
            _mm512_and_si512(xi, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
        r = _mm512_mask_or_epi32(r, nan, hi, _mm512_set1_epi32(0x40));
        _mm256_storeu_si256((__m256i *)(h + i), _mm512_cvtepi32_epi16(r));
    }
    for (; i < m; i++) h[i] = kvc_f32_to_bf16(x[i]);
}
KVC_TARGET_AVX512 static void bf16_decode_avx512(const struct kv_slot *s, const void *src,
                                                 int pos0, int n, float *y) {
    (void)pos0;
    size_t m = (size_t)n * (size_t)s->info.d, i = 0;
    const uint16_t *h = (const uint16_t *)src;
    for (; i + 16 <= m; i += 16) _mm512_storeu_ps(y + i, kv512_load16(KV_ROW_BF16, h + i, 0));
    for (; i < m; i++) y[i] = kvc_bf16_to_f32(h[i]);
}
KVC_TARGET_AVX512 static void bf16_score_avx512(const struct kv_slot *s, const float *qp,
                                                const void *keys, int pos0, int n, float *out) {
    const int d = s->info.d;
    if (d == 64) kv512_float_score(KV_ROW_BF16, qp, keys, n, 64, out);
    else if (d == 128) kv512_float_score(KV_ROW_BF16, qp, keys, n, 128, out);
    else if (d % 16 == 0) kv512_float_score(KV_ROW_BF16, qp, keys, n, d, out);
    else bf16_score(s, qp, keys, pos0, n, out);
}
KVC_TARGET_AVX512 static void bf16_accumulate_avx512(const struct kv_slot *s, const float *w,
                                                     const void *vals, int pos0, int n,
                                                     float *acc) {
    const int d = s->info.d;
    if (d % 16 == 0) kv512_float_acc(KV_ROW_BF16, w, vals, n, d, acc);
    else bf16_accumulate(s, w, vals, pos0, n, acc);
}

KV512_FLOAT_GROUPED(KV_ROW_BF16, bf16)

const struct kv_codec kv_codec_bf16 = {
    .name = "bf16",
    .id = KV_CODEC_BF16,
    .params = "",
    .about = "bfloat16 (2 bytes per element, f32 range, 8-bit mantissa)",
    .cfg_size = 0,
    .batch_decode = kv_batch_decode_all,
    .parse = NULL,
    .row_bytes = bf16_row_bytes,
    .check_dim = bf16_check_dim,
    .state_create = NULL,
    .state_free = NULL,
    .qp_floats = bf16_floats,
    .acc_floats = bf16_floats,
    .kern = {
        [KVC_ISA_SCALAR] = {bf16_encode, bf16_decode, bf16_prepare, bf16_score, bf16_accumulate,
                            NULL},
        [KVC_ISA_AVX2] = {bf16_encode_avx2, bf16_decode, bf16_prepare, bf16_score_avx2,
                          bf16_accumulate_avx2, NULL},
        [KVC_ISA_AVX512] = {bf16_encode_avx512, bf16_decode_avx512, bf16_prepare,
                            bf16_score_avx512, bf16_accumulate_avx512, NULL,
                            bf16_score_g_avx512, bf16_acc_g_avx512},
    },
};
