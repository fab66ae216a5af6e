/* q4_0.c - the q4_0 KV codec: GGML Q4_0 blocks (f16 scale + 32 4-bit values, 18 bytes per
 * 32 values, 4.5 bits per element), byte-identical to GGML's quantize_row_q4_0 reference.
 * Scores use the int16 prepared query (codec_impl.h): exact nibble x int16 block dots with
 * the -8 offset folded into a per-block bias; values are dequantized through a 16-entry
 * table (vpermps) and FMA'd in f32. */
#include "codec_impl.h"
#include <math.h>

static size_t q4_0_row_bytes(const void *cfg, int d) {
    (void)cfg;
    return d > 0 && d % QK4_0 == 0 ? (size_t)(d / QK4_0) * sizeof(block_q4_0) : 0;
}
static kvc_status q4_0_check_dim(const void *cfg, int d, kvc_error *err) {
    (void)cfg;
    if (d <= 0 || d % QK4_0 != 0)
        return kvc_fail(err, KVC_ERR_UNSUPPORTED,
                        "KV codec 'q4_0' needs a head dim that is a positive multiple of 32 "
                        "(its block size); head dim is %d",
                        d);
    return KVC_OK;
}
static int q4_0_qp_floats(const void *cfg, int d) {
    (void)cfg;
    return kv_q16_floats(d);
}
static int q4_0_acc_floats(const void *cfg, int d) {
    (void)cfg;
    return d;
}

/* GGML reference: max = the x of largest |x| (first one), d = max/-8, id = d ? 1/d : 0,
 * q = MIN(15, (int8_t)(x*id + 8.5f)); byte j holds q[j] (low nibble) and q[j+16] (high). */
