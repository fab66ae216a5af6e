/* test_synth.c - kvcodec synth: every preset's hyper-parameters against the real models'
 * config.json values (written out here), each preset's GGUF at 2 layers (small widths) read
 * back tensor by tensor and key by key, loaded and run (logits finite through all layers at
 * the preset's real depth), Llama-3 rope factors against a float64 formula, seeds, and the
 * writer's error paths. */
#include "gguf.h"
#include "gguf_write.h"
#include "synth.h"
#include "test.h"
#include "types.h"

#include <unistd.h>

/* The real models (Hugging Face config.json): layers, n_embd, heads, KV heads, head dim,
 * n_ff, vocab, context, rope theta, tied embeddings, arch, Llama-3 rope factor. */
static const struct real {
    const char *name, *arch;
    int L, E, H, KV, D, F, V, ctx;
    double theta;
    int tied;
    double rope_factor;
} reals[] = {
    {"smollm2-360m", "llama", 32, 960, 15, 5, 64, 2560, 49152, 8192, 100000, 1, 0},
    {"qwen2.5-0.5b", "qwen2", 24, 896, 14, 2, 64, 4864, 151936, 32768, 1000000, 1, 0},
    {"llama-3.2-1b", "llama", 16, 2048, 32, 8, 64, 8192, 128256, 131072, 500000, 1, 32},
    {"llama-3.2-3b", "llama", 28, 3072, 24, 8, 128, 8192, 128256, 131072, 500000, 1, 32},
    {"llama-3.1-8b", "llama", 32, 4096, 32, 8, 128, 14336, 128256, 131072, 500000, 0, 8},
    {"mistral-7b", "llama", 32, 4096, 32, 8, 128, 14336, 32768, 32768, 1000000, 0, 0},
};
#define N_REAL (int)(sizeof reals / sizeof reals[0])

static int quick;

static uint32_t meta_u32(const struct gguf_file *f, const char *arch, const char *suffix) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, suffix);
    uint32_t v = 0;
    kvc_error e;
    if (gguf_get_u32(f, k, &v, &e)) { CHECK(0, "%s", e.msg); return 0; }
    return v;
}

/* Llama 3.1 rope factors, written independently in float64. */
static double rope_factor_ref(int i, int d, double base, double factor) {
    double inv = 1.0 / pow(base, (2.0 * i) / d), wavelen = 2.0 * M_PI / inv;
    double low_wl = 8192.0 / 1.0, high_wl = 8192.0 / 4.0;
    if (wavelen < high_wl) return 1.0;
    if (wavelen > low_wl) return factor;
    double s = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
    return 1.0 / ((1.0 - s) / factor + s);
}

static void check_tensor_shape(const struct gguf_file *f, const char *name, uint64_t ne0, uint64_t ne1,
                               uint32_t type) {
    const struct gguf_tensor *t = gguf_find_tensor(f, name);
    CHECK(t != NULL, "tensor %s missing", name);
    if (!t) return;
    CHECK(t->ne[0] == ne0 && t->ne[1] == ne1 && t->n_dims == (ne1 > 1 ? 2u : 1u),
          "%s: [%llu, %llu] (%u dims), expected [%llu, %llu]", name, (unsigned long long)t->ne[0],
          (unsigned long long)t->ne[1], t->n_dims, (unsigned long long)ne0, (unsigned long long)ne1);
    CHECK(t->type == type, "%s: type %u, expected %u", name, t->type, type);
}

