/* test_arch.c - architectures against independent references: the synthetic models of
 * ../shared/models/synth (llama with Llama 3 rope factors, qwen2 with biases and NEOX rope,
 * SentencePiece llamas) against llama.cpp's logits at every position (issue 11's criterion),
 * the 4096-token Llama 3 reference (rope scaling), fresh random models of other shapes
 * against a plain float64 forward pass, and the loader's errors for unsupported files. */
#include "json.h"
#include "kvcodec.h"
#include "test.h"
#include "logits_ref.h"

#include <math.h>
#include <stdint.h>
#include <unistd.h>

static int quick(void) {
    const char *l = getenv("KVC_TEST_LEVEL");
    return l && strcmp(l, "quick") == 0;
}

static kvc_ctx *mkctx(kvc_model *m, int n_ctx, int n_batch, const char *kk, const char *kv) {
    struct kvc_ctx_params p = kvc_ctx_default_params();
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.kv_k = kk;
    p.kv_v = kv;
    kvc_ctx *c = NULL;
    kvc_error e = {0};
    CHECK(kvc_ctx_create(m, &p, &c, &e) == KVC_OK, "ctx create (%s/%s): %s", kk, kv, e.msg);
    return c;
}

static void test_synth(void) {
    static const char *models[] = {"llama3-q4km", "qwen2-q5km", "qwen2-iq4", "spm-q2k", "spm-legacy"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        char mp[128], rp[128];
        snprintf(mp, sizeof mp, "models/synth/%s.gguf", models[i]);
        snprintf(rp, sizeof rp, "reference/logits-%s.json", models[i]);
        const char *m = shared_path(mp), *r = shared_path(rp);
        if (!m || !r) continue;
        char mcopy[512], rcopy[512];
        snprintf(mcopy, sizeof mcopy, "%s", m);
        snprintf(rcopy, sizeof rcopy, "%s", r);
        check_dump(models[i], mcopy, rcopy, "f16", "f16", NULL, 1, 0);
    }
}

/* Llama 3 rope scaling: 4096 tokens of books-valid.txt (first 16,000 bytes, BOS first). */
static void test_llama3_long(void) {
    const char *m = shared_path("models/synth/llama3-q4km.gguf");
    const char *r = shared_path("reference/logits-llama3-q4km-ctx4096.json");
    const char *t = shared_path("text/books-valid.txt");
    if (!m || !r || !t) return;
    char mcopy[512], rcopy[512];
    snprintf(mcopy, sizeof mcopy, "%s", m);
    snprintf(rcopy, sizeof rcopy, "%s", r);
    /* our tokenizer gives llama.cpp's 4096 first tokens of the 16,000 bytes */
    kvc_model *mm = NULL;
    kvc_error e = {0};
    struct jnode ref;
    if (kvc_model_load(mcopy, &mm, &e) == KVC_OK && j_load(rcopy, &ref) == 0) {
        FILE *f = fopen(t, "rb");
        char *buf = malloc(16000);
        size_t got = f ? fread(buf, 1, 16000, f) : 0;
        if (f) fclose(f);
        CHECK(got == 16000, "read 16000 bytes of %s", t);
        int32_t *ids = NULL;
        int n = 0;
        CHECK(kvc_tokenize(mm, buf, got, 1, &ids, &n, &e) == KVC_OK, "tokenize: %s", e.msg);
        const struct jnode *toks = j_get(&ref, "tokens");
        int same = n >= toks->n;
        for (int i = 0; same && i < toks->n; i++) same = ids[i] == (int32_t)toks->kids[i].num;
        CHECK(same, "books 16,000 bytes: our first tokens differ from llama.cpp's 4096");
        free(ids);
        free(buf);
        j_free(&ref);
    }
    kvc_model_free(mm);
    check_dump("llama3-q4km-ctx4096", mcopy, rcopy, "f16", "f16", NULL, 0, 0);
}

/* ---- fresh random models vs a float64 forward pass ---- */

