/* cmd_tune.c - `kvcodec tune`: choose a KV cache setting under a budget of bits per element
 * on a held-out slice of a calibration text (src/eval/tune.c) and write it as a preset
 * (--kv-preset FILE). Progress on stderr; the table of candidates on stdout (or --json). */
#include "cli.h"
#include "eval/tune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f) {
    int n;
    const struct kvc_tune_row *rows = kvc_tune_rows(&n);
    fprintf(f,
            "usage: kvcodec tune [-m MODEL] -f CALIB_TEXT --bits B -o FILE [-c CTX] [-t N]\n"
            "                    [--calib-tokens N] [--heldout N] [--kv-calib FILE] [--all] [--json]\n\n"
            "Chooses a KV cache setting that costs at most B bits per element and writes it as a\n"
            "preset FILE (the calibration plus the setting; use it with --kv-preset FILE).\n"
            "  1. The calibration text is split: the last N chunks of CTX tokens are held out, the\n"
            "     rest is the fit part. The model is calibrated (attention metric, as `kvcodec\n"
            "     calibrate`) on the first --calib-tokens tokens of the fit part.\n"
            "  2. Every row of the candidate table below is sized to the budget: the codec bits are\n"
            "     the largest (steps of 1/16) whose cache costs <= B bits per element at CTX, counted\n"
            "     as the cache allocates it (codec rows, per-row scales, sink and recent rows in their\n"
            "     window codec, f16 unless the row says q8_0; the\n"
            "     calibration itself is a per-model constant and not counted). {b} marks the sized\n"
            "     bits; K gets b - split, V b + split.\n"
            "  3. Each sized setting runs the held-out chunks; its score is the mean KL divergence of\n"
            "     its next-token distribution from the f16 cache's over the second half of each chunk\n"
            "     (as `kvcodec ppl --compare`). The lowest mean KLD wins, except that a winner whose\n"
            "     hdc values shrink (scale=norm|ls|rms: every attention output biased toward 0, a\n"
            "     PPL cost the held-out KLD does not show) gives way to the best candidate with\n"
            "     unbiased values whose KLD it does not beat by 2 paired standard errors.\n"
            "Use a calibration text, never an evaluation text (the held-out slice is calibration\n"
            "text too).\n\n"
            "  -m, --model FILE      GGUF model (default: models/kvref-q4_0.gguf)\n"
            "  -f, --file TEXT       calibration text\n"
            "  --bits B              budget: bits per element at CTX (e.g. 3 or 3.5)\n"
            "  -o, --output FILE     preset to write\n"
            "  -c, --ctx-size N      target context: bits are counted and chunks scored at N (default 2048)\n"
            "  -b, --batch-size N    tokens per forward call (default 512)\n"
            "  -t, --threads N       threads (default 2)\n"
            "  --calib-tokens N      tokens to calibrate on (default 65536; fewer if the fit part is shorter)\n"
            "  --heldout N           held-out chunks of CTX tokens at the end of the text (default 2)\n"
            "  --kv-calib FILE       skip calibrating: use FILE, fitted on this text's first tokens\n"
            "                        (refused when it saw more tokens than the fit part holds)\n"
            "  --metric M            calibration metric: attn (default), keys, values, plain\n"
            "  --all                 also the rows not marked fast (keys=pre: each key rebuilt per query\n"
            "                        head, ~0.15x the f16 cache's decode at 16K); by default only the\n"
            "                        fast rows are scored (O(d) work per key row, shared by the query\n"
            "                        heads; kvref at 16K: 1.5-1.8x f16's decode at -t 1, 1.3-1.5x at -t 2)\n"
            "  --rows A,B,...        only the named rows of the table (fast or not)\n"
            "  --time-limit S        rows not started after S seconds are skipped (default 1440)\n"
            "  --json                the candidates and the choice as one JSON object on stdout\n"
            "  -q, --quiet           no progress on stderr\n\n"
            "candidate table (name: K / V, sinks, recent[ in q8_0], split[, fast][, per-layer bits]):\n"
            "per-layer bits: pca bits={b} becomes layers=B0/B1/... of the same mean, bits moved to the\n"
            "layers whose calibrated distortion (attention metric; 'rel': relative to the layer's\n"
            "variance) drops most per bit; per-head bits: heads=... the same per (layer, KV head).\n");
    for (int i = 0; i < n; i++)
        fprintf(f, "  %-14s %s / %s, %d, %d%s%s, %.2f%s%s\n", rows[i].name, rows[i].k, rows[i].v, rows[i].sinks,
                rows[i].recent, rows[i].window ? " in " : "", rows[i].window ? rows[i].window : "", rows[i].split,
                rows[i].fast ? ", fast" : "",
                rows[i].alloc == 1   ? ", per-layer bits"
                : rows[i].alloc == 2 ? ", per-layer bits (rel)"
                : rows[i].alloc == 3 ? ", per-head bits"
                                     : "");
}

