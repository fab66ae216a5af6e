/* cmd_sweep.c - `kvcodec sweep`: run ppl, passkey and bench for every codec setting of a config
 * file by invoking this same binary (/proc/self/exe) as subprocesses with --json, save each
 * finished point as DIR/points/NAME-TEST.json (a re-run with --resume skips them), then write
 * DIR/results.json, DIR/results.csv, DIR/report.md and the plots DIR/pareto.svg,
 * DIR/pareto-ppl.svg and DIR/speed.svg. */
#include "cli.h"
#include "plot_svg.h"

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

#define MAX_SETTINGS 64
#define MAX_TEXTS 4
#define MAX_ARGS 48

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec sweep [-m MODEL] [-f TEXT ...] --config FILE --out DIR [--resume | --force] [-t N]\n\n"
            "Runs ppl (quality vs an f16 cache), passkey and bench for every codec setting of FILE, each as a\n"
            "subprocess of this binary with --json; every finished point is saved as DIR/points/NAME-TEST.json\n"
            "(its log as .log). Then writes DIR/results.json, DIR/results.csv, DIR/report.md (Markdown tables)\n"
            "and the SVG plots DIR/pareto.svg (mean KLD vs bits per element, one series per codec family),\n"
            "DIR/pareto-ppl.svg (PPL change %% vs bits) and DIR/speed.svg (decode t/s vs depth per setting).\n"
            "  --config FILE        the sweep configuration (format below)\n"
            "  --out DIR            output directory (created if missing)\n"
            "  --resume             keep finished points in DIR and run only the missing or failed ones (a point\n"
            "                       whose command line changed in the config is run again)\n"
            "  --force              run every point again, overwriting DIR's points\n"
            "                       (without either, a DIR that already holds points is refused)\n"
            "  -m, --model FILE     model for every point (overrides the config's model: line)\n"
            "  -f, --file TEXT      text for ppl (repeatable, at most %d; overrides the config's text: lines)\n"
            "  -t, --threads N      threads for every point (appended to each subprocess as -t N)\n"
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
            "A setting's family (the pareto series) is its key codec's name before ':'. The f16/f16 setting\n"
            "without sinks/recent is the reference: its PPL change and KLD are 0 by definition.\n",
            MAX_TEXTS, MAX_TEXTS);
}

/* ------------------------------------------------------------------ a small JSON reader */

enum jt { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };
struct jv {
    enum jt t;
    double num;
    char *str;
    int n;
    struct jv *kid;
    char **key;
};

static void jfree(struct jv *v) {
    if (!v) return;
    for (int i = 0; i < v->n; i++) {
        jfree(&v->kid[i]);
        if (v->key) free(v->key[i]);
    }
    free(v->kid);
    free(v->key);
    free(v->str);
    memset(v, 0, sizeof *v);
}

static const char *jws(const char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
    return p;
}

static const char *jparse_str(const char *p, char **out) {
    if (*p != '"') return NULL;
    p++;
    size_t cap = 16, n = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    while (*p && *p != '"') {
        unsigned cp = (unsigned char)*p++;
        if (cp == '\\') {
            char c = *p++;
            switch (c) {
            case 'n': cp = '\n'; break;
            case 't': cp = '\t'; break;
            case 'r': cp = '\r'; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'u': {
                cp = 0;
                for (int i = 0; i < 4; i++) {
                    char h = *p++;
                    if (!isxdigit((unsigned char)h)) { free(s); return NULL; }
                    cp = cp * 16 + (unsigned)(isdigit((unsigned char)h) ? h - '0' : (tolower((unsigned char)h) - 'a' + 10));
                }
                break;
            }
            case 0: free(s); return NULL;
            default: cp = (unsigned char)c;
            }
        }
        if (n + 5 >= cap) {
            char *ns = realloc(s, cap *= 2);
            if (!ns) { free(s); return NULL; }
            s = ns;
        }
        if (cp < 0x80) s[n++] = (char)cp;
        else if (cp < 0x800) { s[n++] = (char)(0xc0 | cp >> 6); s[n++] = (char)(0x80 | (cp & 63)); }
        else { s[n++] = (char)(0xe0 | cp >> 12); s[n++] = (char)(0x80 | (cp >> 6 & 63)); s[n++] = (char)(0x80 | (cp & 63)); }
    }
    if (*p != '"') { free(s); return NULL; }
    s[n] = 0;
    *out = s;
    return p + 1;
}