struct rshape {
    const char *arch;
    int n_layer, n_embd, n_head, n_kv, head_dim, n_ff, n_vocab;
    int write_key_length, biases, tied, f16_weights, rope_factors;
    float rope_base, scale_factor, eps;
};

struct rmodel {
    struct rshape s;
    float *tok, *out, *onorm, *freqs;                  /* (V,E), (V,E) or NULL, (E), (hd/2) or NULL */
    float *an[4], *fn[4], *wq[4], *wk[4], *wv[4], *wo[4], *wg[4], *wu[4], *wd[4];
    float *bq[4], *bk[4], *bv[4];
};

static float *rnd(unsigned long long *s, size_t n, float std, float mean) {
    float *p = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) p[i] = mean + std * t_randn(s);
    return p;
}

/* F16 weights: round here so that the float64 reference sees the stored values */
static void round_f16(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        _Float16 h = (_Float16)p[i];
        p[i] = (float)h;
    }
}

static void rmodel_init(struct rmodel *r, const struct rshape *s, unsigned long long seed) {
    memset(r, 0, sizeof *r);
    r->s = *s;
    unsigned long long st = seed;
    const size_t E = s->n_embd, H = (size_t)s->n_head * s->head_dim, KV = (size_t)s->n_kv * s->head_dim, F = s->n_ff,
                 V = s->n_vocab;
    r->tok = rnd(&st, V * E, 1.0f, 0);
    r->out = s->tied ? NULL : rnd(&st, V * E, 1.0f / sqrtf((float)E), 0);
    r->onorm = rnd(&st, E, 0.1f, 1);
    if (s->rope_factors) {
        r->freqs = malloc(sizeof(float) * (size_t)s->head_dim / 2);
        for (int i = 0; i < s->head_dim / 2; i++) r->freqs[i] = 1.0f + 7.0f * (float)i / (float)(s->head_dim / 2);
    }
    for (int l = 0; l < s->n_layer; l++) {
        r->an[l] = rnd(&st, E, 0.1f, 1);
        r->fn[l] = rnd(&st, E, 0.1f, 1);
        r->wq[l] = rnd(&st, H * E, 1.0f / sqrtf((float)E), 0);
        r->wk[l] = rnd(&st, KV * E, 1.0f / sqrtf((float)E), 0);
        r->wv[l] = rnd(&st, KV * E, 1.0f / sqrtf((float)E), 0);
        r->wo[l] = rnd(&st, E * H, 1.0f / sqrtf((float)H), 0);
        r->wg[l] = rnd(&st, F * E, 1.0f / sqrtf((float)E), 0);
        r->wu[l] = rnd(&st, F * E, 1.0f / sqrtf((float)E), 0);
        r->wd[l] = rnd(&st, E * F, 1.0f / sqrtf((float)F), 0);
        if (s->biases) {
            r->bq[l] = rnd(&st, H, 0.5f, 0);
            r->bk[l] = rnd(&st, KV, 0.5f, 0);
            r->bv[l] = rnd(&st, KV, 0.5f, 0);
        }
        if (s->f16_weights) {
            float *ws[] = {r->wq[l], r->wk[l], r->wv[l], r->wo[l], r->wg[l], r->wu[l], r->wd[l]};
            size_t ns[] = {H * E, KV * E, KV * E, E * H, F * E, F * E, E * F};
            for (int i = 0; i < 7; i++) round_f16(ws[i], ns[i]);
        }
    }
}

static void rmodel_free(struct rmodel *r) {
    free(r->tok); free(r->out); free(r->onorm); free(r->freqs);
    for (int l = 0; l < 4; l++) {
        free(r->an[l]); free(r->fn[l]); free(r->wq[l]); free(r->wk[l]); free(r->wv[l]); free(r->wo[l]);
        free(r->wg[l]); free(r->wu[l]); free(r->wd[l]); free(r->bq[l]); free(r->bk[l]); free(r->bv[l]);
    }
}

