/* kernel_avx512.h - the AVX512-VNNI matmul template of the Q8X types, included by a type's
 * file: KVC_WTYPE_AVX512(name, UNPACK) defines kvc_tile_<name>_avx512 and
 * kvc_vdot_<name>_avx512 around the type's register unpacker
 *   UNPACK(const void *row, int64_t chunk, int64_t n, __m512i u[4], __m512 *a, __m512 *b)
 * (256 weights of chunk: u = 4 x 64 unsigned bytes, a / b = the 16 per-16 scales and
 * offsets, w = a u + b), inlined into 4 x 4 micro-kernels: vpdpbusd per 64 weights, scaled
 * by a (per 4-element lane) and the activation's block scale; b through the per-16 sums of
 * the Q8X activations. KVC_LEGACY_AVX512 (below) is the block-pair form of the 32-element
 * types. Without VNNI the generic AVX2 kernels run. */
#ifndef KVC_WTYPES_KERNEL_AVX512_H
#define KVC_WTYPES_KERNEL_AVX512_H

#include "arch/simd_avx512.h"
#include "wtype.h"
#include <string.h>

#define KVC_VNNI KVC_TARGET_AVX512VNNI

/* IEEE half to float with F16C (exact, as kvc_f16_to_f32, without its branches). */
INLINE KVC_VNNI float kvc_f16c(uint16_t h) { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))); }

/* Lane l of 64-element piece k uses the scale of group 4 k + l / 4. */
INLINE KVC_VNNI __m512i kvc_group_idx(int k) {
    return _mm512_add_epi32(_mm512_set1_epi32(4 * k),
                            _mm512_srli_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 2));
}

/* 8 six-bit scales and mins from the 12 bytes (kquant.h k4_get), as 16 floats each (one per
 * group of 16: sub-block j covers groups 2j, 2j+1) times d and -dmin. */
INLINE KVC_VNNI void k4_scales512(const uint8_t *q, float d, float dmin, __m512 *a, __m512 *b) {
    uint32_t s0, s1, s2;
    memcpy(&s0, q, 4);
    memcpy(&s1, q + 4, 4);
    memcpy(&s2, q + 8, 4);
    const uint32_t sc_lo = s0 & 0x3f3f3f3fu, m_lo = s1 & 0x3f3f3f3fu;
    const uint32_t sc_hi = (s2 & 0x0f0f0f0fu) | ((s0 >> 6) & 0x03030303u) << 4;
    const uint32_t m_hi = ((s2 >> 4) & 0x0f0f0f0fu) | ((s1 >> 6) & 0x03030303u) << 4;
    const __m128i v = _mm_set_epi32((int)m_hi, (int)m_lo, (int)sc_hi, (int)sc_lo);
    const __m128i sc2 = _mm_unpacklo_epi8(v, v), m2 = _mm_unpackhi_epi8(v, v); /* each byte twice */
    *a = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(sc2)), _mm512_set1_ps(d));
    *b = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(m2)), _mm512_set1_ps(-dmin));
}

/* The 12 scale bytes of a Q4_K / Q5_K block as 16 bytes [sc0..sc7, m0..m7] (kquant.h k4_get),
 * in vector registers (the 16-byte load reads the 4 bytes after them in the block, unused). */
INLINE KVC_VNNI __m128i k4_scales_bytes(const uint8_t *q12) {
    const __m128i Q = _mm_loadu_si128((const __m128i *)q12);
    const __m128i A = _mm_shuffle_epi32(Q, _MM_SHUFFLE(2, 1, 2, 0)); /* D0 D2 D1 D2 */
    const __m128i B = _mm_shuffle_epi32(Q, _MM_SHUFFLE(1, 1, 0, 0)); /* D0 D0 D1 D1 */
    const __m128i lo = _mm_and_si128(_mm_srlv_epi32(A, _mm_set_epi32(4, 0, 0, 0)),
                                     _mm_set_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f));
    const __m128i hi = _mm_and_si128(_mm_srli_epi32(B, 2), _mm_set_epi32(0x30303030, 0, 0x30303030, 0));
    const __m128i r = _mm_or_si128(lo, hi); /* dwords sc0-3, sc4-7, m0-3, m4-7 */
    return r;
}
/* Per row and super-block of the Q4_K / Q5_K one-row kernels (blocks that open with f16 d,
 * dmin and the 12 scale bytes): *sw = the words [sc0..sc7, m0..m7], the mins' share
 * -dmin m_g s16_g added to *acc (s16n = -s16), and the factor d x the activation scale xd
 * of the super-block's integer sum returned, broadcast. */
