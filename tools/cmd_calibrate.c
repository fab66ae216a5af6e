/* cmd_calibrate.c - `kvcodec calibrate`: run a model over a calibration text, gather per
 * (layer, KV head) statistics of keys before and after RoPE and of values, fit principal
 * bases and quantizer steps, and write them to a calibration file for the pca codec
 * (--kv-calib). --report prints how many principal components each layer needs for 50 / 90 /
 * 95 / 99 % of the variance and draws the explained-variance curves (--plot FILE.svg). */
#include "cli.h"
#include "kv/calib.h"
#include "kv/calib_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec calibrate [-m MODEL] -f TEXT -o FILE [--tokens N] [-c CTX] [-t N] [--report]\n"
            "       kvcodec calibrate --report -i FILE [-m MODEL] [--plot FILE.svg]\n\n"
            "Runs the model over TEXT in chunks of CTX tokens (BOS first when the vocabulary adds\n"
            "BOS, as ppl's chunks) and fits, for every layer\n"
            "and KV head, the mean, principal directions and eigenvalues of the keys before RoPE,\n"
            "the keys after RoPE and the values (float64 sums, LAPACK dsyevd), and per-coefficient\n"
            "quantizer steps for pca:bits=B. The file (GGUF) names the model it belongs to; use it\n"
            "with --kv-k pca:... --kv-v pca:... --kv-calib FILE. Calibrate on a calibration text\n"
            "(../shared/text/calib.txt), never on an evaluation file.\n"
            "  -m, --model FILE     GGUF model (default: models/kvref-q4_0.gguf); the f16 and q4_0\n"
            "                       files of one model share a calibration\n"
            "  -f, --file TEXT      calibration text\n"
            "  -o, --output FILE    calibration file to write\n"
            "  --tokens N           tokens to run (default 131072; fewer if the text is shorter)\n"
            "  -c, --ctx-size N     chunk length (default 2048)\n"
            "  -b, --batch-size N   tokens per forward call (default 512)\n"
            "  -t, --threads N      threads (default 2)\n"
            "  --samples N          rows kept per (layer, head, kind) to fit quantizer steps (default 4096)\n"
            "  --metric M           attn (default): keys before RoPE weighted by the query energy per\n"
            "                       RoPE pair and values by the output projection; keys / values: one\n"
            "                       of the two; plain: plain PCA\n"
            "  --report             print the ranks needed for 50/90/95/99 %% of the variance per layer\n"
            "  -i, --input FILE     report on an existing calibration file (with --report)\n"
            "  --plot FILE.svg      with --report: draw cumulative explained variance vs rank, one\n"
            "                       line per layer, panels K pre-RoPE / K post-RoPE / V\n"
            "  -q, --quiet          no progress on stderr\n");
}

/* ---- progress (drawn from the library's callback) ---- */

struct progress {
    double last;
    int tty, quiet;
    const char *file;
    uint64_t tokens;
    int n_ctx;
    const struct kvc_model_info *in;
};

static void on_progress(void *user, const struct kvc_calibrate_progress *pr) {
    struct progress *p = user;
    if (p->quiet) return;
    if (pr->done == 0) { /* tokenized */
        fprintf(stderr, "kvcodec calibrate: %s: %lld tokens, running %lld in chunks of %d (%s, %d layers x %d KV heads "
                        "x dim %d)\n",
                p->file, (long long)pr->n_tokens_text, (long long)pr->total, p->n_ctx, p->in->name, p->in->n_layer,
                p->in->n_head_kv, p->in->head_dim);
        if ((int64_t)p->tokens > pr->n_tokens_text)
            fprintf(stderr, "kvcodec calibrate: the text has fewer tokens than --tokens %llu; using all %lld\n",
                    (unsigned long long)p->tokens, (long long)pr->n_tokens_text);
        return;
    }
    double el = pr->seconds;
    int final = pr->done >= pr->total;
    if (!final && el - p->last < (p->tty ? 0.5 : 10.0)) return;
    p->last = el;
    double rate = el > 0 ? pr->done / el : 0, eta = rate > 0 ? (pr->total - pr->done) / rate : 0;
    fprintf(stderr, "%skvcodec calibrate: %lld / %lld tokens (%.1f %%), %.0f tokens/s, ETA %.0f s%s",
            p->tty ? "\r" : "", (long long)pr->done, (long long)pr->total, 100.0 * pr->done / pr->total, rate, eta,
            p->tty && !final ? "   " : "\n");
    fflush(stderr);
}

