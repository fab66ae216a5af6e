/* q8_0.c - the q8_0 KV codec: GGML Q8_0 blocks (f16 scale + 32 int8, 34 bytes per 32
 * values, 8.5 bits per element), byte-identical to GGML's quantize_row_q8_0 reference.
 * Scores use the int16 prepared query (codec_impl.h): exact int8 x int16 block dot products
 * (vpmaddwd), one float multiply-add per block; values are dequantized and FMA'd in f32. */
#include "codec_impl.h"
#include <math.h>

static size_t q8_0_row_bytes(const void *cfg, int d) {
    (void)cfg;
    return d > 0 && d % QK8_0 == 0 ? (size_t)(d / QK8_0) * sizeof(block_q8_0) : 0;
}
static kvc_status q8_0_check_dim(const void *cfg, int d, kvc_error *err) {
    (void)cfg;
    if (d <= 0 || d % QK8_0 != 0)
        return kvc_fail(err, KVC_ERR_UNSUPPORTED,
                        "KV codec 'q8_0' needs a head dim that is a positive multiple of 32 "
                        "(its block size); head dim is %d",
                        d);
    return KVC_OK;
}
static int q8_0_qp_floats(const void *cfg, int d) {
    (void)cfg;
    return kv_q16_floats(d);
}
static int q8_0_acc_floats(const void *cfg, int d) {
    (void)cfg;
    return d;
}

/* ---- shared helpers (declared in codec_impl.h) ---- */

void kv_q16_prepare(const float *q, int d, float *qp) {
    const int nb = d / 32;
    for (int b = 0; b < nb; b++) {
        const float *x = q + 32 * b;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float scale = amax / 32767.0f, inv = amax > 0.0f ? 32767.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) {
            long r = lrintf(x[j] * inv);
            if (r > 32767) r = 32767;
            if (r < -32767) r = -32767;
            int16_t h = (int16_t)r;
            memcpy((char *)qp + 2 * (size_t)(32 * b + j), &h, 2);
            sum += h;
        }
        int32_t bias = 8 * sum;
        memcpy(qp + d / 2 + b, &scale, 4);
        memcpy(qp + d / 2 + nb + b, &bias, 4);
    }
}

/* roundf for |v| < 2^31 without a libm call (baseline x86-64 has no round instruction) and
 * without a data-dependent branch: truncate, then step away from zero when the dropped
 * fraction is >= 0.5 (all steps exact). */
static inline float kv_roundf(float v) {
    const float t = (float)(int32_t)v;
    const float step = (float)(fabsf(v - t) >= 0.5f);
    return t + copysignf(step, v);
}