void kv_quantize_block_q4_0(const float *x, block_q4_0 *y) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK4_0; j++) {
        const float v = x[j];
        if (amax < fabsf(v)) {
            amax = fabsf(v);
            max = v;
        }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = kvc_f32_to_f16(d);
    for (int j = 0; j < QK4_0 / 2; j++) {
        float v0 = x[j] * id, v1 = x[j + 16] * id;
        v0 = v0 + 8.5f;
        v1 = v1 + 8.5f;
        int q0 = (int8_t)v0, q1 = (int8_t)v1;
        if (q0 > 15) q0 = 15;
        if (q1 > 15) q1 = 15;
        y->qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
}

/* ---- scalar ---- */

static void q4_0_encode(const struct kv_slot *s, const float *x, int pos0, int n, void *dst) {
    (void)pos0;
    size_t nb = (size_t)n * (size_t)(s->info.d / QK4_0);
    block_q4_0 *y = (block_q4_0 *)dst;
    for (size_t b = 0; b < nb; b++) kv_quantize_block_q4_0(x + b * QK4_0, y + b);
}
static void q4_0_decode(const struct kv_slot *s, const void *src, int pos0, int n, float *y) {
    (void)pos0;
    size_t nb = (size_t)n * (size_t)(s->info.d / QK4_0);
    const block_q4_0 *x = (const block_q4_0 *)src;
    for (size_t b = 0; b < nb; b++) {
        const float d = kvc_f16_to_f32(x[b].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[b * QK4_0 + j] = d * (float)((x[b].qs[j] & 15) - 8);
            y[b * QK4_0 + j + 16] = d * (float)((x[b].qs[j] >> 4) - 8);
        }
    }
}
static void q4_0_prepare(const struct kv_slot *s, const float *q, float *qp) {
    kv_q16_prepare(q, s->info.d, qp);
}
/* Block dot = sum q16[j] * nibble[j] - bias (bias = 8 * sum q16), exact in int32. */
static void q4_0_score(const struct kv_slot *s, const float *qp, const void *keys, int pos0,
                       int n, float *out) {
    (void)pos0;
    const int d = s->info.d, nb = d / QK4_0;
    const block_q4_0 *k = (const block_q4_0 *)keys;
    for (int i = 0; i < n; i++, k += nb) {
        float acc = 0.0f;
        for (int b = 0; b < nb; b++) {
            int32_t sum = 0;
            for (int j = 0; j < QK4_0 / 2; j++) {
                sum += (int32_t)kv_q16_get(qp, 32 * b + j) * (k[b].qs[j] & 15);
                sum += (int32_t)kv_q16_get(qp, 32 * b + j + 16) * (k[b].qs[j] >> 4);
            }
            sum -= kv_q16_bias(qp, d, b);
            const float sc = kvc_f16_to_f32(k[b].d) * kv_q16_scale(qp, d, b);
            acc = acc + (float)sum * sc;
        }
        out[i] = acc;
    }
}
static void q4_0_accumulate(const struct kv_slot *s, const float *w, const void *vals, int pos0,
                            int n, float *acc) {
    (void)pos0;
    const int nb = s->info.d / QK4_0;
    const block_q4_0 *v = (const block_q4_0 *)vals;
    for (int i = 0; i < n; i++, v += nb) {
        if (w[i] == 0.0f) continue;
        for (int b = 0; b < nb; b++) {
            const float c = w[i] * kvc_f16_to_f32(v[b].d);
            float *o = acc + 32 * b;
            for (int j = 0; j < QK4_0 / 2; j++) {
                o[j] += c * (float)((v[b].qs[j] & 15) - 8);
                o[j + 16] += c * (float)((v[b].qs[j] >> 4) - 8);
            }
        }
    }
}

/* ---- AVX2 ---- */

KVC_TARGET_AVX2 static void q4_0_encode_avx2(const struct kv_slot *s, const float *x, int pos0,
                                             int n, void *dst) {
    (void)pos0;
    size_t nb = (size_t)n * (size_t)(s->info.d / QK4_0);
    block_q4_0 *y = (block_q4_0 *)dst;
    const __m256 ab = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (size_t b = 0; b < nb; b++, x += QK4_0) {
        __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
        __m256 x2 = _mm256_loadu_ps(x + 16), x3 = _mm256_loadu_ps(x + 24);
        const float amax = kv256_absmax32(x0, x1, x2, x3);
        float max = 0.0f; /* GGML keeps max = +0 when every |x| is 0 */
        if (amax > 0.0f) { /* the first element reaching amax */
            const __m256 av = _mm256_set1_ps(amax);
#define Q4_0_HIT(v) (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(v, ab), av, _CMP_EQ_OQ))
            uint32_t hit = Q4_0_HIT(x0) | Q4_0_HIT(x1) << 8 | Q4_0_HIT(x2) << 16 | Q4_0_HIT(x3) << 24;
#undef Q4_0_HIT
            max = x[__builtin_ctz(hit)];
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = kvc_f32_to_f16(d);
        const __m256 idv = _mm256_set1_ps(id), h = _mm256_set1_ps(8.5f);
        const __m256i q15 = _mm256_set1_epi32(15);
#define Q4_0_Q(v) _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(v, idv), h)), q15)
        /* byte j = q[j] | q[j + 16] << 4, j = 0..15 */
        __m256i c0 = _mm256_or_si256(Q4_0_Q(x0), _mm256_slli_epi32(Q4_0_Q(x2), 4));
        __m256i c1 = _mm256_or_si256(Q4_0_Q(x1), _mm256_slli_epi32(Q4_0_Q(x3), 4));
#undef Q4_0_Q
        __m256i p = _mm256_packus_epi16(_mm256_packs_epi32(c0, c1), _mm256_setzero_si256());
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 3, 6, 7));
        _mm_storeu_si128((__m128i *)y[b].qs, _mm256_castsi256_si128(p));
    }
}

KVC_TARGET_AVX2 KV_INLINE __m256 q4_0_block256(const uint8_t *rows, size_t rb, int cnt, int b,
                                               const float *qp, int d, __m256i gidx,
                                               __m256i mask, __m256 acc) {
    const int16_t *q = (const int16_t *)qp + 32 * b;
    const __m256i q0 = _mm256_loadu_si256((const __m256i *)q);
    const __m256i q1 = _mm256_loadu_si256((const __m256i *)(q + 16));
    const __m256i m4 = _mm256_set1_epi16(15);
    __m256i p[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) {
        if (r < cnt) {
            const block_q4_0 *x = (const block_q4_0 *)(rows + (size_t)r * rb) + b;
            __m256i z = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)x->qs));
            __m256i lo = _mm256_and_si256(z, m4), hi = _mm256_srli_epi16(z, 4);
            p[r] = _mm256_add_epi32(_mm256_madd_epi16(lo, q0), _mm256_madd_epi16(hi, q1));
        } else {
            p[r] = _mm256_setzero_si256();
        }
    }
    __m256i sum = _mm256_sub_epi32(kv256_reduce8_epi32(p), _mm256_set1_epi32(kv_q16_bias(qp, d, b)));
    __m256i g = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(),
                                            (const int *)(rows + (size_t)b * sizeof(block_q4_0)),
                                            gidx, mask, 1);
    g = _mm256_and_si256(g, _mm256_set1_epi32(0xffff));
    __m256 dk = _mm256_cvtph_ps(_mm_packus_epi32(_mm256_castsi256_si128(g),
                                                 _mm256_extracti128_si256(g, 1)));
    __m256 sc = _mm256_mul_ps(dk, _mm256_set1_ps(kv_q16_scale(qp, d, b)));
    return _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(sum), sc));
}

