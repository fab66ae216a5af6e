/* bench_hdc.c - speed of the hypervector codecs (hdc, hdc-select) against f16, q8_0 and q4_0h
 * from the codec table: for head dim d and n cached rows, ns per row of score (one prepared
 * query against n keys), accumulate (n weighted values, all weights non-zero), accumulate
 * with only k = 256 non-zero weights (what hdc-select leaves), encode; and ns per call of
 * prepare_query and finish (the once-per-head transforms). Median of 7 repeats, per ISA level
 * the CPU supports; popcount settings also with AVX-512 VPOPCNTDQ switched off.
 * "bench_hdc q" prints quality tables instead: reconstruction MSE, dot-product slope and score
 * error on synthetic rows per setting, and hdc-select's recall of the true top keys.
 *   usage: bench_hdc [d=64] [n=4096] [spec ...]  |  bench_hdc q */
#include "arch/isa.h"
#include "codecs/hdc_common.h"
#include "kv/codec.h"
#include "util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bench_util.h"

#define REPEATS 7
#define SPARSE_K 256

static volatile float sink;

enum { W_SCORE, W_ACC, W_ACC_SPARSE, W_ENCODE, W_PREPARE, W_FINISH, W_SCORE_G4, W_ACC_G4 };

struct job {
    const struct kv_slot *s;
    const float *x, *q, *w, *ws;
    void *enc;
    float *qp, *out, *acc, *y;
    int n;
    float *qp4, *out4, *acc4, *w4; /* 4 query heads of one KV head (grouped kernels) */
};

static void run_once(const struct job *j, int which) {
    const struct kv_slot *s = j->s;
    switch (which) {
    case W_SCORE: s->k->score(s, j->qp, j->enc, 0, j->n, j->out); break;
    case W_ACC: s->k->accumulate(s, j->w, j->enc, 0, j->n, j->acc); break;
    case W_ACC_SPARSE: s->k->accumulate(s, j->ws, j->enc, 0, j->n, j->acc); break;
    case W_ENCODE: s->k->encode(s, j->x, 0, j->n, j->enc); break;
    case W_PREPARE: s->k->prepare_query(s, j->q, j->qp); break;
    case W_SCORE_G4:
        if (s->k->score_g) s->k->score_g(s, 4, j->qp4, (size_t)s->qp_floats, j->enc, 0, j->n, j->out4, (size_t)j->n);
        else
            for (int g = 0; g < 4; g++)
                s->k->score(s, j->qp4 + (size_t)g * s->qp_floats, j->enc, 0, j->n, j->out4 + (size_t)g * j->n);
        break;
    case W_ACC_G4:
        if (s->k->accumulate_g)
            s->k->accumulate_g(s, 4, j->w4, (size_t)j->n, j->enc, 0, j->n, j->acc4, (size_t)s->acc_floats);
        else
            for (int g = 0; g < 4; g++)
                s->k->accumulate(s, j->w4 + (size_t)g * j->n, j->enc, 0, j->n, j->acc4 + (size_t)g * s->acc_floats);
        break;
    default:
        if (s->k->finish) s->k->finish(s, j->acc, j->y);
        break;
    }
}

/* Median ns per row (per call for prepare / finish). */
static double time_it(const struct job *j, int which) {
    double t[REPEATS];
    int iters = 1, per_call = which == W_PREPARE || which == W_FINISH;
    for (;;) {
        double t0 = now_ns();
        for (int it = 0; it < iters; it++) run_once(j, which);
        if (now_ns() - t0 > 2e6 || iters > (1 << 22)) break;
        iters *= 2;
    }
    for (int r = 0; r < REPEATS; r++) {
        double t0 = now_ns();
        for (int it = 0; it < iters; it++) run_once(j, which);
        t[r] = (now_ns() - t0) / iters / (per_call ? 1 : j->n);
        sink = j->out[0] + j->acc[0] + j->y[0];
    }
    qsort(t, REPEATS, sizeof t[0], cmp_double);
    return t[REPEATS / 2];
}