/* GGML reference: amax = max|x|, d = amax/127, id = d ? 1/d : 0, q = roundf(x*id). */
void kv_quantize_block_q8_0(const float *x, block_q8_0 *y) {
    float amax = 0.0f;
    for (int j = 0; j < QK8_0; j++) {
        float a = fabsf(x[j]);
        if (a > amax) amax = a;
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = kvc_f32_to_f16(d);
    for (int j = 0; j < QK8_0; j++) {
        const float v = x[j] * id;
        y->qs[j] = (int8_t)kv_roundf(v);
    }
}

/* ---- scalar ---- */

static void q8_0_encode(const struct kv_slot *s, const float *x, int pos0, int n, void *dst) {
    (void)pos0;
    size_t nb = (size_t)n * (size_t)(s->info.d / QK8_0);
    block_q8_0 *y = (block_q8_0 *)dst;
    for (size_t b = 0; b < nb; b++) kv_quantize_block_q8_0(x + b * QK8_0, y + b);
}
static void q8_0_decode(const struct kv_slot *s, const void *src, int pos0, int n, float *y) {
    (void)pos0;
    size_t nb = (size_t)n * (size_t)(s->info.d / QK8_0);
    const block_q8_0 *x = (const block_q8_0 *)src;
    for (size_t b = 0; b < nb; b++) {
        const float d = kvc_f16_to_f32(x[b].d);
        for (int j = 0; j < QK8_0; j++) y[b * QK8_0 + j] = d * (float)x[b].qs[j];
    }
}
static void q8_0_prepare(const struct kv_slot *s, const float *q, float *qp) {
    kv_q16_prepare(q, s->info.d, qp);
}
/* out[i] = sum_b float(int dot of block b) * (d_key * d_query): the order the SIMD kernels
 * follow too, so all levels agree to the last bit or so. */
static void q8_0_score(const struct kv_slot *s, const float *qp, const void *keys, int pos0,
                       int n, float *out) {
    (void)pos0;
    const int d = s->info.d, nb = d / QK8_0;
    const block_q8_0 *k = (const block_q8_0 *)keys;
    for (int i = 0; i < n; i++, k += nb) {
        float acc = 0.0f;
        for (int b = 0; b < nb; b++) {
            int32_t sum = 0;
            for (int j = 0; j < QK8_0; j++) sum += (int32_t)kv_q16_get(qp, 32 * b + j) * k[b].qs[j];
            const float sc = kvc_f16_to_f32(k[b].d) * kv_q16_scale(qp, d, b);
            acc = acc + (float)sum * sc;
        }
        out[i] = acc;
    }
}
static void q8_0_accumulate(const struct kv_slot *s, const float *w, const void *vals, int pos0,
                            int n, float *acc) {
    (void)pos0;
    const int nb = s->info.d / QK8_0;
    const block_q8_0 *v = (const block_q8_0 *)vals;
    for (int i = 0; i < n; i++, v += nb) {
        if (w[i] == 0.0f) continue;
        for (int b = 0; b < nb; b++) {
            const float c = w[i] * kvc_f16_to_f32(v[b].d);
            for (int j = 0; j < QK8_0; j++) acc[32 * b + j] += c * (float)v[b].qs[j];
        }
    }
}

/* ---- AVX2 ---- */

/* roundf of 8 floats (half away from zero), exactly: trunc, +-1 when |frac| >= 0.5. */
KVC_TARGET_AVX2 static inline __m256i q8_0_roundf256(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 sgn = _mm256_castsi256_ps(_mm256_set1_epi32(INT32_MIN));
    const __m256 fr = _mm256_andnot_ps(sgn, _mm256_sub_ps(v, t));
    const __m256 up = _mm256_cmp_ps(fr, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, sgn));
    return _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(up, one)));
}

KVC_TARGET_AVX2 static void q8_0_encode_avx2(const struct kv_slot *s, const float *x, int pos0,
                                             int n, void *dst) {
    (void)pos0;
    size_t nb = (size_t)n * (size_t)(s->info.d / QK8_0);
    block_q8_0 *y = (block_q8_0 *)dst;
    for (size_t b = 0; b < nb; b++, x += QK8_0) {
        __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
        __m256 x2 = _mm256_loadu_ps(x + 16), x3 = _mm256_loadu_ps(x + 24);
        const float amax = kv256_absmax32(x0, x1, x2, x3);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = kvc_f32_to_f16(d);
        const __m256 idv = _mm256_set1_ps(id);
        __m256i i0 = q8_0_roundf256(_mm256_mul_ps(x0, idv)), i1 = q8_0_roundf256(_mm256_mul_ps(x1, idv));
        __m256i i2 = q8_0_roundf256(_mm256_mul_ps(x2, idv)), i3 = q8_0_roundf256(_mm256_mul_ps(x3, idv));
        /* |q| <= 127: the saturating packs are exact; they interleave 128-bit lanes, which the
         * final dword permutation undoes */
        __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[b].qs, bytes);
    }
}