KVC_TARGET_AVX2 static void q4_0_score_avx2(const struct kv_slot *s, const float *qp,
                                            const void *keys, int pos0, int n, float *out) {
    (void)pos0;
    const int d = s->info.d, nb = d / QK4_0;
    const size_t rb = (size_t)nb * sizeof(block_q4_0);
    const __m256i gidx =
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)rb));
    const uint8_t *base = (const uint8_t *)keys;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint8_t *rows = base + (size_t)i * rb;
        __m256 acc = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++)
            acc = q4_0_block256(rows, rb, 8, b, qp, d, gidx, _mm256_set1_epi32(-1), acc);
        _mm256_storeu_ps(out + i, acc);
    }
    if (i < n) {
        const uint8_t *rows = base + (size_t)i * rb;
        const __m256i mask = kv256_mask8(n - i);
        __m256 acc = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++) acc = q4_0_block256(rows, rb, n - i, b, qp, d, gidx, mask, acc);
        _mm256_maskstore_ps(out + i, mask, acc);
    }
}

/* acc[32b..32b+31] += c * (nibbles - 8) of block x: the nibbles are offset in the byte
 * domain to int8 in [-8, 7], then widened. */
#define Q4_0_ROW256(X0, X1, X2, X3, x, c)                                                       \
    do {                                                                                        \
        const __m256 k_ = _mm256_set1_ps(c);                                                    \
        const __m128i b_ = _mm_loadu_si128((const __m128i *)(x)->qs);                          \
        const __m128i lo_ = _mm_sub_epi8(_mm_and_si128(b_, m4), e8);                           \
        const __m128i hi_ = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(b_, 4), m4), e8);        \
        X0 = _mm256_fmadd_ps(k_, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo_)), X0);           \
        X1 = _mm256_fmadd_ps(k_, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(                      \
                                     _mm_srli_si128(lo_, 8))), X1);                             \
        X2 = _mm256_fmadd_ps(k_, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi_)), X2);           \
        X3 = _mm256_fmadd_ps(k_, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(                      \
                                     _mm_srli_si128(hi_, 8))), X3);                             \
    } while (0)

KVC_TARGET_AVX2 static void q4_0_accumulate_avx2(const struct kv_slot *s, const float *w,
                                                 const void *vals, int pos0, int n, float *acc) {
    (void)pos0;
    const int nb = s->info.d / QK4_0;
    const block_q4_0 *v = (const block_q4_0 *)vals;
    const __m128i m4 = _mm_set1_epi8(15), e8 = _mm_set1_epi8(8);
    for (int b = 0; b < nb; b++) {
        float *o = acc + 32 * b;
        __m256 a0 = _mm256_loadu_ps(o), a1 = _mm256_loadu_ps(o + 8);
        __m256 a2 = _mm256_loadu_ps(o + 16), a3 = _mm256_loadu_ps(o + 24);
        __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
        for (int i = 0; i < n; i += 8) {
            const int cnt = n - i < 8 ? n - i : 8;
            const block_q4_0 *rows = v + (size_t)i * nb + b;
            const float *wi = w + i;
#define Q4_0_A(r) Q4_0_ROW256(a0, a1, a2, a3, rows + (size_t)(r) * nb, wi[r] * _cvtsh_ss(rows[(size_t)(r) * nb].d))
#define Q4_0_B(r) Q4_0_ROW256(c0, c1, c2, c3, rows + (size_t)(r) * nb, wi[r] * _cvtsh_ss(rows[(size_t)(r) * nb].d))
            KV_ROWS_BY_MASK(kv256_nonzero8(wi, cnt), cnt, Q4_0_A, Q4_0_B);
#undef Q4_0_A
#undef Q4_0_B
        }
        _mm256_storeu_ps(o, _mm256_add_ps(a0, c0));
        _mm256_storeu_ps(o + 8, _mm256_add_ps(a1, c1));
        _mm256_storeu_ps(o + 16, _mm256_add_ps(a2, c2));
        _mm256_storeu_ps(o + 24, _mm256_add_ps(a3, c3));
    }
}

