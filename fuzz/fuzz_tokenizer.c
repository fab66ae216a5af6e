/* fuzz_tokenizer.c - libFuzzer target for the tokenizers. The first input byte picks a
 * tokenizer, the second the flags (add_special, parse_special), the rest is the text (any
 * bytes). Tokenizers: one small in-memory byte-level BPE vocabulary (all 256 byte characters,
 * a few merges, control and user-defined tokens) for each pre-tokenizer family, and the real
 * vocabularies of ../shared (KVC_SHARED) when present: GPT-2, Llama 3 (truncated, llama-bpe),
 * Qwen2 (truncated), Llama 2 SentencePiece. Checks: every id inside the vocabulary, pieces
 * printable, and on the full-byte vocabularies decode(encode(text)) == text for valid UTF-8
 * without special parsing.
 *   clang -std=c11 -D_GNU_SOURCE -O1 -g -Iinclude -Isrc -Itests -fsanitize=fuzzer,address,undefined \
 *     fuzz/fuzz_tokenizer.c src/tokenizer*.c src/gguf.c src/util.c src/types.c -lpcre2-8 -lm
 * fuzz/run.sh builds and runs it. */
#include "gguf.h"
#include "gguf_build.h"
#include "tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(cond)                                                                       \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "fuzz_tokenizer: invariant failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

struct tk {
    struct gbuf buf;        /* in-memory GGUF (synthetic) */
    struct gguf_file *f;
    struct kvc_tokenizer *t;
    int full_bytes;         /* every byte is a token: lossless */
};
enum { MAX_TK = 24 };
static struct tk tks[MAX_TK];
static int n_tk;

static const char *const pres[] = {"default", "llama-bpe", "qwen2", "gpt-2", "smollm", "deepseek-llm",
                                   "deepseek-coder", "deepseek-v3", "falcon", "starcoder", "bloom", "viking",
                                   "tekken", "chameleon", "chatglm-bpe"};

/* GPT-2 byte character of byte c, UTF-8 */
static int byte_char(int c, char *o) {
    static int map[256], done;
    if (!done) {
        int n = 0;
        for (int i = 0; i < 256; i++) {
            int keep = (i >= 0x21 && i <= 0x7e) || (i >= 0xa1 && i <= 0xac) || i >= 0xae;
            map[i] = keep ? i : 256 + n++;
        }
        done = 1;
    }
    int cp = map[c];
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    o[0] = (char)(0xc0 | cp >> 6);
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

static void add_synthetic(const char *pre) {
    static char store[256][3];
    static const char *extra[] = {"\xc4\xa0t", "th", "the", "\xc4\xa0the", "in", "er", "\xc4\xa0\xc4\xa0",
                                  "<|ctl|>", "<|user|>", "<|eot_id|>"};
    static const int32_t extra_type[] = {1, 1, 1, 1, 1, 1, 1, 3, 4, 3};
    static const char *merges[] = {"\xc4\xa0 t", "t h", "th e", "\xc4\xa0 the", "i n", "e r",
                                   "\xc4\xa0 \xc4\xa0"};
    const char *toks[256 + 10];
    int32_t type[256 + 10];
    for (int c = 0; c < 256; c++) {
        int k = byte_char(c, store[c]);
        store[c][k] = 0;
        toks[c] = store[c];
        type[c] = 1;
    }
    for (int i = 0; i < 10; i++) {
        toks[256 + i] = extra[i];
        type[256 + i] = extra_type[i];
    }
    struct tk *k = &tks[n_tk];
    struct gbuf *b = &k->buf;
    gput(b, "GGUF", 4);
    gu32(b, 3);
    gu64(b, 0);
    gu64(b, 6);
    kv_str(b, "tokenizer.ggml.model", "gpt2");
    kv_str(b, "tokenizer.ggml.pre", pre);
    kv_strs(b, "tokenizer.ggml.tokens", toks, 266);
    kv_i32s(b, "tokenizer.ggml.token_type", type, 266);
    kv_strs(b, "tokenizer.ggml.merges", merges, (int)(sizeof merges / sizeof merges[0]));
    kv_u32(b, "tokenizer.ggml.bos_token_id", 263);
    kvc_error err;
    if (gguf_parse_meta(b->p, b->n, pre, &k->f, &err) || kvc_tokenizer_load(k->f, &k->t, &err)) {
        fprintf(stderr, "fuzz_tokenizer: synthetic '%s': %s\n", pre, err.msg);
        abort();
    }
    k->full_bytes = 1;
    n_tk++;
}

static void add_file(const char *rel) {
    const char *root = getenv("KVC_SHARED");
    char path[600];
    snprintf(path, sizeof path, "%s/%s", root ? root : "../shared", rel);
    struct tk *k = &tks[n_tk];
    kvc_error err;
    if (gguf_open_meta(path, &k->f, &err)) {
        fprintf(stderr, "fuzz_tokenizer: %s not loaded (%s)\n", path, err.msg);
        return;
    }
    if (kvc_tokenizer_load(k->f, &k->t, &err)) {
        fprintf(stderr, "fuzz_tokenizer: %s: %s\n", path, err.msg);
        abort();
    }
    n_tk++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    for (size_t i = 0; i < sizeof pres / sizeof pres[0]; i++) add_synthetic(pres[i]);
    add_file("models/vocab/ggml-vocab-gpt-2.gguf");
    add_file("models/vocab/ggml-vocab-llama-spm.gguf");
    add_file("models/synth/llama3-q4km.gguf");
    add_file("models/synth/qwen2-q5km.gguf");
    return 0;
}

/* strict UTF-8 (no overlongs, surrogates or code points above U+10FFFF) */
static int valid_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n) return 0;
        uint32_t cp = len == 1 ? c : c & (0x7f >> len);
        for (size_t j = 1; j < len; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        static const uint32_t minv[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < minv[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += len;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || n_tk == 0) return 0;
    struct tk *k = &tks[data[0] % n_tk];
    int add = data[1] & 1, special = (data[1] >> 1) & 1;
    size_t len = size - 2;
    char *text = malloc(len ? len : 1); /* exact size: ASan sees any over-read */
    if (!text) return 0;
    memcpy(text, data + 2, len);
    int32_t *ids = NULL;
    int n = -1;
    kvc_error err;
    kvc_status st = kvc_tokenizer_tokenize(k->t, text, len, add, special, &ids, &n, &err);
    REQUIRE(st == KVC_OK);
    REQUIRE(ids != NULL && n >= 0);
    int nv = kvc_tokenizer_n_vocab(k->t);
    size_t cap = 64 + 8 * (size_t)n, w = 0;
    char *dec = malloc(cap);
    REQUIRE(dec != NULL);
    for (int i = 0; i < n; i++) {
        REQUIRE(ids[i] >= 0 && ids[i] < nv);
        char p[256];
        int pk = kvc_tokenizer_piece_ex(k->t, ids[i], 0, p, (int)sizeof p);
        REQUIRE(pk >= 0 && pk <= (int)sizeof p);
        if (w + (size_t)pk > cap) {
            cap = 2 * (w + (size_t)pk);
            dec = realloc(dec, cap);
            REQUIRE(dec != NULL);
        }
        memcpy(dec + w, p, (size_t)pk);
        w += (size_t)pk;
        (void)kvc_tokenizer_is_eog(k->t, ids[i]);
    }
    if (k->full_bytes && !special && valid_utf8((const unsigned char *)text, len)) {
        /* control tokens print nothing; the user-defined one prints its text */
        REQUIRE(w == len && memcmp(dec, text, len) == 0);
    }
    free(dec);
    free(ids);
    free(text);
    return 0;
}