INLINE KVC_VNNI __m512 k4_row1(const void *blk, __m512 s16n, float xd, __m512 *acc, __m512i *sw) {
    const __m128i sb = k4_scales_bytes((const uint8_t *)blk + 4);
    *sw = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(sb));
    const __m512 mf = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(sb, sb)));
    int32_t dd; /* f16 d, dmin */
    memcpy(&dd, blk, 4);
    const __m128 df = _mm_cvtph_ps(_mm_cvtsi32_si128(dd));
    *acc = _mm512_fmadd_ps(_mm512_mul_ps(mf, _mm512_broadcastss_ps(_mm_movehdup_ps(df))), s16n, *acc);
    return _mm512_broadcastss_ps(_mm_mul_ss(df, _mm_set_ss(xd)));
}

/* The one-row (decode) kernel of the K-quants with 16 sub-blocks of 16 and a fixed offset
 * (q6_K, q3_K, q2_K): x = d * sc_g * u + o_g with q8_K activations (one scale per 256), so a
 * super-block's products stay integers: BITS(block, u[4]) gives u[k] = elements 64 k .. 64 k +
 * 63 (unsigned, u * 127 * 2 < 2^15), SC16(block) the 16 scales as signed bytes; vpmaddubsw +
 * vpdpwssd against the scales as words (word j of piece k: scale 4 k + j / 8), one convert
 * and one FMA by d x the activation scale per super-block; the offsets o_g = OFF(block, the
 * scale bytes, d) (16 floats) through the per-16 sums s16 in float. Prefetch spread over the
 * super-blocks (kvc_pf_spread). The block type has a uint16_t d (f16). */
/* o_g = C d sc_g (q6_K: C = -32, q3_K: -4) */
#define KVC_KQ16_OFF_FIXED(C) (_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc)), _mm512_set1_ps((C) * d)))
#define KVC_KQ16_MK1(FN, BLOCK, BITS, SC16, OFF)                                                   \
    INLINE KVC_VNNI void FN(const int NW, const char *w, size_t ws, const char *x, int64_t n, float *y) { \
        const int64_t np = kvc_q8x_padded(n), nc = np / 256;                                          \
        __m512i six[4];                                                                               \
        UNROLL for (int k = 0; k < 4; k++) six[k] = _mm512_inserti64x4(                               \
            _mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16((short)(4 * k + 1)), _mm_set1_epi16((short)(4 * k)))), \
            _mm256_set_m128i(_mm_set1_epi16((short)(4 * k + 3)), _mm_set1_epi16((short)(4 * k + 2))), 1); \
        __m512 acc[4];                                                                                \
        UNROLL for (int r = 0; r < NW; r++) acc[r] = _mm512_setzero_ps();                             \
        for (int64_t c = 0; c < nc; c++) {                                                            \
            if (NW == 4) kvc_pf_spread(w, ws, c, nc);                                                 \
            const __m512 s16 = _mm512_load_ps((const float *)(x + 2 * np) + 16 * c);                 \
            const float xd = ((const float *)(x + np))[64 * c];                                       \
            __m512i xq[4];                                                                            \
            UNROLL for (int k = 0; k < 4; k++) xq[k] = _mm512_load_si512(x + 256 * c + 64 * k);       \
            UNROLL for (int r = 0; r < NW; r++) {                                                     \
                const BLOCK *b = (const BLOCK *)(w + r * ws) + c;                                     \
                const __m128i sc = SC16(b);                                                           \
                const __m512i sw = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(sc));                  \
                const float d = kvc_f16c(b->d);                                                       \
                acc[r] = _mm512_fmadd_ps(OFF(b, sc, d), s16, acc[r]);                                 \
                __m512i u[4], isum = _mm512_setzero_si512();                                          \
                BITS(b, u);                                                                           \
                UNROLL for (int k = 0; k < 4; k++)                                                    \
                    isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(u[k], xq[k]),               \
                                               _mm512_permutexvar_epi16(six[k], sw));                 \
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d * xd), acc[r]);    \
            }                                                                                         \
        }                                                                                             \
        UNROLL for (int r = 0; r < NW; r++) y[r] = _mm512_reduce_add_ps(acc[r]);                      \
    }

/* 64 nibbles of two 16-byte groups in element order: [q0 & 15, q0 >> 4, q1 & 15, q1 >> 4]
 * (kvc_nib_pair2 with two = 0: q1 is not read and its half is zero). */
