/* q3_k.c - Q3_K: super-blocks of 256 = 16 sub-blocks of 16, x = d * (sc - 32) * (q - 4) with
 * 3-bit q (2 low bits in qs, the third in hmask) and 6-bit sc (4 low bits: scales[j] or
 * scales[j - 8] >> 4; 2 high: scales[8 + j % 4] >> 2 (j / 4)); 110 bytes (3.4375 bits).
 * Element 128 n + 32 j + l: qs[32 n + l] bits 2j, 2j+1 and hmask[l] bit 4 n + j. */
#include "kquant.h"

typedef struct {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint16_t d;
} block_q3_K;
_Static_assert(sizeof(block_q3_K) == 110, "block_q3_K layout");

static int scale_of(const uint8_t *s, int j) {
    const int lo = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
    return (lo | ((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
}

static void decode(const block_q3_K *x, uint8_t *L, float *a, float *b) {
    for (int nh = 0; nh < 2; nh++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++)
                L[128 * nh + 32 * j + l] = (uint8_t)(((x->qs[32 * nh + l] >> (2 * j)) & 3) |
                                                    ((x->hmask[l] >> (4 * nh + j)) & 1) << 2);
    const float d = kvc_f16_to_f32(x->d);
    for (int g = 0; g < 16; g++) {
        a[g] = d * (float)scale_of(x->scales, g);
        b[g] = -4.0f * a[g];
    }
}

static void to_float(const void *row, float *y, int64_t n) {
    const block_q3_K *x = row;
    uint8_t L[256];
    float a[16], b[16];
    for (int64_t i = 0; i < n / 256; i++, y += 256) {
        decode(&x[i], L, a, b);
        for (int e = 0; e < 256; e++) y[e] = a[e / 16] * ((float)L[e] - 4.0f);
    }
}

static void from_float(const float *x, void *row, int64_t n) {
    block_q3_K *y = row;
    uint8_t L[256];
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        float sc[16];
        const float max = kvc_q_subblocks16(x, 4, L, sc);
        const float is = max != 0 ? -32.0f / max : 0;
        y[i].d = kvc_f32_to_f16(max != 0 ? 1.0f / is : 0);
        const float d = kvc_f16_to_f32(y[i].d);
        memset(y[i].scales, 0, 12);
        for (int g = 0; g < 16; g++) {
            const int ls = kvc_q_clamp_round(is * sc[g], -32, 31) + 32;
            if (g < 8) y[i].scales[g] |= (uint8_t)(ls & 15);
            else y[i].scales[g - 8] |= (uint8_t)((ls & 15) << 4);
            y[i].scales[8 + g % 4] |= (uint8_t)((ls >> 4) << (2 * (g / 4)));
            const float dl = d * (float)(ls - 32), idl = dl != 0 ? 1.0f / dl : 0;
            for (int l = 0; l < 16; l++)
                L[16 * g + l] = (uint8_t)(kvc_q_clamp_round(x[16 * g + l] * idl, -4, 3) + 4);
        }
        memset(y[i].hmask, 0, 32);
        memset(y[i].qs, 0, 64);
        for (int nh = 0; nh < 2; nh++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 32; l++) {
                    const int q = L[128 * nh + 32 * j + l];
                    y[i].qs[32 * nh + l] |= (uint8_t)((q & 3) << (2 * j));
                    y[i].hmask[l] |= (uint8_t)((q >> 2) << (4 * nh + j));
                }
    }
}

static void unpack(const void *row, int64_t chunk, int64_t n, struct kvc_unpacked *out) {
    (void)n;
    decode((const block_q3_K *)row + chunk, out->u, out->a, out->b);
}

/* ---- AVX2 kernels (kernel_avx2.h) ---- */
#include "kernel_avx2.h"

/* The 16 six-bit scales (scale_of, + 32) as bytes in group order: low nibbles of bytes 0-7,
 * then their high nibbles; the 2 high bits from bytes 8-11, pair 2 (g / 4). */
static inline __m128i q3k_scale_bytes(const uint8_t *sc) {
    uint32_t s0, s1, t;
    memcpy(&s0, sc, 4);
    memcpy(&s1, sc + 4, 4);
    memcpy(&t, sc + 8, 4);
    return _mm_set_epi32((int)(((s1 >> 4) & 0x0f0f0f0fu) | ((t >> 6) & 0x03030303u) << 4),
                         (int)(((s0 >> 4) & 0x0f0f0f0fu) | ((t >> 4) & 0x03030303u) << 4),
                         (int)((s1 & 0x0f0f0f0fu) | ((t >> 2) & 0x03030303u) << 4),
                         (int)((s0 & 0x0f0f0f0fu) | (t & 0x03030303u) << 4));
}
/* st->sc[h] = the int16 scales sc - 32 of groups 8h..8h+7 in both lanes; b = -4 a */
INLINE A2 void q3k_prep2(const void *row, int64_t c, struct kq2 *st, __m256 bl[2]) {
    const block_q3_K *x = (const block_q3_K *)row + c;
    const __m256i w = _mm256_sub_epi16(_mm256_cvtepu8_epi16(q3k_scale_bytes(x->scales)), _mm256_set1_epi16(32));
    kq2_scales_fixed_off(st, w, x->d, -4.0f, bl);
}
/* elements 32k.. = 128 n + 32 j + l (n = k / 4, j = k % 4): bits 2j, 2j + 1 of qs[32 n + l]
 * and bit 4n + j of hmask[l] moved to bit 2 (16-bit shifts by at most 5: the bits that
 * cross from the neighbouring byte never land on bit 2 or below) */
INLINE A2 __m256i q3k_piece2(const void *row, int64_t c, const int k, const struct kq2 *st, __m256i *sw) {
    const block_q3_K *x = (const block_q3_K *)row + c;
    const __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * (k / 4)));
    const __m256i hm = _mm256_loadu_si256((const __m256i *)x->hmask);
    const int hb = k; /* 4 n + j */
    const __m256i h = hb < 2 ? _mm256_slli_epi16(hm, 2 - hb) : hb == 2 ? hm : _mm256_srli_epi16(hm, hb - 2);
    const int g0 = (2 * k) % 8, g1 = g0 + 1;
    *sw = _mm256_shuffle_epi8(st->sc[k / 4], _mm256_set_m128i(_mm_set1_epi16((short)(2 * g1 | (2 * g1 + 1) << 8)),
                                                              _mm_set1_epi16((short)(2 * g0 | (2 * g0 + 1) << 8))));
    return _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * (k % 4)), _mm256_set1_epi8(3)),
                           _mm256_and_si256(h, _mm256_set1_epi8(4)));
}