static void bench_spec(const char *text, int d, int n) {
    struct kv_spec spec;
    kvc_error err = {0};
    if (kv_spec_parse(text, &spec, &err) != KVC_OK) {
        printf("%-34s (skipped: %s)\n", text, err.msg);
        return;
    }
    float *x = malloc(sizeof(float) * (size_t)n * d), *q = malloc(sizeof(float) * d);
    float *w = malloc(sizeof(float) * n), *ws = calloc((size_t)n, sizeof(float));
    float *out = malloc(sizeof(float) * n), y[4096];
    for (size_t i = 0; i < (size_t)n * d; i++) x[i] = randn();
    for (int i = 0; i < d; i++) q[i] = randn();
    for (int i = 0; i < n; i++) w[i] = 1e-4f + (float)(i % 97) * 1e-3f;
    for (int i = 0; i < SPARSE_K && i < n; i++) ws[(int)((long)i * n / SPARSE_K)] = 1.0f / SPARSE_K;
    int is_hdc = strcmp(spec.codec->name, "hdc") == 0;
    for (int l = 0; l < KVC_ISA_COUNT; l++) {
        if (!kvc_isa_supported((enum kvc_isa)l)) continue;
        struct kv_slot s;
        struct kv_slot_info info = {.d = d, .seed = 7, .rope_base = 10000.0f};
        if (kv_slot_init(&s, &spec, &info, (enum kvc_isa)l, &err) != KVC_OK) {
            printf("%-34s (skipped: %s)\n", text, err.msg);
            break;
        }
        if (s.k != &spec.codec->kern[l]) {
            kv_slot_free(&s);
            continue;
        }
        void *enc = kvc_alloc_aligned(s.row_bytes * (size_t)n);
        float *qp = kvc_alloc_aligned(sizeof(float) * (size_t)s.qp_floats);
        float *acc = kvc_alloc_aligned(sizeof(float) * (size_t)s.acc_floats);
        float *qp4 = kvc_alloc_aligned(sizeof(float) * 4 * (size_t)s.qp_floats);
        float *acc4 = kvc_alloc_aligned(sizeof(float) * 4 * (size_t)s.acc_floats);
        float *out4 = malloc(sizeof(float) * 4 * (size_t)n), *w4 = malloc(sizeof(float) * 4 * (size_t)n);
        for (int i = 0; i < 4 * n; i++) w4[i] = w[i % n];
        for (int g = 0; g < 4; g++) s.k->prepare_query(&s, q, qp4 + (size_t)g * s.qp_floats);
        memset(acc4, 0, sizeof(float) * 4 * (size_t)s.acc_floats);
        struct job j = {&s, x, q, w, ws, enc, qp, out, acc, y, n, qp4, out4, acc4, w4};
        s.k->encode(&s, x, 0, n, enc);
        s.k->prepare_query(&s, q, qp);
        /* popcount settings: with and without VPOPCNTDQ at the AVX-512 level */
        int vp_runs = is_hdc && l == KVC_ISA_AVX512 && ((struct hdc_state *)s.state)->qbits == 1 &&
                      kvc_cpu_has_vpopcntdq() ? 2 : 1;
        /* b >= 2 at the AVX-512 level: with and without the int8 (VNNI) scores */
        int i8_runs = is_hdc && l == KVC_ISA_AVX512 && ((struct hdc_state *)s.state)->use_i8 ? 2 : 1;
        if (i8_runs == 2) vp_runs = 2;
        for (int vp = 0; vp < vp_runs; vp++) {
            if (i8_runs == 2) ((struct hdc_state *)s.state)->use_i8 = !vp;
            else if (vp_runs == 2) ((struct hdc_state *)s.state)->use_vpopcnt = !vp;
            double sc = time_it(&j, W_SCORE), ac = time_it(&j, W_ACC), as = time_it(&j, W_ACC_SPARSE);
            double en = time_it(&j, W_ENCODE), pr = time_it(&j, W_PREPARE), fi = time_it(&j, W_FINISH);
            double sg = time_it(&j, W_SCORE_G4), ag = time_it(&j, W_ACC_G4);
            char isa[32];
            snprintf(isa, sizeof isa, "%s%s", kvc_isa_name((enum kvc_isa)l),
                     i8_runs == 2 ? (vp ? "-float" : "+i8") : vp_runs == 2 ? (vp ? "-novp" : "+vp") : "");
            printf("%-34s %-11s %5zu %6.2f | %7.3f %7.3f %7.3f | %7.3f | %7.1f %7.1f | %7.3f | %7.3f %7.3f\n", text,
                   isa, s.row_bytes, kv_spec_bits(&spec, d), sc, ac, as, en, pr, fi,
                   sc + ac + (pr + fi) / n, sg, ag);
        }
        kvc_free_aligned(qp4);
        kvc_free_aligned(acc4);
        free(out4);
        free(w4);
        kvc_free_aligned(enc);
        kvc_free_aligned(qp);
        kvc_free_aligned(acc);
        kv_slot_free(&s);
    }
    free(x); free(q); free(w); free(ws); free(out);
    kv_spec_free(&spec);
}