static void test_preset(const struct real *r) {
    /* 1. the preset itself equals the real model */
    struct kvc_synth_params p = kvc_synth_default_params();
    p.preset = r->name;
    struct kvc_synth_shape s;
    kvc_error e = {0};
    CHECK(kvc_synth_resolve(&p, &s, &e) == KVC_OK, "%s", e.msg);
    CHECK(!strcmp(s.arch, r->arch) && s.n_layer == r->L && s.n_embd == r->E && s.n_head == r->H &&
              s.n_head_kv == r->KV && s.head_dim == r->D && s.n_ff == r->F && s.n_vocab == r->V &&
              s.n_ctx == r->ctx && fabs(s.rope_base - r->theta) < 1e-3 * r->theta && s.tied == r->tied &&
              fabs(s.rope_scale - r->rope_factor) < 1e-6 && s.qkv_bias == !strcmp(r->arch, "qwen2"),
          "%s: preset differs from the real model", r->name);

    /* 2. a 2-layer file with small widths: shapes and metadata */
    p.n_layer = 2;
    p.n_embd = 256;
    p.head_dim = r->D;
    p.n_head = 256 / r->D;
    p.n_head_kv = r->H / r->KV <= p.n_head && p.n_head % (r->H / r->KV) == 0 ? p.n_head / (r->H / r->KV) : 1;
    p.n_ff = 512;
    if (quick) p.n_vocab = 2000;
    p.type = KVC_TYPE_Q8_0;
    char path[256];
    snprintf(path, sizeof path, "/tmp/kvc-test-synth-%d-%s.gguf", (int)getpid(), r->name);
    CHECK(kvc_synth_resolve(&p, &s, &e) == KVC_OK, "%s", e.msg);
    CHECK(kvc_synth_write(path, &p, &e) == KVC_OK, "%s", e.msg);
    struct gguf_file *f = NULL;
    CHECK(gguf_open(path, &f, &e) == KVC_OK, "%s", e.msg);
    if (!f) return;
    struct gguf_str a;
    CHECK(gguf_get_str(f, "general.architecture", &a, &e) == KVC_OK && gguf_str_eq(a, r->arch), "%s: arch", r->name);
    CHECK(meta_u32(f, r->arch, "block_count") == 2, "%s: block_count", r->name);
    CHECK(meta_u32(f, r->arch, "embedding_length") == 256, "%s: embedding_length", r->name);
    CHECK(meta_u32(f, r->arch, "feed_forward_length") == 512, "%s", r->name);
    CHECK(meta_u32(f, r->arch, "attention.head_count") == (uint32_t)p.n_head, "%s", r->name);
    CHECK(meta_u32(f, r->arch, "attention.head_count_kv") == (uint32_t)p.n_head_kv, "%s", r->name);
    CHECK(meta_u32(f, r->arch, "attention.key_length") == (uint32_t)r->D, "%s", r->name);
    CHECK(meta_u32(f, r->arch, "context_length") == (uint32_t)r->ctx, "%s", r->name);
    float base = 0;
    char k[96];
    snprintf(k, sizeof k, "%s.rope.freq_base", r->arch);
    CHECK(gguf_get_f32(f, k, &base, &e) == KVC_OK && fabs(base - r->theta) < 1e-3 * r->theta, "%s: rope base", r->name);
    CHECK(gguf_get_str(f, "tokenizer.ggml.model", &a, &e) == KVC_OK && gguf_str_eq(a, "gpt2"), "%s: tokenizer", r->name);
    const struct gguf_kv *toks = NULL, *merges = NULL, *types = NULL;
    CHECK(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_STRING, &toks, &e) == KVC_OK, "%s", e.msg);
    CHECK(gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_STRING, &merges, &e) == KVC_OK, "%s", e.msg);
    CHECK(gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_I32, &types, &e) == KVC_OK, "%s", e.msg);
    int V = quick ? 2000 : r->V;
    if (toks && merges && types) {
        CHECK(toks->arr_n == (uint64_t)V, "%s: %llu tokens, expected %d", r->name, (unsigned long long)toks->arr_n, V);
        uint64_t normal = 0;
        for (uint64_t i = 0; i < types->arr_n; i++) normal += gguf_arr_num(types, i) == 1;
        CHECK(merges->arr_n == normal - 256, "%s: %llu merges for %llu normal tokens", r->name,
              (unsigned long long)merges->arr_n, (unsigned long long)normal);
        /* every merge "a b" names two tokens whose concatenation is a token */
        int bad = 0;
        for (uint64_t i = 0; i < merges->arr_n && i < 3000; i += 7) {
            const struct gguf_str m = merges->strs[i];
            const char *sp = memchr(m.p, ' ', (size_t)m.n);
            if (!sp) { bad++; continue; }
            int found = 0;
            for (uint64_t j = 0; j < toks->arr_n && !found; j++)
                found = toks->strs[j].n == m.n - 1 && !memcmp(toks->strs[j].p, m.p, (size_t)(sp - m.p)) &&
                        !memcmp(toks->strs[j].p + (sp - m.p), sp + 1, (size_t)(m.n - 1 - (uint64_t)(sp - m.p)));
            bad += !found;
        }
        CHECK(bad == 0, "%s: %d merges without their token", r->name, bad);
    }
    uint32_t W = KVC_TYPE_Q8_0, F32 = KVC_TYPE_F32;
    uint64_t H = (uint64_t)p.n_head * r->D, KVd = (uint64_t)p.n_head_kv * r->D;
    check_tensor_shape(f, "token_embd.weight", 256, (uint64_t)V, W);
    check_tensor_shape(f, "output_norm.weight", 256, 1, F32);
    CHECK((gguf_find_tensor(f, "output.weight") == NULL) == r->tied, "%s: output.weight presence", r->name);
    if (!r->tied) check_tensor_shape(f, "output.weight", 256, (uint64_t)V, W);
    CHECK((gguf_find_tensor(f, "rope_freqs.weight") != NULL) == (r->rope_factor > 0), "%s: rope_freqs", r->name);
    uint64_t n_expect = 2 + !r->tied + (r->rope_factor > 0);
    for (int l = 0; l < 2; l++) {
        char nm[96];
#define T(suf, a0, a1, ty) snprintf(nm, sizeof nm, "blk.%d." suf, l), check_tensor_shape(f, nm, a0, a1, ty), n_expect++
        T("attn_norm.weight", 256, 1, F32);
        T("attn_q.weight", 256, H, W);
        T("attn_k.weight", 256, KVd, W);
        T("attn_v.weight", 256, KVd, W);
        T("attn_output.weight", H, 256, W);
        T("ffn_norm.weight", 256, 1, F32);
        T("ffn_gate.weight", 256, 512, W);
        T("ffn_up.weight", 256, 512, W);
        T("ffn_down.weight", 512, 256, W);
        if (!strcmp(r->arch, "qwen2")) {
            T("attn_q.bias", H, 1, F32);
            T("attn_k.bias", KVd, 1, F32);
            T("attn_v.bias", KVd, 1, F32);
        }
#undef T
    }
    CHECK(f->n_tensors == n_expect, "%s: %llu tensors, expected %llu", r->name, (unsigned long long)f->n_tensors,
          (unsigned long long)n_expect);
    const struct gguf_tensor *rf = gguf_find_tensor(f, "rope_freqs.weight");
    if (rf && rf->ne[0] == (uint64_t)r->D / 2) {
        const float *v = rf->data;
        double worst = 0;
        for (int i = 0; i < r->D / 2; i++) {
            double d = fabs(v[i] - rope_factor_ref(i, r->D, r->theta, r->rope_factor));
            worst = d > worst ? d : worst;
        }
        CHECK(worst < 1e-5, "%s: rope factors differ by %g", r->name, worst);
        CHECK(v[0] == 1.0f && v[r->D / 2 - 1] == (float)r->rope_factor, "%s: rope factor ends", r->name);
    }
    gguf_close(f);

    /* 3. loads and runs; the preset's real depth at small width keeps logits finite */
    kvc_model *m = NULL;
    kvc_status st = kvc_model_load(path, &m, &e);
    if (st == KVC_OK) {
        struct kvc_ctx_params cp = kvc_ctx_default_params();
        cp.n_ctx = 64;
        cp.n_threads = 1;
        kvc_ctx *c = NULL;
        CHECK(kvc_ctx_create(m, &cp, &c, &e) == KVC_OK, "%s", e.msg);
        int32_t ids[24];
        for (int i = 0; i < 24; i++) ids[i] = (i * 37 + 5) % 256;
        CHECK(c && kvc_eval(c, ids, 24, 0, &e) == KVC_OK, "%s: %s", r->name, e.msg);
        const float *lg = c ? kvc_get_logits(c) : NULL;
        int finite = lg != NULL;
        for (int i = 0; lg && i < V; i++) finite &= isfinite(lg[i]);
        CHECK(finite, "%s: logits not finite", r->name);
        kvc_ctx_free(c);
        kvc_model_free(m);
    } else {
        /* an architecture this build does not run yet must be refused, naming it */
        CHECK(st == KVC_ERR_UNSUPPORTED && strstr(e.msg, r->arch), "%s: %s", r->name, e.msg);
        fprintf(stderr, "note: %s (%s) not run by this build: %s\n", r->name, r->arch, e.msg);
    }
    unlink(path);

    /* every layer of the real depth at small width: finite logits */
    p.n_layer = r->L;
    p.n_vocab = 1000;
    CHECK(kvc_synth_write(path, &p, &e) == KVC_OK, "%s", e.msg);
    if (kvc_model_load(path, &m, &e) == KVC_OK) {
        struct kvc_ctx_params cp = kvc_ctx_default_params();
        cp.n_ctx = 128;
        cp.n_threads = 2;
        kvc_ctx *c = NULL;
        CHECK(kvc_ctx_create(m, &cp, &c, &e) == KVC_OK, "%s", e.msg);
        int32_t ids[100];
        for (int i = 0; i < 100; i++) ids[i] = (i * 53 + 11) % 1000;
        CHECK(c && kvc_eval(c, ids, 100, 1, &e) == KVC_OK, "%s: %s", r->name, e.msg);
        const float *lg = c ? kvc_get_logits(c) : NULL;
        int finite = lg != NULL;
        double mx = 0;
        for (int i = 0; lg && i < 100 * 1000; i++) {
            finite &= isfinite(lg[i]);
            mx = fabs(lg[i]) > mx ? fabs(lg[i]) : mx;
        }
        CHECK(finite && mx < 1e4, "%s: %d layers: logits finite %d, max |logit| %g", r->name, r->L, finite, mx);
        kvc_ctx_free(c);
        kvc_model_free(m);
    }
    unlink(path);
}

