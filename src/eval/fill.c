/* fill.c - synthetic KV-cache fills (see fill.h): statistics gathered through the forward
 * pass's K/V observer in float64, Cholesky factors from LAPACKE, a pool of correlated draws
 * per (layer, KV head, K/V), and rows appended with kvc_ctx_append_kv in batches. */
#include "fill.h"
#include "forward.h"
#include "util.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define POOL 1024

struct kvc_kv_stats {
    int n_layer, n_kv, d, n_rows;
    double *sum;   /* (n_layer, n_kv, 2, d): sums, then means */
    double *cross; /* (n_layer, n_kv, 2, d, d): sums of x x^T, then covariances */
};

static size_t slot_of(const struct kvc_kv_stats *s, int l, int h, int is_v) {
    return ((size_t)l * s->n_kv + h) * 2 + (size_t)is_v;
}

static void observe(void *user, int layer, int p0, int T, const float *k_pre, const float *k, const float *v,
                    const float *q) {
    (void)p0;
    (void)k_pre;
    (void)q;
    struct kvc_kv_stats *s = user;
    int d = s->d, KV = s->n_kv * d;
    for (int h = 0; h < s->n_kv; h++)
        for (int side = 0; side < 2; side++) {
            size_t si = slot_of(s, layer, h, side);
            double *sum = s->sum + si * d, *cr = s->cross + si * d * d;
            const float *rows = side ? v : k;
            for (int t = 0; t < T; t++) {
                const float *x = rows + (size_t)t * KV + (size_t)h * d;
                for (int i = 0; i < d; i++) {
                    sum[i] += x[i];
                    double xi = x[i];
                    double *row = cr + (size_t)i * d;
                    for (int j = 0; j <= i; j++) row[j] += xi * x[j];
                }
            }
        }
    if (layer == s->n_layer - 1) s->n_rows += T;
}

kvc_status kvc_kv_stats_collect(kvc_ctx *c, const int32_t *tok, int n, struct kvc_kv_stats **out,
                                kvc_error *err) {
    *out = NULL;
    if (n < 2) return kvc_fail(err, KVC_ERR_ARG, "fill: statistics need at least 2 tokens, got %d", n);
    struct kvc_kv_info ki;
    kvc_ctx_kv_info(c, &ki);
    struct kvc_kv_stats *s = calloc(1, sizeof *s);
    if (!s) return kvc_fail(err, KVC_ERR_NOMEM, "fill: out of memory");
    kvc_ctx_kv_shape(c, &s->n_layer, &s->n_kv, &s->d);
    size_t slots = (size_t)s->n_layer * s->n_kv * 2;
    s->sum = calloc(slots * s->d, sizeof(double));
    s->cross = calloc(slots * s->d * s->d, sizeof(double));
    if (!s->sum || !s->cross) {
        kvc_kv_stats_free(s);
        return kvc_fail(err, KVC_ERR_NOMEM, "fill: out of memory for the statistics");
    }
    kvc_status st = kvc_ctx_set_observer(c, observe, s, err);
    int nb = kvc_ctx_batch(c);
    for (int i = 0; !st && i < n; i += nb) st = kvc_eval(c, tok + i, n - i < nb ? n - i : nb, 0, err);
    kvc_ctx_set_observer(c, NULL, NULL, NULL);
    if (st) {
        kvc_kv_stats_free(s);
        return st;
    }
    int d = s->d;
    for (size_t si = 0; si < slots; si++) { /* sums -> mean and covariance (full matrix) */
        double *m = s->sum + si * d, *cv = s->cross + si * d * d;
        for (int i = 0; i < d; i++) m[i] /= s->n_rows;
        for (int i = 0; i < d; i++)
            for (int j = 0; j <= i; j++) {
                double v = (cv[(size_t)i * d + j] - s->n_rows * m[i] * m[j]) / (s->n_rows - 1);
                cv[(size_t)i * d + j] = cv[(size_t)j * d + i] = v;
            }
    }
    *out = s;
    return KVC_OK;
}

void kvc_kv_stats_free(struct kvc_kv_stats *s) {
    if (!s) return;
    free(s->sum);
    free(s->cross);
    free(s);
}

const double *kvc_kv_stats_mean(const struct kvc_kv_stats *s, int layer, int head, int is_v) {
    if (layer < 0 || layer >= s->n_layer || head < 0 || head >= s->n_kv) return NULL;
    return s->sum + slot_of(s, layer, head, is_v ? 1 : 0) * s->d;
}
const double *kvc_kv_stats_cov(const struct kvc_kv_stats *s, int layer, int head, int is_v) {
    if (layer < 0 || layer >= s->n_layer || head < 0 || head >= s->n_kv) return NULL;
    return s->cross + slot_of(s, layer, head, is_v ? 1 : 0) * s->d * s->d;
}
int kvc_kv_stats_n_rows(const struct kvc_kv_stats *s) { return s->n_rows; }

