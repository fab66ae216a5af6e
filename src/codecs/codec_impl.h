/* codec_impl.h - internals shared by the codec files in src/codecs/ (not a public header):
 * the int16 prepared-query format of the block-quantized codecs (q8_0, q4_0, q4_0h), the
 * Walsh-Hadamard rotation of q4_0h, the transposing reductions that let the AVX2 / AVX-512
 * score kernels turn 8 or 16 per-row partial-sum vectors into 8 or 16 dot products with a
 * few shuffles per row, the zero-weight row walk of accumulate, and the SIMD kernels of the
 * float-row codecs (f32, f16, bf16). */
#ifndef KVC_CODEC_IMPL_H
#define KVC_CODEC_IMPL_H

#include "../kv/codec.h"
#include "../types.h"
#include "../util.h"
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* Encoders must give the same bytes at every ISA level: no fused multiply-adds in scalar
 * code (GCC in -std=c11 mode never contracts; clang would within one expression). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* ---- prepared query of q8_0 / q4_0 / q4_0h ----
 * The f32 query is quantized per 32-element block to int16 (15 bits + sign), so that scores
 * against int8 / 4-bit keys are exact integer dot products (vpmaddwd) scaled once per block:
 *   int16_t q16[d]      at float offset 0          (d/2 floats of storage)
 *   float   scale[d/32] at float offset d/2        q[j] ~= scale[b] * q16[j], scale = amax/32767
 *   int32_t bias[d/32]  at float offset d/2 + d/32 8 * sum of the block's q16 (q4_0's offset 8)
 * Relative error of a query element: <= 2^-16 of its block's max |q|. The scalar kernels use
 * the same prepared query, so every ISA level computes the same integer sums. */
static inline int kv_q16_floats(int d) { return d / 2 + 2 * (d / 32); }
void kv_q16_prepare(const float *q, int d, float *qp); /* defined in q8_0.c */
/* Tests: 0 keeps pca's grouped score on its float path instead of the int16-query VNNI one,
 * 1 (default) uses VNNI where the CPU has it (pca_avx512.c). */
void kv_pca_allow_vnni(int allow);

static inline int16_t kv_q16_get(const float *qp, int j) {
    int16_t v;
    memcpy(&v, (const char *)qp + 2 * (size_t)j, 2);
    return v;
}
static inline float kv_q16_scale(const float *qp, int d, int b) {
    float f;
    memcpy(&f, qp + d / 2 + b, 4);
    return f;
}
static inline int32_t kv_q16_bias(const float *qp, int d, int b) {
    int32_t v;
    memcpy(&v, qp + d / 2 + d / 32 + b, 4);
    return v;
}

/* Scalar GGML block quantizers (defined in q8_0.c / q4_0.c; q4_0h reuses q4_0's). */
void kv_quantize_block_q8_0(const float *x, block_q8_0 *y);
void kv_quantize_block_q4_0(const float *x, block_q4_0 *y);

/* ---- q4_0h rotation (defined in q4_0h.c) ---- */
/* In-place unnormalised Walsh-Hadamard transform, Sylvester order: x <- H x with
 * H[i][j] = (-1)^popcount(i & j); d a power of two. */
void kv_fwht(float *x, int d);
/* y = H diag(sign) x / sqrt(d) and its inverse x = diag(sign) H y / sqrt(d), with the slot's
 * random sign vector. x and y may alias. */
void kv_q4_0h_rotate(const struct kv_slot *s, const float *x, float *y);
void kv_q4_0h_unrotate(const struct kv_slot *s, const float *y, float *x);

/* ---- AVX-512 transposing reductions ---- */

/* For 4 vectors a, b, c, d: within each 128-bit lane L, returns [sum a_L, sum b_L, sum c_L,
 * sum d_L] (the four elements of that lane of each input added up). */
KVC_TARGET_AVX512 static inline __m512 kv512_t4_ps(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    __m512d abd = _mm512_castps_pd(ab), cdd = _mm512_castps_pd(cd);
    return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(abd, cdd)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(abd, cdd)));
}
KVC_TARGET_AVX512 static inline __m512i kv512_t4_epi32(__m512i a, __m512i b, __m512i c,
                                                       __m512i d) {
    __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
}

/* v[0..15]: one vector per row whose lower 8 lanes hold partial sums of one quantity (A)
 * and upper 8 lanes of another (B). Returns in *a lane r = sum of v[r]'s lower 8 lanes and
 * in *b lane r = sum of its upper 8 lanes. 44 instructions for 16 rows. */
