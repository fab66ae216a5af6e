/* cmd_logits.c - `kvcodec logits`: the top-K logits at every position of a text and the whole
 * row after its last token, in the JSON layout of ../shared/reference/logits-*.json (how
 * kvcodec is compared with another engine position by position). Works with any KV codec. */
#include "cli.h"

#include <math.h>

#include <stdlib.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec logits [-m MODEL] (-p TEXT | -f FILE) [--top K] [--json] [options]\n\n"
            "Evaluates the text in one pass (batches of -b) and prints, for every position, the K\n"
            "highest logits (id and value) and the probability of the top token; with --json the\n"
            "layout of llama.cpp reference dumps: tokens, top10 (or topK), top1_prob, full_logits_last.\n"
            "  -p, --prompt TEXT  text (BOS first when the vocabulary adds it)\n"
            "  -f, --file FILE    the contents of FILE instead\n"
            "  --top K            ids per position (default 10)\n"
            "  --no-bos           do not add BOS\n"
            "  --special          parse control tokens written in the text (<|im_start|>, ...)\n"
            "  --json             JSON output (default: one line per position)\n"
            "The context is enlarged to the text's length when -c is smaller.\n");
    ctx_opts_help(f, 1);
}

/* A JSON number, null when not finite (jansson has no NaN). */
static json_t *num(float x) { return isfinite(x) ? json_real(x) : json_null(); }

int cmd_logits(int argc, char **argv) {
    struct args a = {argc, 1, argv, "logits"};
    struct ctx_opts o;
    ctx_opts_init(&o);
    const char *text = NULL, *file = NULL;
    int top = 10, json = 0, bos = 1, special = 0;
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        int r = ctx_opts_parse(&o, &a);
        if (r < 0) return 2;
        if (r) continue;
        if (arg_str(&a, "-p", "--prompt", &text) || arg_str(&a, "-f", "--file", &file) ||
            arg_int(&a, "--top", NULL, 1, 1 << 20, &top))
            continue;
        if (arg_flag(&a, "--json")) { json = 1; continue; }
        if (arg_flag(&a, "--no-bos")) { bos = 0; continue; }
        if (arg_flag(&a, "--special")) { special = 1; continue; }
        return arg_unknown(&a);
    }
    if (!text == !file) return usage_error(a.cmd, "give exactly one of -p TEXT or -f FILE");
    size_t len = 0;
    char *buf = NULL;
    if (file) {
        if (!(buf = read_file(a.cmd, file, &len))) return 1;
        text = buf;
    } else {
        len = strlen(text);
    }
    kvc_model *m;
    if (load_model(a.cmd, o.model, o.load_flags, &m)) { free(buf); return 1; }
    const struct kvc_model_info *in = kvc_model_get_info(m);
    kvc_error e = {0};
    kvc_ctx *c = NULL;
    int32_t *ids = NULL;
    int n = 0, rc = 0;
    struct kvc_logits_report rep = {0};
    if (kvc_vocab_tokenize(kvc_model_vocab(m), text, len, bos, special, &ids, &n, &e)) { rc = lib_error(a.cmd, &e); goto done; }
    if (n == 0) { fprintf(stderr, "kvcodec logits: error: the text gives no tokens\n"); rc = 1; goto done; }
    if (o.p.n_ctx < n) o.p.n_ctx = n;
    if (kvc_ctx_create(m, &o.p, &c, &e) || kvc_logits_collect(c, ids, n, top, &rep, &e)) {
        rc = lib_error(a.cmd, &e);
        goto done;
    }
    if (json) {
        json_t *jo = json_object(), *jt = json_array(), *jk = json_array(), *j1 = json_array(), *jl = json_array();
        json_object_set_new(jo, "model", kvc_json_str(in->name[0] ? in->name : (o.model ? o.model : default_model_path())));
        json_object_set_new(jo, "source", json_string("kvcodec"));
        json_object_set_new(jo, "add_bos", json_boolean(bos));
        json_object_set_new(jo, "n_vocab", json_integer(in->n_vocab));
        json_object_set_new(jo, "kv_k", kvc_json_str(o.p.kv_k));
        json_object_set_new(jo, "kv_v", kvc_json_str(o.p.kv_v));
        for (int i = 0; i < n; i++) json_array_append_new(jt, json_integer(ids[i]));
        json_object_set_new(jo, "tokens", jt);
        for (int i = 0; i < n; i++) {
            json_t *row = json_array();
            for (int k = 0; k < top; k++)
                json_array_append_new(row, json_pack("[i, o]", rep.top_ids[(size_t)i * top + k],
                                                     num(rep.top_logits[(size_t)i * top + k])));
            json_array_append_new(jk, row);
        }
        char key[32];
        snprintf(key, sizeof key, "top%d", top);
        json_object_set_new(jo, key, jk);
        for (int i = 0; i < n; i++) json_array_append_new(j1, num(rep.top1_prob[i]));
        json_object_set_new(jo, "top1_prob", j1);
        for (int j = 0; j < in->n_vocab; j++) json_array_append_new(jl, num(rep.last[j]));
        json_object_set_new(jo, "full_logits_last", jl);
        if (json_dumpf(jo, stdout, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6))) rc = 1;
        putchar('\n');
        json_decref(jo);
    } else {
        char piece[256];
        for (int i = 0; i < n; i++) {
            int k = kvc_token_to_text(m, ids[i], piece, (int)sizeof piece - 1);
            piece[k] = 0;
            printf("%5d %7d ", i, ids[i]);
            json_str(stdout, piece);
            printf(" p1=%.4f:", rep.top1_prob[i]);
            for (int t = 0; t < top; t++)
                printf(" %d:%.4f", rep.top_ids[(size_t)i * top + t], rep.top_logits[(size_t)i * top + t]);
            printf("\n");
        }
    }
done:
    kvc_logits_report_free(&rep);
    free(ids);
    free(buf);
    kvc_ctx_free(c);
    kvc_model_free(m);
    return rc;
}
