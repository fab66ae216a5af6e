/* bench_pair.c - the grouped (G query heads) attention kernels of a calibrated preset's key and
 * value codecs beside f16's, per cached row: score_g of G prepared queries against n keys and
 * accumulate_g of n weighted values into G accumulators, the way decode runs them at depth.
 * Thread CPU time, each kernel called in blocks of 256 rows (pos0 = the block's first row) over
 * `copies` separate copies of the n rows (default 16 = kvref's 8 layers x 2 KV heads, so that
 * the rows stream from memory as at that depth); the kernels are timed in interleaved rounds
 * and the median round is reported.
 * K_SPEC may list several key codecs separated by ';' (timed side by side).
 *   usage: bench_pair CALIB_OR_PRESET [K_SPEC] [V_SPEC] [n=16384] [G=3] [layer=0] [rounds=9] [copies=16] */
#include "arch/isa.h"
#include "kv/calib_internal.h"
#include "kv/codec.h"
#include "util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "bench_util.h"

#define BLOCK 256
#define MAX_ROUNDS 64

static volatile float sink;

/* One side (keys or values) of one codec: slot, n encoded rows, G prepared queries / weights. */
struct side {
    const char *spec_text;
    int is_value;
    struct kv_spec spec;
    struct kv_slot slot;
    void *rows;  /* (copies, n, row_bytes) */
    float *qp;   /* (G, qp_floats) */
    float *acc;  /* (G, acc_floats) */
    float *out;  /* (G, BLOCK) scores */
    float *w;    /* (G, BLOCK) weights */
};

static int side_init(struct side *s, const char *spec_text, int is_value, const struct kvc_calib *cal, int layer,
                     int n, int G, int copies, const float *x) {
    kvc_error err = {0};
    const int d = cal->id.head_dim;
    memset(s, 0, sizeof *s);
    s->spec_text = spec_text;
    s->is_value = is_value;
    if (kv_spec_parse(spec_text, &s->spec, &err) != KVC_OK) {
        fprintf(stderr, "%s: %s\n", spec_text, err.msg);
        return -1;
    }
    struct kv_slot_info info = {.d = d, .layer = layer, .head = 0, .is_value = is_value,
                                .rope_base = cal->id.rope_base, .seed = 7, .calib = cal,
                                .store_tiles = 1, .store_origin = 0}; /* rows as the cache keeps them */
    if (kv_slot_init(&s->slot, &s->spec, &info, kvc_isa_best(), &err) != KVC_OK) {
        fprintf(stderr, "%s: %s\n", spec_text, err.msg);
        return -1;
    }
    const size_t cb = s->slot.row_bytes * (size_t)n;
    s->rows = kvc_alloc_aligned(cb * copies + 64);
    s->qp = kvc_alloc_aligned(sizeof(float) * (size_t)G * s->slot.qp_floats);
    s->acc = kvc_alloc_aligned(sizeof(float) * (size_t)G * s->slot.acc_floats);
    s->out = kvc_alloc_aligned(sizeof(float) * (size_t)G * BLOCK);
    s->w = kvc_alloc_aligned(sizeof(float) * (size_t)G * BLOCK);
    if (!s->rows || !s->qp || !s->acc || !s->out || !s->w) return -1;
    memset(s->rows, 0, cb * copies + 64);
    for (int i = 0; i < n; i += BLOCK)
        s->slot.k->encode(&s->slot, x + (size_t)i * d, i, n - i < BLOCK ? n - i : BLOCK,
                          (uint8_t *)s->rows + (size_t)i * s->slot.row_bytes);
    for (int c = 1; c < copies; c++) memcpy((uint8_t *)s->rows + cb * c, s->rows, cb);
    float q[1024];
    for (int g = 0; g < G; g++) {
        for (int j = 0; j < d; j++) q[j] = randn();
        s->slot.k->prepare_query(&s->slot, q, s->qp + (size_t)g * s->slot.qp_floats);
    }
    for (int i = 0; i < G * BLOCK; i++) s->w[i] = 1e-4f + (float)(i % 97) * 1e-4f;
    return 0;
}