static int file_eq(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int eq = fa && fb;
    while (eq) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) eq = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return eq;
}

static void test_seed_and_errors(void) {
    struct kvc_synth_params p = kvc_synth_default_params();
    p.preset = "smollm2-360m";
    p.n_layer = 1;
    p.n_embd = 64;
    p.n_head = 1;
    p.n_head_kv = 1;
    p.n_ff = 64;
    p.n_vocab = 400;
    char a[128], b[128], c[128];
    snprintf(a, sizeof a, "/tmp/kvc-test-synth-%d-a.gguf", (int)getpid());
    snprintf(b, sizeof b, "/tmp/kvc-test-synth-%d-b.gguf", (int)getpid());
    snprintf(c, sizeof c, "/tmp/kvc-test-synth-%d-c.gguf", (int)getpid());
    kvc_error e = {0};
    CHECK(kvc_synth_write(a, &p, &e) == KVC_OK, "%s", e.msg);
    CHECK(kvc_synth_write(b, &p, &e) == KVC_OK, "%s", e.msg);
    p.seed = 2;
    CHECK(kvc_synth_write(c, &p, &e) == KVC_OK, "%s", e.msg);
    CHECK(file_eq(a, b), "same seed, different files");
    CHECK(!file_eq(a, c), "different seeds, same file");
    unlink(a); unlink(b); unlink(c);
    /* bad parameters name the field */
    p.preset = "gpt-17";
    CHECK(kvc_synth_write(a, &p, &e) == KVC_ERR_ARG && strstr(e.msg, "gpt-17"), "%s", e.msg);
    p.preset = "mistral-7b";
    p.n_head = 3; p.n_head_kv = 2;
    CHECK(kvc_synth_write(a, &p, &e) == KVC_ERR_ARG && strstr(e.msg, "KV heads"), "%s", e.msg);
    p.n_head = 1; p.n_head_kv = 1;
    p.n_embd = 48; /* not whole Q4_0 blocks */
    CHECK(kvc_synth_write(a, &p, &e) == KVC_ERR_ARG && strstr(e.msg, "multiple of 32"), "%s", e.msg);

    /* writer: too much or too little data fails and leaves no file */
    struct gguf_writer *w = NULL;
    CHECK(gguf_writer_create(a, &w, &e) == KVC_OK, "%s", e.msg);
    uint64_t ne[2] = {32, 2};
    CHECK(gguf_writer_kv_u32(w, "x.k", 1) == KVC_OK, "kv");
    CHECK(gguf_writer_kv_u32(w, "x.k", 2) == KVC_ERR_ARG, "duplicate key accepted");
    gguf_writer_free(w);
    CHECK(access(a, F_OK) != 0, "unfinished file left behind");
    CHECK(gguf_writer_create(a, &w, &e) == KVC_OK, "%s", e.msg);
    CHECK(gguf_writer_add_tensor(w, "t", 2, ne, KVC_TYPE_F32) == KVC_OK, "add");
    CHECK(gguf_writer_add_tensor(w, "u", 1, ne, KVC_TYPE_F16) == KVC_OK, "add");
    CHECK(gguf_writer_begin_data(w) == KVC_OK, "begin");
    float data[64 + 32] = {0};
    data[5] = 1.5f;
    CHECK(gguf_writer_write_data(w, data, 64 * 4) == KVC_OK, "write");
    CHECK(gguf_writer_finish(w) == KVC_ERR_ARG && strstr(gguf_writer_error(w)->msg, "'u'"), "%s",
          gguf_writer_error(w)->msg);
    gguf_writer_free(w);
    CHECK(access(a, F_OK) != 0, "short file left behind");
    CHECK(gguf_writer_create(a, &w, &e) == KVC_OK, "%s", e.msg);
    CHECK(gguf_writer_add_tensor(w, "t", 2, ne, KVC_TYPE_F32) == KVC_OK, "add");
    CHECK(gguf_writer_add_tensor(w, "u", 1, ne, KVC_TYPE_F16) == KVC_OK, "add");
    CHECK(gguf_writer_begin_data(w) == KVC_OK, "begin");
    CHECK(gguf_writer_write_data(w, data, 64 * 4 + 64 + 1) == KVC_ERR_ARG, "overlong data accepted");
    gguf_writer_free(w);
    /* a well-formed file reads back with its padding and values */
    CHECK(gguf_writer_create(a, &w, &e) == KVC_OK, "%s", e.msg);
    CHECK(gguf_writer_kv_str(w, "general.architecture", "x") == KVC_OK, "kv");
    ne[0] = 3; ne[1] = 1;
    CHECK(gguf_writer_add_tensor(w, "odd", 1, ne, KVC_TYPE_F32) == KVC_OK, "add");
    ne[0] = 32; ne[1] = 2;
    CHECK(gguf_writer_add_tensor(w, "t", 2, ne, KVC_TYPE_F32) == KVC_OK, "add");
    CHECK(gguf_writer_begin_data(w) == KVC_OK, "begin");
    CHECK(gguf_writer_write_data(w, data, 12) == KVC_OK && gguf_writer_write_data(w, data, 256) == KVC_OK, "write");
    CHECK(gguf_writer_finish(w) == KVC_OK, "finish");
    gguf_writer_free(w);
    struct gguf_file *f = NULL;
    CHECK(gguf_open(a, &f, &e) == KVC_OK, "%s", e.msg);
    const struct gguf_tensor *t = f ? gguf_find_tensor(f, "t") : NULL;
    CHECK(t && t->offset == 32 && ((const float *)t->data)[5] == 1.5f, "tensor t offset/data");
    gguf_close(f);
    unlink(a);
}

int main(void) {
    const char *lvl = getenv("KVC_TEST_LEVEL");
    quick = lvl && strcmp(lvl, "quick") == 0;
    for (int i = 0; i < N_REAL; i++) test_preset(&reals[i]);
    test_seed_and_errors();
    return test_summary("test_synth");
}
