/* kernels_internal.h - per-ISA entry points behind the dispatchers of kernels.h, shared by
 * kernels_scalar.c, kernels_avx2.c, kernels_avx512.c and matmul.c. Not a public API. */
#ifndef KVC_KERNELS_INTERNAL_H
#define KVC_KERNELS_INTERNAL_H

#include "kernels.h"

/* 1 when the CPU has AVX512-VNNI (vpdpbusd) on top of the AVX-512 level (isa.c). */
int kvc_cpu_has_avx512vnni(void);
/* Tests: 0 forces the AVX-512 quantized kernels onto their non-VNNI path, 1 restores
 * auto-detection. */
void kvc_avx512_allow_vnni(int allow);

/* A tile of the matrix multiply: Y[t * ldy + r] = dot(W row r, X row t) for t in [t0, t1),
 * r in [r0, r1). X rows are f32 (float weights) or Q8_0 blocks (Q8_0/Q4_0 weights), x_stride
 * bytes apart. */
struct kvc_tile {
    const struct kvc_weight *w;
    const void *x;
    size_t x_stride;
    float *y;
    int64_t ldy;
};

/* The decode paths (one activation row) stream each weight matrix once: before a group of 4
 * rows at row r they ask for the 4 rows KVC_DECODE_PF_ROWS further on (rows ws bytes apart,
 * the matrix ending at end), one prefetch per 64-byte line. Locality 2 (prefetcht1: into L2,
 * not L1, so a prefetch in flight holds an L2 miss slot, not one of L1's few fill buffers):
 * on the Intel Xeon of session 9, bench_wtypes 2 2048 400000 from DRAM, alternated twice,
 * locality 3 -> 2: q4_K 18.7 / 18.6 -> 19.9 / 19.8 GB/s, q6_K 22.5 / 23.0 -> 27.4 / 25.7,
 * q4_0 21.4 / 22.0 -> 24.5 / 24.7; 1B Q4_K_M decode at depth 0 27.4 / 27.2 -> 29.6 / 29.9 t/s.
 * (Not measured on AMD cores.) */
#ifndef KVC_DECODE_PF_LOC
#define KVC_DECODE_PF_LOC 2
#endif
#ifndef KVC_DECODE_PF_ROWS
#define KVC_DECODE_PF_ROWS 8
#endif
static inline __attribute__((always_inline)) void kvc_prefetch_rows4(const char *w, size_t ws, int64_t r, const char *end) {
    const char *pf = w + (r + KVC_DECODE_PF_ROWS) * (int64_t)ws;
    for (size_t o = 0; o < 4 * ws && pf + o < end; o += 64) __builtin_prefetch(pf + o, 0, KVC_DECODE_PF_LOC);
}

/* Prefetch spread over a one-row kernel's super-blocks (or groups): at super-block c of nc, the lines
 * [c L, (c + 1) L) of the 4 rows KVC_PF_SPREAD_ROWS ahead (L = the 4 rows' lines / nc, rounded
 * up), so a few lines are asked for between the products instead of all at once (a burst
 * waits on the miss buffers and stalls the arithmetic). x86 prefetches never fault, so lines
 * past the matrix end are harmless. */
#ifndef KVC_PF_SPREAD_ROWS
#define KVC_PF_SPREAD_ROWS 16 /* q4_K / q6_K from DRAM: 8 rows 19.6 / 17.1 GB/s, 16 rows 19.1 / 21.3 */
#endif
static inline __attribute__((always_inline)) void kvc_pf_spread(const char *w, size_t ws, int64_t c, int64_t nc) {
    const int64_t lines = (int64_t)((4 * ws + 63) / 64), per = (lines + nc - 1) / nc;
    const char *pf = w + KVC_PF_SPREAD_ROWS * ws + 64 * c * per;
    for (int64_t i = 0; i < per && c * per + i < lines; i++) __builtin_prefetch(pf + 64 * i, 0, KVC_DECODE_PF_LOC);
}

/* 1 when the AVX-512 quantized kernels use VNNI (CPU has it and tests allow it). */
int kvc_avx512_use_vnni(void);

#define KVC_DECLARE_ISA(sfx)                                                                  \
    void kvc_quantize_row_q8_0_##sfx(const float *x, block_q8_0 *y, int64_t n);               \
    float kvc_dot_f32_##sfx(const float *a, const float *b, int64_t n);                       \
    void kvc_axpy_f32_##sfx(float a, const float *x, float *y, int64_t n);

KVC_DECLARE_ISA(scalar)
KVC_DECLARE_ISA(avx2)
KVC_DECLARE_ISA(avx512)

/* Per-type entry points of the F32/F16/BF16/Q8_0/Q4_0 kernels (rows of the wtypes table):
 * kvc_vdot_<type>_<isa> (one dot product) and kvc_tile_<type>_<isa> (a matmul tile). */
#define KVC_DECLARE_TYPE_ISA(t, sfx)                                                          \
    float kvc_vdot_##t##_##sfx(int64_t n, const void *w_row, const void *x);                  \
    void kvc_tile_##t##_##sfx(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1);
#define KVC_DECLARE_TYPE(t) KVC_DECLARE_TYPE_ISA(t, avx2) KVC_DECLARE_TYPE_ISA(t, avx512)        \
    float kvc_vdot_##t##_scalar(int64_t n, const void *w_row, const void *x);
KVC_DECLARE_TYPE(f32)
KVC_DECLARE_TYPE(f16)
KVC_DECLARE_TYPE(bf16)
KVC_DECLARE_TYPE(q8_0)
KVC_DECLARE_TYPE(q4_0)
/* The scalar tile of every non-Q8X type: each output is the row's scalar vec_dot. */
void kvc_gemm_tile_scalar(const struct kvc_tile *tl, int t0, int t1, int64_t r0, int64_t r1);

#endif