/* Block b of up to 8 rows: acc += float(int dot) * (d_key * d_query). */
KVC_TARGET_AVX2 KV_INLINE __m256 q8_0_block256(const uint8_t *rows, size_t rb, int cnt, int b,
                                               const float *qp, int d, __m256i gidx,
                                               __m256i mask, __m256 acc) {
    const int16_t *q = (const int16_t *)qp + 32 * b;
    const __m256i q0 = _mm256_loadu_si256((const __m256i *)q);
    const __m256i q1 = _mm256_loadu_si256((const __m256i *)(q + 16));
    __m256i p[8];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) {
        if (r < cnt) {
            const block_q8_0 *x = (const block_q8_0 *)(rows + (size_t)r * rb) + b;
            __m256i k0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->qs));
            __m256i k1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(x->qs + 16)));
            p[r] = _mm256_add_epi32(_mm256_madd_epi16(k0, q0), _mm256_madd_epi16(k1, q1));
        } else {
            p[r] = _mm256_setzero_si256();
        }
    }
    __m256i sum = kv256_reduce8_epi32(p);
    /* the 8 f16 key scales: 32-bit gathers (scale + 2 qs bytes), low halves packed */
    __m256i g = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(),
                                            (const int *)(rows + (size_t)b * sizeof(block_q8_0)),
                                            gidx, mask, 1);
    g = _mm256_and_si256(g, _mm256_set1_epi32(0xffff));
    __m256 dk = _mm256_cvtph_ps(_mm_packus_epi32(_mm256_castsi256_si128(g),
                                                 _mm256_extracti128_si256(g, 1)));
    __m256 sc = _mm256_mul_ps(dk, _mm256_set1_ps(kv_q16_scale(qp, d, b)));
    return _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(sum), sc));
}

KVC_TARGET_AVX2 static void q8_0_score_avx2(const struct kv_slot *s, const float *qp,
                                            const void *keys, int pos0, int n, float *out) {
    (void)pos0;
    const int d = s->info.d, nb = d / QK8_0;
    const size_t rb = (size_t)nb * sizeof(block_q8_0);
    const __m256i gidx =
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)rb));
    const uint8_t *base = (const uint8_t *)keys;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint8_t *rows = base + (size_t)i * rb;
        __m256 acc = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++)
            acc = q8_0_block256(rows, rb, 8, b, qp, d, gidx, _mm256_set1_epi32(-1), acc);
        _mm256_storeu_ps(out + i, acc);
    }
    if (i < n) {
        const uint8_t *rows = base + (size_t)i * rb;
        const __m256i mask = kv256_mask8(n - i);
        __m256 acc = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++) acc = q8_0_block256(rows, rb, n - i, b, qp, d, gidx, mask, acc);
        _mm256_maskstore_ps(out + i, mask, acc);
    }
}

/* acc[32b..32b+31] += c * block b of row x, in 4 registers. */
#define Q8_0_ROW256(X0, X1, X2, X3, x, c)                                                       \
    do {                                                                                        \
        const __m256 k_ = _mm256_set1_ps(c);                                                    \
        X0 = _mm256_fmadd_ps(k_, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(                      \
                                     _mm_loadl_epi64((const __m128i *)(x)->qs))), X0);          \
        X1 = _mm256_fmadd_ps(k_, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(                      \
                                     _mm_loadl_epi64((const __m128i *)((x)->qs + 8)))), X1);    \
        X2 = _mm256_fmadd_ps(k_, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(                      \
                                     _mm_loadl_epi64((const __m128i *)((x)->qs + 16)))), X2);   \
        X3 = _mm256_fmadd_ps(k_, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(                      \
                                     _mm_loadl_epi64((const __m128i *)((x)->qs + 24)))), X3);   \
    } while (0)

KVC_TARGET_AVX2 static void q8_0_accumulate_avx2(const struct kv_slot *s, const float *w,
                                                 const void *vals, int pos0, int n, float *acc) {
    (void)pos0;
    const int nb = s->info.d / QK8_0;
    const block_q8_0 *v = (const block_q8_0 *)vals;
    for (int b = 0; b < nb; b++) {
        float *o = acc + 32 * b;
        __m256 a0 = _mm256_loadu_ps(o), a1 = _mm256_loadu_ps(o + 8);
        __m256 a2 = _mm256_loadu_ps(o + 16), a3 = _mm256_loadu_ps(o + 24);
        __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
        for (int i = 0; i < n; i += 8) {
            const int cnt = n - i < 8 ? n - i : 8;
            const block_q8_0 *rows = v + (size_t)i * nb + b;
            const float *wi = w + i;
#define Q8_0_A(r) Q8_0_ROW256(a0, a1, a2, a3, rows + (size_t)(r) * nb, wi[r] * _cvtsh_ss(rows[(size_t)(r) * nb].d))
#define Q8_0_B(r) Q8_0_ROW256(c0, c1, c2, c3, rows + (size_t)(r) * nb, wi[r] * _cvtsh_ss(rows[(size_t)(r) * nb].d))
            KV_ROWS_BY_MASK(kv256_nonzero8(wi, cnt), cnt, Q8_0_A, Q8_0_B);
#undef Q8_0_A
#undef Q8_0_B
        }
        _mm256_storeu_ps(o, _mm256_add_ps(a0, c0));
        _mm256_storeu_ps(o + 8, _mm256_add_ps(a1, c1));
        _mm256_storeu_ps(o + 16, _mm256_add_ps(a2, c2));
        _mm256_storeu_ps(o + 24, _mm256_add_ps(a3, c3));
    }
}