/* GGUF v3 writer: metadata then tensors (F32, or F16 for the 2-D layer weights when asked) */
struct wbuf {
    unsigned char *p;
    size_t n, cap;
};
static void wput(struct wbuf *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        while (b->n + n > b->cap) b->cap = b->cap ? 2 * b->cap : 4096;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void w32(struct wbuf *b, uint32_t v) { wput(b, &v, 4); }
static void w64(struct wbuf *b, uint64_t v) { wput(b, &v, 8); }
static void wstr(struct wbuf *b, const char *s) { w64(b, strlen(s)); wput(b, s, strlen(s)); }
static void kstr(struct wbuf *b, const char *k, const char *v) { wstr(b, k); w32(b, 8); wstr(b, v); }
static void ku32(struct wbuf *b, const char *k, uint32_t v) { wstr(b, k); w32(b, 4); w32(b, v); }
static void kf32(struct wbuf *b, const char *k, float v) { wstr(b, k); w32(b, 6); wput(b, &v, 4); }

struct wt {
    char name[64];
    const float *data;
    uint64_t ne0, ne1;
    int f16;
};

static const char *write_model(const struct rmodel *r, const char *path, const char *arch_override,
                               const char *scaling_type) {
    const struct rshape *s = &r->s;
    const char *arch = arch_override ? arch_override : s->arch;
    struct wt ts[64];
    int nt = 0;
#define T(nm, d, a0, a1, h) do { snprintf(ts[nt].name, 64, "%s", nm); ts[nt].data = d; ts[nt].ne0 = a0; \
        ts[nt].ne1 = a1; ts[nt].f16 = h; nt++; } while (0)
    const int E = s->n_embd, H = s->n_head * s->head_dim, KV = s->n_kv * s->head_dim, F = s->n_ff, V = s->n_vocab;
    T("token_embd.weight", r->tok, E, V, 0);
    T("output_norm.weight", r->onorm, E, 1, 0);
    if (r->out) T("output.weight", r->out, E, V, 0);
    if (r->freqs) T("rope_freqs.weight", r->freqs, s->head_dim / 2, 1, 0);
    char nm[64];
    for (int l = 0; l < s->n_layer; l++) {
        const int h = s->f16_weights;
#define L(suffix, d, a0, a1, hh) snprintf(nm, sizeof nm, "blk.%d." suffix, l); T(nm, d, a0, a1, hh);
        L("attn_norm.weight", r->an[l], E, 1, 0)
        L("attn_q.weight", r->wq[l], E, H, h)
        L("attn_k.weight", r->wk[l], E, KV, h)
        L("attn_v.weight", r->wv[l], E, KV, h)
        L("attn_output.weight", r->wo[l], H, E, h)
        L("ffn_norm.weight", r->fn[l], E, 1, 0)
        L("ffn_gate.weight", r->wg[l], E, F, h)
        L("ffn_up.weight", r->wu[l], E, F, h)
        L("ffn_down.weight", r->wd[l], F, E, h)
        if (r->bq[l]) {
            L("attn_q.bias", r->bq[l], H, 1, 0)
            L("attn_k.bias", r->bk[l], KV, 1, 0)
            L("attn_v.bias", r->bv[l], KV, 1, 0)
        }
#undef L
    }
#undef T
    struct wbuf kv = {0};
    int nkv = 0;
    char key[96];
#define K(fn, suffix, v) do { snprintf(key, sizeof key, "%s." suffix, arch); fn(&kv, key, v); nkv++; } while (0)
    kstr(&kv, "general.architecture", arch), nkv++;
    K(ku32, "block_count", (uint32_t)s->n_layer);
    K(ku32, "context_length", 4096);
    K(ku32, "embedding_length", (uint32_t)E);
    K(ku32, "feed_forward_length", (uint32_t)F);
    K(ku32, "attention.head_count", (uint32_t)s->n_head);
    K(ku32, "attention.head_count_kv", (uint32_t)s->n_kv);
    if (s->write_key_length) {
        K(ku32, "attention.key_length", (uint32_t)s->head_dim);
        K(ku32, "attention.value_length", (uint32_t)s->head_dim);
        K(ku32, "rope.dimension_count", (uint32_t)s->head_dim);
    }
    K(kf32, "attention.layer_norm_rms_epsilon", s->eps);
    K(kf32, "rope.freq_base", s->rope_base);
    if (s->scale_factor != 0) K(kf32, "rope.scaling.factor", s->scale_factor);
    if (scaling_type) K(kstr, "rope.scaling.type", scaling_type);
#undef K
    /* a SentencePiece vocabulary of V pieces: <unk>, <s>, </s>, then plain pieces */
    kstr(&kv, "tokenizer.ggml.model", "llama"), nkv++;
    wstr(&kv, "tokenizer.ggml.tokens"), w32(&kv, 9), w32(&kv, 8), w64(&kv, (uint64_t)V), nkv++;
    for (int i = 0; i < V; i++) {
        char t[16];
        if (i < 3) snprintf(t, sizeof t, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else snprintf(t, sizeof t, "%c%d", 'a' + i % 26, i);
        wstr(&kv, t);
    }
    wstr(&kv, "tokenizer.ggml.scores"), w32(&kv, 9), w32(&kv, 6), w64(&kv, (uint64_t)V), nkv++;
    for (int i = 0; i < V; i++) { float sc = -(float)i; wput(&kv, &sc, 4); }
    wstr(&kv, "tokenizer.ggml.token_type"), w32(&kv, 9), w32(&kv, 5), w64(&kv, (uint64_t)V), nkv++;
    for (int i = 0; i < V; i++) w32(&kv, i == 0 ? 2 : i < 3 ? 3 : 1);
    ku32(&kv, "tokenizer.ggml.bos_token_id", 1), nkv++;
    ku32(&kv, "tokenizer.ggml.eos_token_id", 2), nkv++;

    struct wbuf b = {0};
    wput(&b, "GGUF", 4);
    w32(&b, 3);
    w64(&b, (uint64_t)nt);
    w64(&b, (uint64_t)nkv);
    wput(&b, kv.p, kv.n);
    uint64_t off = 0, offs[64];
    for (int i = 0; i < nt; i++) {
        wstr(&b, ts[i].name);
        int two = ts[i].ne1 > 1;
        w32(&b, two ? 2 : 1);
        w64(&b, ts[i].ne0);
        if (two) w64(&b, ts[i].ne1);
        w32(&b, ts[i].f16 ? 1 : 0);
        offs[i] = off;
        w64(&b, off);
        off += (ts[i].ne0 * ts[i].ne1 * (ts[i].f16 ? 2 : 4) + 31) / 32 * 32;
    }
    while (b.n % 32) wput(&b, "", 1);
    for (int i = 0; i < nt; i++) {
        while (b.n % 32) wput(&b, "", 1);
        const uint64_t n = ts[i].ne0 * ts[i].ne1;
        for (uint64_t j = 0; j < n; j++) {
            if (ts[i].f16) { _Float16 h = (_Float16)ts[i].data[j]; wput(&b, &h, 2); }
            else wput(&b, &ts[i].data[j], 4);
        }
        (void)offs;
    }
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(b.p, 1, b.n, f) == b.n;
    if (f) fclose(f);
    free(b.p);
    free(kv.p);
    CHECK(ok, "write %s", path);
    return path;
}

/* Float64 forward pass of all T positions: logits (T, V). Written from the model
 * definition: RMSNorm, projections (+ biases), RoPE per pair i at angle
 * scale * pos * base^(-2i/d) / factor_i on (x[2i], x[2i+1]) (llama) or (x[i], x[i+d/2])
 * (qwen2), causal softmax attention with GQA, SwiGLU, final norm, output matrix. */
static void matvec(double *o, const float *W, const double *in, int nout, int nin) {
    for (int i = 0; i < nout; i++) {
        double a = 0;
        for (int j = 0; j < nin; j++) a += (double)W[(size_t)i * nin + j] * in[j];
        o[i] = a;
    }
}

static void ref_forward(const struct rmodel *r, const int32_t *ids, int T, double *logits) {
    const struct rshape *s = &r->s;
    const int E = s->n_embd, d = s->head_dim, NH = s->n_head, NKV = s->n_kv, H = NH * d, KV = NKV * d, F = s->n_ff,
              V = s->n_vocab;
    const int neox = strcmp(s->arch, "qwen2") == 0;
    const double scale = s->scale_factor != 0 ? 1.0 / s->scale_factor : 1.0;
    double *x = calloc((size_t)T * E, 8), *xb = calloc((size_t)E, 8), *q = calloc((size_t)T * H, 8),
           *k = calloc((size_t)T * KV, 8), *v = calloc((size_t)T * KV, 8), *att = calloc((size_t)H, 8),
           *hb = calloc((size_t)F, 8), *sc = calloc((size_t)T, 8);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < E; i++) x[(size_t)t * E + i] = r->tok[(size_t)ids[t] * E + i];
#define NORM(dst, src, w) do { double ss = 0; for (int i = 0; i < E; i++) ss += (src)[i] * (src)[i]; \
        double f_ = 1.0 / sqrt(ss / E + s->eps); for (int i = 0; i < E; i++) (dst)[i] = (src)[i] * f_ * (w)[i]; } while (0)
    for (int l = 0; l < s->n_layer; l++) {
        for (int t = 0; t < T; t++) {
            NORM(xb, x + (size_t)t * E, r->an[l]);
            matvec(q + (size_t)t * H, r->wq[l], xb, H, E);
            matvec(k + (size_t)t * KV, r->wk[l], xb, KV, E);
            matvec(v + (size_t)t * KV, r->wv[l], xb, KV, E);
            if (r->bq[l]) {
                for (int i = 0; i < H; i++) q[(size_t)t * H + i] += r->bq[l][i];
                for (int i = 0; i < KV; i++) k[(size_t)t * KV + i] += r->bk[l][i], v[(size_t)t * KV + i] += r->bv[l][i];
            }
            for (int h = 0; h < NH + NKV; h++) {
                double *vec = h < NH ? q + (size_t)t * H + (size_t)h * d : k + (size_t)t * KV + (size_t)(h - NH) * d;
                for (int p = 0; p < d / 2; p++) {
                    double ang = scale * t * pow(s->rope_base, -2.0 * p / d) / (r->freqs ? r->freqs[p] : 1.0);
                    int a = neox ? p : 2 * p, bb = neox ? p + d / 2 : 2 * p + 1;
                    double x0 = vec[a], x1 = vec[bb];
                    vec[a] = x0 * cos(ang) - x1 * sin(ang);
                    vec[bb] = x0 * sin(ang) + x1 * cos(ang);
                }
            }
        }
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < NH; h++) {
                const int kh = h / (NH / NKV);
                const double *qh = q + (size_t)t * H + (size_t)h * d;
                double mx = -1e300, sum = 0;
                for (int u = 0; u <= t; u++) {
                    double dot = 0;
                    for (int i = 0; i < d; i++) dot += qh[i] * k[(size_t)u * KV + (size_t)kh * d + i];
                    sc[u] = dot / sqrt((double)d);
                    if (sc[u] > mx) mx = sc[u];
                }
                for (int u = 0; u <= t; u++) sum += (sc[u] = exp(sc[u] - mx));
                for (int i = 0; i < d; i++) {
                    double a = 0;
                    for (int u = 0; u <= t; u++) a += sc[u] * v[(size_t)u * KV + (size_t)kh * d + i];
                    att[(size_t)h * d + i] = a / sum;
                }
            }
            double *o = calloc((size_t)E, 8);
            matvec(o, r->wo[l], att, E, H);
            for (int i = 0; i < E; i++) x[(size_t)t * E + i] += o[i];
            free(o);
        }
        for (int t = 0; t < T; t++) {
            double *xt = x + (size_t)t * E, *g = calloc((size_t)F, 8), *o = calloc((size_t)E, 8);
            NORM(xb, xt, r->fn[l]);
            matvec(g, r->wg[l], xb, F, E);
            matvec(hb, r->wu[l], xb, F, E);
            for (int i = 0; i < F; i++) hb[i] *= g[i] / (1 + exp(-g[i]));
            matvec(o, r->wd[l], hb, E, F);
            for (int i = 0; i < E; i++) xt[i] += o[i];
            free(g);
            free(o);
        }
    }
    const float *out = r->out ? r->out : r->tok;
    for (int t = 0; t < T; t++) {
        NORM(xb, x + (size_t)t * E, r->onorm);
        matvec(logits + (size_t)t * V, out, xb, V, E);
    }
