/* kernels_avx2.c - AVX2 + FMA + F16C kernels: f32/f16/bf16 dot products, Q8_0 x Q8_0 and
 * Q4_0 x Q8_0 integer dot products (vpmaddubsw + vpmaddwd per 32-element block), bit-exact
 * Q8_0 activation quantization, f32 dot/axpy and register-blocked micro-kernels (4 weight
 * rows x up to 3 activation rows) for the matmul tile. */
#include "kernels_internal.h"
#include "../util.h"
#include <immintrin.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 8")
#define NXF 3 /* activation rows per float micro-kernel call */
#define NXQ 2 /* activation rows per quantized micro-kernel call */
#define NXMAX 3

/* ---- helpers ---- */

INLINE KVC_TARGET_AVX2 float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* {sum(a), sum(b), sum(c), sum(d)} */
INLINE KVC_TARGET_AVX2 __m128 reduce4(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

/* y[j * ldy + r] = sum(acc[r][j]) */
INLINE KVC_TARGET_AVX2 void store_acc(const int NW, const int NX, __m256 acc[4][NXMAX],
                                      float *y, int64_t ldy) {
    UNROLL for (int j = 0; j < NX; j++) {
        if (NW == 4)
            _mm_storeu_ps(y + j * ldy, reduce4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]));
        else
            UNROLL for (int r = 0; r < NW; r++) y[j * ldy + r] = hsum(acc[r][j]);
    }
}

/* 8 weights of a float-type row from element i on. */
INLINE KVC_TARGET_AVX2 __m256 load_w(const uint32_t type, const void *row, int64_t i) {
    if (type == KVC_TYPE_F32) return _mm256_loadu_ps((const float *)row + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + i));
    if (type == KVC_TYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* ---- float-weight micro-kernel: NW weight rows x NX activation rows ---- */

INLINE KVC_TARGET_AVX2 void mk_float(const uint32_t type, const int NW, const int NX,
                                     const char *w, size_t ws, const float *x, int64_t xs,
                                     int64_t n, float *y, int64_t ldy) {
    const size_t esz = type == KVC_TYPE_F32 ? 4 : 2;
    __m256 acc[4][NXMAX];
    UNROLL for (int r = 0; r < NW; r++) UNROLL for (int j = 0; j < NX; j++)
        acc[r][j] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv[NXMAX];
        UNROLL for (int j = 0; j < NX; j++) xv[j] = _mm256_loadu_ps(x + j * xs + i);
        UNROLL for (int r = 0; r < NW; r++) {
            __m256 wv = load_w(type, w + r * ws, i);
            UNROLL for (int j = 0; j < NX; j++) acc[r][j] = _mm256_fmadd_ps(wv, xv[j], acc[r][j]);
        }
    }
    if (i < n) { /* tail: copy into zero-padded buffers */
        const int64_t m = n - i;
        __m256 xv[NXMAX];
        UNROLL for (int j = 0; j < NX; j++) {
            float xb[8] = {0};
            memcpy(xb, x + j * xs + i, (size_t)m * sizeof(float));
            xv[j] = _mm256_loadu_ps(xb);
        }
        UNROLL for (int r = 0; r < NW; r++) {
            float wb[8] = {0}; /* 32 bytes: room for 8 elements of any float type */
            memcpy(wb, w + r * ws + (size_t)i * esz, (size_t)m * esz);
            __m256 wv = load_w(type, wb, 0);
            UNROLL for (int j = 0; j < NX; j++) acc[r][j] = _mm256_fmadd_ps(wv, xv[j], acc[r][j]);
        }
    }
    store_acc(NW, NX, acc, y, ldy);
}

/* ---- quantized micro-kernels (one 32-element block per step) ---- */

/* NW Q8_0 weight rows x NX Q8_0 activation rows: |w| * (x with w's sign) with vpmaddubsw.
 * Weight rows are the outer loop of a block so only one row's registers are live (16 ymm). */
INLINE KVC_TARGET_AVX2 void mk_q8(const int NW, const int NX, const char *w, size_t ws,
                                  const char *x, size_t xs, int64_t nb, float *y, int64_t ldy) {
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256 acc[4][NXMAX];
    UNROLL for (int r = 0; r < NW; r++) UNROLL for (int j = 0; j < NX; j++)
        acc[r][j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i xq[NXMAX];
        __m256 dx[NXMAX];
        UNROLL for (int j = 0; j < NX; j++) {
            const block_q8_0 *p = (const block_q8_0 *)(x + j * xs) + b;
            xq[j] = _mm256_loadu_si256((const __m256i *)p->qs);
            dx[j] = _mm256_set1_ps(_cvtsh_ss(p->d));
        }
        UNROLL for (int r = 0; r < NW; r++) {
            const block_q8_0 *p = (const block_q8_0 *)(w + r * ws) + b;
            const __m256i wq = _mm256_loadu_si256((const __m256i *)p->qs);
            const __m256i wa = _mm256_abs_epi8(wq);
            const __m256 dw = _mm256_set1_ps(_cvtsh_ss(p->d));
            UNROLL for (int j = 0; j < NX; j++) {
                __m256i sx = _mm256_sign_epi8(xq[j], wq);
                __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(wa, sx), ones16);
                acc[r][j] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s), dw), dx[j], acc[r][j]);
            }
        }
    }
    store_acc(NW, NX, acc, y, ldy);
}

