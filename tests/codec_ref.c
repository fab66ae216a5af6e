/* codec_ref.c - the engine's side of the Python codec test (python/tests/test_codec.py): builds
 * a KV cache as a context does (kv_cache_init with the context's default seed), stores K/V
 * rows of one (layer, head) with kv_cache_store, and runs the forward pass's attention
 * (kv_cache_attend_rows, all query heads of one token at the last position). Writes the
 * stored code rows and the attention output for Python to compare with kvcodec.Codec.
 *   codec_ref SPEC_K SPEC_V D LAYER HEAD N NQ IN.f32 OUT_PREFIX [CALIB]
 * IN.f32: k rows (N, D), v rows (N, D), queries (NQ, D), float32. Writes OUT_PREFIX.k (N,
 * row_bytes), .v, .attn (NQ, D) float32. */
#include "kv/calib_internal.h"
#include "kv/kvcache.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int write_all(const char *prefix, const char *ext, const void *p, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s.%s", prefix, ext);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) { fprintf(stderr, "codec_ref: cannot write %s\n", path); if (f) fclose(f); return 1; }
    return fclose(f) != 0;
}

int main(int argc, char **argv) {
    if (argc != 10 && argc != 11) {
        fprintf(stderr, "usage: codec_ref SPEC_K SPEC_V D LAYER HEAD N NQ IN.f32 OUT_PREFIX [CALIB]\n");
        return 2;
    }
    int d = atoi(argv[3]), L = atoi(argv[4]), H = atoi(argv[5]), n = atoi(argv[6]), nq = atoi(argv[7]);
    if (d < 1 || d > 1024 || L < 0 || L > 64 || H < 0 || H > 64 || n < 1 || n > 65536 || nq < 1 || nq > KV_MAX_QROWS) {
        fprintf(stderr, "codec_ref: sizes out of range\n");
        return 2;
    }
    size_t nin = ((size_t)2 * n + nq) * d;
    float *in = malloc(nin * sizeof(float)), *out = calloc((size_t)nq * d, sizeof(float));
    FILE *f = fopen(argv[8], "rb");
    if (!in || !out || !f || fread(in, sizeof(float), nin, f) != nin) { fprintf(stderr, "codec_ref: cannot read %s\n", argv[8]); return 1; }
    fclose(f);
    struct kv_cache c;
    kvc_error e = {0};
    struct kvc_calib *cal = NULL;
    if (argc == 11 && kvc_calib_load_file(argv[10], &cal, &e)) { fprintf(stderr, "codec_ref: %s\n", e.msg); return 1; }
    /* the context defaults: seed 0x6b7663, RoPE base 10000 (the calibration's with one), best ISA */
    if (kv_cache_init(&c, L + 1, H + 1, d, n, n, argv[1], argv[2], 0, 0, cal ? cal->id.rope_base : 10000.0f, 0x6b7663,
                      cal, kvc_isa_best(), &e)) {
        fprintf(stderr, "codec_ref: %s\n", e.msg);
        return 1;
    }
    const float *k = in, *v = in + (size_t)n * d, *q = in + (size_t)2 * n * d;
    kv_cache_store(&c, L, H, 0, n, k, v);
    kv_cache_commit_layer(&c, L, 0, n);
    c.n_past = n;
    struct kv_attn_scratch s;
    if (kv_cache_scratch_init(&c, &s)) { fprintf(stderr, "codec_ref: out of memory\n"); return 1; }
    /* one token at position n - 1: its nq query heads share KV head H */
    kv_cache_attend_rows(&c, &s, L, H, nq, q, (size_t)nq * d, 0, 1, n - 1, 0, n, 1.0f / sqrtf((float)d), out, NULL);
    size_t rows = (size_t)c.n_ctx, off_k = ((size_t)L * c.n_head_kv + H) * rows * c.k.row_bytes,
           off_v = ((size_t)L * c.n_head_kv + H) * rows * c.v.row_bytes;
    int rc = write_all(argv[9], "k", c.k.codes + off_k, (size_t)n * c.k.row_bytes) |
             write_all(argv[9], "v", c.v.codes + off_v, (size_t)n * c.v.row_bytes) |
             write_all(argv[9], "attn", out, sizeof(float) * (size_t)nq * d);
    kv_cache_scratch_free(&s);
    kv_cache_free(&c);
    kvc_calib_free(cal);
    free(in);
    free(out);
    return rc;
}