#undef NORM
    free(x); free(xb); free(q); free(k); free(v); free(att); free(hb); free(sc);
}

static void test_random_models(void) {
    static const struct rshape shapes[] = {
        /* qwen2, untied output, biases, GQA 4/2, head dim 64, n_head*head_dim (256) != n_embd (128) */
        {"qwen2", 2, 128, 4, 2, 64, 192, 96, 1, 1, 0, 0, 0, 1000000.0f, 0, 1e-6f},
        /* qwen2, tied output, F16 weights, head dim 128 */
        {"qwen2", 2, 256, 2, 1, 128, 256, 80, 0, 1, 1, 1, 0, 1000000.0f, 0, 1e-6f},
        /* llama, key_length 64 with n_embd 96 / 3 heads (would be 32), Llama 3 factors, untied */
        {"llama", 2, 96, 3, 1, 64, 160, 72, 1, 0, 0, 0, 1, 500000.0f, 0, 1e-5f},
        /* llama, linear rope scaling x4, head dim 128, tied, F16 */
        {"llama", 1, 128, 2, 2, 128, 128, 64, 1, 0, 1, 1, 0, 10000.0f, 4.0f, 1e-5f},
    };
    char path[64];
    snprintf(path, sizeof path, "/tmp/kvc-test-arch-%d.gguf", (int)getpid());
    const int T = 24;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        struct rmodel r;
        rmodel_init(&r, &shapes[si], 0x9e3779b9ull * (si + 1));
        write_model(&r, path, NULL, si == 3 ? "linear" : NULL);
        kvc_model *m = NULL;
        kvc_error e = {0};
        if (kvc_model_load(path, &m, &e)) { CHECK(0, "random model %zu: load: %s", si, e.msg); rmodel_free(&r); continue; }
        const struct kvc_model_info *in = kvc_model_get_info(m);
        CHECK(in->head_dim == shapes[si].head_dim && in->tied_output == shapes[si].tied &&
              in->rope_neox == (strcmp(shapes[si].arch, "qwen2") == 0) && in->qkv_bias == shapes[si].biases &&
              in->rope_freq_factors == shapes[si].rope_factors,
              "random model %zu: info head_dim %d tied %d neox %d bias %d factors %d", si, in->head_dim,
              in->tied_output, in->rope_neox, in->qkv_bias, in->rope_freq_factors);
        int32_t ids[24];
        unsigned long long st = 77 + si;
        for (int t = 0; t < T; t++) ids[t] = (int32_t)(t_rng_next(&st) % (unsigned)shapes[si].n_vocab);
        double *ref = malloc(sizeof(double) * (size_t)T * shapes[si].n_vocab);
        ref_forward(&r, ids, T, ref);
        float *reff = malloc(sizeof(float) * (size_t)T * shapes[si].n_vocab);
        for (long i = 0; i < (long)T * shapes[si].n_vocab; i++) reff[i] = (float)ref[i];
        /* f32 cache: only the f32 arithmetic of the engine differs from float64 */
        kvc_ctx *c = mkctx(m, T, T, "f32", "f32");
        if (c && kvc_eval(c, ids, T, 1, &e) == KVC_OK) {
            char what[96];
            snprintf(what, sizeof what, "random %s model %zu vs float64 (f32 cache)", shapes[si].arch, si);
            check_tensor(what, kvc_get_logits(c), reff, (long)T * shapes[si].n_vocab, 2e-3, 2e-3);
        } else {
            CHECK(0, "random model %zu eval: %s", si, e.msg);
        }
        kvc_ctx_free(c);
        /* every KV codec that needs no calibration runs on this shape; the quantised ones stay near */
        static const char *codecs[] = {"f16", "bf16", "q8_0", "q4_0", "q4_0h", "hdc:bits=4", "hdc-select:k=8,inner=q8_0"};
        for (size_t ci = 0; ci < sizeof codecs / sizeof codecs[0]; ci++) {
            kvc_ctx *cc = mkctx(m, T, 8, codecs[ci], codecs[ci]);
            if (!cc) continue;
            double sum_d = 0, sum_r = 0;
            int ok = 1;
            for (int t0 = 0; t0 < T && ok; t0 += 8) {
                ok = kvc_eval(cc, ids + t0, 8, 1, &e) == KVC_OK;
                for (int i = 0; ok && i < 8 * shapes[si].n_vocab; i++) {
                    const double rv = reff[(size_t)t0 * shapes[si].n_vocab + i];
                    sum_d += fabs(kvc_get_logits(cc)[i] - rv);
                    sum_r += fabs(rv);
                }
            }
            CHECK(ok, "random model %zu, codec %s: %s", si, codecs[ci], e.msg);
            /* mean |logit - float64| relative to the mean |logit|: f16/bf16/q8_0 rows are near
             * exact (f16 < 0.1 %, bf16/q8_0 < 1 %), the 4-bit codecs stay within 15 % on these random models */
            const double rel = sum_d / (sum_r + 1e-30), lim = ci == 0 ? 0.001 : ci < 3 ? 0.01 : 0.15;
            CHECK(ok && rel < lim, "random model %zu (d=%d), codec %s: mean |logit - float64| / mean |logit| %.4f >= %.2f",
                  si, shapes[si].head_dim, codecs[ci], rel, lim);
            if (getenv("KVC_TEST_VERBOSE")) printf("model %zu d=%d %s rel %.4f\n", si, shapes[si].head_dim, codecs[ci], rel);
            kvc_ctx_free(cc);
        }
        free(ref);
        free(reff);
        kvc_model_free(m);
        rmodel_free(&r);
    }
    unlink(path);
}

