/* cmd_bench.c - `kvcodec bench`: prompt-processing and decode speed at several cache depths,
 * in llama-bench's terms (pp512 = one batch of 512 tokens, tg64 = 64 tokens decoded one at a
 * time), for one or several K/V codec pairs side by side. For every repetition the cache is
 * emptied and refilled to the depth (the fill is not timed), so each timed test starts from
 * exactly `depth` cached positions. Repetitions are interleaved across codecs so that drift of
 * a shared, noisy machine hits every codec alike. */
#include "cli.h"
#include "plot_svg.h"
#include "eval/fill.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_PAIRS 16
#define MAX_DEPTHS 32

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec bench [-m MODEL] [--kv-k SPEC --kv-v SPEC | --codecs \"K/V;K/V;...\"]\n"
            "                     [--depths 0,512,2048,4096,8192,16384] [-r 5] [-t N] [--json]\n\n"
            "Speed at each cache depth: with DEPTH positions in the cache (random token ids, filled in\n"
            "batches of -b, not timed), time a prefill of one batch of --pp tokens (test ppN) and the\n"
            "decode of --tg tokens one at a time (test tgN). Each codec pair's cache is filled once to\n"
            "the largest depth; depths are then timed from the largest down, each test starting from the\n"
            "cache truncated to exactly DEPTH positions (a cache with --kv-recent is refilled instead).\n"
            "Each test is repeated -r times, the pairs interleaved; medians and standard deviations over\n"
            "the repetitions are reported, with the KV bytes, the peak resident memory (VmHWM) while that\n"
            "depth was timed, and for decode the memory-bandwidth bound: read bandwidth / (weight bytes +\n"
            "KV bytes of the positions attended) per token, and the share of it reached. The context is\n"
            "sized max(depths) + pp + tg; depths beyond the model's trained context are allowed for timing\n"
            "(the output marks them: the model's outputs there are not meaningful, only the speed).\n"
            "  --depths LIST        comma-separated cache depths in tokens (default 0,512,2048,4096,8192,16384)\n"
            "  -r, --reps N         repetitions of each test (default 5)\n"
            "  --pp N               tokens of the timed prefill batch (default 512)\n"
            "  --tg N               tokens of the timed decode (default 64)\n"
            "  --codecs LIST        several K/V codec pairs in one run, separated by ';', each \"K/V\", \"preset=FILE\" or one\n"
            "                       spec for both, e.g. \"f16/f16;q8_0/q8_0;q4_0/q4_0\"; repetitions are\n"
            "                       interleaved and each row gets its ratio to the first pair\n"
            "  --seed S             seed of the random fill tokens (default 1)\n"
            "  --fill MODE          real (default): fill the cache by prefill of random tokens; synthetic: a real\n"
            "                       prefill of --fill-prefix tokens, then rows drawn from the per-(layer, KV head)\n"
            "                       mean and covariance of its keys and values, encoded by the codec (as costly to\n"
            "                       decode as real rows for every codec but hdc-select, which picks rows by content\n"
            "                       and is always filled by real prefill). The timed prefill is real in both modes\n"
            "  --plot FILE          also write decode t/s (median) vs depth, one line per codec pair, as SVG\n"
            "  --fill-prefix N      real tokens behind the statistics of --fill synthetic (default 512)\n"
            "  --bandwidth GBPS     memory read bandwidth for the bound, in GB/s (default: measured with\n"
            "                       -t threads at each depth over a buffer the size of what one decoded\n"
            "                       token reads, as build/bench/bandwidth does for fixed sizes)\n"
            "  --json               print a JSON list of rows (depth, test, tps_median, tps_sd, tps_all,\n"
            "                       kv_k, kv_v, bits_per_element, kv_bytes, peak_rss_bytes, bound_tps,\n"
            "                       fraction_of_bound, read_bandwidth_bytes_per_s, reps, threads, ...)\n"
            "  -q, --quiet          no progress lines on stderr\n"
            "The shared options (-c is not accepted: bench sizes the context itself; -b is the fill batch,\n"
            "raised to --pp if smaller):\n");
    ctx_opts_help(f, 1);
}