/* ---- AVX-512 ---- */

/* Rows to floats, 16 nibbles per vector: the same products d * (q - 8) as q4_0_decode. */
KVC_TARGET_AVX512 static void q4_0_decode_avx512(const struct kv_slot *s, const void *src, int pos0,
                                                 int n, float *y) {
    (void)pos0;
    const size_t nb = (size_t)n * (size_t)(s->info.d / QK4_0);
    const block_q4_0 *x = (const block_q4_0 *)src;
    const __m512i m15 = _mm512_set1_epi32(15), c8 = _mm512_set1_epi32(8);
    for (size_t b = 0; b < nb; b++) {
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(x[b].d));
        const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)x[b].qs));
        const __m512i lo = _mm512_sub_epi32(_mm512_and_si512(q, m15), c8);
        const __m512i hi = _mm512_sub_epi32(_mm512_srli_epi32(q, 4), c8);
        _mm512_storeu_ps(y + b * QK4_0, _mm512_mul_ps(d, _mm512_cvtepi32_ps(lo)));
        _mm512_storeu_ps(y + b * QK4_0 + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(hi)));
    }
}
KVC_TARGET_AVX512 static void q4_0_encode_avx512(const struct kv_slot *s, const float *x,
                                                 int pos0, int n, void *dst) {
    (void)pos0;
    size_t nb = (size_t)n * (size_t)(s->info.d / QK4_0);
    block_q4_0 *y = (block_q4_0 *)dst;
    for (size_t b = 0; b < nb; b++, x += QK4_0) {
        __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
        __m512 a0 = _mm512_abs_ps(x0), a1 = _mm512_abs_ps(x1);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
        float max = 0.0f; /* GGML keeps max = +0 when every |x| is 0 */
        if (amax > 0.0f) { /* the first element reaching amax, as GGML's strict '<' scan */
            __m512 av = _mm512_set1_ps(amax);
            uint32_t hit = (uint32_t)_mm512_cmp_ps_mask(a0, av, _CMP_EQ_OQ) |
                           ((uint32_t)_mm512_cmp_ps_mask(a1, av, _CMP_EQ_OQ) << 16);
            max = x[__builtin_ctz(hit)];
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = kvc_f32_to_f16(d);
        const __m512 idv = _mm512_set1_ps(id), h = _mm512_set1_ps(8.5f);
        const __m512i q15 = _mm512_set1_epi32(15);
        __m512i q0 = _mm512_min_epi32(_mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(x0, idv), h)), q15);
        __m512i q1 = _mm512_min_epi32(_mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(x1, idv), h)), q15);
        __m512i qq = _mm512_or_si512(q0, _mm512_slli_epi32(q1, 4));
        _mm_storeu_si128((__m128i *)y[b].qs, _mm512_cvtepi32_epi8(qq));
    }
}

/* Blocks b and b+1 (only b when !two) of up to 16 rows: a row's 2 x 16 bytes widen to 32
 * words [b | b+1]; low nibbles are elements 0-15, high nibbles 16-31 of each block. */