INLINE KVC_VNNI __m512i kvc_nib_pair2(const uint8_t *q0, const uint8_t *q1, const int two) {
    /* [q0, q0, q1, q1] by 128-bit lanes, the odd lanes shifted right by 4 */
    const __m256i a = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q0));
    const __m256i b = two ? _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q1)) : _mm256_setzero_si256();
    const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
    const __m512i sh = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
    return _mm512_and_si512(_mm512_srlv_epi64(z, sh), _mm512_set1_epi8(0x0F));
}
INLINE KVC_VNNI __m512i kvc_nib_pair(const uint8_t *q0, const uint8_t *q1) { return kvc_nib_pair2(q0, q1, 1); }
/* Two Q5_0 / Q5_1 blocks' 5-bit values in element order: nibbles qs plus 16 where the high
 * bit (qh, 32 bits little-endian per block) is set; two = 0: the second block zero. */
INLINE KVC_VNNI __m512i kvc_q5_pair(const uint8_t *qs0, const uint8_t *qs1, const uint8_t *qh0,
                                    const uint8_t *qh1, const int two) {
    uint32_t h0, h1 = 0;
    memcpy(&h0, qh0, 4);
    if (two) memcpy(&h1, qh1, 4);
    const __m512i nib = kvc_nib_pair2(qs0, qs1, two);
    return _mm512_mask_add_epi8(nib, _mm512_kunpackd((__mmask64)h1, (__mmask64)h0), nib, _mm512_set1_epi8(16));
}

/* The block scales (and offsets) of a block pair: the 4 bytes at p0 and p1 (two = 0: p1 not
 * read) as f16 pairs {d, m} (or {d, anything}) converted at once; lanes [d0 x 8, d1 x 8] and
 * [m0 x 8, m1 x 8]. */
INLINE KVC_VNNI __m128 kvc_f16_pairs(const void *p0, const void *p1, const int two) {
    int32_t a, b = 0;
    memcpy(&a, p0, 4);
    if (two) memcpy(&b, p1, 4);
    return _mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128(a), b, 1));
}
INLINE KVC_VNNI __m512 kvc_pair_lanes(__m128 f, const int which) {
    const __m512i idx = which ? _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1)
                              : _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f));
}

/* ---- panels (prefill) ----
 * 16 weight rows (fewer at the end: the last row repeated, its lanes not stored) per chunk of
 * 256, unpacked and transposed so that lane i holds row i: u[m] the 4 unsigned bytes of
 * elements 4m..4m+3, a[g] / b[g] the per-16 scale and offset (w = a u + b). A group of 16
 * activation elements then costs 4 vpdpbusd (its quants broadcast 4 at a time), one convert
 * and three float ops for 16 outputs, and no horizontal sums. The tiles use panels from
 * KVC_KPANEL_MIN_T activation rows on, each pass of 16 rows x KVC_KPANEL_KC chunks reused by
 * every activation row of the tile. */
struct kvc_kpanel {
    _Alignas(64) uint32_t u[64][16];
    float a[16][16];
    float b[16][16];
};
#ifndef KVC_KPANEL_MIN_T
#define KVC_KPANEL_MIN_T 16
#endif
/* Pack rows [0, nr) of w (ws bytes apart, nr <= 16) for chunks [c0, c0 + kc) into pn. */
typedef void (*kvc_kpanel_pack_fn)(const char *w, size_t ws, int nr, int64_t c0, int kc, int64_t n,
                                   struct kvc_kpanel *pn);
/* generic_avx512.c: activation rows [t0, t1) x weight rows [r0, r1) of any Q8X type through
 * panels packed by pack (NULL: through the type's table unpacker). */
void kvc_q8x_tile_panel(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1, kvc_kpanel_pack_fn pack);

/* Transpose 16 rows' unpacked chunk into a panel. */
INLINE KVC_VNNI void kvc_kpanel_put(const struct kvc_unpacked up[16], struct kvc_kpanel *pn) {
    __m512 r[16];
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < 16; i++) r[i] = _mm512_load_ps((const float *)(up[i].u + 64 * k));
        kvc_transpose16_ps(r);
        for (int m = 0; m < 16; m++) _mm512_store_ps((float *)pn->u[16 * k + m], r[m]);
    }
    for (int i = 0; i < 16; i++) r[i] = _mm512_load_ps(up[i].a);
    kvc_transpose16_ps(r);
    for (int g = 0; g < 16; g++) _mm512_store_ps(pn->a[g], r[g]);
    for (int i = 0; i < 16; i++) r[i] = _mm512_load_ps(up[i].b);
    kvc_transpose16_ps(r);
    for (int g = 0; g < 16; g++) _mm512_store_ps(pn->b[g], r[g]);
}

