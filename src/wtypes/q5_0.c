/* q5_0.c - Q5_0: blocks of 32 weights, x = d * (q - 16) with 5-bit q: low 4 bits in nibbles
 * (elements j and j + 16 share byte j), bit 4 of element j in bit j of qh: 22 bytes. */
#include "legacy.h"
#include <math.h>

typedef struct {
    uint16_t d;     /* f16 scale */
    uint8_t qh[4];  /* 32 high bits, little-endian */
    uint8_t qs[16];
} block_q5_0;
_Static_assert(sizeof(block_q5_0) == 22, "block_q5_0 layout");

static inline uint32_t qh32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* 5-bit value of element j (0..31) of a block with nibbles qs and high bits h */
static inline int q5(const uint8_t *qs, uint32_t h, int j) {
    const int lo = j < 16 ? qs[j] & 15 : qs[j - 16] >> 4;
    return lo | (int)((h >> j) & 1) << 4;
}

static void to_float(const void *row, float *y, int64_t n) {
    const block_q5_0 *x = row;
    for (int64_t b = 0; b < n / 32; b++, y += 32) {
        const float d = kvc_f16_to_f32(x[b].d);
        const uint32_t h = qh32(x[b].qh);
        for (int j = 0; j < 32; j++) y[j] = d * (float)(q5(x[b].qs, h, j) - 16);
    }
}

/* d = max / -16 (max: the signed value of largest magnitude), q = round(x / d) + 16, as
 * llama.cpp. */
static void from_float(const float *x, void *row, int64_t n) {
    block_q5_0 *y = row;
    for (int64_t b = 0; b < n / 32; b++, x += 32) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -16.0f, id = d != 0 ? 1.0f / d : 0;
        y[b].d = kvc_f32_to_f16(d);
        uint32_t h = 0;
        for (int j = 0; j < 16; j++) {
            const int q0 = kvc_q_clamp_round(x[j] * id, -16, 15) + 16;
            const int q1 = kvc_q_clamp_round(x[j + 16] * id, -16, 15) + 16;
            y[b].qs[j] = (uint8_t)((q0 & 15) | (q1 & 15) << 4);
            h |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + 16);
        }
        for (int k = 0; k < 4; k++) y[b].qh[k] = (uint8_t)(h >> 8 * k);
    }
}

static void unpack(const void *row, int64_t chunk, int64_t n, struct kvc_unpacked *out) {
    const int valid = legacy_chunk(chunk, n, out);
    const block_q5_0 *x = (const block_q5_0 *)row + chunk * 8;
    for (int k = 0; k < valid; k++) {
        const uint32_t h = qh32(x[k].qh);
        for (int j = 0; j < 32; j++) out->u[32 * k + j] = (uint8_t)q5(x[k].qs, h, j);
        const float d = kvc_f16_to_f32(x[k].d);
        out->a[2 * k] = out->a[2 * k + 1] = d;
        out->b[2 * k] = out->b[2 * k + 1] = -16.0f * d;
    }
}

/* ---- AVX2 kernels (kernel_avx2.h) ---- */
#include "kernel_avx2.h"

INLINE A2 void q5_0_block2(const void *row, int64_t b, __m256i *u, __m256 *d, __m256 *m) {
    const block_q5_0 *x = (const block_q5_0 *)row + b;
    *u = _mm256_or_si256(kvc2_nibbles(x->qs), kvc2_bits16(x->qh));
    kvc2_f16_dm(x, d, NULL);
    (void)m;
}

KVC_LEGACY_AVX2(q5_0, q5_0_block2, 16, 0, 0)

/* ---- AVX512-VNNI kernels (kernel_avx512.h) ---- */
#include "kernel_avx512.h"
#define q5_0_ID KVC_TYPE_Q5_0

INLINE KVC_VNNI void q5_0_pair(const void *row, int64_t b, const int two, __m512i *u, __m512 *d, __m512 *m) {
    const block_q5_0 *x = (const block_q5_0 *)row + b;
    *u = kvc_q5_pair(x[0].qs, x[1].qs, x[0].qh, x[1].qh, two);
    *d = kvc_pair_lanes(kvc_f16_pairs(&x[0], &x[1], two), 0);
    (void)m;
}

KVC_LEGACY_AVX512(q5_0, q5_0_pair, 16, 0, 22, 6, 2, kvc_nib_id)

const struct kvc_wtype kvc_wt_q5_0 = {
    .id = KVC_TYPE_Q5_0, .name = "q5_0", .blck = 32, .bytes = 22, .act = KVC_ACT_Q8X,
    .tile = {kvc_q8x_tile_scalar, kvc_tile_q5_0_avx2, kvc_tile_q5_0_avx512},
    .vec_dot = {NULL, kvc_vdot_q5_0_avx2, kvc_vdot_q5_0_avx512},
    .to_float = to_float, .from_float = from_float, .unpack = unpack,
    .fast = "AVX512-VNNI, AVX2 (register unpack)",
};
