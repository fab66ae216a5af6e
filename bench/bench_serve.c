/* bench_serve.c - what the server's shared KV pool buys: for each codec, how many sequences of
 * CTX positions fit in BUDGET (the bytes kvcodec serve's pool charges for a full sequence:
 * codec rows, sinks, recent ring, batch stage), and the aggregate decode speed of
 * kvc_eval_batch (the server's engine step without HTTP) with 1, 4 and 16 active sequences
 * at DEPTH positions each. The sequences are filled to DEPTH with synthetic rows (drawn from
 * the statistics of a short real prefill and encoded by the codec: src/eval/fill.h), so a
 * deep cache of a large model takes seconds; the decode steps are real. Codecs interleaved,
 * median of R runs.
 *   build/bench/bench_serve [-m MODEL] [--codecs "f16;hdc:bits=3"] [--ctx 4096]
 *       [--budget-mib 1024] [--depth 4096] [--steps 8] [-r 3] [-t 2] [--isa -1] [--markdown]
 *       [--shape NAME:LAYERS:KV_HEADS:HEAD_DIM]   (count only, for a model shape not on disk)
 * --markdown prints one table row per codec: | model | codec | bits | MiB per sequence |
 * sequences | t/s 1 | t/s 4 | t/s 16 | (scripts/serve_figures.sh prints the header). */
#include "kvcodec.h"
#include "eval/fill.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CODECS 8
#define MAX_SEQ 16

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Aggregate decode tokens/s of the first n sequences: `steps` batches of one token each. */
static double decode_tps(kvc_ctx *c, kvc_seq **seq, int n, int steps, int n_vocab) {
    kvc_error e;
    int32_t tok[MAX_SEQ];
    kvc_seq *bs[MAX_SEQ];
    double t0 = now_s();
    for (int st = 0; st < steps; st++) {
        for (int s = 0; s < n; s++) { tok[s] = 1 + (st * 31 + s * 17) % (n_vocab - 1); bs[s] = seq[s]; }
        struct kvc_batch b = {.n = n, .token = tok, .seq = bs};
        if (kvc_eval_batch(c, &b, &e)) { fprintf(stderr, "bench_serve: %s\n", e.msg); return -1; }
    }
    return (double)n * steps / (now_s() - t0);
}

