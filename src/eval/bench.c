/* bench.c - the timing loop of `kvcodec bench` (kvc_bench): prefill and decode speed at several
 * cache depths for one or several K/V codec pairs, each pair's context filled once (untimed,
 * real prefill or synthetic rows) and truncated to each depth, repetitions interleaved across
 * pairs; with each (pair, depth) the peak RSS, the read bandwidth over one token's bytes and
 * the bandwidth bound. The CLI (tools/cmd_bench.c) parses flags and prints. */
#include "kvcodec.h"
#include "eval_util.h"
#include "fill.h"
#include "../forward.h"
#include "../util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

struct kvc_bench_params kvc_bench_default_params(void) {
    static const int dd[] = {0, 512, 2048, 4096, 8192, 16384};
    struct kvc_bench_params p;
    memset(&p, 0, sizeof p);
    p.ctx = kvc_ctx_default_params();
    p.n_depths = 6;
    memcpy(p.depths, dd, sizeof dd);
    p.reps = 5;
    p.pp = 512;
    p.tg = 64;
    p.seed = 1;
    p.fill_prefix = 512;
    return p;
}

void kvc_bench_result_free(struct kvc_bench_result *r) {
    if (!r) return;
    if (r->cells)
        for (int i = 0; i < r->n_pairs * r->n_depths; i++) {
            free(r->cells[i].pp_tps);
            free(r->cells[i].tg_tps);
        }
    free(r->cells);
    r->cells = NULL;
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Peak resident memory: VmHWM, reset with /proc/self/clear_refs (Linux >= 4.0) so each depth
 * gets its own peak; falls back to getrusage's process-lifetime maximum. */
static int hwm_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return 0;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

static uint64_t hwm_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    uint64_t kb = 0;
    if (f) {
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "VmHWM:", 6) == 0) {
                kb = strtoull(line + 6, NULL, 10);
                break;
            }
        fclose(f);
    }
    if (!kb) {
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0) kb = (uint64_t)ru.ru_maxrss;
    }
    return kb * 1024;
}

static uint64_t maxrss_bytes(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (uint64_t)ru.ru_maxrss * 1024 : 0;
}

static double median(const double *v, int n) {
    double *t = malloc(sizeof(double) * (size_t)n);
    if (!t) return NAN;
    memcpy(t, v, sizeof(double) * (size_t)n);
    qsort(t, (size_t)n, sizeof(double), kvc_eval_cmp_dbl);
    double m = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    free(t);
    return m;
}

static double stdev(const double *v, int n) {
    if (n < 2) return 0;
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) s += v[i];
    double mean = s / n;
    for (int i = 0; i < n; i++) s2 += (v[i] - mean) * (v[i] - mean);
    return sqrt(s2 / (n - 1));
}

/* Fill the (empty) cache with depth tokens in batches; not timed. */
static kvc_status fill(kvc_ctx *c, const int32_t *tok, int depth, int n_batch, kvc_error *e) {
    for (int i = 0; i < depth; i += n_batch) {
        int nb = depth - i < n_batch ? depth - i : n_batch;
        kvc_status st = kvc_eval(c, tok + i, nb, 0, e);
        if (st) return st;
    }
    return KVC_OK;
}

static void report(const struct kvc_bench_params *p, struct kvc_bench_progress *ev) {
    if (p->progress) p->progress(p->user, ev);
}

