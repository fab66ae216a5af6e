/* test_engine.c - the forward pass against llama.cpp's reference dumps: stories260K's greedy
 * 200-token continuation (exact text), logits of kvref-f16 and stories260K position by
 * position (top-10 and all logits at the last position), batch vs token-by-token decode,
 * every ISA level vs scalar, and the engine's error paths (context full, bad ids, bad specs). */
#include "json.h"
#include "kvcodec.h"
#include "test.h"

#include <math.h>
#include <stdint.h>

static kvc_model *load(const char *rel) {
    const char *p = shared_path(rel);
    if (!p) return NULL;
    kvc_model *m = NULL;
    kvc_error e = {0};
    kvc_status st = kvc_model_load(p, &m, &e);
    CHECK(st == KVC_OK, "load %s: %s", p, e.msg);
    return m;
}

static kvc_ctx *mkctx(kvc_model *m, int n_ctx, int n_batch, int isa, const char *kk, const char *kv) {
    struct kvc_ctx_params p = kvc_ctx_default_params();
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.isa = isa;
    p.kv_k = kk;
    p.kv_v = kv;
    kvc_ctx *c = NULL;
    kvc_error e = {0};
    kvc_status st = kvc_ctx_create(m, &p, &c, &e);
    CHECK(st == KVC_OK, "ctx create: %s", e.msg);
    return c;
}

static void test_greedy_stories(void) {
    kvc_model *m = load("models/stories260K.gguf");
    const char *rp = shared_path("reference/stories260K-greedy.json");
    if (!m || !rp) { kvc_model_free(m); return; }
    struct jnode ref;
    CHECK(j_load(rp, &ref) == 0, "parse %s", rp);
    const char *want = j_get(&ref, "continuation")->str;
    kvc_ctx *c = mkctx(m, 512, 512, -1, "f16", "f16");
    int32_t *ids = NULL;
    int n = 0;
    kvc_error e = {0};
    CHECK(kvc_tokenize(m, "Once upon a time", 16, 1, &ids, &n, &e) == KVC_OK, "tokenize: %s", e.msg);
    CHECK(kvc_eval(c, ids, n, 0, &e) == KVC_OK, "eval prompt: %s", e.msg);
    const struct kvc_model_info *in = kvc_model_get_info(m);
    char out[8192];
    size_t len = 0;
    for (int i = 0; i < 200; i++) {
        const float *lg = kvc_get_logits(c);
        int best = 0;
        for (int j = 1; j < in->n_vocab; j++)
            if (lg[j] > lg[best]) best = j;
        len += (size_t)kvc_token_to_text(m, best, out + len, (int)(sizeof out - len - 1));
        int32_t t = best;
        if (i < 199 && kvc_eval(c, &t, 1, 0, &e) != KVC_OK) { CHECK(0, "eval: %s", e.msg); break; }
    }
    out[len] = 0;
    CHECK(strcmp(out, want) == 0, "greedy continuation differs:\n got: %s\nwant: %s", out, want);
    free(ids);
    kvc_ctx_free(c);
    kvc_model_free(m);
    j_free(&ref);
}