/* ns per row of one pass over the copies of the n rows (keys: score_g; values: accumulate_g). */
static double side_pass(struct side *s, int n, int G, int copies) {
    const struct kv_kernels *k = s->slot.k;
    const size_t rb = s->slot.row_bytes;
    double t0 = now_ns();
    for (int c = 0; c < copies; c++)
    for (int i = 0; i < n; i += BLOCK) {
        const int m = n - i < BLOCK ? n - i : BLOCK;
        const void *r = (const uint8_t *)s->rows + ((size_t)c * n + i) * rb;
        if (!s->is_value) {
            if (k->score_g) k->score_g(&s->slot, G, s->qp, s->slot.qp_floats, r, i, m, s->out, BLOCK);
            else
                for (int g = 0; g < G; g++) k->score(&s->slot, s->qp + (size_t)g * s->slot.qp_floats, r, i, m, s->out + g * BLOCK);
        } else {
            if (k->accumulate_g) k->accumulate_g(&s->slot, G, s->w, BLOCK, r, i, m, s->acc, s->slot.acc_floats);
            else
                for (int g = 0; g < G; g++) k->accumulate(&s->slot, s->w + g * BLOCK, r, i, m, s->acc + (size_t)g * s->slot.acc_floats);
        }
    }
    double dt = now_ns() - t0;
    sink = s->out[0] + s->acc[0];
    return dt / ((double)n * copies);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CALIB_OR_PRESET [K_SPEC] [V_SPEC] [n=16384] [G=3] [layer=0] [rounds=9] [copies=16]\n", argv[0]);
        return 2;
    }
    const char *kspec = argc > 2 ? argv[2] : "pca:bits=2.75,keys=pair";
    const char *vspec = argc > 3 ? argv[3] : "hdc:bits=3,scale=norm";
    const int n = argc > 4 ? atoi(argv[4]) : 16384, G = argc > 5 ? atoi(argv[5]) : 3;
    const int layer = argc > 6 ? atoi(argv[6]) : 0, rounds = argc > 7 ? atoi(argv[7]) : 9;
    const int copies = argc > 8 ? atoi(argv[8]) : 16;
    if (n < 1 || n > (1 << 22) || G < 1 || G > 16 || rounds < 1 || rounds > MAX_ROUNDS || copies < 1 || copies > 64) {
        fprintf(stderr, "%s: n in 1..4M, G in 1..16, rounds in 1..%d, copies in 1..64\n", argv[0], MAX_ROUNDS);
        return 2;
    }
    struct kvc_calib *cal;
    kvc_error err = {0};
    if (kvc_calib_load_file(argv[1], &cal, &err) != KVC_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    if (layer < 0 || layer >= cal->id.n_layer) {
        fprintf(stderr, "layer %d: the calibration has %d layers\n", layer, cal->id.n_layer);
        return 2;
    }
    const int d = cal->id.head_dim;
    float *x = malloc(sizeof(float) * (size_t)n * d);
    for (size_t i = 0; i < (size_t)n * d; i++) x[i] = randn();
    /* sides: the K specs (';'-separated), the V spec, f16 keys, f16 values */
    enum { MAXS = 8 };
    char kbuf[512];
    snprintf(kbuf, sizeof kbuf, "%s", kspec);
    const char *specs[MAXS + 3];
    int nk = 0;
    for (char *tok = strtok(kbuf, ";"); tok && nk < MAXS; tok = strtok(NULL, ";")) specs[nk++] = tok;
    if (!nk) return 2;
    specs[nk] = vspec;
    specs[nk + 1] = "f16";
    specs[nk + 2] = "f16";
    const int ns = nk + 3;
    struct side sd[MAXS + 3];
    for (int j = 0; j < ns; j++)
        if (side_init(&sd[j], specs[j], j == nk || j == nk + 2, cal, layer, n, G, copies, x)) return 1;
    static double t[MAXS + 3][MAX_ROUNDS], rel[MAXS][MAX_ROUNDS];
    double med[MAXS + 3], mrel[MAXS];
    for (int j = 0; j < ns; j++) side_pass(&sd[j], n, G, copies); /* warm */
    for (int r = 0; r < rounds; r++) {
        for (int j = 0; j < ns; j++) t[j][r] = side_pass(&sd[j], n, G, copies);
        for (int j = 0; j < nk; j++) rel[j][r] = t[j][r] / t[nk + 1][r];
    }
    for (int j = 0; j < ns; j++) {
        qsort(t[j], rounds, sizeof(double), cmp_double);
        med[j] = t[j][rounds / 2];
    }
    for (int j = 0; j < nk; j++) {
        qsort(rel[j], rounds, sizeof(double), cmp_double);
        mrel[j] = rel[j][rounds / 2];
    }
    printf("grouped kernels, d=%d G=%d n=%d x %d copies, layer %d, isa %s: ns per cached row (median of %d interleaved rounds)\n",
           d, G, n, copies, layer, kvc_isa_name(kvc_isa_best()), rounds);
    for (int j = 0; j < nk; j++)
        printf("K %-40s score_g %7.3f  (x f16 score_g, median of per-round ratios: %.3f)\n", specs[j], med[j], mrel[j]);
    printf("K %-40s score_g %7.3f\n", "f16", med[nk + 1]);
    printf("V %-40s acc_g   %7.3f\n", vspec, med[nk]);
    printf("V %-40s acc_g   %7.3f\n", "f16", med[nk + 2]);
    for (int j = 0; j < ns; j++) {
        kvc_free_aligned(sd[j].rows);
        kvc_free_aligned(sd[j].qp);
        kvc_free_aligned(sd[j].acc);
        kvc_free_aligned(sd[j].out);
        kvc_free_aligned(sd[j].w);
        kv_slot_free(&sd[j].slot);
        kv_spec_free(&sd[j].spec);
    }
    kvc_calib_free(cal);
    free(x);
    return 0;
}