KVC_TARGET_AVX512 static inline void kv512_reduce16x2_ps(const __m512 *v, __m512 *a, __m512 *b) {
    __m512 g0 = kv512_t4_ps(v[0], v[1], v[2], v[3]);
    __m512 g1 = kv512_t4_ps(v[4], v[5], v[6], v[7]);
    __m512 g2 = kv512_t4_ps(v[8], v[9], v[10], v[11]);
    __m512 g3 = kv512_t4_ps(v[12], v[13], v[14], v[15]);
    /* lanes of g_i: [L0, L1, L2, L3] of rows 4i..4i+3; A = L0 + L1, B = L2 + L3 */
    __m512 u01 = _mm512_add_ps(_mm512_shuffle_f32x4(g0, g1, _MM_SHUFFLE(2, 0, 2, 0)),
                               _mm512_shuffle_f32x4(g0, g1, _MM_SHUFFLE(3, 1, 3, 1)));
    __m512 u23 = _mm512_add_ps(_mm512_shuffle_f32x4(g2, g3, _MM_SHUFFLE(2, 0, 2, 0)),
                               _mm512_shuffle_f32x4(g2, g3, _MM_SHUFFLE(3, 1, 3, 1)));
    /* u01 = [g0 A, g0 B, g1 A, g1 B], u23 likewise */
    *a = _mm512_shuffle_f32x4(u01, u23, _MM_SHUFFLE(2, 0, 2, 0));
    *b = _mm512_shuffle_f32x4(u01, u23, _MM_SHUFFLE(3, 1, 3, 1));
}
KVC_TARGET_AVX512 static inline void kv512_reduce16x2_epi32(const __m512i *v, __m512i *a,
                                                            __m512i *b) {
    __m512i g0 = kv512_t4_epi32(v[0], v[1], v[2], v[3]);
    __m512i g1 = kv512_t4_epi32(v[4], v[5], v[6], v[7]);
    __m512i g2 = kv512_t4_epi32(v[8], v[9], v[10], v[11]);
    __m512i g3 = kv512_t4_epi32(v[12], v[13], v[14], v[15]);
    __m512i u01 = _mm512_add_epi32(_mm512_shuffle_i32x4(g0, g1, _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_i32x4(g0, g1, _MM_SHUFFLE(3, 1, 3, 1)));
    __m512i u23 = _mm512_add_epi32(_mm512_shuffle_i32x4(g2, g3, _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_i32x4(g2, g3, _MM_SHUFFLE(3, 1, 3, 1)));
    *a = _mm512_shuffle_i32x4(u01, u23, _MM_SHUFFLE(2, 0, 2, 0));
    *b = _mm512_shuffle_i32x4(u01, u23, _MM_SHUFFLE(3, 1, 3, 1));
}
/* Lane r = sum of all 16 lanes of v[r]. */
KVC_TARGET_AVX512 static inline __m512 kv512_reduce16_ps(const __m512 *v) {
    __m512 a, b;
    kv512_reduce16x2_ps(v, &a, &b);
    return _mm512_add_ps(a, b);
}

/* Byte offsets of 16 consecutive rows stride bytes apart, for gathers (lane r: r * stride). */
KVC_TARGET_AVX512 static inline __m512i kv512_row_offsets16(size_t stride) {
    return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                              _mm512_set1_epi32((int)stride));
}

/* Software prefetch of the 16 rows of rb bytes that start `ahead` rows after rows (one per
 * 64-byte line): the row kernels call it once per 16 rows, so that the lines of a block of
 * positions arrive spread over the block (a burst of prefetches for a whole block at once is
 * partly dropped). Prefetches past the cache's last row do not fault. Always inlined: GCC finds a
 * function of prefetches alone "pure" and deletes calls to it that are not inlined early (the
 * int8 hdc score kernel had lost its prefetches that way). */
static inline __attribute__((always_inline)) void kv_prefetch_rows16(const void *rows, size_t rb, int ahead) {
    const char *p = (const char *)rows + (size_t)ahead * rb;
    for (size_t o = 0; o < 16 * rb; o += 64) __builtin_prefetch(p + o, 0, 3);
}
/* The same into L2 (prefetcht1): the float rows (f16: 32 lines per 16 rows) stream faster so
 * than into L1 (bench_attn 32768 5 2 16 on an Intel Xeon: f16 attention 60.0 -> 55.1 ms per
 * token; the int8 hdc and q4_0 kernels were 5 % slower with it and keep kv_prefetch_rows16). */
static inline __attribute__((always_inline)) void kv_prefetch_rows16_l2(const void *rows, size_t rb, int ahead) {
    const char *p = (const char *)rows + (size_t)ahead * rb;
    for (size_t o = 0; o < 16 * rb; o += 64) __builtin_prefetch(p + o, 0, 2);
}

/* Mask of the first n (0..16) lanes. */
static inline __mmask16 kv_mask16(int n) {
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}

/* ---- accumulate: rows with w == 0 are never read (sparse codecs rely on it) ---- */

/* Bit r set when w[r] != 0 (NaN counts as nonzero), for r < cnt <= 16. */
KVC_TARGET_AVX512 static inline uint32_t kv512_nonzero16(const float *w, int cnt) {
    const __mmask16 m = kv_mask16(cnt);
    return _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, w), _mm512_setzero_ps(),
                                   _CMP_NEQ_UQ);
}

/* Runs ROW_A(r) and ROW_B(r) (two accumulator sets, alternating, to hide FMA latency) for
 * every row r < cnt whose bit is set in nz. A batch without zero weights takes a branch-free
 * path; otherwise the set bits are walked. */
#define KV_ROWS_BY_MASK(nz, cnt, ROW_A, ROW_B)                                                 \
    do {                                                                                       \
        uint32_t nz_ = (nz);                                                                   \
        const int cnt_ = (cnt);                                                                \
        if (nz_ == (uint32_t)((1ull << cnt_) - 1u)) {                                          \
            int r_ = 0;                                                                        \
            for (; r_ + 2 <= cnt_; r_ += 2) {                                                  \
                ROW_A(r_);                                                                     \
                ROW_B(r_ + 1);                                                                 \
            }                                                                                  \
            if (r_ < cnt_) ROW_A(r_);                                                          \
        } else {                                                                               \
            while (nz_) {                                                                      \
                int r_ = __builtin_ctz(nz_);                                                   \
                nz_ &= nz_ - 1;                                                                \
                ROW_A(r_);                                                                     \
                if (!nz_) break;                                                               \
                r_ = __builtin_ctz(nz_);                                                       \
                nz_ &= nz_ - 1;                                                                \
                ROW_B(r_);                                                                     \
            }                                                                                  \
        }                                                                                      \
    } while (0)

/* ---- AVX2 transposing reductions ---- */

