/* matmul.c - run-time ISA dispatch for the kernels of kernels.h, and the threaded matrix
 * multiply Y = X W^T: X rows are quantized to the weight type's activation format (its row of
 * the wtypes table), each thread takes
 * a contiguous range of output rows, and walks it in weight blocks small enough to stay in
 * cache while all T activation rows are multiplied against them. */
#include "kernels_internal.h"
#include "wtypes/wtype.h"
#include <string.h>

/* Levels above what the CPU has fall back to the best supported one. */
static enum kvc_isa clamp_isa(enum kvc_isa isa) {
    while (isa > KVC_ISA_SCALAR && !kvc_isa_supported(isa)) isa = (enum kvc_isa)(isa - 1);
    return isa;
}

float kvc_vec_dot(enum kvc_isa isa, uint32_t type, int64_t n, const void *w_row, const void *x) {
    const struct kvc_wtype *t = kvc_wtype_get(type);
    if (!t) return 0.0f;
    isa = clamp_isa(isa);
    if (kvc_act_is_q8x(t->act) && !t->vec_dot[isa]) {
        switch (isa) {
        case KVC_ISA_AVX512: return kvc_q8x_dot_avx512(t, n, w_row, x);
        case KVC_ISA_AVX2: return kvc_q8x_dot_avx2(t, n, w_row, x);
        default: return kvc_q8x_dot_scalar(t, n, w_row, x);
        }
    }
    return t->vec_dot[isa](n, w_row, x);
}

void kvc_quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t n, enum kvc_isa isa) {
    switch (clamp_isa(isa)) {
    case KVC_ISA_AVX512: kvc_quantize_row_q8_0_avx512(x, y, n); break;
    case KVC_ISA_AVX2: kvc_quantize_row_q8_0_avx2(x, y, n); break;
    default: kvc_quantize_row_q8_0_scalar(x, y, n); break;
    }
}

float kvc_dot_f32(enum kvc_isa isa, const float *a, const float *b, int64_t n) {
    switch (clamp_isa(isa)) {
    case KVC_ISA_AVX512: return kvc_dot_f32_avx512(a, b, n);
    case KVC_ISA_AVX2: return kvc_dot_f32_avx2(a, b, n);
    default: return kvc_dot_f32_scalar(a, b, n);
    }
}

void kvc_axpy_f32(enum kvc_isa isa, float a, const float *x, float *y, int64_t n) {
    switch (clamp_isa(isa)) {
    case KVC_ISA_AVX512: kvc_axpy_f32_avx512(a, x, y, n); break;
    case KVC_ISA_AVX2: kvc_axpy_f32_avx2(a, x, y, n); break;
    default: kvc_axpy_f32_scalar(a, x, y, n); break;
    }
}

size_t kvc_matmul_scratch_bytes(const struct kvc_weight *w, int T) {
    const struct kvc_wtype *t = kvc_wtype_get(w->type);
    if (!t || t->act == KVC_ACT_F32 || T <= 0) return 0;
    return (size_t)T * kvc_act_row_bytes(t->act, w->n_in);
}

/* Activation bytes per pass over a thread's weight rows: the prefill panels (16 weight rows
 * packed per pass, kernels_avx512_vnni.c, wtypes/generic_avx512.c) reuse a pass for every
 * activation row of the block, so larger blocks pack less often (Q4_K_M pp512 on the 1B
 * shape: 512 KiB 164 t/s, 2 MiB 183 t/s; Q4_0 and f16 unchanged). */
#define XBLOCK_BYTES (2048 * 1024)
/* Below this many activation elements the caller quantizes X alone (no extra pool run). */
#define SERIAL_QUANT_ELEMS 16384

struct mm_task {
    enum kvc_isa isa;
    const struct kvc_wtype *wt;
    struct kvc_tile tile;
    const float *X;
    int T;
    int64_t unit; /* rows are handed out in multiples of this */
    int split_t;  /* 1: split activation rows instead of weight rows (few weight rows) */
};

/* Quantize activation rows [t0, t1) into the scratch. */
static void quantize_rows(const struct mm_task *m, int t0, int t1) {
    const int64_t n = m->tile.w->n_in;
    for (int t = t0; t < t1; t++)
        kvc_act_quantize(m->wt->act, m->X + (size_t)t * (size_t)n,
                         (char *)m->tile.x + (size_t)t * m->tile.x_stride, n, m->isa);
}

static void quant_task(void *arg, int ith, int nth) {
    const struct mm_task *m = arg;
    quantize_rows(m, (int)((int64_t)m->T * ith / nth), (int)((int64_t)m->T * (ith + 1) / nth));
}

