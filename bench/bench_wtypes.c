/* bench_wtypes.c - decode and prefill speed of kvc_matmul per weight type at a realistic
 * shape: W of n_in x n_out (default 2048 x 8192, a 1-3B model's FFN matrix; rows quantized
 * with the type's reference quantizer from random Gaussian weights, one band of 64 rows
 * repeated), decode = T 1 (effective weight read rate, GB/s = weight bytes / time) and
 * prefill = T 128 on an n_in x n_in matrix (GFLOP/s). Types interleaved in every repeat;
 * medians of 7. Usage: bench_wtypes [threads] [n_in] [n_out] [types...] */
#include "arch/kernels.h"
#include "util.h"
#include "wtypes/wtype.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static float randn(unsigned long long *s) {
    double u[2];
    for (int k = 0; k < 2; k++) {
        *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
        u[k] = ((double)(*s >> 11) + 1.0) / 9007199254740993.0;
    }
    return (float)(sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

struct mat {
    struct kvc_weight w;
    void *data;
};

/* n_out rows of n_in: a band of 64 quantized rows repeated. */
static int make(struct mat *m, uint32_t type, int64_t n_in, int64_t n_out, unsigned long long *seed) {
    const struct kvc_wtype *t = kvc_wtype_get(type);
    const size_t rb = (size_t)(n_in / t->blck) * (size_t)t->bytes;
    m->data = kvc_alloc_aligned(rb * (size_t)n_out);
    float *row = malloc((size_t)n_in * sizeof(float));
    if (!m->data || !row) return 1;
    for (int64_t r = 0; r < n_out; r++) {
        if (r < 64) {
            for (int64_t i = 0; i < n_in; i++) row[i] = randn(seed) / sqrtf((float)n_in);
            t->from_float(row, (char *)m->data + r * rb, n_in);
        } else {
            memcpy((char *)m->data + r * rb, (char *)m->data + (r % 64) * rb, rb);
        }
    }
    free(row);
    m->w = (struct kvc_weight){type, n_in, n_out, rb, m->data};
    return 0;
}

/* Seconds per call, one timing of ~40 ms. */
static double time_once(struct kvc_pool *pool, const struct kvc_weight *w, const float *X, int T, float *Y,
                        void *scr) {
    kvc_matmul(pool, kvc_isa_best(), w, X, T, Y, scr);
    int calls = 0;
    double t0 = now_s();
    do {
        kvc_matmul(pool, kvc_isa_best(), w, X, T, Y, scr);
        calls++;
    } while (now_s() - t0 < 0.04);
    return (now_s() - t0) / calls;
}

int main(int argc, char **argv) {
    const int nth = argc > 1 ? atoi(argv[1]) : 2;
    const int64_t n_in = argc > 2 ? atoll(argv[2]) : 2048, n_out = argc > 3 ? atoll(argv[3]) : 8192;
    uint32_t types[16];
    int nt = 0;
    static const uint32_t deflt[] = {KVC_TYPE_Q4_0, KVC_TYPE_Q4_K, KVC_TYPE_Q5_K, KVC_TYPE_Q6_K, KVC_TYPE_Q8_0,
                                     KVC_TYPE_Q4_1, KVC_TYPE_Q5_0, KVC_TYPE_Q5_1, KVC_TYPE_Q2_K, KVC_TYPE_Q3_K,
                                     KVC_TYPE_IQ4_NL, KVC_TYPE_IQ4_XS, KVC_TYPE_F16};
    for (int a = 4; a < argc && nt < 16; a++)
        for (uint32_t id = 0; id < 64; id++)
            if (kvc_wtype_get(id) && strcmp(kvc_wtype_get(id)->name, argv[a]) == 0) types[nt++] = id;
    if (nt == 0) {
        nt = (int)(sizeof deflt / sizeof deflt[0]);
        memcpy(types, deflt, sizeof deflt);
    }
    struct kvc_pool *pool = kvc_pool_create(nth);
    const int TP = 128;
    struct mat dec[16], pre[16];
    unsigned long long seed = 7;
    size_t scr_bytes = 0;
    for (int i = 0; i < nt; i++) {
        if (make(&dec[i], types[i], n_in, n_out, &seed) || make(&pre[i], types[i], n_in, n_in, &seed)) return 1;
        size_t s = kvc_matmul_scratch_bytes(&pre[i].w, TP);
        if (s > scr_bytes) scr_bytes = s;
    }
    float *X = kvc_alloc_aligned((size_t)TP * n_in * sizeof(float));
    float *Y = kvc_alloc_aligned((size_t)TP * (n_out > n_in ? n_out : n_in) * sizeof(float));
    void *scr = kvc_alloc_aligned(scr_bytes + 64);
    for (int64_t i = 0; i < TP * n_in; i++) X[i] = randn(&seed);
    enum { R = 7 };
    double td[16][R], tp[16][R];
    for (int r = 0; r < R; r++)
        for (int i = 0; i < nt; i++) {
            td[i][r] = time_once(pool, &dec[i].w, X, 1, Y, scr);
            tp[i][r] = time_once(pool, &pre[i].w, X, TP, Y, scr);
        }
    printf("threads %d, isa %s; decode: T 1 on %lldx%lld; prefill: T %d on %lldx%lld; medians of %d, interleaved\n",
           nth, kvc_isa_name(kvc_isa_best()), (long long)n_in, (long long)n_out, TP, (long long)n_in,
           (long long)n_in, R);
    printf("%-7s %6s %10s %12s %14s %14s\n", "type", "bpw", "MiB", "decode ms", "decode GB/s", "prefill GF/s");
    for (int i = 0; i < nt; i++) {
        qsort(td[i], R, sizeof(double), cmp_double);
        qsort(tp[i], R, sizeof(double), cmp_double);
        const double bytes = (double)dec[i].w.row_bytes * (double)n_out;
        printf("%-7s %6.3f %10.2f %12.3f %14.2f %14.1f\n", kvc_wtype_get(types[i])->name, kvc_wtype_bpw(types[i]),
               bytes / 1048576.0, td[i][R / 2] * 1e3, bytes / td[i][R / 2] * 1e-9,
               2.0 * TP * (double)n_in * (double)n_in / tp[i][R / 2] * 1e-9);
    }
    for (int i = 0; i < nt; i++) {
        kvc_free_aligned(dec[i].data);
        kvc_free_aligned(pre[i].data);
    }
    kvc_free_aligned(X); kvc_free_aligned(Y); kvc_free_aligned(scr);
    kvc_pool_free(pool);
    return 0;
}
