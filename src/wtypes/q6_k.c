/* q6_k.c - Q6_K: super-blocks of 256 = 16 sub-blocks of 16, x = d * sc * (q - 32) with 6-bit
 * q (low 4 bits in ql, high 2 in qh) and int8 sc; f16 d last; 210 bytes (6.5625 bits).
 * Per half of 128: ql[l] = e(l) | e(l+64) << 4, ql[l+32] = e(l+32) | e(l+96) << 4 (low
 * nibbles), qh[l] = high bits of e(l), e(l+32), e(l+64), e(l+96) at bits 0, 2, 4, 6. */
#include "kquant.h"

typedef struct {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
} block_q6_K;
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K layout");

static void decode(const block_q6_K *x, uint8_t *L, float *a, float *b) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = x->ql + 64 * h, *qh = x->qh + 32 * h;
        uint8_t *o = L + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = (uint8_t)((ql[l] & 15) | ((qh[l] >> 0) & 3) << 4);
            o[l + 32] = (uint8_t)((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4);
            o[l + 64] = (uint8_t)((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4);
            o[l + 96] = (uint8_t)((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4);
        }
    }
    const float d = kvc_f16_to_f32(x->d);
    for (int g = 0; g < 16; g++) {
        a[g] = d * (float)x->scales[g];
        b[g] = -32.0f * a[g];
    }
}

static void to_float(const void *row, float *y, int64_t n) {
    const block_q6_K *x = row;
    uint8_t L[256];
    float a[16], b[16];
    for (int64_t i = 0; i < n / 256; i++, y += 256) {
        decode(&x[i], L, a, b);
        for (int e = 0; e < 256; e++) y[e] = a[e / 16] * ((float)L[e] - 32.0f);
    }
}

static void from_float(const float *x, void *row, int64_t n) {
    block_q6_K *y = row;
    uint8_t L[256];
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        float sc[16];
        const float max = kvc_q_subblocks16(x, 32, L, sc);
        const float is = max != 0 ? -128.0f / max : 0;
        y[i].d = kvc_f32_to_f16(max != 0 ? 1.0f / is : 0);
        const float d = kvc_f16_to_f32(y[i].d);
        for (int g = 0; g < 16; g++) {
            y[i].scales[g] = (int8_t)kvc_q_clamp_round(is * sc[g], -128, 127);
            const float dl = d * (float)y[i].scales[g], idl = dl != 0 ? 1.0f / dl : 0;
            for (int l = 0; l < 16; l++)
                L[16 * g + l] = (uint8_t)(kvc_q_clamp_round(x[16 * g + l] * idl, -32, 31) + 32);
        }
        for (int h = 0; h < 2; h++) {
            const uint8_t *e = L + 128 * h;
            for (int l = 0; l < 32; l++) {
                y[i].ql[64 * h + l] = (uint8_t)((e[l] & 15) | (e[l + 64] & 15) << 4);
                y[i].ql[64 * h + l + 32] = (uint8_t)((e[l + 32] & 15) | (e[l + 96] & 15) << 4);
                y[i].qh[32 * h + l] = (uint8_t)((e[l] >> 4) | (e[l + 32] >> 4) << 2 |
                                                (e[l + 64] >> 4) << 4 | (e[l + 96] >> 4) << 6);
            }
        }
    }
}

static void unpack(const void *row, int64_t chunk, int64_t n, struct kvc_unpacked *out) {
    (void)n;
    decode((const block_q6_K *)row + chunk, out->u, out->a, out->b);
}

/* ---- AVX2 kernels (kernel_avx2.h) ---- */
#include "kernel_avx2.h"

/* st->sc[h] = the int16 scales of groups 8h..8h+7 in both lanes; b = -32 a */
INLINE A2 void q6k_prep2(const void *row, int64_t c, struct kq2 *st, __m256 bl[2]) {
    const block_q6_K *x = (const block_q6_K *)row + c;
    const __m256i w = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    kq2_scales_fixed_off(st, w, x->d, -32.0f, bl);
}
/* elements 32k.. = 128 h + 32 i + l (h = k / 4, i = k % 4): nibble i / 2 of ql[64 h + 32 (i % 2) + l],
 * bits 2i, 2i + 1 of qh[32 h + l]; groups 2k (low lane) and 2k + 1 (high lane) */
