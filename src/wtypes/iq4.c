/* iq4.c - the non-linear 4-bit types: IQ4_NL (blocks of 32: f16 d, 16 bytes of nibbles
 * indexing a fixed table of 16 values, x = d * table[q]; 18 bytes) and IQ4_XS (super-blocks
 * of 256: f16 d, 6-bit scales per 32 as 4 low bits in scales_l and 2 high bits in scales_h,
 * x = d * (ls - 32) * table[q]; 136 bytes). Nibble order as Q4_0 (j and j + 16 share byte j). */
#include "legacy.h"
#include <math.h>

/* llama.cpp's kvalues_iq4nl */
static const int8_t kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

typedef struct {
    uint16_t d;
    uint8_t qs[16];
} block_iq4_nl;
typedef struct {
    uint16_t d;
    uint16_t scales_h;  /* 2 high bits of the 8 sub-block scales */
    uint8_t scales_l[4];/* 4 low bits, two per byte (sub-block 2k in the low nibble) */
    uint8_t qs[128];
} block_iq4_xs;
_Static_assert(sizeof(block_iq4_nl) == 18 && sizeof(block_iq4_xs) == 136, "iq4 layouts");

/* 32 weights at scale dl from 16 bytes of nibbles. */
static void nl_block(const uint8_t *qs, float dl, float *y) {
    for (int j = 0; j < 16; j++) {
        y[j] = dl * (float)kv[qs[j] & 15];
        y[j + 16] = dl * (float)kv[qs[j] >> 4];
    }
}

static int xs_scale(const block_iq4_xs *x, int ib) {
    return (((x->scales_l[ib / 2] >> 4 * (ib % 2)) & 15) | ((x->scales_h >> 2 * ib) & 3) << 4) - 32;
}

static void nl_to_float(const void *row, float *y, int64_t n) {
    const block_iq4_nl *x = row;
    for (int64_t b = 0; b < n / 32; b++, y += 32) nl_block(x[b].qs, kvc_f16_to_f32(x[b].d), y);
}

static void xs_to_float(const void *row, float *y, int64_t n) {
    const block_iq4_xs *x = row;
    for (int64_t b = 0; b < n / 256; b++) {
        const float d = kvc_f16_to_f32(x[b].d);
        for (int ib = 0; ib < 8; ib++, y += 32) nl_block(x[b].qs + 16 * ib, d * (float)xs_scale(&x[b], ib), y);
    }
}

/* Nearest table index to v (table ascending). */
static int nearest(float v) {
    int best = 0;
    float be = fabsf(v - kv[0]);
    for (int k = 1; k < 16; k++) {
        const float e = fabsf(v - kv[k]);
        if (e < be) {
            be = e;
            best = k;
        }
    }
    return best;
}

/* Best scale for 32 values (weights x^2 + eps): start from max / table[0] and try nearby
 * scales, each refit by least squares; q receives the indices. */
