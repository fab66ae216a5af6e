/* simd_avx512.h - static inline AVX-512 helpers shared by kernels_avx512.c and
 * kernels_avx512_vnni.c: horizontal sums, micro-kernel result stores, and loaders that put
 * two consecutive Q8_0 / Q4_0 blocks (and their f16 scales) into one 512-bit register. */
#ifndef KVC_SIMD_AVX512_H
#define KVC_SIMD_AVX512_H

#include "kernels_internal.h"
#include <immintrin.h>

#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 8")
#define KVC_TARGET_AVX512VNNI \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni")))
#define NXMAX 4 /* activation rows per micro-kernel call */
/* Weight-row chunk (bytes) that stays in L1/L2 while every activation row passes over it. */
#define WCHUNK_BYTES (48 * 1024)
/* Repack (Q8_0/Q4_0) or convert (F16/BF16) a chunk of weight rows once it is reused by at
 * least this many activation rows; fewer rows read the GGUF rows directly. */
#ifndef WPACK_MIN_T
#define WPACK_MIN_T 16
#endif

/* {sum(a), sum(b), sum(c), sum(d)} */
INLINE KVC_TARGET_AVX512 __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m256 a2 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m256 b2 = _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1));
    __m256 c2 = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
    __m256 d2 = _mm256_add_ps(_mm512_castps512_ps256(d), _mm512_extractf32x8_ps(d, 1));
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a2, b2), _mm256_hadd_ps(c2, d2));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

/* Sum of a pair of vectors' halves: [a.lo256 + a.hi256, b.lo256 + b.hi256]. */
INLINE KVC_TARGET_AVX512 __m512 fold256(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
}
/* Sum of 128-bit lanes: [a.q0 + a.q1, a.q2 + a.q3, b.q0 + b.q1, b.q2 + b.q3]. */
INLINE KVC_TARGET_AVX512 __m512 fold128(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD));
}

/* The 16 sums of a 4 x 4 micro-kernel in one transposing reduction (45 operations instead
 * of ~76 for four reduce4): lane j of the result is {sum(acc[0][j]), ..., sum(acc[3][j])}.
 * With v[4r + j] = acc[r][j], each level halves the partial sums per vector. */
INLINE KVC_TARGET_AVX512 void store_acc_4x4(__m512 acc[4][NXMAX], float *y, int64_t ldy) {
    __m512 u[8], w[4];
    UNROLL for (int k = 0; k < 8; k++) /* u[k]: 256-bit halves hold v[2k], v[2k+1] */
        u[k] = fold256(acc[(2 * k) / 4][(2 * k) % 4], acc[(2 * k + 1) / 4][(2 * k + 1) % 4]);
    UNROLL for (int m = 0; m < 4; m++) /* w[m]: 128-bit lane q holds v[4m + q] */
        w[m] = fold128(u[2 * m], u[2 * m + 1]);
    __m512 z0 = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(w[0]), _mm512_castps_pd(w[1]))),
                              _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(w[0]), _mm512_castps_pd(w[1]))));
    __m512 z1 = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(w[2]), _mm512_castps_pd(w[3]))),
                              _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(w[2]), _mm512_castps_pd(w[3]))));
    __m512 s = _mm512_add_ps(_mm512_shuffle_ps(z0, z1, 0x88), _mm512_shuffle_ps(z0, z1, 0xDD));
    _mm_storeu_ps(y, _mm512_castps512_ps128(s));
    _mm_storeu_ps(y + ldy, _mm512_extractf32x4_ps(s, 1));
    _mm_storeu_ps(y + 2 * ldy, _mm512_extractf32x4_ps(s, 2));
    _mm_storeu_ps(y + 3 * ldy, _mm512_extractf32x4_ps(s, 3));
}

/* 16 x 16 floats: rows r[0..15] become columns. Per 128-bit lane: 4 x 4 transposes of the
 * rows 4i..4i+3 (unpack, then shuffle), then a 4 x 4 transpose of the lanes. */