KVC_TARGET_AVX2 static inline __m256 kv256_t4_ps(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 ab = _mm256_add_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
    __m256 cd = _mm256_add_ps(_mm256_unpacklo_ps(c, d), _mm256_unpackhi_ps(c, d));
    __m256d abd = _mm256_castps_pd(ab), cdd = _mm256_castps_pd(cd);
    return _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(abd, cdd)),
                         _mm256_castpd_ps(_mm256_unpackhi_pd(abd, cdd)));
}
KVC_TARGET_AVX2 static inline __m256i kv256_t4_epi32(__m256i a, __m256i b, __m256i c,
                                                     __m256i d) {
    __m256i ab = _mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
    __m256i cd = _mm256_add_epi32(_mm256_unpacklo_epi32(c, d), _mm256_unpackhi_epi32(c, d));
    return _mm256_add_epi32(_mm256_unpacklo_epi64(ab, cd), _mm256_unpackhi_epi64(ab, cd));
}
/* Lane r = sum of the 8 lanes of v[r]. */
KVC_TARGET_AVX2 static inline __m256 kv256_reduce8_ps(const __m256 *v) {
    __m256 g0 = kv256_t4_ps(v[0], v[1], v[2], v[3]), g1 = kv256_t4_ps(v[4], v[5], v[6], v[7]);
    return _mm256_add_ps(_mm256_permute2f128_ps(g0, g1, 0x20),
                         _mm256_permute2f128_ps(g0, g1, 0x31));
}
KVC_TARGET_AVX2 static inline __m256i kv256_reduce8_epi32(const __m256i *v) {
    __m256i g0 = kv256_t4_epi32(v[0], v[1], v[2], v[3]);
    __m256i g1 = kv256_t4_epi32(v[4], v[5], v[6], v[7]);
    return _mm256_add_epi32(_mm256_permute2x128_si256(g0, g1, 0x20),
                            _mm256_permute2x128_si256(g0, g1, 0x31));
}
/* Max of |x| over the 32 floats of 4 registers (exact). */
KVC_TARGET_AVX2 static inline float kv256_absmax32(__m256 x0, __m256 x1, __m256 x2, __m256 x3) {
    const __m256 ab = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(x0, ab), _mm256_and_ps(x1, ab)),
                             _mm256_max_ps(_mm256_and_ps(x2, ab), _mm256_and_ps(x3, ab)));
    m = _mm256_max_ps(m, _mm256_permute2f128_ps(m, m, 0x01));
    m = _mm256_max_ps(m, _mm256_permute_ps(m, 0x4e));
    m = _mm256_max_ps(m, _mm256_permute_ps(m, 0xb1));
    return _mm256_cvtss_f32(m);
}

/* Mask vector for _mm256_maskstore_ps / maskload: first n (0..8) lanes set. */
KVC_TARGET_AVX2 static inline __m256i kv256_mask8(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* ---- float-row codecs (f32, f16, bf16): SIMD kernels shared by f32.c, f16.c and bf16.c.
 * `kind` is a literal at every call site, so after inlining the branches on it vanish.
 * All need d % 16 == 0 (AVX-512) or d % 8 == 0 (AVX2); the callers fall back to their scalar
 * kernels otherwise. ---- */
enum { KV_ROW_F32 = 0, KV_ROW_F16 = 1, KV_ROW_BF16 = 2 };
#define KV_INLINE static inline __attribute__((always_inline))

static inline size_t kv_row_elem_bytes(int kind) { return kind == KV_ROW_F32 ? 4 : 2; }

/* 16 elements j..j+15 of a row as floats. */
KVC_TARGET_AVX512 KV_INLINE __m512 kv512_load16(int kind, const void *row, int j) {
    if (kind == KV_ROW_F32) return _mm512_loadu_ps((const float *)row + j);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + j));
    if (kind == KV_ROW_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Partial sums (16 lanes) of dot(q, row). */
KVC_TARGET_AVX512 KV_INLINE __m512 kv512_rowdot(int kind, const float *q, const void *row, int d) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int j = 0;
    for (; j + 32 <= d; j += 32) {
        a0 = _mm512_fmadd_ps(kv512_load16(kind, row, j), _mm512_loadu_ps(q + j), a0);
        a1 = _mm512_fmadd_ps(kv512_load16(kind, row, j + 16), _mm512_loadu_ps(q + j + 16), a1);
    }
    if (j < d) a0 = _mm512_fmadd_ps(kv512_load16(kind, row, j), _mm512_loadu_ps(q + j), a0);
    return _mm512_add_ps(a0, a1);
}

/* out[i] = dot(q, row_i), 16 rows at a time through the transposing reduction. */
KVC_TARGET_AVX512 KV_INLINE void kv512_float_score(int kind, const float *q, const void *keys,
                                                   int n, int d, float *out) {
    const size_t rb = (size_t)d * kv_row_elem_bytes(kind);
    const char *base = (const char *)keys;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 p[16];
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++) p[r] = kv512_rowdot(kind, q, base + (size_t)(i + r) * rb, d);
        _mm512_storeu_ps(out + i, kv512_reduce16_ps(p));
    }
    if (i < n) {
        __m512 p[16];
        for (int r = 0; r < 16; r++)
            p[r] = i + r < n ? kv512_rowdot(kind, q, base + (size_t)(i + r) * rb, d)
                             : _mm512_setzero_ps();
        _mm512_mask_storeu_ps(out + i, kv_mask16(n - i), kv512_reduce16_ps(p));
    }
}

/* Grouped kernels are instantiated per head count: runs CALL(GL, g0) for the heads
 * g0..g0+GL-1 in passes of at most 4, GL a literal 1..4 (used by every codec's score_g /
 * accumulate_g). */
#define KV_G_PASSES(G, CALL)                                                                    \
    for (int g0_ = 0; g0_ < (G); g0_ += 4) {                                                    \
        switch ((G) - g0_ < 4 ? (G) - g0_ : 4) {                                                \
        case 1: CALL(1, g0_); break;                                                            \
        case 2: CALL(2, g0_); break;                                                            \
        case 3: CALL(3, g0_); break;                                                            \
        default: CALL(4, g0_); break;                                                           \
        }                                                                                       \
    }

/* G queries (G = 1..4, a literal after inlining) against the same rows: each row is loaded
 * and converted once per 16 columns and multiplied with every query (grouped-query attention:
 * the query heads of one KV head). out[g * os + i] = dot(q + g * qs, row_i). */