static float nl_search(const float *x, uint8_t *q) {
    float amax = 0, max = 0, sum2 = 0;
    for (int j = 0; j < 32; j++) {
        sum2 += x[j] * x[j];
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    if (amax < 1e-30f) {
        for (int j = 0; j < 32; j++) q[j] = 8; /* table value 1, times d = 0 */
        return 0;
    }
    const float eps = sum2 / 32 * 1e-3f;
    float best_d = max / kv[0];
    double best = -1;
    for (int it = -8; it <= 8; it++) {
        const float id = (kv[0] + 0.5f * (float)it) / max;
        double sxl = 0, sll = 0;
        for (int j = 0; j < 32; j++) {
            const float w = x[j] * x[j] + eps, l = kv[nearest(id * x[j])];
            sxl += w * x[j] * l;
            sll += w * l * l;
        }
        if (sll > 0 && sxl * sxl / sll > best) { /* larger = smaller weighted error */
            best = sxl * sxl / sll;
            best_d = (float)(sxl / sll);
        }
    }
    const float id = best_d != 0 ? 1.0f / best_d : 0;
    for (int j = 0; j < 32; j++) q[j] = (uint8_t)nearest(x[j] * id);
    return best_d;
}

static void pack_nibbles(const uint8_t *q, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(q[j] | q[j + 16] << 4);
}

static void nl_from_float(const float *x, void *row, int64_t n) {
    block_iq4_nl *y = row;
    uint8_t q[32];
    for (int64_t b = 0; b < n / 32; b++, x += 32) {
        y[b].d = kvc_f32_to_f16(nl_search(x, q));
        pack_nibbles(q, y[b].qs);
    }
}

static void xs_from_float(const float *x, void *row, int64_t n) {
    block_iq4_xs *y = row;
    uint8_t q[32];
    for (int64_t b = 0; b < n / 256; b++, x += 256) {
        float sc[8], amax = 0, max = 0;
        for (int ib = 0; ib < 8; ib++) {
            sc[ib] = nl_search(x + 32 * ib, q);
            if (fabsf(sc[ib]) > amax) {
                amax = fabsf(sc[ib]);
                max = sc[ib];
            }
        }
        const float d = max / -32.0f, id = d != 0 ? 1.0f / d : 0;
        y[b].d = kvc_f32_to_f16(d);
        const float dq = kvc_f16_to_f32(y[b].d);
        y[b].scales_h = 0;
        memset(y[b].scales_l, 0, 4);
        for (int ib = 0; ib < 8; ib++) {
            const int ls = kvc_q_clamp_round(sc[ib] * id, -32, 31) + 32;
            y[b].scales_l[ib / 2] |= (uint8_t)((ls & 15) << 4 * (ib % 2));
            y[b].scales_h |= (uint16_t)((ls >> 4) << 2 * ib);
            /* indices for the stored scale */
            const float dl = dq * (float)(ls - 32), idl = dl != 0 ? 1.0f / dl : 0;
            for (int j = 0; j < 32; j++) q[j] = (uint8_t)nearest(x[32 * ib + j] * idl);
            pack_nibbles(q, y[b].qs + 16 * ib);
        }
    }
}

/* unpacked: u = table + 128 (1..241), b = -128 a */
static void unpack_block(const uint8_t *qs, float dl, struct kvc_unpacked *out, int k) {
    uint8_t *u = out->u + 32 * k;
    for (int j = 0; j < 16; j++) {
        u[j] = (uint8_t)(kv[qs[j] & 15] + 128);
        u[j + 16] = (uint8_t)(kv[qs[j] >> 4] + 128);
    }
    out->a[2 * k] = out->a[2 * k + 1] = dl;
    out->b[2 * k] = out->b[2 * k + 1] = -128.0f * dl;
}

static void nl_unpack(const void *row, int64_t chunk, int64_t n, struct kvc_unpacked *out) {
    const int valid = legacy_chunk(chunk, n, out);
    const block_iq4_nl *x = (const block_iq4_nl *)row + chunk * 8;
    for (int k = 0; k < valid; k++) unpack_block(x[k].qs, kvc_f16_to_f32(x[k].d), out, k);
}

static void xs_unpack(const void *row, int64_t chunk, int64_t n, struct kvc_unpacked *out) {
    (void)n;
    const block_iq4_xs *x = (const block_iq4_xs *)row + chunk;
    const float d = kvc_f16_to_f32(x->d);
    for (int k = 0; k < 8; k++) unpack_block(x->qs + 16 * k, d * (float)xs_scale(x, k), out, k);
}

/* ---- AVX2 kernels (kernel_avx2.h): nibbles index the signed table with vpshufb ---- */
#include "kernel_avx2.h"

INLINE A2 __m256i kv_lookup2(__m256i nib) {
    return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)kv)), nib);
}
INLINE A2 void nl_block2(const void *row, int64_t b, __m256i *u, __m256 *d, __m256 *m) {
    const block_iq4_nl *x = (const block_iq4_nl *)row + b;
    *u = kv_lookup2(kvc2_nibbles(x->qs));
    kvc2_f16_dm(x, d, NULL);
    (void)m;
}
/* st->sc[0]: the 8 sub-block scales ls - 32 as int16 in both lanes; no offsets */
INLINE A2 void xs_prep2(const void *row, int64_t c, struct kq2 *st, __m256 bl[2]) {
    const block_iq4_xs *x = (const block_iq4_xs *)row + c;
    short ls[8];
    for (int ib = 0; ib < 8; ib++) ls[ib] = (short)xs_scale(x, ib);
    st->sc[0] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ls));
    st->d = _mm256_cvtph_ps(_mm_set1_epi16((short)x->d));
    bl[0] = bl[1] = _mm256_setzero_ps();
}
INLINE A2 __m256i xs_piece2(const void *row, int64_t c, const int k, const struct kq2 *st, __m256i *sw) {
    const block_iq4_xs *x = (const block_iq4_xs *)row + c;
    *sw = kvc2_word_bcast(st->sc[0], k);
    return kv_lookup2(kvc2_nibbles(x->qs + 16 * k));
}

