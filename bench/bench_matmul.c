/* bench_matmul.c - micro-benchmark of kvc_matmul: GFLOP/s (2 T n_in n_out per call) for every
 * weight type and ISA level this CPU has, T = 1 (decode) and T = 512 (prefill), shapes
 * n_in x n_out = 384x384, 384x1024, 1024x384, 384x8192, on a pool of 2 threads (argv[1]
 * overrides), median of 5 repeats; also the round-trip latency of an empty pool run. */
#include "arch/kernels.h"
#include "arch/kernels_internal.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
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

static float frand(unsigned long long *s) {
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    return (float)((double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Seconds per call: median over 5 repeats of enough calls to take ~30 ms each. */
static double time_matmul(struct kvc_pool *pool, enum kvc_isa isa, const struct kvc_weight *w,
                          const float *X, int T, float *Y, void *scratch) {
    kvc_matmul(pool, isa, w, X, T, Y, scratch); /* warm up */
    double t0 = now_s();
    int calls = 0;
    do {
        kvc_matmul(pool, isa, w, X, T, Y, scratch);
        calls++;
    } while (now_s() - t0 < 0.01);
    calls = calls * 3 + 1;
    double rep[5];
    for (int k = 0; k < 5; k++) {
        double a = now_s();
        for (int c = 0; c < calls; c++) kvc_matmul(pool, isa, w, X, T, Y, scratch);
        rep[k] = (now_s() - a) / calls;
    }
    qsort(rep, 5, sizeof rep[0], cmp_double);
    return rep[2];
}

static void nop_task(void *arg, int ith, int nth) {
    (void)arg;
    (void)ith;
    (void)nth;
}

/* Median round trip of kvc_pool_run with an empty task, in microseconds. */
static double pool_latency_us(struct kvc_pool *pool) {
    double rep[5];
    for (int k = 0; k < 5; k++) {
        const int calls = 20000;
        double a = now_s();
        for (int c = 0; c < calls; c++) kvc_pool_run(pool, nop_task, NULL);
        rep[k] = (now_s() - a) / calls * 1e6;
    }
    qsort(rep, 5, sizeof rep[0], cmp_double);
    return rep[2];
}

int main(int argc, char **argv) {
    const int nth = argc > 1 ? atoi(argv[1]) : 2;
    struct kvc_pool *pool = kvc_pool_create(nth);
    if (!pool) return 1;
    static const uint32_t types[] = {KVC_TYPE_F32, KVC_TYPE_F16, KVC_TYPE_BF16, KVC_TYPE_Q8_0,
                                     KVC_TYPE_Q4_0};
    static const int shapes[][2] = {{384, 384}, {384, 1024}, {1024, 384}, {384, 8192}};
    static const int Ts[] = {1, 512};
    const int max_in = 1024, max_out = 8192, max_T = 512;
    unsigned long long seed = 12345;
    float *wf = kvc_alloc_aligned((size_t)max_in * max_out * sizeof(float));
    void *wd = kvc_alloc_aligned((size_t)max_in * max_out * sizeof(float));
    float *X = kvc_alloc_aligned((size_t)max_T * max_in * sizeof(float));
    float *Y = kvc_alloc_aligned((size_t)max_T * max_out * sizeof(float));
    void *scratch = kvc_alloc_aligned((size_t)max_T * (max_in / 32) * sizeof(block_q8_0));
    if (!wf || !wd || !X || !Y || !scratch) return 1;
    for (size_t i = 0; i < (size_t)max_in * max_out; i++) wf[i] = 0.05f * frand(&seed);
    for (size_t i = 0; i < (size_t)max_T * max_in; i++) X[i] = frand(&seed);

    /* levels: scalar only for T = 1 (it is a reference, far too slow for prefill) */
    struct { enum kvc_isa isa; int vnni; const char *name; } lv[4];
    int nl = 0;
    lv[nl].isa = KVC_ISA_SCALAR; lv[nl].vnni = 0; lv[nl++].name = "scalar";
    if (kvc_isa_supported(KVC_ISA_AVX2)) { lv[nl].isa = KVC_ISA_AVX2; lv[nl].vnni = 0; lv[nl++].name = "avx2"; }
    if (kvc_isa_supported(KVC_ISA_AVX512)) {
        lv[nl].isa = KVC_ISA_AVX512; lv[nl].vnni = 0; lv[nl++].name = "avx512";
        if (kvc_cpu_has_avx512vnni()) { lv[nl].isa = KVC_ISA_AVX512; lv[nl].vnni = 1; lv[nl++].name = "avx512vnni"; }
    }
    printf("threads %d; empty kvc_pool_run round trip %.2f us (median of 5)\n", nth,
           pool_latency_us(pool));
    printf("GFLOP/s = 2*T*n_in*n_out / time per call (median of 5)\n");
    printf("%-5s %-11s %4s", "type", "isa", "T");
    for (int s = 0; s < 4; s++) printf("  %5dx%-5d", shapes[s][0], shapes[s][1]);
    printf("\n");
    for (int ti = 0; ti < 5; ti++) {
        const uint32_t type = types[ti];
        const struct kvc_type_size *info = kvc_type_info(type);
        for (int tt = 0; tt < 2; tt++) {
            const int T = Ts[tt];
            for (int l = 0; l < nl; l++) {
                if (T > 1 && lv[l].isa == KVC_ISA_SCALAR) continue;
                if (lv[l].isa == KVC_ISA_AVX512 && !(type == KVC_TYPE_Q8_0 || type == KVC_TYPE_Q4_0) && lv[l].vnni) continue;
                kvc_avx512_allow_vnni(lv[l].vnni);
                printf("%-5s %-11s %4d", info->name, lv[l].name, T);
                for (int s = 0; s < 4; s++) {
                    const int n_in = shapes[s][0], n_out = shapes[s][1];
                    struct kvc_weight w = {type, n_in, n_out, (size_t)(n_in / info->blck) * info->bytes, wd};
                    for (int r = 0; r < n_out; r++) {
                        const float *src = wf + (size_t)r * n_in;
                        char *dst = (char *)wd + (size_t)r * w.row_bytes;
                        if (type == KVC_TYPE_F32) memcpy(dst, src, (size_t)n_in * 4);
                        else if (type == KVC_TYPE_Q8_0) kvc_quantize_row_q8_0(src, (block_q8_0 *)dst, n_in, KVC_ISA_SCALAR);
                        else if (type == KVC_TYPE_Q4_0) kvc_quantize_row_q4_0(src, (block_q4_0 *)dst, n_in);
                        else for (int i = 0; i < n_in; i++) {
                            uint16_t h = type == KVC_TYPE_F16 ? kvc_f32_to_f16(src[i]) : kvc_f32_to_bf16(src[i]);
                            memcpy(dst + 2 * i, &h, 2);
                        }
                    }
                    const double sec = time_matmul(pool, lv[l].isa, &w, X, T, Y, scratch);
                    printf("  %11.1f", 2.0 * T * n_in * n_out / sec * 1e-9);
                }
                printf("\n");
                fflush(stdout);
            }
        }
    }
    kvc_avx512_allow_vnni(1);
    kvc_pool_free(pool);
    kvc_free_aligned(wf); kvc_free_aligned(wd); kvc_free_aligned(X); kvc_free_aligned(Y);
    kvc_free_aligned(scratch);
    return 0;
}
