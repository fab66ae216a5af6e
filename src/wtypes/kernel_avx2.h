/* kernel_avx2.h - the AVX2 matmul templates of the Q8X types, included by a type's file
 * (the AVX2 level, and the AVX-512 level on CPUs without VNNI). 32 weights (one Q8X
 * activation block) per step: vpmaddubsw of unsigned weight bytes u (< 64) against the
 * signed activation quants, vpmaddwd with 1 or with the sub-block's integer scale, scaled
 * in f32 by the weight and activation block scales. 4 weight rows x up to 2 activation rows.
 *   KVC_LEGACY_AVX2(name, BLOCK, C, MIN, SG): 32-element blocks, BLOCK(row, b, &u, &d, &m)
 *     gives block b's 32 values u in element order and its scale d (offset m) in all 8 lanes;
 *     w = d (u - C) + m. SG = 1: u are signed bytes (the IQ4 tables), multiplied by the sign
 *     trick.
 *   KVC_KQUANT_AVX2(name, PREP, PIECE, SG): super-blocks of 256. PREP(row, c, &st, bl) reads
 *     super-block c's scales into st (struct kq2) and bl[2] = the per-16 offsets b (w = a u
 *     + b, applied through the activation's per-16 sums); PIECE(row, c, k, &st, &sw) gives
 *     elements 32k..32k+31 as u and, in sw, the 16 int16 sub-block scales that multiply the
 *     vpmaddubsw pairs (a = d * scale). */
#ifndef KVC_WTYPES_KERNEL_AVX2_H
#define KVC_WTYPES_KERNEL_AVX2_H

#include "wtype.h"
#include <immintrin.h>
#include <string.h>

#define A2 KVC_TARGET_AVX2
#ifndef INLINE
#define INLINE static inline __attribute__((always_inline))
#endif
#ifndef UNROLL
#define UNROLL _Pragma("GCC unroll 8")
#endif
#define NX2MAX 2
#define WCHUNK2_BYTES (48 * 1024)

/* Per-row super-block state of the K-quant kernels. */
struct kq2 {
    __m256i sc[2]; /* int16 scales, in the layout the type's PIECE shuffles from */
    __m256 d;      /* the super-block scale */
};

/* st and bl from the 16 int16 sub-block scales w and the f16 super-block scale d, for types whose
 * per-16 offset is a fixed multiple of the scale: sc[h] = w's half h in both lanes, bl = w d off
 * (Q3_K: off = -4, Q6_K: -32). */
INLINE A2 void kq2_scales_fixed_off(struct kq2 *st, __m256i w, uint16_t d, float off, __m256 bl[2]) {
    st->sc[0] = _mm256_permute2x128_si256(w, w, 0x00);
    st->sc[1] = _mm256_permute2x128_si256(w, w, 0x11);
    st->d = _mm256_cvtph_ps(_mm_set1_epi16((short)d));
    const __m256 m = _mm256_mul_ps(st->d, _mm256_set1_ps(off));
    bl[0] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(w))), m);
    bl[1] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(w, 1))), m);
}

INLINE A2 __m128 kvc2_reduce4(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}
INLINE A2 float kvc2_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
INLINE A2 void kvc2_store(const int NW, const int NX, __m256 acc[4][NX2MAX], float *y, int64_t ldy) {
    UNROLL for (int j = 0; j < NX; j++) {
        if (NW == 4) _mm_storeu_ps(y + j * ldy, kvc2_reduce4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]));
        else UNROLL for (int r = 0; r < NW; r++) y[j * ldy + r] = kvc2_hsum(acc[r][j]);
    }
}

/* 16 bytes of nibbles as 32 values in element order: [q & 15, q >> 4] (the 16 bytes loaded
 * into both lanes, the high lane shifted by 4 per 64 bits, then masked). */
INLINE A2 __m256i kvc2_nibbles(const uint8_t *q) {
    const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q));
    return _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_set_epi64x(4, 4, 0, 0)), _mm256_set1_epi8(0x0F));
}
/* Bit i of the 32-bit word at p as byte i: 0 or 16 (the fifth bit of Q5_0 / Q5_1). */
INLINE A2 __m256i kvc2_bits16(const uint8_t *p) {
    uint32_t h;
    memcpy(&h, p, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i b = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf), bit);
    return _mm256_and_si256(_mm256_cmpeq_epi8(b, bit), _mm256_set1_epi8(16));
}
/* The f16 pair {d, m} at p (4 bytes) as 8 lanes of d and 8 of m. */
INLINE A2 void kvc2_f16_dm(const void *p, __m256 *d, __m256 *m) {
    if (!m) { /* d only: one 16-bit broadcast, one conversion */
        int16_t h;
        memcpy(&h, p, 2);
        *d = _mm256_cvtph_ps(_mm_set1_epi16(h));
        return;
    }
    int32_t v;
    memcpy(&v, p, 4);
    const __m256 f = _mm256_cvtph_ps(_mm_set1_epi32(v)); /* d m d m ... */
    *d = _mm256_shuffle_ps(f, f, 0x00);
    if (m) *m = _mm256_shuffle_ps(f, f, 0x55);
}

