/* cmd_run.c - `kvcodec run`: prefill a prompt in batches, then sample tokens one by one
 * (greedy at --temp 0; else temperature, top-k, top-p) and stream them to stdout; with
 * --chat, a conversation on stdin in the model's chat format (one user message per line). */
#include "cli.h"

#include <math.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec run [-m MODEL] [-p PROMPT] [-n N] [options]\n\n"
            "Streams the continuation of PROMPT (written after the prompt on stdout); speed on stderr.\n"
            "  -p, --prompt TEXT    prompt (default \"Once upon a time\"); BOS is added\n"
            "  -n, --n-predict N    tokens to generate (default 128); stops early at EOS/EOT\n"
            "  --temp T             temperature; 0 = greedy (default 0.8)\n"
            "  --top-k K            keep the K most likely tokens, 0 = all (default 40)\n"
            "  --top-p P            keep the smallest set with probability >= P (default 0.95)\n"
            "  --seed S             sampling seed (default 42)\n"
            "  --no-prompt          do not echo the prompt\n"
            "  --chat               interactive chat: each line of stdin is a user message; the reply\n"
            "                       streams to stdout and ends at the model's end-of-generation token\n"
            "                       (-n caps each reply); format from tokenizer.chat_template\n"
            "  --system TEXT        system message of the chat\n"
            "  --chat-format NAME   override the detected format: %s\n", kvc_chat_format_list());
    ctx_opts_help(f, 1);
}

/* Evaluate n tokens in batches of the context's -b. */
static kvc_status eval_all(kvc_ctx *c, const int32_t *ids, int n, int n_batch, kvc_error *e) {
    for (int i = 0; i < n; i += n_batch) {
        int nb = n - i < n_batch ? n - i : n_batch;
        kvc_status st = kvc_eval(c, ids + i, nb, 0, e);
        if (st) return st;
    }
    return KVC_OK;
}

struct chat_log {
    struct kvc_chat_msg *msg;
    char **own; /* the strings the log owns (user lines, replies) */
    int n, cap;
};

static int chat_push(struct chat_log *l, const char *role, char *content) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        struct kvc_chat_msg *m = realloc(l->msg, sizeof *m * (size_t)cap);
        if (!m) return -1;
        l->msg = m;
        char **o = realloc(l->own, sizeof *o * (size_t)cap);
        if (!o) return -1;
        l->own = o;
        l->cap = cap;
    }
    l->msg[l->n] = (struct kvc_chat_msg){role, content};
    l->own[l->n++] = content;
    return 0;
}

/* Chat on stdin. The cache holds the tokens of `cached` (the formatted conversation so far,
 * reply included); each turn tokenizes only the new tail of the formatted text (special
 * tokens parsed), or re-evaluates everything when the format rewrote earlier text. */