KVC_LEGACY_AVX2(iq4_nl, nl_block2, 0, 0, 1)
KVC_KQUANT_AVX2(iq4_xs, xs_prep2, xs_piece2, 1)

/* ---- AVX512-VNNI kernels (kernel_avx512.h): nibbles index table + 128 with vpshufb ---- */
#include "kernel_avx512.h"
#define iq4_nl_ID KVC_TYPE_IQ4_NL
#define iq4_xs_ID KVC_TYPE_IQ4_XS

INLINE KVC_VNNI __m512i kv_lookup(__m512i nib) {
    const __m128i t = _mm_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, (char)129, (char)141, (char)153, (char)166,
                                    (char)181, (char)197, (char)217, (char)241); /* kv + 128 */
    return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(t), nib);
}

INLINE KVC_VNNI void nl_pair(const void *row, int64_t b, const int two, __m512i *u, __m512 *d, __m512 *m) {
    const block_iq4_nl *x = (const block_iq4_nl *)row + b;
    *u = kv_lookup(kvc_nib_pair2(x[0].qs, x[1].qs, two));
    *d = kvc_pair_lanes(kvc_f16_pairs(&x[0], &x[1], two), 0);
    (void)m;
}

/* ls - 32 of the 8 sub-blocks (xs_scale) as dwords: nibbles of scales_l interleaved, 2 bits
 * of scales_h each. */
INLINE KVC_VNNI __m256i xs_scales8(const block_iq4_xs *x) {
    uint32_t sl;
    memcpy(&sl, x->scales_l, 4);
    const __m128i lo = _mm_unpacklo_epi8(_mm_cvtsi32_si128((int)(sl & 0x0f0f0f0fu)),
                                         _mm_cvtsi32_si128((int)((sl >> 4) & 0x0f0f0f0fu)));
    const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(x->scales_h),
                                                          _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
                                        _mm256_set1_epi32(3));
    return _mm256_sub_epi32(_mm256_or_si256(_mm256_cvtepu8_epi32(lo), _mm256_slli_epi32(hi, 4)), _mm256_set1_epi32(32));
}

INLINE KVC_VNNI void xs_unpack512(const void *row, int64_t c, int64_t n, __m512i u[4], __m512 *a, __m512 *b) {
    (void)n;
    const block_iq4_xs *x = (const block_iq4_xs *)row + c;
    UNROLL for (int k = 0; k < 4; k++) u[k] = kv_lookup(kvc_nib_pair(x->qs + 32 * k, x->qs + 32 * k + 16));
    const __m256i l8 = xs_scales8(x);
    const __m512i dup = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    const __m512i l16 = _mm512_permutexvar_epi32(dup, _mm512_castsi256_si512(l8));
    *a = _mm512_mul_ps(_mm512_cvtepi32_ps(l16), _mm512_set1_ps(kvc_f16c(x->d)));
    *b = _mm512_mul_ps(*a, _mm512_set1_ps(-128.0f));
}

KVC_LEGACY_AVX512(iq4_nl, nl_pair, (char)128, 0, 18, 2, -1, kv_lookup)
KVC_WTYPE_AVX512_MK(iq4_xsg, xs_unpack512)

