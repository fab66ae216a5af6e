/* table.c - the weight-type table: one row per type kvcodec computes with (the float types,
 * Q8_0 and Q4_0 from src/arch/, the Q8X types from their files here), the activation
 * formats (row bytes, quantization), and the generic scalar reference of the Q8X types. */
#include "wtype.h"
#include "util.h"
#include <math.h>
#include <string.h>

extern const struct kvc_wtype kvc_wt_q4_1, kvc_wt_q5_0, kvc_wt_q5_1, kvc_wt_q2_K, kvc_wt_q3_K,
    kvc_wt_q4_K, kvc_wt_q5_K, kvc_wt_q6_K, kvc_wt_iq4_nl, kvc_wt_iq4_xs;
void kvc_f16_row_to_f32(const void *row, float *out, int64_t n);
void kvc_bf16_row_to_f32(const void *row, float *out, int64_t n);

static void f32_to_float(const void *row, float *y, int64_t n) { memcpy(y, row, (size_t)n * sizeof(float)); }
static void f32_from_float(const float *x, void *row, int64_t n) { memcpy(row, x, (size_t)n * sizeof(float)); }
static void f16_from_float(const float *x, void *row, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const uint16_t h = kvc_f32_to_f16(x[i]);
        memcpy((char *)row + 2 * i, &h, 2);
    }
}
static void bf16_from_float(const float *x, void *row, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const uint16_t h = kvc_f32_to_bf16(x[i]);
        memcpy((char *)row + 2 * i, &h, 2);
    }
}
static void q8_0_to_float(const void *row, float *y, int64_t n) { kvc_dequantize_row_q8_0(row, y, n); }
static void q8_0_from_float(const float *x, void *row, int64_t n) { kvc_quantize_row_q8_0(x, row, n, KVC_ISA_SCALAR); }
static void q4_0_to_float(const void *row, float *y, int64_t n) { kvc_dequantize_row_q4_0(row, y, n); }
static void q4_0_from_float(const float *x, void *row, int64_t n) { kvc_quantize_row_q4_0(x, row, n); }

#define ARCH_ROW(t, ID, NAME, BLCK, BYTES, ACT, FAST)                                             \
    static const struct kvc_wtype wt_##t = {                                                      \
        .id = ID, .name = NAME, .blck = BLCK, .bytes = BYTES, .act = ACT,                         \
        .to_float = t##_to_float, .from_float = t##_from_float,                                   \
        .vec_dot = {kvc_vdot_##t##_scalar, kvc_vdot_##t##_avx2, kvc_vdot_##t##_avx512},           \
        .tile = {kvc_gemm_tile_scalar, kvc_tile_##t##_avx2, kvc_tile_##t##_avx512},               \
        .fast = FAST,                                                                             \
    };
#define f16_to_float kvc_f16_row_to_f32
#define bf16_to_float kvc_bf16_row_to_f32
ARCH_ROW(f32, KVC_TYPE_F32, "f32", 1, 4, KVC_ACT_F32, "AVX2/AVX-512 FMA")
ARCH_ROW(f16, KVC_TYPE_F16, "f16", 1, 2, KVC_ACT_F32, "AVX2/AVX-512 FMA")
ARCH_ROW(bf16, KVC_TYPE_BF16, "bf16", 1, 2, KVC_ACT_F32, "AVX2/AVX-512 FMA")
ARCH_ROW(q8_0, KVC_TYPE_Q8_0, "q8_0", 32, 34, KVC_ACT_Q8_0, "AVX2, AVX-512, VNNI (packed)")
ARCH_ROW(q4_0, KVC_TYPE_Q4_0, "q4_0", 32, 18, KVC_ACT_Q8_0, "AVX2, AVX-512, VNNI (packed)")

/* Indexed by GGUF type id. */
static const struct kvc_wtype *const table[] = {
    [KVC_TYPE_F32] = &wt_f32,         [KVC_TYPE_F16] = &wt_f16,       [KVC_TYPE_BF16] = &wt_bf16,
    [KVC_TYPE_Q8_0] = &wt_q8_0,       [KVC_TYPE_Q4_0] = &wt_q4_0,     [KVC_TYPE_Q4_1] = &kvc_wt_q4_1,
    [KVC_TYPE_Q5_0] = &kvc_wt_q5_0,   [KVC_TYPE_Q5_1] = &kvc_wt_q5_1, [KVC_TYPE_Q2_K] = &kvc_wt_q2_K,
    [KVC_TYPE_Q3_K] = &kvc_wt_q3_K,   [KVC_TYPE_Q4_K] = &kvc_wt_q4_K, [KVC_TYPE_Q5_K] = &kvc_wt_q5_K,
    [KVC_TYPE_Q6_K] = &kvc_wt_q6_K,   [KVC_TYPE_IQ4_NL] = &kvc_wt_iq4_nl,
    [KVC_TYPE_IQ4_XS] = &kvc_wt_iq4_xs,
};

const struct kvc_wtype *kvc_wtype_get(uint32_t type) {
    return type < sizeof table / sizeof table[0] ? table[type] : NULL;
}

double kvc_wtype_bpw(uint32_t type) {
    const struct kvc_type_size *ti = kvc_type_info(type);
    return ti ? 8.0 * ti->bytes / ti->blck : 0;
}

const char *kvc_wtype_names(void) {
    return "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K, q3_K, q4_K, q5_K, q6_K, iq4_nl, iq4_xs";
}

/* ---- activation formats ---- */

size_t kvc_act_row_bytes(enum kvc_act act, int64_t n) {
    switch (act) {
    case KVC_ACT_Q8_0: return (size_t)(n / QK8_0) * sizeof(block_q8_0);
    case KVC_ACT_Q8X:
    case KVC_ACT_Q8K: return kvc_q8x_row_bytes(n);
    default: return (size_t)n * sizeof(float);
    }
}

/* Q8X: Q8_0 blocks of the level's (bit-identical) quantizer, 8 at a time (one call per 256
 * elements), spread into the kernel layout. */
static void quantize_q8x(const float *x, void *out, int64_t n, enum kvc_isa isa) {
    const int64_t np = kvc_q8x_padded(n);
    int8_t *q = out;
    float *dl = (float *)((char *)out + np), *s16 = (float *)((char *)out + 2 * np);
    for (int64_t c = 0; c < np / 256; c++) {
        block_q8_0 blk[8];
        const int64_t nv = n - 256 * c < 256 ? n - 256 * c : 256; /* a multiple of 32 */
        kvc_quantize_row_q8_0(x + 256 * c, blk, nv, isa);
        memset(blk + nv / 32, 0, (size_t)(8 - nv / 32) * sizeof(block_q8_0));
        for (int k = 0; k < 8; k++) {
            const int64_t b = 8 * c + k;
            const float d = kvc_f16_to_f32(blk[k].d);
            memcpy(q + 32 * b, blk[k].qs, 32);
            for (int l = 0; l < 8; l++) dl[8 * b + l] = d;
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 16; l++) {
                s0 += blk[k].qs[l];
                s1 += blk[k].qs[16 + l];
            }
            s16[2 * b] = d * (float)s0;
            s16[2 * b + 1] = d * (float)s1;
        }
    }
}