/* ---- AVX-512 ---- */

/* roundf (half away from zero) of 16 floats, exactly: trunc, then +-1 when |frac| >= 0.5. */
KVC_TARGET_AVX512 static inline __m512i q8_0_roundf512(__m512 v) {
    __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m512 fr = _mm512_abs_ps(_mm512_sub_ps(v, t));
    __mmask16 up = _mm512_cmp_ps_mask(fr, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    __m512 one = _mm512_or_ps(_mm512_set1_ps(1.0f),
                              _mm512_and_ps(v, _mm512_castsi512_ps(_mm512_set1_epi32(INT32_MIN))));
    return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, one));
}

/* Rows to floats, 16 quants per vector: the same products d * q as q8_0_decode. */
KVC_TARGET_AVX512 static void q8_0_decode_avx512(const struct kv_slot *s, const void *src, int pos0,
                                                 int n, float *y) {
    (void)pos0;
    const size_t nb = (size_t)n * (size_t)(s->info.d / QK8_0);
    const block_q8_0 *x = (const block_q8_0 *)src;
    for (size_t b = 0; b < nb; b++) {
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(x[b].d));
        const __m512i q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)x[b].qs));
        const __m512i q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(x[b].qs + 16)));
        _mm512_storeu_ps(y + b * QK8_0, _mm512_mul_ps(d, _mm512_cvtepi32_ps(q0)));
        _mm512_storeu_ps(y + b * QK8_0 + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(q1)));
    }
}
KVC_TARGET_AVX512 static void q8_0_encode_avx512(const struct kv_slot *s, const float *x,
                                                 int pos0, int n, void *dst) {
    (void)pos0;
    size_t nb = (size_t)n * (size_t)(s->info.d / QK8_0);
    block_q8_0 *y = (block_q8_0 *)dst;
    for (size_t b = 0; b < nb; b++, x += QK8_0) {
        __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = kvc_f32_to_f16(d);
        const __m512 idv = _mm512_set1_ps(id);
        __m512i q0 = q8_0_roundf512(_mm512_mul_ps(x0, idv));
        __m512i q1 = q8_0_roundf512(_mm512_mul_ps(x1, idv));
        _mm_storeu_si128((__m128i *)y[b].qs, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(y[b].qs + 16), _mm512_cvtepi32_epi8(q1));
    }
}

/* Blocks b and b+1 (only b when !two) of up to 16 rows, in one pass: each row's two blocks
 * share a register (lanes 0-7: block b, 8-15: block b+1), reduced together. */