static void on_progress(void *user, const char *line) {
    (void)user;
    fprintf(stderr, "kvcodec tune: %s\n", line);
    fflush(stderr);
}

static int print_json(const struct kvc_tune_result *r, double bits, const char *out) {
    json_t *o = json_object(), *arr = json_array();
    json_object_set_new(o, "budget_bits", kvc_json_real(bits, 4));
    json_object_set_new(o, "output", kvc_json_str(out));
    json_object_set_new(o, "n_tokens_text", json_integer(r->n_tokens_text));
    json_object_set_new(o, "n_fit", json_integer(r->n_fit));
    json_object_set_new(o, "n_heldout_scored", json_integer(r->n_heldout_scored));
    json_object_set_new(o, "base_ppl", kvc_json_real(r->base_ppl, 6));
    json_object_set_new(o, "seconds", kvc_json_real(r->seconds, 1));
    for (int i = 0; i < r->n_cand; i++) {
        const struct kvc_tune_cand *c = &r->cand[i];
        json_t *x = json_object();
        json_object_set_new(x, "name", kvc_json_str(c->name));
        json_object_set_new(x, "scored", json_boolean(c->scored));
        json_object_set_new(x, "kv_k", kvc_json_str(c->kv_k));
        json_object_set_new(x, "kv_v", kvc_json_str(c->kv_v));
        json_object_set_new(x, "sinks", json_integer(c->sinks));
        json_object_set_new(x, "recent", json_integer(c->recent));
        json_object_set_new(x, "window", kvc_json_str(c->window));
        json_object_set_new(x, "fast", json_boolean(c->fast));
        json_object_set_new(x, "bits_per_element", kvc_json_real(c->bits, 4));
        json_object_set_new(x, "kld_mean", kvc_json_real(c->scored ? c->kld_mean : NAN, 6));
        json_object_set_new(x, "kld_p99", kvc_json_real(c->scored ? c->kld_p99 : NAN, 6));
        json_object_set_new(x, "top1_agree", kvc_json_real(c->scored ? c->top1 : NAN, 4));
        json_object_set_new(x, "ppl_change_pct", kvc_json_real(c->scored ? c->ppl_change_pct : NAN, 3));
        json_object_set_new(x, "seconds", kvc_json_real(c->seconds, 1));
        json_array_append_new(arr, x);
    }
    json_object_set_new(o, "candidates", arr);
    json_object_set_new(o, "best", json_integer(r->best));
    json_object_set_new(o, "lowest_kld_shrinking_values", json_integer(r->tie_from)); /* -1: best has the lowest KLD */
    return cli_json_print(o);
}