KVC_TARGET_AVX512 KV_INLINE void kv512_float_score_g(int kind, const int G, const float *q,
                                                     size_t qs, const void *keys, int n, int d,
                                                     float *out, size_t os) {
    const size_t rb = (size_t)d * kv_row_elem_bytes(kind);
    const char *base = (const char *)keys;
    for (int i = 0; i < n; i += 16) {
        const int cnt = n - i < 16 ? n - i : 16;
        kv_prefetch_rows16_l2(base + (size_t)i * rb, rb, 64);
        __m512 p[4][16];
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++) {
            __m512 a[4];
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) a[g] = _mm512_setzero_ps();
            if (r < cnt) {
                const char *row = base + (size_t)(i + r) * rb;
#pragma GCC unroll 8
                for (int j = 0; j < d; j += 16) {
                    const __m512 x = kv512_load16(kind, row, j);
#pragma GCC unroll 4
                    for (int g = 0; g < G; g++)
                        a[g] = _mm512_fmadd_ps(x, _mm512_loadu_ps(q + g * qs + j), a[g]);
                }
            }
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) p[g][r] = a[g];
        }
#pragma GCC unroll 4
        for (int g = 0; g < G; g++)
            _mm512_mask_storeu_ps(out + g * os + i, kv_mask16(cnt), kv512_reduce16_ps(p[g]));
    }
}

/* G weight rows at once: acc[g * as + :] += sum_i w[g * ws + i] * row_i; each row is loaded
 * and converted once per 64 columns (needs d % 64 == 0). Zero weights are multiplied, not
 * skipped (float codecs have no sparse rows). */
KVC_TARGET_AVX512 KV_INLINE void kv512_float_acc_g(int kind, const int G, const float *w,
                                                   size_t ws, const void *vals, int n, int d,
                                                   float *acc, size_t as) {
    const size_t es = kv_row_elem_bytes(kind), rb = (size_t)d * es;
    for (int c = 0; c < d; c += 64) {
        const char *col = (const char *)vals + (size_t)c * es;
        __m512 a[4][4];
#pragma GCC unroll 4
        for (int g = 0; g < G; g++)
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) a[g][k] = _mm512_loadu_ps(acc + g * as + c + 16 * k);
        for (int i = 0; i < n; i++) {
            const char *row = col + (size_t)i * rb;
            if (c == 0 && (i & 15) == 0) kv_prefetch_rows16_l2(row, rb, 64);
            const __m512 x0 = kv512_load16(kind, row, 0), x1 = kv512_load16(kind, row, 16);
            const __m512 x2 = kv512_load16(kind, row, 32), x3 = kv512_load16(kind, row, 48);
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                const __m512 wv = _mm512_set1_ps(w[g * ws + i]);
                a[g][0] = _mm512_fmadd_ps(wv, x0, a[g][0]);
                a[g][1] = _mm512_fmadd_ps(wv, x1, a[g][1]);
                a[g][2] = _mm512_fmadd_ps(wv, x2, a[g][2]);
                a[g][3] = _mm512_fmadd_ps(wv, x3, a[g][3]);
            }
        }
#pragma GCC unroll 4
        for (int g = 0; g < G; g++)
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) _mm512_storeu_ps(acc + g * as + c + 16 * k, a[g][k]);
    }
}

/* ---- grouped kernels for the GGML block codecs (q8_0, q4_0 and q4_0h's rows): G = 1..4
 * query heads share each row's load and widening. is_q4 and G are literals after inlining;
 * the integer sums per head are those of the per-query kernels (same prepared int16 query),
 * only the order of the float scaling differs. ---- */

/* Blocks b and b+1 (only b when !two) of up to 16 rows, scores of every head into acc[g]. */
KVC_TARGET_AVX512 KV_INLINE void kv512_qpair_score_g(const int is_q4, const int G, const uint8_t *rows,
                                                     size_t rb, int cnt, int b, int two, const float *qp,
                                                     size_t qs, int d, __m512i gidx, __mmask16 m,
                                                     __m512 *acc) {
    const size_t bs = is_q4 ? sizeof(block_q4_0) : sizeof(block_q8_0);
    const __m256i z = _mm256_setzero_si256();
    __m512i qlo[4], qhi[4];
#pragma GCC unroll 4
    for (int g = 0; g < G; g++) {
        const int16_t *q = (const int16_t *)(const void *)(qp + g * qs) + 32 * b;
        const __m256i qa0 = _mm256_loadu_si256((const __m256i *)q);
        const __m256i qa1 = _mm256_loadu_si256((const __m256i *)(q + 16));
        const __m256i qb0 = two ? _mm256_loadu_si256((const __m256i *)(q + 32)) : z;
        const __m256i qb1 = two ? _mm256_loadu_si256((const __m256i *)(q + 48)) : z;
        qlo[g] = _mm512_inserti64x4(_mm512_castsi256_si512(qa0), qb0, 1);
        qhi[g] = _mm512_inserti64x4(_mm512_castsi256_si512(qa1), qb1, 1);
    }
    __m512i p[4][16];
#pragma GCC unroll 16
    for (int r = 0; r < 16; r++) {
        if (r >= cnt) {
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) p[g][r] = _mm512_setzero_si512();
            continue;
        }
        const uint8_t *x = rows + (size_t)r * rb + (size_t)b * bs + 2; /* the block's quants */
        __m512i xl, xh;
        if (is_q4) {
            __m128i a = _mm_loadu_si128((const __m128i *)x);
            __m256i by = two ? _mm256_inserti128_si256(_mm256_castsi128_si256(a),
                                                       _mm_loadu_si128((const __m128i *)(x + bs)), 1)
                             : _mm256_zextsi128_si256(a);
            __m512i w16 = _mm512_cvtepu8_epi16(by);
            xl = _mm512_and_si512(w16, _mm512_set1_epi16(15));
            xh = _mm512_srli_epi16(w16, 4);
        } else {
            __m128i lo = _mm_loadu_si128((const __m128i *)x), hi = _mm_loadu_si128((const __m128i *)(x + 16));
            __m256i lo8 = two ? _mm256_inserti128_si256(_mm256_castsi128_si256(lo),
                                                        _mm_loadu_si128((const __m128i *)(x + bs)), 1)
                              : _mm256_zextsi128_si256(lo);
            __m256i hi8 = two ? _mm256_inserti128_si256(_mm256_castsi128_si256(hi),
                                                        _mm_loadu_si128((const __m128i *)(x + bs + 16)), 1)
                              : _mm256_zextsi128_si256(hi);
            xl = _mm512_cvtepi8_epi16(lo8);
            xh = _mm512_cvtepi8_epi16(hi8);
        }
#pragma GCC unroll 4
        for (int g = 0; g < G; g++)
            p[g][r] = _mm512_add_epi32(_mm512_madd_epi16(xl, qlo[g]), _mm512_madd_epi16(xh, qhi[g]));
    }
    const __m512i zero = _mm512_setzero_si512();
    const uint8_t *sp = rows + (size_t)b * bs;
    const __m512 da = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_mask_i32gather_epi32(zero, m, gidx, sp, 1)));
    __m512 db = da;
    if (two) db = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_mask_i32gather_epi32(zero, m, gidx, sp + bs, 1)));
