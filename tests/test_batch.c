/* test_batch.c - several sequences in one kvc_eval_batch against each sequence alone: the
 * embedded kvref-q4_0 model, three prompts of different lengths fed in mixed batches (prompt
 * chunks of one sequence next to decode tokens of the others), for f16 and compressed codecs
 * with and without sinks/recent rows. Logits of every step must match the single-sequence
 * kvc_eval run bit for bit (AVX2 and scalar kernels); the batch API's errors are checked too. */
#include "test.h"
#include "kvcodec.h"

#define NSEQ 3
#define NGEN 12

static const int plen[NSEQ] = {7, 61, 300};

static void make_prompt(int32_t *ids, int n, int seed, int n_vocab) {
    unsigned long long s = 0x9e3779b9ull * (unsigned long long)(seed + 1);
    ids[0] = 1;
    for (int i = 1; i < n; i++) ids[i] = 3 + (int)(t_rng_next(&s) % (unsigned long long)(n_vocab - 3));
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Single-sequence reference: logits after the prompt and after each of NGEN greedy tokens. */
static void run_alone(const kvc_model *m, const struct kvc_ctx_params *p, const int32_t *ids, int n, float *out,
                      int32_t *gen) {
    const int nv = kvc_model_get_info(m)->n_vocab;
    kvc_ctx *c = NULL;
    kvc_error e = {0};
    CHECK(kvc_ctx_create(m, p, &c, &e) == KVC_OK, "%s", e.msg);
    if (!c) return;
    for (int i = 0; i < n; i += 64) CHECK(kvc_eval(c, ids + i, n - i < 64 ? n - i : 64, 0, &e) == KVC_OK, "%s", e.msg);
    for (int g = 0; g <= NGEN; g++) {
        memcpy(out + (size_t)g * nv, kvc_get_logits(c), (size_t)nv * sizeof(float));
        if (g == NGEN) break;
        gen[g] = argmax(kvc_get_logits(c), nv);
        CHECK(kvc_eval(c, &gen[g], 1, 0, &e) == KVC_OK, "%s", e.msg);
    }
    kvc_ctx_free(c);
}

static void test_setting(const kvc_model *m, int isa, const char *k, const char *v, int sinks, int recent) {
    const int nv = kvc_model_get_info(m)->n_vocab;
    struct kvc_ctx_params p = kvc_ctx_default_params();
    p.n_ctx = 512;
    p.n_batch = 128;
    p.kv_k = k;
    p.kv_v = v;
    p.kv_sinks = sinks;
    p.kv_recent = recent;
    p.isa = isa;
    int32_t ids[NSEQ][300], gen[NSEQ][NGEN];
    float *ref = malloc(sizeof(float) * NSEQ * (NGEN + 1) * (size_t)nv);
    for (int s = 0; s < NSEQ; s++) {
        make_prompt(ids[s], plen[s], s, nv);
        run_alone(m, &p, ids[s], plen[s], ref + (size_t)s * (NGEN + 1) * nv, gen[s]);
    }
    kvc_ctx *c = NULL;
    kvc_error e = {0};
    CHECK(kvc_ctx_create(m, &p, &c, &e) == KVC_OK, "%s", e.msg);
    kvc_seq *seq[NSEQ] = {0};
    for (int s = 0; s < NSEQ; s++)
        CHECK(kvc_seq_create(c, s == 2 ? 512 : 256, &seq[s], &e) == KVC_OK, "%s", e.msg);
    CHECK(kvc_seq_kv_bytes(seq[0]) == kvc_ctx_seq_kv_bytes(c, 256), "bytes %llu vs planned %llu",
          (unsigned long long)kvc_seq_kv_bytes(seq[0]), (unsigned long long)kvc_ctx_seq_kv_bytes(c, 256));
    /* steps: every sequence with prompt left sends a chunk of up to 50 tokens, the others
     * their last token; sequences take turns being first in the batch */
    int fed[NSEQ] = {0}, ngen[NSEQ] = {0}, last[NSEQ] = {0};
    int32_t tok[128];
    kvc_seq *bs[128];
    double worst = 0;
    int exact = 1, steps = 0;
    for (int step = 0; step < 200; step++) {
        int n = 0, order[NSEQ], who[NSEQ], nw = 0;
        for (int s = 0; s < NSEQ; s++) order[s] = (s + step) % NSEQ;
        for (int k = 0; k < NSEQ; k++) {
            const int s = order[k];
            if (fed[s] < plen[s]) {
                int ch = plen[s] - fed[s] < 50 ? plen[s] - fed[s] : 50;
                for (int i = 0; i < ch; i++) { tok[n] = ids[s][fed[s] + i]; bs[n++] = seq[s]; }
                fed[s] += ch;
                if (fed[s] == plen[s]) who[nw++] = s; /* logits after the whole prompt */
                else who[nw++] = -1;
            } else if (ngen[s] < NGEN) {
                tok[n] = last[s];
                bs[n++] = seq[s];
                who[nw++] = s;
            }
        }
        if (n == 0) break;
        struct kvc_batch b = {.n = n, .token = tok, .seq = bs, .pos = NULL};
        CHECK(kvc_eval_batch(c, &b, &e) == KVC_OK, "%s", e.msg);
        steps++;
        const float *lg = kvc_get_logits(c);
        for (int r = 0; r < nw; r++) {
            const int s = who[r];
            if (s < 0) continue;
            const int g = fed[s] == plen[s] && ngen[s] == 0 && last[s] == 0 ? 0 : ngen[s];
            const float *want = ref + ((size_t)s * (NGEN + 1) + (size_t)g) * nv;
            for (int i = 0; i < nv; i++) {
                double dd = fabs((double)lg[(size_t)r * nv + i] - want[i]);
                if (dd > worst) worst = dd;
                if (dd != 0) exact = 0;
            }
            char what[96];
            snprintf(what, sizeof what, "%s/%s s%d r%d seq %d step %d", k, v, sinks, recent, s, g);
            check_tensor(what, lg + (size_t)r * nv, want, nv, 0, 0); /* bit-identical */
            if (g < NGEN) {
                last[s] = gen[s][g];
                ngen[s] = g + 1;
                CHECK(argmax(lg + (size_t)r * nv, nv) == gen[s][g], "%s: greedy token differs", what);
            } else {
                ngen[s] = NGEN;
            }
        }
    }
    for (int s = 0; s < NSEQ; s++) CHECK(ngen[s] == NGEN, "seq %d generated %d of %d", s, ngen[s], NGEN);
    printf("PASS isa %d %s/%s sinks %d recent %d: %d steps, worst |diff| %.3g (%s)\n", isa, k, v, sinks, recent, steps,
           worst, exact ? "bit-identical" : "not bit-identical");
    for (int s = 0; s < NSEQ; s++) kvc_seq_free(seq[s]);
    kvc_ctx_free(c);
    free(ref);
}

static void test_errors(const kvc_model *m) {
    struct kvc_ctx_params p = kvc_ctx_default_params();
    p.n_ctx = 64;
    p.n_batch = 16;
    kvc_ctx *c = NULL, *c2 = NULL;
    kvc_seq *a = NULL, *b2 = NULL, *x = NULL;
    kvc_error e = {0};
    CHECK(kvc_ctx_create(m, &p, &c, &e) == KVC_OK && kvc_ctx_create(m, &p, &c2, &e) == KVC_OK, "%s", e.msg);
    CHECK(kvc_seq_create(c, 65, &x, &e) == KVC_ERR_ARG && x == NULL, "seq longer than the context");
    CHECK(kvc_seq_create(c, 8, &a, &e) == KVC_OK && kvc_seq_create(c2, 8, &b2, &e) == KVC_OK, "%s", e.msg);
    int32_t t[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    kvc_seq *s2[3] = {a, b2, a};
    struct kvc_batch b = {.n = 1, .token = t, .seq = s2 + 1};
    CHECK(kvc_eval_batch(c, &b, &e) == KVC_ERR_ARG && strstr(e.msg, "another context"), "%s", e.msg);
    kvc_seq *s3[3] = {a, a, a};
    int pos[3] = {0, 2, 3};
    b = (struct kvc_batch){.n = 3, .token = t, .seq = s3, .pos = pos};
    CHECK(kvc_eval_batch(c, &b, &e) == KVC_ERR_ARG && strstr(e.msg, "position"), "%s", e.msg);
    kvc_seq *s9[10] = {a, a, a, a, a, a, a, a, a, a};
    b = (struct kvc_batch){.n = 9, .token = t, .seq = s9};
    CHECK(kvc_eval_batch(c, &b, &e) == KVC_ERR_ARG || kvc_eval_batch(c, &b, &e) == KVC_ERR_RANGE, "%s", e.msg);
    CHECK(kvc_seq_n_past(a) == 0, "a failed batch leaves the sequence as it was");
    int32_t bad = 1 << 30;
    b = (struct kvc_batch){.n = 1, .token = &bad, .seq = s3};
    CHECK(kvc_eval_batch(c, &b, &e) == KVC_ERR_RANGE, "%s", e.msg);
    kvc_seq *sp[3] = {a, NULL, NULL};
    kvc_seq *one = NULL;
    CHECK(kvc_seq_create(c, 8, &one, &e) == KVC_OK, "%s", e.msg);
    sp[1] = one;
    sp[2] = a;
    b = (struct kvc_batch){.n = 3, .token = t, .seq = sp};
    CHECK(kvc_eval_batch(c, &b, &e) == KVC_ERR_ARG && strstr(e.msg, "consecutive"), "%s", e.msg);
    b = (struct kvc_batch){.n = 8, .token = t, .seq = s9};
    CHECK(kvc_eval_batch(c, &b, &e) == KVC_OK && kvc_seq_n_past(a) == 8, "%s", e.msg);
    b = (struct kvc_batch){.n = 1, .token = t, .seq = s9};
    CHECK(kvc_eval_batch(c, &b, &e) == KVC_ERR_RANGE && strstr(e.msg, "full"), "%s", e.msg);
    kvc_seq_free(one);
    kvc_seq_free(a);
    kvc_seq_free(b2);
    kvc_ctx_free(c);
    kvc_ctx_free(c2);
}

int main(void) {
    kvc_model *m = NULL;
    kvc_error e = {0};
    CHECK(kvc_model_load("models/kvref-q4_0.gguf", &m, &e) == KVC_OK, "%s", e.msg);
    if (!m) return test_summary("test_batch");
    const char *lvl = getenv("KVC_TEST_LEVEL");
    const int quick = lvl && strcmp(lvl, "quick") == 0;
    test_errors(m);
    /* AVX2 and scalar levels: mixed batches must be bit-identical to single runs. Not
     * checked: AVX2 with --kv-recent and AVX-512 prefill batches of 8+ tokens, where kvc_eval
     * itself gives a token different logits (~0.1) depending on how the prompt is chunked
     * (a defect of those kernels, reported; the scalar level is exact with recent rows). */
    test_setting(m, 1, "f16", "f16", 0, 0);
    test_setting(m, 0, "q8_0", "f16", 3, 16);
    if (!quick) {
        test_setting(m, 1, "q4_0", "q8_0", 0, 0);
        test_setting(m, 1, "hdc:bits=3", "hdc:bits=3", 4, 0);
        test_setting(m, 0, "hdc:bits=3", "hdc:bits=3", 4, 32);
    }
    kvc_model_free(m);
    return test_summary("test_batch");
}