KVC_TARGET_AVX512 KV_INLINE __m512 q8_0_pair512(const uint8_t *rows, size_t rb, int cnt, int b,
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
    __m512i p[16];
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++) {
        if (r < cnt) {
            const block_q8_0 *x = (const block_q8_0 *)(rows + (size_t)r * rb) + b;
            __m128i lo = _mm_loadu_si128((const __m128i *)x->qs);
            __m128i hi = _mm_loadu_si128((const __m128i *)(x->qs + 16));
            __m256i lo8, hi8;
            if (two) {
                lo8 = _mm256_inserti128_si256(_mm256_castsi128_si256(lo),
                                              _mm_loadu_si128((const __m128i *)x[1].qs), 1);
                hi8 = _mm256_inserti128_si256(_mm256_castsi128_si256(hi),
                                              _mm_loadu_si128((const __m128i *)(x[1].qs + 16)), 1);
            } else {
                lo8 = _mm256_zextsi128_si256(lo);
                hi8 = _mm256_zextsi128_si256(hi);
            }
            p[r] = _mm512_add_epi32(_mm512_madd_epi16(_mm512_cvtepi8_epi16(lo8), qlo),
                                    _mm512_madd_epi16(_mm512_cvtepi8_epi16(hi8), qhi));
        } else {
            p[r] = _mm512_setzero_si512();
        }
    }
    __m512i sa, sb;
    kv512_reduce16x2_epi32(p, &sa, &sb);
    const __m512i zero = _mm512_setzero_si512();
    const uint8_t *sp = rows + (size_t)b * sizeof(block_q8_0);
    __m512 da = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_mask_i32gather_epi32(zero, m, gidx, sp, 1)));
    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_cvtepi32_ps(sa),
                                           _mm512_mul_ps(da, _mm512_set1_ps(kv_q16_scale(qp, d, b)))));
    if (two) {
        sp += sizeof(block_q8_0);
        __m512 db = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_mask_i32gather_epi32(zero, m, gidx, sp, 1)));
        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_cvtepi32_ps(sb),
                                               _mm512_mul_ps(db, _mm512_set1_ps(kv_q16_scale(qp, d, b + 1)))));
    }
    return acc;
}

KVC_TARGET_AVX512 static void q8_0_score_avx512(const struct kv_slot *s, const float *qp,
                                                const void *keys, int pos0, int n, float *out) {
    (void)pos0;
    const int d = s->info.d, nb = d / QK8_0;
    const size_t rb = (size_t)nb * sizeof(block_q8_0);
    const __m512i gidx = kv512_row_offsets16(rb);
    const uint8_t *base = (const uint8_t *)keys;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const uint8_t *rows = base + (size_t)i * rb;
        __m512 acc = _mm512_setzero_ps();
        int b = 0;
        for (; b + 2 <= nb; b += 2) acc = q8_0_pair512(rows, rb, 16, b, 1, qp, d, gidx, 0xffff, acc);
        if (b < nb) acc = q8_0_pair512(rows, rb, 16, b, 0, qp, d, gidx, 0xffff, acc);
        _mm512_storeu_ps(out + i, acc);
    }
    if (i < n) {
        const uint8_t *rows = base + (size_t)i * rb;
        const int cnt = n - i;
        const __mmask16 m = kv_mask16(cnt);
        __m512 acc = _mm512_setzero_ps();
        int b = 0;
        for (; b + 2 <= nb; b += 2) acc = q8_0_pair512(rows, rb, cnt, b, 1, qp, d, gidx, m, acc);
        if (b < nb) acc = q8_0_pair512(rows, rb, cnt, b, 0, qp, d, gidx, m, acc);
        _mm512_mask_storeu_ps(out + i, m, acc);
    }
}

/* acc += c * (16 int8 at p) */
#define Q8_0_FMA16(X, c, p)                                                                     \
    X = _mm512_fmadd_ps(c, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(                            \
                               _mm_loadu_si128((const __m128i *)(p)))), X)
/* Row r of the batch into accumulator set X (blocks b, b+1). */
#define Q8_0_ROW512(X0, X1, X2, X3, r)                                                          \
    do {                                                                                        \
        const block_q8_0 *x_ = (const block_q8_0 *)(rows + (size_t)(r) * rb) + b;              \
        const __m512 ka_ = _mm512_set1_ps(ca[r]);                                               \
        Q8_0_FMA16(X0, ka_, x_->qs);                                                            \
        Q8_0_FMA16(X1, ka_, x_->qs + 16);                                                       \
        if (two) {                                                                              \
            const __m512 kb_ = _mm512_set1_ps(cb[r]);                                           \
            Q8_0_FMA16(X2, kb_, x_[1].qs);                                                      \
            Q8_0_FMA16(X3, kb_, x_[1].qs + 16);                                                 \
        }                                                                                       \
    } while (0)

/* Columns of blocks b, b+1 (only b when !two): 4 (2) registers x two row sets; the per-row
 * coefficients w[i] * d_key are computed 16 rows at a time from gathered scales. */