void kvc_quantize_row_q8x(const float *x, void *out, int64_t n) { quantize_q8x(x, out, n, KVC_ISA_SCALAR); }

/* One q8_K block of nv <= 256 elements (the rest of the 256 quants zero); returns its scale. */
static float q8k_block(const float *x, int64_t nv, int8_t *q) {
    float amax = 0, max = 0;
    for (int64_t j = 0; j < nv; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    memset(q, 0, 256);
    if (amax == 0) return 0;
    const float iscale = -127.0f / max;
    for (int64_t j = 0; j < nv; j++) {
        const long v = lrintf(iscale * x[j]); /* the default rounding: ties to even */
        q[j] = (int8_t)(v > 127 ? 127 : v);
    }
    return 1.0f / iscale;
}

void kvc_q8k_finish(void *out, int64_t n, int64_t c, float d) {
    const int64_t np = kvc_q8x_padded(n);
    const int8_t *qc = (const int8_t *)out + 256 * c;
    float *dl = (float *)((char *)out + np) + 64 * c, *s16 = (float *)((char *)out + 2 * np) + 16 * c;
    for (int l = 0; l < 64; l++) dl[l] = d;
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int l = 0; l < 16; l++) s += qc[16 * g + l];
        s16[g] = d * (float)s;
    }
}

void kvc_quantize_row_q8k(const float *x, void *out, int64_t n) {
    for (int64_t c = 0; c < kvc_q8x_padded(n) / 256; c++) {
        const int64_t nv = n - 256 * c < 256 ? n - 256 * c : 256;
        kvc_q8k_finish(out, n, c, q8k_block(x + 256 * c, nv, (int8_t *)out + 256 * c));
    }
}

void kvc_act_quantize(enum kvc_act act, const float *x, void *out, int64_t n, enum kvc_isa isa) {
    switch (act) {
    case KVC_ACT_Q8_0: kvc_quantize_row_q8_0(x, out, n, isa); break;
    case KVC_ACT_Q8X: quantize_q8x(x, out, n, isa); break;
    case KVC_ACT_Q8K:
        if (isa >= KVC_ISA_AVX2 && kvc_isa_supported(KVC_ISA_AVX2)) kvc_quantize_row_q8k_avx2(x, out, n);
        else kvc_quantize_row_q8k(x, out, n);
        break;
    default: memcpy(out, x, (size_t)n * sizeof(float)); break;
    }
}

/* ---- scalar reference of the Q8X types: dequantized weights times dequantized
 * activations, summed in double ---- */

float kvc_q8x_dot_scalar(const struct kvc_wtype *t, int64_t n, const void *w, const void *x) {
    const int8_t *q = kvc_q8x_q(x);
    const float *dl = kvc_q8x_dl(x, n);
    float buf[256];
    double s = 0;
    for (int64_t b = 0; b < n / t->blck; b++) {
        t->to_float((const char *)w + (size_t)b * (size_t)t->bytes, buf, t->blck);
        for (int i = 0; i < t->blck; i++) {
            const int64_t e = b * t->blck + i;
            s += (double)buf[i] * ((double)q[e] * dl[e / 4]);
        }
    }
    return (float)s;
}

void kvc_q8x_tile_scalar(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1) {
    const struct kvc_weight *w = tl->w;
    const struct kvc_wtype *t = kvc_wtype_get(w->type);
    for (int tt = t0; tt < t1; tt++) {
        const void *x = (const char *)tl->x + (size_t)tt * tl->x_stride;
        for (int64_t r = r0; r < r1; r++)
            tl->y[tt * tl->ldy + r] =
                kvc_q8x_dot_scalar(t, w->n_in, (const char *)w->data + (size_t)r * w->row_bytes, x);
    }
}

/* Dequantize row r of W (any table type). */
void kvc_weight_row_to_f32(const struct kvc_weight *w, int64_t r, float *out) {
    const struct kvc_wtype *t = kvc_wtype_get(w->type);
    const void *row = (const char *)w->data + (size_t)r * w->row_bytes;
    if (t) t->to_float(row, out, w->n_in);
    else memset(out, 0, (size_t)w->n_in * sizeof(float));
}
