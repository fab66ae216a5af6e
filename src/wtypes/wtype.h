/* wtype.h - the weight-type traits table (ggml-style): one row per GGUF weight type kvcodec
 * computes with (name, block size and bytes, row dequantize/quantize, the activation format
 * its dot products use, a scalar reference dot and per-ISA dot / matmul-tile entry points).
 * A new type is one file in src/wtypes/ plus one row in table.c. */
#ifndef KVC_WTYPE_H
#define KVC_WTYPE_H

#include "arch/kernels_internal.h"
#include <stddef.h>
#include <stdint.h>

/* Activation formats of the dot products. */
enum kvc_act {
    KVC_ACT_F32 = 0,  /* f32 rows (float weights) */
    KVC_ACT_Q8_0 = 1, /* Q8_0 blocks (Q8_0 / Q4_0 weights), GGML's vec_dot_q8_0 layout */
    KVC_ACT_Q8X = 2,  /* Q8_0-quantized (one f16-rounded scale per 32) in the kernel layout
                       * below (Q4_1, Q5_x, IQ4_NL: llama.cpp's q8_0 / q8_1) */
    KVC_ACT_Q8K = 3,  /* the same layout quantized as GGML's q8_K (one f32 scale per 256; the
                       * K-quants and IQ4_XS, whose llama.cpp dot products take q8_K) */
};
/* 1 for the formats in the KVC_ACT_Q8X layout. The generic kernels read either; the AVX-512
 * one-row kernels of q4_K and q6_K need KVC_ACT_Q8K (one scale per 256: they keep a
 * super-block's products in integers), which is what kvc_act_quantize gives their type. */
static inline int kvc_act_is_q8x(enum kvc_act a) { return a == KVC_ACT_Q8X || a == KVC_ACT_Q8K; }

/* KVC_ACT_Q8X row of n elements (n % 32 == 0), padded to np = n rounded up to 256 (pad 0):
 *   int8_t q[np]        quants, Q8_0 rounding (d = amax/127, q = round(x/d))
 *   float  dl[np / 4]   the block scale d of element 4i (repeated per 4-element lane)
 *   float  s16[np / 16] d * (sum of the 16 quants of group g)
 * Every segment starts 64-byte aligned when the row does. */
static inline int64_t kvc_q8x_padded(int64_t n) { return (n + 255) / 256 * 256; }
static inline size_t kvc_q8x_row_bytes(int64_t n) { return (size_t)kvc_q8x_padded(n) * 9 / 4; }
static inline const int8_t *kvc_q8x_q(const void *x) { return (const int8_t *)x; }
static inline const float *kvc_q8x_dl(const void *x, int64_t n) {
    return (const float *)((const char *)x + kvc_q8x_padded(n));
}
static inline const float *kvc_q8x_s16(const void *x, int64_t n) {
    return (const float *)((const char *)x + 2 * kvc_q8x_padded(n));
}
/* Quantize n floats into the Q8X layout (scalar reference; bit-identical at every level). */
void kvc_quantize_row_q8x(const float *x, void *out, int64_t n);
/* The same layout as GGML's q8_K: per 256 elements iscale = -127 / max (max: the signed value
 * of largest magnitude), q = min(127, nearest integer of iscale x, ties to even), the scale
 * 1 / iscale in f32 (0 and q = 0 for an all-zero block); a partial last block as zeros. */
void kvc_quantize_row_q8k(const float *x, void *out, int64_t n);
/* The same with AVX2 (bit-identical); kvc_q8k_finish writes block c's scales and sums. */
void kvc_quantize_row_q8k_avx2(const float *x, void *out, int64_t n);
void kvc_q8k_finish(void *out, int64_t n, int64_t c, float d);

/* Fast kernels read a chunk of 256 weights (one super-block, or 8 blocks of 32) unpacked as
 * w_i = a[i / 16] * u[i] + b[i / 16] with u unsigned bytes (0..255; at most 63 unless the
 * row of the table sets signed_u, where u - 128 fits int8). Blocks past the end of the row
 * (valid < 8 for 32-element types) unpack as u = 0, a = b = 0. */