static int run_chat(const char *cmd, kvc_model *m, kvc_ctx *c, const struct ctx_opts *o, const char *system,
                    const char *format_override, int n_predict, double temp, int top_k, double top_p,
                    uint64_t seed) {
    const struct kvc_model_info *in = kvc_model_get_info(m);
    kvc_error e = {0};
    const char *format;
    if (kvc_model_chat_format(m, format_override, &format, &e)) return lib_error(cmd, &e);
    struct chat_log log = {0};
    struct kvc_token_prob *cand = malloc(sizeof *cand * (size_t)in->n_vocab);
    char *cached = calloc(1, 1), *line = NULL, *text = NULL;
    size_t line_cap = 0;
    int rc = 0, tty = isatty(0);
    uint64_t rng = seed;
    if (!cand || !cached) { fprintf(stderr, "kvcodec %s: error: out of memory\n", cmd); rc = 1; goto done; }
    if (system && (chat_push(&log, "system", strdup(system)) || !log.own[0])) {
        fprintf(stderr, "kvcodec %s: error: out of memory\n", cmd); rc = 1; goto done;
    }
    fprintf(stderr, "kvcodec %s: chat format %s; one message per line, end with Ctrl-D\n", cmd, format);
    for (;;) {
        if (tty) { fputs("> ", stderr); fflush(stderr); }
        ssize_t got = getline(&line, &line_cap, stdin);
        if (got < 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        if (got == 0) continue;
        char *user = strdup(line);
        if (!user || chat_push(&log, "user", user)) { free(user); rc = 1; break; }
        free(text);
        text = NULL;
        if (kvc_chat_apply(format, log.msg, log.n, 1, &text, &e)) { rc = lib_error(cmd, &e); break; }
        size_t keep = strlen(cached);
        int first = kvc_ctx_n_past(c) == 0;
        if (strncmp(text, cached, keep) != 0) { /* earlier text changed: start again */
            kvc_ctx_reset(c);
            keep = 0;
            first = 1;
        }
        int32_t *ids = NULL;
        int n = 0;
        if (kvc_vocab_tokenize(kvc_model_vocab(m), text + keep, strlen(text + keep), first, 1, &ids, &n, &e)) {
            rc = lib_error(cmd, &e);
            break;
        }
        if (kvc_ctx_n_past(c) + n >= o->p.n_ctx) {
            fprintf(stderr, "kvcodec %s: error: the conversation (%d + %d tokens) fills -c %d\n", cmd,
                    kvc_ctx_n_past(c), n, o->p.n_ctx);
            free(ids);
            rc = 1;
            break;
        }
        kvc_status st = eval_all(c, ids, n, o->p.n_batch, &e);
        free(ids);
        if (st) { rc = lib_error(cmd, &e); break; }
        /* the reply, streamed; the EOG token ends it and is not shown */
        size_t rlen = 0, rcap = 256;
        char *reply = malloc(rcap), piece[256];
        if (!reply) { rc = 1; break; }
        reply[0] = 0;
        for (int gen = 0; gen < n_predict; gen++) {
            int tok = kvc_sample(kvc_get_logits(c), in->n_vocab, &(struct kvc_sampling){temp, top_k, top_p}, &rng, cand);
            if (kvc_token_is_eog(m, tok)) break;
            int len = kvc_token_to_text(m, tok, piece, sizeof piece);
            fwrite(piece, 1, (size_t)len, stdout);
            fflush(stdout);
            if (rlen + (size_t)len + 1 > rcap) {
                while (rlen + (size_t)len + 1 > rcap) rcap *= 2;
                char *r2 = realloc(reply, rcap);
                if (!r2) { free(reply); reply = NULL; break; }
                reply = r2;
            }
            memcpy(reply + rlen, piece, (size_t)len);
            reply[rlen += (size_t)len] = 0;
            if (kvc_ctx_n_past(c) + 1 >= o->p.n_ctx) {
                fprintf(stderr, "\nkvcodec %s: context full (-c %d); reply cut\n", cmd, o->p.n_ctx);
                break;
            }
            int32_t t32 = tok;
            if (kvc_eval(c, &t32, 1, 0, &e)) { rc = lib_error(cmd, &e); break; }
        }
        fputc('\n', stdout);
        fflush(stdout);
        if (!reply || rc) { free(reply); if (!rc) rc = 1; break; }
        /* the cache now holds the prompt and the reply's tokens */
        char *nc = malloc(strlen(text) + rlen + 1);
        if (!nc || chat_push(&log, "assistant", reply)) { free(nc); free(reply); rc = 1; break; }
        memcpy(nc, text, strlen(text));
        memcpy(nc + strlen(text), reply, rlen + 1);
        free(cached);
        cached = nc;
    }
done:
    for (int i = 0; i < log.n; i++) free(log.own[i]);
    free(log.msg);
    free(log.own);
    free(cand);
    free(cached);
    free(line);
    free(text);
    return rc;
}

int cmd_run(int argc, char **argv) {
    struct args a = {argc, 1, argv, "run"};
    struct ctx_opts o;
    ctx_opts_init(&o);
    const char *prompt = "Once upon a time", *system = NULL, *chat_format = NULL;
    int n_predict = 128, top_k = 40, echo = 1, chat = 0;
    double temp = 0.8, top_p = 0.95;
    uint64_t seed = 42;
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        int r = ctx_opts_parse(&o, &a);
        if (r < 0) return 2;
        if (r) continue;
        if (arg_str(&a, "-p", "--prompt", &prompt) || arg_int(&a, "-n", "--n-predict", 0, 1 << 24, &n_predict) ||
            arg_dbl(&a, "--temp", 0, 100, &temp) || arg_int(&a, "--top-k", NULL, 0, 1 << 24, &top_k) ||
            arg_dbl(&a, "--top-p", 0, 1, &top_p) || arg_u64(&a, "--seed", &seed) ||
            arg_str(&a, "--system", NULL, &system) || arg_str(&a, "--chat-format", NULL, &chat_format))
            continue;
        if (arg_flag(&a, "--chat")) { chat = 1; continue; }
        if (arg_flag(&a, "--no-prompt")) { echo = 0; continue; }
        return arg_unknown(&a);
    }
    kvc_model *m;
    if (load_model(a.cmd, o.model, o.load_flags, &m)) return 1;
    const struct kvc_model_info *in = kvc_model_get_info(m);
    kvc_error e = {0};
    kvc_ctx *c = NULL;
    int32_t *ids = NULL;
    struct kvc_token_prob *cand = NULL;
    int n = 0, rc = 0;
    if ((system || chat_format) && !chat) {
        rc = usage_error(a.cmd, "--system and --chat-format go with --chat");
        goto done;
    }
    if (chat) {
        if (kvc_ctx_create(m, &o.p, &c, &e)) rc = lib_error(a.cmd, &e);
        else rc = run_chat(a.cmd, m, c, &o, system, chat_format, n_predict, temp, top_k, top_p, seed);
        goto done;
    }
    if (kvc_ctx_create(m, &o.p, &c, &e) || kvc_tokenize(m, prompt, strlen(prompt), 1, &ids, &n, &e)) {
        rc = lib_error(a.cmd, &e);
        goto done;
    }
    if (n >= o.p.n_ctx) {
        fprintf(stderr, "kvcodec run: error: the prompt has %d tokens; -c %d leaves no room to generate\n", n, o.p.n_ctx);
        rc = 1;
        goto done;
    }
    cand = malloc(sizeof *cand * (size_t)in->n_vocab);
    if (!cand) { fprintf(stderr, "kvcodec run: error: out of memory\n"); rc = 1; goto done; }
    if (echo) fputs(prompt, stdout);
    fflush(stdout);
    double t0 = now_sec();
    for (int i = 0; i < n; i += o.p.n_batch) {
        int nb = n - i < o.p.n_batch ? n - i : o.p.n_batch;
        if (kvc_eval(c, ids + i, nb, 0, &e)) { rc = lib_error(a.cmd, &e); goto done; }
    }
    double t1 = now_sec();
    int gen = 0;
    uint64_t rng = seed;
    char piece[256];
    for (; gen < n_predict; gen++) {
        int tok = kvc_sample(kvc_get_logits(c), in->n_vocab, &(struct kvc_sampling){temp, top_k, top_p}, &rng, cand);
        if (kvc_token_is_eog(m, tok)) break;
        int len = kvc_token_to_text(m, tok, piece, sizeof piece);
        fwrite(piece, 1, (size_t)len, stdout);
        fflush(stdout);
        if (gen + 1 == n_predict) { gen++; break; }
        if (kvc_ctx_n_past(c) >= o.p.n_ctx) {
            fprintf(stderr, "\nkvcodec run: context full (-c %d); stopping\n", o.p.n_ctx);
            gen++;
            break;
        }
        int32_t t32 = tok;
        if (kvc_eval(c, &t32, 1, 0, &e)) { rc = lib_error(a.cmd, &e); goto done; }
    }
    double t2 = now_sec();
    printf("\n");
    struct kvc_kv_info kv;
    kvc_ctx_kv_info(c, &kv);
    fprintf(stderr, "kvcodec run: prompt %d tokens, %.1f t/s; generated %d tokens, %.1f t/s; KV %s/%s %.2f bits/element\n",
            n, n / (t1 - t0), gen, gen > 1 ? (gen - 1) / (t2 - t1) : 0.0, kv.spec_k, kv.spec_v,
            kv.bits_per_element);
done:
    free(cand);
    free(ids);
    kvc_ctx_free(c);
    kvc_model_free(m);
    return rc;
}
