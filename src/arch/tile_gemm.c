/* tile_gemm.c - f32 matrix products and transposes for blocked attention (tile_gemm.h):
 * scalar references (sums in double) and AVX-512 versions. The AVX-512 product keeps a tile
 * of 8 rows x 32 columns of C in 16 registers while it runs over K: per k, two loads of B,
 * eight broadcasts of A and sixteen FMAs. The AVX2 product: 6 rows x 16 columns in 12 ymm. */
#include "tile_gemm.h"
#include "simd_avx512.h"

#include <immintrin.h>
#include <stdint.h>

static void gemm_scalar(int M, int N, int K, const float *A, size_t lda, const float *B, size_t ldb, float *C,
                        size_t ldc, int accumulate) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)A[(size_t)i * lda + k] * B[(size_t)k * ldb + j];
            float *c = C + (size_t)i * ldc + j;
            *c = accumulate ? (float)(*c + s) : (float)s;
        }
}

static void transpose_scalar(int n, int d, const float *X, size_t ldx, float *Y, size_t ldy) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) Y[(size_t)j * ldy + i] = X[(size_t)i * ldx + j];
}

enum { TG_MR = 8 }; /* rows of C per register tile */

/* One tile: rows [0, mr) of C, 32 columns (masks m0, m1 for the two halves). mr is a
 * constant at every call, so the row loops unroll and the accumulators stay in registers. */
KVC_TARGET_AVX512 static inline __attribute__((always_inline)) void
tile_avx512(const int mr, int K, const float *A, size_t lda, const float *B, size_t ldb, float *C, size_t ldc,
            __mmask16 m0, __mmask16 m1, int accumulate) {
    __m512 c0[TG_MR], c1[TG_MR];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        c0[r] = accumulate ? _mm512_maskz_loadu_ps(m0, C + (size_t)r * ldc) : _mm512_setzero_ps();
        c1[r] = accumulate ? _mm512_maskz_loadu_ps(m1, C + (size_t)r * ldc + 16) : _mm512_setzero_ps();
    }
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb;
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            const __m512 a = _mm512_set1_ps(A[(size_t)r * lda + k]);
            c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        _mm512_mask_storeu_ps(C + (size_t)r * ldc, m0, c0[r]);
        _mm512_mask_storeu_ps(C + (size_t)r * ldc + 16, m1, c1[r]);
    }
}

KVC_TARGET_AVX512 static void gemm_avx512(int M, int N, int K, const float *A, size_t lda, const float *B,
                                          size_t ldb, float *C, size_t ldc, int accumulate) {
    /* panels of 32 columns of B (K x 32 floats, in L1 for K <= 256), every row tile of A over each */
    for (int j = 0; j < N; j += 32) {
        const int nc = N - j < 32 ? N - j : 32;
        const __mmask16 m0 = (__mmask16)(nc >= 16 ? 0xFFFFu : (1u << nc) - 1);
        const __mmask16 m1 = (__mmask16)(nc >= 32 ? 0xFFFFu : nc > 16 ? (1u << (nc - 16)) - 1 : 0u);
        const float *Bj = B + j;
        int i = 0;
        for (; i + TG_MR <= M; i += TG_MR)
            tile_avx512(TG_MR, K, A + (size_t)i * lda, lda, Bj, ldb, C + (size_t)i * ldc + j, ldc, m0, m1, accumulate);
        const float *Ai = A + (size_t)i * lda;
        float *Ci = C + (size_t)i * ldc + j;
        switch (M - i) {
        case 7: tile_avx512(7, K, Ai, lda, Bj, ldb, Ci, ldc, m0, m1, accumulate); break;
        case 6: tile_avx512(6, K, Ai, lda, Bj, ldb, Ci, ldc, m0, m1, accumulate); break;
        case 5: tile_avx512(5, K, Ai, lda, Bj, ldb, Ci, ldc, m0, m1, accumulate); break;
        case 4: tile_avx512(4, K, Ai, lda, Bj, ldb, Ci, ldc, m0, m1, accumulate); break;
        case 3: tile_avx512(3, K, Ai, lda, Bj, ldb, Ci, ldc, m0, m1, accumulate); break;
        case 2: tile_avx512(2, K, Ai, lda, Bj, ldb, Ci, ldc, m0, m1, accumulate); break;
        case 1: tile_avx512(1, K, Ai, lda, Bj, ldb, Ci, ldc, m0, m1, accumulate); break;
        default: break;
        }
    }
}