struct pair {
    char k[128], v[128];
    char preset[256]; /* "preset=FILE": the preset's setting (k, v filled from it) */
};

static int parse_pairs(const char *cmd, const char *s, struct pair *out, int cap) {
    int n = 0;
    const char *p = s;
    while (*p) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && *p == ' ') { p++; len--; }
        while (len && p[len - 1] == ' ') len--;
        if (len) {
            char item[300];
            if (len >= sizeof item || n == cap) return usage_error(cmd, "--codecs: entry too long or more than %d entries", cap), -1;
            memcpy(item, p, len);
            item[len] = 0;
            memset(&out[n], 0, sizeof out[n]);
            if (strncmp(item, "preset=", 7) == 0) {
                if (!item[7] || strlen(item + 7) >= sizeof out[n].preset)
                    return usage_error(cmd, "--codecs: bad entry '%s' (expected preset=FILE)", item), -1;
                snprintf(out[n].preset, sizeof out[n].preset, "%s", item + 7);
                snprintf(out[n].k, sizeof out[n].k, "preset");
                snprintf(out[n].v, sizeof out[n].v, "preset");
                n++;
                if (!end) break;
                p = end + 1;
                continue;
            }
            char *sl = strchr(item, '/');
            const char *k = item, *v = item;
            if (sl) { *sl = 0; v = sl + 1; }
            if (!*k || !*v || strchr(v, '/') || strlen(k) >= 128 || strlen(v) >= 128)
                return usage_error(cmd, "--codecs: bad entry '%.*s' (expected SPEC or K/V)", (int)len, p), -1;
            snprintf(out[n].k, sizeof out[n].k, "%s", k);
            snprintf(out[n].v, sizeof out[n].v, "%s", v);
            n++;
        }
        if (!end) break;
        p = end + 1;
    }
    if (!n) return usage_error(cmd, "--codecs '%s': no codec pair given", s), -1;
    return n;
}

static int parse_depths(const char *cmd, const char *s, int *out, int cap) {
    int n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > (1 << 24) || (*end && *end != ',') || n == cap)
            return usage_error(cmd, "--depths '%s': expected up to %d comma-separated integers in 0..16777216", s, cap), -1;
        out[n++] = (int)v;
        if (!*end) break;
        p = end + 1;
    }
    return n;
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
            if (strncmp(line, "VmHWM:", 6) == 0) { kb = strtoull(line + 6, NULL, 10); break; }
        fclose(f);
    }
    if (!kb) {
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0) kb = (uint64_t)ru.ru_maxrss;
    }
    return kb * 1024;
}