static void gemm_task(void *arg, int ith, int nth) {
    const struct mm_task *m = arg;
    const struct kvc_weight *w = m->tile.w;
    const kvc_tile_fn tile = m->wt->tile[m->isa];
    if (m->split_t) {
        const int t0 = (int)((int64_t)m->T * ith / nth), t1 = (int)((int64_t)m->T * (ith + 1) / nth);
        if (t0 < t1) tile(&m->tile, t0, t1, 0, w->n_out);
        return;
    }
    /* contiguous range of output rows, in units of m->unit rows */
    const int64_t units = (w->n_out + m->unit - 1) / m->unit;
    int64_t r0 = units * ith / nth * m->unit, r1 = units * (ith + 1) / nth * m->unit;
    if (r1 > w->n_out) r1 = w->n_out;
    if (r0 >= r1) return;
    /* The tile blocks over weight rows itself; blocks of activation rows keep the rows that
     * pass over each weight chunk within XBLOCK_BYTES (in L2). */
    int tb = (int)(XBLOCK_BYTES / m->tile.x_stride) & ~15;
    if (tb < 16) tb = 16;
    for (int t = 0; t < m->T; t += tb) tile(&m->tile, t, m->T - t < tb ? m->T : t + tb, r0, r1);
}

/* Fill m for Y = X W^T on nth threads; 0 when there is nothing to multiply (Y zeroed). */
static int mm_setup(struct mm_task *m, int nth, enum kvc_isa isa, const struct kvc_weight *w, const float *X,
                    int T, float *Y, void *scratch) {
    if (T <= 0 || w->n_out <= 0) return 0;
    if (w->n_in <= 0 || w->row_bytes == 0) { /* empty dot products (or n_in < one block) */
        memset(Y, 0, (size_t)T * (size_t)w->n_out * sizeof(float));
        return 0;
    }
    m->wt = kvc_wtype_get(w->type);
    if (!m->wt) { /* the loader admits table types only */
        memset(Y, 0, (size_t)T * (size_t)w->n_out * sizeof(float));
        return 0;
    }
    m->isa = clamp_isa(isa);
    m->X = X;
    m->T = T;
    m->tile.w = w;
    m->tile.y = Y;
    m->tile.ldy = w->n_out;
    /* Small outputs: rows in units of 4 (one micro-kernel); large: 16 rows (a 64-byte line
     * of Y per activation row, so threads never share a cache line of Y). */
    m->unit = w->n_out >= 64 * nth ? 16 : 4;
    m->split_t = T >= 2 * nth && (w->n_out + m->unit - 1) / m->unit < nth;
    if (m->wt->act != KVC_ACT_F32) {
        m->tile.x = scratch;
        m->tile.x_stride = kvc_act_row_bytes(m->wt->act, w->n_in);
    } else {
        m->tile.x = X;
        m->tile.x_stride = (size_t)w->n_in * sizeof(float);
    }
    return 1;
}

/* X into the activation format of m's weight type (into the scratch), on the pool when large. */
static void mm_quantize(struct kvc_pool *pool, struct mm_task *m) {
    if (m->wt->act == KVC_ACT_F32) return;
    if (kvc_pool_size(pool) == 1 || (int64_t)m->T * m->tile.w->n_in <= SERIAL_QUANT_ELEMS)
        quantize_rows(m, 0, m->T);
    else
        kvc_pool_run(pool, quant_task, m);
}

void kvc_matmul(struct kvc_pool *pool, enum kvc_isa isa, const struct kvc_weight *w,
                const float *X, int T, float *Y, void *scratch) {
    struct mm_task m;
    if (!mm_setup(&m, kvc_pool_size(pool), isa, w, X, T, Y, scratch)) return;
    mm_quantize(pool, &m);
    kvc_pool_run(pool, gemm_task, &m);
}

struct mm_multi {
    struct mm_task *m;
    int n;
};

/* Every thread's share of each matrix in turn (no barrier between the matrices). */
static void gemm_multi_task(void *arg, int ith, int nth) {
    const struct mm_multi *mm = arg;
    for (int i = 0; i < mm->n; i++) gemm_task(&mm->m[i], ith, nth);
}

void kvc_matmul_n(struct kvc_pool *pool, enum kvc_isa isa, const struct kvc_weight *const *w, int n,
                  const float *X, int T, float *const *Y, void *scratch) {
    struct mm_task m[KVC_MATMUL_N_MAX];
    int k = 0;
    for (int i = 0; i < n && i < KVC_MATMUL_N_MAX; i++)
        if (mm_setup(&m[k], kvc_pool_size(pool), isa, w[i], X, T, Y[i], scratch)) k++;
    for (int i = KVC_MATMUL_N_MAX; i < n; i++) kvc_matmul(pool, isa, w[i], X, T, Y[i], scratch);
    int shared = 1; /* one quantized X serves all: the same activation format and width */
    for (int i = 1; i < k; i++)
        shared &= m[i].wt->act == m[0].wt->act && m[i].tile.w->n_in == m[0].tile.w->n_in;
    if (!shared) { /* one quantization and one pool run per matrix, the scratch reused */
        for (int i = 0; i < k; i++) {
            mm_quantize(pool, &m[i]);
            kvc_pool_run(pool, gemm_task, &m[i]);
        }
        return;
    }
    if (k == 0) return;
    mm_quantize(pool, &m[0]);
    struct mm_multi mm = {m, k};
    kvc_pool_run(pool, gemm_multi_task, &mm);
}