/* Unsupported files: a clear one-line error naming the thing and the choices. */
static void test_errors(void) {
    struct rshape s = {"llama", 1, 64, 2, 2, 32, 64, 40, 0, 0, 1, 0, 0, 10000.0f, 0, 1e-5f};
    struct rmodel r;
    rmodel_init(&r, &s, 5);
    char path[64];
    snprintf(path, sizeof path, "/tmp/kvc-test-arch-e%d.gguf", (int)getpid());
    kvc_model *m = NULL;
    kvc_error e = {0};
    write_model(&r, path, "gpt2", NULL);
    CHECK(kvc_model_load(path, &m, &e) == KVC_ERR_UNSUPPORTED && strstr(e.msg, "'gpt2'") &&
          strstr(e.msg, "llama, qwen2") && !strchr(e.msg, '\n'), "unknown arch: %s", e.msg);
    write_model(&r, path, NULL, "yarn");
    CHECK(kvc_model_load(path, &m, &e) == KVC_ERR_UNSUPPORTED && strstr(e.msg, "yarn") && strstr(e.msg, "linear"),
          "yarn scaling: %s", e.msg);
    write_model(&r, path, NULL, "linear");
    CHECK(kvc_model_load(path, &m, &e) == KVC_OK, "linear scaling type without factor: %s", e.msg);
    kvc_model_free(m);
    unlink(path);
    rmodel_free(&r);
}

int main(void) {
    test_errors();
    test_random_models();
    test_synth();
    if (!quick()) test_llama3_long();
    return test_summary("test_arch");
}
