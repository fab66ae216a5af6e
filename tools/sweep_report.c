/* sweep_report.c - the report of `kvcodec sweep` from its finished points: per-setting figures
 * (bits, PPL change, KLD, top-1, pass-key accuracy, decode/prefill speed per depth) gathered from
 * the points' JSON, written as DIR/results.json (jansson), results.csv, report.md (Markdown
 * tables) and the SVG plots pareto.svg, pareto-ppl.svg and speed.svg. */
#include "cli.h"
#include "plot_svg.h"
#include "sweep.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <errno.h>


struct sres {                  /* one setting's figures */
    const struct setting *set;
    char kv_k[KVC_SPEC_MAX], kv_v[KVC_SPEC_MAX], family[64];
    double bits_k, bits_v, bits;
    int is_ref;
    double ppl[MAX_TEXTS], ppl_ch[MAX_TEXTS], kld[MAX_TEXTS], kld99[MAX_TEXTS], top1[MAX_TEXTS];
    double pk;                 /* passkey accuracy */
    const json_t *bench;       /* rows */
};

static int n_depths_of(struct sres *r, int ns, double *dep, int cap) {
    int nd = 0;
    for (int s = 0; s < ns; s++) {
        const json_t *b = r[s].bench;
        for (size_t i = 0; i < json_array_size(b); i++) {
            double d = sweep_jnum(json_array_get(b, i), "depth");
            int seen = 0;
            for (int j = 0; j < nd; j++) seen |= dep[j] == d;
            if (!seen && nd < cap && isfinite(d)) dep[nd++] = d;
        }
    }
    for (int i = 1; i < nd; i++)
        for (int j = i; j > 0 && dep[j - 1] > dep[j]; j--) { double t = dep[j]; dep[j] = dep[j - 1]; dep[j - 1] = t; }
    return nd;
}

static double bench_tps(const json_t *b, double depth, char kind) {
    for (size_t i = 0; i < json_array_size(b); i++) {
        const json_t *row = json_array_get(b, i);
        const char *t = sweep_jstr(row, "test");
        if (t && t[0] == kind && sweep_jnum(row, "depth") == depth) return sweep_jnum(row, "tps_median");
    }
    return NAN;
}

static void md_num(FILE *f, double v, const char *fmt) {
    if (isfinite(v)) fprintf(f, fmt, v);
    else fputs("–", f);
}

static void csv_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, ",%.6g", v);
    else fputs(",", f);
}

/* A text field of results.csv, quoted as RFC 4180 says when it holds a comma, a quote or a line
 * break (codec specs such as pca:bits=3,keys=pair do); lead: write the separator first. */
static void csv_str(FILE *f, const char *v, int lead) {
    if (lead) fputc(',', f);
    if (!strpbrk(v, ",\"\r\n")) {
        fputs(v, f);
        return;
    }
    fputc('"', f);
    for (; *v; v++) {
        if (*v == '"') fputc('"', f);
        fputc(*v, f);
    }
    fputc('"', f);
}

static FILE *open_out(const char *dir, const char *name, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) fprintf(stderr, "kvcodec sweep: error: cannot write %s: %s\n", path, strerror(errno));
    return f;
}

static int write_plot(const char *dir, const char *name, const struct svg_plot *pl, const struct svg_series *s, int ns) {
    char path[4200];
    FILE *f = open_out(dir, name, path, sizeof path);
    if (!f) return -1;
    int r = svg_line_plot(f, pl, s, ns);
    int bad = fclose(f) != 0;
    if (r) {
        unlink(path);
        fprintf(stderr, "kvcodec sweep: %s: nothing to plot (no finished points with these figures)\n", name);
        return 0;
    }
    if (bad) { fprintf(stderr, "kvcodec sweep: error: cannot write %s\n", path); return -1; }
    fprintf(stderr, "kvcodec sweep: wrote %s\n", path);
    return 1;
}