/* Logits of the reference text against llama.cpp's dump. */
static void test_logits(const char *model_rel, const char *ref_rel, double tol_top, double tol_last) {
    kvc_model *m = load(model_rel);
    const char *rp = shared_path(ref_rel);
    if (!m || !rp) { kvc_model_free(m); return; }
    struct jnode ref;
    CHECK(j_load(rp, &ref) == 0, "parse %s", rp);
    struct jnode *toks = j_get(&ref, "tokens"), *top = j_get(&ref, "top10"), *last = j_get(&ref, "full_logits_last");
    int n = toks->n;
    int32_t *ids = malloc(sizeof *ids * (size_t)n);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)toks->kids[i].num;
    /* our tokenizer must give the same tokens for the text */
    struct jnode *text = j_get(&ref, "text");
    if (text && text->t == J_STR) {
        int32_t *ours = NULL;
        int no = 0;
        kvc_error e = {0};
        kvc_tokenize(m, text->str, strlen(text->str), 1, &ours, &no, &e);
        int same = no >= n;
        for (int i = 0; same && i < n; i++) same = ours[i] == ids[i];
        CHECK(same, "%s: tokenizer disagrees with the dump's tokens", ref_rel);
        free(ours);
    }
    const struct kvc_model_info *in = kvc_model_get_info(m);
    kvc_ctx *c = mkctx(m, n, n, -1, "f16", "f16");
    kvc_error e = {0};
    CHECK(kvc_eval(c, ids, n, 1, &e) == KVC_OK, "eval: %s", e.msg);
    const float *lg = kvc_get_logits(c);
    double worst = 0;
    int top1_bad = 0;
    for (int i = 0; i < n; i++) {
        struct jnode *row = &top->kids[i];
        const float *l = lg + (size_t)i * in->n_vocab;
        int best = 0;
        for (int j = 1; j < in->n_vocab; j++)
            if (l[j] > l[best]) best = j;
        int ref_best = (int)row->kids[0].kids[0].num;
        double margin = row->kids[0].kids[1].num - row->kids[1].kids[1].num;
        if (best != ref_best && margin > 2 * tol_top) top1_bad++;
        for (int k = 0; k < row->n; k++) {
            int id = (int)row->kids[k].kids[0].num;
            double d = fabs(l[id] - row->kids[k].kids[1].num);
            if (d > worst) worst = d;
        }
    }
    CHECK(top1_bad == 0, "%s: %d positions where the argmax differs from llama.cpp's by a clear margin", ref_rel, top1_bad);
    CHECK(worst <= tol_top, "%s: max |logit - llama.cpp| over the top-10 of %d positions = %.4f > %.4f", ref_rel, n, worst, tol_top);
    float *ll = malloc(sizeof(float) * (size_t)in->n_vocab);
    for (int j = 0; j < in->n_vocab; j++) ll[j] = (float)last->kids[j].num;
    check_tensor("last-position logits vs llama.cpp", lg + (size_t)(n - 1) * in->n_vocab, ll, in->n_vocab, tol_last, 0);
    printf("%s: max |diff| top-10 logits %.4f over %d positions\n", ref_rel, worst, n);
    /* token-by-token decode gives the same logits as one batch */
    kvc_ctx *c1 = mkctx(m, n, 7, -1, "f16", "f16");
    float *seq = malloc(sizeof(float) * (size_t)in->n_vocab);
    int npos = n < 40 ? n : 40;
    double wd = 0;
    for (int i = 0; i < npos; i++) {
        kvc_eval(c1, ids + i, 1, 0, &e);
        memcpy(seq, kvc_get_logits(c1), sizeof(float) * (size_t)in->n_vocab);
        for (int j = 0; j < in->n_vocab; j++) wd = fmax(wd, fabs(seq[j] - lg[(size_t)i * in->n_vocab + j]));
    }
    /* AVX-512 weight tiles sum in a different order for T = 1 and T > 1 (f32 rounding,
     * amplified through the layers: up to ~2e-3 on logits of magnitude ~10); the scalar and
     * AVX2 levels give identical logits, which the ISA comparison below checks more tightly. */
    CHECK(wd < 5e-3, "batch vs one-by-one decode: max |diff| %.2g", wd);
    /* every ISA level vs scalar */
    int ns = n < 32 ? n : 32; /* scalar kernels are slow: the first 32 positions */
    kvc_ctx *cs = mkctx(m, ns, ns, 0, "f16", "f16");
    CHECK(kvc_eval(cs, ids, ns, 1, &e) == KVC_OK, "scalar eval: %s", e.msg);
    check_tensor("best ISA vs scalar logits", lg, kvc_get_logits(cs), (long)ns * in->n_vocab, 1e-2, 1e-3);
    kvc_ctx_free(cs);
    kvc_ctx_free(c1);
    free(seq);
    free(ll);
    free(ids);
    kvc_ctx_free(c);
    kvc_model_free(m);
    j_free(&ref);
}

