/* kernels_scalar.c - scalar reference kernels: Q8_0/Q4_0 quantize and dequantize with
 * GGML's rounding rules, f16/bf16 row conversion, dot products of the float / Q8_0 / Q4_0 types,
 * f32 dot/axpy and the scalar matmul tile. The SIMD versions are tested against these. */
#include "kernels_internal.h"
#include "wtypes/wtype.h"
#include "../util.h"
#include <math.h>

void kvc_quantize_row_q8_0_scalar(const float *x, block_q8_0 *y, int64_t n) {
    for (int64_t b = 0; b < n / QK8_0; b++, x += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = kvc_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++) y[b].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

void kvc_quantize_row_q4_0(const float *x, block_q4_0 *y, int64_t n) {
    for (int64_t b = 0; b < n / QK4_0; b++, x += QK4_0) {
        float amax = 0.0f, max = 0.0f; /* max: the signed value of largest magnitude */
        for (int j = 0; j < QK4_0; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = kvc_f32_to_f16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int8_t lo = (int8_t)(x[j] * id + 8.5f), hi = (int8_t)(x[j + 16] * id + 8.5f);
            uint8_t q0 = (uint8_t)(lo < 15 ? lo : 15), q1 = (uint8_t)(hi < 15 ? hi : 15);
            y[b].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void kvc_dequantize_row_q8_0(const block_q8_0 *x, float *y, int64_t n) {
    for (int64_t b = 0; b < n / QK8_0; b++) {
        const float d = kvc_f16_to_f32(x[b].d);
        for (int j = 0; j < QK8_0; j++) y[b * QK8_0 + j] = d * (float)x[b].qs[j];
    }
}

void kvc_dequantize_row_q4_0(const block_q4_0 *x, float *y, int64_t n) {
    for (int64_t b = 0; b < n / QK4_0; b++) {
        const float d = kvc_f16_to_f32(x[b].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[b * QK4_0 + j] = d * (float)((x[b].qs[j] & 15) - 8);
            y[b * QK4_0 + j + 16] = d * (float)((x[b].qs[j] >> 4) - 8);
        }
    }
}

/* Row conversions of the float types (rows of the wtypes table). */
void kvc_f16_row_to_f32(const void *row, float *out, int64_t n) {
    const unsigned char *p = row;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        out[i] = kvc_f16_to_f32(h);
    }
}
void kvc_bf16_row_to_f32(const void *row, float *out, int64_t n) {
    const unsigned char *p = row;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        out[i] = kvc_bf16_to_f32(h);
    }
}

/* ---- dot products: sum_i W[i] * x[i] ---- */

static float dot_f16_f32(int64_t n, const uint16_t *w, const float *x) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += kvc_f16_to_f32(w[i]) * x[i];
    return s;
}

static float dot_bf16_f32(int64_t n, const uint16_t *w, const float *x) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += kvc_bf16_to_f32(w[i]) * x[i];
    return s;
}

/* Per block: integer sum of products, scaled by d_w * d_x (as GGML). */
static float dot_q8_0_q8_0(int64_t n, const block_q8_0 *w, const block_q8_0 *x) {
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++) sumi += w[b].qs[j] * x[b].qs[j];
        s += (float)sumi * (kvc_f16_to_f32(w[b].d) * kvc_f16_to_f32(x[b].d));
    }
    return s;
}

static float dot_q4_0_q8_0(int64_t n, const block_q4_0 *w, const block_q8_0 *x) {
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK4_0; b++) {
        int sumi = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            sumi += ((w[b].qs[j] & 15) - 8) * x[b].qs[j];
            sumi += ((w[b].qs[j] >> 4) - 8) * x[b].qs[j + 16];
        }
        s += (float)sumi * (kvc_f16_to_f32(w[b].d) * kvc_f16_to_f32(x[b].d));
    }
    return s;
}

float kvc_dot_f32_scalar(const float *a, const float *b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

float kvc_vdot_f32_scalar(int64_t n, const void *w, const void *x) { return kvc_dot_f32_scalar(w, x, n); }
float kvc_vdot_f16_scalar(int64_t n, const void *w, const void *x) { return dot_f16_f32(n, w, x); }
float kvc_vdot_bf16_scalar(int64_t n, const void *w, const void *x) { return dot_bf16_f32(n, w, x); }
float kvc_vdot_q8_0_scalar(int64_t n, const void *w, const void *x) { return dot_q8_0_q8_0(n, w, x); }
float kvc_vdot_q4_0_scalar(int64_t n, const void *w, const void *x) { return dot_q4_0_q8_0(n, w, x); }

void kvc_axpy_f32_scalar(float a, const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void kvc_gemm_tile_scalar(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1) {
    const struct kvc_weight *w = tl->w;
    const kvc_vec_dot_fn dot = kvc_wtype_get(w->type)->vec_dot[KVC_ISA_SCALAR];
    for (int t = t0; t < t1; t++) {
        const void *x = (const char *)tl->x + (size_t)t * tl->x_stride;
        for (int64_t r = r0; r < r1; r++)
            tl->y[t * tl->ldy + r] = dot(w->n_in, (const char *)w->data + (size_t)r * w->row_bytes, x);
    }
}
