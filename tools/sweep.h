/* sweep.h - pieces shared by `kvcodec sweep`'s two files: the parsed config (settings and
 * per-test arguments), the points (one subprocess run each, its JSON result held as a jansson
 * value), and the report writer (sweep_report.c: results.json/.csv, report.md, SVG plots). */
#ifndef KVC_SWEEP_H
#define KVC_SWEEP_H

#include <jansson.h>
#include <stddef.h>

#define MAX_SETTINGS 64
#define MAX_TEXTS 4
#define MAX_ARGS 48

#define JSON_OUT_FLAGS (JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

struct arglist {
    int n;
    char *v[MAX_ARGS];
};

struct setting {
    char name[64];
    char line[512];           /* its arguments as written */
    struct arglist args;
};

struct config {
    char *model;
    int n_text;
    char *text[MAX_TEXTS];
    int has_ppl, has_passkey, has_bench;
    struct arglist ppl, passkey, bench, all;
    int n_set;
    struct setting set[MAX_SETTINGS];
};

struct point {
    const struct setting *set;
    char test[96];            /* ppl-STEM, passkey, bench */
    const char *text;         /* ppl only */
    int argc;
    char *argv[2 * MAX_ARGS + 16];
    char path[4400], log[4400];
    json_t *result;           /* the subprocess's JSON, once done */
    int have;
};

/* Number field k of object o, NaN when missing or not a number; string field or NULL. */
double sweep_jnum(const json_t *o, const char *k);
const char *sweep_jstr(const json_t *o, const char *k);
/* File-name stem of a text path ("wikitext-2-test" for ../x/wikitext-2-test.raw). */
void sweep_stem_of(const char *path, char *out, size_t cap);
/* Write DIR/results.json, results.csv, report.md and the plots from the finished points. */
int sweep_write_results(const char *dir, const struct config *cf, const char *model, const char *cfg_path,
                        char **texts, int n_text, struct point *pts, int np, const char *cmdline);

#endif