#pragma GCC unroll 4
    for (int g = 0; g < G; g++) {
        const float *qg = qp + g * qs;
        __m512i sa, sb;
        kv512_reduce16x2_epi32(p[g], &sa, &sb);
        if (is_q4) sa = _mm512_sub_epi32(sa, _mm512_set1_epi32(kv_q16_bias(qg, d, b)));
        acc[g] = _mm512_add_ps(acc[g], _mm512_mul_ps(_mm512_cvtepi32_ps(sa),
                                                     _mm512_mul_ps(da, _mm512_set1_ps(kv_q16_scale(qg, d, b)))));
        if (two) {
            if (is_q4) sb = _mm512_sub_epi32(sb, _mm512_set1_epi32(kv_q16_bias(qg, d, b + 1)));
            acc[g] = _mm512_add_ps(acc[g], _mm512_mul_ps(_mm512_cvtepi32_ps(sb),
                                                         _mm512_mul_ps(db, _mm512_set1_ps(kv_q16_scale(qg, d, b + 1)))));
        }
    }
}

KVC_TARGET_AVX512 KV_INLINE void kv512_qblock_score_g(const int is_q4, const int G, const float *qp, size_t qs,
                                                      const void *keys, int n, int d, float *out, size_t os) {
    const int nb = d / 32;
    const size_t rb = (size_t)nb * (is_q4 ? sizeof(block_q4_0) : sizeof(block_q8_0));
    const __m512i gidx = kv512_row_offsets16(rb);
    const uint8_t *base = (const uint8_t *)keys;
    for (int i = 0; i < n; i += 16) {
        const int cnt = n - i < 16 ? n - i : 16;
        const __mmask16 m = kv_mask16(cnt);
        const uint8_t *rows = base + (size_t)i * rb;
        kv_prefetch_rows16(rows, rb, 64);
        __m512 acc[4];
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) acc[g] = _mm512_setzero_ps();
        int b = 0;
        for (; b + 2 <= nb; b += 2) kv512_qpair_score_g(is_q4, G, rows, rb, cnt, b, 1, qp, qs, d, gidx, m, acc);
        if (b < nb) kv512_qpair_score_g(is_q4, G, rows, rb, cnt, b, 0, qp, qs, d, gidx, m, acc);
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) _mm512_mask_storeu_ps(out + g * os + i, m, acc[g]);
    }
}

/* acc + g * as += sum_i w[g * ws + i] * row_i over the columns of blocks b, b+1; a row whose G
 * weights are all zero is not read. */
KVC_TARGET_AVX512 KV_INLINE void kv512_qpair_acc_g(const int is_q4, const int G, const uint8_t *base, size_t rb,
                                                   const float *w, size_t ws, int n, int b, int two,
                                                   __m512i gidx, float *o, size_t as) {
    const size_t bs = is_q4 ? sizeof(block_q4_0) : sizeof(block_q8_0);
    const __m512 zf = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    const __m512 lut = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    /* accumulators as named registers (an array indexed by head stayed in memory) */
    __m512 a00 = zf, a01 = zf, a02 = zf, a03 = zf, a10 = zf, a11 = zf, a12 = zf, a13 = zf;
    __m512 a20 = zf, a21 = zf, a22 = zf, a23 = zf, a30 = zf, a31 = zf, a32 = zf, a33 = zf;
#define KV_QACC_LOAD(g, A0, A1, A2, A3)                                                       \
    if (G > g) {                                                                              \
        A0 = _mm512_loadu_ps(o + g * as);                                                     \
        A1 = _mm512_loadu_ps(o + g * as + 16);                                                \
        if (two) {                                                                            \
            A2 = _mm512_loadu_ps(o + g * as + 32);                                            \
            A3 = _mm512_loadu_ps(o + g * as + 48);                                            \
        }                                                                                     \
    }
    KV_QACC_LOAD(0, a00, a01, a02, a03)
    KV_QACC_LOAD(1, a10, a11, a12, a13)
    KV_QACC_LOAD(2, a20, a21, a22, a23)
    KV_QACC_LOAD(3, a30, a31, a32, a33)
#undef KV_QACC_LOAD
    float ca[4][16], cb[4][16];
    for (int i = 0; i < n; i += 16) {
        const int cnt = n - i < 16 ? n - i : 16;
        const __mmask16 m = kv_mask16(cnt);
        const uint8_t *rows = base + (size_t)i * rb;
        if (b == 0) kv_prefetch_rows16(rows, rb, 64);
        const uint8_t *sp = rows + (size_t)b * bs;
        const __m512 da = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_mask_i32gather_epi32(zero, m, gidx, sp, 1)));
        __m512 db = da;
        if (two) db = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_mask_i32gather_epi32(zero, m, gidx, sp + bs, 1)));
        uint32_t nz = 0;
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            const __m512 wv = _mm512_maskz_loadu_ps(m, w + g * ws + i);
            nz |= _mm512_mask_cmp_ps_mask(m, wv, zf, _CMP_NEQ_UQ);
            _mm512_storeu_ps(ca[g], _mm512_mul_ps(wv, da));
            if (two) _mm512_storeu_ps(cb[g], _mm512_mul_ps(wv, db));
        }
        while (nz) {
            const int r = __builtin_ctz(nz);
            nz &= nz - 1;
            const uint8_t *x = rows + (size_t)r * rb + (size_t)b * bs + 2;
            __m512 x0, x1, x2 = zf, x3 = zf;
            if (is_q4) {
                const __m512i w0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)x));
                x0 = _mm512_permutexvar_ps(w0, lut);
                x1 = _mm512_permutexvar_ps(_mm512_srli_epi32(w0, 4), lut);
                if (two) {
                    const __m512i w1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(x + bs)));
                    x2 = _mm512_permutexvar_ps(w1, lut);
                    x3 = _mm512_permutexvar_ps(_mm512_srli_epi32(w1, 4), lut);
                }
            } else {
                x0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)x)));
                x1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(x + 16))));
                if (two) {
                    x2 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(x + bs))));
                    x3 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(x + bs + 16))));
                }
            }
