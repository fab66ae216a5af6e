/* cmd_bench.c - `kvcodec bench`: prompt-processing and decode speed at several cache depths,
 * in llama-bench's terms (pp512 = one batch of 512 tokens, tg64 = 64 tokens decoded one at a
 * time), for one or several K/V codec pairs side by side. The timing loop is the library's
 * kvc_bench (src/eval/bench.c); this file parses the flags, prints progress lines, the table
 * or --json, and draws --plot. */
#include "cli.h"
#include "plot_svg.h"
#include "eval/fill.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec bench [-m MODEL] [--kv-k SPEC --kv-v SPEC | --codecs \"K/V;K/V;...\"]\n"
            "                     [--depths 0,512,2048,4096,8192,16384] [-r 5] [-t N] [--json]\n\n"
            "Speed at each cache depth: with DEPTH positions in the cache (random token ids, filled in\n"
            "batches of -b, not timed), time a prefill of one batch of --pp tokens (test ppN) and the\n"
            "decode of --tg tokens one at a time (test tgN). Each codec pair's cache is filled once to\n"
            "the largest depth; depths are then timed from the largest down, each test starting from the\n"
            "cache truncated to exactly DEPTH positions (with --kv-recent, the window's rows below DEPTH\n"
            "that the ring lost are read from their codec rows until the ring refills: same row count).\n"
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
            "                       -t threads before every repetition over a buffer the size of what one\n"
            "                       decoded token reads, as build/bench/bandwidth does for fixed sizes;\n"
            "                       the median over repetitions, so drift during the run is sampled)\n"
            "  --json               print a JSON list of rows (depth, test, tps_median, tps_sd, tps_all,\n"
            "                       kv_k, kv_v, bits_per_element, kv_bytes, peak_rss_bytes, bound_tps,\n"
            "                       fraction_of_bound, read_bandwidth_bytes_per_s, reps, threads, ...)\n"
            "  -q, --quiet          no progress lines on stderr\n"
            "The weights are read into memory by default (as llama-bench's repacked CPU weights are; 2 MiB\n"
            "pages where the kernel allows); --mmap times the memory-mapped file instead.\n"
            "The shared options (-c is not accepted: bench sizes the context itself; -b is the fill batch,\n"
            "raised to --pp if smaller):\n");
    ctx_opts_help(f, 1);
}