/* IQ4_XS one activation row (decode): q8_K activations (one scale per 256), so a super-block's
 * products stay integers. The table values are signed (-127..113), so vpmaddubsw takes |value|
 * (a lookup of the absolute table) against the activation negated where the value is negative
 * (nibble < 8; q8_K quants lie in [-127, 127], so the negation cannot overflow): |pair sum| <=
 * 2 * 127 * 127; vpdpwssd against ls - 32 as words (sub-blocks
 * 2 k, 2 k + 1 of piece k); one convert and one FMA by d x the activation scale per super-block. */
INLINE KVC_VNNI void xs_mk1(const int NW, const char *w, size_t ws, const char *x, int64_t n, float *y) {
    const int64_t np = kvc_q8x_padded(n), nc = np / 256;
    const __m512i tabs = _mm512_broadcast_i32x4(_mm_setr_epi8(127, 104, 83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53,
                                                              69, 89, 113)); /* |kv| */
    const __m512i c8 = _mm512_set1_epi8(8), zero = _mm512_setzero_si512();
    __m512i six[4];
    UNROLL for (int k = 0; k < 4; k++)
        six[k] = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * k)), _mm256_set1_epi16((short)(2 * k + 1)), 1);
    __m512 acc[4];
    UNROLL for (int r = 0; r < NW; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t c = 0; c < nc; c++) {
        if (NW == 4) kvc_pf_spread(w, ws, c, nc);
        const float xd = ((const float *)(x + np))[64 * c];
        __m512i xq[4];
        UNROLL for (int k = 0; k < 4; k++) xq[k] = _mm512_load_si512(x + 256 * c + 64 * k);
        UNROLL for (int r = 0; r < NW; r++) {
            const block_iq4_xs *b = (const block_iq4_xs *)(w + r * ws) + c;
            const __m512i sw = _mm512_castsi128_si512(_mm256_cvtepi32_epi16(xs_scales8(b))); /* words ls - 32 */
            __m512i isum = zero;
            UNROLL for (int k = 0; k < 4; k++) {
                const __m512i nib = kvc_nib_pair(b->qs + 32 * k, b->qs + 32 * k + 16);
                const __m512i xs = _mm512_mask_sub_epi8(xq[k], _mm512_cmplt_epu8_mask(nib, c8), zero, xq[k]);
                isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(_mm512_shuffle_epi8(tabs, nib), xs),
                                           _mm512_permutexvar_epi16(six[k], sw));
            }
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(kvc_f16c(b->d) * xd), acc[r]);
        }
    }
    UNROLL for (int r = 0; r < NW; r++) y[r] = _mm512_reduce_add_ps(acc[r]);
}

KVC_AVX512_DRIVER_MK1(iq4_xs, iq4_xsg, xs_mk1)

const struct kvc_wtype kvc_wt_iq4_nl = {
    .id = KVC_TYPE_IQ4_NL, .name = "iq4_nl", .blck = 32, .bytes = 18, .act = KVC_ACT_Q8X,
    .tile = {kvc_q8x_tile_scalar, kvc_tile_iq4_nl_avx2, kvc_tile_iq4_nl_avx512},
    .vec_dot = {NULL, kvc_vdot_iq4_nl_avx2, kvc_vdot_iq4_nl_avx512},
    .to_float = nl_to_float, .from_float = nl_from_float, .unpack = nl_unpack, .signed_u = 1,
    .fast = "AVX512-VNNI, AVX2 (register unpack, vpshufb table)",
};
const struct kvc_wtype kvc_wt_iq4_xs = {
    .id = KVC_TYPE_IQ4_XS, .name = "iq4_xs", .blck = 256, .bytes = 136, .act = KVC_ACT_Q8K,
    .tile = {kvc_q8x_tile_scalar, kvc_tile_iq4_xs_avx2, kvc_tile_iq4_xs_avx512},
    .vec_dot = {NULL, kvc_vdot_iq4_xs_avx2, kvc_vdot_iq4_xs_avx512},
    .to_float = xs_to_float, .from_float = xs_from_float, .unpack = xs_unpack, .signed_u = 1,
    .fast = "AVX512-VNNI, AVX2 (register unpack, vpshufb table)",
};