KVC_TARGET_AVX512 KV_INLINE void q8_0_acc_pair512(const uint8_t *base, size_t rb, const float *w,
                                                  int n, int b, int two, __m512i gidx,
                                                  float *o) {
    const __m512 zf = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    __m512 a0 = _mm512_loadu_ps(o), a1 = _mm512_loadu_ps(o + 16);
    __m512 a2 = two ? _mm512_loadu_ps(o + 32) : zf, a3 = two ? _mm512_loadu_ps(o + 48) : zf;
    __m512 c0 = zf, c1 = zf, c2 = zf, c3 = zf;
    float ca[16], cb[16];
    for (int i = 0; i < n; i += 16) {
        const int cnt = n - i < 16 ? n - i : 16;
        const __mmask16 m = kv_mask16(cnt);
        const uint8_t *rows = base + (size_t)i * rb;
        const uint8_t *sp = rows + (size_t)b * sizeof(block_q8_0);
        const __m512 wv = _mm512_maskz_loadu_ps(m, w + i);
        _mm512_storeu_ps(ca, _mm512_mul_ps(wv, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(
                                                   _mm512_mask_i32gather_epi32(zero, m, gidx, sp, 1)))));
        if (two)
            _mm512_storeu_ps(cb, _mm512_mul_ps(wv, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(
                                                       _mm512_mask_i32gather_epi32(
                                                           zero, m, gidx, sp + sizeof(block_q8_0), 1)))));
#define Q8_0_A(r) Q8_0_ROW512(a0, a1, a2, a3, r)
#define Q8_0_B(r) Q8_0_ROW512(c0, c1, c2, c3, r)
        KV_ROWS_BY_MASK(_mm512_mask_cmp_ps_mask(m, wv, zf, _CMP_NEQ_UQ), cnt, Q8_0_A, Q8_0_B);
#undef Q8_0_A
#undef Q8_0_B
    }
    _mm512_storeu_ps(o, _mm512_add_ps(a0, c0));
    _mm512_storeu_ps(o + 16, _mm512_add_ps(a1, c1));
    if (two) {
        _mm512_storeu_ps(o + 32, _mm512_add_ps(a2, c2));
        _mm512_storeu_ps(o + 48, _mm512_add_ps(a3, c3));
    }
}

KVC_TARGET_AVX512 static void q8_0_accumulate_avx512(const struct kv_slot *s, const float *w,
                                                     const void *vals, int pos0, int n,
                                                     float *acc) {
    (void)pos0;
    const int nb = s->info.d / QK8_0;
    const size_t rb = (size_t)nb * sizeof(block_q8_0);
    const __m512i gidx = kv512_row_offsets16(rb);
    int b = 0;
    for (; b + 2 <= nb; b += 2) q8_0_acc_pair512(vals, rb, w, n, b, 1, gidx, acc + 32 * b);
    if (b < nb) q8_0_acc_pair512(vals, rb, w, n, b, 0, gidx, acc + 32 * b);
}

KV512_QBLOCK_GROUPED(0, q8_0)

const struct kv_codec kv_codec_q8_0 = {
    .name = "q8_0",
    .id = KV_CODEC_Q8_0,
    .params = "",
    .about = "GGML Q8_0 blocks: f16 scale + 32 x int8 (8.5 bits per element)",
    .cfg_size = 0,
    .batch_decode = kv_batch_decode_all,
    .parse = NULL,
    .row_bytes = q8_0_row_bytes,
    .check_dim = q8_0_check_dim,
    .state_create = NULL,
    .state_free = NULL,
    .qp_floats = q8_0_qp_floats,
    .acc_floats = q8_0_acc_floats,
    .kern = {
        [KVC_ISA_SCALAR] = {q8_0_encode, q8_0_decode, q8_0_prepare, q8_0_score, q8_0_accumulate,
                            NULL},
        [KVC_ISA_AVX2] = {q8_0_encode_avx2, q8_0_decode, q8_0_prepare, q8_0_score_avx2,
                          q8_0_accumulate_avx2, NULL},
        [KVC_ISA_AVX512] = {q8_0_encode_avx512, q8_0_decode_avx512, q8_0_prepare, q8_0_score_avx512,
                            q8_0_accumulate_avx512, NULL, q8_0_score_g_avx512,
                            q8_0_acc_g_avx512},
    },
};