KVC_TARGET_AVX512 KV_INLINE __m512 q4_0_pair512(const uint8_t *rows, size_t rb, int cnt, int b,
                                                int two, const float *qp, int d, __m512i gidx,
                                                __mmask16 m, __m512 acc) {
    const int16_t *q = (const int16_t *)qp + 32 * b;
    const __m256i z = _mm256_setzero_si256();
    const __m256i qa0 = _mm256_loadu_si256((const __m256i *)q);
    const __m256i qa1 = _mm256_loadu_si256((const __m256i *)(q + 16));
    const __m256i qb0 = two ? _mm256_loadu_si256((const __m256i *)(q + 32)) : z;
    const __m256i qb1 = two ? _mm256_loadu_si256((const __m256i *)(q + 48)) : z;
    const __m512i qlo = _mm512_inserti64x4(_mm512_castsi256_si512(qa0), qb0, 1);
    const __m512i qhi = _mm512_inserti64x4(_mm512_castsi256_si512(qa1), qb1, 1);
    const __m512i m4 = _mm512_set1_epi16(15);
    __m512i p[16];
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++) {
        if (r < cnt) {
            const block_q4_0 *x = (const block_q4_0 *)(rows + (size_t)r * rb) + b;
            __m128i a = _mm_loadu_si128((const __m128i *)x->qs);
            __m256i by = two ? _mm256_inserti128_si256(_mm256_castsi128_si256(a),
                                                       _mm_loadu_si128((const __m128i *)x[1].qs), 1)
                             : _mm256_zextsi128_si256(a);
            __m512i w16 = _mm512_cvtepu8_epi16(by);
            __m512i lo = _mm512_and_si512(w16, m4), hi = _mm512_srli_epi16(w16, 4);
            p[r] = _mm512_add_epi32(_mm512_madd_epi16(lo, qlo), _mm512_madd_epi16(hi, qhi));
        } else {
            p[r] = _mm512_setzero_si512();
        }
    }
    __m512i sa, sb;
    kv512_reduce16x2_epi32(p, &sa, &sb);
    const __m512i zero = _mm512_setzero_si512();
    const uint8_t *sp = rows + (size_t)b * sizeof(block_q4_0);
    sa = _mm512_sub_epi32(sa, _mm512_set1_epi32(kv_q16_bias(qp, d, b)));
    __m512 da = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_mask_i32gather_epi32(zero, m, gidx, sp, 1)));
    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_cvtepi32_ps(sa),
                                           _mm512_mul_ps(da, _mm512_set1_ps(kv_q16_scale(qp, d, b)))));
    if (two) {
        sp += sizeof(block_q4_0);
        sb = _mm512_sub_epi32(sb, _mm512_set1_epi32(kv_q16_bias(qp, d, b + 1)));
        __m512 db = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_mask_i32gather_epi32(zero, m, gidx, sp, 1)));
        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_cvtepi32_ps(sb),
                                               _mm512_mul_ps(db, _mm512_set1_ps(kv_q16_scale(qp, d, b + 1)))));
    }
    return acc;
}

KVC_TARGET_AVX512 static void q4_0_score_avx512(const struct kv_slot *s, const float *qp,
                                                const void *keys, int pos0, int n, float *out) {
    (void)pos0;
    const int d = s->info.d, nb = d / QK4_0;
    const size_t rb = (size_t)nb * sizeof(block_q4_0);
    const __m512i gidx = kv512_row_offsets16(rb);
    const uint8_t *base = (const uint8_t *)keys;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const uint8_t *rows = base + (size_t)i * rb;
        __m512 acc = _mm512_setzero_ps();
        int b = 0;
        for (; b + 2 <= nb; b += 2) acc = q4_0_pair512(rows, rb, 16, b, 1, qp, d, gidx, 0xffff, acc);
        if (b < nb) acc = q4_0_pair512(rows, rb, 16, b, 0, qp, d, gidx, 0xffff, acc);
        _mm512_storeu_ps(out + i, acc);
    }
    if (i < n) {
        const uint8_t *rows = base + (size_t)i * rb;
        const int cnt = n - i;
        const __mmask16 m = kv_mask16(cnt);
        __m512 acc = _mm512_setzero_ps();
        int b = 0;
        for (; b + 2 <= nb; b += 2) acc = q4_0_pair512(rows, rb, cnt, b, 1, qp, d, gidx, m, acc);
        if (b < nb) acc = q4_0_pair512(rows, rb, cnt, b, 0, qp, d, gidx, m, acc);
        _mm512_mask_storeu_ps(out + i, m, acc);
    }
}

/* acc += c * (nibbles - 8) of one block: bytes widen to dwords, vpermps looks the low and
 * the high nibble up in the table {-8, ..., 7} (it uses only the low 4 index bits). */
#define Q4_0_FMA32(XL, XH, c, p)                                                               \
    do {                                                                                       \
        const __m512i w_ = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p)));       \
        XL = _mm512_fmadd_ps(c, _mm512_permutexvar_ps(w_, lut), XL);                           \
        XH = _mm512_fmadd_ps(c, _mm512_permutexvar_ps(_mm512_srli_epi32(w_, 4), lut), XH);     \
    } while (0)
#define Q4_0_ROW512(X0, X1, X2, X3, r)                                                         \
    do {                                                                                       \
        const block_q4_0 *x_ = (const block_q4_0 *)(rows + (size_t)(r) * rb) + b;             \
        const __m512 ka_ = _mm512_set1_ps(ca[r]);                                              \
        Q4_0_FMA32(X0, X1, ka_, x_->qs);                                                       \
        if (two) {                                                                             \
            const __m512 kb_ = _mm512_set1_ps(cb[r]);                                          \
            Q4_0_FMA32(X2, X3, kb_, x_[1].qs);                                                 \
        }                                                                                      \
    } while (0)

