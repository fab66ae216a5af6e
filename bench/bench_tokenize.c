/* bench_tokenize.c - tokenizer speed: vocabulary load time and the encode time of a text file
 * (median of 5 runs, MB/s and tokens/s) with each vocabulary given, through the public API
 * (kvc_vocab_load, kvc_vocab_tokenize with add_special, no special parsing).
 *   build/bench/bench_tokenize TEXT VOCAB.gguf [VOCAB.gguf ...] */
#include "kvcodec.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define REPEATS 5

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TEXT VOCAB.gguf [VOCAB.gguf ...]\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc(sz > 0 ? (size_t)sz : 1);
    size_t n = text ? fread(text, 1, (size_t)sz, f) : 0;
    fclose(f);
    if (!text || n != (size_t)sz) {
        fprintf(stderr, "%s: cannot read\n", argv[1]);
        return 1;
    }
    printf("%s: %zu bytes, median of %d runs\n", argv[1], n, REPEATS);
    printf("%-40s %6s %12s %9s %9s %10s\n", "vocabulary", "kind", "pre", "load s", "encode s", "tokens");
    for (int v = 2; v < argc; v++) {
        kvc_vocab *voc;
        kvc_error e;
        double t0 = now_s();
        if (kvc_vocab_load(argv[v], &voc, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        double load = now_s() - t0, dt[REPEATS];
        int n_ids = 0;
        for (int r = 0; r < REPEATS; r++) {
            int32_t *ids;
            t0 = now_s();
            if (kvc_vocab_tokenize(voc, text, n, 1, 0, &ids, &n_ids, &e)) {
                fprintf(stderr, "%s\n", e.msg);
                return 1;
            }
            dt[r] = now_s() - t0;
            free(ids);
        }
        qsort(dt, REPEATS, sizeof dt[0], cmp_d);
        struct kvc_vocab_info vi;
        kvc_vocab_get_info(voc, &vi);
        printf("%-40s %6s %12s %9.3f %9.3f %10d  (%.1f MB/s, %.2f M tokens/s)\n", argv[v], vi.kind, vi.pre, load,
               dt[REPEATS / 2], n_ids, n / 1e6 / dt[REPEATS / 2], n_ids / 1e6 / dt[REPEATS / 2]);
        kvc_vocab_free(voc);
    }
    free(text);
    return 0;
}
