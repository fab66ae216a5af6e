/* bench_serve.c - what the server's shared KV budget buys: for each codec, how many
 * sequences of CTX positions fit in BUDGET (the bytes kvcodec serve reserves per sequence),
 * and the aggregate decode speed of kvc_eval_batch with 1, 4 and 16 active sequences at a
 * given depth (the server's engine step without HTTP), codecs interleaved, median of R runs.
 *   build/bench/bench_serve [-m MODEL] [--codecs "f16;q8_0;hdc:bits=3"] [--ctx 4096]
 *       [--budget-mib 1024] [--depth 512] [--steps 16] [-r 3] [-t 2] [--isa -1]
 *       [--shape NAME:LAYERS:KV_HEADS:HEAD_DIM]   (count only, for a model shape not on disk) */
#include "kvcodec.h"
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

/* Aggregate decode tokens/s of n sequences at `depth` positions: prefill, then `steps` batches
 * of one token per sequence. */
static double decode_tps(kvc_ctx *c, int n, int depth, int steps, int n_vocab) {
    kvc_seq *seq[MAX_SEQ] = {0};
    kvc_error e;
    int32_t tok[512];
    kvc_seq *bs[512];
    double tps = -1;
    for (int s = 0; s < n; s++)
        if (kvc_seq_create(c, depth + steps + 1, &seq[s], &e)) { fprintf(stderr, "%s\n", e.msg); goto out; }
    for (int s = 0; s < n; s++)
        for (int p = 0; p < depth; p += 256) {
            int k = depth - p < 256 ? depth - p : 256;
            for (int i = 0; i < k; i++) { tok[i] = 1 + (int)((p + i) * 7919u + (unsigned)s * 104729u) % (n_vocab - 1); bs[i] = seq[s]; }
            struct kvc_batch b = {.n = k, .token = tok, .seq = bs};
            if (kvc_eval_batch(c, &b, &e)) { fprintf(stderr, "%s\n", e.msg); goto out; }
        }
    double t0 = now_s();
    for (int st = 0; st < steps; st++) {
        for (int s = 0; s < n; s++) { tok[s] = 1 + (st * 31 + s * 17) % (n_vocab - 1); bs[s] = seq[s]; }
        struct kvc_batch b = {.n = n, .token = tok, .seq = bs};
        if (kvc_eval_batch(c, &b, &e)) { fprintf(stderr, "%s\n", e.msg); goto out; }
    }
    tps = (double)n * steps / (now_s() - t0);
out:
    for (int s = 0; s < n; s++) kvc_seq_free(seq[s]);
    return tps;
}

int main(int argc, char **argv) {
    const char *model = "models/kvref-q4_0.gguf", *codecs = "f16;q8_0;q4_0;hdc:bits=3", *shape = NULL;
    int ctx = 4096, depth = 512, steps = 16, reps = 3, threads = 2, isa = -1;
    double budget_mib = 1024;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-m")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--codecs")) codecs = argv[i + 1];
        else if (!strcmp(argv[i], "--ctx")) ctx = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--budget-mib")) budget_mib = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--depth")) depth = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-r")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-t")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--isa")) isa = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--shape")) shape = argv[i + 1];
        else { fprintf(stderr, "bench_serve: unknown option %s\n", argv[i]); return 2; }
    }
    if (ctx < 2 || depth < 1 || steps < 1 || reps < 1 || reps > 99 || !(budget_mib > 0)) {
        fprintf(stderr, "bench_serve: bad option value\n");
        return 2;
    }
    char list[1024], *spec[MAX_CODECS];
    int nc = 0;
    snprintf(list, sizeof list, "%s", codecs);
    for (char *t = strtok(list, ";"); t && nc < MAX_CODECS; t = strtok(NULL, ";")) spec[nc++] = t;
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
    const int nv = kvc_model_get_info(m)->n_vocab;
    kvc_ctx *c[MAX_CODECS] = {0};
    for (int k = 0; k < nc; k++) {
        struct kvc_ctx_params p = kvc_ctx_default_params();
        p.n_ctx = ctx > depth + steps + 1 ? ctx : depth + steps + 1;
        p.n_threads = threads;
        p.isa = isa;
        p.kv_k = p.kv_v = spec[k];
        if (kvc_ctx_create(m, &p, &c[k], &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
    }
    printf("model %s, -t %d; sequences of %d positions in %.0f MiB (bytes kvcodec serve reserves per sequence)\n", model,
           threads, ctx, budget_mib);
    for (int k = 0; k < nc; k++) {
        struct kvc_kv_info kv;
        kvc_ctx_kv_info(c[k], &kv);
        const double per = (double)kvc_ctx_seq_kv_bytes(c[k], ctx);
        printf("  %-14s %6.2f bits  %8.2f MiB/seq  %5d sequences\n", spec[k], kv.bits_per_element, per / 1048576.0,
               (int)(budget / per));
    }
    const int ns[3] = {1, 4, 16};
    printf("aggregate decode tokens/s at depth %d, %d steps, median of %d (codecs interleaved)\n  %-14s", depth, steps,
           reps, "codec");
    for (int j = 0; j < 3; j++) printf("  %2d seq", ns[j]);
    printf("\n");
    double res[MAX_CODECS][3][99];
    for (int r = 0; r < reps; r++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < nc; k++) res[k][j][r] = decode_tps(c[k], ns[j], depth, steps, nv);
    for (int k = 0; k < nc; k++) {
        printf("  %-14s", spec[k]);
        for (int j = 0; j < 3; j++) {
            qsort(res[k][j], (size_t)reps, sizeof(double), cmp_d);
            printf("  %6.1f", res[k][j][reps / 2]);
        }
        printf("\n");
    }
    for (int k = 0; k < nc; k++) kvc_ctx_free(c[k]);
    kvc_model_free(m);
    return 0;
}
