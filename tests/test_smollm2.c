/* test_smollm2.c - SmolLM2-135M-Instruct (build/models/, `make smollm2`), kvcodec's first real
 * model, against llama.cpp's outputs in tests/ref/: token ids of tokenize.jsonl's texts and
 * tokenize-bpe.jsonl's edge strings, logits on the synthetic prompt at every position (issue
 * 11's criterion), the chat prompt of its template and the greedy reply (ids, stop at EOT). */
#include "json.h"
#include "kvcodec.h"
#include "logits_ref.h"
#include "test.h"

#include <stdint.h>
#include <sys/stat.h>

/* The model file, or NULL (a failure under CI=true, else a skip message). */
static const char *model_path(void) {
    const char *p = getenv("KVC_SMOLLM2");
    if (!p) p = "build/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    struct stat st;
    if (stat(p, &st) == 0) return p;
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
        t_fail++;
        fprintf(stderr, "FAIL: %s is missing (CI=true: run make smollm2)\n", p);
    } else {
        fprintf(stderr, "SKIP: %s is missing (make smollm2 fetches it)\n", p);
    }
    return NULL;
}

static int unhex(const char *h, char *out) {
    int n = 0;
    for (; h[0] && h[1]; h += 2) {
        unsigned v;
        if (sscanf(h, "%2x", &v) != 1) return -1;
        out[n++] = (char)v;
    }
    return n;
}

static void test_tokenize(const kvc_model *m) {
    FILE *f = fopen("tests/ref/smollm2-tokenize.jsonl", "rb");
    CHECK(f != NULL, "open tests/ref/smollm2-tokenize.jsonl");
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    int cases = 0, bad = 0;
    while (getline(&line, &cap, f) > 0) {
        struct jnode j;
        memset(&j, 0, sizeof j);
        if (!j_value(line, &j)) { CHECK(0, "bad json line %d", cases); continue; }
        const struct jnode *hex = j_get(&j, "text_hex"), *text = j_get(&j, "text"), *ids = j_get(&j, "ids");
        char buf[4096];
        const char *s = text ? text->str : "";
        size_t len = text ? text->len : 0;
        if (hex) {
            int n = unhex(hex->str, buf);
            s = buf;
            len = n < 0 ? 0 : (size_t)n;
        }
        int32_t *ours = NULL;
        int n = 0;
        kvc_error e = {0};
        int ok = kvc_vocab_tokenize(kvc_model_vocab(m), s, len, j_get(&j, "add_bos")->t == J_BOOL &&
                                    j_get(&j, "add_bos")->num != 0, 0, &ours, &n, &e) == KVC_OK && n == ids->n;
        for (int i = 0; ok && i < n; i++) ok = ours[i] == (int32_t)ids->kids[i].num;
        if (!ok) {
            bad++;
            fprintf(stderr, "tokenize differs: %s\n", j_get(&j, "src")->str);
        }
        cases++;
        free(ours);
        j_free(&j);
    }
    free(line);
    fclose(f);
    CHECK(cases == 172 && bad == 0, "SmolLM2 tokenization: %d of %d cases differ from llama.cpp", bad, cases);
    printf("SmolLM2 tokenization: %d cases identical to llama.cpp's\n", cases - bad);
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = malloc(1 << 16);
    *len = fread(b, 1, (1 << 16) - 1, f);
    b[*len] = 0;
    fclose(f);
    return b;
}

/* "key: 1 2 3" line of smollm2-chat-greedy.txt (first occurrence) into ids */
static int read_ids(const char *txt, const char *key, int32_t *ids, int cap) {
    const char *p = strstr(txt, key);
    if (!p) return -1;
    p += strlen(key);
    int n = 0;
    while (*p && *p != '\n' && n < cap) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        ids[n++] = (int32_t)v;
        p = end;
    }
    return n;
}