static const char *jparse(const char *p, struct jv *v, int depth) {
    memset(v, 0, sizeof *v);
    if (depth > 64) return NULL;
    p = jws(p);
    if (*p == '{' || *p == '[') {
        int obj = *p == '{';
        v->t = obj ? J_OBJ : J_ARR;
        p = jws(p + 1);
        if (*p == (obj ? '}' : ']')) return p + 1;
        int cap = 0;
        for (;;) {
            if (v->n == cap) {
                cap = cap ? cap * 2 : 8;
                struct jv *nk = realloc(v->kid, sizeof *nk * (size_t)cap);
                if (!nk) return NULL;
                v->kid = nk;
                if (obj) {
                    char **nkey = realloc(v->key, sizeof *nkey * (size_t)cap);
                    if (!nkey) return NULL;
                    v->key = nkey;
                }
            }
            if (obj) {
                p = jws(p);
                if (!(p = jparse_str(p, &v->key[v->n]))) return NULL;
                p = jws(p);
                if (*p++ != ':') { free(v->key[v->n]); return NULL; }
            }
            p = jparse(p, &v->kid[v->n], depth + 1);
            v->n++;
            if (!p) return NULL;
            p = jws(p);
            if (*p == ',') { p++; continue; }
            if (*p == (obj ? '}' : ']')) return p + 1;
            return NULL;
        }
    }
    if (*p == '"') {
        v->t = J_STR;
        return jparse_str(p, &v->str);
    }
    if (!strncmp(p, "true", 4)) { v->t = J_BOOL; v->num = 1; return p + 4; }
    if (!strncmp(p, "false", 5)) { v->t = J_BOOL; return p + 5; }
    if (!strncmp(p, "null", 4)) { v->t = J_NULL; return p + 4; }
    char *end;
    v->num = strtod(p, &end);
    if (end == p) return NULL;
    v->t = J_NUM;
    return end;
}

/* Parse a whole document; 0 on success. */
static int jparse_doc(const char *s, struct jv *v) {
    const char *e = jparse(s, v, 0);
    if (!e || *jws(e)) { jfree(v); return -1; }
    return 0;
}

static const struct jv *jget(const struct jv *o, const char *k) {
    if (!o || o->t != J_OBJ) return NULL;
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->key[i], k)) return &o->kid[i];
    return NULL;
}

static double jnum(const struct jv *o, const char *k) {
    const struct jv *v = jget(o, k);
    return v && v->t == J_NUM ? v->num : NAN;
}

static const char *jstr(const struct jv *o, const char *k) {
    const struct jv *v = jget(o, k);
    return v && v->t == J_STR ? v->str : NULL;
}

static void jwrite(FILE *f, const struct jv *v, int ind) {
    switch (v->t) {
    case J_NULL: fputs("null", f); break;
    case J_BOOL: fputs(v->num ? "true" : "false", f); break;
    case J_NUM:
        if (isfinite(v->num)) fprintf(f, "%.10g", v->num);
        else fputs("null", f);
        break;
    case J_STR: json_str(f, v->str); break;
    case J_ARR:
    case J_OBJ: {
        int obj = v->t == J_OBJ, flat = 1;
        for (int i = 0; i < v->n; i++) flat &= v->kid[i].t != J_OBJ && v->kid[i].t != J_ARR;
        fputc(obj ? '{' : '[', f);
        for (int i = 0; i < v->n; i++) {
            if (i) fputc(',', f);
            if (!flat) fprintf(f, "\n%*s", ind + 2, "");
            else if (i) fputc(' ', f);
            if (obj) { json_str(f, v->key[i]); fputs(": ", f); }
            jwrite(f, &v->kid[i], ind + 2);
        }
        if (!flat && v->n) fprintf(f, "\n%*s", ind, "");
        fputc(obj ? '}' : ']', f);
    }
    }
}