INLINE A2 __m256i q6k_piece2(const void *row, int64_t c, const int k, const struct kq2 *st, __m256i *sw) {
    const block_q6_K *x = (const block_q6_K *)row + c;
    const int h = k / 4, i = k % 4;
    const __m256i q = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32 * (i % 2)));
    const __m256i hb = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x->qh + 32 * h)),
                                        _mm256_set1_epi8((char)(3 << 2 * i)));
    const __m256i h4 = i == 0 ? _mm256_slli_epi16(hb, 4) : i == 1 ? _mm256_slli_epi16(hb, 2)
                     : i == 2 ? hb : _mm256_srli_epi16(hb, 2);
    const int g0 = (2 * k) % 8, g1 = (2 * k + 1) % 8;
    *sw = _mm256_shuffle_epi8(st->sc[h], _mm256_set_m128i(_mm_set1_epi16((short)(2 * g1 | (2 * g1 + 1) << 8)),
                                                          _mm_set1_epi16((short)(2 * g0 | (2 * g0 + 1) << 8))));
    return _mm256_or_si256(_mm256_and_si256(i < 2 ? q : _mm256_srli_epi16(q, 4), _mm256_set1_epi8(0x0F)), h4);
}

KVC_KQUANT_AVX2(q6_K, q6k_prep2, q6k_piece2, 0)

/* ---- AVX512-VNNI kernels (kernel_avx512.h) ---- */
#include "kernel_avx512.h"
#define q6_K_ID KVC_TYPE_Q6_K

/* Per half h: L = ql[64h..64h+63] (ql[l] low 256 bits, ql[l+32] high), H = qh[32h..] in both
 * halves; u[2h] = low nibbles | ((H >> {0, 2}) & 3) << 4, u[2h+1] = high nibbles |
 * ((H >> {4, 6}) & 3) << 4: the high bits moved to bits 4-5 by one 64-bit shift per half
 * ({<< 4, << 2} and {>> 0, >> 2}), masked, and merged with the nibble by a bit select. */
INLINE KVC_VNNI void q6k_bits512(const block_q6_K *x, __m512i u[4]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i sh_a = _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4), sh_b = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
    UNROLL for (int h = 0; h < 2; h++) {
        const __m512i L = _mm512_loadu_si512(x->ql + 64 * h);
        const __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x->qh + 32 * h)));
        const __m512i ha = _mm512_and_si512(_mm512_sllv_epi64(H, sh_a), m30);
        const __m512i hb = _mm512_and_si512(_mm512_srlv_epi64(H, sh_b), m30);
        u[2 * h] = _mm512_ternarylogic_epi32(m4, L, ha, 0xCA); /* m4 ? L : ha */
        u[2 * h + 1] = _mm512_ternarylogic_epi32(m4, _mm512_srli_epi16(L, 4), hb, 0xCA);
    }
}
INLINE KVC_VNNI void q6k_unpack512(const void *row, int64_t c, int64_t n, __m512i u[4], __m512 *a, __m512 *b) {
    (void)n;
    const block_q6_K *x = (const block_q6_K *)row + c;
    q6k_bits512(x, u);
    const __m128i sc = _mm_loadu_si128((const __m128i *)x->scales);
    *a = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc)), _mm512_set1_ps(kvc_f16c(x->d)));
    *b = _mm512_mul_ps(*a, _mm512_set1_ps(-32.0f));
}

KVC_WTYPE_AVX512_MK(q6_Kg, q6k_unpack512)

/* One activation row (decode): the integer kernel of the 16-scale types (kernel_avx512.h),
 * u = 0..63 (|pair sum| <= 16256), int8 scales, offset -32. */
INLINE KVC_VNNI __m128i q6k_sc16(const block_q6_K *b) { return _mm_loadu_si128((const __m128i *)b->scales); }
#define Q6K_OFF(b, sc, d) KVC_KQ16_OFF_FIXED(-32.0f)
KVC_KQ16_MK1(q6k_mk1, block_q6_K, q6k_bits512, q6k_sc16, Q6K_OFF)

KVC_AVX512_DRIVER_MK1(q6_K, q6_Kg, q6k_mk1)

const struct kvc_wtype kvc_wt_q6_K = {
    .id = KVC_TYPE_Q6_K, .name = "q6_K", .blck = 256, .bytes = 210, .act = KVC_ACT_Q8K,
    .tile = {kvc_q8x_tile_scalar, kvc_tile_q6_K_avx2, kvc_tile_q6_K_avx512},
    .vec_dot = {NULL, kvc_vdot_q6_K_avx2, kvc_vdot_q6_K_avx512},
    .to_float = to_float, .from_float = from_float, .unpack = unpack,
    .fast = "AVX512-VNNI, AVX2 (register unpack)",
};
