/* cmd_sweep.c - `kvcodec sweep`: reads the config, runs ppl and passkey for every codec setting
 * in this process through the library (the commands' flag parsing, kvc_perplexity /
 * kvc_passkey) and bench as a subprocess of this binary (its peak RSS is per process), saves
 * each finished point as DIR/points/NAME-TEST.json (a re-run with --resume skips them), then
 * has sweep_report.c write DIR/results.json, results.csv, report.md and the SVG plots. */
#include "cli.h"
#include "sweep.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec sweep [-m MODEL] [-f TEXT ...] --config FILE --out DIR [--resume | --force] [-t N]\n\n"
            "Runs ppl (quality vs an f16 cache), passkey and bench for every codec setting of FILE (ppl and\n"
            "passkey in this process through the library, bench as a subprocess of this binary so its peak\n"
            "RSS is its own); every finished point is saved as DIR/points/NAME-TEST.json (its log as .log).\n"
            "Then writes DIR/results.json, DIR/results.csv, DIR/report.md (Markdown tables) and the SVG plots\n"
            "DIR/pareto.svg (mean KLD vs bits per element, one series per codec family),\n"
            "DIR/pareto-ppl.svg (PPL change %% vs bits) and DIR/speed.svg (decode t/s vs depth per setting).\n"
            "  --config FILE        the sweep configuration (format below)\n"
            "  --out DIR            output directory (created if missing)\n"
            "  --resume             keep finished points in DIR and run only the missing or failed ones (a point\n"
            "                       whose command line changed in the config is run again)\n"
            "  --force              run every point again, overwriting DIR's points\n"
            "                       (without either, a DIR that already holds points is refused)\n"
            "  -m, --model FILE     model for every point (overrides the config's model: line)\n"
            "  -f, --file TEXT      text for ppl (repeatable, at most %d; overrides the config's text: lines)\n"
            "  -t, --threads N      threads for every point (appended to each point's arguments as -t N)\n"
            "  --report-only        do not run anything: write the results from the points in DIR\n\n"
            "Config format, one item per line, '#' starts a comment:\n"
            "  model: PATH                       model (unless -m is given)\n"
            "  text: PATH                        a ppl text (up to %d lines; unless -f is given)\n"
            "  ppl: ARGS                         arguments of every ppl point, e.g. -c 2048 --chunks 4\n"
            "  passkey: ARGS                     e.g. -c 2048 --trials 5 (no line: no passkey points)\n"
            "  bench: ARGS                       e.g. --depths 0,2048,4096 -r 3 (no line: no bench points)\n"
            "  all: ARGS                         appended to every point, e.g. -t 2\n"
            "  NAME: --kv-k SPEC --kv-v SPEC [--kv-sinks N] [--kv-recent N] [--kv-calib FILE]\n"
            "                                    one codec setting (NAME: letters, digits, _ . + -)\n"
            "Arguments are split at blanks (no quoting). Paths are relative to the current directory.\n"
            "A setting's family (the pareto series) is its key codec's name before ':' (plus keys=MODE if given). The f16/f16 setting\n"
            "without sinks/recent is the reference: its PPL change and KLD are 0 by definition.\n",
            MAX_TEXTS, MAX_TEXTS);
}

/* ------------------------------------------------------------------ JSON (jansson) */

