/* test_bench.c - the library's speed bench (kvc_bench) on a tiny synth model: depths sorted and
 * de-duplicated, one TEST event per (rep, pair, depth, pp/tg) with the figures the result
 * holds, medians of the reps, the bound = bandwidth / bytes per token with the bytes of the
 * weights and of depth + tg/2 cached positions, synthetic fills flagged (hdc-select filled by
 * real prefill), and a bad codec spec failing with KVC_ERR_ARG before any timing. */
#include "synth.h"
#include "types.h"
#include "test.h"

#include <math.h>
#include <unistd.h>

struct seen {
    int start, fill_done, tests, synth_done;
    double tps[2][3][2][2]; /* [pair][depth][rep][tg] */
};

static void progress(void *user, const struct kvc_bench_progress *ev) {
    struct seen *s = user;
    if (ev->event == KVC_BENCH_START) s->start++;
    if (ev->event == KVC_BENCH_FILL_DONE) {
        s->fill_done++;
        s->synth_done += ev->synthetic;
    }
    if (ev->event == KVC_BENCH_TEST) {
        s->tests++;
        int di = ev->depth == 0 ? 0 : ev->depth == 40 ? 1 : 2;
        if (ev->pair >= 0 && ev->pair < 2 && ev->rep >= 0 && ev->rep < 2)
            s->tps[ev->pair][di][ev->rep][ev->is_tg] = ev->tps;
    }
}

static double med2(double a, double b) { return 0.5 * (a + b); }

