/* cmd_run.c - `kvcodec run`: prefill a prompt in batches, then sample tokens one by one
 * (greedy at --temp 0; else temperature, top-k, top-p) and stream them to stdout. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec run [-m MODEL] [-p PROMPT] [-n N] [options]\n\n"
            "Streams the continuation of PROMPT (written after the prompt on stdout); speed on stderr.\n"
            "  -p, --prompt TEXT    prompt (default \"Once upon a time\"); BOS is added\n"
            "  -n, --n-predict N    tokens to generate (default 128); stops early at EOS\n"
            "  --temp T             temperature; 0 = greedy (default 0.8)\n"
            "  --top-k K            keep the K most likely tokens, 0 = all (default 40)\n"
            "  --top-p P            keep the smallest set with probability >= P (default 0.95)\n"
            "  --seed S             sampling seed (default 42)\n"
            "  --no-prompt          do not echo the prompt\n");
    ctx_opts_help(f, 1);
}

struct cand {
    int id;
    float p;
};

static int cand_cmp(const void *a, const void *b) {
    float x = ((const struct cand *)a)->p, y = ((const struct cand *)b)->p;
    return x < y ? 1 : x > y ? -1 : ((const struct cand *)a)->id - ((const struct cand *)b)->id;
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Pick the next token from logits (n_vocab). cand is scratch of n_vocab entries. */
static int sample(const float *logits, int nv, double temp, int top_k, double top_p,
                  uint64_t *rng, struct cand *cand) {
    int best = 0;
    for (int i = 1; i < nv; i++)
        if (logits[i] > logits[best]) best = i;
    if (temp <= 0) return best;
    for (int i = 0; i < nv; i++) cand[i] = (struct cand){i, (float)((logits[i] - logits[best]) / temp)};
    qsort(cand, (size_t)nv, sizeof *cand, cand_cmp);
    int n = top_k > 0 && top_k < nv ? top_k : nv;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += (cand[i].p = expf(cand[i].p));
    double cum = 0;
    int keep = n;
    for (int i = 0; i < n; i++) {
        cum += cand[i].p / sum;
        if (cum >= top_p) { keep = i + 1; break; }
    }
    double tot = 0;
    for (int i = 0; i < keep; i++) tot += cand[i].p;
    double r = (double)(rng_next(rng) >> 11) / 9007199254740992.0 * tot;
    for (int i = 0; i < keep; i++) {
        r -= cand[i].p;
        if (r < 0) return cand[i].id;
    }
    return cand[keep - 1].id;
}

int cmd_run(int argc, char **argv) {
    struct args a = {argc, 1, argv, "run"};
    struct ctx_opts o;
    ctx_opts_init(&o);
    const char *prompt = "Once upon a time";
    int n_predict = 128, top_k = 40, echo = 1;
    double temp = 0.8, top_p = 0.95;
    uint64_t seed = 42;
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        int r = ctx_opts_parse(&o, &a);
        if (r < 0) return 2;
        if (r) continue;
        if (arg_str(&a, "-p", "--prompt", &prompt) || arg_int(&a, "-n", "--n-predict", 0, 1 << 24, &n_predict) ||
            arg_dbl(&a, "--temp", 0, 100, &temp) || arg_int(&a, "--top-k", NULL, 0, 1 << 24, &top_k) ||
            arg_dbl(&a, "--top-p", 0, 1, &top_p) || arg_u64(&a, "--seed", &seed))
            continue;
        if (arg_flag(&a, "--no-prompt")) { echo = 0; continue; }
        return arg_unknown(&a);
    }
    kvc_model *m;
    if (load_model(a.cmd, o.model, &m)) return 1;
    const struct kvc_model_info *in = kvc_model_get_info(m);
    kvc_error e = {0};
    kvc_ctx *c = NULL;
    int32_t *ids = NULL;
    struct cand *cand = NULL;
    int n = 0, rc = 0;
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
        int tok = sample(kvc_get_logits(c), in->n_vocab, temp, top_k, top_p, &rng, cand);
        if (tok == in->eos_id) break;
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