/* Contexts of every pair, filled to the largest depth, then the timed tests. */
static kvc_status run(const kvc_model *m, const struct kvc_bench_params *p, struct kvc_bench_result *r,
                      const int32_t *tok, const struct kvc_ctx_params *cp0, kvc_ctx **cts, kvc_error *e) {
    const struct kvc_model_info *in = kvc_model_get_info(m);
    const int np = r->n_pairs, nd = r->n_depths, max_depth = r->depths[nd - 1];
    const int pp = r->pp, tg = r->tg, reps = r->reps, n_batch = cp0->n_batch;
    const double t_start = kvc_eval_now(); /* "elapsed" of the TEST events counts the fills too */
    for (int c = 0; c < np; c++) {
        struct kvc_ctx_params cp = *cp0;
        cp.kv_k = r->pairs[c].k;
        cp.kv_v = r->pairs[c].v;
        cp.kv_preset = r->pairs[c].preset[0] ? r->pairs[c].preset : NULL;
        kvc_status st = kvc_ctx_create(m, &cp, &cts[c], e);
        if (st) return st;
        double tf = kvc_eval_now();
        struct kvc_bench_progress ev = {.event = KVC_BENCH_FILL, .pair = c, .kv_k = r->pairs[c].k,
                                        .kv_v = r->pairs[c].v, .total = max_depth, .n_ctx = r->n_ctx};
        if (p->fill_synthetic && max_depth > p->fill_prefix && strncmp(r->pairs[c].k, "hdc-select", 10) &&
            strncmp(r->pairs[c].v, "hdc-select", 10)) {
            struct kvc_kv_stats *ks = NULL;
            st = kvc_kv_stats_collect(cts[c], tok, p->fill_prefix, &ks, e);
            if (!st) st = kvc_ctx_fill_synthetic(cts[c], ks, max_depth, p->seed, e);
            kvc_kv_stats_free(ks);
            if (st) return st;
            r->synthetic[c] = 1;
            ev.event = KVC_BENCH_FILL_DONE;
            ev.synthetic = 1;
            ev.done = max_depth;
            ev.seconds = kvc_eval_now() - tf;
            report(p, &ev);
            continue;
        }
        for (int i = 0; i < max_depth; i += n_batch) {
            int nb = max_depth - i < n_batch ? max_depth - i : n_batch;
            if ((st = kvc_eval(cts[c], tok + i, nb, 0, e))) return st;
            if ((i / n_batch) % 8 == 7) {
                ev.done = i + nb;
                ev.seconds = kvc_eval_now() - tf;
                report(p, &ev);
            }
        }
        if (max_depth > 0) {
            ev.event = KVC_BENCH_FILL_DONE;
            ev.done = max_depth;
            ev.seconds = kvc_eval_now() - tf;
            report(p, &ev);
        }
    }
    for (int d = nd - 1; d >= 0; d--) {
        /* the bandwidth behind each pair's decode bound at this depth: measured over a buffer
         * as large as what one token reads (weights + KV), so a working set that fits in the
         * caches is credited with the caches' bandwidth; -t threads. The probe runs before
         * every repetition (median of 3 passes each, the buffer freed before the timed tests
         * and the RSS peak reset after it), and the bound takes the median over repetitions,
         * so bandwidth that drifts during a run is sampled when the tests run */
        double *bw = NULL;
        if (!r->bandwidth_given && !(bw = calloc((size_t)(np * reps), sizeof *bw)))
            return kvc_fail(e, KVC_ERR_NOMEM, "bench: cannot allocate %d bandwidth samples", np * reps);
        for (int c = 0; c < np; c++) {
            struct kvc_bench_cell *cl = &r->cells[c * nd + d];
            cl->bytes_per_token = (double)in->decode_read_bytes + r->kv_bytes_per_token[c] * (r->depths[d] + 0.5 * tg);
            if (r->bandwidth_given) cl->bandwidth = p->bandwidth;
        }
        uint64_t peak = 0;
        for (int rep = 0; rep < reps; rep++) {
            for (int c = 0; bw && c < np; c++) {
                const double bpt = r->cells[c * nd + d].bytes_per_token;
                size_t sz = bpt < (double)((size_t)1 << 20) ? ((size_t)1 << 20) : (size_t)bpt;
                kvc_status st = kvc_measure_read_bandwidth(sz, r->n_threads, 3, &bw[c * reps + rep], e);
                if (st) {
                    free(bw);
                    return st;
                }
            }
            hwm_reset();
            for (int c = 0; c < np; c++) {
                struct kvc_bench_cell *cl = &r->cells[c * nd + d];
                for (int kind = 0; kind < 2; kind++) {
                    kvc_ctx *ct = cts[c];
                    /* with a recent window the window's rows below the depth come from their
                     * codec rows until the ring refills: the same number of rows is read */
                    kvc_status st = kvc_ctx_truncate_window(ct, r->depths[d], e);
                    int n_test = kind ? tg : pp;
                    double t0 = kvc_eval_now();
                    if (!st && kind == 0) st = kvc_eval(ct, tok + r->depths[d], pp, 0, e);
                    for (int i = 0; !st && kind == 1 && i < tg; i++) st = kvc_eval(ct, tok + r->depths[d] + i, 1, 0, e);
                    double t1 = kvc_eval_now();
                    if (!st && kvc_ctx_n_past(ct) != r->depths[d] + n_test)
                        st = kvc_fail(e, KVC_ERR_INTERNAL, "bench: cache holds %d positions, expected %d",
                                      kvc_ctx_n_past(ct), r->depths[d] + n_test);
                    if (st) {
                        free(bw);
                        return st;
                    }
                    double tps = n_test / (t1 - t0);
                    (kind ? cl->tg_tps : cl->pp_tps)[rep] = tps;
                    struct kvc_bench_progress ev = {.event = KVC_BENCH_TEST, .pair = c, .kv_k = r->pairs[c].k,
                                                    .kv_v = r->pairs[c].v, .rep = rep, .depth = r->depths[d],
                                                    .is_tg = kind, .n_tokens = n_test, .tps = tps,
                                                    .seconds = kvc_eval_now() - t_start, .n_ctx = r->n_ctx};
                    report(p, &ev);
                }
            }
            uint64_t hw = hwm_bytes();
            if (hw > peak) peak = hw;
        }
        for (int c = 0; c < np; c++) {
            if (peak > r->cells[c * nd + d].peak_rss) r->cells[c * nd + d].peak_rss = peak;
            if (bw) r->cells[c * nd + d].bandwidth = median(bw + c * reps, reps);
        }
        free(bw);
    }
    return KVC_OK;
}