int main(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/kvc-test-bench-%d.gguf", (int)getpid());
    struct kvc_synth_params sp = kvc_synth_default_params();
    sp.preset = "llama-3.2-1b";
    sp.n_layer = 2;
    sp.n_embd = 128;
    sp.n_head = 2;
    sp.n_head_kv = 1;
    sp.head_dim = 64;
    sp.n_ff = 256;
    sp.n_vocab = 1000;
    sp.type = KVC_TYPE_F16;
    kvc_error e = {0};
    CHECK(kvc_synth_write(path, &sp, &e) == KVC_OK, "%s", e.msg);
    kvc_model *m = NULL;
    CHECK(kvc_model_load(path, &m, &e) == KVC_OK, "%s", e.msg);
    unlink(path);
    if (!m) return test_summary("test_bench");
    const struct kvc_model_info *in = kvc_model_get_info(m);

    struct kvc_bench_params p = kvc_bench_default_params();
    CHECK(p.reps == 5 && p.pp == 512 && p.tg == 64 && p.n_depths == 6 && p.depths[5] == 16384 &&
              p.fill_prefix == 512 && p.seed == 1 && p.bandwidth == 0 && !p.fill_synthetic,
          "defaults (5 reps, pp512, tg64, depths 0..16384, fill prefix 512, measured bandwidth)");
    p.n_depths = 4;
    p.depths[0] = 300, p.depths[1] = 0, p.depths[2] = 40, p.depths[3] = 300;
    p.reps = 2;
    p.pp = 8;
    p.tg = 4;
    p.n_pairs = 2;
    snprintf(p.pairs[0].k, 128, "f16");
    snprintf(p.pairs[0].v, 128, "f16");
    snprintf(p.pairs[1].k, 128, "hdc-select:k=16,inner=q8_0");
    snprintf(p.pairs[1].v, 128, "q4_0");
    p.fill_synthetic = 1;
    p.fill_prefix = 32;
    p.bandwidth = 20e9;
    struct seen s;
    memset(&s, 0, sizeof s);
    p.progress = progress;
    p.user = &s;
    struct kvc_bench_result r;
    kvc_status st = kvc_bench(m, &p, &r, &e);
    CHECK(st == KVC_OK, "bench: %s", e.msg);
    if (!st) {
        CHECK(r.n_depths == 3 && r.depths[0] == 0 && r.depths[1] == 40 && r.depths[2] == 300,
              "depths sorted, duplicates dropped: %d (%d %d %d)", r.n_depths, r.depths[0], r.depths[1], r.depths[2]);
        CHECK(r.n_ctx == 300 + 8 + 4 && r.n_pairs == 2 && r.reps == 2, "context %d = max depth + pp + tg", r.n_ctx);
        CHECK(s.start == 1 && s.tests == 2 * 2 * 3 * 2, "events: %d start, %d tests (want 24)", s.start, s.tests);
        CHECK(r.synthetic[0] == 1 && r.synthetic[1] == 0 && s.fill_done == 2 && s.synth_done == 1,
              "f16 filled synthetically, hdc-select by real prefill");
        CHECK(!strcmp(r.pairs[0].k, "f16") && !strncmp(r.pairs[1].k, "hdc-select", 10), "resolved specs %s, %s",
              r.pairs[0].k, r.pairs[1].k);
        int ok_med = 1, ok_bound = 1;
        for (int c = 0; c < 2; c++)
            for (int d = 0; d < 3; d++) {
                const struct kvc_bench_cell *cl = &r.cells[c * 3 + d];
                for (int k = 0; k < 2; k++) {
                    const double *v = k ? cl->tg_tps : cl->pp_tps;
                    ok_med &= v[0] == s.tps[c][d][0][k] && v[1] == s.tps[c][d][1][k] && v[0] > 0 && v[1] > 0;
                    ok_med &= fabs((k ? cl->tg_median : cl->pp_median) - med2(v[0], v[1])) <= 1e-9 * v[0];
                }
                double bytes = (double)in->decode_read_bytes + r.kv_bytes_per_token[c] * (r.depths[d] + 2.0);
                ok_bound &= fabs(cl->bytes_per_token - bytes) <= 1e-6 * bytes && cl->bandwidth == 20e9 &&
                            fabs(cl->bound_tps - 20e9 / bytes) <= 1e-9 * cl->bound_tps && cl->peak_rss > 0;
            }
        CHECK(ok_med, "the result's figures are the reported ones, medians of the 2 reps");
        CHECK(ok_bound, "bound = bandwidth / (weights + KV of depth + tg/2 positions) per token");
        CHECK(r.kv_bytes_per_token[1] < r.kv_bytes_per_token[0] && r.bits[0] == 16.0, "KV bytes: %g vs %g per token",
              r.kv_bytes_per_token[1], r.kv_bytes_per_token[0]);
        CHECK(r.max_rss >= r.cells[0].peak_rss && r.bandwidth_given == 1, "process peak RSS");
    }
    kvc_bench_result_free(&r);
    /* measured bandwidth: probed before every repetition, the bound from the median */
    {
        struct kvc_bench_params q = p;
        q.bandwidth = 0, q.n_depths = 1, q.depths[0] = 16, q.reps = 3, q.n_pairs = 1, q.progress = NULL;
        st = kvc_bench(m, &q, &r, &e);
        CHECK(st == KVC_OK, "bench, measured bandwidth: %s", e.msg);
        if (!st) {
            const struct kvc_bench_cell *cl = &r.cells[0];
            CHECK(r.bandwidth_given == 0 && cl->bandwidth > 1e8 && cl->bandwidth < 1e14 &&
                      fabs(cl->bound_tps - cl->bandwidth / cl->bytes_per_token) <= 1e-9 * cl->bound_tps,
                  "measured bandwidth %g B/s, bound %g t/s", cl->bandwidth, cl->bound_tps);
        }
        kvc_bench_result_free(&r);
    }
    /* a bad spec: KVC_ERR_ARG before timing */
    memset(&s, 0, sizeof s);
    snprintf(p.pairs[1].k, 128, "nosuchcodec");
    st = kvc_bench(m, &p, &r, &e);
    CHECK(st == KVC_ERR_ARG && strstr(e.msg, "nosuchcodec") && s.tests == 0 && s.start == 0,
          "bad spec: status %d, '%s', %d tests run", st, e.msg, s.tests);
    kvc_bench_result_free(&r);
    p.n_pairs = 0, p.n_depths = 0;
    CHECK(kvc_bench(m, &p, &r, &e) == KVC_ERR_ARG, "no depths: %s", e.msg);
    kvc_bench_result_free(&r);
    kvc_model_free(m);
    return test_summary("test_bench");
}