int cmd_tune(int argc, char **argv) {
    struct args a = {argc, 1, argv, "tune"};
    struct kvc_tune_opts o;
    kvc_tune_opts_default(&o);
    o.time_limit = 1440;
    const char *model = NULL, *file = NULL, *outp = NULL, *metric = NULL;
    int json = 0, quiet = 0, calib_tokens = 0;
    double bits = 0;
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        if (arg_str(&a, "-m", "--model", &model) || arg_str(&a, "-f", "--file", &file) ||
            arg_str(&a, "-o", "--output", &outp) || arg_str(&a, "--kv-calib", NULL, &o.calib_path) ||
            arg_str(&a, "--metric", NULL, &metric) || arg_str(&a, "--rows", NULL, &o.row_names) || arg_dbl(&a, "--bits", 0.01, 16, &bits) ||
            arg_int(&a, "-c", "--ctx-size", 8, 1 << 20, &o.n_ctx) || arg_int(&a, "-b", "--batch-size", 1, 1 << 16, &o.n_batch) ||
            arg_int(&a, "-t", "--threads", 1, 256, &o.n_threads) ||
            arg_int(&a, "--calib-tokens", NULL, 2, 1 << 30, &calib_tokens) ||
            arg_int(&a, "--heldout", NULL, 1, 1000, &o.heldout_chunks) ||
            arg_dbl(&a, "--time-limit", 0, 1e7, &o.time_limit))
            continue;
        if (arg_flag(&a, "--all")) { o.fast_only = 0; continue; }
        if (arg_flag(&a, "--fast"))
            return usage_error(a.cmd, "--fast is the default now (only the rows marked fast); --all adds the others");
        if (arg_flag(&a, "--json")) { json = 1; continue; }
        if (arg_flag(&a, "-q") || arg_flag(&a, "--quiet")) { quiet = 1; continue; }
        return arg_unknown(&a);
    }
    if (!file) return usage_error(a.cmd, "-f CALIB_TEXT is required (a calibration text, never an evaluation text)");
    if (!outp) return usage_error(a.cmd, "-o FILE is required (where to write the preset)");
    if (!(bits > 0)) return usage_error(a.cmd, "--bits B is required (bits per element at -c CTX)");
    o.bits = bits;
    if (calib_tokens) o.calib_tokens = calib_tokens;
    if (metric) {
        if (strcmp(metric, "attn") == 0) o.metric = 3;
        else if (strcmp(metric, "keys") == 0) o.metric = 1;
        else if (strcmp(metric, "values") == 0) o.metric = 2;
        else if (strcmp(metric, "plain") == 0) o.metric = 0;
        else return usage_error(a.cmd, "--metric %s: expected attn, keys, values or plain", metric);
    }
    o.text_name = file;
    if (!quiet) o.progress = on_progress;
    size_t len;
    char *text = read_file(a.cmd, file, &len);
    if (!text) return 1;
    kvc_model *m;
    if (load_model(a.cmd, model, 0, &m)) {
        free(text);
        return 1;
    }
    kvc_error e = {0};
    struct kvc_tune_result r;
    int rc = 0;
    if (kvc_tune(m, text, len, &o, outp, &r, &e)) rc = lib_error(a.cmd, &e);
    else if (json) rc = print_json(&r, bits, outp) ? 1 : 0;
    else {
        printf("%-22s %-26s %-26s %3s %4s %-4s %6s %9s %8s %6s %8s\n", "row", "K", "V", "S", "R", "win", "bits", "KLD",
               "p99", "top-1", "dPPL%");
        for (int i = 0; i < r.n_cand; i++) {
            const struct kvc_tune_cand *c = &r.cand[i];
            if (!c->scored) continue;
            printf("%-22s %-26s %-26s %3d %4d %-4s %6.3f %9.5f %8.4f %6.4f %+8.2f%s\n", c->name, c->kv_k, c->kv_v,
                   c->sinks, c->recent, c->window, c->bits, c->kld_mean, c->kld_p99, c->top1, c->ppl_change_pct,
                   i == r.best ? "  <- chosen" : i == r.tie_from ? "  <- lowest KLD, values shrink (tie)" : "");
        }
        const struct kvc_tune_cand *b = &r.cand[r.best];
        printf("kvcodec tune: wrote %s: K %s, V %s, sinks %d, recent %d in %s, %.3f bits/element at -c %d (%.0f s)\n",
               outp, b->kv_k, b->kv_v, b->sinks, b->recent, b->window, b->bits, o.n_ctx, r.seconds);
    }
    kvc_tune_result_free(&r);
    kvc_model_free(m);
    free(text);
    return rc;
}