/* "model name" of /proc/cpuinfo and the online CPU count, for the record. */
static void cpu_name(char *buf, size_t cap) {
    snprintf(buf, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        char *c = strchr(line, ':');
        if (!c) continue;
        c++;
        while (*c == ' ' || *c == '\t') c++;
        c[strcspn(c, "\n")] = 0;
        snprintf(buf, cap, "%s", c);
        break;
    }
    fclose(f);
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n) {
    double t[1024];
    int m = n < 1024 ? n : 1024;
    memcpy(t, v, sizeof(double) * (size_t)m);
    qsort(t, (size_t)m, sizeof(double), cmp_dbl);
    return m % 2 ? t[m / 2] : 0.5 * (t[m / 2 - 1] + t[m / 2]);
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

/* Bytes one decoded token reads at a cache depth: every weight it uses and the K/V bytes of
 * the positions it attends to (on average depth + tg/2 during a tg-token test). */
static double decode_bytes_per_token(const struct kvc_model_info *in, double kv_bytes_per_token, int depth,
                                     int tg) {
    return (double)in->decode_read_bytes + kv_bytes_per_token * (depth + 0.5 * tg);
}

/* Results of one (pair, depth) cell. */
struct cell {
    double *pp, *tg;          /* reps t/s each */
    uint64_t peak;            /* max VmHWM over reps */
    double bw;                /* read bandwidth (bytes/s) over one token's reads at this depth */
};

int cmd_bench(int argc, char **argv) {
    struct args a = {argc, 1, argv, "bench"};
    struct ctx_opts o;
    ctx_opts_init(&o);
    const char *depths_s = "0,512,2048,4096,8192,16384", *codecs_s = NULL;
    const char *bw_s = NULL, *fill_s = "real", *plot_s = NULL;
    int fill_prefix = 512;
    int reps = 5, pp = 512, tg = 64, json = 0, quiet = 0, kv_given = 0;
    uint64_t seed = 1;
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        if (arg_flag(&a, "-c") || arg_flag(&a, "--ctx-size"))
            return usage_error(a.cmd, "%s: bench sizes the context itself (max depth + pp + tg)", argv[a.i]);
        const char *flag = argv[a.i];
        int r = ctx_opts_parse(&o, &a);
        if (r < 0) return 2;
        if (r) {
            if (!strcmp(flag, "--kv-k") || !strcmp(flag, "--kv-v")) kv_given = 1;
            continue;
        }
        if (arg_str(&a, "--depths", NULL, &depths_s) || arg_str(&a, "--codecs", NULL, &codecs_s) ||
            arg_int(&a, "-r", "--reps", 1, 1000, &reps) || arg_int(&a, "--pp", NULL, 1, 65536, &pp) ||
            arg_int(&a, "--tg", NULL, 1, 65536, &tg) || arg_u64(&a, "--seed", &seed) ||
            arg_str(&a, "--bandwidth", NULL, &bw_s) || arg_str(&a, "--fill", NULL, &fill_s) || arg_str(&a, "--plot", NULL, &plot_s) ||
            arg_int(&a, "--fill-prefix", NULL, 2, 1 << 20, &fill_prefix))
            continue;
        if (arg_flag(&a, "--json")) { json = 1; continue; }
        if (arg_flag(&a, "-q") || arg_flag(&a, "--quiet")) { quiet = 1; continue; }
        return arg_unknown(&a);
    }
    if (codecs_s && kv_given) return usage_error(a.cmd, "give either --codecs or --kv-k/--kv-v, not both");
    if (strcmp(fill_s, "real") && strcmp(fill_s, "synthetic"))
        return usage_error(a.cmd, "--fill %s: expected real or synthetic", fill_s);
    int fill_synth = !strcmp(fill_s, "synthetic");
    if (fill_synth && o.p.kv_recent > 0)
        return usage_error(a.cmd, "--fill synthetic: not with --kv-recent (its ring is refilled by real prefill)");
    double bw_fixed = 0; /* bytes/s from --bandwidth; 0: measured per row */
    if (bw_s) {
        char *end;
        bw_fixed = strtod(bw_s, &end) * 1e9;
        if (end == bw_s || *end || !(bw_fixed > 0) || bw_fixed > 1e16)
            return usage_error(a.cmd, "--bandwidth %s: want GB/s, a number > 0", bw_s);
    }
    int depths[MAX_DEPTHS], nd = parse_depths(a.cmd, depths_s, depths, MAX_DEPTHS);
    if (nd < 0) return 2;
    struct pair pairs[MAX_PAIRS];
    int np = 1;
    if (codecs_s) {
        if ((np = parse_pairs(a.cmd, codecs_s, pairs, MAX_PAIRS)) < 0) return 2;
    } else {
        snprintf(pairs[0].k, sizeof pairs[0].k, "%s", o.p.kv_k);
        snprintf(pairs[0].v, sizeof pairs[0].v, "%s", o.p.kv_v);
    }
    for (int i = 1; i < nd; i++) /* ascending, duplicates dropped */
        for (int j = i; j > 0 && depths[j - 1] > depths[j]; j--) { int t = depths[j]; depths[j] = depths[j - 1]; depths[j - 1] = t; }
    {
        int k = 0;
        for (int i = 0; i < nd; i++)
            if (k == 0 || depths[i] != depths[k - 1]) depths[k++] = depths[i];
        nd = k;
    }
    int max_depth = depths[nd - 1];
    if ((long)max_depth + pp + tg > (1 << 24)) return usage_error(a.cmd, "max depth + pp + tg exceeds 16777216 positions");

    kvc_model *m;
    if (load_model(a.cmd, o.model, &m)) return 1;
    const struct kvc_model_info *in = kvc_model_get_info(m);
    const char *mpath = o.model ? o.model : default_model_path();
    char mname[128];
    {
        const char *b = strrchr(mpath, '/');
        snprintf(mname, sizeof mname, "%s", b ? b + 1 : mpath);
        size_t l = strlen(mname);
        if (l > 5 && strcmp(mname + l - 5, ".gguf") == 0) mname[l - 5] = 0;
    }
    struct kvc_ctx_params p = o.p;
    p.n_ctx = max_depth + pp + tg;
    if (p.n_batch < pp) p.n_batch = pp;
    kvc_error e = {0};
    int rc = 0;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(max_depth + pp + tg));
    struct cell *cells = calloc((size_t)np * nd, sizeof *cells);
    double *bits = calloc((size_t)np, sizeof(double));
    uint64_t *kvb = calloc((size_t)np, sizeof(uint64_t));
    double *bpt = calloc((size_t)np, sizeof(double));
    int ok = tok && cells && bits && kvb && bpt;
    for (int i = 0; ok && i < np * nd; i++) {
        cells[i].pp = calloc((size_t)reps, sizeof(double));
        cells[i].tg = calloc((size_t)reps, sizeof(double));
        ok = cells[i].pp && cells[i].tg;
    }
    if (!ok) { fprintf(stderr, "kvcodec bench: error: out of memory\n"); rc = 1; goto done; }
    uint64_t rs = seed;
    int lo_tok = in->n_vocab > 3 ? 3 : 0;
    for (int i = 0; i < max_depth + pp + tg; i++)
        tok[i] = lo_tok + (int32_t)(rng_next(&rs) % (uint64_t)(in->n_vocab - lo_tok));
    tok[0] = in->bos_id;

    /* Check every pair (bad specs fail here, before any timing) and warm up: weights paged in,
     * threads started, codec kernels run once. */
    for (int c = 0; c < np; c++) {
        struct kvc_ctx_params wp = p;
        wp.kv_k = pairs[c].k;
        wp.kv_v = pairs[c].v;
        wp.kv_preset = pairs[c].preset[0] ? pairs[c].preset : NULL;
        kvc_ctx *ct;
        if (kvc_ctx_create(m, &wp, &ct, &e)) {
            if (e.status == KVC_ERR_ARG) { fprintf(stderr, "kvcodec bench: %s\n", e.msg); rc = 2; }
            else rc = lib_error(a.cmd, &e);
            goto done;
        }
        struct kvc_kv_info kv;
        kvc_ctx_kv_info(ct, &kv);
        bits[c] = kv.bits_per_element;
        kvb[c] = kv.kv_bytes;
        bpt[c] = kv.bytes_per_token;
        snprintf(pairs[c].k, sizeof pairs[c].k, "%s", kv.spec_k);
        snprintf(pairs[c].v, sizeof pairs[c].v, "%s", kv.spec_v);
        int wn = pp < 64 ? pp : 64;
        kvc_status st = fill(ct, tok, wn, p.n_batch, &e);
        for (int i = 0; !st && i < 4 && wn + i < p.n_ctx; i++) st = kvc_eval(ct, tok + wn + i, 1, 0, &e);
        kvc_ctx_free(ct);
        if (st) { rc = lib_error(a.cmd, &e); goto done; }
    }
    uint64_t rss_before_reset = 0;
    {
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0) rss_before_reset = (uint64_t)ru.ru_maxrss * 1024;
    }
    int scoped = hwm_reset();
    if (!quiet) {
        fprintf(stderr, "kvcodec bench: %s, %d codec pair%s, depths %s, %d reps, -t %d, context %d; "
                "%d untimed fill tokens per pair\n",
                mname, np, np > 1 ? "s" : "", depths_s, reps, p.n_threads, p.n_ctx, max_depth);
        for (int d = 0; d < nd; d++)
            if (depths[d] + pp + tg > in->n_ctx_train) {
                fprintf(stderr, "kvcodec bench: note: depths from %d on go beyond the trained context %d: timing only\n",
                        depths[d], in->n_ctx_train);
                break;
            }
    }
    double t_start = now_sec();
    /* Every pair's context lives through the run and is filled once to the largest depth
     * (untimed). Depths are then taken from the largest down; each test truncates the cache
     * to exactly `depth` positions first (kvc_ctx_truncate: rows below depth stay as filled,
     * the rows a test wrote above it are dropped), so no depth needs a refill. Repetitions of
     * a depth interleave the pairs (pair 1 pp, pair 1 tg, pair 2 pp, ...), so drift on a noisy
     * machine hits every pair alike. A cache with a recent window cannot be truncated: it is
     * refilled from empty for each test. */
    kvc_ctx **cts = calloc((size_t)np, sizeof *cts);
    int *filled = calloc((size_t)np, sizeof *filled); /* 1: synthetic fill */
    if (!cts || !filled) { fprintf(stderr, "kvcodec bench: error: out of memory\n"); rc = 1; goto done; }
    for (int c = 0; c < np; c++) {
        struct kvc_ctx_params cp = p;
        cp.kv_k = pairs[c].k;
        cp.kv_v = pairs[c].v;
        cp.kv_preset = pairs[c].preset[0] ? pairs[c].preset : NULL;
        if (kvc_ctx_create(m, &cp, &cts[c], &e)) { rc = lib_error(a.cmd, &e); goto done_cts; }
        double tf = now_sec();
        filled[c] = 0;
        if (fill_synth && max_depth > fill_prefix && strncmp(pairs[c].k, "hdc-select", 10) &&
            strncmp(pairs[c].v, "hdc-select", 10)) {
            struct kvc_kv_stats *ks = NULL;
            kvc_status st = kvc_kv_stats_collect(cts[c], tok, fill_prefix, &ks, &e);
            if (!st) st = kvc_ctx_fill_synthetic(cts[c], ks, max_depth, seed, &e);
            kvc_kv_stats_free(ks);
            if (st) { rc = lib_error(a.cmd, &e); goto done_cts; }
            filled[c] = 1;
            if (!quiet)
                fprintf(stderr, "[fill] %s/%s: %d real + %d synthetic positions in %.1f s\n", pairs[c].k, pairs[c].v,
                        fill_prefix, max_depth - fill_prefix, now_sec() - tf);
            continue;
        }
        for (int i = 0; i < max_depth; i += p.n_batch) {
            int nb = max_depth - i < p.n_batch ? max_depth - i : p.n_batch;
            if (kvc_eval(cts[c], tok + i, nb, 0, &e)) { rc = lib_error(a.cmd, &e); goto done_cts; }
            if (!quiet && (i / p.n_batch) % 8 == 7)
                fprintf(stderr, "[fill] %s/%s: %d / %d positions, %.0f s\n", pairs[c].k, pairs[c].v,
                        i + nb, max_depth, now_sec() - tf);
        }
        if (!quiet && max_depth > 0)
            fprintf(stderr, "[fill] %s/%s: %d positions in %.1f s\n", pairs[c].k, pairs[c].v, max_depth, now_sec() - tf);
    }
    for (int d = nd - 1; d >= 0; d--) {
        /* the bandwidth behind each pair's decode bound at this depth: measured over a buffer
         * as large as what one token reads (weights + KV), so a working set that fits in the
         * caches is credited with the caches' bandwidth; -t threads, median of 7 passes */
        for (int c = 0; c < np && bw_fixed == 0; c++) {
            double bytes_tok = decode_bytes_per_token(in, bpt[c], depths[d], tg);
            size_t sz = (size_t)bytes_tok < ((size_t)1 << 20) ? ((size_t)1 << 20) : (size_t)bytes_tok;
            if (kvc_measure_read_bandwidth(sz, p.n_threads, 7, &cells[c * nd + d].bw, &e)) {
                rc = lib_error(a.cmd, &e);
                goto done_cts;
            }
        }
        hwm_reset();
        for (int r = 0; r < reps; r++) {
            for (int c = 0; c < np; c++) {
                struct cell *cl = &cells[c * nd + d];
                for (int kind = 0; kind < 2; kind++) {
                    kvc_ctx *ct = cts[c];
                    kvc_status st = kvc_ctx_truncate(ct, depths[d], &e);
                    if (st == KVC_ERR_UNSUPPORTED) { /* recent window: refill from empty */
                        kvc_ctx_reset(ct);
                        st = fill(ct, tok, depths[d], p.n_batch, &e);
                    }
                    int n_test = kind ? tg : pp;
                    double t0 = now_sec();
                    if (!st && kind == 0) st = kvc_eval(ct, tok + depths[d], pp, 0, &e);
                    for (int i = 0; !st && kind == 1 && i < tg; i++) st = kvc_eval(ct, tok + depths[d] + i, 1, 0, &e);
                    double t1 = now_sec();
                    if (st) { rc = lib_error(a.cmd, &e); goto done_cts; }
                    if (kvc_ctx_n_past(ct) != depths[d] + n_test) {
                        fprintf(stderr, "kvcodec bench: error: internal: cache holds %d positions, expected %d\n",
                                kvc_ctx_n_past(ct), depths[d] + n_test);
                        rc = 1;
                        goto done_cts;
                    }
                    double tps = n_test / (t1 - t0);
                    (kind ? cl->tg : cl->pp)[r] = tps;
                    if (!quiet)
                        fprintf(stderr, "[rep %d/%d] %s/%s: %s%d @ d%d: %.1f t/s (%.0f s elapsed)\n", r + 1, reps,
                                pairs[c].k, pairs[c].v, kind ? "tg" : "pp", n_test, depths[d], tps, now_sec() - t_start);
                }
            }
        }
        uint64_t peak = hwm_bytes();
        for (int c = 0; c < np; c++)
            if (peak > cells[c * nd + d].peak) cells[c * nd + d].peak = peak;
    }