double sweep_jnum(const json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}
const char *sweep_jstr(const json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

/* ------------------------------------------------------------------ config */

static int split_args(const char *s, struct arglist *a) {
    a->n = 0;
    while (*s) {
        while (*s == ' ' || *s == '\t') s++;
        if (!*s) break;
        const char *b = s;
        while (*s && *s != ' ' && *s != '\t') s++;
        if (a->n == MAX_ARGS) return -1;
        a->v[a->n] = strndup(b, (size_t)(s - b));
        if (!a->v[a->n]) return -1;
        a->n++;
    }
    return 0;
}

static void free_args(struct arglist *a) {
    for (int i = 0; i < a->n; i++) free(a->v[i]);
    a->n = 0;
}

static void free_config(struct config *c) {
    free(c->model);
    for (int i = 0; i < c->n_text; i++) free(c->text[i]);
    free_args(&c->ppl);
    free_args(&c->passkey);
    free_args(&c->bench);
    free_args(&c->all);
    for (int i = 0; i < c->n_set; i++) free_args(&c->set[i].args);
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t l = strlen(s);
    while (l && (s[l - 1] == ' ' || s[l - 1] == '\t' || s[l - 1] == '\r' || s[l - 1] == '\n')) s[--l] = 0;
    return s;
}

/* Returns 0, or 2 after printing "kvcodec sweep: FILE:LINE: ..." */
static int load_config(const char *path, struct config *c) {
    size_t len;
    char *raw = read_file("sweep", path, &len);
    if (!raw) return 1;
    char *buf = malloc(len + 1); /* read_file does not terminate the text */
    if (!buf) { free(raw); fprintf(stderr, "kvcodec sweep: error: out of memory\n"); return 1; }
    memcpy(buf, raw, len);
    buf[len] = 0;
    free(raw);
    memset(c, 0, sizeof *c);
    int ln = 0, rc = 0;
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        ln++;
        char *hash = strchr(line, '#');
        if (hash && (hash == line || hash[-1] == ' ' || hash[-1] == '\t')) *hash = 0;
        char *s = trim(line);
        if (!*s) continue;
        char *colon = strchr(s, ':');
        if (!colon) { fprintf(stderr, "kvcodec sweep: %s:%d: expected 'NAME: ARGS', got '%s'\n", path, ln, s); rc = 2; break; }
        *colon = 0;
        char *key = trim(s), *val = trim(colon + 1);
        int good = *key != 0 && strlen(key) < sizeof c->set[0].name;
        for (char *k = key; *k; k++) good &= isalnum((unsigned char)*k) || strchr("_.+-", *k) != NULL;
        if (!good) { fprintf(stderr, "kvcodec sweep: %s:%d: bad name '%s' (letters, digits, _ . + - only, at most 63)\n", path, ln, key); rc = 2; break; }
        struct arglist *al = NULL;
        if (!strcmp(key, "model")) {
            free(c->model);
            c->model = strdup(val);
            continue;
        } else if (!strcmp(key, "text")) {
            if (c->n_text == MAX_TEXTS) { fprintf(stderr, "kvcodec sweep: %s:%d: more than %d text lines\n", path, ln, MAX_TEXTS); rc = 2; break; }
            c->text[c->n_text++] = strdup(val);
            continue;
        } else if (!strcmp(key, "ppl")) { al = &c->ppl; c->has_ppl = 1; }
        else if (!strcmp(key, "passkey")) { al = &c->passkey; c->has_passkey = 1; }
        else if (!strcmp(key, "bench")) { al = &c->bench; c->has_bench = 1; }
        else if (!strcmp(key, "all")) al = &c->all;
        else {
            for (int i = 0; i < c->n_set; i++)
                if (!strcmp(c->set[i].name, key)) { fprintf(stderr, "kvcodec sweep: %s:%d: setting '%s' given twice\n", path, ln, key); rc = 2; goto out; }
            if (c->n_set == MAX_SETTINGS) { fprintf(stderr, "kvcodec sweep: %s:%d: more than %d settings\n", path, ln, MAX_SETTINGS); rc = 2; break; }
            struct setting *st = &c->set[c->n_set++];
            snprintf(st->name, sizeof st->name, "%s", key);
            snprintf(st->line, sizeof st->line, "%s", val);
            al = &st->args;
        }
        free_args(al);
        if (split_args(val, al)) { fprintf(stderr, "kvcodec sweep: %s:%d: more than %d arguments\n", path, ln, MAX_ARGS); rc = 2; break; }
        for (int i = 0; i < al->n; i++)
            if (!strcmp(al->v[i], "--json") || !strcmp(al->v[i], "-m") || !strcmp(al->v[i], "--model") ||
                !strcmp(al->v[i], "-f") || !strcmp(al->v[i], "--file")) {
                fprintf(stderr, "kvcodec sweep: %s:%d: '%s' is set by the sweep itself (use model:/text: lines or -m/-f)\n", path, ln, al->v[i]);
                rc = 2;
                goto out;
            }
    }
out:
    free(buf);
    if (!rc && c->n_set == 0) { fprintf(stderr, "kvcodec sweep: %s: no codec setting (NAME: --kv-k ... lines)\n", path); rc = 2; }
    if (!rc && !c->has_ppl && !c->has_passkey && !c->has_bench) {
        fprintf(stderr, "kvcodec sweep: %s: no test to run (ppl:, passkey: or bench: line)\n", path);
        rc = 2;
    }
    return rc;
}
/* ------------------------------------------------------------------ points */

