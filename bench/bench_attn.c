/* bench_attn.c - decode attention alone at depth, in the shape of a real model (default
 * llama-3.2-1b: 16 layers, 8 KV heads, 4 query heads each, head dim 64): one query token
 * against `depth` cached positions per (layer, KV head), KV heads split over the threads as
 * the forward pass does. Codec pairs are timed interleaved (pair 1, pair 2, ..., repeat), so
 * their ratio is measured side by side; prints per token the median wall ms, the threads' CPU
 * ms (median and min: on a shared machine the min is the least disturbed) and ns per cached
 * row (K and V) of wall time.
 *   usage: bench_attn [depth=32768] [reps=7] [threads=2] [layers=16] "K/V" ["K/V" ...] */
#include "arch/isa.h"
#include "arch/kernels.h"
#include "kv/kvcache.h"
#include "util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bench_util.h"

#define N_HEAD_KV 8
#define G 4
#define D 64
#define FILL_ROWS 4096
#define MAX_PAIRS 8
#define MAX_REPS 64

struct task {
    struct kv_cache *kv;
    struct kv_attn_scratch *scr; /* (threads) */
    const float *q;              /* (N_HEAD_KV * G, D) */
    float *out;                  /* (N_HEAD_KV * G, D) */
    int layer, t;
    double cpu_ns[16];           /* per thread, summed */
};

static void attn_task(void *arg, int ith, int nth) {
    struct task *a = arg;
    const double c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    const size_t qs = (size_t)N_HEAD_KV * G * D;
    for (int h = ith; h < N_HEAD_KV; h += nth)
        kv_cache_attend_rows(a->kv, &a->scr[ith], a->layer, h, G, a->q + (size_t)h * G * D, qs, 0, 1, a->t, 0,
                             a->t + 1, 1.0f / sqrtf((float)D), a->out + (size_t)h * G * D, NULL);
    a->cpu_ns[ith] += clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
}

/* Rows of every (layer, KV head): FILL_ROWS random rows encoded once, their codes copied
 * over all positions (decode cost does not depend on which rows these are). */
static void fill(struct kv_cache *kv, int n) {
    float *k = malloc(sizeof(float) * FILL_ROWS * D), *v = malloc(sizeof(float) * FILL_ROWS * D);
    for (int i = 0; i < FILL_ROWS * D; i++) {
        k[i] = randn() + 0.3f * (float)(i % D % 3);
        v[i] = randn();
    }
    kv_cache_store(kv, 0, 0, 0, FILL_ROWS, k, v);
    struct kv_side *sides[2] = {&kv->k, &kv->v};
    for (int s = 0; s < 2; s++) {
        struct kv_side *sd = sides[s];
        const size_t rb = sd->slot[0].row_bytes, blk = rb * FILL_ROWS;
        for (int i = 0; i < kv->n_layer * kv->n_head_kv; i++)
            for (int p = 0; p < n; p += FILL_ROWS) {
                uint8_t *dst = sd->codes + sd->slot_off[i] + (size_t)p * rb;
                if (dst == sd->codes) continue;
                memcpy(dst, sd->codes, n - p < FILL_ROWS ? (size_t)(n - p) * rb : blk);
            }
    }
    kv->n_past = n;
    free(k);
    free(v);
}

