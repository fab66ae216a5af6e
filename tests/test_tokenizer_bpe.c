/* test_tokenizer_bpe.c - the tokenizers against llama.cpp's ids on real vocabularies
 * (../shared/reference/tokenize-bpe.jsonl: Llama 3, Qwen2, GPT-2, Llama-2 SPM and the
 * truncated vocabularies of the synthetic models, read through the vocab-only load path),
 * decode round trips, special-token parsing, EOT/EOG ids, small BPE vocabularies built in
 * memory (merge ranks, pre-tokenizer names, malformed metadata) and the encode time of
 * WikiText-2 with the Llama 3 vocabulary. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* getline, clock_gettime */
#endif
#include "gguf.h"
#include "gguf_build.h"
#include "json.h"
#include "test.h"
#include "tokenizer.h"
#include "tokenizer_internal.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdint.h>
#include <time.h>

static char g_build[256] = "build"; /* build folder (from argv[0]) for unpacked vocabularies */

/* ---------- vocabularies ---------- */

struct vocab_slot {
    const char *name, *rel; /* file name in the jsonl, path under ../shared */
    int gz;                 /* 1: gunzip into BUILD/vocab/ first */
    kvc_vocab *v;
    int tried, n_cases, n_same;
};
static struct vocab_slot vocabs[] = {
    {"llama3-vocab.gguf", "models/vocab/llama3-vocab.gguf.gz", 1, NULL, 0, 0, 0},
    {"qwen2-vocab.gguf", "models/vocab/qwen2-vocab.gguf.gz", 1, NULL, 0, 0, 0},
    {"ggml-vocab-gpt-2.gguf", "models/vocab/ggml-vocab-gpt-2.gguf", 0, NULL, 0, 0, 0},
    {"ggml-vocab-llama-spm.gguf", "models/vocab/ggml-vocab-llama-spm.gguf", 0, NULL, 0, 0, 0},
    {"llama3-q4km.gguf", "models/synth/llama3-q4km.gguf", 0, NULL, 0, 0, 0},
    {"qwen2-q5km.gguf", "models/synth/qwen2-q5km.gguf", 0, NULL, 0, 0, 0},
    {"spm-q2k.gguf", "models/synth/spm-q2k.gguf", 0, NULL, 0, 0, 0},
};
enum { N_VOCABS = sizeof vocabs / sizeof vocabs[0] };

static kvc_vocab *get_vocab(const char *name) {
    for (int i = 0; i < N_VOCABS; i++) {
        struct vocab_slot *s = &vocabs[i];
        if (strcmp(s->name, name) != 0) continue;
        if (s->tried) return s->v;
        s->tried = 1;
        const char *src = shared_path(s->rel);
        if (!src) return NULL;
        char path[700];
        snprintf(path, sizeof path, "%s", src);
        if (s->gz) { /* unpack once into the build folder */
            snprintf(path, sizeof path, "%s/vocab/%s", g_build, s->name);
            struct stat sb;
            if (stat(path, &sb) != 0) {
                char cmd[4000];
                snprintf(cmd, sizeof cmd, "mkdir -p '%s/vocab' && gunzip -c '%s' > '%s.tmp' && mv '%s.tmp' '%s'",
                         g_build, src, path, path, path);
                CHECK(system(cmd) == 0, "unpacking %s failed", src);
            }
        }
        kvc_error err = {0};
        kvc_status st = kvc_vocab_load(path, &s->v, &err);
        CHECK(st == KVC_OK, "vocab-only load of %s: %s", path, err.msg);
        return s->v;
    }
    return NULL;
}