/* kvc_ctx_truncate: a cache truncated to k positions then fed B gives the logits of a fresh
 * cache fed A[:k] + B; out-of-range n and a recent window are refused. */
static void test_truncate(void) {
    kvc_model *m = load("models/stories260K.gguf");
    if (!m) return;
    kvc_error e = {0};
    int32_t a[48], b[8];
    for (int i = 0; i < 48; i++) a[i] = 1 + (i * 37) % 500;
    for (int i = 0; i < 8; i++) b[i] = 3 + (i * 91) % 500;
    const int V = kvc_model_get_info(m)->n_vocab;
    kvc_ctx *c = mkctx(m, 64, 48, -1, "f16", "f16");
    kvc_ctx *f = mkctx(m, 64, 48, -1, "f16", "f16");
    CHECK(kvc_eval(c, a, 48, 0, &e) == KVC_OK, "%s", e.msg);
    CHECK(kvc_ctx_truncate(c, 49, &e) == KVC_ERR_RANGE, "truncate past n_past refused");
    CHECK(kvc_ctx_truncate(c, 20, &e) == KVC_OK && kvc_ctx_n_past(c) == 20, "truncate to 20: %s", e.msg);
    CHECK(kvc_eval(c, b, 8, 0, &e) == KVC_OK, "%s", e.msg);
    CHECK(kvc_eval(f, a, 20, 0, &e) == KVC_OK && kvc_eval(f, b, 8, 0, &e) == KVC_OK, "%s", e.msg);
    double wd = 0;
    for (int j = 0; j < V; j++) wd = fmax(wd, fabs(kvc_get_logits(c)[j] - kvc_get_logits(f)[j]));
    CHECK(wd == 0, "truncated + 8 tokens vs fresh 20 + 8 tokens: max |logit diff| %.3g", wd);
    kvc_ctx_free(c);
    kvc_ctx_free(f);
    struct kvc_ctx_params p = kvc_ctx_default_params();
    p.n_ctx = 64;
    p.kv_recent = 8;
    kvc_ctx *r = NULL;
    CHECK(kvc_ctx_create(m, &p, &r, &e) == KVC_OK, "%s", e.msg);
    if (r) {
        CHECK(kvc_eval(r, a, 16, 0, &e) == KVC_OK, "%s", e.msg);
        CHECK(kvc_ctx_truncate(r, 16, &e) == KVC_OK, "truncate to n_past is a no-op even with a ring");
        CHECK(kvc_ctx_truncate(r, 10, &e) == KVC_ERR_UNSUPPORTED && strstr(e.msg, "recent"), "ring: %s", e.msg);
    }
    kvc_ctx_free(r);
    kvc_model_free(m);
}

static void test_errors(void) {
    kvc_model *m = load("models/stories260K.gguf");
    if (!m) return;
    kvc_error e = {0};
    kvc_ctx *c = mkctx(m, 8, 4, -1, "f16", "f16");
    int32_t ids[5] = {1, 2, 3, 4, 5};
    CHECK(kvc_eval(c, ids, 5, 0, &e) == KVC_ERR_ARG, "batch over -b must fail");
    CHECK(kvc_eval(c, ids, 4, 0, &e) == KVC_OK, "%s", e.msg);
    CHECK(kvc_eval(c, ids, 4, 0, &e) == KVC_OK, "%s", e.msg);
    CHECK(kvc_eval(c, ids, 1, 0, &e) == KVC_ERR_RANGE && strstr(e.msg, "context full"), "context full: %s", e.msg);
    kvc_ctx_reset(c);
    int32_t bad = 512;
    CHECK(kvc_eval(c, &bad, 1, 0, &e) == KVC_ERR_RANGE && strstr(e.msg, "511"), "token id: %s", e.msg);
    kvc_ctx_free(c);
    struct kvc_ctx_params p = kvc_ctx_default_params();
    p.kv_k = "nosuchcodec";
    kvc_ctx *c2 = NULL;
    CHECK(kvc_ctx_create(m, &p, &c2, &e) == KVC_ERR_ARG && strstr(e.msg, "q8_0"), "bad spec: %s", e.msg);
    CHECK(c2 == NULL, "no context on error");
    p = kvc_ctx_default_params();
    p.kv_k = "q8_0"; /* head dim 8 is not a multiple of 32 */
    CHECK(kvc_ctx_create(m, &p, &c2, &e) != KVC_OK && strstr(e.msg, "32"), "q8_0 on head dim 8: %s", e.msg);
    kvc_model *m2 = NULL;
    CHECK(kvc_model_load("/nonexistent/model.gguf", &m2, &e) == KVC_ERR_IO && strstr(e.msg, "/nonexistent/model.gguf"),
          "missing file: %s", e.msg);
    kvc_ctx_free(NULL);
    kvc_model_free(NULL);
    kvc_model_free(m);
}

