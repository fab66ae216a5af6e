/* q5_k.c - Q5_K: as Q4_K (kquant.h scales) with a fifth bit: x = d * sc * q - dmin * m,
 * q = nibble | 16 * high bit; qh[l] holds bit 2j for element 64 j + l and bit 2j + 1 for
 * element 64 j + 32 + l; 176 bytes (5.5 bits per weight). */
#include "kquant.h"

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
} block_q5_K;
_Static_assert(sizeof(block_q5_K) == 176, "block_q5_K layout");

static void decode(const block_q5_K *x, uint8_t *L, float *a, float *b) {
    const float d = kvc_f16_to_f32(x->d), dmin = kvc_f16_to_f32(x->dmin);
    for (int j = 0; j < 4; j++) {
        const uint8_t *q = x->qs + 32 * j;
        for (int l = 0; l < 32; l++) {
            L[64 * j + l] = (uint8_t)((q[l] & 15) | ((x->qh[l] >> (2 * j)) & 1) << 4);
            L[64 * j + 32 + l] = (uint8_t)((q[l] >> 4) | ((x->qh[l] >> (2 * j + 1)) & 1) << 4);
        }
    }
    k4_ab(x->scales, d, dmin, a, b);
}

static void to_float(const void *row, float *y, int64_t n) {
    const block_q5_K *x = row;
    uint8_t L[256];
    float a[16], b[16];
    for (int64_t i = 0; i < n / 256; i++, y += 256) {
        decode(&x[i], L, a, b);
        for (int e = 0; e < 256; e++) y[e] = a[e / 16] * (float)L[e] + b[e / 16];
    }
}

static void from_float(const float *x, void *row, int64_t n) {
    block_q5_K *y = row;
    uint8_t L[256];
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        k4_quantize(x, 31, L, y[i].scales, &y[i].d, &y[i].dmin);
        memset(y[i].qh, 0, 32);
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) {
                const int q0 = L[64 * j + l], q1 = L[64 * j + 32 + l];
                y[i].qs[32 * j + l] = (uint8_t)((q0 & 15) | (q1 & 15) << 4);
                y[i].qh[l] |= (uint8_t)((q0 >> 4) << (2 * j) | (q1 >> 4) << (2 * j + 1));
            }
    }
}

static void unpack(const void *row, int64_t chunk, int64_t n, struct kvc_unpacked *out) {
    (void)n;
    decode((const block_q5_K *)row + chunk, out->u, out->a, out->b);
}

/* ---- AVX2 kernels (kernel_avx2.h) ---- */
#include "kernel_avx2.h"

INLINE A2 void q5k_prep2(const void *row, int64_t c, struct kq2 *st, __m256 bl[2]) {
    const block_q5_K *x = (const block_q5_K *)row + c;
    kvc2_k4_prep(x->scales, x->d, x->dmin, st, bl);
}
/* sub-block k: nibbles as Q4_K plus bit k of qh[l], moved to bit 4 */
INLINE A2 __m256i q5k_piece2(const void *row, int64_t c, const int k, const struct kq2 *st, __m256i *sw) {
    const block_q5_K *x = (const block_q5_K *)row + c;
    const __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * (k / 2)));
    const __m256i hb = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)x->qh), _mm256_set1_epi8((char)(1 << k)));
    const __m256i h4 = k <= 4 ? _mm256_slli_epi16(hb, 4 - k) : _mm256_srli_epi16(hb, k - 4);
    *sw = kvc2_word_bcast(st->sc[0], k);
    return _mm256_or_si256(_mm256_and_si256(k & 1 ? _mm256_srli_epi16(q, 4) : q, _mm256_set1_epi8(0x0F)), h4);
}

KVC_KQUANT_AVX2(q5_K, q5k_prep2, q5k_piece2, 0)

/* ---- AVX512-VNNI kernels (kernel_avx512.h) ---- */
#include "kernel_avx512.h"
#define q5_K_ID KVC_TYPE_Q5_K

/* As Q4_K's (q4_k.c), the fifth bit of piece k from bit 2k (first 32) / 2k + 1 (next 32) of
 * qh, shifted per 64-bit lane of the doubled qh vector. */