/* NW Q4_0 weight rows x NX Q8_0 rows: sum (q - 8) x = sum q x - 8 sum x, in int16 pairs. */
INLINE KVC_TARGET_AVX2 void mk_q4(const int NW, const int NX, const char *w, size_t ws,
                                  const char *x, size_t xs, int64_t nb, float *y, int64_t ldy) {
    const __m256i ones16 = _mm256_set1_epi16(1), eights = _mm256_set1_epi8(8);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[4][NXMAX];
    UNROLL for (int r = 0; r < NW; r++) UNROLL for (int j = 0; j < NX; j++)
        acc[r][j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i xq[NXMAX], x8[NXMAX];
        __m256 dx[NXMAX];
        UNROLL for (int j = 0; j < NX; j++) {
            const block_q8_0 *p = (const block_q8_0 *)(x + j * xs) + b;
            xq[j] = _mm256_loadu_si256((const __m256i *)p->qs);
            x8[j] = _mm256_maddubs_epi16(eights, xq[j]);
            dx[j] = _mm256_set1_ps(_cvtsh_ss(p->d));
        }
        UNROLL for (int r = 0; r < NW; r++) {
            const block_q4_0 *p = (const block_q4_0 *)(w + r * ws) + b;
            const __m128i q = _mm_loadu_si128((const __m128i *)p->qs);
            const __m256i wq = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
            const __m256 dw = _mm256_set1_ps(_cvtsh_ss(p->d));
            UNROLL for (int j = 0; j < NX; j++) {
                __m256i s16 = _mm256_sub_epi16(_mm256_maddubs_epi16(wq, xq[j]), x8[j]);
                __m256i s = _mm256_madd_epi16(s16, ones16);
                acc[r][j] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s), dw), dx[j], acc[r][j]);
            }
        }
    }
    store_acc(NW, NX, acc, y, ldy);
}

/* ---- tiles ---- */

/* Rows [r0, r1) of W against NX activation rows starting at t; type is a constant. */
INLINE KVC_TARGET_AVX2 void rows_any(const uint32_t type, const int NX, const struct kvc_tile *tl,
                                     int t, int64_t r0, int64_t r1) {
    const struct kvc_weight *w = tl->w;
    const char *x = (const char *)tl->x + (size_t)t * tl->x_stride;
    const int64_t xs = (int64_t)(tl->x_stride / sizeof(float));
    float *y = tl->y + t * tl->ldy;
    const char *wd = w->data;
    const size_t rb = w->row_bytes;
    const int64_t nb = w->n_in / 32;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        if (NX == 1) kvc_prefetch_rows4(wd, rb, r, wd + r1 * rb);
        if (type == KVC_TYPE_Q8_0) mk_q8(4, NX, wd + r * rb, rb, x, tl->x_stride, nb, y + r, tl->ldy);
        else if (type == KVC_TYPE_Q4_0) mk_q4(4, NX, wd + r * rb, rb, x, tl->x_stride, nb, y + r, tl->ldy);
        else mk_float(type, 4, NX, wd + r * rb, rb, (const float *)x, xs, w->n_in, y + r, tl->ldy);
    }
    for (; r < r1; r++) {
        if (type == KVC_TYPE_Q8_0) mk_q8(1, NX, wd + r * rb, rb, x, tl->x_stride, nb, y + r, tl->ldy);
        else if (type == KVC_TYPE_Q4_0) mk_q4(1, NX, wd + r * rb, rb, x, tl->x_stride, nb, y + r, tl->ldy);
        else mk_float(type, 1, NX, wd + r * rb, rb, (const float *)x, xs, w->n_in, y + r, tl->ldy);
    }
}

INLINE KVC_TARGET_AVX2 void tile_any(const uint32_t type, const struct kvc_tile *tl, int t0,
                                     int t1, int64_t r0, int64_t r1) {
    const int nx = (type == KVC_TYPE_Q8_0 || type == KVC_TYPE_Q4_0) ? NXQ : NXF;
    int t = t0;
    for (; t + nx <= t1; t += nx) {
        if (nx == 3) rows_any(type, 3, tl, t, r0, r1);
        else rows_any(type, 2, tl, t, r0, r1);
    }
    switch (t1 - t) {
    case 2: rows_any(type, 2, tl, t, r0, r1); break;
    case 1: rows_any(type, 1, tl, t, r0, r1); break;
    default: break;
    }
}