void sweep_stem_of(const char *path, char *out, size_t cap) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = 0;
    for (; *b && *b != '.' && n + 1 < cap; b++) out[n++] = isalnum((unsigned char)*b) || *b == '-' || *b == '_' ? *b : '_';
    out[n] = 0;
    if (!n) snprintf(out, cap, "text");
}
static void add_arg(struct point *p, const char *s) { p->argv[p->argc++] = (char *)s; }
static void add_list(struct point *p, const struct arglist *a) {
    for (int i = 0; i < a->n; i++) add_arg(p, a->v[i]);
}

/* The argv as one JSON array (for the staleness check). */
static json_t *argv_json(const struct point *p) {
    json_t *a = json_array();
    for (int i = 0; a && i < p->argc; i++) json_array_append_new(a, json_string(p->argv[i]));
    return a;
}

/* Load DIR/points/X.json if it is finished and was made by the same command line. Returns
 * 1 = usable, 0 = missing, -1 = stale or unreadable (say why in why). */
static int load_point(struct point *p, char *why, size_t cap) {
    struct stat st;
    if (stat(p->path, &st) != 0) return 0;
    json_error_t je;
    json_t *doc = json_load_file(p->path, 0, &je);
    if (!doc) {
        snprintf(why, cap, "not valid JSON (line %d: %s)", je.line, je.text);
        return -1;
    }
    int rc = -1;
    json_t *av = json_object_get(doc, "argv"), *res = json_object_get(doc, "result");
    int same = json_is_array(av) && json_array_size(av) == (size_t)p->argc;
    for (int i = 0; same && i < p->argc; i++) {
        const char *s = json_string_value(json_array_get(av, (size_t)i));
        same = s && !strcmp(s, p->argv[i]);
    }
    if (!res) snprintf(why, cap, "no result");
    else if (!same) snprintf(why, cap, "its command line differs from the config's");
    else {
        p->result = json_incref(res);
        p->have = 1;
        rc = 1;
    }
    json_decref(doc);
    return rc;
}

static void tail_log(const char *path, int lines) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char *ring[64] = {0};
    char line[1024];
    int n = 0;
    if (lines > 64) lines = 64;
    while (fgets(line, sizeof line, f)) {
        free(ring[n % lines]);
        ring[n % lines] = strdup(line);
        n++;
    }
    fclose(f);
    for (int i = n > lines ? n - lines : 0; i < n; i++) {
        fprintf(stderr, "    | %s", ring[i % lines] ? ring[i % lines] : "\n");
    }
    for (int i = 0; i < 64; i++) free(ring[i]);
}

/* Save a finished point atomically (PATH.tmp, then rename); p->result holds its JSON. */
static int save_point(struct point *p, double secs, char *why, size_t cap);

/* ppl and passkey points run in this process through the library (cmd_ppl_json /
 * cmd_passkey_json: the commands' own flag parsing, kvc_perplexity / kvc_passkey), with
 * stderr sent to the point's log while they run. */
static int run_inproc(struct point *p, double *secs, char *why, size_t cap) {
    int logfd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (logfd < 0) { snprintf(why, cap, "%s: %s", p->log, strerror(errno)); return -1; }
    fflush(stderr);
    int saved = dup(2);
    if (saved < 0 || dup2(logfd, 2) < 0) {
        snprintf(why, cap, "cannot redirect stderr to %s: %s", p->log, strerror(errno));
        if (saved >= 0) close(saved);
        close(logfd);
        return -1;
    }
    close(logfd);
    double t0 = now_sec();
    int rc = !strcmp(p->argv[0], "ppl") ? cmd_ppl_json(p->argc, p->argv, &p->result)
                                        : cmd_passkey_json(p->argc, p->argv, &p->result);
    *secs = now_sec() - t0;
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    if (rc || !p->result) {
        snprintf(why, cap, "exit status %d", rc ? rc : 1);
        json_decref(p->result);
        p->result = NULL;
        return -1;
    }
    return save_point(p, *secs, why, cap);
}

/* bench points run as a subprocess of this binary: bench reports the peak RSS of its process,
 * which must not include the sweep's earlier points. argv[0] is the command name; stdout is
 * captured, stderr goes to the log. */