/* The rows / tile / dot wrappers around a type's micro-kernel NAME##_mk; ONEROW(tl, t, r0, r1)
 * may take a tile of one activation row (decode) instead (returns 1 when it did). */
INLINE int kvc_onerow_none(const struct kvc_tile *tl, int t, int64_t r0, int64_t r1) {
    (void)tl, (void)t, (void)r0, (void)r1;
    return 0;
}
#define KVC_AVX512_DRIVER(NAME) KVC_AVX512_DRIVER_2(NAME, kvc_onerow_none, 0, NAME##_ppack)
#define KVC_AVX512_DRIVER_1(NAME, ONEROW) KVC_AVX512_DRIVER_2(NAME, ONEROW, 0, NULL)
/* The driver of a type whose one-row (decode) path is its own kernel MK1(NW, w, ws, x, n, y)
 * (prefetching itself) beside the register-unpack kernels of KVC_WTYPE_AVX512_MK(G, ...) for
 * several activation rows (G##_mk) and panels (G##_ppack). */
#define KVC_AVX512_DRIVER_MK1(NAME, G, MK1)                                                        \
    INLINE KVC_VNNI void NAME##_mk(const int NW, const int NX, const char *w, size_t ws, const char *x, \
                                   size_t xs, int64_t n, float *y, int64_t ldy) {                     \
        if (NX == 1) MK1(NW, w, ws, x, n, y);                                                         \
        else G##_mk(NW, NX, w, ws, x, xs, n, y, ldy);                                                 \
    }                                                                                                 \
    KVC_AVX512_DRIVER_2(NAME, kvc_onerow_none, 1, G##_ppack)
/* PFIN = 1: the micro-kernel's one-row path prefetches the rows ahead itself (spread over its
 * super-blocks, see kvc_pf_spread) instead of the driver's burst before each 4 rows. */
#define KVC_AVX512_DRIVER_2(NAME, ONEROW, PFIN, PACK)                                               \
    INLINE KVC_VNNI void NAME##_rows(const int NX, const char *w, size_t ws, int64_t nrows, const char *x, \
                                     size_t xs, int64_t n, float *y, int64_t ldy) {                   \
        int64_t r = 0;                                                                                \
        for (; r + 4 <= nrows; r += 4) {                                                              \
            if (NX == 1 && !(PFIN)) kvc_prefetch_rows4(w, ws, r, w + nrows * ws);                     \
            NAME##_mk(4, NX, w + r * ws, ws, x, xs, n, y + r, ldy);                                   \
        }                                                                                             \
        for (; r < nrows; r++) NAME##_mk(1, NX, w + r * ws, ws, x, xs, n, y + r, ldy);               \
    }                                                                                                 \
    static KVC_VNNI void NAME##_tile_vnni(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1) { \
        if (t1 - t0 == 1 && ONEROW(tl, t0, r0, r1)) return;                                           \
        if (t1 - t0 >= KVC_KPANEL_MIN_T) {                                                            \
            kvc_q8x_tile_panel(tl, t0, t1, r0, r1, PACK);                                             \
            return;                                                                                   \
        }                                                                                             \
        const struct kvc_weight *w = tl->w;                                                           \
        int64_t chunk = t1 - t0 <= NXMAX ? r1 - r0 : (int64_t)(WCHUNK_BYTES / w->row_bytes) & ~(int64_t)3; \
        if (chunk < 4) chunk = 4;                                                                     \
        for (int64_t c0 = r0; c0 < r1; c0 += chunk) {                                                 \
            const int64_t nr = r1 - c0 < chunk ? r1 - c0 : chunk;                                     \
            const char *wr = (const char *)w->data + (size_t)c0 * w->row_bytes;                       \
            for (int tt = t0; tt < t1; tt += NXMAX) {                                                 \
                const char *x = (const char *)tl->x + (size_t)tt * tl->x_stride;                      \
                float *y = tl->y + tt * tl->ldy + c0;                                                 \
                switch (t1 - tt < NXMAX ? t1 - tt : NXMAX) {                                          \
                case 1: NAME##_rows(1, wr, w->row_bytes, nr, x, tl->x_stride, w->n_in, y, tl->ldy); break; \
                case 2: NAME##_rows(2, wr, w->row_bytes, nr, x, tl->x_stride, w->n_in, y, tl->ldy); break; \
                case 3: NAME##_rows(3, wr, w->row_bytes, nr, x, tl->x_stride, w->n_in, y, tl->ldy); break; \
                default: NAME##_rows(4, wr, w->row_bytes, nr, x, tl->x_stride, w->n_in, y, tl->ldy); break; \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
    }                                                                                                 \
    static KVC_VNNI float NAME##_dot_vnni(int64_t n, const void *w, const void *x) {                  \
        float s;                                                                                      \
        NAME##_mk(1, 1, w, 0, x, 0, n, &s, 0);                                                        \
        return s;                                                                                     \
    }                                                                                                 \
    void kvc_tile_##NAME##_avx512(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1) { \
        if (kvc_avx512_use_vnni()) NAME##_tile_vnni(tl, t0, t1, r0, r1);                              \
        else kvc_wtype_get(NAME##_ID)->tile[KVC_ISA_AVX2](tl, t0, t1, r0, r1);                        \
    }                                                                                                 \
    float kvc_vdot_##NAME##_avx512(int64_t n, const void *w, const void *x) {                         \
        return kvc_avx512_use_vnni() ? NAME##_dot_vnni(n, w, x)                                       \
                                     : kvc_vec_dot(KVC_ISA_AVX2, NAME##_ID, n, w, x);                \
    }

#define KVC_WTYPE_AVX512_MK(NAME, UNPACK)                                                            \
    INLINE KVC_VNNI void NAME##_mk(const int NW, const int NX, const char *w, size_t ws, const char *x,  \
                                   size_t xs, int64_t n, float *y, int64_t ldy) {                     \
        const int64_t np = kvc_q8x_padded(n), nc = np / 256;                                          \
        __m512 acc[4][NXMAX];                                                                         \
        UNROLL for (int r = 0; r < NW; r++) UNROLL for (int j = 0; j < NX; j++)                       \
            acc[r][j] = _mm512_setzero_ps();                                                          \
        const __m512i zero = _mm512_setzero_si512();                                                  \
        for (int64_t c = 0; c < nc; c++) {                                                            \
            __m512i u[4][4];                                                                          \
            __m512 a16[4], b16[4];                                                                    \
            UNROLL for (int r = 0; r < NW; r++) UNPACK(w + r * ws, c, n, u[r], &a16[r], &b16[r]);     \
            UNROLL for (int j = 0; j < NX; j++) {                                                     \
                const __m512 s16 = _mm512_load_ps((const float *)(x + j * xs + 2 * np) + 16 * c);     \
                UNROLL for (int r = 0; r < NW; r++) acc[r][j] = _mm512_fmadd_ps(b16[r], s16, acc[r][j]); \
            }                                                                                         \
            UNROLL for (int k = 0; k < 4; k++) {                                                      \
                __m512 al[4];                                                                         \
                const __m512i idx = kvc_group_idx(k);                                                 \
                UNROLL for (int r = 0; r < NW; r++) al[r] = _mm512_permutexvar_ps(idx, a16[r]);       \
                UNROLL for (int j = 0; j < NX; j++) {                                                 \
                    const __m512i xq = _mm512_load_si512(x + j * xs + 256 * c + 64 * k);              \
                    const __m512 xd = _mm512_load_ps((const float *)(x + j * xs + np) + 64 * c + 16 * k); \
                    UNROLL for (int r = 0; r < NW; r++) {                                             \
                        const __m512i s = _mm512_dpbusd_epi32(zero, u[r][k], xq);                     \
                        acc[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(al[r], xd), acc[r][j]); \
                    }                                                                                 \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
        store_acc(NW, NX, acc, y, ldy);                                                               \
    }                                                                                                 \
    static KVC_VNNI void NAME##_ppack(const char *w, size_t ws, int nr, int64_t c0, int kc, int64_t n,    \
                                      struct kvc_kpanel *pn) {                                        \
        struct kvc_unpacked up[16];                                                                   \
        for (int c = 0; c < kc; c++, pn++) {                                                          \
            for (int i = 0; i < 16; i++) {                                                            \
                __m512i u[4];                                                                         \
                __m512 a, b;                                                                          \
                UNPACK(w + (size_t)(i < nr ? i : nr - 1) * ws, c0 + c, n, u, &a, &b);                 \
                UNROLL for (int k = 0; k < 4; k++) _mm512_store_si512(up[i].u + 64 * k, u[k]);         \
                _mm512_store_ps(up[i].a, a);                                                          \
                _mm512_store_ps(up[i].b, b);                                                          \
            }                                                                                         \
            kvc_kpanel_put(up, pn);                                                                   \
        }                                                                                             \
    }
#define KVC_WTYPE_AVX512(NAME, UNPACK) KVC_WTYPE_AVX512_MK(NAME, UNPACK) KVC_AVX512_DRIVER(NAME)

/* The 32-element block types (Q4_1, Q5_0, Q5_1, IQ4_NL), a block pair (64 weights) at a time
 * as the Q4_0 kernels: PAIR(const void *row, int64_t b, int two, __m512i *u, __m512 *d,
 * __m512 *m) gives blocks b, b + 1 (two = 0: block b only, the rest zero) as 64 unsigned
 * bytes u in element order, their scales d and (MIN = 1) offsets m as [b x 8, b + 1 x 8]
 * lanes: w = d (u - C) + m. Per pair and activation row: vpdpbusd of u against the Q8X
 * quants, started from -C times the lane sums of x, scaled by d and the activation's block
 * scales; m through the lane sums of x. Rows of any block count (384, 576, 896, ...).
 * One activation row (decode) takes groups of 4 blocks instead (KVC_LEGACY1_AVX512 below):
 * BB bytes per block, f16 d at byte 0 (and m at 2 when MIN), quants at QS, high bits at QH
 * (-1: none), LOOKUP(nibbles) the unsigned values of the nibbles (kvc_nib_id or a table). */
#define KVC_LEGACY_AVX512(NAME, PAIR, C, MIN, BB, QS, QH, LOOKUP)                                  \
    INLINE KVC_VNNI void NAME##_step(const int NW, const int NX, const int two, const char *w, size_t ws, \
                                     const char *x, size_t xs, int64_t np, int64_t p,                 \
                                     __m512 acc[4][NXMAX]) {                                          \
        const __m512i zero = _mm512_setzero_si512();                                                  \
        __m512i u[4];                                                                                 \
        __m512 dw[4], mw[4];                                                                          \
        UNROLL for (int r = 0; r < NW; r++) PAIR(w + r * ws, 2 * p, two, &u[r], &dw[r], &mw[r]);      \
        UNROLL for (int j = 0; j < NX; j++) {                                                         \
            const __m512i xq = _mm512_load_si512(x + j * xs + 64 * p);                                \
            const __m512 xd = _mm512_load_ps((const float *)(x + j * xs + np) + 16 * p);              \
            __m512i xk = zero;                                                                        \
            __m512 fx = _mm512_setzero_ps();                                                          \
            if (C) xk = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(C), xq));  \
            if (MIN) fx = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, _mm512_set1_epi8(1), xq)), xd); \
            UNROLL for (int r = 0; r < NW; r++) {                                                     \
                const __m512i s = _mm512_dpbusd_epi32(xk, u[r], xq);                                  \
                acc[r][j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s), dw[r]), xd, acc[r][j]); \
                if (MIN) acc[r][j] = _mm512_fmadd_ps(fx, mw[r], acc[r][j]);                           \
            }                                                                                         \
        }                                                                                             \
    }                                                                                                 \
    INLINE KVC_VNNI void NAME##_mk(const int NW, const int NX, const char *w, size_t ws, const char *x,  \
                                   size_t xs, int64_t n, float *y, int64_t ldy) {                     \
        const int64_t np = kvc_q8x_padded(n), nb = n / 32;                                            \
        __m512 acc[4][NXMAX];                                                                         \
        UNROLL for (int r = 0; r < NW; r++) UNROLL for (int j = 0; j < NX; j++)                       \
            acc[r][j] = _mm512_setzero_ps();                                                          \
        int64_t p = 0;                                                                                \
        for (; 2 * p + 2 <= nb; p++) NAME##_step(NW, NX, 1, w, ws, x, xs, np, p, acc);               \
        if (2 * p < nb) NAME##_step(NW, NX, 0, w, ws, x, xs, np, p, acc);                            \
        store_acc(NW, NX, acc, y, ldy);                                                               \
    }                                                                                                 \
    KVC_LEGACY1_AVX512(NAME, C, MIN, BB, QS, QH, LOOKUP)                                              \
    KVC_AVX512_DRIVER_1(NAME, NAME##_onerow)

/* ---- one activation row of the 32-element types (decode) ----
 * A group of 4 blocks (128 weights, 4 BB bytes) is read in place by two 64-byte loads (at
 * bytes 0 and 4 BB - 64) and word permutes: one gathers the 64 quant bytes (low nibbles =
 * elements 0..15 of the 4 blocks, high nibbles = 16..31), one the 4 (or 4 + 4) f16 scales
 * (offsets) by lane, one (QH) the 4 x 32 high bits as two 64-bit masks. The activation row is
 * packed once per tile in the matching order (struct kvc_x1), so no weight is reordered:
 * per group and row two vpdpbusd, started from -C times the lane sums of x. As the Q4_0
 * one-row kernel (arch/kernels_avx512_vnni.c). */
struct kvc_x1 {
    _Alignas(64) int8_t lo[64]; /* [block b of the group: x elements 32 b + 0..15] */
    int8_t hi[64];              /* [block b: elements 32 b + 16..31] */
    int32_t k[16];              /* -C times the lane sums of lo + hi */
    float d[16];                /* block b's activation scale in lanes 4b..4b+3 */
    float s[16];                /* d times the lane sums of lo + hi (the partner of m) */
};
#define KVC_X1_GROUPS 128 /* rows of up to 16384 elements: 40 KiB of stack */

INLINE KVC_VNNI __m512i kvc_nib_id(__m512i nib) { return nib; }

/* Q8X row x (n elements) as ng groups. */
INLINE KVC_VNNI void kvc_x1_pack(const int C, const char *x, int64_t n, int64_t ng, struct kvc_x1 *out) {
    const float *dl = (const float *)(x + kvc_q8x_padded(n));
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi8(1);
    for (int64_t g = 0; g < ng; g++, out++) {
        const __m512i P0 = _mm512_load_si512(x + 128 * g), P1 = _mm512_load_si512(x + 128 * g + 64);
        const __m512i lo = _mm512_shuffle_i64x2(P0, P1, 0x88), hi = _mm512_shuffle_i64x2(P0, P1, 0xDD);
        const __m512 d = _mm512_shuffle_f32x4(_mm512_load_ps(dl + 32 * g), _mm512_load_ps(dl + 32 * g + 16), 0x88);
        const __m512i sum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, one, lo), one, hi);
        _mm512_store_si512(out->lo, lo);
        _mm512_store_si512(out->hi, hi);
        _mm512_store_si512(out->k, _mm512_mullo_epi32(sum, _mm512_set1_epi32(-C)));
        _mm512_store_ps(out->d, d);
        _mm512_store_ps(out->s, _mm512_mul_ps(_mm512_cvtepi32_ps(sum), d));
    }
}