int sweep_write_results(const char *dir, const struct config *cf, const char *model, const char *cfg_path,
                         char **texts, int n_text, struct point *pts, int np, const char *cmdline) {
    int ns = cf->n_set, rc = 0;
    struct sres *R = calloc((size_t)ns, sizeof *R);
    if (!R) return 1;
    char tstem[MAX_TEXTS][96];
    for (int t = 0; t < n_text; t++) sweep_stem_of(texts[t], tstem[t], sizeof tstem[t]);
    for (int s = 0; s < ns; s++) {
        struct sres *r = &R[s];
        r->set = &cf->set[s];
        r->bits_k = r->bits_v = r->bits = r->pk = NAN;
        for (int t = 0; t < MAX_TEXTS; t++) r->ppl[t] = r->ppl_ch[t] = r->kld[t] = r->kld99[t] = r->top1[t] = NAN;
        int sinks = 0, recent = 0;
        for (int i = 0; i < np; i++) {
            struct point *p = &pts[i];
            if (p->set != r->set || !p->have) continue;
            const json_t *v = p->result;
            const json_t *o = json_is_array(v) && json_array_size(v) ? json_array_get(v, 0) : v;
            if (!r->kv_k[0] && sweep_jstr(o, "kv_k")) {
                snprintf(r->kv_k, sizeof r->kv_k, "%s", sweep_jstr(o, "kv_k"));
                snprintf(r->kv_v, sizeof r->kv_v, "%s", sweep_jstr(o, "kv_v") ? sweep_jstr(o, "kv_v") : "");
                sinks = (int)sweep_jnum(o, "kv_sinks");
                recent = (int)sweep_jnum(o, "kv_recent");
            }
            if (isfinite(sweep_jnum(o, "bits_k"))) { r->bits_k = sweep_jnum(o, "bits_k"); r->bits_v = sweep_jnum(o, "bits_v"); }
            if (isfinite(sweep_jnum(o, "bits_per_element"))) r->bits = sweep_jnum(o, "bits_per_element");
            if (!strncmp(p->test, "ppl", 3)) {
                for (int t = 0; t < n_text; t++)
                    if (p->text == texts[t]) {
                        r->ppl[t] = sweep_jnum(v, "ppl");
                        r->ppl_ch[t] = sweep_jnum(v, "ppl_change_pct");
                        r->kld[t] = sweep_jnum(v, "kld_mean");
                        r->kld99[t] = sweep_jnum(v, "kld_p99");
                        r->top1[t] = sweep_jnum(v, "top1_agree");
                    }
            } else if (!strcmp(p->test, "passkey")) {
                r->pk = sweep_jnum(v, "accuracy");
            } else {
                r->bench = v;
            }
        }
        r->is_ref = !strcmp(r->kv_k, "f16") && !strcmp(r->kv_v, "f16") && sinks == 0 && recent == 0;
        if (r->is_ref)
            for (int t = 0; t < n_text; t++)
                if (isfinite(r->ppl[t]) && !isfinite(r->kld[t])) {
                    r->ppl_ch[t] = 0;
                    r->kld[t] = r->kld99[t] = 0;
                    r->top1[t] = 1;
                }
        /* the family: the key codec's name, with its keys= mode (keys before RoPE are a series of their own) */
        const char *k = r->kv_k[0] ? r->kv_k : "?", *km = strstr(k, "keys=");
        size_t fl = strcspn(k, ":"), ml = km ? strcspn(km, ",") : 0;
        snprintf(r->family, sizeof r->family, "%.*s%s%.*s", (int)(fl < 40 ? fl : 40), k, km ? " " : "",
                 (int)(ml < 20 ? ml : 20), km ? km : "");
    }
    double dep[64];
    int nd = n_depths_of(R, ns, dep, 64);
    char path[4200];
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));

    /* results.json */
    json_t *doc = json_object(), *tx = json_array(), *sets = json_array();
    json_object_set_new(doc, "model", json_string(model));
    json_object_set_new(doc, "config", json_string(cfg_path));
    json_object_set_new(doc, "command", json_string(cmdline));
    json_object_set_new(doc, "date", json_string(date));
    for (int t = 0; t < n_text; t++) json_array_append_new(tx, json_string(texts[t]));
    json_object_set_new(doc, "texts", tx);
    for (int s = 0; s < ns; s++) {
        struct sres *r = &R[s];
        json_t *o = json_object(), *pj = json_object();
        json_object_set_new(o, "name", json_string(r->set->name));
        json_object_set_new(o, "args", json_string(r->set->line));
        json_object_set_new(o, "kv_k", json_string(r->kv_k));
        json_object_set_new(o, "kv_v", json_string(r->kv_v));
        json_object_set_new(o, "family", json_string(r->family));
        json_object_set_new(o, "reference", json_boolean(r->is_ref));
        double nums[] = {r->bits_k, r->bits_v, r->bits, r->pk};
        const char *names[] = {"bits_k", "bits_v", "bits_per_element", "passkey_accuracy"};
        for (int i = 0; i < 4; i++) json_object_set_new(o, names[i], isfinite(nums[i]) ? json_real(nums[i]) : json_null());
        for (int i = 0; i < np; i++)
            if (pts[i].set == r->set) json_object_set(pj, pts[i].test, pts[i].have ? pts[i].result : json_null());
        json_object_set_new(o, "points", pj);
        json_array_append_new(sets, o);
    }
    json_object_set_new(doc, "settings", sets);
    snprintf(path, sizeof path, "%s/results.json", dir);
    if (json_dump_file(doc, path, JSON_OUT_FLAGS | JSON_INDENT(1))) {
        fprintf(stderr, "kvcodec sweep: error: writing %s failed\n", path);
        rc = 1;
    } else fprintf(stderr, "kvcodec sweep: wrote %s\n", path);
    json_decref(doc);
    FILE *f;

    /* results.csv */
    if (!(f = open_out(dir, "results.csv", path, sizeof path))) { free(R); return 1; }
    fprintf(f, "setting,kv_k,kv_v,family,bits_k,bits_v,bits_per_element");
    for (int t = 0; t < n_text; t++)
        fprintf(f, ",ppl_%s,ppl_change_pct_%s,kld_mean_%s,kld_p99_%s,top1_%s", tstem[t], tstem[t], tstem[t], tstem[t], tstem[t]);
    fprintf(f, ",passkey_accuracy");
    for (int d = 0; d < nd; d++) fprintf(f, ",tg_tps_d%.0f", dep[d]);
    for (int d = 0; d < nd; d++) fprintf(f, ",pp_tps_d%.0f", dep[d]);
    fprintf(f, "\n");
    for (int s = 0; s < ns; s++) {
        struct sres *r = &R[s];
        csv_str(f, r->set->name, 0);
        csv_str(f, r->kv_k, 1);
        csv_str(f, r->kv_v, 1);
        csv_str(f, r->family, 1);
        csv_num(f, r->bits_k); csv_num(f, r->bits_v); csv_num(f, r->bits);
        for (int t = 0; t < n_text; t++) {
            csv_num(f, r->ppl[t]); csv_num(f, r->ppl_ch[t]); csv_num(f, r->kld[t]); csv_num(f, r->kld99[t]); csv_num(f, r->top1[t]);
        }
        csv_num(f, r->pk);
        for (int d = 0; d < nd; d++) csv_num(f, bench_tps(r->bench, dep[d], 't'));
        for (int d = 0; d < nd; d++) csv_num(f, bench_tps(r->bench, dep[d], 'p'));
        fprintf(f, "\n");
    }
    if (fclose(f)) { fprintf(stderr, "kvcodec sweep: error: writing %s failed\n", path); rc = 1; }
    else fprintf(stderr, "kvcodec sweep: wrote %s\n", path);

    /* report.md */
    if (!(f = open_out(dir, "report.md", path, sizeof path))) { free(R); return 1; }
    const char *mb = strrchr(model, '/');
    mb = mb ? mb + 1 : model;
    fprintf(f, "# KV codec sweep: %s\n\nConfig `%s`, made by `%s` (%s).\n", mb, cfg_path, cmdline, date);
    if (cf->has_ppl) {
        fprintf(f, "Quality: `kvcodec ppl");
        for (int i = 0; i < cf->ppl.n; i++) fprintf(f, " %s", cf->ppl.v[i]);
        fprintf(f, "` with every setting's cache against an f16 cache on the same chunks.\n");
    }
    if (cf->has_passkey) {
        fprintf(f, "Pass-key: `kvcodec passkey");
        for (int i = 0; i < cf->passkey.n; i++) fprintf(f, " %s", cf->passkey.v[i]);
        fprintf(f, "` (accuracy over all depths and trials).\n");
    }
    if (cf->has_bench) {
        fprintf(f, "Speed: `kvcodec bench");
        for (int i = 0; i < cf->bench.n; i++) fprintf(f, " %s", cf->bench.v[i]);
        fprintf(f, "` (tg t/s dN: median decode speed, tokens/s, after N cached tokens; pp t/s dN: the same for "
                   "the prefill batch).\n");
    }
    if (cf->has_bench) { /* where the speed was measured (bench rows name the CPU) */
        char cpus[4][160];
        int nc = 0;
        for (int s = 0; s < ns; s++)
            for (size_t i = 0; i < json_array_size(R[s].bench); i++) {
                const char *c = sweep_jstr(json_array_get(R[s].bench, i), "cpu");
                if (!c) continue;
                char one[160];
                snprintf(one, sizeof one, "%.140s (%.0f CPUs)", c, sweep_jnum(json_array_get(R[s].bench, i), "host_cpus"));
                int seen = 0;
                for (int k = 0; k < nc && !seen; k++) seen = !strcmp(cpus[k], one);
                if (!seen && nc < 4) memcpy(cpus[nc++], one, sizeof one);
            }
        for (int k = 0; k < nc; k++) fprintf(f, "%s%s%s", k ? "; " : "Speed measured on: ", cpus[k], k + 1 == nc ? ".\n" : "");
    }
    if (cf->all.n) {
        fprintf(f, "Every point also got `");
        for (int i = 0; i < cf->all.n; i++) fprintf(f, "%s%s", i ? " " : "", cf->all.v[i]);
        fprintf(f, "`.\n");
    }
    for (int t = 0; t < (n_text ? n_text : 1); t++) {
        if (t == 0) fprintf(f, "\n## Quality%s%s and speed\n\n", n_text ? " on " : "", n_text ? tstem[0] : "");
        else fprintf(f, "\n## Quality on %s\n\n", tstem[t]);
        if (t == 0 && n_text) fprintf(f, "Text: `%s`.\n\n", texts[0]);
        if (t > 0) fprintf(f, "Text: `%s`.\n\n", texts[t]);
        fprintf(f, "| setting | bits/elem K | V | mean |");
        if (n_text) fprintf(f, " PPL | PPL change %% | KLD mean | KLD p99 | top-1 |");
        if (t == 0) {
            if (cf->has_passkey) fprintf(f, " passkey |");
            for (int d = 0; d < nd; d++) fprintf(f, " tg t/s d%.0f |", dep[d]);
        }
        fprintf(f, "\n|---|---:|---:|---:|");
        if (n_text) fprintf(f, "---:|---:|---:|---:|---:|");
        if (t == 0) {
            if (cf->has_passkey) fprintf(f, "---:|");
            for (int d = 0; d < nd; d++) fprintf(f, "---:|");
        }
        fprintf(f, "\n");
        for (int s = 0; s < ns; s++) {
            struct sres *r = &R[s];
            fprintf(f, "| %s%s | ", r->set->name, r->is_ref ? " (reference)" : "");
            md_num(f, r->bits_k, "%.2f");
            fputs(" | ", f);
            md_num(f, r->bits_v, "%.2f");
            fputs(" | ", f);
            md_num(f, r->bits, "%.2f");
            fputs(" |", f);
            if (n_text) {
                fputs(" ", f); md_num(f, r->ppl[t], "%.4f");
                fputs(" | ", f); md_num(f, r->ppl_ch[t], "%+.3f");
                fputs(" | ", f); md_num(f, r->kld[t], "%.5f");
                fputs(" | ", f); md_num(f, r->kld99[t], "%.4f");
                fputs(" | ", f); md_num(f, r->top1[t], "%.4f");
                fputs(" |", f);
            }
            if (t == 0) {
                if (cf->has_passkey) { fputs(" ", f); md_num(f, r->pk, "%.2f"); fputs(" |", f); }
                for (int d = 0; d < nd; d++) { fputs(" ", f); md_num(f, bench_tps(r->bench, dep[d], 't'), "%.1f"); fputs(" |", f); }
            }
            fputs("\n", f);
        }
    }
    if (nd) {
        fprintf(f, "\n## Prefill speed\n\n| setting |");
        for (int d = 0; d < nd; d++) fprintf(f, " pp t/s d%.0f |", dep[d]);
        fprintf(f, "\n|---|");
        for (int d = 0; d < nd; d++) fprintf(f, "---:|");
        fprintf(f, "\n");
        for (int s = 0; s < ns; s++) {
            fprintf(f, "| %s |", R[s].set->name);
            for (int d = 0; d < nd; d++) { fputs(" ", f); md_num(f, bench_tps(R[s].bench, dep[d], 'p'), "%.1f"); fputs(" |", f); }
            fprintf(f, "\n");
        }
    }
    int missing = 0;
    for (int i = 0; i < np; i++) missing += !pts[i].have;
    if (missing) fprintf(f, "\n%d point%s did not finish: their cells show –.\n", missing, missing > 1 ? "s" : "");

    /* plots */
    char fams[MAX_SETTINGS][64];
    int nf = 0;
    for (int s = 0; s < ns; s++) {
        int seen = 0;
        for (int i = 0; i < nf; i++) seen |= !strcmp(fams[i], R[s].family);
        if (!seen) snprintf(fams[nf++], 64, "%s", R[s].family);
    }
    static double xs[MAX_SETTINGS][MAX_SETTINGS], ys[MAX_SETTINGS][MAX_SETTINGS];
    static const char *lb[MAX_SETTINGS][MAX_SETTINGS];
    struct svg_series ser[MAX_SETTINGS];
    int plots = 0;
    for (int which = 0; which < 2 && n_text; which++) {
        for (int i = 0; i < nf; i++) {
            int n = 0;
            for (int s = 0; s < ns; s++) {
                if (strcmp(R[s].family, fams[i])) continue;
                xs[i][n] = R[s].bits;
                ys[i][n] = which ? R[s].ppl_ch[0] : R[s].kld[0];
                lb[i][n] = R[s].set->name;
                n++;
            }
            for (int a = 1; a < n; a++) /* sort by bits */
                for (int b = a; b > 0 && xs[i][b - 1] > xs[i][b]; b--) {
                    double tx = xs[i][b]; xs[i][b] = xs[i][b - 1]; xs[i][b - 1] = tx;
                    double ty = ys[i][b]; ys[i][b] = ys[i][b - 1]; ys[i][b - 1] = ty;
                    const char *tl = lb[i][b]; lb[i][b] = lb[i][b - 1]; lb[i][b - 1] = tl;
                }
            ser[i] = (struct svg_series){fams[i], n, xs[i], ys[i], lb[i], 0};
        }
        char title[256], ylab[128];
        snprintf(title, sizeof title, "%s: %s vs KV size (%s)", mb, which ? "perplexity change" : "KL divergence from f16", tstem[0]);
        snprintf(ylab, sizeof ylab, which ? "PPL change vs f16 cache (%%)" : "mean KL divergence vs f16 cache (nats/token)");
        struct svg_plot pl = {title, "KV cache bits per element (mean of K and V, scales included)", ylab, 0, 0, 1};
        int r = write_plot(dir, which ? "pareto-ppl.svg" : "pareto.svg", &pl, ser, nf);
        if (r < 0) rc = 1;
        plots += r > 0;
        if (r > 0) fprintf(f, "\n![%s](%s)\n", which ? "PPL change vs bits per element" : "KLD vs bits per element",
                           which ? "pareto-ppl.svg" : "pareto.svg");
    }
    if (nd) {
        for (int s = 0; s < ns; s++) {
            for (int d = 0; d < nd; d++) { xs[s][d] = dep[d]; ys[s][d] = bench_tps(R[s].bench, dep[d], 't'); }
            ser[s] = (struct svg_series){R[s].set->name, nd, xs[s], ys[s], NULL, 0};
        }
        char title[256];
        snprintf(title, sizeof title, "%s: decode speed vs cache depth", mb);
        struct svg_plot pl = {title, "cache depth before decoding (tokens)", "decode speed, median (tokens/s)", 0, 0, 1};
        int r = write_plot(dir, "speed.svg", &pl, ser, ns);
        if (r < 0) rc = 1;
        if (r > 0) fprintf(f, "\n![decode speed vs depth](speed.svg)\n");
    }
    if (fclose(f)) { fprintf(stderr, "kvcodec sweep: error: writing report.md failed\n"); rc = 1; }
    else fprintf(stderr, "kvcodec sweep: wrote %s/report.md\n", dir);
    (void)plots;
    free(R);
    return rc;
}