/* ---- report ---- */

static const char *const kind_title[KVC_CALIB_NKIND] = {"K pre-RoPE", "K post-RoPE", "V"};

/* Smallest rank whose cumulative share reaches p. */
static int rank_for(const double *cum, int d, double p) {
    for (int r = 0; r < d; r++)
        if (cum[r] >= p - 1e-12) return r + 1;
    return d;
}

/* Mean over KV heads of the cumulative explained variance of (layer, kind): cum (d). */
static void layer_curve(const struct kvc_calib *c, int l, int k, double *out) {
    int d = c->id.head_dim;
    double *cum = malloc((size_t)d * sizeof *cum);
    for (int r = 0; r < d; r++) out[r] = 0;
    if (!cum) return;
    for (int h = 0; h < c->id.n_head_kv; h++) {
        kvc_calib_explained(kvc_calib_slot_get(c, l, h, k), d, cum);
        for (int r = 0; r < d; r++) out[r] += cum[r] / c->id.n_head_kv;
    }
    free(cum);
}

static void print_report(const struct kvc_calib *c, const char *path) {
    const struct kvc_calib_id *id = &c->id;
    int d = id->head_dim, L = id->n_layer, H = id->n_head_kv;
    static const double share[4] = {0.50, 0.90, 0.95, 0.99};
    printf("calibration %s: model '%s' (%s, %d layers x %d KV heads x head dim %d), text '%s', %llu tokens "
           "in chunks of %d\n",
           path, c->model_name, id->arch, L, H, d, c->text, (unsigned long long)c->n_tokens, c->n_ctx);
    printf("rank needed for a share of the variance (mean over the %d KV heads of each layer; head dim %d)\n", H, d);
    printf("%-6s", "");
    for (int k = 0; k < KVC_CALIB_NKIND; k++) printf(" | %-27s", kind_title[k]);
    printf("\n%-6s", "layer");
    for (int k = 0; k < KVC_CALIB_NKIND; k++) printf(" | %6s %6s %6s %6s", "50%", "90%", "95%", "99%");
    printf("\n");
    double *cum = malloc((size_t)d * sizeof *cum);
    if (!cum) return;
    double tot[KVC_CALIB_NKIND][4] = {{0}};
    int maxr[KVC_CALIB_NKIND][4] = {{0}};
    for (int l = 0; l < L; l++) {
        printf("%-6d", l);
        for (int k = 0; k < KVC_CALIB_NKIND; k++) {
            printf(" |");
            for (int s = 0; s < 4; s++) {
                double m = 0;
                for (int h = 0; h < H; h++) {
                    kvc_calib_explained(kvc_calib_slot_get(c, l, h, k), d, cum);
                    int r = rank_for(cum, d, share[s]);
                    m += (double)r / H;
                    if (r > maxr[k][s]) maxr[k][s] = r;
                }
                tot[k][s] += m / L;
                printf(" %6.1f", m);
            }
        }
        printf("\n");
    }
    printf("%-6s", "mean");
    for (int k = 0; k < KVC_CALIB_NKIND; k++) {
        printf(" |");
        for (int s = 0; s < 4; s++) printf(" %6.1f", tot[k][s]);
    }
    printf("\n%-6s", "max");
    for (int k = 0; k < KVC_CALIB_NKIND; k++) {
        printf(" |");
        for (int s = 0; s < 4; s++) printf(" %6d", maxr[k][s]);
    }
    printf("\n");
    printf("pca:var=X stores rows of max=R coefficients (default: the head dim); for var=0.99 the largest\n"
           "per-head rank is %d (K pre-RoPE), %d (K post-RoPE), %d (V): e.g. --kv-k pca:var=0.99,max=%d "
           "(keys=pre: max=%d) --kv-v pca:var=0.99,max=%d\n",
           maxr[0][3], maxr[1][3], maxr[2][3], maxr[1][3], maxr[0][3], maxr[2][3]);
    free(cum);
}

/* One SVG with three panels (K pre-RoPE, K post-RoPE, V): cumulative explained variance
 * (mean over KV heads) against rank, one line per layer. */
