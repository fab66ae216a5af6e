/* cmd_passkey.c - `kvcodec passkey`: parses the flags, reads the book filler, runs kvc_passkey
 * (src/eval/passkey.c: pass-key retrieval in the prompt shape of kvref's training tasks and
 * llama.cpp's passkey example), draws progress from its callback and prints. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec passkey [-m MODEL] -c CTX [--trials N] [--depths 0.1,0.5,0.9]\n"
            "                       [--filler repeat|books] [--filler-file FILE] [--seed S] [--json]\n\n"
            "Pass-key retrieval: a prompt of about CTX tokens (task description, haystack with the line\n"
            "\"The pass key is NNNNN. Remember it. NNNNN is the pass key.\" at a depth fraction, and the\n"
            "question \"What is the pass key? The pass key is\"), greedy decode of --n-gen tokens; a trial\n"
            "succeeds when the generated text contains the 5-digit key. Keys are random (from --seed).\n"
            "The prompt is the format kvref was trained with (kvref-recipe/train.py): each piece\n"
            "tokenized on its own and concatenated, the haystack cut to CTX - n_gen tokens in all.\n"
            "  -c, --ctx-size CTX   prompt + generated tokens (the KV cache size) (default 2048)\n"
            "  --trials N           trials per depth (default 10)\n"
            "  --depths LIST        depth fractions of the key line in the haystack, 0..1 (default 0.1,0.5,0.9)\n"
            "  --filler KIND        repeat: \"The grass is green. ...\" repeated (default); books: text from\n"
            "                       --filler-file at a random offset for every trial\n"
            "  --filler-file FILE   text for --filler books (default ../shared/text/books-valid.txt, looked up\n"
            "                       from the current directory and from the executable's directory)\n"
            "  --n-gen N            tokens to generate greedily (default 8)\n"
            "  --seed S             seed of keys and book offsets (default 1234)\n"
            "  --json               one JSON object: accuracy, correct, total, depths[{depth, trials,\n"
            "                       correct, accuracy}], kv_k, kv_v, bits ...\n"
            "  -v, --verbose        print every trial's generated text on stderr\n"
            "  -q, --quiet          no progress on stderr\n");
    ctx_opts_help(f, 1);
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* ../shared/text/books-valid.txt from the cwd, else beside the executable (build/ or repo root). */
static const char *default_books(void) {
    static char buf[4200];
    const char *rel = "../shared/text/books-valid.txt";
    if (exists(rel)) return rel;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *sl = strrchr(exe, '/');
        if (sl) *sl = 0;
        const char *up[] = {"/", "/../"};
        for (int i = 0; i < 2; i++) {
            snprintf(buf, sizeof buf, "%s%s%s", exe, up[i], rel);
            if (exists(buf)) return buf;
        }
    }
    return rel;
}

static int parse_fracs(const char *cmd, const char *s, double *out, int cap) {
    int n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !(v >= 0 && v <= 1) || (*end && *end != ',') || n == cap)
            return usage_error(cmd, "--depths '%s': expected up to %d comma-separated fractions in 0..1", s, cap), -1;
        out[n++] = v;
        if (!*end) break;
        p = end + 1;
    }
    return n;
}

struct progress {
    int quiet, verbose, trials;
};

static void on_progress(void *user, const struct kvc_passkey_progress *p) {
    const struct progress *u = user;
    if (u->verbose) {
        fprintf(stderr, "depth %.2f trial %d: key %d, %d prompt tokens, generated \"", p->depth, p->trial + 1, p->key,
                p->n_prompt);
        for (const char *s = p->generated; *s; s++) fputc(*s == '\n' ? ' ' : *s, stderr);
        fprintf(stderr, "\" -> %s\n", p->ok ? "ok" : "MISS");
    }
    if (!u->quiet && p->depth_done)
        fprintf(stderr, "depth %.2f: %d/%d (%.0f s so far)\n", p->depth, p->depth_correct, u->trials, p->seconds);
}

