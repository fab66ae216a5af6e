/* test_calib_bos.c - calibration chunks start as perplexity chunks do: with BOS only when the
 * vocabulary adds it. On a synthetic SmolLM2-shaped model (add_bos = false) a chunk that begins
 * with a text token and one that begins with BOS give different statistics (the bug: BOS was
 * forced, so both were the same); on a Llama-3-shaped model (add_bos = true) the first token is
 * replaced by BOS, so both give the same statistics. */
#include "test.h"
#include "eval/calibrate.h"
#include "model.h"
#include "synth.h"

#include <math.h>
#include <stdio.h>
#include <unistd.h>

/* max |mean difference| of the layer-0 head-0 values between calibrations of a and b */
static double calib_diff(const kvc_model *m, const int32_t *a, const int32_t *b, int n) {
    struct kvc_calib_opts o;
    kvc_calib_opts_default(&o);
    o.n_ctx = n;
    o.n_batch = n;
    o.n_threads = 1;
    o.sample_rows = 64;
    o.metric = 0;
    struct kvc_calib *ca = NULL, *cb = NULL;
    kvc_error e = {0};
    CHECK(kvc_calib_fit(m, a, n, &o, &ca, &e) == KVC_OK, "fit a: %s", e.msg);
    CHECK(kvc_calib_fit(m, b, n, &o, &cb, &e) == KVC_OK, "fit b: %s", e.msg);
    double mx = -1;
    if (ca && cb) {
        mx = 0;
        int d = ca->id.head_dim;
        for (int k = 0; k < KVC_CALIB_NKIND; k++) {
            const struct kvc_calib_slot *sa = kvc_calib_slot_get(ca, 0, 0, k), *sb = kvc_calib_slot_get(cb, 0, 0, k);
            for (int i = 0; i < d; i++) mx = fmax(mx, fabs((double)sa->mean[i] - sb->mean[i]));
        }
    }
    kvc_calib_free(ca);
    kvc_calib_free(cb);
    return mx;
}

static void run(const char *preset, int expect_same) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/kvc-test-calib-bos-%d.gguf", (int)getpid());
    struct kvc_synth_params p = kvc_synth_default_params();
    p.preset = preset;
    p.n_layer = 1;
    p.n_embd = 64;
    p.n_head = 2;
    p.n_head_kv = 1;
    p.head_dim = 32;
    p.n_ff = 128;
    p.n_vocab = 600;
    p.type = KVC_TYPE_F16;
    kvc_error e = {0};
    kvc_model *m = NULL;
    CHECK(kvc_synth_write(path, &p, &e) == KVC_OK, "%s: %s", preset, e.msg);
    CHECK(kvc_model_load(path, &m, &e) == KVC_OK, "%s: %s", preset, e.msg);
    if (m) {
        struct kvc_vocab_info vi;
        kvc_vocab_get_info(kvc_model_vocab(m), &vi);
        CHECK(vi.add_bos == expect_same, "%s: add_bos %d", preset, vi.add_bos);
        enum { N = 16 };
        int32_t a[N], b[N];
        for (int i = 0; i < N; i++) a[i] = b[i] = 300 + 7 * i;
        b[0] = m->info.bos_id;
        double diff = calib_diff(m, a, b, N);
        if (expect_same) CHECK(diff == 0, "%s (adds BOS): first token not replaced by BOS: mean diff %g", preset, diff);
        else CHECK(diff > 1e-6, "%s (no BOS): a text-token start calibrated like a BOS start (diff %g)", preset, diff);
        kvc_model_free(m);
    }
    unlink(path);
}

int main(void) {
    run("smollm2-360m", 0);
    run("llama-3.2-1b", 1);
    return test_summary("test_calib_bos");
}
