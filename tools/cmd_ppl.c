/* cmd_ppl.c - `kvcodec ppl`: perplexity as llama.cpp's perplexity tool computes it (whole file
 * tokenized with BOS, non-overlapping chunks of -c tokens, each starting with BOS, second half
 * scored), and, with --compare, the same chunks through an f16 cache in the same run: PPL
 * change, KL divergence (mean, 99th percentile) and top-1 agreement of the codec's cache. */
#include "cli.h"

#include <math.h>
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

/* log-softmax of x (n) into out; returns the argmax. */
static int log_softmax(const float *x, int n, float *out) {
    int am = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[am]) am = i;
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - x[am]);
    double lse = x[am] + log(s);
    for (int i = 0; i < n; i++) out[i] = (float)(x[i] - lse);
    return am;
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Accumulated figures of one pass (base or test) over the scored tokens. */
struct scorer {
    int nv, first, is_test;
    const int32_t *tok;      /* this chunk's tokens */
    double nll, nll2;        /* sums of -log p(next) and its square */
    float *lp;               /* (n_vocab) scratch log-probs */
    float *base_lp;          /* (n_scored_per_chunk, n_vocab) base log-probs of this chunk */
    int *base_top;           /* (n_scored_per_chunk) base argmax */
    double *kld;             /* (all scored tokens) per-token KLD, test pass only */
    long n_kld, n_top1;
    double kld_sum;
};

static void score_pos(struct scorer *s, int j, const float *logits) {
    int r = j - s->first;
    float *lp = s->is_test ? s->lp : s->base_lp + (size_t)r * s->nv;
    int am = log_softmax(logits, s->nv, lp);
    double nll = -(double)lp[s->tok[j + 1]];
    s->nll += nll;
    s->nll2 += nll * nll;
    if (!s->is_test) {
        s->base_top[r] = am;
    } else if (s->base_lp) {
        const float *bl = s->base_lp + (size_t)r * s->nv;
        double kl = 0;
        for (int i = 0; i < s->nv; i++) {
            double pb = exp((double)bl[i]);
            kl += pb * ((double)bl[i] - lp[i]);
        }
        s->kld[s->n_kld++] = kl;
        s->kld_sum += kl;
        s->n_top1 += am == s->base_top[r];
    }
}

/* Evaluate one chunk (tok, n_ctx tokens; tok[0] replaced by BOS when bos >= 0) and score its
 * second half. */
static kvc_status eval_chunk(kvc_ctx *c, int32_t *tok, int n_ctx, int n_batch, int bos,
                             struct scorer *s, kvc_error *e) {
    kvc_ctx_reset(c);
    s->tok = tok;
    for (int i = 0; i < n_ctx; i += n_batch) {
        int nb = n_ctx - i < n_batch ? n_ctx - i : n_batch;
        int32_t save = tok[i];
        if (i == 0 && bos >= 0) tok[0] = bos;
        kvc_status st = kvc_eval(c, tok + i, nb, i + nb > s->first, e);
        tok[i] = save;
        if (st) return st;
        if (i + nb <= s->first) continue;
        const float *lg = kvc_get_logits(c);
        for (int j = i > s->first ? i : s->first; j < i + nb && j < n_ctx - 1; j++)
            score_pos(s, j, lg + (size_t)(j - i) * s->nv);
    }
    return KVC_OK;
}

static double ppl_of(double nll, long n) { return exp(nll / (double)n); }
static double ppl_stderr(double nll, double nll2, long n) {
    double mean = nll / n, var = nll2 / n - mean * mean;
    return var > 0 && n > 1 ? sqrt(var / (n - 1)) * exp(mean) : 0;
}