/* "preset=FILE" entries become pairs with preset set (k, v "preset"). */
static int parse_pairs(const char *cmd, const char *s, struct kvc_bench_pair *out, int cap) {
    int n = 0;
    const char *p = s;
    while (*p) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && *p == ' ') { p++; len--; }
        while (len && p[len - 1] == ' ') len--;
        if (len) {
            char item[2 * KVC_SPEC_MAX];
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
            if (!*k || !*v || strchr(v, '/') || strlen(k) >= KVC_SPEC_MAX || strlen(v) >= KVC_SPEC_MAX)
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

/* Progress lines on stderr (the pair names are the resolved specs). */
struct bench_ui {
    const char *mname, *depths_s;
    int np, reps, threads, n_ctx_train, pp, tg, fill_prefix, n_depths;
    const int *depths;
};
static void progress(void *user, const struct kvc_bench_progress *ev) {
    const struct bench_ui *u = user;
    switch (ev->event) {
    case KVC_BENCH_START:
        fprintf(stderr, "kvcodec bench: %s, %d codec pair%s, depths %s, %d reps, -t %d, context %d; "
                "%d untimed fill tokens per pair\n",
                u->mname, u->np, u->np > 1 ? "s" : "", u->depths_s, u->reps, u->threads, ev->n_ctx, ev->total);
        for (int d = 0; d < u->n_depths; d++)
            if (u->depths[d] + u->pp + u->tg > u->n_ctx_train) {
                fprintf(stderr, "kvcodec bench: note: depths from %d on go beyond the trained context %d: timing only\n",
                        u->depths[d], u->n_ctx_train);
                break;
            }
        break;
    case KVC_BENCH_FILL:
        fprintf(stderr, "[fill] %s/%s: %d / %d positions, %.0f s\n", ev->kv_k, ev->kv_v, ev->done, ev->total,
                ev->seconds);
        break;
    case KVC_BENCH_FILL_DONE:
        if (ev->synthetic)
            fprintf(stderr, "[fill] %s/%s: %d real + %d synthetic positions in %.1f s\n", ev->kv_k, ev->kv_v,
                    u->fill_prefix, ev->total - u->fill_prefix, ev->seconds);
        else
            fprintf(stderr, "[fill] %s/%s: %d positions in %.1f s\n", ev->kv_k, ev->kv_v, ev->total, ev->seconds);
        break;
    default:
        fprintf(stderr, "[rep %d/%d] %s/%s: %s%d @ d%d: %.1f t/s (%.0f s elapsed)\n", ev->rep + 1, u->reps, ev->kv_k,
                ev->kv_v, ev->is_tg ? "tg" : "pp", ev->n_tokens, ev->depth, ev->tps, ev->seconds);
        break;
    }
}

int cmd_bench(int argc, char **argv) {
    struct args a = {argc, 1, argv, "bench"};
    struct ctx_opts o;
    ctx_opts_init(&o);
    o.load_flags = KVC_LOAD_NO_MMAP; /* decode speed from weights in process memory, as llama-bench's
                                        repacked CPU weights are; --mmap measures the mapped file */
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
    double bw_fixed = 0; /* bytes/s from --bandwidth; 0: measured per row */
    if (bw_s) {
        char *end;
        bw_fixed = strtod(bw_s, &end) * 1e9;
        if (end == bw_s || *end || !(bw_fixed > 0) || bw_fixed > 1e16)
            return usage_error(a.cmd, "--bandwidth %s: want GB/s, a number > 0", bw_s);
    }
    struct kvc_bench_params bp = kvc_bench_default_params();
    int nd = parse_depths(a.cmd, depths_s, bp.depths, KVC_BENCH_MAX_DEPTHS);
    if (nd < 0) return 2;
    bp.n_depths = nd;
    if (codecs_s) {
        if ((bp.n_pairs = parse_pairs(a.cmd, codecs_s, bp.pairs, KVC_BENCH_MAX_PAIRS)) < 0) return 2;
    } else {
        bp.n_pairs = 1;
        snprintf(bp.pairs[0].k, sizeof bp.pairs[0].k, "%s", o.p.kv_k);
        snprintf(bp.pairs[0].v, sizeof bp.pairs[0].v, "%s", o.p.kv_v);
    }
    {
        int mx = 0;
        for (int i = 0; i < nd; i++) mx = bp.depths[i] > mx ? bp.depths[i] : mx;
        if ((long)mx + pp + tg > (1 << 24)) return usage_error(a.cmd, "max depth + pp + tg exceeds 16777216 positions");
    }

    kvc_model *m;
    if (load_model(a.cmd, o.model, o.load_flags, &m)) return 1;
    const int mapped = !(o.load_flags & KVC_LOAD_NO_MMAP);
    const struct kvc_model_info *in = kvc_model_get_info(m);
    const char *mpath = o.model ? o.model : default_model_path();
    char mname[128];
    {
        const char *b = strrchr(mpath, '/');
        snprintf(mname, sizeof mname, "%s", b ? b + 1 : mpath);
        size_t l = strlen(mname);
        if (l > 5 && strcmp(mname + l - 5, ".gguf") == 0) mname[l - 5] = 0;
    }
    bp.ctx = o.p;
    bp.reps = reps;
    bp.pp = pp;
    bp.tg = tg;
    bp.seed = seed;
    bp.fill_synthetic = fill_synth;
    bp.fill_prefix = fill_prefix;
    bp.bandwidth = bw_fixed;
    struct kvc_bench_result res;
    struct bench_ui ui = {mname, depths_s, bp.n_pairs, reps, o.p.n_threads, in->n_ctx_train, pp, tg, fill_prefix, 0, NULL};
    if (!quiet) {
        bp.progress = progress;
        bp.user = &ui;
    }
    /* the sorted depths for the progress note (the library sorts its own copy) */
    int sorted[KVC_BENCH_MAX_DEPTHS];
    memcpy(sorted, bp.depths, sizeof(int) * (size_t)nd);
    for (int i = 1; i < nd; i++)
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) { int t = sorted[j]; sorted[j] = sorted[j - 1]; sorted[j - 1] = t; }
    ui.depths = sorted;
    ui.n_depths = nd;
    kvc_error e = {0};
    int rc = 0;
    kvc_status bst = kvc_bench(m, &bp, &res, &e);
    if (bst) {
        if (bst == KVC_ERR_ARG) {
            fprintf(stderr, "kvcodec bench: %s\n", e.msg);
            rc = 2;
        } else {
            rc = lib_error(a.cmd, &e);
        }
        goto done;
    }
    const int np = res.n_pairs;
    nd = res.n_depths;
    const int *depths = res.depths;
    const struct kvc_bench_pair *pairs = res.pairs;
    const double *bits = res.bits, *bpt = res.kv_bytes_per_token;
    const uint64_t *kvb = res.kv_bytes;
    const int *filled = res.synthetic, scoped = res.peak_scoped;
    const struct kvc_bench_cell *cells = res.cells;
    struct kvc_ctx_params p = bp.ctx;
    p.n_ctx = res.n_ctx;

    /* report */
    char cpu[160];
    cpu_name(cpu, sizeof cpu);
    long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
    /* process peak (the library's: ru_maxrss before the per-depth resets, and every depth's VmHWM) */
    const uint64_t max_rss = res.max_rss;
    json_t *rows = json ? json_array() : NULL; /* --json: one object per (depth, pair, test) */
    if (!json) {
        printf("| model | codec K/V | bits/elem | test | t/s (median ± sd) |%s bound t/s | of bound | KV MiB | peak RSS MiB |\n",
               np > 1 ? " vs first |" : "");
        printf("|---|---|---:|---|---:|%s---:|---:|---:|---:|\n", np > 1 ? "---:|" : "");
    }
    int beyond = 0;
    for (int d = 0; d < nd; d++) {
        for (int c = 0; c < np; c++) {
            const struct kvc_bench_cell *cl = &cells[c * nd + d], *c0 = &cells[d];
            int is_beyond = depths[d] + pp + tg > in->n_ctx_train;
            beyond |= is_beyond;
            for (int t = 0; t < 2; t++) {
                const double *v = t ? cl->tg_tps : cl->pp_tps;
                double med = t ? cl->tg_median : cl->pp_median, sd = t ? cl->tg_sd : cl->pp_sd;
                double ratio = med / (t ? c0->tg_median : c0->pp_median);
                double bytes_tok = cl->bytes_per_token; /* decode bound */
                const double bw = cl->bandwidth;
                double bound = cl->bound_tps;
                char test[32];
                snprintf(test, sizeof test, "%s%d", t ? "tg" : "pp", t ? tg : pp);
                if (json) {
                    json_t *o = json_object(), *all = json_array();
                    for (int r = 0; r < reps; r++) json_array_append_new(all, kvc_json_real(v[r], 3));
                    json_object_set_new(o, "model", kvc_json_str(mname));
                    json_object_set_new(o, "kv_k", kvc_json_str(pairs[c].k));
                    json_object_set_new(o, "kv_v", kvc_json_str(pairs[c].v));
                    json_object_set_new(o, "bits_per_element", kvc_json_real(bits[c], 4));
                    json_object_set_new(o, "depth", json_integer(depths[d]));
                    json_object_set_new(o, "test", json_string(test));
                    json_object_set_new(o, "n_tokens", json_integer(t ? tg : pp));
                    json_object_set_new(o, "tps_median", kvc_json_real(med, 3));
                    json_object_set_new(o, "tps_sd", kvc_json_real(sd, 3));
                    json_object_set_new(o, "tps_all", all);
                    json_object_set_new(o, "ratio_vs_first", kvc_json_real(ratio, 4));
                    json_object_set_new(o, "kv_bytes", json_integer((json_int_t)kvb[c]));
                    json_object_set_new(o, "kv_bytes_per_token", kvc_json_real(bpt[c], 1));
                    json_object_set_new(o, "kv_bytes_at_depth", kvc_json_real(bpt[c] * depths[d], 0));
                    json_object_set_new(o, "peak_rss_bytes", json_integer((json_int_t)cl->peak_rss));
                    json_object_set_new(o, "peak_rss_scope", json_string(scoped ? "depth" : "process"));
                    json_object_set_new(o, "reps", json_integer(reps));
                    json_object_set_new(o, "threads", json_integer(p.n_threads));
                    json_object_set_new(o, "mmap", json_boolean(mapped));
                    json_object_set_new(o, "n_ctx", json_integer(p.n_ctx));
                    json_object_set_new(o, "n_ctx_train", json_integer(in->n_ctx_train));
                    json_object_set_new(o, "beyond_trained_ctx", json_boolean(is_beyond));
                    json_object_set_new(o, "kv_sinks", json_integer(p.kv_sinks));
                    json_object_set_new(o, "kv_recent", json_integer(p.kv_recent));
                    json_object_set_new(o, "read_bandwidth_bytes_per_s", json_real(bw));
                    json_object_set_new(o, "bytes_read_per_token", kvc_json_real(t ? bytes_tok : 0.0, 0));
                    json_object_set_new(o, "fill", json_string(filled[c] ? "synthetic" : "real"));
                    json_object_set_new(o, "fill_prefix", json_integer(filled[c] ? fill_prefix : 0));
                    json_object_set_new(o, "max_rss_bytes", json_integer((json_int_t)max_rss));
                    json_object_set_new(o, "bound_tps", t ? kvc_json_real(bound, 3) : json_null());
                    json_object_set_new(o, "fraction_of_bound", t ? kvc_json_real(med / bound, 4) : json_null());
                    json_object_set_new(o, "cpu", kvc_json_str(cpu));
                    json_object_set_new(o, "host_cpus", json_integer(n_cpu));
                    json_array_append_new(rows, o);
                } else {
                    printf("| %s | %s/%s | %.2f | %s @ d%d%s | %.2f ± %.2f |", mname, pairs[c].k, pairs[c].v, bits[c],
                           test, depths[d], is_beyond ? " *" : "", med, sd);
                    if (np > 1) printf(" %.3f |", ratio);
                    if (t) printf(" %.1f | %.0f %% |", bound, 100.0 * med / bound);
                    else printf(" | |");
                    printf(" %.2f | %.1f |\n", kvb[c] / 1048576.0, cl->peak_rss / 1048576.0);
                }
            }
        }
    }
    if (json) {
        if (cli_json_print(rows)) rc = 1;
    } else {
        printf("\n%s (%ld CPUs online); %d repetitions, -t %d, context %d (KV MiB is the cache allocated for it); "
               "weights %s; peak RSS is %s.\n", cpu, n_cpu, reps, p.n_threads, p.n_ctx,
               mapped ? "memory-mapped" : "read into memory (--no-mmap)",
               scoped ? "the process's VmHWM during each depth's tests (weights + buffers + the KV caches of all pairs)"
                      : "the process's lifetime maximum (clear_refs unavailable)");
        printf("bound t/s = read bandwidth / (weights %.1f MiB + KV bytes of depth + tg/2 positions) per decoded token: "
               "the memory-bandwidth limit, with the bandwidth %s; \"of bound\" is the measured median's share of it.\n",
               in->decode_read_bytes / 1048576.0,
               bw_fixed > 0 ? "given by --bandwidth"
                            : "measured (-t threads) over a buffer the size of one token's reads before every repetition, median over repetitions");
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
                    ys[c * nd + d] = cells[c * nd + d].tg_median;
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
done:
    kvc_bench_result_free(&res);
    kvc_model_free(m);
    return rc;
}
