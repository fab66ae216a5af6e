/* bench_codecs.c - speed of the KV codec kernels: for head dim d and n cached rows, the
 * time per row of score (one prepared query against n keys) and accumulate (n weighted
 * values into one accumulator), per codec and per ISA level the CPU supports; median of 7
 * repeats. Also encode per row. A second row count (default 32x n) shows the kernels when
 * the rows no longer fit in the L2 cache.
 *   usage: bench_codecs [d=64] [n=4096] [n_big=131072] [codec ...] */
#include "arch/isa.h"
#include "kv/codec.h"
#include "util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bench_util.h"

#define REPEATS 7

/* Thread CPU time: time the thread spends descheduled on a busy machine is not counted. */
static volatile float sink;

/* Median over REPEATS of the ns per row of one kernel call over n rows. Each repeat runs
 * `iters` calls (>= ~0.5 ms in all) and keeps the fastest call, which filters preemption and
 * co-runners on a shared machine. which: 0 = score, 1 = accumulate, 2 = encode. */
static double time_kernel(const struct kv_slot *s, int which, const float *x, void *enc,
                          const float *qp, const float *w, float *out, float *acc, int n) {
    double t[REPEATS];
    int iters = 1;
    for (;;) { /* calibrate */
        double t0 = now_ns();
        for (int it = 0; it < iters; it++) {
            if (which == 0) s->k->score(s, qp, enc, 0, n, out);
            else if (which == 1) s->k->accumulate(s, w, enc, 0, n, acc);
            else s->k->encode(s, x, 0, n, enc);
        }
        if (now_ns() - t0 > 5e5 || iters > (1 << 20)) break;
        iters *= 2;
    }
    for (int r = 0; r < REPEATS; r++) {
        double best = 1e300;
        for (int it = 0; it < iters; it++) {
            double t0 = now_ns();
            if (which == 0) s->k->score(s, qp, enc, 0, n, out);
            else if (which == 1) s->k->accumulate(s, w, enc, 0, n, acc);
            else s->k->encode(s, x, 0, n, enc);
            double dt = now_ns() - t0;
            if (dt < best) best = dt;
        }
        t[r] = best / n;
        sink = out[0] + acc[0];
    }
    qsort(t, REPEATS, sizeof t[0], cmp_double);
    return t[REPEATS / 2];
}

static void bench_codec(const char *spec_text, int d, int n, int n_big) {
    struct kv_spec spec;
    kvc_error err = {0};
    if (kv_spec_parse(spec_text, &spec, &err) != KVC_OK) {
        printf("%-8s  (skipped: %s)\n", spec_text, err.msg);
        return;
    }
    int nmax = n > n_big ? n : n_big;
    float *x = malloc(sizeof(float) * (size_t)nmax * d), *q = malloc(sizeof(float) * d);
    float *w = malloc(sizeof(float) * nmax), *out = malloc(sizeof(float) * nmax);
    for (size_t i = 0; i < (size_t)nmax * d; i++) x[i] = randn();
    for (int j = 0; j < d; j++) q[j] = randn();
    for (int i = 0; i < nmax; i++) w[i] = 1e-4f + (float)(i % 97) * 1e-3f; /* all nonzero */
    for (int l = 0; l < KVC_ISA_COUNT; l++) {
        if (!kvc_isa_supported((enum kvc_isa)l)) continue;
        struct kv_slot s;
        struct kv_slot_info info = {.d = d, .seed = 7, .rope_base = 10000.0f};
        if (kv_slot_init(&s, &spec, &info, (enum kvc_isa)l, &err) != KVC_OK) {
            printf("%-8s  (skipped: %s)\n", spec_text, err.msg);
            break;
        }
        if (s.k != &spec.codec->kern[l]) { /* this level falls back: nothing new to time */
            kv_slot_free(&s);
            continue;
        }
        void *enc = kvc_alloc_aligned(s.row_bytes * (size_t)nmax);
        float *qp = kvc_alloc_aligned(sizeof(float) * s.qp_floats);
        float *acc = kvc_alloc_aligned(sizeof(float) * s.acc_floats);
        s.k->encode(&s, x, 0, nmax, enc);
        s.k->prepare_query(&s, q, qp);
        double sc = time_kernel(&s, 0, x, enc, qp, w, out, acc, n);
        double ac = time_kernel(&s, 1, x, enc, qp, w, out, acc, n);
        double sb = time_kernel(&s, 0, x, enc, qp, w, out, acc, n_big);
        double ab = time_kernel(&s, 1, x, enc, qp, w, out, acc, n_big);
        double en = time_kernel(&s, 2, x, enc, qp, w, out, acc, n);
        printf("%-8s %-6s %5zu %6.2f | %7.3f %7.3f %7.3f | %7.3f %7.3f %7.3f | %7.2f\n",
               spec_text, kvc_isa_name((enum kvc_isa)l), s.row_bytes, kv_spec_bits(&spec, d), sc,
               ac, sc + ac, sb, ab, sb + ab, en);
        kvc_free_aligned(enc);
        kvc_free_aligned(qp);
        kvc_free_aligned(acc);
        kv_slot_free(&s);
    }
    free(x); free(q); free(w); free(out);
    kv_spec_free(&spec);
}

int main(int argc, char **argv) {
    int d = argc > 1 ? atoi(argv[1]) : 64;
    int n = argc > 2 ? atoi(argv[2]) : 4096;
    int n_big = argc > 3 ? atoi(argv[3]) : 32 * n;
    if (d <= 0 || n <= 0 || n_big <= 0) {
        fprintf(stderr, "usage: %s [d=64] [n=4096] [n_big=32n] [codec ...]\n", argv[0]);
        return 2;
    }
    printf("KV codec kernels, d=%d: ns per cached row (median of %d); score = one query vs n keys,\n"
           "acc = n weighted values into one accumulator; best ISA here: %s\n",
           d, REPEATS, kvc_isa_name(kvc_isa_best()));
    printf("%-8s %-6s %5s %6s | %-23s | %-23s | %7s\n", "codec", "isa", "bytes", "bits",
           "n=", "n_big=", "encode");
    char h1[32], h2[32];
    snprintf(h1, sizeof h1, "n=%d", n);
    snprintf(h2, sizeof h2, "n=%d", n_big);
    printf("%-8s %-6s %5s %6s | %-23s | %-23s |\n", "", "", "/row", "/elem", h1, h2);
    printf("%-8s %-6s %5s %6s | %7s %7s %7s | %7s %7s %7s | %7s\n", "", "", "", "", "score",
           "acc", "sum", "score", "acc", "sum", "");
    if (argc > 4) {
        for (int i = 4; i < argc; i++) bench_codec(argv[i], d, n, n_big);
    } else {
        for (int i = 0; i < kv_codec_table_len; i++) bench_codec(kv_codec_table[i]->name, d, n, n_big);
    }
    return 0;
}