/* kvc_model_load_ex(KVC_LOAD_NO_MMAP): the file read into memory gives the same logits as the
 * mapped file, bit for bit; unknown flags and missing files are refused with their name. */
static void test_no_mmap(void) {
    const char *p = shared_path("models/kvref-f16.gguf");
    if (!p) return;
    kvc_model *a = load("models/kvref-f16.gguf"), *b = NULL;
    kvc_error e = {0};
    CHECK(kvc_model_load_ex(p, KVC_LOAD_NO_MMAP, &b, &e) == KVC_OK, "no-mmap load: %s", e.msg);
    if (!a || !b) { kvc_model_free(a); kvc_model_free(b); return; }
    CHECK(kvc_model_get_info(a)->weights_bytes == kvc_model_get_info(b)->weights_bytes, "same tensors");
    int32_t ids[12];
    for (int i = 0; i < 12; i++) ids[i] = 1 + (i * 97) % 4000;
    kvc_ctx *ca = mkctx(a, 16, 16, -1, "f16", "f16"), *cb = mkctx(b, 16, 16, -1, "f16", "f16");
    CHECK(kvc_eval(ca, ids, 12, 1, &e) == KVC_OK && kvc_eval(cb, ids, 12, 1, &e) == KVC_OK, "%s", e.msg);
    const long n = 12L * kvc_model_get_info(a)->n_vocab;
    long differ = 0;
    for (long i = 0; i < n; i++) differ += kvc_get_logits(ca)[i] != kvc_get_logits(cb)[i];
    CHECK(differ == 0, "no-mmap vs mmap: %ld of %ld logits differ", differ, n);
    kvc_ctx_free(ca);
    kvc_ctx_free(cb);
    kvc_model_free(a);
    kvc_model_free(b);
    kvc_model *c = NULL;
    CHECK(kvc_model_load_ex(p, 6u, &c, &e) == KVC_ERR_ARG && strstr(e.msg, "flags") && c == NULL, "bad flags: %s", e.msg);
    CHECK(kvc_model_load_ex("/nonexistent/m.gguf", KVC_LOAD_NO_MMAP, &c, &e) == KVC_ERR_IO &&
              strstr(e.msg, "/nonexistent/m.gguf"), "missing file: %s", e.msg);
}

/* Issue 11's criterion for models whose weights llama.cpp multiplies against quantized
 * activations: at every position at least 8 of llama.cpp's top-10 ids among our top-10,
 * those logits within 0.1 + 5 % of |llama.cpp's|, and the same argmax wherever llama.cpp's
 * top-2 margin exceeds 0.3. Tokens come from the dump (BOS as its metadata says); where the
 * dump has the text, our tokenizer must agree. Generic over models (any arch kvcodec loads). */
