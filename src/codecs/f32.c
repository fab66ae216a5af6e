/* f32.c - the f32 KV codec: rows stored as 32-bit floats, 4 bytes per element, lossless.
 * The reference the other codecs are measured against. Scalar kernels accumulate dots in
 * double; the AVX2 / AVX-512 kernels (codec_impl.h) score 8 / 16 rows per transposed
 * reduction and keep the accumulator chunk in registers. */
#include "codec_impl.h"

static size_t f32_row_bytes(const void *cfg, int d) {
    (void)cfg;
    return d > 0 ? (size_t)d * 4 : 0;
}
static kvc_status f32_check_dim(const void *cfg, int d, kvc_error *err) {
    (void)cfg;
    if (d <= 0) return kvc_fail(err, KVC_ERR_ARG, "KV codec 'f32': head dim %d must be positive", d);
    return KVC_OK;
}
static int f32_floats(const void *cfg, int d) {
    (void)cfg;
    return d;
}

/* ---- scalar ---- */

static void f32_encode(const struct kv_slot *s, const float *x, int pos0, int n, void *dst) {
    (void)pos0;
    memcpy(dst, x, (size_t)n * (size_t)s->info.d * 4);
}
static void f32_decode(const struct kv_slot *s, const void *src, int pos0, int n, float *y) {
    (void)pos0;
    memcpy(y, src, (size_t)n * (size_t)s->info.d * 4);
}
static void f32_prepare(const struct kv_slot *s, const float *q, float *qp) {
    memcpy(qp, q, (size_t)s->info.d * 4);
}
static void f32_score(const struct kv_slot *s, const float *qp, const void *keys, int pos0,
                      int n, float *out) {
    (void)pos0;
    const int d = s->info.d;
    const float *k = (const float *)keys;
    for (int i = 0; i < n; i++, k += d) {
        double acc = 0;
        for (int j = 0; j < d; j++) acc += (double)qp[j] * k[j];
        out[i] = (float)acc;
    }
}
static void f32_accumulate(const struct kv_slot *s, const float *w, const void *vals, int pos0,
                           int n, float *acc) {
    (void)pos0;
    const int d = s->info.d;
    const float *v = (const float *)vals;
    for (int i = 0; i < n; i++, v += d) {
        if (w[i] == 0.0f) continue;
        for (int j = 0; j < d; j++) acc[j] += w[i] * v[j];
    }
}

/* ---- AVX2 ---- */

KVC_TARGET_AVX2 static void f32_score_avx2(const struct kv_slot *s, const float *qp,
                                           const void *keys, int pos0, int n, float *out) {
    const int d = s->info.d;
    if (d == 64) kv256_float_score(KV_ROW_F32, qp, keys, n, 64, out);
    else if (d == 128) kv256_float_score(KV_ROW_F32, qp, keys, n, 128, out);
    else if (d % 8 == 0) kv256_float_score(KV_ROW_F32, qp, keys, n, d, out);
    else f32_score(s, qp, keys, pos0, n, out);
}
KVC_TARGET_AVX2 static void f32_accumulate_avx2(const struct kv_slot *s, const float *w,
                                                const void *vals, int pos0, int n, float *acc) {
    const int d = s->info.d;
    if (d % 8 == 0) kv256_float_acc(KV_ROW_F32, w, vals, n, d, acc);
    else f32_accumulate(s, w, vals, pos0, n, acc);
}

/* ---- AVX-512 ---- */

KVC_TARGET_AVX512 static void f32_score_avx512(const struct kv_slot *s, const float *qp,
                                               const void *keys, int pos0, int n, float *out) {
    const int d = s->info.d;
    if (d == 64) kv512_float_score(KV_ROW_F32, qp, keys, n, 64, out);
    else if (d == 128) kv512_float_score(KV_ROW_F32, qp, keys, n, 128, out);
    else if (d % 16 == 0) kv512_float_score(KV_ROW_F32, qp, keys, n, d, out);
    else f32_score(s, qp, keys, pos0, n, out);
}
KVC_TARGET_AVX512 static void f32_accumulate_avx512(const struct kv_slot *s, const float *w,
                                                    const void *vals, int pos0, int n,
                                                    float *acc) {
    const int d = s->info.d;
    if (d % 16 == 0) kv512_float_acc(KV_ROW_F32, w, vals, n, d, acc);
    else f32_accumulate(s, w, vals, pos0, n, acc);
}

KV512_FLOAT_GROUPED(KV_ROW_F32, f32)

const struct kv_codec kv_codec_f32 = {
    .name = "f32",
    .id = KV_CODEC_F32,
    .params = "",
    .about = "32-bit floats, lossless (4 bytes per element)",
    .cfg_size = 0,
    .parse = NULL,
    .row_bytes = f32_row_bytes,
    .check_dim = f32_check_dim,
    .state_create = NULL,
    .state_free = NULL,
    .qp_floats = f32_floats,
    .acc_floats = f32_floats,
    .kern = {
        [KVC_ISA_SCALAR] = {f32_encode, f32_decode, f32_prepare, f32_score, f32_accumulate, NULL},
        [KVC_ISA_AVX2] = {f32_encode, f32_decode, f32_prepare, f32_score_avx2,
                          f32_accumulate_avx2, NULL},
        [KVC_ISA_AVX512] = {f32_encode, f32_decode, f32_prepare, f32_score_avx512,
                            f32_accumulate_avx512, NULL,
                            f32_score_g_avx512, f32_acc_g_avx512},
    },
};