kvc_status kvc_bench(const kvc_model *m, const struct kvc_bench_params *p, struct kvc_bench_result *r,
                     kvc_error *err) {
    memset(r, 0, sizeof *r);
    if (!m || !p) return kvc_fail(err, KVC_ERR_ARG, "bench: model and parameters are required");
    const struct kvc_model_info *in = kvc_model_get_info(m);
    if (p->n_pairs < 0 || p->n_pairs > KVC_BENCH_MAX_PAIRS)
        return kvc_fail(err, KVC_ERR_ARG, "bench: n_pairs %d out of range 0..%d", p->n_pairs, KVC_BENCH_MAX_PAIRS);
    if (p->n_depths < 1 || p->n_depths > KVC_BENCH_MAX_DEPTHS)
        return kvc_fail(err, KVC_ERR_ARG, "bench: n_depths %d out of range 1..%d", p->n_depths, KVC_BENCH_MAX_DEPTHS);
    if (p->reps < 1 || p->reps > 1000 || p->pp < 1 || p->pp > 65536 || p->tg < 1 || p->tg > 65536)
        return kvc_fail(err, KVC_ERR_ARG, "bench: reps %d (1..1000), pp %d, tg %d (1..65536) out of range", p->reps,
                        p->pp, p->tg);
    if (p->fill_synthetic && p->fill_prefix < 2)
        return kvc_fail(err, KVC_ERR_ARG, "bench: synthetic fill needs fill_prefix >= 2 (got %d)", p->fill_prefix);
    if (!(p->bandwidth >= 0) || p->bandwidth > 1e16)
        return kvc_fail(err, KVC_ERR_ARG, "bench: bandwidth %g bytes/s out of range", p->bandwidth);
    /* depths ascending, duplicates dropped */
    int nd = 0;
    for (int i = 0; i < p->n_depths; i++) {
        int v = p->depths[i];
        if (v < 0 || v > (1 << 24)) return kvc_fail(err, KVC_ERR_ARG, "bench: depth %d out of range 0..16777216", v);
        int j = nd;
        while (j > 0 && r->depths[j - 1] > v) j--;
        if (j > 0 && r->depths[j - 1] == v) continue;
        memmove(r->depths + j + 1, r->depths + j, sizeof(int) * (size_t)(nd - j));
        r->depths[j] = v;
        nd++;
    }
    const int max_depth = r->depths[nd - 1];
    if ((long)max_depth + p->pp + p->tg > (1 << 24))
        return kvc_fail(err, KVC_ERR_ARG, "bench: max depth + pp + tg exceeds 16777216 positions");
    r->n_depths = nd;
    r->n_pairs = p->n_pairs ? p->n_pairs : 1;
    if (p->n_pairs) memcpy(r->pairs, p->pairs, sizeof(struct kvc_bench_pair) * (size_t)p->n_pairs);
    else {
        snprintf(r->pairs[0].k, sizeof r->pairs[0].k, "%s", p->ctx.kv_k ? p->ctx.kv_k : "f16");
        snprintf(r->pairs[0].v, sizeof r->pairs[0].v, "%s", p->ctx.kv_v ? p->ctx.kv_v : "f16");
    }
    r->reps = p->reps;
    r->pp = p->pp;
    r->tg = p->tg;
    r->fill_prefix = p->fill_prefix;
    r->n_ctx_train = in->n_ctx_train;
    r->bandwidth_given = p->bandwidth > 0;
    struct kvc_ctx_params cp = p->ctx;
    cp.n_ctx = max_depth + p->pp + p->tg;
    if (cp.n_batch < p->pp) cp.n_batch = p->pp;
    r->n_ctx = cp.n_ctx;
    r->n_threads = cp.n_threads;
    const int np = r->n_pairs, n_tok = max_depth + p->pp + p->tg;
    r->cells = calloc((size_t)np * nd, sizeof *r->cells);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)n_tok);
    kvc_ctx **cts = calloc((size_t)np, sizeof *cts);
    int ok = r->cells && tok && cts;
    for (int i = 0; ok && i < np * nd; i++) {
        r->cells[i].pp_tps = calloc((size_t)p->reps, sizeof(double));
        r->cells[i].tg_tps = calloc((size_t)p->reps, sizeof(double));
        ok = r->cells[i].pp_tps && r->cells[i].tg_tps;
    }
    kvc_status st = KVC_OK;
    if (!ok) {
        st = kvc_fail(err, KVC_ERR_NOMEM, "bench: out of memory");
        goto done;
    }
    uint64_t rs = p->seed;
    int lo_tok = in->n_vocab > 3 ? 3 : 0;
    for (int i = 0; i < n_tok; i++) tok[i] = lo_tok + (int32_t)(rng_next(&rs) % (uint64_t)(in->n_vocab - lo_tok));
    tok[0] = in->bos_id;

    /* Check every pair (bad specs fail here, before any timing) and warm up: weights paged in,
     * threads started, codec kernels run once. */
    for (int c = 0; c < np; c++) {
        struct kvc_ctx_params wp = cp;
        wp.kv_k = r->pairs[c].k;
        wp.kv_v = r->pairs[c].v;
        wp.kv_preset = r->pairs[c].preset[0] ? r->pairs[c].preset : NULL;
        kvc_ctx *ct;
        if ((st = kvc_ctx_create(m, &wp, &ct, err))) goto done;
        struct kvc_kv_info kv;
        kvc_ctx_kv_info(ct, &kv);
        r->bits[c] = kv.bits_per_element;
        r->kv_bytes[c] = kv.kv_bytes;
        r->kv_bytes_per_token[c] = kv.bytes_per_token;
        snprintf(r->pairs[c].k, sizeof r->pairs[c].k, "%s", kv.spec_k);
        snprintf(r->pairs[c].v, sizeof r->pairs[c].v, "%s", kv.spec_v);
        int wn = p->pp < 64 ? p->pp : 64;
        st = fill(ct, tok, wn, cp.n_batch, err);
        for (int i = 0; !st && i < 4 && wn + i < cp.n_ctx; i++) st = kvc_eval(ct, tok + wn + i, 1, 0, err);
        kvc_ctx_free(ct);
        if (st) goto done;
    }
    const uint64_t rss_before_reset = maxrss_bytes();
    r->peak_scoped = hwm_reset();
    {
        struct kvc_bench_progress ev = {.event = KVC_BENCH_START, .pair = -1, .total = max_depth, .n_ctx = r->n_ctx};
        report(p, &ev);
    }
    st = run(m, p, r, tok, &cp, cts, err);
    /* process peak: getrusage's ru_maxrss before the first per-depth reset (warm-up) and now,
     * and every depth's VmHWM (clear_refs resets the high-water mark ru_maxrss reads on Linux) */
    r->max_rss = rss_before_reset;
    if (maxrss_bytes() > r->max_rss) r->max_rss = maxrss_bytes();
    for (int i = 0; i < np * nd; i++) {
        struct kvc_bench_cell *cl = &r->cells[i];
        if (cl->peak_rss > r->max_rss) r->max_rss = cl->peak_rss;
        cl->pp_median = median(cl->pp_tps, p->reps);
        cl->pp_sd = stdev(cl->pp_tps, p->reps);
        cl->tg_median = median(cl->tg_tps, p->reps);
        cl->tg_sd = stdev(cl->tg_tps, p->reps);
        cl->bound_tps = cl->bytes_per_token > 0 ? cl->bandwidth / cl->bytes_per_token : 0;
    }
done:
    if (cts)
        for (int c = 0; c < np; c++) kvc_ctx_free(cts[c]);
    free(cts);
    free(tok);
    return st;
}
