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

/* ---- AVX512-VNNI kernels (kernel_avx512.h) ---- */
#include "kernel_avx512.h"
#define q4_1_ID KVC_TYPE_Q4_1

INLINE KVC_VNNI void q4_1_unpack512(const void *row, int64_t c, int64_t n, __m512i u[4], __m512 *a, __m512 *b) {
    /* blocks of this chunk: 8, or fewer in a row's last chunk (rows of 384, 576, 896, ...);
     * an odd count goes through the table's unpacker into a buffer */
    const int valid = n / 32 - 8 * c < 8 ? (int)(n / 32 - 8 * c) : 8;
    if (valid & 1) {
        kvc_unpack_buffered(unpack, row, c, n, u, a, b);
        return;
    }
    const block_q4_1 *x = (const block_q4_1 *)row + 8 * c;
    uint16_t d[8], m[8];
    for (int k = 0; k < valid / 2; k++) u[k] = kvc_nib_pair(x[2 * k].qs, x[2 * k + 1].qs);
    for (int k = valid / 2; k < 4; k++) u[k] = _mm512_setzero_si512();
    for (int j = 0; j < 8; j++) {
        d[j] = j < valid ? x[j].d : 0;
        m[j] = j < valid ? x[j].m : 0;
    }
    *a = kvc_f16x8_dup(d);
    *b = kvc_f16x8_dup(m);
}

KVC_WTYPE_AVX512(q4_1, q4_1_unpack512)

const struct kvc_wtype kvc_wt_q4_1 = {
    .id = KVC_TYPE_Q4_1, .name = "q4_1", .blck = 32, .bytes = 20, .act = KVC_ACT_Q8X,
    .tile = {kvc_q8x_tile_scalar, kvc_q8x_tile_avx2, kvc_tile_q4_1_avx512},
    .vec_dot = {NULL, NULL, kvc_vdot_q4_1_avx512},
    .to_float = to_float, .from_float = from_float, .unpack = unpack,
    .fast = "AVX512-VNNI (register unpack); AVX2 generic",
};
