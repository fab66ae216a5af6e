/* tile_gemm.h - small f32 matrix products for blocked attention over decoded K/V rows:
 * C (M, N) = or += A (M, K) B (K, N), row-major with strides, and the transpose that turns a
 * block of key rows into B for the scores. Scalar reference (double sums) and register-tiled
 * AVX-512 (8 rows x 32 columns of C in 16 registers) and AVX2 (6 x 16) kernels, masked column tails. */
#ifndef KVC_TILE_GEMM_H
#define KVC_TILE_GEMM_H

#include "isa.h"
#include <stddef.h>

/* C[i * ldc + j] (=, or += when accumulate) sum_k A[i * lda + k] * B[k * ldb + j], for
 * i < M, j < N, k < K. Scores of a block: A = queries (rows, d), B = keys transposed (d,
 * positions); value sums: A = weights (rows, positions), B = value rows (positions, d). */
void kvc_gemm_f32(enum kvc_isa isa, int M, int N, int K, const float *A, size_t lda, const float *B,
                  size_t ldb, float *C, size_t ldc, int accumulate);

/* Y[j * ldy + i] = X[i * ldx + j] for i < n, j < d: n rows of d floats become d rows of n. */
void kvc_transpose_f32(enum kvc_isa isa, int n, int d, const float *X, size_t ldx, float *Y, size_t ldy);

#endif