INLINE KVC_VNNI void q5k_unpack_bits(const block_q5_K *x, __m512i u[4]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m1 = _mm512_set1_epi8(0x01);
    const __m256i h256 = _mm256_loadu_si256((const __m256i *)x->qh);
    const __m512i H = _mm512_inserti64x4(_mm512_castsi256_si512(h256), h256, 1);
    UNROLL for (int k = 0; k < 4; k++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * k));
        const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
        const __m512i sh = _mm512_set_epi64(2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k, 2 * k, 2 * k, 2 * k);
        const __m512i hb = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi64(H, sh), m1), 4);
        u[k] = _mm512_or_si512(_mm512_and_si512(z, m4), hb);
    }
}
INLINE KVC_VNNI void q5k_unpack512(const void *row, int64_t c, int64_t n, __m512i u[4], __m512 *a, __m512 *b) {
    (void)n;
    const block_q5_K *x = (const block_q5_K *)row + c;
    q5k_unpack_bits(x, u);
    k4_scales512(x->scales, kvc_f16c(x->d), kvc_f16c(x->dmin), a, b);
}

KVC_WTYPE_AVX512_MK(q5_Kg, q5k_unpack512)

/* One activation row (decode), as Q4_K's (q4_k.c): q8_K activations (one scale per 256), so a
 * super-block's products stay integers: u[k] (elements 64 k .. 64 k + 63, 5-bit) by vpmaddubsw
 * (|pair sum| <= 7936) and vpdpwssd against the 6-bit scales as words (sub-blocks 2 k, 2 k + 1);
 * one convert and one FMA by d x the activation scale per super-block; the mins through the
 * per-16 sums s16 in float. */
INLINE KVC_VNNI void q5k_mk1(const int NW, const char *w, size_t ws, const char *x, int64_t n, float *y) {
    const int64_t np = kvc_q8x_padded(n), nc = np / 256;
    __m512i six[4];
    UNROLL for (int k = 0; k < 4; k++)
        six[k] = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * k)), _mm256_set1_epi16((short)(2 * k + 1)), 1);
    __m512 acc[4];
    UNROLL for (int r = 0; r < NW; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t c = 0; c < nc; c++) {
        if (NW == 4) kvc_pf_spread(w, ws, c, nc);
        const __m512 s16n = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_load_ps((const float *)(x + 2 * np) + 16 * c));
        const float xd = ((const float *)(x + np))[64 * c];
        __m512i xq[4];
        UNROLL for (int k = 0; k < 4; k++) xq[k] = _mm512_load_si512(x + 256 * c + 64 * k);
        UNROLL for (int r = 0; r < NW; r++) {
            const block_q5_K *b = (const block_q5_K *)(w + r * ws) + c;
            __m512i sw;
            const __m512 dsc = k4_row1(b, s16n, xd, &acc[r], &sw);
            __m512i u[4], isum = _mm512_setzero_si512();
            q5k_unpack_bits(b, u);
            UNROLL for (int k = 0; k < 4; k++)
                isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(u[k], xq[k]), _mm512_permutexvar_epi16(six[k], sw));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), dsc, acc[r]);
        }
    }
    UNROLL for (int r = 0; r < NW; r++) y[r] = _mm512_reduce_add_ps(acc[r]);
}

KVC_AVX512_DRIVER_MK1(q5_K, q5_Kg, q5k_mk1)

const struct kvc_wtype kvc_wt_q5_K = {
    .id = KVC_TYPE_Q5_K, .name = "q5_K", .blck = 256, .bytes = 176, .act = KVC_ACT_Q8K,
    .tile = {kvc_q8x_tile_scalar, kvc_tile_q5_K_avx2, kvc_tile_q5_K_avx512},
    .vec_dot = {NULL, kvc_vdot_q5_K_avx2, kvc_vdot_q5_K_avx512},
    .to_float = to_float, .from_float = from_float, .unpack = unpack,
    .fast = "AVX512-VNNI, AVX2 (register unpack)",
};