#define KV_QACC_ROW(g, A0, A1, A2, A3)                                                        \
    if (G > g) {                                                                              \
        const __m512 ka = _mm512_set1_ps(ca[g][r]);                                           \
        A0 = _mm512_fmadd_ps(ka, x0, A0);                                                     \
        A1 = _mm512_fmadd_ps(ka, x1, A1);                                                     \
        if (two) {                                                                            \
            const __m512 kb = _mm512_set1_ps(cb[g][r]);                                       \
            A2 = _mm512_fmadd_ps(kb, x2, A2);                                                 \
            A3 = _mm512_fmadd_ps(kb, x3, A3);                                                 \
        }                                                                                     \
    }
            KV_QACC_ROW(0, a00, a01, a02, a03)
            KV_QACC_ROW(1, a10, a11, a12, a13)
            KV_QACC_ROW(2, a20, a21, a22, a23)
            KV_QACC_ROW(3, a30, a31, a32, a33)
#undef KV_QACC_ROW
        }
    }
#define KV_QACC_STORE(g, A0, A1, A2, A3)                                                      \
    if (G > g) {                                                                              \
        _mm512_storeu_ps(o + g * as, A0);                                                     \
        _mm512_storeu_ps(o + g * as + 16, A1);                                                \
        if (two) {                                                                            \
            _mm512_storeu_ps(o + g * as + 32, A2);                                            \
            _mm512_storeu_ps(o + g * as + 48, A3);                                            \
        }                                                                                     \
    }
    KV_QACC_STORE(0, a00, a01, a02, a03)
    KV_QACC_STORE(1, a10, a11, a12, a13)
    KV_QACC_STORE(2, a20, a21, a22, a23)
    KV_QACC_STORE(3, a30, a31, a32, a33)
#undef KV_QACC_STORE
}

KVC_TARGET_AVX512 KV_INLINE void kv512_qblock_acc_g(const int is_q4, const int G, const float *w, size_t ws,
                                                    const void *vals, int n, int d, float *acc, size_t as) {
    const int nb = d / 32;
    const size_t rb = (size_t)nb * (is_q4 ? sizeof(block_q4_0) : sizeof(block_q8_0));
    const __m512i gidx = kv512_row_offsets16(rb);
    int b = 0;
    for (; b + 2 <= nb; b += 2) kv512_qpair_acc_g(is_q4, G, vals, rb, w, ws, n, b, 1, gidx, acc + 32 * b, as);
    if (b < nb) kv512_qpair_acc_g(is_q4, G, vals, rb, w, ws, n, b, 0, gidx, acc + 32 * b, as);
}

/* Any G, in passes of up to 4 heads. */
KVC_TARGET_AVX512 KV_INLINE void kv512_qblock_score_gn(const int is_q4, int G, const float *qp, size_t qs,
                                                       const void *keys, int n, int d, float *out, size_t os) {
#define KV_CALL(GL, g0) kv512_qblock_score_g(is_q4, GL, qp + (size_t)(g0) * qs, qs, keys, n, d, out + (size_t)(g0) * os, os)
    KV_G_PASSES(G, KV_CALL)
#undef KV_CALL
}
KVC_TARGET_AVX512 KV_INLINE void kv512_qblock_acc_gn(const int is_q4, int G, const float *w, size_t ws,
                                                     const void *vals, int n, int d, float *acc, size_t as) {
#define KV_CALL(GL, g0) kv512_qblock_acc_g(is_q4, GL, w + (size_t)(g0) * ws, ws, vals, n, d, acc + (size_t)(g0) * as, as)
    KV_G_PASSES(G, KV_CALL)
#undef KV_CALL
}

/* The codec entry points score_g / accumulate_g for a block codec (IS_Q4 0: q8_0, 1: q4_0
 * rows). */
#define KV512_QBLOCK_GROUPED(IS_Q4, SFX)                                                          \
    KVC_TARGET_AVX512 static void SFX##_score_g_avx512(const struct kv_slot *s, int G,            \
                                                       const float *qp, size_t qs,                \
                                                       const void *keys, int pos0, int n,         \
                                                       float *out, size_t os) {                   \
        (void)pos0;                                                                               \
        kv512_qblock_score_gn(IS_Q4, G, qp, qs, keys, n, s->info.d, out, os);                     \
    }                                                                                             \
    KVC_TARGET_AVX512 static void SFX##_acc_g_avx512(const struct kv_slot *s, int G,              \
                                                     const float *w, size_t ws,                   \
                                                     const void *vals, int pos0, int n,           \
                                                     float *acc, size_t as) {                     \
        (void)pos0;                                                                               \
        kv512_qblock_acc_gn(IS_Q4, G, w, ws, vals, n, s->info.d, acc, as);                        \
    }