/* ------------------------------------------------------------------ config */

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

struct point {
    const struct setting *set;
    char test[96];            /* ppl-STEM, passkey, bench */
    const char *text;         /* ppl only */
    int argc;
    char *argv[2 * MAX_ARGS + 16];
    char path[4400], log[4400];
    struct jv result;         /* the subprocess's JSON, once done */
    int have;
};

static void stem_of(const char *path, char *out, size_t cap) {
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
static char *argv_json(const struct point *p) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    fputc('[', f);
    for (int i = 0; i < p->argc; i++) {
        if (i) fputs(", ", f);
        json_str(f, p->argv[i]);
    }
    fputc(']', f);
    fclose(f);
    return buf;
}

/* Load DIR/points/X.json if it is finished and was made by the same command line. Returns
 * 1 = usable, 0 = missing, -1 = stale or unreadable (say why in why). */
static int load_point(struct point *p, char *why, size_t cap) {
    struct stat st;
    if (stat(p->path, &st) != 0) return 0;
    FILE *f = fopen(p->path, "rb");
    if (!f) { snprintf(why, cap, "cannot open"); return -1; }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!buf) { snprintf(why, cap, "out of memory"); return -1; }
    buf[n] = 0;
    struct jv doc;
    int rc = -1;
    if (jparse_doc(buf, &doc)) {
        snprintf(why, cap, "not valid JSON");
    } else {
        const struct jv *av = jget(&doc, "argv"), *res = jget(&doc, "result");
        int same = av && av->t == J_ARR && av->n == p->argc;
        for (int i = 0; same && i < p->argc; i++) same = av->kid[i].t == J_STR && !strcmp(av->kid[i].str, p->argv[i]);
        if (!res) snprintf(why, cap, "no result");
        else if (!same) snprintf(why, cap, "its command line differs from the config's");
        else {
            /* move the result out of the document */
            struct jv *r = (struct jv *)res;
            p->result = *r;
            memset(r, 0, sizeof *r);
            p->have = 1;
            rc = 1;
        }
        jfree(&doc);
    }
    free(buf);
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

/* Run exe with argv (argv[0] is the command name), stdout captured, stderr to the log. */
static int run_point(const char *exe, struct point *p, double *secs, char *why, size_t cap) {
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
    if (jparse_doc(buf, &p->result)) {
        snprintf(why, cap, "its output is not one JSON document");
        free(buf);
        return -1;
    }
    /* save atomically: write PATH.tmp, then rename */
    char tmp[4500];
    snprintf(tmp, sizeof tmp, "%s.tmp", p->path);
    FILE *f = fopen(tmp, "w");
    char *aj = argv_json(p);
    int ok = f && aj;
    if (ok) {
        fprintf(f, "{\"setting\": ");
        json_str(f, p->set->name);
        fprintf(f, ", \"test\": ");
        json_str(f, p->test);
        fprintf(f, ", \"argv\": %s, \"seconds\": %.2f, \"result\": ", aj, *secs);
        jwrite(f, &p->result, 0);
        fprintf(f, "}\n");
    }
    if (f && fclose(f)) ok = 0;
    free(aj);
    free(buf);
    if (!ok || rename(tmp, p->path)) {
        snprintf(why, cap, "cannot write %s: %s", p->path, strerror(errno));
        unlink(tmp);
        jfree(&p->result);
        return -1;
    }
    p->have = 1;
    return 0;
}

static void point_summary(const struct point *p, char *out, size_t cap) {
    const struct jv *r = &p->result;
    if (!strncmp(p->test, "ppl", 3)) {
        double ch = jnum(r, "ppl_change_pct");
        if (isfinite(ch))
            snprintf(out, cap, "PPL %.4f (%+.3f %% vs f16), KLD %.5f, top-1 %.4f", jnum(r, "ppl"), ch, jnum(r, "kld_mean"),
                     jnum(r, "top1_agree"));
        else snprintf(out, cap, "PPL %.4f", jnum(r, "ppl"));
    } else if (!strcmp(p->test, "passkey")) {
        snprintf(out, cap, "accuracy %.0f/%.0f", jnum(r, "correct"), jnum(r, "total"));
    } else {
        size_t o = 0;
        out[0] = 0;
        for (int i = 0; r->t == J_ARR && i < r->n && o + 40 < cap; i++) {
            const char *t = jstr(&r->kid[i], "test");
            if (t && t[0] == 't')
                o += (size_t)snprintf(out + o, cap - o, "%stg d%.0f %.1f t/s", o ? ", " : "", jnum(&r->kid[i], "depth"),
                                      jnum(&r->kid[i], "tps_median"));
        }
    }
}

