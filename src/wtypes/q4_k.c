/* q4_k.c - Q4_K: super-blocks of 256 = 8 sub-blocks of 32, x = d * sc * q - dmin * m with
 * 4-bit q and 6-bit sc, m (kquant.h packing); f16 d, dmin; 144 bytes (4.5 bits per weight).
 * qs: per 64 elements 32 bytes, low nibbles the first 32, high nibbles the next 32. */
#include "kquant.h"

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[128];
} block_q4_K;
_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K layout");

/* L[256] (0..15), a/b per 16 for one block. */
static void decode(const block_q4_K *x, uint8_t *L, float *a, float *b) {
    const float d = kvc_f16_to_f32(x->d), dmin = kvc_f16_to_f32(x->dmin);
    for (int j = 0; j < 4; j++) {
        const uint8_t *q = x->qs + 32 * j;
        for (int l = 0; l < 32; l++) {
            L[64 * j + l] = q[l] & 15;
            L[64 * j + 32 + l] = q[l] >> 4;
        }
    }
    k4_ab(x->scales, d, dmin, a, b);
}

static void to_float(const void *row, float *y, int64_t n) {
    const block_q4_K *x = row;
    uint8_t L[256];
    float a[16], b[16];
    for (int64_t i = 0; i < n / 256; i++, y += 256) {
        decode(&x[i], L, a, b);
        for (int e = 0; e < 256; e++) y[e] = a[e / 16] * (float)L[e] + b[e / 16];
    }
}

static void from_float(const float *x, void *row, int64_t n) {
    block_q4_K *y = row;
    uint8_t L[256];
    for (int64_t i = 0; i < n / 256; i++, x += 256) {
        k4_quantize(x, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * j + l] = (uint8_t)(L[64 * j + l] | L[64 * j + 32 + l] << 4);
    }
}

static void unpack(const void *row, int64_t chunk, int64_t n, struct kvc_unpacked *out) {
    (void)n;
    decode((const block_q4_K *)row + chunk, out->u, out->a, out->b);
}

/* ---- AVX2 kernels (kernel_avx2.h) ---- */
#include "kernel_avx2.h"

INLINE A2 void q4k_prep2(const void *row, int64_t c, struct kq2 *st, __m256 bl[2]) {
    const block_q4_K *x = (const block_q4_K *)row + c;
    kvc2_k4_prep(x->scales, x->d, x->dmin, st, bl);
}
/* sub-block k: the low (k even) or high nibbles of qs[32 (k / 2) ..] */
INLINE A2 __m256i q4k_piece2(const void *row, int64_t c, const int k, const struct kq2 *st, __m256i *sw) {
    const block_q4_K *x = (const block_q4_K *)row + c;
    const __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * (k / 2)));
    *sw = kvc2_word_bcast(st->sc[0], k);
    return _mm256_and_si256(k & 1 ? _mm256_srli_epi16(q, 4) : q, _mm256_set1_epi8(0x0F));
}

KVC_KQUANT_AVX2(q4_K, q4k_prep2, q4k_piece2, 0)

/* ---- AVX512-VNNI kernels (kernel_avx512.h) ---- */
#include "kernel_avx512.h"
#define q4_K_ID KVC_TYPE_Q4_K

INLINE KVC_VNNI void q4k_unpack512(const void *row, int64_t c, int64_t n, __m512i u[4], __m512 *a, __m512 *b) {
    (void)n;
    const block_q4_K *x = (const block_q4_K *)row + c;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    UNROLL for (int k = 0; k < 4; k++) { /* 32 bytes: low nibbles elements 64k.., high 64k+32.. */
        const __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * k));
        const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
        u[k] = _mm512_and_si512(z, m4);
    }
    k4_scales512(x->scales, kvc_f16c(x->d), kvc_f16c(x->dmin), a, b);
}

KVC_WTYPE_AVX512(q4_K, q4k_unpack512)

const struct kvc_wtype kvc_wt_q4_K = {
    .id = KVC_TYPE_Q4_K, .name = "q4_K", .blck = 256, .bytes = 144, .act = KVC_ACT_Q8X,
    .tile = {kvc_q8x_tile_scalar, kvc_tile_q4_K_avx2, kvc_tile_q4_K_avx512},
    .vec_dot = {NULL, kvc_vdot_q4_K_avx2, kvc_vdot_q4_K_avx512},
    .to_float = to_float, .from_float = from_float, .unpack = unpack,
    .fast = "AVX512-VNNI, AVX2 (register unpack)",
};