static double randn(uint64_t *r) { /* Box-Muller */
    double u1 = ((double)(kvc_splitmix64(r) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (double)(kvc_splitmix64(r) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Pool of POOL zero-mean draws (POOL, d) from N(0, cov): L z with cov + ridge = L L^T, or the
 * per-channel deviations when the factorisation fails. */
static kvc_status make_pool(const double *cov, int d, uint64_t *rng, double *L, float *pool) {
    double tr = 0;
    for (int i = 0; i < d; i++) tr += cov[(size_t)i * d + i];
    memcpy(L, cov, sizeof(double) * (size_t)d * d);
    for (int i = 0; i < d; i++) L[(size_t)i * d + i] += 1e-6 * tr / d + 1e-30;
    int diag = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', d, L, d) != 0;
    double *z = pool ? malloc(sizeof(double) * (size_t)d) : NULL;
    if (!z) return KVC_ERR_NOMEM;
    for (int p = 0; p < POOL; p++) {
        for (int i = 0; i < d; i++) z[i] = randn(rng);
        for (int i = 0; i < d; i++) {
            double acc = 0;
            if (diag) acc = sqrt(cov[(size_t)i * d + i] > 0 ? cov[(size_t)i * d + i] : 0) * z[i];
            else
                for (int j = 0; j <= i; j++) acc += L[(size_t)i * d + j] * z[j];
            pool[(size_t)p * d + i] = (float)acc;
        }
    }
    free(z);
    return KVC_OK;
}

/* The fill of a context's own cache (q NULL) or of a sequence q of c. */
static kvc_status fill_synthetic(kvc_ctx *c, kvc_seq *q, const struct kvc_kv_stats *s, int depth, uint64_t seed,
                                 kvc_error *err) {
    int n_layer, n_kv, d;
    kvc_ctx_kv_shape(c, &n_layer, &n_kv, &d);
    if (n_layer != s->n_layer || n_kv != s->n_kv || d != s->d)
        return kvc_fail(err, KVC_ERR_ARG, "fill: statistics of %d layers x %d KV heads x %d do not match the context's "
                        "%d x %d x %d", s->n_layer, s->n_kv, s->d, n_layer, n_kv, d);
    struct kvc_kv_info ki;
    kvc_ctx_kv_info(c, &ki);
    const int n_ctx = q ? kvc_seq_n_ctx(q) : ki.n_ctx;
    if (depth > n_ctx)
        return kvc_fail(err, KVC_ERR_RANGE, "fill: depth %d exceeds the context %d", depth, n_ctx);
    size_t slots = (size_t)n_layer * n_kv * 2;
    int T = kvc_ctx_batch(c), KV = n_kv * d;
    if (q && T > n_ctx) T = n_ctx; /* a sequence's batch limit: min(n_ctx, the context's n_batch) */
    float *pool = malloc(sizeof(float) * slots * POOL * d);
    double *L = malloc(sizeof(double) * (size_t)d * d);
    float *kb = malloc(sizeof(float) * (size_t)n_layer * T * KV), *vb = malloc(sizeof(float) * (size_t)n_layer * T * KV);
    kvc_status st = KVC_OK;
    if (!pool || !L || !kb || !vb) st = kvc_fail(err, KVC_ERR_NOMEM, "fill: out of memory for the draw pools");
    uint64_t rng = seed ^ 0x5eed5eed5eedull;
    for (size_t si = 0; !st && si < slots; si++)
        if (make_pool(s->cross + si * d * d, d, &rng, L, pool + si * POOL * d))
            st = kvc_fail(err, KVC_ERR_NOMEM, "fill: out of memory");
    const float r2 = 0.70710678f;
    while (!st && (q ? kvc_seq_n_past(q) : kvc_ctx_n_past(c)) < depth) {
        const int past = q ? kvc_seq_n_past(q) : kvc_ctx_n_past(c);
        int n = depth - past < T ? depth - past : T;
        for (int l = 0; l < n_layer; l++)
            for (int h = 0; h < n_kv; h++)
                for (int side = 0; side < 2; side++) {
                    size_t si = slot_of(s, l, h, side);
                    const double *m = s->sum + si * d;
                    const float *pl = pool + si * POOL * d;
                    float *dst = (side ? vb : kb) + (size_t)l * n * KV + (size_t)h * d;
                    for (int t = 0; t < n; t++) {
                        uint64_t z = kvc_splitmix64(&rng);
                        const float *a = pl + (size_t)(z % POOL) * d, *b = pl + (size_t)((z >> 20) % POOL) * d;
                        float sa = (z >> 40) & 1 ? r2 : -r2, sb = (z >> 41) & 1 ? r2 : -r2;
                        float *x = dst + (size_t)t * KV;
                        for (int i = 0; i < d; i++) x[i] = (float)m[i] + sa * a[i] + sb * b[i];
                    }
                }
        st = q ? kvc_seq_append_kv(q, n, kb, vb, err) : kvc_ctx_append_kv(c, n, kb, vb, err);
    }
    free(pool);
    free(L);
    free(kb);
    free(vb);
    return st;
}

kvc_status kvc_ctx_fill_synthetic(kvc_ctx *c, const struct kvc_kv_stats *s, int depth, uint64_t seed,
                                  kvc_error *err) {
    return fill_synthetic(c, NULL, s, depth, seed, err);
}

kvc_status kvc_seq_fill_synthetic(kvc_seq *q, const struct kvc_kv_stats *s, int depth, uint64_t seed,
                                  kvc_error *err) {
    return fill_synthetic(kvc_seq_ctx(q), q, s, depth, seed, err);
}
