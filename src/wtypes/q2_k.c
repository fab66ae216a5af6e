/* q2_k.c - Q2_K: super-blocks of 256 = 16 sub-blocks of 16, x = d * (s & 15) * q - dmin *
 * (s >> 4) with 2-bit q and one byte s per sub-block; f16 d, dmin last; 84 bytes (2.625
 * bits). Element 128 n + 32 j + l: bits 2j, 2j+1 of qs[32 n + l]. */
#include "kquant.h"

typedef struct {
    uint8_t scales[16];
    uint8_t qs[64];
    uint16_t d, dmin;
} block_q2_K;
_Static_assert(sizeof(block_q2_K) == 84, "block_q2_K layout");

static void decode(const block_q2_K *x, uint8_t *L, float *a, float *b) {
    for (int nh = 0; nh < 2; nh++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++)
                L[128 * nh + 32 * j + l] = (x->qs[32 * nh + l] >> (2 * j)) & 3;
    const float d = kvc_f16_to_f32(x->d), dmin = kvc_f16_to_f32(x->dmin);
    for (int g = 0; g < 16; g++) {
        a[g] = d * (float)(x->scales[g] & 15);
        b[g] = -dmin * (float)(x->scales[g] >> 4);
    }
}

static void to_float(const void *row, float *y, int64_t n) {
    const block_q2_K *x = row;
    uint8_t L[256];
    float a[16], b[16];
    for (int64_t i = 0; i < n / 256; i++, y += 256) {
        decode(&x[i], L, a, b);
        for (int e = 0; e < 256; e++) y[e] = a[e / 16] * (float)L[e] + b[e / 16];
    }
}

static void from_float(const float *x, void *row, int64_t n) {
    block_q2_K *y = row;
    uint8_t L[256];
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        float sc[16], mn[16], max_sc = 0, max_mn = 0;
        for (int g = 0; g < 16; g++) {
            float w[16];
            for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * g + l]);
            sc[g] = kvc_q_affine(16, 3, x + 16 * g, w, L + 16 * g, &mn[g]);
            max_sc = fmaxf(max_sc, sc[g]);
            max_mn = fmaxf(max_mn, mn[g]);
        }
        const float is = max_sc > 0 ? 15.0f / max_sc : 0, im = max_mn > 0 ? 15.0f / max_mn : 0;
        y[i].d = kvc_f32_to_f16(max_sc / 15.0f);
        y[i].dmin = kvc_f32_to_f16(max_mn / 15.0f);
        const float d = kvc_f16_to_f32(y[i].d), dmin = kvc_f16_to_f32(y[i].dmin);
        for (int g = 0; g < 16; g++) {
            const int ls = kvc_q_clamp_round(is * sc[g], 0, 15), lm = kvc_q_clamp_round(im * mn[g], 0, 15);
            y[i].scales[g] = (uint8_t)(ls | lm << 4);
            const float dl = d * (float)ls, ml = dmin * (float)lm, idl = dl > 0 ? 1.0f / dl : 0;
            for (int l = 0; l < 16; l++)
                L[16 * g + l] = (uint8_t)kvc_q_clamp_round((x[16 * g + l] + ml) * idl, 0, 3);
        }
        memset(y[i].qs, 0, 64);
        for (int nh = 0; nh < 2; nh++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 32; l++)
                    y[i].qs[32 * nh + l] |= (uint8_t)(L[128 * nh + 32 * j + l] << (2 * j));
    }
}

static void unpack(const void *row, int64_t chunk, int64_t n, struct kvc_unpacked *out) {
    (void)n;
    decode((const block_q2_K *)row + chunk, out->u, out->a, out->b);
}

/* ---- AVX2 kernels (kernel_avx2.h) ---- */
#include "kernel_avx2.h"

/* st->sc[h] = the int16 scales s & 15 of groups 8h..8h+7 in both lanes; bl = -dmin (s >> 4) */
INLINE A2 void q2k_prep2(const void *row, int64_t c, struct kq2 *st, __m256 bl[2]) {
    const block_q2_K *x = (const block_q2_K *)row + c;
    const __m128i s = _mm_loadu_si128((const __m128i *)x->scales), m4 = _mm_set1_epi8(0x0F);
    const __m256i w = _mm256_cvtepu8_epi16(_mm_and_si128(s, m4));
    st->sc[0] = _mm256_permute2x128_si256(w, w, 0x00);
    st->sc[1] = _mm256_permute2x128_si256(w, w, 0x11);
    const __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)x->d | (uint32_t)x->dmin << 16)));
    st->d = _mm256_broadcastss_ps(dd);
    const __m256 nm = _mm256_set1_ps(-_mm_cvtss_f32(_mm_shuffle_ps(dd, dd, 1)));
    const __m128i m = _mm_and_si128(_mm_srli_epi16(s, 4), m4);
    bl[0] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(m)), nm);
    bl[1] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(m, 8))), nm);
}
/* elements 32k.. = 128 n + 32 j + l (n = k / 4, j = k % 4): bits 2j, 2j + 1 of qs[32 n + l];
 * groups 2k (low lane) and 2k + 1 (high lane) */