static void test_logits_top10(const char *model_rel, const char *ref_rel) {
    kvc_model *m = load(model_rel);
    const char *rp = shared_path(ref_rel);
    if (!m || !rp) { kvc_model_free(m); return; }
    struct jnode ref;
    CHECK(j_load(rp, &ref) == 0, "parse %s", rp);
    struct jnode *toks = j_get(&ref, "tokens"), *top = j_get(&ref, "top10"), *text = j_get(&ref, "text");
    struct jnode *ab = j_get(&ref, "add_bos");
    const int n = toks->n;
    int32_t *ids = malloc(sizeof *ids * (size_t)n);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)toks->kids[i].num;
    kvc_error e = {0};
    if (text && text->t == J_STR) {
        int32_t *ours = NULL;
        int no = 0;
        kvc_tokenize(m, text->str, strlen(text->str), !ab || ab->num != 0, &ours, &no, &e);
        int same = no == n;
        for (int i = 0; same && i < n; i++) same = ours[i] == ids[i];
        CHECK(same, "%s: tokenizer gives %d tokens, the dump %d (or different ids)", ref_rel, no, n);
        free(ours);
    }
    const struct kvc_model_info *in = kvc_model_get_info(m);
    kvc_ctx *c = mkctx(m, n, n, -1, "f16", "f16");
    CHECK(kvc_eval(c, ids, n, 1, &e) == KVC_OK, "eval: %s", e.msg);
    const float *lg = kvc_get_logits(c);
    int few = 0, far = 0, argmax = 0, min_common = 10;
    double worst = 0;
    int *ours = malloc(sizeof(int) * 10);
    for (int i = 0; i < n && i < top->n; i++) {
        const float *l = lg + (size_t)i * in->n_vocab;
        for (int k = 0; k < 10; k++) ours[k] = -1; /* our top-10 ids, by insertion */
        for (int j = 0; j < in->n_vocab; j++) {
            int k = 10;
            while (k > 0 && (ours[k - 1] < 0 || l[j] > l[ours[k - 1]])) k--;
            if (k < 10) {
                memmove(ours + k + 1, ours + k, sizeof(int) * (size_t)(9 - k));
                ours[k] = j;
            }
        }
        const struct jnode *row = &top->kids[i];
        int common = 0;
        for (int k = 0; k < row->n && k < 10; k++) {
            const int id = (int)row->kids[k].kids[0].num;
            const double want = row->kids[k].kids[1].num;
            int in_ours = 0;
            for (int q = 0; q < 10; q++) in_ours |= ours[q] == id;
            if (!in_ours) continue;
            common++;
            const double d = fabs(l[id] - want), lim = 0.1 + 0.05 * fabs(want);
            if (d / lim > worst) worst = d / lim;
            if (d > lim) far++;
        }
        if (common < min_common) min_common = common;
        if (common < 8) few++;
        const double margin = row->kids[0].kids[1].num - row->kids[1].kids[1].num;
        if (margin > 0.3 && ours[0] != (int)row->kids[0].kids[0].num) argmax++;
    }
    printf("%s: %d positions, min %d of llama.cpp's top-10 in ours, worst |diff| / (0.1 + 5%%) = %.3f\n",
           model_rel, n, min_common, worst);
    CHECK(few == 0, "%s: %d positions with fewer than 8 of llama.cpp's top-10 ids in ours", ref_rel, few);
    CHECK(far == 0, "%s: %d top-10 logits off by more than 0.1 + 5%% (worst %.3f of the limit)", ref_rel, far, worst);
    CHECK(argmax == 0, "%s: %d positions with a different argmax where llama.cpp's margin > 0.3", ref_rel, argmax);
    free(ours);
    free(ids);
    kvc_ctx_free(c);
    kvc_model_free(m);
    j_free(&ref);
}

int main(void) {
    test_errors();
    test_no_mmap();
    test_truncate();
    test_greedy_stories();
    test_logits("models/stories260K.gguf", "reference/logits-stories260K.json", 0.03, 0.03);
    test_logits("models/kvref-f16.gguf", "reference/logits-kvref-f16.json", 0.08, 0.08);
    /* synthetic models of llama.cpp's weight types (README-synth.md) */
    test_logits_top10("models/synth/spm-q2k.gguf", "reference/logits-spm-q2k.json");
    test_logits_top10("models/synth/spm-legacy.gguf", "reference/logits-spm-legacy.json");
    return test_summary("test_engine");
}