static void test_chat(kvc_model *m) {
    const char *fmt = NULL;
    kvc_error e = {0};
    CHECK(kvc_model_chat_format(m, NULL, &fmt, &e) == KVC_OK && fmt && strcmp(fmt, "chatml") == 0,
          "SmolLM2 template detected as %s: %s", fmt ? fmt : "-", e.msg);
    struct kvc_chat_msg msgs[2] = {{"system", "You are a helpful assistant."}, {"user", "What is the capital of France?"}};
    char *text = NULL;
    size_t rlen = 0;
    char *want = slurp("tests/ref/smollm2-chat-prompt.txt", &rlen), *greedy = slurp("tests/ref/smollm2-chat-greedy.txt", &rlen);
    CHECK(want && greedy, "read tests/ref/smollm2-chat-*.txt");
    if (!want || !greedy || kvc_chat_apply("chatml", msgs, 2, 1, &text, &e) != KVC_OK) {
        CHECK(0, "chat apply: %s", e.msg);
        free(want); free(greedy);
        return;
    }
    CHECK(strcmp(text, want) == 0, "chat prompt differs from llama.cpp's:\n%s", text);
    int32_t pid[64], rid[64], *ids = NULL;
    int np = read_ids(greedy, "prompt_ids:", pid, 64), nr = read_ids(greedy, "reply_ids:", rid, 64), n = 0;
    CHECK(kvc_vocab_tokenize(kvc_model_vocab(m), text, strlen(text), 1, 1, &ids, &n, &e) == KVC_OK, "%s", e.msg);
    int same = n == np;
    for (int i = 0; same && i < n; i++) same = ids[i] == pid[i];
    CHECK(same, "chat prompt: %d ids (parse_special) differ from llama.cpp's %d", n, np);
    /* greedy reply, f16 cache: llama.cpp's ids up to and including the EOG token */
    struct kvc_ctx_params p = kvc_ctx_default_params();
    p.n_ctx = 128;
    kvc_ctx *c = NULL;
    int got[64], ng = 0, stopped = 0;
    if (kvc_ctx_create(m, &p, &c, &e) == KVC_OK && kvc_eval(c, ids, n, 0, &e) == KVC_OK) {
        const int V = kvc_model_get_info(m)->n_vocab;
        for (ng = 0; ng < 32;) {
            const float *l = kvc_get_logits(c);
            int best = 0;
            for (int j = 1; j < V; j++)
                if (l[j] > l[best]) best = j;
            got[ng++] = best;
            if (kvc_token_is_eog(m, best)) { stopped = 1; break; }
            int32_t t = best;
            if (kvc_eval(c, &t, 1, 0, &e)) break;
        }
    }
    same = stopped && ng == nr;
    for (int i = 0; same && i < ng; i++) same = got[i] == rid[i];
    CHECK(same, "greedy chat reply: %d tokens (stopped at EOG: %d) differ from llama.cpp's %d", ng, stopped, nr);
    kvc_ctx_free(c);
    free(ids);
    free(text);
    free(want);
    free(greedy);
}

int main(void) {
    const char *mp = model_path();
    if (mp) {
        kvc_model *m = NULL;
        kvc_error e = {0};
        CHECK(kvc_model_load(mp, &m, &e) == KVC_OK, "load %s: %s", mp, e.msg);
        if (m) {
            const struct kvc_model_info *in = kvc_model_get_info(m);
            CHECK(in->n_layer == 30 && in->n_head == 9 && in->n_head_kv == 3 && in->head_dim == 64 &&
                  in->n_vocab == 49152 && in->tied_output, "SmolLM2 shape: %d layers, %d/%d heads, dim %d, vocab %d",
                  in->n_layer, in->n_head, in->n_head_kv, in->head_dim, in->n_vocab);
            test_tokenize(m);
            test_chat(m);
            kvc_model_free(m);
        }
        check_dump("smollm2", mp, "tests/ref/logits-smollm2.json", "f16", "f16", NULL, 1, 1);
    }
    return test_summary("test_smollm2");
}