struct kvc_unpacked {
    _Alignas(64) uint8_t u[256];
    float a[16];
    float b[16];
};
typedef void (*kvc_unpack_fn)(const void *row, int64_t chunk, int64_t n, struct kvc_unpacked *out);

typedef void (*kvc_to_float_fn)(const void *row, float *y, int64_t n);
typedef void (*kvc_from_float_fn)(const float *x, void *row, int64_t n);
typedef float (*kvc_vec_dot_fn)(int64_t n, const void *w_row, const void *x);
typedef void (*kvc_tile_fn)(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1);

struct kvc_wtype {
    uint32_t id;       /* enum kvc_type */
    const char *name;  /* GGUF/llama.cpp name: "q4_K" */
    int blck;          /* elements per block */
    int bytes;         /* bytes per block */
    enum kvc_act act;  /* activation format of vec_dot / tile */
    kvc_to_float_fn to_float;     /* dequantize n elements (n % blck == 0) */
    kvc_from_float_fn from_float; /* reference quantizer (n % blck == 0) */
    kvc_unpack_fn unpack;         /* Q8X types: chunk unpacker of the generic kernels */
    int signed_u;                 /* 1: unpacked u exceed 63 (table-valued types) */
    /* per-ISA single dot products ([KVC_ISA_SCALAR] is the reference) and matmul tiles;
     * Q8X rows leave vec_dot NULL and use the generic kvc_q8x_dot_* with their unpack */
    kvc_vec_dot_fn vec_dot[KVC_ISA_COUNT];
    kvc_tile_fn tile[KVC_ISA_COUNT];
    const char *fast;  /* which SIMD kernels it has, in words (info / docs) */
};

/* The row of a GGUF type id; NULL when kvcodec cannot compute with it. */
const struct kvc_wtype *kvc_wtype_get(uint32_t type);
/* Bits per weight of a type (bytes * 8 / blck); 0 for an unknown id. */
double kvc_wtype_bpw(uint32_t type);
/* Comma-separated names of all computable types (for error messages). */
const char *kvc_wtype_names(void);

/* Activation row bytes / quantization for a format (n % 32 == 0 for the quantized ones). */
size_t kvc_act_row_bytes(enum kvc_act act, int64_t n);
void kvc_act_quantize(enum kvc_act act, const float *x, void *out, int64_t n, enum kvc_isa isa);

/* Generic kernels of the Q8X types (wtypes/generic_*.c): type is the table row. */
float kvc_q8x_dot_scalar(const struct kvc_wtype *t, int64_t n, const void *w, const void *x);
float kvc_q8x_dot_avx2(const struct kvc_wtype *t, int64_t n, const void *w, const void *x);
float kvc_q8x_dot_avx512(const struct kvc_wtype *t, int64_t n, const void *w, const void *x);
void kvc_q8x_tile_scalar(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1);
void kvc_q8x_tile_avx2(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1);
void kvc_q8x_tile_avx512(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1);

/* Shared quantizer helpers (wtypes/quant_util.c). */
/* Best scale for x ~ scale * L, L integers in [-nmax, nmax - 1], weights w (may be NULL);
 * writes L + nmax into q (0 .. 2 nmax - 1) and returns the scale. */
float kvc_q_symmetric(int n, int nmax, const float *x, const float *w, uint8_t *q);
/* Best (scale, min) for x ~ scale * L - min, L in [0, nmax], min >= 0; weights w (NULL = 1).
 * Writes L into q, *min_out = min, returns scale. */
float kvc_q_affine(int n, int nmax, const float *x, const float *w, uint8_t *q, float *min_out);
/* The 16 sub-blocks of 16 of a 256-element super-block (Q3_K, Q6_K): kvc_q_symmetric with
 * weights x^2 into sc[g] and L[16 g ..]; returns the scale of largest magnitude (signed). */
float kvc_q_subblocks16(const float *x, int nmax, uint8_t *L, float sc[16]);
/* Nearest integer in [lo, hi] to v (round half away from zero). */
static inline int kvc_q_clamp_round(float v, int lo, int hi) {
    int r = (int)(v >= 0 ? v + 0.5f : v - 0.5f);
    return r < lo ? lo : r > hi ? hi : r;
}

#endif