static int write_plot(const struct kvc_calib *c, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "kvcodec calibrate: error: %s: cannot create\n", path);
        return 1;
    }
    int d = c->id.head_dim, L = c->id.n_layer;
    const int pw = 360, ph = 300, ml = 60, mt = 56, mb = 50, gap = 30, lw = 110;
    int W = KVC_CALIB_NKIND * (ml + pw + gap) + lw, Ht = mt + ph + mb;
    double *curve = malloc((size_t)d * sizeof *curve);
    if (!curve) { fclose(f); return 1; }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, Ht + 20, W, Ht + 20);
    fprintf(f, "<text x=\"%d\" y=\"18\" font-size=\"14\" text-anchor=\"middle\">Cumulative explained variance vs "
               "rank (mean over KV heads) - %s, %llu calibration tokens</text>\n",
            W / 2, c->model_name[0] ? c->model_name : c->id.arch, (unsigned long long)c->n_tokens);
    /* rank ticks: a step giving about 8 ticks */
    int step = 1;
    while (d / step > 8) step = step == 1 ? 2 : step == 2 ? 4 : step == 4 ? 8 : step * 2;
    for (int k = 0; k < KVC_CALIB_NKIND; k++) {
        int x0 = k * (ml + pw + gap) + ml, y0 = mt;
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"13\" text-anchor=\"middle\">%s</text>\n", x0 + pw / 2,
                y0 - 8, kind_title[k]);
        for (int t = 0; t <= 10; t += 2) { /* y grid 0, 0.2, ..., 1 */
            double y = y0 + ph - ph * t / 10.0;
            fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0, y, x0 + pw, y);
            fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n", x0 - 5, y + 4, t / 10.0);
        }
        for (int r = 0; r <= d; r += step) {
            double x = x0 + pw * (double)r / d;
            fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#eee\"/>\n", x, y0, x, y0 + ph);
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", x, y0 + ph + 16, r);
        }
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\"/>\n", x0, y0,
                pw, ph);
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">rank (principal components kept)</text>\n",
                x0 + pw / 2, y0 + ph + 36);
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 %d %d)\">share of "
                   "variance explained</text>\n",
                x0 - 42, y0 + ph / 2, x0 - 42, y0 + ph / 2);
        for (int l = 0; l < L; l++) {
            layer_curve(c, l, k, curve);
            double hue = L > 1 ? 300.0 * l / (L - 1) : 0;
            fprintf(f, "<polyline fill=\"none\" stroke=\"hsl(%.0f,75%%,42%%)\" stroke-width=\"1.5\" points=\"%d,%d",
                    hue, x0, y0 + ph);
            for (int r = 0; r < d; r++)
                fprintf(f, " %.1f,%.1f", x0 + pw * (double)(r + 1) / d, y0 + ph - ph * curve[r]);
            fprintf(f, "\"/>\n");
        }
    }
    int lx = KVC_CALIB_NKIND * (ml + pw + gap) + 5;
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-weight=\"bold\">layer</text>\n", lx, mt + 10);
    for (int l = 0; l < L; l++) {
        double hue = L > 1 ? 300.0 * l / (L - 1) : 0;
        int y = mt + 28 + 16 * l;
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"hsl(%.0f,75%%,42%%)\" stroke-width=\"2\"/>\n",
                lx, y - 4, lx + 24, y - 4, hue);
        fprintf(f, "<text x=\"%d\" y=\"%d\">%d</text>\n", lx + 30, y, l);
    }
    fprintf(f, "</svg>\n");
    free(curve);
    int bad = ferror(f);
    if (fclose(f) != 0) bad = 1;
    if (bad) {
        fprintf(stderr, "kvcodec calibrate: error: %s: write error\n", path);
        return 1;
    }
    return 0;
}

