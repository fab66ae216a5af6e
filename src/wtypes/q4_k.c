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

KVC_WTYPE_AVX512_MK(q4_Kg, q4k_unpack512)

/* One activation row (decode): 128 weights per 64-byte load of quants. Low nibbles of qs
 * bytes 64 kk .. 64 kk + 63 are elements [128 kk + 0..31, 128 kk + 64..95] (sub-blocks 4 kk,
 * 4 kk + 2), high nibbles [128 kk + 32..63, 128 kk + 96..127] (4 kk + 1, 4 kk + 3); the
 * activation pieces are regrouped to match with 128-bit lane shuffles (shared by the NW rows)
 * instead of reordering every weight row. The activation is q8_K (one scale per 256), so a
 * super-block's products stay integers: vpmaddubsw (pairs of 4-bit x 8-bit, |sum| <= 3840)
 * and vpdpwssd against the 6-bit sub-block scales as words (|lane| < 2^21 per super-block),
 * one convert and one FMA by d x the activation's scale per super-block; the mins through
 * the per-16 sums s16 in float as before. */
INLINE KVC_VNNI void q4k_mk1(const int NW, const char *w, size_t ws, const char *x, int64_t n, float *y) {
    const int64_t np = kvc_q8x_padded(n), nc = np / 256;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    /* word lanes 0..15 take sub-block s0, 16..31 s1 of the 8 scale words */
#define Q4K_SIDX(s0, s1) _mm512_inserti64x4(_mm512_set1_epi16(s0), _mm256_set1_epi16(s1), 1)
    const __m512i six[2][2] = {{Q4K_SIDX(0, 2), Q4K_SIDX(1, 3)}, {Q4K_SIDX(4, 6), Q4K_SIDX(5, 7)}};
#undef Q4K_SIDX
    __m512 acc[4];
    UNROLL for (int r = 0; r < NW; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t c = 0; c < nc; c++) {
        if (NW == 4) kvc_pf_spread(w, ws, c, nc);
        const __m512 s16n = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_load_ps((const float *)(x + 2 * np) + 16 * c));
        const float xd = ((const float *)(x + np))[64 * c];
        __m512i isum[4], sw[4];
        __m512 dsc[4];
        UNROLL for (int r = 0; r < NW; r++) {
            dsc[r] = k4_row1((const block_q4_K *)(w + r * ws) + c, s16n, xd, &acc[r], &sw[r]);
            isum[r] = _mm512_setzero_si512();
        }
        UNROLL for (int kk = 0; kk < 2; kk++) {
            const __m512i P0 = _mm512_load_si512(x + 256 * c + 128 * kk);
            const __m512i P1 = _mm512_load_si512(x + 256 * c + 128 * kk + 64);
            const __m512i xlo = _mm512_shuffle_i64x2(P0, P1, 0x44), xhi = _mm512_shuffle_i64x2(P0, P1, 0xEE);
            UNROLL for (int r = 0; r < NW; r++) {
                const block_q4_K *b = (const block_q4_K *)(w + r * ws) + c;
                const __m512i q = _mm512_loadu_si512(b->qs + 64 * kk);
                const __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
                isum[r] = _mm512_dpwssd_epi32(isum[r], _mm512_maddubs_epi16(lo, xlo),
                                              _mm512_permutexvar_epi16(six[kk][0], sw[r]));
                isum[r] = _mm512_dpwssd_epi32(isum[r], _mm512_maddubs_epi16(hi, xhi),
                                              _mm512_permutexvar_epi16(six[kk][1], sw[r]));
            }
        }
        UNROLL for (int r = 0; r < NW; r++) acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r]), dsc[r], acc[r]);
    }
    UNROLL for (int r = 0; r < NW; r++) y[r] = _mm512_reduce_add_ps(acc[r]);
}

KVC_AVX512_DRIVER_MK1(q4_K, q4_Kg, q4k_mk1)

const struct kvc_wtype kvc_wt_q4_K = {
    .id = KVC_TYPE_Q4_K, .name = "q4_K", .blck = 256, .bytes = 144, .act = KVC_ACT_Q8K,
    .tile = {kvc_q8x_tile_scalar, kvc_tile_q4_K_avx2, kvc_tile_q4_K_avx512},
    .vec_dot = {NULL, kvc_vdot_q4_K_avx2, kvc_vdot_q4_K_avx512},
    .to_float = to_float, .from_float = from_float, .unpack = unpack,
    .fast = "AVX512-VNNI, AVX2 (register unpack)",
};