/* Any G, in passes of up to 4 heads (d = 64 as a literal, the common head size). */
KVC_TARGET_AVX512 KV_INLINE void kv512_float_score_gn(const int kind, int G, const float *qp, size_t qs,
                                                      const void *keys, int n, int d, float *out, size_t os) {
#define KV_CALL(GL, g0) kv512_float_score_g(kind, GL, qp + (size_t)(g0) * qs, qs, keys, n, d, out + (size_t)(g0) * os, os)
#define KV_CALL64(GL, g0) kv512_float_score_g(kind, GL, qp + (size_t)(g0) * qs, qs, keys, n, 64, out + (size_t)(g0) * os, os)
    if (d == 64) {
        KV_G_PASSES(G, KV_CALL64)
    } else {
        KV_G_PASSES(G, KV_CALL)
    }
#undef KV_CALL
#undef KV_CALL64
}
KVC_TARGET_AVX512 KV_INLINE void kv512_float_acc_gn(const int kind, int G, const float *w, size_t ws,
                                                    const void *vals, int n, int d, float *acc, size_t as) {
#define KV_CALL(GL, g0) kv512_float_acc_g(kind, GL, w + (size_t)(g0) * ws, ws, vals, n, d, acc + (size_t)(g0) * as, as)
    KV_G_PASSES(G, KV_CALL)
#undef KV_CALL
}

/* The grouped entry points of a float-row codec, after its per-query AVX-512 kernels
 * SFX_score_avx512 and SFX_accumulate_avx512 (used when d % 64 != 0). For f32.c, f16.c and
 * bf16.c. */
#define KV512_FLOAT_GROUPED(KIND, SFX)                                                          \
    KVC_TARGET_AVX512 static void SFX##_score_g_avx512(const struct kv_slot *s, int G,         \
                                                       const float *qp, size_t qs,             \
                                                       const void *keys, int pos0, int n,      \
                                                       float *out, size_t os) {                \
        const int d = s->info.d;                                                               \
        if (d % 64) { /* no grouped kernel for this d: one query at a time */                 \
            for (int g = 0; g < G; g++)                                                        \
                SFX##_score_avx512(s, qp + (size_t)g * qs, keys, pos0, n, out + (size_t)g * os); \
            return;                                                                            \
        }                                                                                      \
        kv512_float_score_gn(KIND, G, qp, qs, keys, n, d, out, os);                            \
    }                                                                                          \
    KVC_TARGET_AVX512 static void SFX##_acc_g_avx512(const struct kv_slot *s, int G,           \
                                                     const float *w, size_t ws,                \
                                                     const void *vals, int pos0, int n,        \
                                                     float *acc, size_t as) {                  \
        const int d = s->info.d;                                                               \
        if (d % 64) {                                                                          \
            for (int g = 0; g < G; g++)                                                        \
                SFX##_accumulate_avx512(s, w + (size_t)g * ws, vals, pos0, n, acc + (size_t)g * as); \
            return;                                                                            \
        }                                                                                      \
        kv512_float_acc_gn(KIND, G, w, ws, vals, n, d, acc, as);                               \
    }

/* acc += sum_i w[i] * row_i (rows with w[i] == 0 are not read). Columns in chunks of 64
 * held in registers, with two accumulator sets (alternate rows) to hide FMA latency. */
KVC_TARGET_AVX512 KV_INLINE void kv512_float_acc(int kind, const float *w, const void *vals,
                                                 int n, int d, float *acc) {
    const size_t es = kv_row_elem_bytes(kind), rb = (size_t)d * es;
    int c = 0;
    for (; c + 64 <= d; c += 64) {
        const char *col = (const char *)vals + (size_t)c * es;
        __m512 a0 = _mm512_loadu_ps(acc + c), a1 = _mm512_loadu_ps(acc + c + 16);
        __m512 a2 = _mm512_loadu_ps(acc + c + 32), a3 = _mm512_loadu_ps(acc + c + 48);
        __m512 b0 = _mm512_setzero_ps(), b1 = b0, b2 = b0, b3 = b0;
        for (int i = 0; i < n; i += 16) {
            const int cnt = n - i < 16 ? n - i : 16;
            const char *rows = col + (size_t)i * rb;
            const float *wi = w + i;
#define KV_F512_ROW(X0, X1, X2, X3, r)                                                         \
    do {                                                                                       \
        const __m512 wv_ = _mm512_set1_ps(wi[r]);                                              \
        const char *p_ = rows + (size_t)(r) * rb;                                              \
        X0 = _mm512_fmadd_ps(wv_, kv512_load16(kind, p_, 0), X0);                              \
        X1 = _mm512_fmadd_ps(wv_, kv512_load16(kind, p_, 16), X1);                             \
        X2 = _mm512_fmadd_ps(wv_, kv512_load16(kind, p_, 32), X2);                             \
        X3 = _mm512_fmadd_ps(wv_, kv512_load16(kind, p_, 48), X3);                             \
    } while (0)
#define KV_F512_A(r) KV_F512_ROW(a0, a1, a2, a3, r)
#define KV_F512_B(r) KV_F512_ROW(b0, b1, b2, b3, r)
            KV_ROWS_BY_MASK(kv512_nonzero16(wi, cnt), cnt, KV_F512_A, KV_F512_B);
#undef KV_F512_A
#undef KV_F512_B
#undef KV_F512_ROW
        }
        _mm512_storeu_ps(acc + c, _mm512_add_ps(a0, b0));
        _mm512_storeu_ps(acc + c + 16, _mm512_add_ps(a1, b1));
        _mm512_storeu_ps(acc + c + 32, _mm512_add_ps(a2, b2));
        _mm512_storeu_ps(acc + c + 48, _mm512_add_ps(a3, b3));
    }
    for (; c < d; c += 16) {
        const char *col = (const char *)vals + (size_t)c * es;
        __m512 a = _mm512_loadu_ps(acc + c), b = _mm512_setzero_ps();
        for (int i = 0; i < n; i += 16) {
            const int cnt = n - i < 16 ? n - i : 16;
            const char *rows = col + (size_t)i * rb;
            const float *wi = w + i;
#define KV_F512_A(r) a = _mm512_fmadd_ps(_mm512_set1_ps(wi[r]), kv512_load16(kind, rows + (size_t)(r) * rb, 0), a)
#define KV_F512_B(r) b = _mm512_fmadd_ps(_mm512_set1_ps(wi[r]), kv512_load16(kind, rows + (size_t)(r) * rb, 0), b)
            KV_ROWS_BY_MASK(kv512_nonzero16(wi, cnt), cnt, KV_F512_A, KV_F512_B);
#undef KV_F512_A
#undef KV_F512_B
        }
        _mm512_storeu_ps(acc + c, _mm512_add_ps(a, b));
    }
}