/* ---- quality on synthetic rows (bench_hdc q): Gaussian rows, and "spiky" rows with two
 * large outlier channels and a common offset (like post-RoPE keys) ---- */

static void make_rows(float *x, int n, int d, int spiky) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) {
            float v = randn();
            if (spiky) v += (j == 3 ? 8.0f : j == 40 ? -6.0f : 0.0f) + (j % 7 == 0 ? 1.5f : 0.0f);
            x[(size_t)i * d + j] = v;
        }
}

static void quality_spec(const char *text, int d) {
    struct kv_spec spec;
    kvc_error err = {0};
    if (kv_spec_parse(text, &spec, &err) != KVC_OK) {
        printf("%-34s (skipped: %s)\n", text, err.msg);
        return;
    }
    const int n = 2048, nq = 16;
    float *x = malloc(sizeof(float) * n * d), *y = malloc(sizeof(float) * n * d);
    float *q = malloc(sizeof(float) * d), *sc = malloc(sizeof(float) * n);
    printf("%-34s %6.2f", text, kv_spec_bits(&spec, d));
    for (int spiky = 0; spiky < 2; spiky++) {
        make_rows(x, n, d, spiky);
        struct kv_slot s;
        struct kv_slot_info info = {.d = d, .seed = 11, .rope_base = 10000.0f};
        if (kv_slot_init(&s, &spec, &info, kvc_isa_best(), &err) != KVC_OK) {
            printf(" (skipped: %s)\n", err.msg);
            break;
        }
        void *enc = kvc_alloc_aligned(s.row_bytes * (size_t)n);
        float *qp = kvc_alloc_aligned(sizeof(float) * (size_t)s.qp_floats);
        s.k->encode(&s, x, 0, n, enc);
        s.k->decode(&s, enc, 0, n, y);
        double e = 0, t = 0, xy = 0;
        for (size_t i = 0; i < (size_t)n * d; i++) {
            e += (double)(y[i] - x[i]) * (y[i] - x[i]);
            t += (double)x[i] * x[i];
            xy += (double)x[i] * y[i];
        }
        /* score error relative to |q||k|, over nq random queries */
        double se = 0, ss = 0;
        for (int k = 0; k < nq; k++) {
            for (int j = 0; j < d; j++) q[j] = randn();
            s.k->prepare_query(&s, q, qp);
            s.k->score(&s, qp, enc, 0, n, sc);
            double nqq = 0;
            for (int j = 0; j < d; j++) nqq += (double)q[j] * q[j];
            for (int i = 0; i < n; i++) {
                double tr = 0, nk = 0;
                for (int j = 0; j < d; j++) {
                    tr += (double)q[j] * x[(size_t)i * d + j];
                    nk += (double)x[(size_t)i * d + j] * x[(size_t)i * d + j];
                }
                se += (sc[i] - tr) * (sc[i] - tr) / (nqq * nk);
                ss += 1;
            }
        }
        printf(" | %8.5f %7.4f %8.5f", e / t, xy / t, sqrt(se / ss));
        kvc_free_aligned(enc);
        kvc_free_aligned(qp);
        kv_slot_free(&s);
    }
    printf("\n");
    free(x); free(y); free(q); free(sc);
    kv_spec_free(&spec);
}

