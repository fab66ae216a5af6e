/* cmd_passkey.c - `kvcodec passkey`: pass-key retrieval through the KV cache, in the prompt
 * shape of llama.cpp's passkey example and of kvref's training tasks
 * (../shared/models/kvref-recipe/train.py, finish.py): BOS, task description, haystack with the
 * key line inserted at a depth fraction, question; greedy decode; success when the generated
 * text contains the 5-digit key. Each segment is tokenized on its own (with the tokenizer's
 * leading space, as SentencePiece's encode() of each piece in the recipe) and concatenated. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_DEPTHS 64

/* kvref was trained on exactly these strings (train.py PREFIX / FILLER; llama.cpp's example says
 * "memorize them", the recipe "memorize it"). */
static const char *const PREFIX =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
    "I will quiz you about the important information there.";
static const char *const FILLER =
    " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
static const char *const QUESTION = " What is the pass key? The pass key is";

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

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
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

struct toks {
    int32_t *ids;
    int n;
};

static kvc_status tok(const kvc_model *m, const char *s, struct toks *t, kvc_error *e) {
    return kvc_tokenize(m, s, strlen(s), 0, &t->ids, &t->n, e);
}

/* hl tokens of book text from a random offset: start after a line break so no word is cut. */
static kvc_status book_hay(const kvc_model *m, const char *text, size_t len, int hl, uint64_t *rng,
                           int32_t *out, kvc_error *e) {
    size_t win = (size_t)hl * 8 + 256;
    for (int attempt = 0; attempt < 8; attempt++, win *= 2) {
        size_t w = win < len ? win : len;
        size_t off = len > w ? (size_t)(rng_next(rng) % (len - w)) : 0;
        const char *nl = memchr(text + off, '\n', w / 4);
        if (nl) off = (size_t)(nl - text) + 1;
        while (off < len && (text[off] == '\n' || text[off] == ' ')) off++;
        if (off + w > len) w = len - off;
        int32_t *ids;
        int n;
        kvc_status st = kvc_tokenize(m, text + off, w, 0, &ids, &n, e);
        if (st) return st;
        if (n >= hl) {
            memcpy(out, ids, sizeof(int32_t) * (size_t)hl);
            free(ids);
            return KVC_OK;
        }
        free(ids);
    }
    e->status = KVC_ERR_FORMAT;
    snprintf(e->msg, sizeof e->msg, "filler file has too little text for a haystack of %d tokens", hl);
    return KVC_ERR_FORMAT;
}