/* vpermt2w indices into (A = group bytes 0..63, B = bytes 4 BB - 64 ..): ix[0] the quants
 * (word j: block j / 8, word j % 8 of its qs), ix[1] the high bits (words 0..3: low halves
 * of the 4 qh, 4..7: high halves), ix[2] the scales (words 0..15: d of block j / 4, 16..31:
 * m of block (j - 16) / 4; without m, words 16..23 repeat ix[1]'s high bits, so Q5_0 takes
 * its scales and high bits from one permute). */
static inline int kvc_x1_word(int BB, int byte) {
    const int w = byte / 2;
    return w < 32 ? w : 32 + w - (2 * BB - 32);
}
static KVC_VNNI void kvc_x1_index(int BB, int QS, int QH, int MIN, __m512i ix[3]) {
    int16_t t[3][32];
    for (int j = 0; j < 32; j++) {
        t[0][j] = (int16_t)kvc_x1_word(BB, BB * (j / 8) + QS + 2 * (j % 8));
        t[1][j] = (int16_t)(QH >= 0 && j < 8 ? kvc_x1_word(BB, BB * (j % 4) + QH + 2 * (j / 4)) : 0);
        t[2][j] = (int16_t)kvc_x1_word(BB, BB * ((j % 16) / 4) + 2 * (j / 16));
        if (!MIN && j >= 16) t[2][j] = t[1][j - 16]; /* the high bits beside d: one permute */
    }
    for (int i = 0; i < 3; i++) ix[i] = _mm512_loadu_si512(t[i]);
}