INLINE A2 __m256i q2k_piece2(const void *row, int64_t c, const int k, const struct kq2 *st, __m256i *sw) {
    const block_q2_K *x = (const block_q2_K *)row + c;
    const __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * (k / 4)));
    const int g0 = (2 * k) % 8, g1 = g0 + 1;
    *sw = _mm256_shuffle_epi8(st->sc[k / 4], _mm256_set_m128i(_mm_set1_epi16((short)(2 * g1 | (2 * g1 + 1) << 8)),
                                                              _mm_set1_epi16((short)(2 * g0 | (2 * g0 + 1) << 8))));
    return _mm256_and_si256(_mm256_srli_epi16(q, 2 * (k % 4)), _mm256_set1_epi8(3));
}

KVC_KQUANT_AVX2(q2_K, q2k_prep2, q2k_piece2, 0)

/* ---- AVX512-VNNI kernels (kernel_avx512.h) ---- */
#include "kernel_avx512.h"
#define q2_K_ID KVC_TYPE_Q2_K

/* Piece k (elements 64k..): qs[32 (k / 2) + l] >> 2 j, j = 2 (k % 2) for the first 32 and
 * j + 1 for the next 32 (64-bit lane shifts of the doubled 32 bytes, then & 3). */
INLINE KVC_VNNI void q2k_bits512(const block_q2_K *x, __m512i u[4]) {
    const __m512i m2 = _mm512_set1_epi8(3);
    UNROLL for (int k = 0; k < 4; k++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * (k / 2)));
        const __m512i Q = _mm512_inserti64x4(_mm512_castsi256_si512(q), q, 1);
        const int s0 = 4 * (k % 2), s1 = s0 + 2;
        u[k] = _mm512_and_si512(_mm512_srlv_epi64(Q, _mm512_set_epi64(s1, s1, s1, s1, s0, s0, s0, s0)), m2);
    }
}
INLINE KVC_VNNI void q2k_unpack512(const void *row, int64_t c, int64_t n, __m512i u[4], __m512 *a, __m512 *b) {
    (void)n;
    const block_q2_K *x = (const block_q2_K *)row + c;
    q2k_bits512(x, u);
    const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)x->scales));
    *a = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_and_si512(sc, _mm512_set1_epi32(15))),
                       _mm512_set1_ps(kvc_f16c(x->d)));
    *b = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(sc, 4)), _mm512_set1_ps(-kvc_f16c(x->dmin)));
}

KVC_WTYPE_AVX512_MK(q2_Kg, q2k_unpack512)

/* One activation row (decode): the integer kernel of the 16-scale types (kernel_avx512.h),
 * u = 0..3, scales s & 15, offsets -dmin (s >> 4). */
INLINE KVC_VNNI __m128i q2k_sc16(const block_q2_K *b) {
    return _mm_and_si128(_mm_loadu_si128((const __m128i *)b->scales), _mm_set1_epi8(15));
}
#define Q2K_OFF(b, sc, d)                                                                              \
    _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(b)->scales)), 4)), \
                  _mm512_set1_ps(-kvc_f16c((b)->dmin)))
KVC_KQ16_MK1(q2k_mk1, block_q2_K, q2k_bits512, q2k_sc16, Q2K_OFF)

KVC_AVX512_DRIVER_MK1(q2_K, q2_Kg, q2k_mk1)

const struct kvc_wtype kvc_wt_q2_K = {
    .id = KVC_TYPE_Q2_K, .name = "q2_K", .blck = 256, .bytes = 84, .act = KVC_ACT_Q8K,
    .tile = {kvc_q8x_tile_scalar, kvc_tile_q2_K_avx2, kvc_tile_q2_K_avx512},
    .vec_dot = {NULL, kvc_vdot_q2_K_avx2, kvc_vdot_q2_K_avx512},
    .to_float = to_float, .from_float = from_float, .unpack = unpack,
    .fast = "AVX512-VNNI, AVX2 (register unpack)",
};