static int run_subprocess(const char *exe, struct point *p, double *secs, char *why, size_t cap) {
    int fd[2];
    if (pipe(fd)) { snprintf(why, cap, "pipe: %s", strerror(errno)); return -1; }
    int logfd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (logfd < 0) { snprintf(why, cap, "%s: %s", p->log, strerror(errno)); close(fd[0]); close(fd[1]); return -1; }
    char *av[2 * MAX_ARGS + 20];
    av[0] = (char *)"kvcodec";
    for (int i = 0; i < p->argc; i++) av[i + 1] = p->argv[i];
    av[p->argc + 1] = NULL;
    fflush(stdout);
    fflush(stderr);
    double t0 = now_sec();
    pid_t pid = fork();
    if (pid < 0) { snprintf(why, cap, "fork: %s", strerror(errno)); close(fd[0]); close(fd[1]); close(logfd); return -1; }
    if (pid == 0) {
        dup2(fd[1], 1);
        dup2(logfd, 2);
        close(fd[0]);
        close(fd[1]);
        close(logfd);
        execv(exe, av);
        fprintf(stderr, "kvcodec sweep: cannot run %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    close(fd[1]);
    close(logfd);
    size_t capb = 1 << 14, n = 0;
    char *buf = malloc(capb);
    for (;;) {
        if (buf && n + 1 >= capb) {
            char *nb = realloc(buf, capb *= 2);
            if (!nb) { free(buf); buf = NULL; }
            else buf = nb;
        }
        char sink[4096];
        ssize_t r = buf ? read(fd[0], buf + n, capb - n - 1) : read(fd[0], sink, sizeof sink);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (buf) n += (size_t)r;
    }
    close(fd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    *secs = now_sec() - t0;
    if (!buf) { snprintf(why, cap, "out of memory"); return -1; }
    buf[n] = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (WIFEXITED(status)) snprintf(why, cap, "exit status %d", WEXITSTATUS(status));
        else snprintf(why, cap, "killed by signal %d", WTERMSIG(status));
        free(buf);
        return -1;
    }
    json_error_t je;
    p->result = json_loads(buf, JSON_DECODE_ANY, &je);
    free(buf);
    if (!p->result) {
        snprintf(why, cap, "its output is not one JSON document (%s)", je.text);
        return -1;
    }
    return save_point(p, *secs, why, cap);
}

static int save_point(struct point *p, double secs, char *why, size_t cap) {
    char tmp[4500];
    snprintf(tmp, sizeof tmp, "%s.tmp", p->path);
    json_t *doc = json_object();
    json_object_set_new(doc, "setting", json_string(p->set->name));
    json_object_set_new(doc, "test", json_string(p->test));
    json_object_set_new(doc, "argv", argv_json(p));
    json_object_set_new(doc, "seconds", json_real(round(secs * 100) / 100));
    json_object_set(doc, "result", p->result);
    int ok = json_dump_file(doc, tmp, JSON_OUT_FLAGS) == 0;
    json_decref(doc);
    if (!ok || rename(tmp, p->path)) {
        snprintf(why, cap, "cannot write %.400s: %s", p->path, strerror(errno));
        unlink(tmp);
        json_decref(p->result);
        p->result = NULL;
        return -1;
    }
    p->have = 1;
    return 0;
}

static void point_summary(const struct point *p, char *out, size_t cap) {
    const json_t *r = p->result;
    if (!strncmp(p->test, "ppl", 3)) {
        double ch = sweep_jnum(r, "ppl_change_pct");
        if (isfinite(ch))
            snprintf(out, cap, "PPL %.4f (%+.3f %% vs f16), KLD %.5f, top-1 %.4f", sweep_jnum(r, "ppl"), ch, sweep_jnum(r, "kld_mean"),
                     sweep_jnum(r, "top1_agree"));
        else snprintf(out, cap, "PPL %.4f", sweep_jnum(r, "ppl"));
    } else if (!strcmp(p->test, "passkey")) {
        snprintf(out, cap, "accuracy %.0f/%.0f", sweep_jnum(r, "correct"), sweep_jnum(r, "total"));
    } else {
        size_t o = 0;
        out[0] = 0;
        for (size_t i = 0; i < json_array_size(r) && o + 40 < cap; i++) {
            const json_t *row = json_array_get(r, i);
            const char *t = sweep_jstr(row, "test");
            if (t && t[0] == 't')
                o += (size_t)snprintf(out + o, cap - o, "%stg d%.0f %.1f t/s", o ? ", " : "", sweep_jnum(row, "depth"),
                                      sweep_jnum(row, "tps_median"));
        }
    }
}
/* ------------------------------------------------------------------ command */

static int mkdir_p(const char *path) {
    char buf[4400];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) && errno != EEXIST) return -1;
    return 0;
}