/* Pairwise int16 sums of u x: u unsigned (< 64), or (SG) signed with |u| < 128 by the sign
 * trick |u| (x with u's sign). */
INLINE A2 __m256i kvc2_maddubs(const int SG, __m256i u, __m256i x) {
    return SG ? _mm256_maddubs_epi16(_mm256_sign_epi8(u, u), _mm256_sign_epi8(x, u)) : _mm256_maddubs_epi16(u, x);
}

/* The rows / tile / dot wrappers around NAME##_mk2. */
#define KVC_AVX2_DRIVER(NAME)                                                                         \
    INLINE A2 void NAME##_rows2(const int NX, const char *w, size_t ws, int64_t nrows, const char *x,   \
                                size_t xs, int64_t n, float *y, int64_t ldy) {                        \
        int64_t r = 0;                                                                                \
        for (; r + 4 <= nrows; r += 4) {                                                              \
            if (NX == 1) kvc_prefetch_rows4(w, ws, r, w + nrows * ws);                                \
            NAME##_mk2(4, NX, w + r * ws, ws, x, xs, n, y + r, ldy);                                  \
        }                                                                                             \
        for (; r < nrows; r++) NAME##_mk2(1, NX, w + r * ws, ws, x, xs, n, y + r, ldy);              \
    }                                                                                                 \
    A2 void kvc_tile_##NAME##_avx2(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1) { \
        const struct kvc_weight *w = tl->w;                                                           \
        int64_t chunk = t1 - t0 <= NX2MAX ? r1 - r0 : (int64_t)(WCHUNK2_BYTES / w->row_bytes) & ~(int64_t)3; \
        if (chunk < 4) chunk = 4;                                                                     \
        for (int64_t c0 = r0; c0 < r1; c0 += chunk) {                                                 \
            const int64_t nr = r1 - c0 < chunk ? r1 - c0 : chunk;                                     \
            const char *wr = (const char *)w->data + (size_t)c0 * w->row_bytes;                       \
            for (int tt = t0; tt < t1; tt += NX2MAX) {                                                \
                const char *x = (const char *)tl->x + (size_t)tt * tl->x_stride;                      \
                float *y = tl->y + tt * tl->ldy + c0;                                                 \
                if (t1 - tt == 1) NAME##_rows2(1, wr, w->row_bytes, nr, x, tl->x_stride, w->n_in, y, tl->ldy); \
                else NAME##_rows2(2, wr, w->row_bytes, nr, x, tl->x_stride, w->n_in, y, tl->ldy);     \
            }                                                                                         \
        }                                                                                             \
    }                                                                                                 \
    A2 float kvc_vdot_##NAME##_avx2(int64_t n, const void *w, const void *x) {                        \
        float s;                                                                                      \
        NAME##_mk2(1, 1, w, 0, x, 0, n, &s, 0);                                                       \
        return s;                                                                                     \
    }

#define KVC_LEGACY_AVX2(NAME, BLOCK, C, MIN, SG)                                                          \
    INLINE A2 void NAME##_mk2(const int NW, const int NX, const char *w, size_t ws, const char *x,      \
                              size_t xs, int64_t n, float *y, int64_t ldy) {                          \
        const int64_t np = kvc_q8x_padded(n), nb = n / 32;                                            \
        const __m256i ones16 = _mm256_set1_epi16(1);                                                  \
        __m256 acc[4][NX2MAX];                                                                        \
        UNROLL for (int r = 0; r < NW; r++) UNROLL for (int j = 0; j < NX; j++)                       \
            acc[r][j] = _mm256_setzero_ps();                                                          \
        for (int64_t b = 0; b < nb; b++) {                                                            \
            __m256i u[4];                                                                             \
            __m256 dw[4], mw[4];                                                                      \
            UNROLL for (int r = 0; r < NW; r++) BLOCK(w + r * ws, b, &u[r], &dw[r], &mw[r]);          \
            UNROLL for (int j = 0; j < NX; j++) {                                                     \
                const __m256i xq = _mm256_loadu_si256((const __m256i *)(x + j * xs + 32 * b));         \
                const __m256 xd = _mm256_loadu_ps((const float *)(x + j * xs + np) + 8 * b);           \
                __m256i xk = _mm256_setzero_si256();                                                  \
                __m256 fx = _mm256_setzero_ps();                                                      \
                if (C) xk = _mm256_maddubs_epi16(_mm256_set1_epi8(C), xq);                            \
                if (MIN) fx = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(                     \
                                  _mm256_maddubs_epi16(_mm256_set1_epi8(1), xq), ones16)), xd);       \
                UNROLL for (int r = 0; r < NW; r++) {                                                 \
                    __m256i s16 = kvc2_maddubs(SG, u[r], xq);                                         \
                    if (C) s16 = _mm256_sub_epi16(s16, xk);                                           \
                    const __m256i s = _mm256_madd_epi16(s16, ones16);                                 \
                    acc[r][j] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s), dw[r]), xd, acc[r][j]); \
                    if (MIN) acc[r][j] = _mm256_fmadd_ps(fx, mw[r], acc[r][j]);                       \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
        kvc2_store(NW, NX, acc, y, ldy);                                                              \
    }                                                                                                 \
    KVC_AVX2_DRIVER(NAME)