/* hdc-select: recall of the true top-32 keys (exact q.k) in the sketch's top-k. */
static void recall_select(int d) {
    const int n = 4096, trials = 20, top = 32;
    const char *specs[] = {"expand=1", "expand=2", "expand=4", "expand=8", "expand=1,sim=asym",
                           "expand=2,sim=asym", "expand=4,sim=asym"};
    printf("\nhdc-select recall of the true top-%d keys within the selected k (n=%d, Gaussian "
           "rows, planted: 32 keys q/2 + noise)\n%-28s %8s %8s %8s | %8s\n", top, n, "sketch",
           "k=64", "k=128", "k=256", "planted");
    float *x = malloc(sizeof(float) * n * d), *q = malloc(sizeof(float) * d);
    float *tr = malloc(sizeof(float) * n), *sims = malloc(sizeof(float) * n);
    for (size_t si = 0; si < sizeof specs / sizeof *specs; si++) {
        int asym = strstr(specs[si], "asym") != NULL;
        int expand = atoi(strchr(specs[si], '=') + 1);
        struct hdc_cfg cfg = {.bits = 1, .expand = expand, .qbits = 1, .rounds = 1};
        double rec[3] = {0}, rec_p = 0;
        for (int t = 0; t < trials * 2; t++) {
            int planted = t >= trials;
            struct hdc_state st;
            if (hdc_state_init(&st, d, &cfg, 100 + (uint64_t)t, NULL)) break;
            for (size_t i = 0; i < (size_t)n * d; i++) x[i] = randn();
            for (int j = 0; j < d; j++) q[j] = randn();
            if (planted)
                for (int p = 0; p < top; p++)
                    for (int j = 0; j < d; j++) x[(size_t)(p * 127 + 5) * d + j] = 0.5f * q[j] + x[(size_t)(p * 127 + 5) * d + j];
            uint8_t *rows = malloc(st.row_bytes * n);
            float h[4096], *qp = kvc_alloc_aligned(sizeof(float) * (size_t)hdc_qp_floats(st.D, 1));
            for (int i = 0; i < n; i++) {
                hdc_forward(&st, x + (size_t)i * d, h, kvc_isa_best());
                hdc_quantize(&st, h, rows + (size_t)i * st.row_bytes);
                double a = 0;
                for (int j = 0; j < d; j++) a += (double)q[j] * x[(size_t)i * d + j];
                tr[i] = (float)a;
            }
            hdc_prepare(&st, q, qp, kvc_isa_best());
            (asym ? hdc_ops[kvc_isa_best()].score : hdc_ops[kvc_isa_best()].ham)(&st, qp, rows, st.row_bytes, n, sims);
            int ties;
            uint32_t tkey = hdc_topk_key(tr, n, top, &ties);
            const int ks[3] = {64, 128, 256};
            for (int kk = 0; kk < (planted ? 1 : 3); kk++) {
                int k = planted ? 256 : ks[kk], ties2;
                uint32_t skey = hdc_topk_key(sims, n, k, &ties2);
                int hit = 0, t1 = ties, t2 = ties2;
                for (int i = 0; i < n; i++) {
                    int in_true = hdc_fkey(tr[i]) > tkey || (hdc_fkey(tr[i]) == tkey && t1-- > 0);
                    int in_sel = hdc_fkey(sims[i]) > skey || (hdc_fkey(sims[i]) == skey && t2-- > 0);
                    hit += in_true && in_sel;
                }
                if (planted) rec_p += (double)hit / top;
                else rec[kk] += (double)hit / top;
            }
            free(rows);
            kvc_free_aligned(qp);
            hdc_state_release(&st);
        }
        printf("%-28s %8.3f %8.3f %8.3f | %8.3f\n", specs[si], rec[0] / trials, rec[1] / trials,
               rec[2] / trials, rec_p / trials);
    }
    free(x); free(q); free(tr); free(sims);
}