enum { TG2_MR = 6 }; /* AVX2: rows of C per register tile (12 accumulators of 16 ymm) */

/* AVX2 tile: rows [0, mr) of C, 16 columns (masks m0, m1: lanes < the columns left). */
KVC_TARGET_AVX2 static inline __attribute__((always_inline)) void
tile_avx2(const int mr, int K, const float *A, size_t lda, const float *B, size_t ldb, float *C, size_t ldc,
          __m256i m0, __m256i m1, int accumulate) {
    __m256 c0[TG2_MR], c1[TG2_MR];
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        c0[r] = accumulate ? _mm256_maskload_ps(C + (size_t)r * ldc, m0) : _mm256_setzero_ps();
        c1[r] = accumulate ? _mm256_maskload_ps(C + (size_t)r * ldc + 8, m1) : _mm256_setzero_ps();
    }
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb;
        const __m256 b0 = _mm256_maskload_ps(b, m0), b1 = _mm256_maskload_ps(b + 8, m1);
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            const __m256 a = _mm256_broadcast_ss(A + (size_t)r * lda + k);
            c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        _mm256_maskstore_ps(C + (size_t)r * ldc, m0, c0[r]);
        _mm256_maskstore_ps(C + (size_t)r * ldc + 8, m1, c1[r]);
    }
}

KVC_TARGET_AVX2 static void gemm_avx2(int M, int N, int K, const float *A, size_t lda, const float *B, size_t ldb,
                                      float *C, size_t ldc, int accumulate) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int j = 0; j < N; j += 16) {
        const int nc = N - j < 16 ? N - j : 16;
        const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nc), lane);
        const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nc - 8), lane);
        const float *Bj = B + j;
        int i = 0;
        for (; i + TG2_MR <= M; i += TG2_MR)
            tile_avx2(TG2_MR, K, A + (size_t)i * lda, lda, Bj, ldb, C + (size_t)i * ldc + j, ldc, m0, m1, accumulate);
        const float *Ai = A + (size_t)i * lda;
        float *Ci = C + (size_t)i * ldc + j;
        switch (M - i) {
        case 5: tile_avx2(5, K, Ai, lda, Bj, ldb, Ci, ldc, m0, m1, accumulate); break;
        case 4: tile_avx2(4, K, Ai, lda, Bj, ldb, Ci, ldc, m0, m1, accumulate); break;
        case 3: tile_avx2(3, K, Ai, lda, Bj, ldb, Ci, ldc, m0, m1, accumulate); break;
        case 2: tile_avx2(2, K, Ai, lda, Bj, ldb, Ci, ldc, m0, m1, accumulate); break;
        case 1: tile_avx2(1, K, Ai, lda, Bj, ldb, Ci, ldc, m0, m1, accumulate); break;
        default: break;
        }
    }
}

KVC_TARGET_AVX512 static void transpose_avx512(int n, int d, const float *X, size_t ldx, float *Y, size_t ldy) {
    for (int i0 = 0; i0 < n; i0 += 16) {
        const int rows = n - i0 < 16 ? n - i0 : 16;
        const __mmask16 m = (__mmask16)(rows == 16 ? 0xFFFFu : (1u << rows) - 1);
        for (int j0 = 0; j0 < d; j0 += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < rows ? _mm512_loadu_ps(X + (size_t)(i0 + i) * ldx + j0) : _mm512_setzero_ps();
            kvc_transpose16_ps(r);
            for (int j = 0; j < 16; j++) _mm512_mask_storeu_ps(Y + (size_t)(j0 + j) * ldy + i0, m, r[j]);
        }
    }
}

void kvc_gemm_f32(enum kvc_isa isa, int M, int N, int K, const float *A, size_t lda, const float *B,
                  size_t ldb, float *C, size_t ldc, int accumulate) {
    if (M <= 0 || N <= 0) return;
    if (isa >= KVC_ISA_AVX512) gemm_avx512(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    else if (isa == KVC_ISA_AVX2) gemm_avx2(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    else gemm_scalar(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

void kvc_transpose_f32(enum kvc_isa isa, int n, int d, const float *X, size_t ldx, float *Y, size_t ldy) {
    if (isa >= KVC_ISA_AVX512 && d % 16 == 0) transpose_avx512(n, d, X, ldx, Y, ldy);
    else transpose_scalar(n, d, X, ldx, Y, ldy);
}