int cmd_sweep(int argc, char **argv) {
    struct args a = {argc, 1, argv, "sweep"};
    const char *model = NULL, *cfg_path = NULL, *out = NULL, *texts_cli[MAX_TEXTS];
    int n_text_cli = 0, resume = 0, force = 0, threads = 0, report_only = 0;
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        const char *t;
        if (arg_str(&a, "-f", "--file", &t)) {
            if (n_text_cli == MAX_TEXTS) return usage_error(a.cmd, "more than %d -f texts", MAX_TEXTS);
            texts_cli[n_text_cli++] = t;
            continue;
        }
        if (arg_str(&a, "-m", "--model", &model) || arg_str(&a, "--config", NULL, &cfg_path) ||
            arg_str(&a, "--out", "-o", &out) || arg_int(&a, "-t", "--threads", 1, 256, &threads))
            continue;
        if (arg_flag(&a, "--resume")) { resume = 1; continue; }
        if (arg_flag(&a, "--force")) { force = 1; continue; }
        if (arg_flag(&a, "--report-only")) { report_only = 1; continue; }
        return arg_unknown(&a);
    }
    if (!cfg_path) return usage_error(a.cmd, "--config FILE is required");
    if (!out) return usage_error(a.cmd, "--out DIR is required");
    if (strlen(out) > 2000) return usage_error(a.cmd, "--out: path longer than 2000 bytes");
    if (resume && force) return usage_error(a.cmd, "--resume and --force exclude each other");
    struct config *cf = calloc(1, sizeof *cf);
    if (!cf) return 1;
    int rc = load_config(cfg_path, cf);
    if (rc) { free_config(cf); free(cf); return rc; }
    if (!model) model = cf->model;
    if (!model) model = default_model_path();
    char *texts[MAX_TEXTS];
    int n_text = n_text_cli ? n_text_cli : cf->n_text;
    for (int i = 0; i < n_text; i++) texts[i] = n_text_cli ? (char *)texts_cli[i] : cf->text[i];
    if (cf->has_ppl && !n_text) {
        free_config(cf);
        free(cf);
        return usage_error(a.cmd, "the config has a ppl: line but no text (text: line or -f TEXT)");
    }
    char stems[MAX_TEXTS][64];
    for (int i = 0; i < n_text; i++) {
        sweep_stem_of(texts[i], stems[i], sizeof stems[i]);
        for (int j = 0; j < i; j++)
            if (!strcmp(stems[i], stems[j])) {
                free_config(cf);
                free(cf);
                return usage_error(a.cmd, "texts %s and %s have the same name: points would collide", texts[j], texts[i]);
            }
    }
    char exe[4096];
    ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (el <= 0) { fprintf(stderr, "kvcodec sweep: error: cannot read /proc/self/exe\n"); free_config(cf); free(cf); return 1; }
    exe[el] = 0;
    char pdir[4200], tbuf[16];
    snprintf(pdir, sizeof pdir, "%s/points", out);
    snprintf(tbuf, sizeof tbuf, "%d", threads);
    if (mkdir_p(pdir)) {
        fprintf(stderr, "kvcodec sweep: error: cannot create %s: %s\n", pdir, strerror(errno));
        free_config(cf);
        free(cf);
        return 1;
    }

    /* the points, in order */
    int cap = cf->n_set * (n_text + 2), np = 0;
    struct point *pts = calloc((size_t)cap, sizeof *pts);
    if (!pts) { free_config(cf); free(cf); return 1; }
    for (int s = 0; s < cf->n_set; s++) {
        for (int k = 0; k < 3; k++) {
            int reps = k == 0 ? (cf->has_ppl ? n_text : 0) : k == 1 ? cf->has_passkey : cf->has_bench;
            for (int t = 0; t < reps; t++) {
                struct point *p = &pts[np++];
                p->set = &cf->set[s];
                const char *cmd = k == 0 ? "ppl" : k == 1 ? "passkey" : "bench";
                if (k == 0) { snprintf(p->test, sizeof p->test, "ppl-%s", stems[t]); p->text = texts[t]; }
                else snprintf(p->test, sizeof p->test, "%s", cmd);
                add_arg(p, cmd);
                add_arg(p, "-m");
                add_arg(p, model);
                if (k == 0) { add_arg(p, "-f"); add_arg(p, texts[t]); }
                add_list(p, k == 0 ? &cf->ppl : k == 1 ? &cf->passkey : &cf->bench);
                add_list(p, &cf->all);
                add_list(p, &p->set->args);
                if (threads) { add_arg(p, "-t"); add_arg(p, tbuf); }
                add_arg(p, "--json");
                snprintf(p->path, sizeof p->path, "%s/%s-%s.json", pdir, p->set->name, p->test);
                snprintf(p->log, sizeof p->log, "%s/%s-%s.log", pdir, p->set->name, p->test);
            }
        }
    }
    if (!resume && !force && !report_only) {
        int existing = 0;
        struct stat st;
        for (int i = 0; i < np; i++) existing += stat(pts[i].path, &st) == 0;
        if (existing) {
            rc = usage_error(a.cmd, "%s already holds %d finished point%s of this config: pass --resume to keep them "
                             "and run the rest, or --force to run everything again", out, existing, existing > 1 ? "s" : "");
            goto done;
        }
    }
    char cmdline[2048];
    {
        size_t o = 0;
        o += (size_t)snprintf(cmdline, sizeof cmdline, "kvcodec");
        for (int i = 0; i < argc && o < sizeof cmdline; i++) o += (size_t)snprintf(cmdline + o, sizeof cmdline - o, " %s", argv[i]);
    }
    int ran = 0, skipped = 0, failed = 0;
    double t0 = now_sec();
    fprintf(stderr, "kvcodec sweep: %d settings x %d tests = %d points, model %s, output %s\n", cf->n_set,
            cf->n_set ? np / cf->n_set : 0, np, model, out);
    for (int i = 0; i < np; i++) {
        struct point *p = &pts[i];
        char why[512] = "";
        int st = force && !report_only ? 0 : load_point(p, why, sizeof why);
        if (st == 1) {
            skipped++;
            fprintf(stderr, "[%d/%d] %s %s: skipped (finished earlier: %s)\n", i + 1, np, p->set->name, p->test, p->path);
            continue;
        }
        if (report_only) {
            fprintf(stderr, "[%d/%d] %s %s: %s\n", i + 1, np, p->set->name, p->test, st < 0 ? why : "not run yet");
            continue;
        }
        if (st < 0) fprintf(stderr, "[%d/%d] %s %s: the saved point is not reused: %s\n", i + 1, np, p->set->name, p->test, why);
        fprintf(stderr, "[%d/%d] %s %s: running kvcodec", i + 1, np, p->set->name, p->test);
        for (int j = 0; j < p->argc; j++) fprintf(stderr, " %s", p->argv[j]);
        fprintf(stderr, "\n");
        double secs = 0;
        int bad = !strcmp(p->test, "bench") ? run_subprocess(exe, p, &secs, why, sizeof why)
                                            : run_inproc(p, &secs, why, sizeof why);
        if (bad) {
            failed++;
            fprintf(stderr, "[%d/%d] %s %s: FAILED (%s) after %.1f s; last lines of %s:\n", i + 1, np, p->set->name, p->test,
                    why, secs, p->log);
            tail_log(p->log, 6);
            continue;
        }
        ran++;
        char sum[512];
        point_summary(p, sum, sizeof sum);
        fprintf(stderr, "[%d/%d] %s %s: done in %.1f s: %s (%.0f s elapsed)\n", i + 1, np, p->set->name, p->test, secs, sum,
                now_sec() - t0);
    }
    fprintf(stderr, "kvcodec sweep: %d point%s run, %d skipped (finished earlier), %d failed\n", ran, ran == 1 ? "" : "s",
            skipped, failed);
    rc = sweep_write_results(out, cf, model, cfg_path, texts, n_text, pts, np, cmdline);
    if (failed && !rc) rc = 1;
done:
    for (int i = 0; i < np; i++) json_decref(pts[i].result);
    free(pts);
    free_config(cf);
    free(cf);
    return rc;
}