/* The command; with out != NULL the result goes to *out as a JSON value instead of stdout. */
static int run_passkey(int argc, char **argv, json_t **out) {
    struct args a = {argc, 1, argv, "passkey"};
    struct ctx_opts o;
    ctx_opts_init(&o);
    struct kvc_passkey_params pp = kvc_passkey_default_params();
    const char *depths_s = "0.1,0.5,0.9", *filler = "repeat", *filler_file = NULL;
    int json = 0, quiet = 0, verbose = 0;
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        int r = ctx_opts_parse(&o, &a);
        if (r < 0) return 2;
        if (r) continue;
        if (arg_int(&a, "--trials", NULL, 1, 100000, &pp.trials) || arg_str(&a, "--depths", NULL, &depths_s) ||
            arg_str(&a, "--filler", NULL, &filler) || arg_str(&a, "--filler-file", NULL, &filler_file) ||
            arg_int(&a, "--n-gen", NULL, 1, 1024, &pp.n_gen) || arg_u64(&a, "--seed", &pp.seed))
            continue;
        if (arg_flag(&a, "--json")) { json = 1; continue; }
        if (arg_flag(&a, "-q") || arg_flag(&a, "--quiet")) { quiet = 1; continue; }
        if (arg_flag(&a, "-v") || arg_flag(&a, "--verbose")) { verbose = 1; continue; }
        return arg_unknown(&a);
    }
    pp.n_depths = parse_fracs(a.cmd, depths_s, pp.depths, KVC_PASSKEY_MAX_DEPTHS);
    if (pp.n_depths < 0) return 2;
    int books = 0;
    if (!strcmp(filler, "books")) books = 1;
    else if (strcmp(filler, "repeat") != 0) return usage_error(a.cmd, "--filler '%s': expected repeat or books", filler);
    if (filler_file && !books) return usage_error(a.cmd, "--filler-file needs --filler books");
    char *text = NULL;
    size_t text_len = 0;
    if (books) {
        if (!filler_file) filler_file = default_books();
        if (!(text = read_file(a.cmd, filler_file, &text_len))) return 1;
    }
    kvc_model *m;
    if (load_model(a.cmd, o.model, o.load_flags, &m)) { free(text); return 1; }
    const struct kvc_model_info *in = kvc_model_get_info(m);
    pp.ctx = o.p;
    pp.filler_text = text;
    pp.filler_len = text_len;
    struct progress pg = {quiet, verbose, pp.trials};
    pp.progress = on_progress;
    pp.user = &pg;
    if (!quiet) {
        double bits_k, bits_v;
        kvc_error e0 = {0};
        if (!kvc_codec_bits(o.p.kv_k, in->head_dim, &bits_k, &e0) && !kvc_codec_bits(o.p.kv_v, in->head_dim, &bits_v, &e0))
            fprintf(stderr, "kvcodec passkey: -c %d, %d trials x %d depths, %s haystack, KV %s/%s%s\n", o.p.n_ctx,
                    pp.trials, pp.n_depths, books ? "book" : "repeated-filler", o.p.kv_k, o.p.kv_v,
                    o.p.n_ctx > in->n_ctx_train ? "; beyond the trained context" : "");
    }
    struct kvc_passkey_result r;
    kvc_error e = {0};
    int rc = 0;
    if (kvc_passkey(m, &pp, &r, &e)) {
        rc = e.status == KVC_ERR_ARG ? (fprintf(stderr, "kvcodec passkey: %s\n", e.msg), 2) : lib_error(a.cmd, &e);
    } else if (out || json) {
        char *js = kvc_passkey_json(&r, o.model ? o.model : default_model_path(), filler_file);
        json_error_t je;
        if (js && out) {
            if (!(*out = json_loads(js, 0, &je))) rc = 1;
        } else if (js) {
            printf("%s\n", js);
        }
        if (!js || rc) { fprintf(stderr, "kvcodec passkey: error: out of memory writing JSON\n"); rc = 1; }
        kvc_free(js);
    } else {
        printf("pass-key retrieval, -c %d, %s haystack, KV %s/%s (%.2f bits/element), seed %llu:\n", r.ctx,
               books ? "book" : "repeated-filler", r.kv.spec_k, r.kv.spec_v, r.kv.bits_per_element,
               (unsigned long long)r.seed);
        for (int di = 0; di < r.n_depths; di++)
            printf("  depth %.2f: %d/%d (%.1f %%)\n", r.depths[di], r.depth_correct[di], r.trials,
                   100.0 * r.depth_correct[di] / r.trials);
        printf("  overall: %d/%d (%.1f %%) in %.1f s\n", r.correct, r.total, 100.0 * r.correct / r.total, r.seconds);
    }
    free(text);
    kvc_model_free(m);
    return rc;
}

int cmd_passkey(int argc, char **argv) { return run_passkey(argc, argv, NULL); }
int cmd_passkey_json(int argc, char **argv, json_t **out) {
    *out = NULL;
    return run_passkey(argc, argv, out);
}