done_cts:
    if (cts)
        for (int c = 0; c < np; c++) kvc_ctx_free(cts[c]);
    free(cts);
    if (rc) { free(filled); goto done; }

    /* report */
    char cpu[160];
    cpu_name(cpu, sizeof cpu);
    long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
    /* process peak: getrusage's ru_maxrss before the first per-depth reset (warm-up) and now,
     * and every depth's VmHWM (clear_refs resets the high-water mark ru_maxrss reads on Linux) */
    uint64_t max_rss = rss_before_reset;
    {
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0 && (uint64_t)ru.ru_maxrss * 1024 > max_rss) max_rss = (uint64_t)ru.ru_maxrss * 1024;
        for (int i = 0; i < np * nd; i++)
            if (cells[i].peak > max_rss) max_rss = cells[i].peak;
    }
    if (json) printf("[");
    else {
        printf("| model | codec K/V | bits/elem | test | t/s (median ± sd) |%s bound t/s | of bound | KV MiB | peak RSS MiB |\n",
               np > 1 ? " vs first |" : "");
        printf("|---|---|---:|---|---:|%s---:|---:|---:|---:|\n", np > 1 ? "---:|" : "");
    }
    int first = 1, beyond = 0;
    for (int d = 0; d < nd; d++) {
        for (int c = 0; c < np; c++) {
            struct cell *cl = &cells[c * nd + d], *c0 = &cells[d];
            int is_beyond = depths[d] + pp + tg > in->n_ctx_train;
            beyond |= is_beyond;
            for (int t = 0; t < 2; t++) {
                const double *v = t ? cl->tg : cl->pp, *v0 = t ? c0->tg : c0->pp;
                double med = median(v, reps), sd = stdev(v, reps), ratio = med / median(v0, reps);
                double bytes_tok = decode_bytes_per_token(in, bpt[c], depths[d], tg); /* decode bound */
                const double bw = bw_fixed > 0 ? bw_fixed : cl->bw;
                double bound = bw / bytes_tok;
                char test[32];
                snprintf(test, sizeof test, "%s%d", t ? "tg" : "pp", t ? tg : pp);
                if (json) {
                    printf("%s\n {\"model\": ", first ? "" : ",");
                    json_str(stdout, mname);
                    printf(", \"kv_k\": ");
                    json_str(stdout, pairs[c].k);
                    printf(", \"kv_v\": ");
                    json_str(stdout, pairs[c].v);
                    printf(", \"bits_per_element\": %.4f, \"depth\": %d, \"test\": \"%s\", \"n_tokens\": %d, "
                           "\"tps_median\": %.3f, \"tps_sd\": %.3f, \"tps_all\": [",
                           bits[c], depths[d], test, t ? tg : pp, med, sd);
                    for (int r = 0; r < reps; r++) printf("%s%.3f", r ? ", " : "", v[r]);
                    printf("], \"ratio_vs_first\": %.4f, \"kv_bytes\": %llu, \"kv_bytes_per_token\": %.1f, "
                           "\"kv_bytes_at_depth\": %.0f, \"peak_rss_bytes\": %llu, \"peak_rss_scope\": \"%s\", "
                           "\"reps\": %d, \"threads\": %d, \"n_ctx\": %d, \"n_ctx_train\": %d, "
                           "\"beyond_trained_ctx\": %s, \"kv_sinks\": %d, \"kv_recent\": %d, "
                           "\"read_bandwidth_bytes_per_s\": %.4g, \"bytes_read_per_token\": %.0f, "
                           "\"fill\": \"%s\", \"fill_prefix\": %d, \"max_rss_bytes\": %llu, ",
                           ratio, (unsigned long long)kvb[c], bpt[c], bpt[c] * depths[d],
                           (unsigned long long)cl->peak, scoped ? "depth" : "process", reps, p.n_threads, p.n_ctx,
                           in->n_ctx_train, is_beyond ? "true" : "false", p.kv_sinks, p.kv_recent, bw,
                           t ? bytes_tok : 0.0, filled[c] ? "synthetic" : "real", filled[c] ? fill_prefix : 0,
                           (unsigned long long)max_rss);
                    if (t) printf("\"bound_tps\": %.3f, \"fraction_of_bound\": %.4f, ", bound, med / bound);
                    else printf("\"bound_tps\": null, \"fraction_of_bound\": null, ");
                    printf("\"cpu\": ");
                    json_str(stdout, cpu);
                    printf(", \"host_cpus\": %ld}", n_cpu);
                } else {
                    printf("| %s | %s/%s | %.2f | %s @ d%d%s | %.2f ± %.2f |", mname, pairs[c].k, pairs[c].v, bits[c],
                           test, depths[d], is_beyond ? " *" : "", med, sd);
                    if (np > 1) printf(" %.3f |", ratio);
                    if (t) printf(" %.1f | %.0f %% |", bound, 100.0 * med / bound);
                    else printf(" | |");
                    printf(" %.2f | %.1f |\n", kvb[c] / 1048576.0, cl->peak / 1048576.0);
                }
                first = 0;
            }
        }
    }
    if (json) printf("\n]\n");
    else {
        printf("\n%s (%ld CPUs online); %d repetitions, -t %d, context %d (KV MiB is the cache allocated for it); "
               "peak RSS is %s.\n", cpu, n_cpu, reps, p.n_threads, p.n_ctx,
               scoped ? "the process's VmHWM during each depth's tests (weights mapped + buffers + the KV caches of all pairs)"
                      : "the process's lifetime maximum (clear_refs unavailable)");
        printf("bound t/s = read bandwidth / (weights %.1f MiB + KV bytes of depth + tg/2 positions) per decoded token: "
               "the memory-bandwidth limit, with the bandwidth %s; \"of bound\" is the measured median's share of it.\n",
               in->decode_read_bytes / 1048576.0,
               bw_fixed > 0 ? "given by --bandwidth"
                            : "measured (-t threads) over a buffer the size of one token's reads, at each depth");
        int any_synth = 0;
        for (int c = 0; c < np; c++) any_synth |= filled[c];
        if (any_synth) {
            printf("fill: synthetic (%d real tokens, then rows drawn from their per-(layer, KV head) K/V mean and covariance) for",
                   fill_prefix);
            for (int c = 0; c < np; c++)
                if (filled[c]) printf(" %s/%s", pairs[c].k, pairs[c].v);
            printf("; real prefill for the others.\n");
        }
        printf("process peak RSS (getrusage ru_maxrss before the per-depth resets, and every depth's peak): %.1f MiB.\n",
               max_rss / 1048576.0);
        if (beyond)
            printf("* beyond the model's trained context (%d): timing only, the model's outputs there are not meaningful.\n",
                   in->n_ctx_train);
    }
    if (plot_s) { /* decode medians vs depth (K positions), one series per pair */
        double *xs = calloc((size_t)np * nd, sizeof(double)), *ys = calloc((size_t)np * nd, sizeof(double));
        struct svg_series *sr = calloc((size_t)np, sizeof *sr);
        char(*names)[260] = calloc((size_t)np, sizeof *names);
        FILE *pf = xs && ys && sr && names ? fopen(plot_s, "w") : NULL;
        if (!pf) {
            fprintf(stderr, "kvcodec bench: error: cannot write %s\n", plot_s);
            rc = 1;
        } else {
            for (int c = 0; c < np; c++) {
                for (int d = 0; d < nd; d++) {
                    xs[c * nd + d] = depths[d] / 1024.0;
                    ys[c * nd + d] = median(cells[c * nd + d].tg, reps);
                }
                snprintf(names[c], sizeof names[c], "%.127s/%.127s", pairs[c].k, pairs[c].v);
                sr[c] = (struct svg_series){.name = names[c], .n = nd, .x = xs + c * nd, .y = ys + c * nd};
            }
            char title[200];
            snprintf(title, sizeof title, "%s: decode speed vs cache depth (-t %d)", mname, p.n_threads);
            struct svg_plot pl = {.title = title, .xlabel = "cache depth (K positions)",
                                  .ylabel = "decode t/s (median)", .y_from_zero = 1};
            int prc = svg_line_plot(pf, &pl, sr, np);
            if (fclose(pf) || prc) {
                fprintf(stderr, "kvcodec bench: error: writing %s failed\n", plot_s);
                rc = 1;
            }
        }
        free(xs);
        free(ys);
        free(sr);
        free(names);
    }
    free(filled);
done:
    if (cells)
        for (int i = 0; i < np * nd; i++) { free(cells[i].pp); free(cells[i].tg); }
    free(cells);
    free(bits);
    free(kvb);
    free(bpt);
    free(tok);
    kvc_model_free(m);
    return rc;
}