static const char *const quality_specs[] = {
    "q8_0", "q4_0", "q4_0h",
    "hdc:bits=1,rounds=1", "hdc:bits=1", "hdc:bits=1,expand=2", "hdc:bits=1,expand=4",
    "hdc:bits=1,qbits=1", "hdc:bits=1,expand=4,qbits=1",
    "hdc:bits=2,rounds=1", "hdc:bits=2", "hdc:bits=2,scale=rms", "hdc:bits=2,scale=ls",
    "hdc:bits=2,scale=norm", "hdc:bits=2,expand=2",
    "hdc:bits=3,rounds=1", "hdc:bits=3", "hdc:bits=3,scale=rms", "hdc:bits=3,scale=ls",
    "hdc:bits=3,scale=norm",
    "hdc:bits=4,rounds=1", "hdc:bits=4", "hdc:bits=4,scale=ls", "hdc:bits=4,scale=norm",
};

static const char *const default_specs[] = {
    "f16", "q8_0", "q4_0h",
    "hdc:bits=1", "hdc:bits=1,rounds=1", "hdc:bits=1,qbits=1", "hdc:bits=1,expand=2",
    "hdc:bits=1,expand=4,qbits=1", "hdc:bits=2", "hdc:bits=3", "hdc:bits=4",
    "hdc:bits=2,expand=2", "hdc:bits=3,expand=4",
    "hdc-select:k=256,inner=q8_0", "hdc-select:k=256,inner=q8_0,sim=ham",
    "hdc-select:k=256,inner=q8_0,expand=1", "hdc-select:k=256,inner=q8_0,expand=4",
    "hdc-select:k=256,inner=q4_0", "hdc-select:k=256,inner=f16",
};

int main(int argc, char **argv) {
    int d = argc > 1 && strcmp(argv[1], "q") ? atoi(argv[1]) : 64;
    int n = argc > 2 ? atoi(argv[2]) : 4096;
    if (d <= 0 || n <= 0) {
        fprintf(stderr, "usage: %s [d=64] [n=4096] [spec ...]   or   %s q (quality tables)\n", argv[0], argv[0]);
        return 2;
    }
    if (argc > 1 && strcmp(argv[1], "q") == 0) {
        printf("\nQuality on synthetic rows (d=64): relative reconstruction MSE, dot slope "
               "<x,y>/<x,x> (1 = unbiased),\nRMS score error / (|q||k|); Gaussian rows | spiky rows "
               "(two outlier channels, offset)\n%-34s %6s | %8s %7s %8s | %8s %7s %8s\n",
               "spec", "bits", "mse", "slope", "score", "mse", "slope", "score");
        for (size_t i = 0; i < sizeof quality_specs / sizeof *quality_specs; i++)
            quality_spec(quality_specs[i], 64);
        recall_select(64);
        return 0;
    }
    printf("HDC codec kernels, d=%d, n=%d rows: ns per row (median of %d) of score (one query vs n "
           "keys),\nacc (n weighted values), acc%d (only %d non-zero weights), encode; ns per call "
           "of prepare and finish;\nstep = score + acc + (prepare + finish) / n; score4 / acc4: the grouped kernels for 4 query\nheads sharing the KV head (ns per row for all 4; llama-3.2-1b / qwen2.5-0.5b GQA groups are 4 / 7). Best ISA here: %s, "
           "VPOPCNTDQ: %s\n",
           d, n, REPEATS, SPARSE_K, SPARSE_K, kvc_isa_name(kvc_isa_best()),
           kvc_cpu_has_vpopcntdq() ? "yes" : "no");
    printf("%-34s %-11s %5s %6s | %7s %7s %7s | %7s | %7s %7s | %7s | %7s %7s\n", "spec", "isa", "bytes",
           "bits", "score", "acc", "acc256", "encode", "prep", "finish", "step", "score4", "acc4");
    if (argc > 3)
        for (int i = 3; i < argc; i++) bench_spec(argv[i], d, n);
    else
        for (size_t i = 0; i < sizeof default_specs / sizeof *default_specs; i++)
            bench_spec(default_specs[i], d, n);
    return 0;
}
