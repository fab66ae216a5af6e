/* bandwidth.c - measured memory read bandwidth (kvc_measure_read_bandwidth): threads of the
 * kernel pool each sum 64-bit words of their share of a large buffer. The sum is the work
 * (so the loads cannot be dropped); scalar reference and AVX2 / AVX-512 versions give the
 * same exact integer sum (tests compare them). */
#include "bandwidth.h"
#include "kernels.h"
#include "../util.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t kvc_sum_u64_scalar(const uint64_t *x, size_t n) {
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s;
}

static KVC_TARGET_AVX2 uint64_t sum_avx2(const uint64_t *x, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(x + i)));
        a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(x + i + 4)));
        a2 = _mm256_add_epi64(a2, _mm256_loadu_si256((const __m256i *)(x + i + 8)));
        a3 = _mm256_add_epi64(a3, _mm256_loadu_si256((const __m256i *)(x + i + 12)));
    }
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + kvc_sum_u64_scalar(x + i, n - i);
}

static KVC_TARGET_AVX512 uint64_t sum_avx512(const uint64_t *x, size_t n) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(x + i));
        a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(x + i + 8));
        a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(x + i + 16));
        a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(x + i + 24));
    }
    uint64_t lanes[8]; /* summed as unsigned: the reduce intrinsic adds signed (overflow is UB) */
    _mm512_storeu_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
    return kvc_sum_u64_scalar(lanes, 8) + kvc_sum_u64_scalar(x + i, n - i);
}

uint64_t kvc_sum_u64(enum kvc_isa isa, const uint64_t *x, size_t n) {
    if (isa >= KVC_ISA_AVX512 && kvc_isa_supported(KVC_ISA_AVX512)) return sum_avx512(x, n);
    if (isa >= KVC_ISA_AVX2 && kvc_isa_supported(KVC_ISA_AVX2)) return sum_avx2(x, n);
    return kvc_sum_u64_scalar(x, n);
}

struct bw_task {
    const uint64_t *buf;
    size_t n;              /* words */
    enum kvc_isa isa;
    uint64_t sums[256];    /* per thread, so the loads are used */
};

static void bw_run(void *arg, int ith, int nth) {
    struct bw_task *t = arg;
    size_t a = t->n * (size_t)ith / (size_t)nth, b = t->n * (size_t)(ith + 1) / (size_t)nth;
    t->sums[ith] += kvc_sum_u64(t->isa, t->buf + a, b - a);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

kvc_status kvc_measure_read_bandwidth(size_t bytes, int n_threads, int reps, double *bytes_per_s,
                                      kvc_error *err) {
    *bytes_per_s = 0;
    if (bytes < 4096 || bytes > ((size_t)1 << 40))
        return kvc_fail(err, KVC_ERR_ARG, "bandwidth: buffer of %zu bytes outside 4 KiB..1 TiB", bytes);
    if (n_threads < 1 || n_threads > 256)
        return kvc_fail(err, KVC_ERR_ARG, "bandwidth: %d threads outside 1..256", n_threads);
    if (reps < 1 || reps > 1000)
        return kvc_fail(err, KVC_ERR_ARG, "bandwidth: %d repetitions outside 1..1000", reps);
    struct bw_task t = {.n = bytes / 8, .isa = kvc_isa_best()};
    uint64_t *buf = kvc_alloc_aligned(t.n * 8);
    double *r = malloc(sizeof(double) * (size_t)reps);
    struct kvc_pool *pool = kvc_pool_create(n_threads);
    if (!buf || !r || !pool) {
        kvc_free_aligned(buf);
        free(r);
        kvc_pool_free(pool);
        return kvc_fail(err, KVC_ERR_NOMEM, "bandwidth: cannot allocate %zu bytes and %d threads", bytes, n_threads);
    }
    for (size_t i = 0; i < t.n; i++) buf[i] = i; /* touch every page */
    t.buf = buf;
    kvc_pool_run(pool, bw_run, &t); /* warm-up pass */
    for (int k = 0; k < reps; k++) {
        double a = now_s();
        kvc_pool_run(pool, bw_run, &t);
        r[k] = (double)(t.n * 8) / (now_s() - a);
    }
    qsort(r, (size_t)reps, sizeof *r, cmp_d);
    *bytes_per_s = reps % 2 ? r[reps / 2] : 0.5 * (r[reps / 2 - 1] + r[reps / 2]);
    kvc_free_aligned(buf);
    free(r);
    kvc_pool_free(pool);
    return KVC_OK;
}