KVC_TARGET_AVX512 KV_INLINE void q4_0_acc_pair512(const uint8_t *base, size_t rb, const float *w,
                                                  int n, int b, int two, __m512i gidx,
                                                  float *o) {
    const __m512 zf = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    const __m512 lut = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    __m512 a0 = _mm512_loadu_ps(o), a1 = _mm512_loadu_ps(o + 16);
    __m512 a2 = two ? _mm512_loadu_ps(o + 32) : zf, a3 = two ? _mm512_loadu_ps(o + 48) : zf;
    __m512 c0 = zf, c1 = zf, c2 = zf, c3 = zf;
    float ca[16], cb[16];
    for (int i = 0; i < n; i += 16) {
        const int cnt = n - i < 16 ? n - i : 16;
        const __mmask16 m = kv_mask16(cnt);
        const uint8_t *rows = base + (size_t)i * rb;
        const uint8_t *sp = rows + (size_t)b * sizeof(block_q4_0);
        const __m512 wv = _mm512_maskz_loadu_ps(m, w + i);
        _mm512_storeu_ps(ca, _mm512_mul_ps(wv, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(
                                                   _mm512_mask_i32gather_epi32(zero, m, gidx, sp, 1)))));
        if (two)
            _mm512_storeu_ps(cb, _mm512_mul_ps(wv, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(
                                                       _mm512_mask_i32gather_epi32(
                                                           zero, m, gidx, sp + sizeof(block_q4_0), 1)))));
#define Q4_0_A(r) Q4_0_ROW512(a0, a1, a2, a3, r)
#define Q4_0_B(r) Q4_0_ROW512(c0, c1, c2, c3, r)
        KV_ROWS_BY_MASK(_mm512_mask_cmp_ps_mask(m, wv, zf, _CMP_NEQ_UQ), cnt, Q4_0_A, Q4_0_B);
#undef Q4_0_A
#undef Q4_0_B
    }
    _mm512_storeu_ps(o, _mm512_add_ps(a0, c0));
    _mm512_storeu_ps(o + 16, _mm512_add_ps(a1, c1));
    if (two) {
        _mm512_storeu_ps(o + 32, _mm512_add_ps(a2, c2));
        _mm512_storeu_ps(o + 48, _mm512_add_ps(a3, c3));
    }
}

KVC_TARGET_AVX512 static void q4_0_accumulate_avx512(const struct kv_slot *s, const float *w,
                                                     const void *vals, int pos0, int n,
                                                     float *acc) {
    (void)pos0;
    const int nb = s->info.d / QK4_0;
    const size_t rb = (size_t)nb * sizeof(block_q4_0);
    const __m512i gidx = kv512_row_offsets16(rb);
    int b = 0;
    for (; b + 2 <= nb; b += 2) q4_0_acc_pair512(vals, rb, w, n, b, 1, gidx, acc + 32 * b);
    if (b < nb) q4_0_acc_pair512(vals, rb, w, n, b, 0, gidx, acc + 32 * b);
}

KV512_QBLOCK_GROUPED(1, q4_0)

const struct kv_codec kv_codec_q4_0 = {
    .name = "q4_0",
    .id = KV_CODEC_Q4_0,
    .params = "",
    .about = "GGML Q4_0 blocks: f16 scale + 32 x 4 bits (4.5 bits per element)",
    .cfg_size = 0,
    .batch_decode = kv_batch_decode_all,
    .parse = NULL,
    .row_bytes = q4_0_row_bytes,
    .check_dim = q4_0_check_dim,
    .state_create = NULL,
    .state_free = NULL,
    .qp_floats = q4_0_qp_floats,
    .acc_floats = q4_0_acc_floats,
    .kern = {
        [KVC_ISA_SCALAR] = {q4_0_encode, q4_0_decode, q4_0_prepare, q4_0_score, q4_0_accumulate,
                            NULL},
        [KVC_ISA_AVX2] = {q4_0_encode_avx2, q4_0_decode, q4_0_prepare, q4_0_score_avx2,
                          q4_0_accumulate_avx2, NULL},
        [KVC_ISA_AVX512] = {q4_0_encode_avx512, q4_0_decode_avx512, q4_0_prepare, q4_0_score_avx512,
                            q4_0_accumulate_avx512, NULL, q4_0_score_g_avx512,
                            q4_0_acc_g_avx512},
    },
};