int cmd_ppl(int argc, char **argv) {
    struct args a = {argc, 1, argv, "ppl"};
    struct ctx_opts o;
    ctx_opts_init(&o);
    const char *file = NULL;
    int chunks = 0, json = 0, quiet = 0, compare = -1;
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        int r = ctx_opts_parse(&o, &a);
        if (r < 0) return 2;
        if (r) continue;
        if (arg_str(&a, "-f", "--file", &file) || arg_int(&a, "--chunks", NULL, 1, 1 << 24, &chunks)) continue;
        if (arg_flag(&a, "--json")) { json = 1; continue; }
        if (arg_flag(&a, "-q") || arg_flag(&a, "--quiet")) { quiet = 1; continue; }
        if (arg_flag(&a, "--compare")) { compare = 1; continue; }
        if (arg_flag(&a, "--no-compare")) { compare = 0; continue; }
        return arg_unknown(&a);
    }
    if (!file) return usage_error(a.cmd, "-f TEXT is required");
    if (o.p.n_ctx < 4) return usage_error(a.cmd, "-c %d: perplexity needs at least 4 tokens per chunk", o.p.n_ctx);
    if (compare < 0)
        compare = strcmp(o.p.kv_k, "f16") != 0 || strcmp(o.p.kv_v, "f16") != 0 || o.p.kv_sinks || o.p.kv_recent;
    size_t len;
    char *text = read_file(a.cmd, file, &len);
    if (!text) return 1;
    kvc_model *m;
    if (load_model(a.cmd, o.model, &m)) { free(text); return 1; }
    const struct kvc_model_info *in = kvc_model_get_info(m);
    /* as llama-perplexity: chunks start with BOS only when the vocabulary adds BOS (SmolLM2,
     * Qwen2 do not: their chunks start with the text's own token) */
    struct kvc_vocab_info vi;
    kvc_vocab_get_info(kvc_model_vocab(m), &vi);
    const int chunk_bos = vi.add_bos ? in->bos_id : -1;
    kvc_error e = {0};
    int rc = 0, n_tok = 0;
    int32_t *tok = NULL;
    kvc_ctx *ct = NULL, *cb = NULL;
    struct scorer st = {0}, sb = {0};
    double t0 = now_sec();
    if (kvc_tokenize(m, text, len, 1, &tok, &n_tok, &e)) { rc = lib_error(a.cmd, &e); goto done; }
    int n_ctx = o.p.n_ctx, max_chunks = n_tok / n_ctx;
    if (max_chunks == 0) {
        fprintf(stderr, "kvcodec ppl: error: %s has %d tokens, fewer than one chunk of -c %d\n", file, n_tok, n_ctx);
        rc = 1;
        goto done;
    }
    if (chunks == 0 || chunks > max_chunks) {
        if (chunks > max_chunks)
            fprintf(stderr, "kvcodec ppl: %s has only %d chunks of %d tokens; using %d\n", file, max_chunks, n_ctx, max_chunks);
        chunks = max_chunks;
    }
    if (kvc_ctx_create(m, &o.p, &ct, &e)) { rc = lib_error(a.cmd, &e); goto done; }
    int first = n_ctx / 2, per_chunk = n_ctx - first - 1;
    long total = (long)per_chunk * chunks;
    st = (struct scorer){.nv = in->n_vocab, .first = first, .is_test = 1};
    st.lp = malloc(sizeof(float) * (size_t)in->n_vocab);
    if (!st.lp) { fprintf(stderr, "kvcodec ppl: error: out of memory\n"); rc = 1; goto done; }
    if (compare) {
        struct kvc_ctx_params bp = o.p;
        bp.kv_k = bp.kv_v = "f16";
        bp.kv_sinks = bp.kv_recent = 0;
        bp.kv_calib = NULL;
        if (kvc_ctx_create(m, &bp, &cb, &e)) { rc = lib_error(a.cmd, &e); goto done; }
        sb = (struct scorer){.nv = in->n_vocab, .first = first, .is_test = 0};
        sb.base_lp = malloc(sizeof(float) * (size_t)in->n_vocab * (size_t)per_chunk);
        sb.base_top = malloc(sizeof(int) * (size_t)per_chunk);
        st.kld = malloc(sizeof(double) * (size_t)total);
        if (!sb.base_lp || !sb.base_top || !st.kld) { fprintf(stderr, "kvcodec ppl: error: out of memory\n"); rc = 1; goto done; }
        st.base_lp = sb.base_lp;
        st.base_top = sb.base_top;
    }
    struct kvc_kv_info kv;
    kvc_ctx_kv_info(ct, &kv);
    if (!quiet)
        fprintf(stderr, "kvcodec ppl: %s: %d tokens, %d chunks of %d (%d scored each), KV %s/%s (%.2f bits/element)%s\n",
                file, n_tok, chunks, n_ctx, per_chunk, kv.spec_k, kv.spec_v, kv.bits_per_element,
                compare ? ", compared with f16/f16" : "");
    for (int ci = 0; ci < chunks; ci++) {
        int32_t *ch = tok + (size_t)ci * n_ctx;
        double tc = now_sec();
        if (compare && eval_chunk(cb, ch, n_ctx, o.p.n_batch, chunk_bos, &sb, &e)) { rc = lib_error(a.cmd, &e); goto done; }
        if (eval_chunk(ct, ch, n_ctx, o.p.n_batch, chunk_bos, &st, &e)) { rc = lib_error(a.cmd, &e); goto done; }
        if (!quiet) {
            long n = (long)per_chunk * (ci + 1);
            fprintf(stderr, "[%d/%d] ppl %.4f", ci + 1, chunks, ppl_of(st.nll, n));
            if (compare)
                fprintf(stderr, "  base %.4f  kld %.5f  top1 %.4f", ppl_of(sb.nll, n),
                        st.kld_sum / (double)st.n_kld, (double)st.n_top1 / (double)st.n_kld);
            fprintf(stderr, "  (%.1f s)\n", now_sec() - tc);
        }
    }
    double ppl = ppl_of(st.nll, total), ppl_se = ppl_stderr(st.nll, st.nll2, total);
    double ppl_b = 0, kld_mean = 0, kld_p99 = 0, top1 = 0, kld_se = 0;
    if (compare) {
        ppl_b = ppl_of(sb.nll, total);
        double s = 0, s2 = 0;
        for (long i = 0; i < st.n_kld; i++) { s += st.kld[i]; s2 += st.kld[i] * st.kld[i]; }
        kld_mean = s / st.n_kld;
        kld_se = st.n_kld > 1 ? sqrt(fmax(0, s2 / st.n_kld - kld_mean * kld_mean) / (st.n_kld - 1)) : 0;
        qsort(st.kld, (size_t)st.n_kld, sizeof(double), cmp_dbl);
        double pos = 0.99 * (double)(st.n_kld - 1);
        long lo = (long)pos;
        double fr = pos - lo;
        kld_p99 = st.kld[lo] + (lo + 1 < st.n_kld ? fr * (st.kld[lo + 1] - st.kld[lo]) : 0);
        top1 = (double)st.n_top1 / (double)st.n_kld;
    }
    double secs = now_sec() - t0;
    if (json) {
        printf("{\"model\": ");
        json_str(stdout, o.model ? o.model : default_model_path());
        printf(", \"file\": ");
        json_str(stdout, file);
        printf(", \"ctx\": %d, \"chunks\": %d, \"n_tokens\": %ld, \"ppl\": %.6f, \"ppl_stderr\": %.6f",
               n_ctx, chunks, total, ppl, ppl_se);
        printf(", \"kv_k\": ");
        json_str(stdout, kv.spec_k);
        printf(", \"kv_v\": ");
        json_str(stdout, kv.spec_v);
        printf(", \"kv_sinks\": %d, \"kv_recent\": %d, \"bits_k\": %.4f, \"bits_v\": %.4f, \"bits_per_element\": %.4f, \"kv_bytes_per_token\": %.1f",
               kv.sinks, kv.recent, kv.bits_k, kv.bits_v, kv.bits_per_element, kv.bytes_per_token);
        if (compare)
            printf(", \"ppl_base\": %.6f, \"ppl_change_pct\": %.4f, \"kld_mean\": %.6f, \"kld_stderr\": %.6f, \"kld_p99\": %.6f, \"top1_agree\": %.6f",
                   ppl_b, 100.0 * (ppl / ppl_b - 1), kld_mean, kld_se, kld_p99, top1);
        printf(", \"seconds\": %.2f}\n", secs);
    } else {
        printf("PPL = %.4f +/- %.5f  (%ld tokens scored, %d chunks of %d)\n", ppl, ppl_se, total, chunks, n_ctx);
        printf("KV %s / %s: %.3f / %.3f bits per element, %.1f bytes per token\n", kv.spec_k, kv.spec_v,
               kv.bits_k, kv.bits_v, kv.bytes_per_token);
        if (compare)
            printf("vs f16/f16: base PPL %.4f, change %+.3f %%, KLD mean %.6f +/- %.6f, KLD p99 %.6f, top-1 agreement %.4f\n",
                   ppl_b, 100.0 * (ppl / ppl_b - 1), kld_mean, kld_se, kld_p99, top1);
        printf("time: %.1f s\n", secs);
    }
done:
    free(st.lp);
    free(st.kld);
    free(sb.base_lp);
    free(sb.base_top);
    kvc_ctx_free(ct);
    kvc_ctx_free(cb);
    free(tok);
    free(text);
    kvc_model_free(m);
    return rc;
}