#define KVC_KQUANT_AVX2(NAME, PREP, PIECE, SG)                                                            \
    INLINE A2 void NAME##_mk2(const int NW, const int NX, const char *w, size_t ws, const char *x,      \
                              size_t xs, int64_t n, float *y, int64_t ldy) {                          \
        const int64_t np = kvc_q8x_padded(n), nc = np / 256;                                          \
        __m256 acc[4][NX2MAX];                                                                        \
        UNROLL for (int r = 0; r < NW; r++) UNROLL for (int j = 0; j < NX; j++)                       \
            acc[r][j] = _mm256_setzero_ps();                                                          \
        for (int64_t c = 0; c < nc; c++) {                                                            \
            struct kq2 st[4];                                                                         \
            UNROLL for (int r = 0; r < NW; r++) {                                                     \
                __m256 bl[2];                                                                         \
                PREP(w + r * ws, c, &st[r], bl);                                                      \
                UNROLL for (int j = 0; j < NX; j++) UNROLL for (int h = 0; h < 2; h++)                \
                    acc[r][j] = _mm256_fmadd_ps(bl[h], _mm256_loadu_ps((const float *)(x + j * xs + 2 * np) + 16 * c + 8 * h), acc[r][j]); \
            }                                                                                         \
            UNROLL for (int k = 0; k < 8; k++) {                                                      \
                __m256i xq[NX2MAX];                                                                   \
                __m256 xd[NX2MAX];                                                                    \
                UNROLL for (int j = 0; j < NX; j++) {                                                 \
                    xq[j] = _mm256_loadu_si256((const __m256i *)(x + j * xs + 256 * c + 32 * k));     \
                    xd[j] = _mm256_loadu_ps((const float *)(x + j * xs + np) + 64 * c + 8 * k);        \
                }                                                                                     \
                UNROLL for (int r = 0; r < NW; r++) {                                                 \
                    __m256i sw;                                                                       \
                    const __m256i u = PIECE(w + r * ws, c, k, &st[r], &sw);                           \
                    UNROLL for (int j = 0; j < NX; j++) {                                             \
                        const __m256i s = _mm256_madd_epi16(kvc2_maddubs(SG, u, xq[j]), sw);          \
                        acc[r][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(st[r].d, xd[j]), acc[r][j]); \
                    }                                                                                 \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
        kvc2_store(NW, NX, acc, y, ldy);                                                              \
    }                                                                                                 \
    KVC_AVX2_DRIVER(NAME)

/* Q4_K / Q5_K: the 12 bytes of 6-bit scales and mins (kquant.h k4_get) as 8 int16 scales
 * in both 128-bit lanes of st->sc[0] (PIECE k takes word k) and the per-16 offsets
 * -dmin * m (sub-block j covers groups 2j, 2j + 1) in bl[2]. */
INLINE A2 void kvc2_k4_prep(const uint8_t *q, uint16_t dh, uint16_t dminh, struct kq2 *st, __m256 bl[2]) {
    uint32_t s0, s1, s2;
    memcpy(&s0, q, 4);
    memcpy(&s1, q + 4, 4);
    memcpy(&s2, q + 8, 4);
    const uint32_t sc_lo = s0 & 0x3f3f3f3fu, m_lo = s1 & 0x3f3f3f3fu;
    const uint32_t sc_hi = (s2 & 0x0f0f0f0fu) | ((s0 >> 6) & 0x03030303u) << 4;
    const uint32_t m_hi = ((s2 >> 4) & 0x0f0f0f0fu) | ((s1 >> 6) & 0x03030303u) << 4;
    const __m128i v = _mm_set_epi32((int)m_hi, (int)m_lo, (int)sc_hi, (int)sc_lo);
    st->sc[0] = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(v));
    const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)dh | (uint32_t)dminh << 16)));
    st->d = _mm256_broadcastss_ps(dd);
    const __m256 nm = _mm256_set1_ps(-_mm_cvtss_f32(_mm_shuffle_ps(dd, dd, 1)));
    const __m128i m2 = _mm_unpackhi_epi8(v, v); /* each min twice */
    bl[0] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(m2)), nm);
    bl[1] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(m2, 8))), nm);
}
/* Word k of both lanes of src in all 16 words. */
INLINE A2 __m256i kvc2_word_bcast(__m256i src, int k) {
    return _mm256_shuffle_epi8(src, _mm256_set1_epi16((short)(2 * k | (2 * k + 1) << 8)));
}

#endif