#define KVC_LEGACY1_AVX512(NAME, C, MIN, BB, QS, QH, LOOKUP)                                          \
    _Static_assert(4 * (BB) >= 64 && (BB) <= 32 && (BB) % 2 == 0 && (QS) % 2 == 0 && ((QH) < 0 || (QH) % 2 == 0), \
                   #NAME " block layout for the one-row kernel");                                    \
    INLINE KVC_VNNI void NAME##_rows1(const int NW, const char *w, size_t ws, const char *x, int64_t n, \
                                      const struct kvc_x1 *px, int64_t ng, const __m512i ix[3], float *y) { \
        const int64_t np = kvc_q8x_padded(n), nb = n / 32;                                            \
        const __m512i m4 = _mm512_set1_epi8(0x0F), c16 = _mm512_set1_epi8(16);                       \
        __m512 acc[4][NXMAX];                                                                         \
        UNROLL for (int r = 0; r < NW; r++) acc[r][0] = _mm512_setzero_ps();                          \
        /* blocks past the last whole group: block pairs of the two-row kernel */                    \
        int64_t p = 2 * ng;                                                                           \
        for (; 2 * p + 2 <= nb; p++) NAME##_step(NW, 1, 1, w, ws, x, 0, np, p, acc);                 \
        if (2 * p < nb) NAME##_step(NW, 1, 0, w, ws, x, 0, np, p, acc);                              \
        for (int64_t g = 0; g < ng; g++, px++) {                                                      \
            const __m512i xlo = _mm512_load_si512(px->lo), xhi = _mm512_load_si512(px->hi);          \
            const __m512i k = _mm512_load_si512(px->k);                                               \
            const __m512 xd = _mm512_load_ps(px->d);                                                  \
            UNROLL for (int r = 0; r < NW; r++) {                                                     \
                const char *pw = w + r * ws + g * 4 * (BB);                                           \
                const __m512i A = _mm512_loadu_si512(pw), B = _mm512_loadu_si512(pw + 4 * (BB) - 64);  \
                const __m512i q = _mm512_permutex2var_epi16(A, ix[0], B);                             \
                __m512i lo = LOOKUP(_mm512_and_si512(q, m4));                                         \
                __m512i hi = LOOKUP(_mm512_and_si512(_mm512_srli_epi16(q, 4), m4));                   \
                const __m512i F = _mm512_permutex2var_epi16(A, ix[2], B);                             \
                if ((QH) >= 0) {                                                                      \
                    const __m128i h = MIN ? _mm512_castsi512_si128(_mm512_permutex2var_epi16(A, ix[1], B)) \
                                          : _mm512_extracti32x4_epi32(F, 2);                          \
                    lo = _mm512_mask_add_epi8(lo, _cvtu64_mask64((uint64_t)_mm_cvtsi128_si64(h)), lo, c16); \
                    hi = _mm512_mask_add_epi8(hi, _cvtu64_mask64((uint64_t)_mm_extract_epi64(h, 1)), hi, c16); \
                }                                                                                     \
                const __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(k, lo, xlo), hi, xhi);      \
                const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(F));                         \
                acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, xd), acc[r][0]);  \
                if (MIN) acc[r][0] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(F, 1)), \
                                                     _mm512_load_ps(px->s), acc[r][0]);              \
            }                                                                                         \
        }                                                                                             \
        UNROLL for (int r = 0; r < NW; r++) y[r] = _mm512_reduce_add_ps(acc[r][0]);                   \
    }                                                                                                 \
    static KVC_VNNI int NAME##_onerow(const struct kvc_tile *tl, int t, int64_t r0, int64_t r1) {     \
        const struct kvc_weight *w = tl->w;                                                           \
        const int64_t ng = w->n_in / 128;                                                             \
        if (ng == 0 || ng > KVC_X1_GROUPS) return 0;                                                  \
        struct kvc_x1 xb[KVC_X1_GROUPS];                                                              \
        __m512i ix[3];                                                                                \
        const char *x = (const char *)tl->x + (size_t)t * tl->x_stride;                               \
        kvc_x1_pack((int)(uint8_t)(C), x, w->n_in, ng, xb);                                           \
        kvc_x1_index(BB, QS, QH, MIN, ix);                                                                 \
        const size_t ws = w->row_bytes;                                                               \
        const char *w0 = (const char *)w->data + (size_t)r0 * ws, *end = (const char *)w->data + (size_t)r1 * ws; \
        float *y = tl->y + (int64_t)t * tl->ldy + r0;                                                 \
        const int64_t nr = r1 - r0;                                                                   \
        int64_t r = 0;                                                                                \
        for (; r + 4 <= nr; r += 4) {                                                                 \
            kvc_prefetch_rows4(w0, ws, r, end);                                                       \
            NAME##_rows1(4, w0 + r * ws, ws, x, w->n_in, xb, ng, ix, y + r);                          \
        }                                                                                             \
        for (; r < nr; r++) NAME##_rows1(1, w0 + r * ws, ws, x, w->n_in, xb, ng, ix, y + r);          \
        return 1;                                                                                     \
    }

#endif