INLINE KVC_TARGET_AVX512 void kvc_transpose16_ps(__m512 r[16]) {
    __m512 a[16], b[16];
    for (int i = 0; i < 8; i++) {
        a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) { /* b[4i + c], lane L: rows 4i..4i+3 at column 4L + c */
        b[4 * i + 0] = _mm512_shuffle_ps(a[4 * i], a[4 * i + 2], 0x44);
        b[4 * i + 1] = _mm512_shuffle_ps(a[4 * i], a[4 * i + 2], 0xEE);
        b[4 * i + 2] = _mm512_shuffle_ps(a[4 * i + 1], a[4 * i + 3], 0x44);
        b[4 * i + 3] = _mm512_shuffle_ps(a[4 * i + 1], a[4 * i + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) { /* column 4L + c: lane L of b[c], b[4 + c], b[8 + c], b[12 + c] */
        const __m512 u0 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0x44), u1 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0xEE);
        const __m512 u2 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0x44);
        const __m512 u3 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0xEE);
        r[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
        r[8 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
    }
}

/* The prefill panels' step over activation rows (kernels_avx512_vnni.c, wtypes/generic_avx512.c):
 * MK(NX) for the largest NX of 8, 4, 2, 1 that the nx remaining rows fill, then t += NX. */
#define KVC_PANEL_STEP(nx, t, MK)                                  \
    switch (nx) {                                                  \
    case 8: MK(8); (t) += 8; break;                                \
    case 7: case 6: case 5: case 4: MK(4); (t) += 4; break;        \
    case 3: case 2: MK(2); (t) += 2; break;                        \
    default: MK(1); (t) += 1; break;                               \
    }

/* Store micro-kernel accumulators: y[j * ldy + r] = sum(acc[r][j]). */
INLINE KVC_TARGET_AVX512 void store_acc(const int NW, const int NX, __m512 acc[4][NXMAX],
                                        float *y, int64_t ldy) {
    if (NW == 4 && NX == 4) {
        store_acc_4x4(acc, y, ldy);
        return;
    }
    UNROLL for (int j = 0; j < NX; j++) {
        if (NW == 4)
            _mm_storeu_ps(y + j * ldy, reduce4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]));
        else
            UNROLL for (int r = 0; r < NW; r++) y[j * ldy + r] = _mm512_reduce_add_ps(acc[r][j]);
    }
}

/* Two consecutive Q8_0 blocks' quants (two = 0: one block, upper half zero). */
INLINE KVC_TARGET_AVX512 __m512i q8_pair(const block_q8_0 *p, const int two) {
    __m256i lo = _mm256_loadu_si256((const __m256i *)p[0].qs);
    if (!two) return _mm512_inserti64x4(_mm512_setzero_si512(), lo, 0);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo),
                              _mm256_loadu_si256((const __m256i *)p[1].qs), 1);
}

/* Two consecutive Q4_0 blocks as 64 unsigned nibbles 0..15 in element order:
 * [b0 qs&15, b0 qs>>4, b1 qs&15, b1 qs>>4] (16 bytes each; b1 zero when two = 0). */
INLINE KVC_TARGET_AVX512 __m512i q4_pair(const block_q4_0 *p, const int two) {
    __m128i a = _mm_loadu_si128((const __m128i *)p[0].qs);
    __m128i b = two ? _mm_loadu_si128((const __m128i *)p[1].qs) : _mm_setzero_si128();
    __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1);
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
    z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
}

/* Block scales as lanes: [d0 x 8, d1 x 8] (0 for d1 when two = 0). */
INLINE KVC_TARGET_AVX512 __m512 scale2(uint16_t d0, uint16_t d1, const int two) {
    const uint32_t both = (uint32_t)d0 | (two ? (uint32_t)d1 << 16 : 0u);
    const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)both));
    const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f));
}

/* kernels_avx512_vnni.c: the VNNI tile for Q8_0/Q4_0 weights; 0 when n_in is too long for
 * its packing buffers (the caller then uses the unpacked kernels). */
int kvc_gemm_tile_q_avx512vnni(const struct kvc_tile *tl, int t0, int t1, int64_t r0,
                               int64_t r1);

#endif