/* Weight-row chunk (bytes) that stays in L1/L2 while every activation row passes over it. */
#define WCHUNK_BYTES (48 * 1024)

/* A tile for one type (a constant after inlining), blocked over weight rows. */
INLINE KVC_TARGET_AVX2 void tile_chunked(const uint32_t type, const struct kvc_tile *tl, int t0,
                                         int t1, int64_t r0, int64_t r1) {
    int64_t chunk = t1 - t0 == 1 ? r1 - r0 : (int64_t)(WCHUNK_BYTES / tl->w->row_bytes) & ~(int64_t)3;
    if (chunk < 4) chunk = 4;
    for (int64_t c0 = r0; c0 < r1; c0 += chunk)
        tile_any(type, tl, t0, t1, c0, r1 - c0 < chunk ? r1 : c0 + chunk);
}

/* ---- public per-type entry points ---- */
#define AVX2_TYPE(t, TYPE)                                                                         \
    KVC_TARGET_AVX2 void kvc_tile_##t##_avx2(const struct kvc_tile *tl, int t0, int t1, int64_t r0, \
                                             int64_t r1) {                                         \
        tile_chunked(TYPE, tl, t0, t1, r0, r1);                                                    \
    }
AVX2_TYPE(f32, KVC_TYPE_F32)
AVX2_TYPE(f16, KVC_TYPE_F16)
AVX2_TYPE(bf16, KVC_TYPE_BF16)
AVX2_TYPE(q8_0, KVC_TYPE_Q8_0)
AVX2_TYPE(q4_0, KVC_TYPE_Q4_0)

KVC_TARGET_AVX2 float kvc_vdot_f32_avx2(int64_t n, const void *w, const void *x) {
    float s;
    mk_float(KVC_TYPE_F32, 1, 1, w, 0, x, 0, n, &s, 0);
    return s;
}
KVC_TARGET_AVX2 float kvc_vdot_f16_avx2(int64_t n, const void *w, const void *x) {
    float s;
    mk_float(KVC_TYPE_F16, 1, 1, w, 0, x, 0, n, &s, 0);
    return s;
}
KVC_TARGET_AVX2 float kvc_vdot_bf16_avx2(int64_t n, const void *w, const void *x) {
    float s;
    mk_float(KVC_TYPE_BF16, 1, 1, w, 0, x, 0, n, &s, 0);
    return s;
}
KVC_TARGET_AVX2 float kvc_vdot_q8_0_avx2(int64_t n, const void *w, const void *x) {
    float s;
    mk_q8(1, 1, w, 0, x, 0, n / 32, &s, 0);
    return s;
}
KVC_TARGET_AVX2 float kvc_vdot_q4_0_avx2(int64_t n, const void *w, const void *x) {
    float s;
    mk_q4(1, 1, w, 0, x, 0, n / 32, &s, 0);
    return s;
}

/* Q8_0 quantization, bit-identical to the scalar version (see kernels_avx512.c): exact
 * round-half-away-from-zero of the opaque product p = x * id via trunc and |p - trunc(p)|. */
KVC_TARGET_AVX2 void kvc_quantize_row_q8_0_avx2(const float *x, block_q8_0 *y, int64_t n) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 signmask = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u));
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < n / QK8_0; b++, x += QK8_0) {
        __m256 v[4];
        __m256 am = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            am = _mm256_max_ps(am, _mm256_and_ps(v[k], absmask));
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(am), _mm256_extractf128_ps(am, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float amax = _mm_cvtss_f32(m);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = kvc_f32_to_f16(d);
        __m256i q[4];
        for (int k = 0; k < 4; k++) {
            __m256 p = _mm256_mul_ps(v[k], _mm256_set1_ps(id));
            __asm__("" : "+x"(p)); /* no contraction of the product into later ops */
            __m256 t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m256 f = _mm256_and_ps(_mm256_sub_ps(p, t), absmask);
            __m256 up = _mm256_cmp_ps(f, half, _CMP_GE_OQ);
            __m256 sgn = _mm256_or_ps(_mm256_and_ps(p, signmask), one);
            t = _mm256_add_ps(t, _mm256_and_ps(up, sgn));
            q[k] = _mm256_cvttps_epi32(t);
        }
        /* pack 32 int32 to int8: the packs interleave 128-bit lanes, the permute undoes it */
        __m256i q16a = _mm256_packs_epi32(q[0], q[1]), q16b = _mm256_packs_epi32(q[2], q[3]);
        __m256i q8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(q16a, q16b), perm);
        _mm256_storeu_si256((__m256i *)y[b].qs, q8);
    }
}

KVC_TARGET_AVX2 float kvc_dot_f32_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

KVC_TARGET_AVX2 void kvc_axpy_f32_avx2(float a, const float *x, float *y, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}
