/* kernels.h - weight kernels: dequantize rows, quantize activations, dot products and
 * the threaded matrix multiply Y = X W^T used by the forward pass, plus the thread pool.
 * Each kernel exists as a scalar reference and AVX2 / AVX-512 versions (run-time choice). */
#ifndef KVC_KERNELS_H
#define KVC_KERNELS_H

#include "isa.h"
#include "../types.h"
#include <stddef.h>
#include <stdint.h>

/* ---- thread pool: one pool per context, threads created once ---- */
struct kvc_pool;
/* n_threads includes the calling thread (1 = no worker threads). NULL on failure. */
struct kvc_pool *kvc_pool_create(int n_threads);
void kvc_pool_free(struct kvc_pool *p); /* NULL is a no-op */
int kvc_pool_size(const struct kvc_pool *p);
/* Run fn(arg, ith, nth) on every thread (ith = 0 is the caller) and wait for all. */
typedef void (*kvc_task_fn)(void *arg, int ith, int nth);
void kvc_pool_run(struct kvc_pool *p, kvc_task_fn fn, void *arg);

/* ---- weight matrices ---- */
/* A 2-D weight tensor as stored in GGUF: rows of n_in elements (ne[0]), n_out rows (ne[1]),
 * row-major, rows of type `type` (blocks of kvc_type_info(type)->blck elements). */
struct kvc_weight {
    uint32_t type;     /* enum kvc_type: a type with a row in the wtypes table (wtypes/wtype.h) */
    int64_t n_in;      /* elements per row */
    int64_t n_out;     /* rows */
    size_t row_bytes;  /* bytes per row */
    const void *data;  /* memory-mapped */
};

/* Dequantize row r of W into out (n_in floats), with the type's to_float (wtypes/table.c). */
void kvc_weight_row_to_f32(const struct kvc_weight *w, int64_t r, float *out);

/* Quantize / dequantize one row of n floats (n % 32 == 0) as Q8_0 / Q4_0 blocks, with
 * GGML's rounding rules (Q8_0: d = amax/127, q = round(x/d); Q4_0: d = max/-8 where max is
 * the signed value of largest magnitude, q = min(15, (int8)(x/d + 8.5))). */
void kvc_quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t n, enum kvc_isa isa);
void kvc_quantize_row_q4_0(const float *x, block_q4_0 *y, int64_t n);
void kvc_dequantize_row_q8_0(const block_q8_0 *x, float *y, int64_t n);
void kvc_dequantize_row_q4_0(const block_q4_0 *x, float *y, int64_t n);

/* Scratch bytes kvc_matmul needs for T activation rows of W (e.g. Q8_0-quantized copies
 * of X for Q8_0/Q4_0 weights; 0 for float weights). */
size_t kvc_matmul_scratch_bytes(const struct kvc_weight *w, int T);

/* Y (T, n_out) = X (T, n_in) * W^T, on all threads of pool (pool may be NULL = caller only).
 * Float weights (F32/F16/BF16) are multiplied in f32 (FMA); Q8_0/Q4_0 weights against X
 * quantized to Q8_0 (integer dot products), like GGML's vec_dot_q8_0_q8_0/q4_0_q8_0.
 * scratch: at least kvc_matmul_scratch_bytes(w, T) bytes, 64-byte aligned.
 * No allocation inside. */
void kvc_matmul(struct kvc_pool *pool, enum kvc_isa isa, const struct kvc_weight *w,
                const float *X, int T, float *Y, void *scratch);

/* Y[i] = X W[i]^T for i < n: weights that read the same X (the Q, K and V projections; gate and
 * up). When they share the activation format, X is quantized once and one pool run does every
 * thread's share of each matrix (decode runs this once per layer instead of once per matrix);
 * otherwise one kvc_matmul each. Results are those of kvc_matmul, bit for bit. scratch: the
 * largest kvc_matmul_scratch_bytes(W[i], T). At most KVC_MATMUL_N_MAX share a run (more go one
 * by one). */
#define KVC_MATMUL_N_MAX 4
void kvc_matmul_n(struct kvc_pool *pool, enum kvc_isa isa, const struct kvc_weight *const *w, int n,
                  const float *X, int T, float *const *Y, void *scratch);

/* Single dot products (used by kvc_matmul, exposed for tests):
 * s = sum_i W_row[i] * x[i], where x is f32 for F32/F16/BF16 weights and Q8_0 blocks for
 * Q8_0/Q4_0 weights. */
float kvc_vec_dot(enum kvc_isa isa, uint32_t type, int64_t n, const void *w_row, const void *x);

/* Small vector ops used by the forward pass, with scalar references. */
float kvc_dot_f32(enum kvc_isa isa, const float *a, const float *b, int64_t n);
/* y += a * x */
void kvc_axpy_f32(enum kvc_isa isa, float a, const float *x, float *y, int64_t n);

#endif