int cmd_passkey(int argc, char **argv) {
    struct args a = {argc, 1, argv, "passkey"};
    struct ctx_opts o;
    ctx_opts_init(&o);
    const char *depths_s = "0.1,0.5,0.9", *filler = "repeat", *filler_file = NULL;
    int trials = 10, n_gen = 8, json = 0, quiet = 0, verbose = 0;
    uint64_t seed = 1234;
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        int r = ctx_opts_parse(&o, &a);
        if (r < 0) return 2;
        if (r) continue;
        if (arg_int(&a, "--trials", NULL, 1, 100000, &trials) || arg_str(&a, "--depths", NULL, &depths_s) ||
            arg_str(&a, "--filler", NULL, &filler) || arg_str(&a, "--filler-file", NULL, &filler_file) ||
            arg_int(&a, "--n-gen", NULL, 1, 1024, &n_gen) || arg_u64(&a, "--seed", &seed))
            continue;
        if (arg_flag(&a, "--json")) { json = 1; continue; }
        if (arg_flag(&a, "-q") || arg_flag(&a, "--quiet")) { quiet = 1; continue; }
        if (arg_flag(&a, "-v") || arg_flag(&a, "--verbose")) { verbose = 1; continue; }
        return arg_unknown(&a);
    }
    double fr[MAX_DEPTHS];
    int nd = parse_fracs(a.cmd, depths_s, fr, MAX_DEPTHS);
    if (nd < 0) return 2;
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
    if (load_model(a.cmd, o.model, &m)) { free(text); return 1; }
    const struct kvc_model_info *in = kvc_model_get_info(m);
    kvc_error e = {0};
    int rc = 0, CTX = o.p.n_ctx;
    struct toks pre = {0}, fil = {0}, q = {0}, nee = {0};
    int32_t *prompt = NULL, *hay = NULL;
    int *correct = calloc((size_t)nd, sizeof(int));
    kvc_ctx *c = NULL;
    if (!correct) { rc = 1; goto done; }
    if (tok(m, PREFIX, &pre, &e) || tok(m, FILLER, &fil, &e) || tok(m, QUESTION, &q, &e)) { rc = lib_error(a.cmd, &e); goto done; }
    {
        /* The key line's length for a typical 5-digit key, for the size check and the report. */
        struct toks probe;
        if (tok(m, " The pass key is 12345. Remember it. 12345 is the pass key.", &probe, &e)) { rc = lib_error(a.cmd, &e); goto done; }
        nee.n = probe.n;
        free(probe.ids);
    }
    int fixed = 1 + pre.n + nee.n + q.n, hl = CTX - n_gen - fixed;
    if (hl < 8) {
        rc = usage_error(a.cmd, "-c %d is too small: task, key line and question take %d tokens, %d generated", CTX, fixed, n_gen);
        goto done;
    }
    prompt = malloc(sizeof(int32_t) * (size_t)(CTX + 64));
    hay = malloc(sizeof(int32_t) * (size_t)(CTX + 64));
    if (!prompt || !hay || fil.n == 0) { fprintf(stderr, "kvcodec passkey: error: out of memory\n"); rc = 1; goto done; }
    if (kvc_ctx_create(m, &o.p, &c, &e)) { rc = e.status == KVC_ERR_ARG ? (fprintf(stderr, "kvcodec passkey: %s\n", e.msg), 2) : lib_error(a.cmd, &e); goto done; }
    struct kvc_kv_info kv;
    kvc_ctx_kv_info(c, &kv);
    if (!quiet)
        fprintf(stderr, "kvcodec passkey: -c %d, %d trials x %d depths, %s haystack of %d tokens, KV %s/%s (%.2f bits/element)%s\n",
                CTX, trials, nd, books ? "book" : "repeated-filler", hl, kv.spec_k, kv.spec_v, kv.bits_per_element,
                CTX > in->n_ctx_train ? "; beyond the trained context" : "");
    uint64_t rng = seed;
    double t0 = now_sec();
    int total_ok = 0, total = 0;
    for (int di = 0; di < nd; di++) {
        for (int t = 0; t < trials; t++) {
            int key = 10000 + (int)(rng_next(&rng) % 90000);
            char line[128], keys[16];
            snprintf(line, sizeof line, " The pass key is %d. Remember it. %d is the pass key.", key, key);
            snprintf(keys, sizeof keys, "%d", key);
            if (tok(m, line, &nee, &e)) { rc = lib_error(a.cmd, &e); goto done; }
            /* the key line's length can differ by a token between keys: size the haystack per trial */
            int hl_t = CTX - n_gen - (1 + pre.n + nee.n + q.n);
            if (hl_t < 1) hl_t = 1;
            if (books) {
                if (book_hay(m, text, text_len, hl_t, &rng, hay, &e)) { free(nee.ids); nee.ids = NULL; rc = lib_error(a.cmd, &e); goto done; }
            } else {
                for (int i = 0; i < hl_t; i++) hay[i] = fil.ids[i % fil.n];
            }
            int d = (int)((double)hl_t * fr[di]), n = 0;
            prompt[n++] = in->bos_id;
            memcpy(prompt + n, pre.ids, sizeof(int32_t) * (size_t)pre.n); n += pre.n;
            memcpy(prompt + n, hay, sizeof(int32_t) * (size_t)d); n += d;
            memcpy(prompt + n, nee.ids, sizeof(int32_t) * (size_t)nee.n); n += nee.n;
            free(nee.ids);
            nee.ids = NULL;
            memcpy(prompt + n, hay + d, sizeof(int32_t) * (size_t)(hl_t - d)); n += hl_t - d;
            memcpy(prompt + n, q.ids, sizeof(int32_t) * (size_t)q.n); n += q.n;
            if (n + n_gen > CTX) {
                fprintf(stderr, "kvcodec passkey: error: internal: prompt of %d tokens + %d exceeds -c %d\n", n, n_gen, CTX);
                rc = 1;
                goto done;
            }
            kvc_ctx_reset(c);
            for (int i = 0; i < n; i += o.p.n_batch) {
                int nb = n - i < o.p.n_batch ? n - i : o.p.n_batch;
                if (kvc_eval(c, prompt + i, nb, 0, &e)) { rc = lib_error(a.cmd, &e); goto done; }
            }
            char out[512];
            int ol = 0;
            for (int g = 0; g < n_gen; g++) {
                const float *lg = kvc_get_logits(c);
                int best = 0;
                for (int i = 1; i < in->n_vocab; i++)
                    if (lg[i] > lg[best]) best = i;
                if (best == in->eos_id) break;
                char piece[64];
                int pl = kvc_token_to_text(m, best, piece, sizeof piece);
                if (ol + pl < (int)sizeof out - 1) { memcpy(out + ol, piece, (size_t)pl); ol += pl; }
                if (g + 1 == n_gen) break;
                int32_t t32 = best;
                if (kvc_eval(c, &t32, 1, 0, &e)) { rc = lib_error(a.cmd, &e); goto done; }
            }
            out[ol] = 0;
            int ok = strstr(out, keys) != NULL;
            correct[di] += ok;
            total_ok += ok;
            total++;
            if (verbose) {
                fprintf(stderr, "depth %.2f trial %d: key %s, %d prompt tokens, generated \"", fr[di], t + 1, keys, n);
                for (char *s = out; *s; s++) fputc(*s == '\n' ? ' ' : *s, stderr);
                fprintf(stderr, "\" -> %s\n", ok ? "ok" : "MISS");
            }
        }
        if (!quiet)
            fprintf(stderr, "depth %.2f: %d/%d (%.0f s so far)\n", fr[di], correct[di], trials, now_sec() - t0);
    }
    double secs = now_sec() - t0;
    if (json) {
        printf("{\"model\": ");
        json_str(stdout, o.model ? o.model : default_model_path());
        printf(", \"ctx\": %d, \"filler\": \"%s\"", CTX, books ? "books" : "repeat");
        if (books) { printf(", \"filler_file\": "); json_str(stdout, filler_file); }
        printf(", \"n_gen\": %d, \"seed\": %llu, \"trials\": %d, \"haystack_tokens\": %d, \"accuracy\": %.6f, "
               "\"correct\": %d, \"total\": %d, \"depths\": [",
               n_gen, (unsigned long long)seed, trials, hl, (double)total_ok / total, total_ok, total);
        for (int di = 0; di < nd; di++)
            printf("%s{\"depth\": %g, \"trials\": %d, \"correct\": %d, \"accuracy\": %.6f}", di ? ", " : "", fr[di],
                   trials, correct[di], (double)correct[di] / trials);
        printf("], \"kv_k\": ");
        json_str(stdout, kv.spec_k);
        printf(", \"kv_v\": ");
        json_str(stdout, kv.spec_v);
        printf(", \"kv_sinks\": %d, \"kv_recent\": %d, \"bits_k\": %.4f, \"bits_v\": %.4f, \"bits_per_element\": %.4f, "
               "\"n_ctx_train\": %d, \"seconds\": %.2f}\n",
               kv.sinks, kv.recent, kv.bits_k, kv.bits_v, kv.bits_per_element, in->n_ctx_train, secs);
    } else {
        printf("pass-key retrieval, -c %d, %s haystack, KV %s/%s (%.2f bits/element), seed %llu:\n", CTX,
               books ? "book" : "repeated-filler", kv.spec_k, kv.spec_v, kv.bits_per_element, (unsigned long long)seed);
        for (int di = 0; di < nd; di++)
            printf("  depth %.2f: %d/%d (%.1f %%)\n", fr[di], correct[di], trials, 100.0 * correct[di] / trials);
        printf("  overall: %d/%d (%.1f %%) in %.1f s\n", total_ok, total, 100.0 * total_ok / total, secs);
    }
done:
    kvc_ctx_free(c);
    free(pre.ids);
    free(fil.ids);
    free(q.ids);
    free(nee.ids);
    free(prompt);
    free(hay);
    free(correct);
    free(text);
    kvc_model_free(m);
    return rc;
}