KVC_KQUANT_AVX2(q3_K, q3k_prep2, q3k_piece2, 0)

/* ---- AVX512-VNNI kernels (kernel_avx512.h) ---- */
#include "kernel_avx512.h"
#define q3_K_ID KVC_TYPE_Q3_K

/* As Q2_K's pieces, plus the third bit from hmask[l] >> (4 (k / 2) + j). */
INLINE KVC_VNNI void q3k_bits512(const block_q3_K *x, __m512i u[4]) {
    const __m512i m2 = _mm512_set1_epi8(3), m4b = _mm512_set1_epi8(4);
    const __m256i h = _mm256_loadu_si256((const __m256i *)x->hmask);
    const __m512i H = _mm512_inserti64x4(_mm512_castsi256_si512(h), h, 1);
    UNROLL for (int k = 0; k < 4; k++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * (k / 2)));
        const __m512i Q = _mm512_inserti64x4(_mm512_castsi256_si512(q), q, 1);
        const int s0 = 4 * (k % 2), s1 = s0 + 2, h0 = 4 * (k / 2) + 2 * (k % 2), h1 = h0 + 1;
        const __m512i lo = _mm512_and_si512(_mm512_srlv_epi64(Q, _mm512_set_epi64(s1, s1, s1, s1, s0, s0, s0, s0)), m2);
        /* bit h of every byte to bit 2: a 64-bit rotate left by 2 - h (bits 3..7 and 0..1 of
         * the result are masked off), merged as lo | (hr & 4) */
        const int r0 = (2 - h0 + 64) % 64, r1 = (2 - h1 + 64) % 64;
        const __m512i hr = _mm512_rolv_epi64(H, _mm512_set_epi64(r1, r1, r1, r1, r0, r0, r0, r0));
        u[k] = _mm512_ternarylogic_epi32(lo, hr, m4b, 0xF8); /* lo | (hr & m4b) */
    }
}
INLINE KVC_VNNI void q3k_unpack512(const void *row, int64_t c, int64_t n, __m512i u[4], __m512 *a, __m512 *b) {
    (void)n;
    const block_q3_K *x = (const block_q3_K *)row + c;
    q3k_bits512(x, u);
    const __m128i v = q3k_scale_bytes(x->scales);
    const __m512i sc = _mm512_sub_epi32(_mm512_cvtepu8_epi32(v), _mm512_set1_epi32(32));
    *a = _mm512_mul_ps(_mm512_cvtepi32_ps(sc), _mm512_set1_ps(kvc_f16c(x->d)));
    *b = _mm512_mul_ps(*a, _mm512_set1_ps(-4.0f));
}

KVC_WTYPE_AVX512_MK(q3_Kg, q3k_unpack512)

/* One activation row (decode): the integer kernel of the 16-scale types (kernel_avx512.h),
 * u = 0..7, scales sc - 32 as signed bytes, offset -4. */
INLINE KVC_VNNI __m128i q3k_sc16(const block_q3_K *b) {
    return _mm_sub_epi8(q3k_scale_bytes(b->scales), _mm_set1_epi8(32));
}
#define Q3K_OFF(b, sc, d) KVC_KQ16_OFF_FIXED(-4.0f)
KVC_KQ16_MK1(q3k_mk1, block_q3_K, q3k_bits512, q3k_sc16, Q3K_OFF)

KVC_AVX512_DRIVER_MK1(q3_K, q3_Kg, q3k_mk1)

const struct kvc_wtype kvc_wt_q3_K = {
    .id = KVC_TYPE_Q3_K, .name = "q3_K", .blck = 256, .bytes = 110, .act = KVC_ACT_Q8K,
    .tile = {kvc_q8x_tile_scalar, kvc_tile_q3_K_avx2, kvc_tile_q3_K_avx512},
    .vec_dot = {NULL, kvc_vdot_q3_K_avx2, kvc_vdot_q3_K_avx512},
    .to_float = to_float, .from_float = from_float, .unpack = unpack,
    .fast = "AVX512-VNNI, AVX2 (register unpack)",
};
