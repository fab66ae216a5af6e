/* test_fill.c - synthetic cache fills: the statistics gathered from a real prefill equal the
 * mean and covariance of the cached rows computed here in float64; rows appended by
 * kvc_ctx_fill_synthetic decode (f32 and q8_0 caches) to that mean and covariance; a context
 * filled synthetically still evaluates (finite logits). The model is a small synth file. */
#include "eval/fill.h"
#include "forward.h"
#include "synth.h"
#include "test.h"
#include "types.h"

#include <unistd.h>

#define D 64

/* mean (D) and covariance (D, D) of n rows (n, D) in float64 */
static void moments(const float *x, int n, double *mean, double *cov) {
    memset(mean, 0, sizeof(double) * D);
    memset(cov, 0, sizeof(double) * D * D);
    for (int t = 0; t < n; t++)
        for (int i = 0; i < D; i++) mean[i] += x[t * D + i] / (double)n;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < D; i++)
            for (int j = 0; j < D; j++)
                cov[i * D + j] += (x[t * D + i] - mean[i]) * (x[t * D + j] - mean[j]) / (n - 1.0);
}

static void run(const char *model, const char *codec, int check_stats) {
    kvc_model *m = NULL;
    kvc_error e = {0};
    CHECK(kvc_model_load(model, &m, &e) == KVC_OK, "%s", e.msg);
    if (!m) return;
    const int prefix = 256, depth = prefix + 6144;
    struct kvc_ctx_params p = kvc_ctx_default_params();
    p.n_ctx = depth + 8;
    p.n_batch = 128;
    p.kv_k = p.kv_v = codec;
    kvc_ctx *c = NULL;
    CHECK(kvc_ctx_create(m, &p, &c, &e) == KVC_OK, "%s", e.msg);
    int32_t tok[256];
    for (int i = 0; i < prefix; i++) tok[i] = (i * 131 + 7) % 400;
    struct kvc_kv_stats *s = NULL;
    CHECK(c && kvc_kv_stats_collect(c, tok, prefix, &s, &e) == KVC_OK, "%s", e.msg);
    if (!s) { kvc_ctx_free(c); kvc_model_free(m); return; }
    CHECK(kvc_kv_stats_n_rows(s) == prefix, "rows %d", kvc_kv_stats_n_rows(s));
    float *k = malloc(sizeof(float) * 6144 * D), *v = malloc(sizeof(float) * 6144 * D);
    double mean[D], cov[D * D];
    if (check_stats) { /* exact rows (f32 cache): the statistics are their moments */
        for (int l = 0; l < 2; l++) {
            CHECK(kvc_ctx_read_kv(c, l, 0, 0, prefix, k, v, &e) == KVC_OK, "%s", e.msg);
            for (int side = 0; side < 2; side++) {
                moments(side ? v : k, prefix, mean, cov);
                const double *sm = kvc_kv_stats_mean(s, l, 0, side), *sc = kvc_kv_stats_cov(s, l, 0, side);
                double em = 0, ec = 0, sc_max = 0;
                for (int i = 0; i < D; i++) em = fmax(em, fabs(sm[i] - mean[i]));
                for (int i = 0; i < D * D; i++) { ec = fmax(ec, fabs(sc[i] - cov[i])); sc_max = fmax(sc_max, fabs(cov[i])); }
                CHECK(em < 1e-4 && ec < 1e-4 * sc_max + 1e-6, "layer %d side %d: stats off by %g / %g", l, side, em, ec);
            }
        }
    }
    CHECK(kvc_ctx_fill_synthetic(c, s, depth, 7, &e) == KVC_OK, "%s", e.msg);
    CHECK(kvc_ctx_n_past(c) == depth, "n_past %d", kvc_ctx_n_past(c));
    int n = depth - prefix;
    for (int l = 0; l < 2; l++) {
        CHECK(kvc_ctx_read_kv(c, l, 0, prefix, n, k, v, &e) == KVC_OK, "%s", e.msg);
        for (int side = 0; side < 2; side++) {
            moments(side ? v : k, n, mean, cov);
            const double *sm = kvc_kv_stats_mean(s, l, 0, side), *sc = kvc_kv_stats_cov(s, l, 0, side);
            double tr = 0, tr_s = 0, worst_m = 0, worst_v = 0, dot = 0, nn = 0, ns = 0;
            for (int i = 0; i < D; i++) {
                tr += cov[i * D + i];
                tr_s += sc[i * D + i];
                worst_m = fmax(worst_m, fabs(mean[i] - sm[i]) / sqrt(sc[i * D + i] + 1e-12));
                worst_v = fmax(worst_v, fabs(cov[i * D + i] / (sc[i * D + i] + 1e-12) - 1));
            }
            for (int i = 0; i < D * D; i++) { dot += cov[i] * sc[i]; nn += cov[i] * cov[i]; ns += sc[i] * sc[i]; }
            double corr = dot / sqrt(nn * ns);
            /* tolerances: a pool of 1024 draws per slot (variance error ~ sqrt(2/1024) = 4 % per
             * channel), plus the codec's error (q8_0: < 1 % of the scale) */
            CHECK(fabs(tr / tr_s - 1) < 0.05, "%s layer %d side %d: trace %g vs %g", codec, l, side, tr, tr_s);
            CHECK(worst_m < 0.15, "%s layer %d side %d: mean off by %.3f sd", codec, l, side, worst_m);
            CHECK(worst_v < 0.3, "%s layer %d side %d: a channel variance off by %.0f %%", codec, l, side, 100 * worst_v);
            CHECK(corr > 0.95, "%s layer %d side %d: covariance correlation %.3f", codec, l, side, corr);
        }
    }
    /* the filled context evaluates on */
    CHECK(kvc_eval(c, tok, 4, 0, &e) == KVC_OK, "%s", e.msg);
    const float *lg = kvc_get_logits(c);
    int fin = 1;
    for (int i = 0; i < 400; i++) fin &= isfinite(lg[i]);
    CHECK(fin, "logits after a synthetic fill are not finite");
    /* mismatched statistics are refused */
    CHECK(kvc_ctx_fill_synthetic(c, s, depth + 100, 7, &e) == KVC_ERR_RANGE, "depth beyond the context accepted");
    free(k);
    free(v);
    kvc_kv_stats_free(s);
    kvc_ctx_free(c);
    kvc_model_free(m);
}

int main(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/kvc-test-fill-%d.gguf", (int)getpid());
    struct kvc_synth_params p = kvc_synth_default_params();
    p.preset = "llama-3.2-1b";
    p.n_layer = 2;
    p.n_embd = 128;
    p.n_head = 2;
    p.n_head_kv = 1;
    p.head_dim = D;
    p.n_ff = 256;
    p.n_vocab = 1000;
    p.type = KVC_TYPE_F16;
    kvc_error e = {0};
    CHECK(kvc_synth_write(path, &p, &e) == KVC_OK, "%s", e.msg);
    run(path, "f32", 1);
    run(path, "q8_0", 0);
    unlink(path);
    return test_summary("test_fill");
}