int main(int argc, char **argv) {
    const char *model = "models/kvref-q4_0.gguf", *codecs = "f16;hdc:bits=3", *shape = NULL;
    int ctx = 4096, depth = 4096, steps = 8, reps = 3, threads = 2, isa = -1, markdown = 0;
    double budget_mib = 1024;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--markdown")) { markdown = 1; continue; }
        if (i + 1 >= argc) { fprintf(stderr, "bench_serve: %s needs a value\n", argv[i]); return 2; }
        if (!strcmp(argv[i], "-m")) model = argv[++i];
        else if (!strcmp(argv[i], "--codecs")) codecs = argv[++i];
        else if (!strcmp(argv[i], "--ctx")) ctx = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--budget-mib")) budget_mib = atof(argv[++i]);
        else if (!strcmp(argv[i], "--depth")) depth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r")) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t")) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--isa")) isa = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--shape")) shape = argv[++i];
        else { fprintf(stderr, "bench_serve: unknown option %s\n", argv[i]); return 2; }
    }
    if (ctx < 2 || depth < 1 || steps < 1 || reps < 1 || reps > 99 || !(budget_mib > 0) || threads < 1) {
        fprintf(stderr, "bench_serve: bad option value\n");
        return 2;
    }
    char list[1024], *spec[MAX_CODECS];
    int nc = 0;
    snprintf(list, sizeof list, "%s", codecs);
    for (char *t = strtok(list, ";"); t && nc < MAX_CODECS; t = strtok(NULL, ";")) {
        if (!strncmp(t, "hdc-select", 10)) { /* picks rows by content: synthetic rows would not be its real cost */
            fprintf(stderr, "bench_serve: %s: codecs that select rows by content need a real prefill; not here\n", t);
            return 2;
        }
        spec[nc++] = t;
    }
    const double budget = budget_mib * 1048576.0;
    kvc_error e;
    if (shape) { /* sequences per budget from the codec's bits alone: NAME:LAYERS:KV_HEADS:HEAD_DIM */
        char name[64];
        int L, H, D;
        if (sscanf(shape, "%63[^:]:%d:%d:%d", name, &L, &H, &D) != 4 || L < 1 || H < 1 || D < 1) {
            fprintf(stderr, "bench_serve: --shape NAME:LAYERS:KV_HEADS:HEAD_DIM\n");
            return 2;
        }
        printf("%s (%d layers, %d KV heads of %d): sequences of %d positions in %.0f MiB (codec rows only)\n", name, L, H, D,
               ctx, budget_mib);
        for (int k = 0; k < nc; k++) {
            double bits;
            if (kvc_codec_bits(spec[k], D, &bits, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
            double per_seq = (double)L * H * D * 2.0 * bits / 8.0 * ctx;
            printf("  %-14s %6.2f bits  %8.1f MiB/seq  %5d sequences\n", spec[k], bits, per_seq / 1048576.0,
                   (int)(budget / per_seq));
        }
        return 0;
    }
    kvc_model *m;
    if (kvc_model_load(model, &m, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    const struct kvc_model_info *in = kvc_model_get_info(m);
    const int nv = in->n_vocab, total_steps = 3 * steps * reps; /* sequence 0 decodes in every test */
    kvc_ctx *c[MAX_CODECS] = {0};
    kvc_seq *seq[MAX_CODECS][MAX_SEQ] = {{0}};
    struct kvc_kv_stats *stats = NULL;
    int rc = 1;
    for (int k = 0; k < nc; k++) {
        struct kvc_ctx_params p = kvc_ctx_default_params();
        p.n_ctx = ctx > depth + total_steps + 1 ? ctx : depth + total_steps + 1;
        p.n_threads = threads;
        p.isa = isa;
        p.kv_k = p.kv_v = spec[k];
        if (kvc_ctx_create(m, &p, &c[k], &e)) { fprintf(stderr, "%s\n", e.msg); goto out; }
    }
    /* the row statistics: a real prefill of 256 random tokens through the first context */
    {
        int32_t tok[256];
        for (int i = 0; i < 256; i++) tok[i] = 1 + (int)((unsigned)i * 7919u % (unsigned)(nv - 1));
        if (kvc_kv_stats_collect(c[0], tok, 256, &stats, &e)) { fprintf(stderr, "%s\n", e.msg); goto out; }
    }
    double t_fill = now_s();
    for (int k = 0; k < nc; k++)
        for (int s = 0; s < MAX_SEQ; s++)
            if (kvc_seq_create(c[k], depth + total_steps + 1, &seq[k][s], &e) ||
                kvc_seq_fill_synthetic(seq[k][s], stats, depth, 1000 + (uint64_t)s, &e)) {
                fprintf(stderr, "%s\n", e.msg);
                goto out;
            }
    t_fill = now_s() - t_fill;
    const char *base = strrchr(model, '/');
    base = base ? base + 1 : model;
    const int ns[3] = {1, 4, 16};
    double res[MAX_CODECS][3][99];
    for (int r = 0; r < reps; r++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < nc; k++)
                if ((res[k][j][r] = decode_tps(c[k], seq[k], ns[j], steps, nv)) < 0) goto out;
    if (!markdown) {
        printf("model %s, -t %d; sequences of %d positions in %.0f MiB (the bytes kvcodec serve's pool charges for a "
               "full sequence)\n", model, threads, ctx, budget_mib);
        for (int k = 0; k < nc; k++) {
            struct kvc_kv_info kv;
            kvc_ctx_kv_info(c[k], &kv);
            const double per = (double)kvc_ctx_seq_kv_bytes(c[k], ctx);
            printf("  %-14s %6.2f bits  %8.2f MiB/seq  %5d sequences\n", spec[k], kv.bits_per_element, per / 1048576.0,
                   (int)(budget / per));
        }
        printf("aggregate decode tokens/s at depth %d (synthetic fill, %.1f s), %d steps, median of %d (codecs "
               "interleaved)\n  %-14s", depth, t_fill, steps, reps, "codec");
        for (int j = 0; j < 3; j++) printf("  %2d seq", ns[j]);
        printf("\n");
    }
    for (int k = 0; k < nc; k++) {
        double med[3];
        for (int j = 0; j < 3; j++) {
            qsort(res[k][j], (size_t)reps, sizeof(double), cmp_d);
            med[j] = res[k][j][reps / 2];
        }
        struct kvc_kv_info kv;
        kvc_ctx_kv_info(c[k], &kv);
        const double per = (double)kvc_ctx_seq_kv_bytes(c[k], ctx);
        if (markdown)
            printf("| %s | %s | %.2f | %.1f | %d | %.1f | %.1f | %.1f |\n", base, spec[k], kv.bits_per_element,
                   per / 1048576.0, (int)(budget / per), med[0], med[1], med[2]);
        else
            printf("  %-14s  %6.1f  %6.1f  %6.1f\n", spec[k], med[0], med[1], med[2]);
    }
    fflush(stdout);
    rc = 0;
out:
    for (int k = 0; k < nc; k++) {
        for (int s = 0; s < MAX_SEQ; s++) kvc_seq_free(seq[k][s]);
        kvc_ctx_free(c[k]);
    }
    kvc_kv_stats_free(stats);
    kvc_model_free(m);
    return rc;
}