/* ------------------------------------------------------------------ results */

struct sres {                  /* one setting's figures */
    const struct setting *set;
    char kv_k[128], kv_v[128], family[64];
    double bits_k, bits_v, bits;
    int is_ref;
    double ppl[MAX_TEXTS], ppl_ch[MAX_TEXTS], kld[MAX_TEXTS], kld99[MAX_TEXTS], top1[MAX_TEXTS];
    double pk;                 /* passkey accuracy */
    const struct jv *bench;    /* rows */
};

static int n_depths_of(struct sres *r, int ns, double *dep, int cap) {
    int nd = 0;
    for (int s = 0; s < ns; s++) {
        const struct jv *b = r[s].bench;
        for (int i = 0; b && b->t == J_ARR && i < b->n; i++) {
            double d = jnum(&b->kid[i], "depth");
            int seen = 0;
            for (int j = 0; j < nd; j++) seen |= dep[j] == d;
            if (!seen && nd < cap && isfinite(d)) dep[nd++] = d;
        }
    }
    for (int i = 1; i < nd; i++)
        for (int j = i; j > 0 && dep[j - 1] > dep[j]; j--) { double t = dep[j]; dep[j] = dep[j - 1]; dep[j - 1] = t; }
    return nd;
}

static double bench_tps(const struct jv *b, double depth, char kind) {
    for (int i = 0; b && b->t == J_ARR && i < b->n; i++) {
        const char *t = jstr(&b->kid[i], "test");
        if (t && t[0] == kind && jnum(&b->kid[i], "depth") == depth) return jnum(&b->kid[i], "tps_median");
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

static int write_results(const char *dir, const struct config *cf, const char *model, const char *cfg_path,
                         char **texts, int n_text, struct point *pts, int np, const char *cmdline) {
    int ns = cf->n_set, rc = 0;
    struct sres *R = calloc((size_t)ns, sizeof *R);
    if (!R) return 1;
    char tstem[MAX_TEXTS][96];
    for (int t = 0; t < n_text; t++) stem_of(texts[t], tstem[t], sizeof tstem[t]);
    for (int s = 0; s < ns; s++) {
        struct sres *r = &R[s];
        r->set = &cf->set[s];
        r->bits_k = r->bits_v = r->bits = r->pk = NAN;
        for (int t = 0; t < MAX_TEXTS; t++) r->ppl[t] = r->ppl_ch[t] = r->kld[t] = r->kld99[t] = r->top1[t] = NAN;
        int sinks = 0, recent = 0;
        for (int i = 0; i < np; i++) {
            struct point *p = &pts[i];
            if (p->set != r->set || !p->have) continue;
            const struct jv *v = &p->result;
            const struct jv *o = v->t == J_ARR && v->n ? &v->kid[0] : v;
            if (!r->kv_k[0] && jstr(o, "kv_k")) {
                snprintf(r->kv_k, sizeof r->kv_k, "%s", jstr(o, "kv_k"));
                snprintf(r->kv_v, sizeof r->kv_v, "%s", jstr(o, "kv_v") ? jstr(o, "kv_v") : "");
                sinks = (int)jnum(o, "kv_sinks");
                recent = (int)jnum(o, "kv_recent");
            }
            if (isfinite(jnum(o, "bits_k"))) { r->bits_k = jnum(o, "bits_k"); r->bits_v = jnum(o, "bits_v"); }
            if (isfinite(jnum(o, "bits_per_element"))) r->bits = jnum(o, "bits_per_element");
            if (!strncmp(p->test, "ppl", 3)) {
                for (int t = 0; t < n_text; t++)
                    if (p->text == texts[t]) {
                        r->ppl[t] = jnum(v, "ppl");
                        r->ppl_ch[t] = jnum(v, "ppl_change_pct");
                        r->kld[t] = jnum(v, "kld_mean");
                        r->kld99[t] = jnum(v, "kld_p99");
                        r->top1[t] = jnum(v, "top1_agree");
                    }
            } else if (!strcmp(p->test, "passkey")) {
                r->pk = jnum(v, "accuracy");
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
        const char *k = r->kv_k[0] ? r->kv_k : "?";
        size_t fl = strcspn(k, ":");
        snprintf(r->family, sizeof r->family, "%.*s", (int)(fl < 63 ? fl : 63), k);
    }
    double dep[64];
    int nd = n_depths_of(R, ns, dep, 64);
    char path[4200];
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));

    /* results.json */
    FILE *f = open_out(dir, "results.json", path, sizeof path);
    if (!f) { free(R); return 1; }
    fprintf(f, "{\"model\": ");
    json_str(f, model);
    fprintf(f, ", \"config\": ");
    json_str(f, cfg_path);
    fprintf(f, ", \"command\": ");
    json_str(f, cmdline);
    fprintf(f, ", \"date\": \"%s\", \"texts\": [", date);
    for (int t = 0; t < n_text; t++) { if (t) fputs(", ", f); json_str(f, texts[t]); }
    fprintf(f, "],\n \"settings\": [");
    for (int s = 0; s < ns; s++) {
        struct sres *r = &R[s];
        fprintf(f, "%s\n  {\"name\": ", s ? "," : "");
        json_str(f, r->set->name);
        fprintf(f, ", \"args\": ");
        json_str(f, r->set->line);
        fprintf(f, ", \"kv_k\": ");
        json_str(f, r->kv_k);
        fprintf(f, ", \"kv_v\": ");
        json_str(f, r->kv_v);
        fprintf(f, ", \"family\": ");
        json_str(f, r->family);
        fprintf(f, ", \"reference\": %s", r->is_ref ? "true" : "false");
        double nums[] = {r->bits_k, r->bits_v, r->bits, r->pk};
        const char *names[] = {"bits_k", "bits_v", "bits_per_element", "passkey_accuracy"};
        for (int i = 0; i < 4; i++) {
            fprintf(f, ", \"%s\": ", names[i]);
            if (isfinite(nums[i])) fprintf(f, "%.6g", nums[i]);
            else fputs("null", f);
        }
        fprintf(f, ",\n   \"points\": {");
        int first = 1;
        for (int i = 0; i < np; i++) {
            if (pts[i].set != r->set) continue;
            fprintf(f, "%s\n    ", first ? "" : ",");
            json_str(f, pts[i].test);
            fputs(": ", f);
            if (pts[i].have) jwrite(f, &pts[i].result, 4);
            else fputs("null", f);
            first = 0;
        }
        fprintf(f, "}}");
    }
    fprintf(f, "\n]}\n");
    if (fclose(f)) { fprintf(stderr, "kvcodec sweep: error: writing %s failed\n", path); rc = 1; }
    else fprintf(stderr, "kvcodec sweep: wrote %s\n", path);

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
        fprintf(f, "%s,%s,%s,%s", r->set->name, r->kv_k, r->kv_v, r->family);
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
            for (int i = 0; R[s].bench && R[s].bench->t == J_ARR && i < R[s].bench->n; i++) {
                const char *c = jstr(&R[s].bench->kid[i], "cpu");
                if (!c) continue;
                char one[160];
                snprintf(one, sizeof one, "%.140s (%.0f CPUs)", c, jnum(&R[s].bench->kid[i], "host_cpus"));
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
        stem_of(texts[i], stems[i], sizeof stems[i]);
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
        if (run_point(exe, p, &secs, why, sizeof why)) {
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
    rc = write_results(out, cf, model, cfg_path, texts, n_text, pts, np, cmdline);
    if (failed && !rc) rc = 1;
done:
    for (int i = 0; i < np; i++) jfree(&pts[i].result);
    free(pts);
    free_config(cf);
    free(cf);
    return rc;
}