int cmd_calibrate(int argc, char **argv) {
    struct args a = {argc, 1, argv, "calibrate"};
    const char *model = NULL, *file = NULL, *outp = NULL, *inp = NULL, *plot = NULL;
    int report = 0, quiet = 0, n_ctx = 2048, n_batch = 512, n_threads = 2, samples = 4096, metric = 3;
    const char *metric_s = NULL;
    uint64_t tokens = 131072;
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        if (arg_str(&a, "-m", "--model", &model) || arg_str(&a, "-f", "--file", &file) ||
            arg_str(&a, "-o", "--output", &outp) || arg_str(&a, "-i", "--input", &inp) ||
            arg_str(&a, "--plot", NULL, &plot) || arg_str(&a, "--metric", NULL, &metric_s) || arg_int(&a, "-c", "--ctx-size", 2, 1 << 24, &n_ctx) ||
            arg_int(&a, "-b", "--batch-size", 1, 65536, &n_batch) || arg_int(&a, "-t", "--threads", 1, 256, &n_threads) ||
            arg_int(&a, "--samples", NULL, 0, 1 << 20, &samples) || arg_u64(&a, "--tokens", &tokens))
            continue;
        if (arg_flag(&a, "--report")) { report = 1; continue; }
        if (arg_flag(&a, "-q") || arg_flag(&a, "--quiet")) { quiet = 1; continue; }
        return arg_unknown(&a);
    }
    if (plot && !report) return usage_error(a.cmd, "--plot needs --report");
    if (metric_s) {
        if (strcmp(metric_s, "attn") == 0) metric = 3;
        else if (strcmp(metric_s, "keys") == 0) metric = 1;
        else if (strcmp(metric_s, "values") == 0) metric = 2;
        else if (strcmp(metric_s, "plain") == 0) metric = 0;
        else return usage_error(a.cmd, "--metric %s: expected attn, keys, values or plain", metric_s);
    }
    kvc_error e = {0};
    if (inp) { /* report on an existing file */
        if (file || outp) return usage_error(a.cmd, "-i FILE reports on an existing file; it does not take -f or -o");
        if (!report) return usage_error(a.cmd, "-i FILE needs --report");
        struct kvc_calib *c;
        if (model) {
            kvc_model *m;
            if (load_model(a.cmd, model, 0, &m)) return 1;
            kvc_status st = kvc_calib_load(inp, m, &c, &e);
            kvc_model_free(m);
            if (st) return lib_error(a.cmd, &e);
        } else if (kvc_calib_load_file(inp, &c, &e)) {
            return lib_error(a.cmd, &e);
        }
        print_report(c, inp);
        int rc = plot ? write_plot(c, plot) : 0;
        if (!rc && plot) fprintf(stderr, "kvcodec calibrate: wrote %s\n", plot);
        kvc_calib_free(c);
        return rc;
    }
    if (!file) return usage_error(a.cmd, "-f TEXT is required (the calibration text, e.g. ../shared/text/calib.txt)");
    if (!outp) return usage_error(a.cmd, "-o FILE is required (where to write the calibration)");
    if (tokens < 2 || tokens > (1ull << 40)) return usage_error(a.cmd, "--tokens %llu outside 2..2^40", (unsigned long long)tokens);
    size_t len;
    char *text = read_file(a.cmd, file, &len);
    if (!text) return 1;
    kvc_model *m;
    if (load_model(a.cmd, model, 0, &m)) { free(text); return 1; }
    int rc = 0;
    struct kvc_calib *c = NULL;
    struct kvc_calibrate_params p = kvc_calibrate_default_params();
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.n_threads = n_threads;
    p.max_tokens = (int64_t)tokens;
    p.sample_rows = samples;
    p.metric = metric;
    const char *base = strrchr(file, '/');
    p.text_name = base ? base + 1 : file;
    struct progress pr = {0, isatty(2), quiet, file, tokens, n_ctx, kvc_model_get_info(m)};
    p.progress = on_progress;
    p.user = &pr;
    struct kvc_calibrate_result r;
    if (kvc_calibrate(m, text, len, outp, &p, &r, &e)) { rc = lib_error(a.cmd, &e); goto done; }
    if (!quiet)
        fprintf(stderr, "kvcodec calibrate: wrote %s (%lld tokens, %.1f s)\n", outp, (long long)r.n_tokens, r.seconds);
    if (report) {
        if (kvc_calib_load_file(outp, &c, &e)) { rc = lib_error(a.cmd, &e); goto done; }
        print_report(c, outp);
        if (plot) {
            rc = write_plot(c, plot);
            if (!rc) fprintf(stderr, "kvcodec calibrate: wrote %s\n", plot);
        }
    }
done:
    kvc_calib_free(c);
    free(text);
    kvc_model_free(m);
    return rc;
}