int main(int argc, char **argv) {
    const int depth = argc > 1 ? atoi(argv[1]) : 32768;
    const int reps = argc > 2 ? atoi(argv[2]) : 7;
    const int nth = argc > 3 ? atoi(argv[3]) : 2;
    const int layers = argc > 4 ? atoi(argv[4]) : 16;
    if (depth < 1 || reps < 1 || reps > MAX_REPS || nth < 1 || nth > 16 || layers < 1) {
        fprintf(stderr, "usage: bench_attn [depth] [reps <= %d] [threads <= 16] [layers] \"K/V\" ...\n", MAX_REPS);
        return 2;
    }
    const char *defaults[] = {"f16/f16", "hdc:bits=3/hdc:bits=3"};
    const int np = argc > 5 ? (argc - 5 < MAX_PAIRS ? argc - 5 : MAX_PAIRS) : 2;
    const enum kvc_isa isa = kvc_isa_best();
    struct kv_cache kv[MAX_PAIRS];
    char names[MAX_PAIRS][128];
    for (int p = 0; p < np; p++) {
        snprintf(names[p], sizeof names[p], "%s", argc > 5 ? argv[5 + p] : defaults[p]);
        char spec[128];
        snprintf(spec, sizeof spec, "%s", names[p]);
        char *slash = strchr(spec, '/');
        const char *sk = spec, *sv = slash ? slash + 1 : spec;
        if (slash) *slash = 0;
        kvc_error err = {0};
        if (kv_cache_init(&kv[p], layers, N_HEAD_KV, D, depth + 1, 1, sk, sv, 0, 0, 500000.0f, 1, NULL, isa, &err)) {
            fprintf(stderr, "bench_attn: %s: %s\n", names[p], err.msg);
            return 1;
        }
        fill(&kv[p], depth + 1);
    }
    struct kvc_pool *pool = kvc_pool_create(nth);
    float *q = malloc(sizeof(float) * N_HEAD_KV * G * D), *out = malloc(sizeof(float) * N_HEAD_KV * G * D);
    for (int i = 0; i < N_HEAD_KV * G * D; i++) q[i] = randn();
    double wall[MAX_PAIRS][MAX_REPS], cpu[MAX_PAIRS][MAX_REPS];
    struct kv_attn_scratch *scr[MAX_PAIRS];
    for (int p = 0; p < np; p++) {
        scr[p] = calloc((size_t)nth, sizeof **scr);
        for (int i = 0; i < nth; i++)
            if (kv_cache_scratch_init(&kv[p], &scr[p][i])) return 1;
    }
    const int tokens = 4; /* decoded tokens per timed repeat */
    for (int r = -1; r < reps; r++) /* r = -1: warm-up */
        for (int p = 0; p < np; p++) {
            struct task a = {.kv = &kv[p], .scr = scr[p], .q = q, .out = out, .t = depth};
            const double w0 = clock_ns(CLOCK_MONOTONIC);
            for (int t = 0; t < tokens; t++)
                for (int l = 0; l < layers; l++) {
                    a.layer = l;
                    kvc_pool_run(pool, attn_task, &a);
                }
            const double w = (clock_ns(CLOCK_MONOTONIC) - w0) / tokens;
            double c = 0;
            for (int i = 0; i < nth; i++) c += a.cpu_ns[i];
            if (r >= 0) {
                wall[p][r] = w;
                cpu[p][r] = c / tokens;
            }
        }
    const double rows = (double)layers * N_HEAD_KV * (depth + 1);
    printf("decode attention, %d layers x %d KV heads x %d query heads, d = %d, depth %d, %d threads, isa %s; "
           "median of %d (pairs interleaved), per token\n",
           layers, N_HEAD_KV, G, D, depth, nth, kvc_isa_name(isa), reps);
    printf("%-34s %9s %8s %8s %8s %8s %8s %8s\n", "K/V", "bytes/pos", "wall ms", "cpu ms", "cpu min", "ns/row",
           "vs first", "cpu min vs first");
    double first = 0, cfirst = 0;
    for (int p = 0; p < np; p++) {
        qsort(wall[p], (size_t)reps, sizeof(double), cmp_double);
        qsort(cpu[p], (size_t)reps, sizeof(double), cmp_double);
        const double w = wall[p][reps / 2], c = cpu[p][reps / 2];
        if (p == 0) {
            first = w;
            cfirst = cpu[p][0];
        }
        printf("%-34s %9zu %8.2f %8.2f %8.2f %8.3f %8.3f %8.3f\n", names[p],
               kv[p].k.slot[0].row_bytes + kv[p].v.slot[0].row_bytes, w / 1e6, c / 1e6, cpu[p][0] / 1e6, w / rows,
               first / w, cfirst / cpu[p][0]);
    }
    for (int p = 0; p < np; p++) {
        for (int i = 0; i < nth; i++) kv_cache_scratch_free(&scr[p][i]);
        free(scr[p]);
        kv_cache_free(&kv[p]);
    }
    kvc_pool_free(pool);
    free(q);
    free(out);
    return 0;
}
