/* q4_1.c - Q4_1: blocks of 32 weights, x = d * q + m with 4-bit q (low nibbles are elements
 * 0..15, high nibbles 16..31), f16 d and m: 20 bytes (5.0 bits per weight). */
#include "legacy.h"
#include <math.h>

typedef struct {
    uint16_t d, m;   /* f16 scale and offset */
    uint8_t qs[16];
} block_q4_1;
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1 layout");

static void to_float(const void *row, float *y, int64_t n) {
    const block_q4_1 *x = row;
    for (int64_t b = 0; b < n / 32; b++, y += 32) {
        const float d = kvc_f16_to_f32(x[b].d), m = kvc_f16_to_f32(x[b].m);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)(x[b].qs[j] & 15) + m;
            y[j + 16] = d * (float)(x[b].qs[j] >> 4) + m;
        }
    }
}

/* min/max per block, d = (max - min) / 15, q = round((x - min) / d) as llama.cpp. */
static void from_float(const float *x, void *row, int64_t n) {
    block_q4_1 *y = row;
    for (int64_t b = 0; b < n / 32; b++, x += 32) {
        float lo = x[0], hi = x[0];
        for (int j = 1; j < 32; j++) {
            lo = fminf(lo, x[j]);
            hi = fmaxf(hi, x[j]);
        }
        const float d = (hi - lo) / 15.0f, id = d != 0 ? 1.0f / d : 0;
        y[b].d = kvc_f32_to_f16(d);
        y[b].m = kvc_f32_to_f16(lo);
        for (int j = 0; j < 16; j++) {
            const int q0 = kvc_q_clamp_round((x[j] - lo) * id, 0, 15);
            const int q1 = kvc_q_clamp_round((x[j + 16] - lo) * id, 0, 15);
            y[b].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

static void unpack(const void *row, int64_t chunk, int64_t n, struct kvc_unpacked *out) {
    const int valid = legacy_chunk(chunk, n, out);
    const block_q4_1 *x = (const block_q4_1 *)row + chunk * 8;
    for (int k = 0; k < valid; k++) {
        uint8_t *u = out->u + 32 * k;
        for (int j = 0; j < 16; j++) {
            u[j] = x[k].qs[j] & 15;
            u[j + 16] = x[k].qs[j] >> 4;
        }
        out->a[2 * k] = out->a[2 * k + 1] = kvc_f16_to_f32(x[k].d);
        out->b[2 * k] = out->b[2 * k + 1] = kvc_f16_to_f32(x[k].m);
    }
}

/* ---- AVX2 kernels (kernel_avx2.h) ---- */
#include "kernel_avx2.h"

INLINE A2 void q4_1_block2(const void *row, int64_t b, __m256i *u, __m256 *d, __m256 *m) {
    const block_q4_1 *x = (const block_q4_1 *)row + b;
    *u = kvc2_nibbles(x->qs);
    kvc2_f16_dm(x, d, m);
}

KVC_LEGACY_AVX2(q4_1, q4_1_block2, 0, 1, 0)

/* ---- AVX512-VNNI kernels (kernel_avx512.h) ---- */
#include "kernel_avx512.h"
#define q4_1_ID KVC_TYPE_Q4_1

INLINE KVC_VNNI void q4_1_pair(const void *row, int64_t b, const int two, __m512i *u, __m512 *d, __m512 *m) {
    const block_q4_1 *x = (const block_q4_1 *)row + b;
    *u = kvc_nib_pair2(x[0].qs, x[1].qs, two);
    const __m128 f = kvc_f16_pairs(&x[0], &x[1], two);
    *d = kvc_pair_lanes(f, 0);
    *m = kvc_pair_lanes(f, 1);
}

KVC_LEGACY_AVX512(q4_1, q4_1_pair, 0, 1, 20, 4, -1, kvc_nib_id)

const struct kvc_wtype kvc_wt_q4_1 = {
    .id = KVC_TYPE_Q4_1, .name = "q4_1", .blck = 32, .bytes = 20, .act = KVC_ACT_Q8X,
    .tile = {kvc_q8x_tile_scalar, kvc_tile_q4_1_avx2, kvc_tile_q4_1_avx512},
    .vec_dot = {NULL, kvc_vdot_q4_1_avx2, kvc_vdot_q4_1_avx512},
    .to_float = to_float, .from_float = from_float, .unpack = unpack,
    .fast = "AVX512-VNNI, AVX2 (register unpack)",
};
