/* cmd_ppl.c - `kvcodec ppl`: parses the flags, runs kvc_perplexity (src/eval/ppl.c: chunks
 * as llama.cpp's perplexity tool, and with --compare the same chunks through an f16 cache: PPL
 * change, KL divergence, top-1 agreement), draws progress from its callback and prints. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec ppl [-m MODEL] -f TEXT [-c CTX] [--chunks N] [options]\n\n"
            "Perplexity over non-overlapping chunks of CTX tokens (first token of each chunk = BOS,\n"
            "only the second half of each chunk scored), as llama.cpp's llama-perplexity.\n"
            "  -f, --file FILE      text to evaluate\n"
            "  --chunks N           evaluate the first N chunks (default: all)\n"
            "  --compare            also run an f16/f16 cache on the same chunks and report PPL change,\n"
            "                       KL divergence and top-1 agreement (default when a codec is not f16)\n"
            "  --no-compare         do not\n"
            "  --json               print one JSON object with all figures on stdout\n"
            "  -q, --quiet          no per-chunk progress on stderr\n");
    ctx_opts_help(f, 1);
}

struct progress {
    const char *file;
    int quiet, chunks_asked, ctx;
};

static void on_progress(void *user, const struct kvc_ppl_progress *p) {
    const struct progress *u = user;
    if (p->chunk == 0) {
        if (u->chunks_asked > p->n_chunks_available)
            fprintf(stderr, "kvcodec ppl: %s has only %d chunks of %d tokens; using %d\n", u->file,
                    p->n_chunks_available, u->ctx, p->n_chunks);
        if (!u->quiet)
            fprintf(stderr, "kvcodec ppl: %s: %d tokens, %d chunks of %d (%d scored each), KV %s/%s (%.2f bits/element)%s\n",
                    u->file, p->n_tokens_text, p->n_chunks, u->ctx, p->per_chunk, p->kv->spec_k, p->kv->spec_v,
                    p->kv->bits_per_element, p->compare ? ", compared with f16/f16" : "");
        return;
    }
    if (u->quiet) return;
    fprintf(stderr, "[%d/%d] ppl %.4f", p->chunk, p->n_chunks, p->ppl);
    if (p->compare) fprintf(stderr, "  base %.4f  kld %.5f  top1 %.4f", p->ppl_base, p->kld_mean, p->top1);
    fprintf(stderr, "  (%.1f s)\n", p->chunk_seconds);
}

/* The command; with out != NULL the result goes to *out as a JSON value instead of stdout. */
static int run_ppl(int argc, char **argv, json_t **out) {
    struct args a = {argc, 1, argv, "ppl"};
    struct ctx_opts o;
    ctx_opts_init(&o);
    struct kvc_ppl_params pp = kvc_ppl_default_params();
    const char *file = NULL;
    int json = 0, quiet = 0;
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        int r = ctx_opts_parse(&o, &a);
        if (r < 0) return 2;
        if (r) continue;
        if (arg_str(&a, "-f", "--file", &file) || arg_int(&a, "--chunks", NULL, 1, 1 << 24, &pp.chunks)) continue;
        if (arg_flag(&a, "--json")) { json = 1; continue; }
        if (arg_flag(&a, "-q") || arg_flag(&a, "--quiet")) { quiet = 1; continue; }
        if (arg_flag(&a, "--compare")) { pp.compare = 1; continue; }
        if (arg_flag(&a, "--no-compare")) { pp.compare = 0; continue; }
        return arg_unknown(&a);
    }
    if (!file) return usage_error(a.cmd, "-f TEXT is required");
    if (o.p.n_ctx < 4) return usage_error(a.cmd, "-c %d: perplexity needs at least 4 tokens per chunk", o.p.n_ctx);
    size_t len;
    char *text = read_file(a.cmd, file, &len);
    if (!text) return 1;
    kvc_model *m;
    if (load_model(a.cmd, o.model, o.load_flags, &m)) { free(text); return 1; }
    struct progress pg = {file, quiet, pp.chunks, o.p.n_ctx};
    pp.ctx = o.p;
    pp.progress = on_progress;
    pp.user = &pg;
    struct kvc_ppl_result r;
    kvc_error e = {0};
    int rc = 0;
    if (kvc_perplexity(m, text, len, &pp, &r, &e)) {
        if (e.status == KVC_ERR_RANGE) { /* the text is too short: name it */
            fprintf(stderr, "kvcodec ppl: error: %s: %s\n", file, e.msg);
            rc = 1;
        } else {
            rc = lib_error(a.cmd, &e);
        }
    } else if (out || json) {
        char *js = kvc_ppl_json(&r, o.model ? o.model : default_model_path(), file);
        json_error_t je;
        if (js && out) {
            if (!(*out = json_loads(js, 0, &je))) rc = 1;
        } else if (js) {
            printf("%s\n", js);
        }
        if (!js || rc) { fprintf(stderr, "kvcodec ppl: error: out of memory writing JSON\n"); rc = 1; }
        kvc_free(js);
    } else {
        printf("PPL = %.4f +/- %.5f  (%ld tokens scored, %d chunks of %d)\n", r.ppl, r.ppl_stderr, r.n_scored, r.chunks, r.ctx);
        printf("KV %s / %s: %.3f / %.3f bits per element, %.1f bytes per token\n", r.kv.spec_k, r.kv.spec_v,
               r.kv.bits_k, r.kv.bits_v, r.kv.bytes_per_token);
        if (r.compared)
            printf("vs f16/f16: base PPL %.4f, change %+.3f %%, KLD mean %.6f +/- %.6f, KLD p99 %.6f, top-1 agreement %.4f\n",
                   r.ppl_base, r.ppl_change_pct, r.kld_mean, r.kld_stderr, r.kld_p99, r.top1_agree);
        printf("time: %.1f s\n", r.seconds);
    }
    free(text);
    kvc_model_free(m);
    return rc;
}

int cmd_ppl(int argc, char **argv) { return run_ppl(argc, argv, NULL); }
int cmd_ppl_json(int argc, char **argv, json_t **out) {
    *out = NULL;
    return run_ppl(argc, argv, out);
}