/* AVX2: 8 elements j..j+7 of a row as floats. */
KVC_TARGET_AVX2 KV_INLINE __m256 kv256_load8(int kind, const void *row, int j) {
    if (kind == KV_ROW_F32) return _mm256_loadu_ps((const float *)row + j);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + j));
    if (kind == KV_ROW_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

KVC_TARGET_AVX2 KV_INLINE __m256 kv256_rowdot(int kind, const float *q, const void *row, int d) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= d; j += 16) {
        a0 = _mm256_fmadd_ps(kv256_load8(kind, row, j), _mm256_loadu_ps(q + j), a0);
        a1 = _mm256_fmadd_ps(kv256_load8(kind, row, j + 8), _mm256_loadu_ps(q + j + 8), a1);
    }
    if (j < d) a0 = _mm256_fmadd_ps(kv256_load8(kind, row, j), _mm256_loadu_ps(q + j), a0);
    return _mm256_add_ps(a0, a1);
}

KVC_TARGET_AVX2 KV_INLINE void kv256_float_score(int kind, const float *q, const void *keys,
                                                 int n, int d, float *out) {
    const size_t rb = (size_t)d * kv_row_elem_bytes(kind);
    const char *base = (const char *)keys;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 p[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) p[r] = kv256_rowdot(kind, q, base + (size_t)(i + r) * rb, d);
        _mm256_storeu_ps(out + i, kv256_reduce8_ps(p));
    }
    if (i < n) {
        __m256 p[8];
        for (int r = 0; r < 8; r++)
            p[r] = i + r < n ? kv256_rowdot(kind, q, base + (size_t)(i + r) * rb, d)
                             : _mm256_setzero_ps();
        _mm256_maskstore_ps(out + i, kv256_mask8(n - i), kv256_reduce8_ps(p));
    }
}

/* Bit r set when w[r] != 0 (NaN counts as nonzero), for r < cnt <= 8. */
KVC_TARGET_AVX2 static inline uint32_t kv256_nonzero8(const float *w, int cnt) {
    const __m256i m = kv256_mask8(cnt);
    __m256 v = _mm256_maskload_ps(w, m);
    return (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ)) &
           ((1u << cnt) - 1u);
}

/* AVX2 accumulate: chunks of 32 columns (4 registers) x two row sets. */
KVC_TARGET_AVX2 KV_INLINE void kv256_float_acc(int kind, const float *w, const void *vals, int n,
                                               int d, float *acc) {
    const size_t es = kv_row_elem_bytes(kind), rb = (size_t)d * es;
    int c = 0;
    for (; c + 32 <= d; c += 32) {
        const char *col = (const char *)vals + (size_t)c * es;
        __m256 a0 = _mm256_loadu_ps(acc + c), a1 = _mm256_loadu_ps(acc + c + 8);
        __m256 a2 = _mm256_loadu_ps(acc + c + 16), a3 = _mm256_loadu_ps(acc + c + 24);
        __m256 b0 = _mm256_setzero_ps(), b1 = b0, b2 = b0, b3 = b0;
        for (int i = 0; i < n; i += 8) {
            const int cnt = n - i < 8 ? n - i : 8;
            const char *rows = col + (size_t)i * rb;
            const float *wi = w + i;
#define KV_F256_ROW(X0, X1, X2, X3, r)                                                         \
    do {                                                                                       \
        const __m256 wv_ = _mm256_set1_ps(wi[r]);                                              \
        const char *p_ = rows + (size_t)(r) * rb;                                              \
        X0 = _mm256_fmadd_ps(wv_, kv256_load8(kind, p_, 0), X0);                               \
        X1 = _mm256_fmadd_ps(wv_, kv256_load8(kind, p_, 8), X1);                               \
        X2 = _mm256_fmadd_ps(wv_, kv256_load8(kind, p_, 16), X2);                              \
        X3 = _mm256_fmadd_ps(wv_, kv256_load8(kind, p_, 24), X3);                              \
    } while (0)
#define KV_F256_A(r) KV_F256_ROW(a0, a1, a2, a3, r)
#define KV_F256_B(r) KV_F256_ROW(b0, b1, b2, b3, r)
            KV_ROWS_BY_MASK(kv256_nonzero8(wi, cnt), cnt, KV_F256_A, KV_F256_B);
#undef KV_F256_A
#undef KV_F256_B
#undef KV_F256_ROW
        }
        _mm256_storeu_ps(acc + c, _mm256_add_ps(a0, b0));
        _mm256_storeu_ps(acc + c + 8, _mm256_add_ps(a1, b1));
        _mm256_storeu_ps(acc + c + 16, _mm256_add_ps(a2, b2));
        _mm256_storeu_ps(acc + c + 24, _mm256_add_ps(a3, b3));
    }
    for (; c < d; c += 8) {
        const char *col = (const char *)vals + (size_t)c * es;
        __m256 a = _mm256_loadu_ps(acc + c), b = _mm256_setzero_ps();
        for (int i = 0; i < n; i += 8) {
            const int cnt = n - i < 8 ? n - i : 8;
            const char *rows = col + (size_t)i * rb;
            const float *wi = w + i;
#define KV_F256_A(r) a = _mm256_fmadd_ps(_mm256_set1_ps(wi[r]), kv256_load8(kind, rows + (size_t)(r) * rb, 0), a)
#define KV_F256_B(r) b = _mm256_fmadd_ps(_mm256_set1_ps(wi[r]), kv256_load8(kind, rows + (size_t)(r) * rb, 0), b)
            KV_ROWS_BY_MASK(kv256_nonzero8(wi, cnt), cnt, KV_F256_A, KV_F256_B);
#undef KV_F256_A
#undef KV_F256_B
        }
        _mm256_storeu_ps(acc + c, _mm256_add_ps(a, b));
    }
}

#endif