/* ---------- tokenize-bpe.jsonl ---------- */

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static void print_ids(const char *what, const int32_t *ids, int n) {
    fprintf(stderr, "  %s (%d):", what, n);
    for (int i = 0; i < n && i < 200; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* Concatenate the pieces of ids[from..n) (specials not printed). */
static char *decode(const kvc_vocab *v, const int32_t *ids, int n, int from, size_t *len) {
    size_t cap = 64, w = 0;
    char *o = malloc(cap);
    for (int i = from; o && i < n; i++) {
        char piece[512];
        int k = kvc_vocab_token_to_piece(v, ids[i], 0, piece, (int)sizeof piece);
        if (w + (size_t)k + 1 > cap) {
            while (w + (size_t)k + 1 > cap) cap *= 2;
            char *no = realloc(o, cap);
            if (!no) { free(o); return NULL; }
            o = no;
        }
        memcpy(o + w, piece, (size_t)k);
        w += (size_t)k;
    }
    if (o) o[w] = 0;
    *len = w;
    return o;
}

static void test_reference(void) {
    const char *path = shared_path("reference/tokenize-bpe.jsonl");
    if (!path) return;
    FILE *fp = fopen(path, "rb");
    CHECK(fp != NULL, "cannot open %s", path);
    if (!fp) return;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t ln;
    int lineno = 0, n_total = 0;
    while ((ln = getline(&line, &lcap, fp)) > 0) {
        lineno++;
        if (ln <= 1) continue;
        struct jnode root;
        if (!j_value(line, &root)) {
            CHECK(0, "%s:%d: cannot parse the line", path, lineno);
            j_free(&root);
            continue;
        }
        struct jnode *vn = j_get(&root, "vocab"), *tn = j_get(&root, "text"), *bn = j_get(&root, "add_bos");
        struct jnode *in = j_get(&root, "ids"), *hn = j_get(&root, "text_hex"), *sn = j_get(&root, "src");
        int ok = vn && vn->t == J_STR && tn && tn->t == J_STR && bn && bn->t == J_BOOL && in && in->t == J_ARR;
        CHECK(ok, "%s:%d: missing fields", path, lineno);
        kvc_vocab *v = ok ? get_vocab(vn->str) : NULL;
        struct vocab_slot *slot = NULL;
        for (int i = 0; ok && i < N_VOCABS; i++)
            if (strcmp(vocabs[i].name, vn->str) == 0) slot = &vocabs[i];
        CHECK(!ok || slot, "%s:%d: unknown vocabulary '%s'", path, lineno, vn ? vn->str : "?");
        if (!v || !slot) { j_free(&root); continue; }
        /* the exact bytes: text_hex where the input is not valid UTF-8 */
        char *text = tn->str;
        size_t tl = tn->len;
        char *raw = NULL;
        if (hn && hn->t == J_STR) {
            tl = hn->len / 2;
            raw = malloc(tl + 1);
            for (size_t i = 0; raw && i < tl; i++) raw[i] = (char)(hexval(hn->str[2 * i]) * 16 + hexval(hn->str[2 * i + 1]));
            text = raw;
        }
        int32_t *want = malloc(sizeof *want * (size_t)(in->n + 1));
        for (int i = 0; i < in->n; i++) want[i] = (int32_t)in->kids[i].num;
        int32_t *ids = NULL;
        int n = 0;
        kvc_error err = {0};
        kvc_status st = kvc_vocab_tokenize(v, text, tl, bn->num != 0, 0, &ids, &n, &err);
        CHECK(st == KVC_OK, "%s:%d: tokenize: %s", path, lineno, err.msg);
        int same = st == KVC_OK && n == in->n && memcmp(ids, want, (size_t)n * sizeof *ids) == 0;
        slot->n_cases++;
        slot->n_same += same;
        n_total++;
        CHECK(same, "%s:%d (%s, %s): ids differ from llama.cpp", path, lineno, vn->str,
              sn && sn->t == J_STR ? sn->str : "?");
        if (!same) {
            print_ids("llama.cpp", want, in->n);
            print_ids("kvcodec  ", ids, n);
        }
        /* byte-level BPE is lossless on valid UTF-8: the pieces give back the text */
        struct kvc_vocab_info vi;
        kvc_vocab_get_info(v, &vi);
        if (st == KVC_OK && !raw && strcmp(vi.kind, "bpe") == 0) {
            size_t dl;
            int from = n > 0 && ids[0] == vi.bos_id && bn->num != 0 && vi.add_bos;
            char *d = decode(v, ids, n, from, &dl);
            CHECK(d && dl == tl && memcmp(d, text, tl) == 0, "%s:%d (%s): decode(encode(text)) != text", path,
                  lineno, vn->str);
            free(d);
        }
        free(ids);
        free(want);
        free(raw);
        j_free(&root);
    }
    free(line);
    fclose(fp);
    for (int i = 0; i < N_VOCABS; i++) {
        printf("tokenize-bpe.jsonl: %-26s %3d of %3d identical to llama.cpp\n", vocabs[i].name, vocabs[i].n_same,
               vocabs[i].n_cases);
        CHECK(vocabs[i].n_cases >= 100 || !vocabs[i].v, "%s: only %d cases read", vocabs[i].name, vocabs[i].n_cases);
    }
    CHECK(n_total >= 1000, "only %d reference cases read", n_total);
}

/* ---------- special tokens, EOT/EOG, pieces ---------- */

static int tok(const kvc_vocab *v, const char *s, int add, int special, int32_t **ids) {
    int n = -1;
    kvc_error err = {0};
    kvc_status st = kvc_vocab_tokenize(v, s, strlen(s), add, special, ids, &n, &err);
    CHECK(st == KVC_OK, "tokenize '%s': %s", s, err.msg);
    return st == KVC_OK ? n : -1;
}

static void test_special(void) {
    kvc_vocab *l3 = get_vocab("llama3-vocab.gguf"), *qw = get_vocab("qwen2-vocab.gguf");
    if (l3) {
        struct kvc_vocab_info vi;
        kvc_vocab_get_info(l3, &vi);
        CHECK(strcmp(vi.kind, "bpe") == 0 && strcmp(vi.pre, "llama-bpe") == 0 && vi.n_tokens == 128256 &&
                  vi.bos_id == 128000 && vi.eos_id == 128001 && vi.eot_id == 128009 && vi.add_bos == 1,
              "llama3 info: %s %s %d bos %d eos %d eot %d add_bos %d", vi.kind, vi.pre, vi.n_tokens, vi.bos_id,
              vi.eos_id, vi.eot_id, vi.add_bos);
        CHECK(kvc_vocab_is_eog(l3, 128001) && kvc_vocab_is_eog(l3, 128009) &&
                  !kvc_vocab_is_eog(l3, 128000) && !kvc_vocab_is_eog(l3, 9906) && !kvc_vocab_is_eog(l3, -1),
              "llama3 EOG set: <|end_of_text|> and <|eot_id|>");
        int32_t *a = NULL, *b = NULL;
        const char *chat = "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>";
        int na = tok(l3, chat, 1, 1, &a);
        int nb = tok(l3, "\n\nHello", 0, 0, &b);
        /* BOS, header, "user", header end, the text, <|eot_id|> */
        int ok = na == nb + 5 && a[0] == 128000 && a[1] == 128006 && a[3] == 128007 && a[na - 1] == 128009 &&
                 memcmp(a + 4, b, (size_t)nb * sizeof *b) == 0;
        CHECK(ok, "llama3: control tokens parsed with parse_special");
        if (!ok && na > 0) print_ids("got", a, na);
        free(a);
        free(b);
        /* without parse_special the same text is plain text: no control ids after BOS */
        na = tok(l3, chat, 1, 0, &a);
        ok = na > 10;
        for (int i = 1; i < na; i++) ok &= a[i] < 128000;
        CHECK(ok, "llama3: control tokens are text without parse_special");
        free(a);
        na = tok(l3, "<|begin_of_text|>", 0, 1, &a);
        CHECK(na == 1 && a[0] == 128000, "llama3: '<|begin_of_text|>' alone with parse_special");
        free(a);
        char p[64];
        int k = kvc_vocab_token_to_piece(l3, 128009, 0, p, sizeof p);
        CHECK(k == 0, "llama3: <|eot_id|> prints nothing without special");
        k = kvc_vocab_token_to_piece(l3, 128009, 1, p, sizeof p);
        CHECK(k == 10 && memcmp(p, "<|eot_id|>", 10) == 0, "llama3: <|eot_id|> prints its text with special");
        k = kvc_vocab_token_to_piece(l3, 22691, 0, p, sizeof p);
        CHECK(k == 6 && memcmp(p, " Hello", 6) == 0, "llama3: piece of 22691 is ' Hello'");
        k = kvc_vocab_token_to_piece(l3, 22691, 0, p, 3);
        CHECK(k == 3 && memcmp(p, " He", 3) == 0, "llama3: piece truncated to cap");
        CHECK(kvc_vocab_token_to_piece(l3, 128256, 1, p, sizeof p) == 0, "llama3: id n_vocab prints nothing");
    }
    kvc_vocab *spm = get_vocab("ggml-vocab-llama-spm.gguf");
    if (spm) { /* SentencePiece: <s> parsed only with parse_special; the text after it gets the space prefix */
        int32_t *a = NULL, *b = NULL;
        int na = tok(spm, "<s>Hi", 0, 1, &a), nb = tok(spm, "Hi", 0, 0, &b);
        CHECK(na == nb + 1 && a[0] == 1 && memcmp(a + 1, b, (size_t)nb * sizeof *b) == 0, "spm: <s> parsed");
        free(a);
        na = tok(spm, "<s>Hi", 0, 0, &a);
        CHECK(na > nb + 1 && a[0] != 1, "spm: <s> is text without parse_special");
        free(a);
        free(b);
        CHECK(kvc_vocab_is_eog(spm, 2) && !kvc_vocab_is_eog(spm, 1), "spm: EOS </s> ends a generation");
    }
    if (qw) {
        struct kvc_vocab_info vi;
        kvc_vocab_get_info(qw, &vi);
        CHECK(strcmp(vi.pre, "qwen2") == 0 && vi.bos_id == 151643 && vi.eos_id == 151645 && vi.eot_id == 151645 &&
                  vi.add_bos == 0, "qwen2 info: %s bos %d eos %d eot %d add_bos %d", vi.pre, vi.bos_id, vi.eos_id,
              vi.eot_id, vi.add_bos);
        CHECK(kvc_vocab_is_eog(qw, 151643) && kvc_vocab_is_eog(qw, 151645) && !kvc_vocab_is_eog(qw, 151644),
              "qwen2 EOG: <|endoftext|> and <|im_end|>, not <|im_start|>");
        int32_t *a = NULL, *b = NULL;
        int na = tok(qw, "<|im_start|>user\nhi<|im_end|>", 1, 1, &a);
        int nb = tok(qw, "user\nhi", 1, 0, &b);
        int ok = na == nb + 2 && a[0] == 151644 && a[na - 1] == 151645 && memcmp(a + 1, b, (size_t)nb * sizeof *b) == 0;
        CHECK(ok, "qwen2: <|im_start|>/<|im_end|> parsed, no BOS added");
        free(a);
        free(b);
        /* user-defined tokens (<think>) are split out even without parse_special */
        na = tok(qw, "a<think>b", 0, 0, &a);
        ok = na == 3 && a[1] == 151667;
        CHECK(ok, "qwen2: user-defined <think> recognised without parse_special");
        free(a);
        char p[32];
        CHECK(kvc_vocab_token_to_piece(qw, 151667, 0, p, sizeof p) == 7 && memcmp(p, "<think>", 7) == 0,
              "qwen2: user-defined tokens print their text");
    }
}

/* ---------- small vocabularies built in memory ---------- */

struct bsynth {
    const char *model, *pre; /* pre NULL: key absent */
    const char *const *tok;
    const int32_t *type;
    int n_tok, n_type;
    const char *const *merges;
    int n_merges; /* -1: key absent */
    const char *name; /* general.name, NULL: absent */
};

static struct gbuf build_bpe(const struct bsynth *s) {
    struct gbuf b = {0};
    gput(&b, "GGUF", 4);
    gu32(&b, 3);
    gu64(&b, 0);
    gu64(&b, 2 + (s->pre != NULL) + (s->n_type > 0) + (s->n_merges >= 0) + (s->name != NULL));
    if (s->name) kv_str(&b, "general.name", s->name);
    kv_str(&b, "tokenizer.ggml.model", s->model);
    if (s->pre) kv_str(&b, "tokenizer.ggml.pre", s->pre);
    kv_strs(&b, "tokenizer.ggml.tokens", s->tok, s->n_tok);
    if (s->n_type > 0) kv_i32s(&b, "tokenizer.ggml.token_type", s->type, s->n_type);
    if (s->n_merges >= 0) kv_strs(&b, "tokenizer.ggml.merges", s->merges, s->n_merges);
    return b;
}

static kvc_status synth_bpe(const struct bsynth *s, struct gbuf *b, struct gguf_file **f,
                           struct kvc_tokenizer **t, kvc_error *err) {
    *b = build_bpe(s);
    *t = NULL;
    kvc_status st = gguf_parse_meta(b->p, b->n, "bpe.gguf", f, err);
    CHECK(st == KVC_OK, "synthetic GGUF parses: %s", err->msg);
    if (st) return st;
    return kvc_tokenizer_load(*f, t, err);
}

static void expect(struct kvc_tokenizer *t, const char *text, const int32_t *want, int n_want, const char *what) {
    int32_t *ids = NULL;
    int n = 0;
    kvc_error err = {0};
    kvc_status st = kvc_tokenizer_tokenize(t, text, strlen(text), 1, 0, &ids, &n, &err);
    int same = st == KVC_OK && n == n_want && memcmp(ids, want, (size_t)n * sizeof *ids) == 0;
    CHECK(same, "%s: encode of '%s'", what, text);
    if (!same) {
        print_ids("want", want, n_want);
        print_ids("got ", ids, n);
    }
    free(ids);
}

static void test_synthetic(void) {
    /* 0 a 1 b 2 c 3 ab 4 bc 5 Ġ (space) 6 Ġa 7 <|x|> (control) 8 abc */
    static const char *const tok[] = {"a", "b", "c", "ab", "bc", "\xc4\xa0", "\xc4\xa0" "a", "<|x|>", "abc"};
    static const int32_t type[] = {1, 1, 1, 1, 1, 1, 1, 3, 1};
    static const char *const m1[] = {"b c", "a b", "\xc4\xa0 a"};
    static const char *const m2[] = {"a b", "b c", "\xc4\xa0 a"};
    struct gbuf b;
    struct gguf_file *f = NULL;
    struct kvc_tokenizer *t = NULL;
    kvc_error err = {0};
    /* merge order decides: "b c" first -> a bc; "a b" first -> ab c */
    struct bsynth s = {"gpt2", "gpt-2", tok, type, 9, 9, m1, 3, NULL};
    kvc_status st = synth_bpe(&s, &b, &f, &t, &err);
    CHECK(st == KVC_OK, "synthetic BPE loads: %s", err.msg);
    if (!st) {
        expect(t, "abc", (const int32_t[]){0, 4}, 2, "rank order (b c first)");
        expect(t, "a abc", (const int32_t[]){0, 6, 4}, 3, "space merges into the word");
        /* 'd' is not in the vocabulary: dropped, as llama.cpp drops bytes without a token */
        expect(t, "adb", (const int32_t[]){0, 1}, 2, "unknown byte dropped");
        CHECK(kvc_tokenizer_bos(t) == -1 && kvc_tokenizer_add_bos(t) == 0, "BPE without BOS key and id 11: none");
    }
    kvc_tokenizer_free(t);
    gguf_close(f);
    free(b.p);
    s.merges = m2;
    st = synth_bpe(&s, &b, &f, &t, &err);
    if (!st) expect(t, "abc", (const int32_t[]){3, 2}, 2, "rank order (a b first)");
    kvc_tokenizer_free(t);
    gguf_close(f);
    free(b.p);
    /* llama-bpe ignores merges for a pre-token that is a whole token ("abc" -> 8) */
    s.pre = "llama-bpe";
    st = synth_bpe(&s, &b, &f, &t, &err);
    if (!st) {
        expect(t, "abc", (const int32_t[]){8}, 1, "ignore_merges");
        CHECK(strcmp(kvc_tokenizer_pre(t), "llama-bpe") == 0, "pre name kept");
    }
    kvc_tokenizer_free(t);
    gguf_close(f);
    free(b.p);
    /* every supported pre-tokenizer name loads and tokenizes */
    static const char *const pres[] = {"default", "llama3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe", "chatglm-bpe",
                                       "deepseek-llm", "deepseek-coder", "deepseek-v3", "falcon", "starcoder", "refact",
                                       "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "gpt-2", "phi-2",
                                       "jina-es", "roberta-bpe", "mpt", "olmo", "jais", "qwen2", "deepseek-r1-qwen",
                                       "megrez", "stablelm2", "poro-chat", "bloom", "gpt3-finnish", "viking", "tekken",
                                       "chameleon"};
    for (size_t i = 0; i < sizeof pres / sizeof pres[0]; i++) {
        s.pre = pres[i];
        st = synth_bpe(&s, &b, &f, &t, &err);
        CHECK(st == KVC_OK, "pre-tokenizer '%s' loads: %s", pres[i], err.msg);
        if (!st) {
            int32_t *ids = NULL;
            int n = 0;
            const char *txt = "ab c 123 abc\n\n  \xe4\xb8\x80\xff 'll";
            st = kvc_tokenizer_tokenize(t, txt, strlen(txt), 1, 1, &ids, &n, &err);
            CHECK(st == KVC_OK && n >= 4, "pre-tokenizer '%s' tokenizes: %s", pres[i], err.msg);
            free(ids);
        }
        kvc_tokenizer_free(t);
        gguf_close(f);
        free(b.p);
    }
    /* per-model strip attributes: jina-v2 strips the spaces before <mask>, Phi-3 those after
     * its special tokens (as llama.cpp); other vocabularies keep them */
    static const char *const tok_m[] = {"a", "b", "c", "ab", "bc", "\xc4\xa0", "\xc4\xa0" "a", "<|x|>", "abc", "<mask>"};
    static const int32_t type_m[] = {1, 1, 1, 1, 1, 1, 1, 3, 1, 3};
    struct bsynth sm = {"gpt2", "jina-v2-es", tok_m, type_m, 10, 10, m1, 3, NULL};
    int32_t *ids = NULL;
    int nid = 0;
    for (int pass = 0; pass < 4; pass++) {
        sm.pre = pass == 0 ? "jina-v2-es" : "gpt-2";
        sm.name = pass == 2 ? "Phi-3-mini-4k-instruct" : NULL;
        const char *txt = pass == 3 ? "<|x|>  a" : pass == 2 ? "<|x|>  a" : "a  <mask>";
        st = synth_bpe(&sm, &b, &f, &t, &err);
        CHECK(st == KVC_OK, "strip vocabulary loads: %s", err.msg);
        if (!st) {
            st = kvc_tokenizer_tokenize(t, txt, strlen(txt), 0, 1, &ids, &nid, &err);
            static const int32_t want0[] = {0, 9}, want1[] = {0, 5, 5, 9}, want2[] = {7, 0}, want3[] = {7, 5, 6};
            const int32_t *want[] = {want0, want1, want2, want3};
            int wn[] = {2, 4, 2, 3};
            CHECK(st == KVC_OK && nid == wn[pass] && memcmp(ids, want[pass], (size_t)nid * sizeof *ids) == 0,
                  "strip attributes, case %d", pass);
            free(ids);
        }
        kvc_tokenizer_free(t);
        gguf_close(f);
        free(b.p);
    }
    /* the metadata-only parse skips tensor infos: a tensor of an unknown type (99) fails the
     * full parse but not the tokenizer's */
    {
        struct gbuf g = {0};
        gput(&g, "GGUF", 4);
        gu32(&g, 3);
        gu64(&g, 1);
        gu64(&g, 4);
        kv_str(&g, "tokenizer.ggml.model", "gpt2");
        kv_str(&g, "tokenizer.ggml.pre", "qwen2");
        kv_strs(&g, "tokenizer.ggml.tokens", tok, 9);
        kv_strs(&g, "tokenizer.ggml.merges", m1, 3);
        gstr(&g, "w.weight");
        gu32(&g, 1);
        gu64(&g, 32);
        gu32(&g, 99);
        gu64(&g, 0);
        for (int i = 0; i < 64; i++) gput(&g, "\0", 1);
        struct gguf_file *gf = NULL;
        kvc_error e2 = {0};
        CHECK(gguf_parse(g.p, g.n, "t99.gguf", &gf, &e2) == KVC_ERR_FORMAT && strstr(e2.msg, "type 99"),
              "full parse rejects tensor type 99: %s", e2.msg);
        gguf_close(gf);
        gf = NULL;
        st = gguf_parse_meta(g.p, g.n, "t99.gguf", &gf, &e2);
        CHECK(st == KVC_OK && gf && gf->n_tensors == 0, "metadata-only parse: %s", e2.msg);
        if (!st) {
            st = kvc_tokenizer_load(gf, &t, &e2);
            CHECK(st == KVC_OK, "tokenizer from metadata-only parse: %s", e2.msg);
            if (!st) expect(t, "abc", (const int32_t[]){0, 4}, 2, "metadata-only vocabulary");
            kvc_tokenizer_free(t);
            t = NULL;
        }
        gguf_close(gf);
        free(g.p);
    }
    /* missing pre: 'default' (with a warning on stderr) */
    s.pre = NULL;
    st = synth_bpe(&s, &b, &f, &t, &err);
    CHECK(st == KVC_OK && t && strcmp(kvc_tokenizer_pre(t), "default") == 0, "missing pre means 'default': %s", err.msg);
    kvc_tokenizer_free(t);
    gguf_close(f);
    free(b.p);

    /* malformed metadata: one line naming the field */
    static const char *const bad_m1[] = {"a d"};
    static const char *const bad_m2[] = {"ab"};
    static const char *const bad_m3[] = {"a "};
    static const int32_t bad_type[] = {1, 1, 1, 1, 1, 1, 1, 7, 1};
    struct { struct bsynth s; kvc_status want; const char *field; } bad[] = {
        {{"gpt2", "gpt-2", tok, type, 9, 9, bad_m1, 1, NULL}, KVC_ERR_FORMAT, "'tokenizer.ggml.merges'[0] = 'a d' names a token missing"},
        {{"gpt2", "gpt-2", tok, type, 9, 9, bad_m2, 1, NULL}, KVC_ERR_FORMAT, "'tokenizer.ggml.merges'[0] = 'ab' is not two tokens"},
        {{"gpt2", "gpt-2", tok, type, 9, 9, bad_m3, 1, NULL}, KVC_ERR_FORMAT, "'tokenizer.ggml.merges'[0]"},
        {{"gpt2", "gpt-2", tok, type, 9, 9, m1, -1, NULL}, KVC_ERR_FORMAT, "tokenizer.ggml.merges"},
        {{"gpt2", "gpt-2", tok, type, 0, 0, m1, 3, NULL}, KVC_ERR_FORMAT, "tokenizer.ggml.tokens"},
        {{"gpt2", "gpt-2", tok, bad_type, 9, 9, m1, 3, NULL}, KVC_ERR_FORMAT, "'tokenizer.ggml.token_type'[7] = 7"},
        {{"gpt2", "gpt-2", tok, type, 9, 8, m1, 3, NULL}, KVC_ERR_FORMAT, "tokenizer.ggml.token_type"},
        {{"gpt2", "no-such-pre", tok, type, 9, 9, m1, 3, NULL}, KVC_ERR_UNSUPPORTED, "'no-such-pre' is not supported (supported: default, llama3"},
        {{"bpe", "gpt-2", tok, type, 9, 9, m1, 3, NULL}, KVC_ERR_UNSUPPORTED, "'tokenizer.ggml.model' = 'bpe' is not supported (supported: llama"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = 0;
        st = synth_bpe(&bad[i].s, &b, &f, &t, &err);
        CHECK(st == bad[i].want && t == NULL && strstr(err.msg, bad[i].field) != NULL && !strchr(err.msg, '\n'),
              "malformed case %zu: status %d (want %d), message '%s' should name '%s'", i, (int)st, (int)bad[i].want,
              err.msg, bad[i].field);
        kvc_tokenizer_free(t);
        gguf_close(f);
        f = NULL;
        free(b.p);
    }
}

/* ---------- character classes of the pre-tokenizer ---------- */

/* The regexes see llama.cpp's classes: code points of Unicode 15.0/15.1 (unknown to PCRE2 10.42)
 * through a stand-in of the same class, non-ASCII whitespace as U+000B, U+180E (PCRE2's \s, not
 * llama.cpp's) as a non-space, surrogates as a code point that is no letter, digit or space. */
static void test_classes(void) {
    static const struct { uint32_t cp; const char *cls; } cases[] = {
        {0x31350, "\\p{L}"},  /* CJK Extension H */
        {0x2EBF0, "\\p{L}"},  /* CJK Extension I */
        {0x11F04, "\\p{L}"},  /* Kawi letter */
        {0x11F50, "\\p{N}"},  /* Kawi digit zero */
        {0x1D2C0, "\\p{N}"},  /* Kaktovik numeral */
        {0x11B00, "\\p{P}"},  /* Devanagari Extended-A head mark */
        {0x1FAE8, "\\p{S}"},  /* emoji 15: shaking face */
        {0x0CF3, "\\p{M}"},   /* Kannada combining anusvara above right */
        {0x3000, "\\s"},      /* ideographic space */
        {0x00A0, "\\s"},      /* no-break space */
        {0x0085, "\\s"},      /* next line */
        {0x180E, "[^\\s\\p{L}\\p{N}]"}, /* Mongolian vowel separator: not a space */
        {0xD800, "[^\\s\\p{L}\\p{N}\\p{P}\\p{S}\\p{M}]"},
        {0x4E00, "\\p{L}"},   /* unchanged */
        {0x0041, "A"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t c = bpe_regex_cp(cases[i].cp);
        unsigned char u[4];
        int n = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
        if (n == 1) u[0] = (unsigned char)c;
        else if (n == 2) { u[0] = (unsigned char)(0xc0 | c >> 6); u[1] = (unsigned char)(0x80 | (c & 63)); }
        else if (n == 3) { u[0] = (unsigned char)(0xe0 | c >> 12); u[1] = (unsigned char)(0x80 | (c >> 6 & 63)); u[2] = (unsigned char)(0x80 | (c & 63)); }
        else { u[0] = (unsigned char)(0xf0 | c >> 18); u[1] = (unsigned char)(0x80 | (c >> 12 & 63)); u[2] = (unsigned char)(0x80 | (c >> 6 & 63)); u[3] = (unsigned char)(0x80 | (c & 63)); }
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)cases[i].cls, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
        pcre2_match_data *md = pcre2_match_data_create(1, NULL);
        int m = re && md && pcre2_match(re, u, (PCRE2_SIZE)n, 0, PCRE2_ANCHORED, md, NULL) == 1;
        CHECK(m, "U+%04X (seen as U+%04X) should match %s", cases[i].cp, c, cases[i].cls);
        pcre2_match_data_free(md);
        pcre2_code_free(re);
    }
}

/* ---------- speed ---------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_speed(void) {
    kvc_vocab *v = get_vocab("llama3-vocab.gguf");
    const char *path = shared_path("text/wikitext-2-test.raw");
    if (!v || !path) return;
    FILE *fp = fopen(path, "rb");
    CHECK(fp != NULL, "cannot open %s", path);
    if (!fp) return;
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *text = malloc((size_t)sz + 1);
    size_t n = text ? fread(text, 1, (size_t)sz, fp) : 0;
    fclose(fp);
    CHECK(n == (size_t)sz, "read %s", path);
    int32_t *ids = NULL;
    int nid = 0;
    kvc_error err = {0};
    double t0 = now_s();
    kvc_status st = kvc_vocab_tokenize(v, text, n, 1, 0, &ids, &nid, &err);
    double dt = now_s() - t0;
    CHECK(st == KVC_OK, "encode %s: %s", path, err.msg);
    printf("llama3 encode of %s: %zu bytes -> %d tokens in %.3f s (%.3f s/MB)\n", path, n, nid, dt, dt / ((double)n / 1e6));
    CHECK(dt < 20.0, "encoding %zu bytes took %.2f s", n, dt); /* generous: sanitizer builds, shared machine */
    if (st == KVC_OK) {
        size_t dl;
        char *d = decode(v, ids, nid, 1, &dl);
        CHECK(d && dl == n && memcmp(d, text, n) == 0, "round trip of %s", path);
        free(d);
    }
    free(ids);
    free(text);
}

int main(int argc, char **argv) {
    (void)argc;
    /* build folder: two levels above the binary (BUILD/tests/test_tokenizer_bpe) */
    const char *slash = strrchr(argv[0], '/');
    if (slash) {
        size_t k = (size_t)(slash - argv[0]);
        if (k < sizeof g_build) {
            memcpy(g_build, argv[0], k);
            g_build[k] = 0;
            char *s2 = strrchr(g_build, '/');
            if (s2) *s2 = 0;
            else snprintf(g_build, sizeof g_build, ".");
        }
    }
    test_synthetic();
    test_classes();
    test_reference();
    test_special();
    test_speed();
    for (int i = 0; i < N_VOCABS; i++) kvc_vocab_free(vocabs[i].v);
    return test_summary("test_tokenizer_bpe");
}
