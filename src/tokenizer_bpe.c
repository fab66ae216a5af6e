/* tokenizer_bpe.c - byte-level BPE (`tokenizer.ggml.model = "gpt2"`), ids identical to
 * llama.cpp's (build of early 2025):
 *  - the text is decoded as llama.cpp decodes it: each byte that does not start a complete
 *    sequence becomes U+FFFD, overlong forms decode (C0 AF -> '/'), encoded surrogates are
 *    kept and re-encoded as their 3 bytes (code points above U+10FFFF, which make llama.cpp
 *    throw, are treated as invalid bytes here);
 *  - the pre-tokenizer named by tokenizer.ggml.pre splits it with a list of regexes (PCRE2,
 *    UTF + UCP, JIT), each applied to the pieces of the previous one, unmatched gaps kept as
 *    pieces. The regexes run on a copy of the text where the code points llama.cpp treats
 *    differently from PCRE2 are replaced: non-ASCII whitespace -> U+000B (as llama.cpp does),
 *    U+180E (PCRE2 \s, not llama.cpp's) -> U+200B, surrogates -> U+E000 (same classes);
 *  - each piece's bytes become GPT-2's byte characters; with ignore_merges (llama-bpe,
 *    tekken) a piece that is a whole token is taken as is; otherwise the adjacent pair with
 *    the lowest merge rank (order in tokenizer.ggml.merges; ties: leftmost) is merged,
 *    repeatedly, through a binary heap and a hash of (left id, right id) -> rank;
 *  - a final symbol that is not a token is emitted byte by byte where those bytes are tokens.
 * Character classes come from PCRE2's Unicode tables; the code points of Unicode 15.0/15.1
 * that PCRE2 10.42 does not know are mapped to ones of llama.cpp's class (see new_cps). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer_internal.h"
#include "util.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- pre-tokenizers (regex lists of llama.cpp's pre-tokenizer types) ---- */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_CONTRACT "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_LLAMA3 RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2 RE_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_CJK "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+"
#define RE_PORO " ?[^(\\s|.,!?\xe2\x80\xa6\xe3\x80\x82\xef\xbc\x8c\xe3\x80\x81\xe0\xa5\xa4\xdb\x94\xd8\x8c)]+"
/* deepseek-llm's cased letters */
#define RE_DS_LETTERS \
    "\\s?[A-Za-z\xc2\xb5\xc3\x80-\xc3\x96\xc3\x98-\xc3\xb6\xc3\xb8-\xc6\xba\xc6\xbc-\xc6\xbf" \
    "\xc7\x84-\xca\x93\xca\x95-\xca\xaf\xcd\xb0-\xcd\xb3\xcd\xb6\xcd\xb7\xcd\xbb-\xcd\xbd" \
    "\xcd\xbf\xce\x86\xce\x88-\xce\x8a\xce\x8c\xce\x8e-\xce\xa1\xce\xa3-\xcf\xb5\xcf\xb7-" \
    "\xd2\x81\xd2\x8a-\xd4\xaf\xd4\xb1-\xd5\x96\xe1\x82\xa0-\xe1\x83\x85\xe1\x8e\xa0-\xe1" \
    "\x8f\xb5\xe1\x8f\xb8-\xe1\x8f\xbd\xe1\xb2\x90-\xe1\xb2\xba\xe1\xb2\xbd-\xe1\xb2\xbf\xe1" \
    "\xb4\x80-\xe1\xb4\xab\xe1\xb5\xab-\xe1\xb5\xb7\xe1\xb5\xb9-\xe1\xb6\x9a\xe1\xb8\x80-" \
    "\xe1\xbc\x95\xe1\xbc\x98-\xe1\xbc\x9d\xe1\xbc\xa0-\xe1\xbd\x85\xe1\xbd\x88-\xe1\xbd\x8d" \
    "\xe1\xbd\x90-\xe1\xbd\x97\xe1\xbd\x99\xe1\xbd\x9b\xe1\xbd\x9d\xe1\xbd\x9f-\xe1\xbd\xbd" \
    "\xe1\xbe\x80-\xe1\xbe\xb4\xe1\xbe\xb6-\xe1\xbe\xbc\xe1\xbe\xbe\xe1\xbf\x82-\xe1\xbf\x84" \
    "\xe1\xbf\x86-\xe1\xbf\x8c\xe1\xbf\x90-\xe1\xbf\x93\xe1\xbf\x96-\xe1\xbf\x9b\xe1\xbf\xa0" \
    "-\xe1\xbf\xac\xe1\xbf\xb2-\xe1\xbf\xb4\xe1\xbf\xb6-\xe1\xbf\xbc\xe2\x84\x82\xe2\x84\x87" \
    "\xe2\x84\x8a-\xe2\x84\x93\xe2\x84\x95\xe2\x84\x99-\xe2\x84\x9d\xe2\x84\xa4\xe2\x84\xa6" \
    "\xe2\x84\xa8\xe2\x84\xaa-\xe2\x84\xad\xe2\x84\xaf-\xe2\x84\xb4\xe2\x84\xb9\xe2\x84\xbc" \
    "-\xe2\x84\xbf\xe2\x85\x85-\xe2\x85\x89\xe2\x85\x8e\xe2\x86\x83\xe2\x86\x84\xe2\xb0\x80" \
    "-\xe2\xb1\xbb\xe2\xb1\xbe-\xe2\xb3\xa4\xe2\xb3\xab-\xe2\xb3\xae\xe2\xb3\xb2\xe2\xb3\xb3" \
    "\xea\x99\x80-\xea\x99\xad\xea\x9a\x80-\xea\x9a\x9b\xea\x9c\xa2-\xea\x9d\xaf\xea\x9d\xb1" \
    "-\xea\x9e\x87\xea\x9e\x8b-\xea\x9e\x8e\xea\xad\xb0-\xea\xae\xbf\xef\xac\x80-\xef\xac" \
    "\x86\xef\xac\x93-\xef\xac\x97\xef\xbc\xa1-\xef\xbc\xba\xef\xbd\x81-\xef\xbd\x9a\xf0\x90" \
    "\x90\x80-\xf0\x90\x91\x8f\xf0\x90\x92\xb0-\xf0\x90\x93\x93\xf0\x90\x93\x98-\xf0\x90\x93" \
    "\xbb\xf0\x90\xb2\x80-\xf0\x90\xb2\xb2\xf0\x90\xb3\x80-\xf0\x90\xb3\xb2\xf0\x91\xa2\xa0" \
    "-\xf0\x91\xa3\x9f\xf0\x9e\xa4\x80-\xf0\x9e\xa5\x83]+"
#define RE_DS_PUNCT "\\s?[!-/:-~\xef\xbc\x81-\xef\xbc\x8f\xef\xbc\x9a-\xef\xbd\x9e\xe2\x80\x98-\xe2\x80\x9f\xe3\x80\x80-\xe3\x80\x82]+"
#define RE_DS3_CJK "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+"
/* deepseek-v3: llama.cpp's ASCII table for \p{S} leaves out '~', written out here */
#define RE_DS3 "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|(?:[^\\r\\n\\p{L}\\p{P}\\p{S}]|~)?[\\p{L}\\p{M}]+| ?(?:(?!~)[\\p{P}\\p{S}])+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

enum { MAX_RE = 6 };

struct pre_family {
    const char *re[MAX_RE]; /* NULL-terminated */
};

enum { F_DEFAULT, F_LLAMA3, F_DS_LLM, F_DS_CODER, F_DS3, F_FALCON, F_STARCODER, F_GPT2, F_QWEN2,
       F_PORO, F_VIKING, F_TEKKEN, F_CHAMELEON };

static const struct pre_family families[] = {
    [F_DEFAULT] = {{"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
    [F_LLAMA3] = {{RE_LLAMA3}},
    [F_DS_LLM] = {{"[\\r\\n]", RE_DS_LETTERS, RE_DS_PUNCT, "\\s+$", RE_CJK, "\\p{N}+"}},
    [F_DS_CODER] = {{"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_CJK, "\\p{N}"}},
    [F_DS3] = {{"\\p{N}{1,3}", RE_DS3_CJK, RE_DS3}},
    [F_FALCON] = {{"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    [F_STARCODER] = {{"\\p{N}", RE_GPT2}},
    [F_GPT2] = {{RE_GPT2}},
    [F_QWEN2] = {{RE_QWEN2}},
    [F_PORO] = {{RE_PORO}},
    [F_VIKING] = {{RE_PORO, "\\p{N}"}},
    [F_TEKKEN] = {{"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    [F_CHAMELEON] = {{"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
                      "[\\p{P}!-/:-@\\[-`{-~]", RE_GPT2}},
};

/* tokenizer.ggml.pre names -> family and flags, as llama.cpp maps them */
enum { P_IGNORE_MERGES = 1, P_ADD_BOS = 2, P_NO_BOS = 4 };
static const struct {
    const char *name;
    int family, flags;
} pre_names[] = {
    {"default", F_DEFAULT, 0},
    {"llama3", F_LLAMA3, P_IGNORE_MERGES | P_ADD_BOS},
    {"llama-v3", F_LLAMA3, P_IGNORE_MERGES | P_ADD_BOS},
    {"llama-bpe", F_LLAMA3, P_IGNORE_MERGES | P_ADD_BOS},
    {"falcon3", F_LLAMA3, P_IGNORE_MERGES | P_ADD_BOS},
    {"dbrx", F_LLAMA3, 0},
    {"smaug-bpe", F_LLAMA3, 0},
    {"chatglm-bpe", F_LLAMA3, P_NO_BOS},
    {"deepseek-llm", F_DS_LLM, 0},
    {"deepseek-coder", F_DS_CODER, 0},
    {"deepseek-v3", F_DS3, 0},
    {"falcon", F_FALCON, 0},
    {"starcoder", F_STARCODER, 0},
    {"refact", F_STARCODER, 0},
    {"command-r", F_STARCODER, 0},
    {"smollm", F_STARCODER, 0},
    {"codeshell", F_STARCODER, 0},
    {"exaone", F_STARCODER, 0},
    {"minerva-7b", F_STARCODER, 0},
    {"gpt-2", F_GPT2, 0},
    {"phi-2", F_GPT2, 0},
    {"jina-es", F_GPT2, 0},
    {"jina-de", F_GPT2, 0},
    {"gigachat", F_GPT2, 0},
    {"jina-v1-en", F_GPT2, 0},
    {"jina-v2-es", F_GPT2, 0},
    {"jina-v2-de", F_GPT2, 0},
    {"jina-v2-code", F_GPT2, 0},
    {"roberta-bpe", F_GPT2, 0},
    {"mpt", F_GPT2, 0},
    {"olmo", F_GPT2, 0},
    {"jais", F_GPT2, 0},
    {"qwen2", F_QWEN2, 0},
    {"deepseek-r1-qwen", F_QWEN2, 0},
    {"megrez", F_QWEN2, 0},
    {"stablelm2", F_QWEN2, 0},
    {"poro-chat", F_PORO, 0},
    {"bloom", F_PORO, 0},
    {"gpt3-finnish", F_PORO, 0},
    {"viking", F_VIKING, 0},
    {"tekken", F_TEKKEN, P_IGNORE_MERGES | P_ADD_BOS},
    {"chameleon", F_CHAMELEON, P_ADD_BOS},
};
enum { N_PRE = sizeof pre_names / sizeof pre_names[0] };

const char *bpe_pre_list(char *buf, size_t cap) {
    size_t w = 0;
    buf[0] = 0;
    for (int i = 0; i < N_PRE && w < cap; i++)
        w += (size_t)snprintf(buf + w, cap - w, "%s%s", i ? ", " : "", pre_names[i].name);
    return buf;
}

/* ---- the BPE state ---- */

struct merge_slot {
    uint64_t key; /* (left id << 32) | right id; UINT64_MAX = empty */
    int32_t rank;
    int32_t res;  /* id of the merged text, -1 when it is not a token */
};

struct kvc_bpe {
    pcre2_code *re[MAX_RE];
    int n_re;
    int ignore_merges;
    struct merge_slot *merge; /* open addressing */
    uint64_t mmask;
    char enc[256][2];         /* byte -> GPT-2 byte character (UTF-8, 1 or 2 bytes) */
    uint8_t enc_n[256];
    int32_t byte_id[256];     /* id of each byte's character, -1 if none */
    int16_t dec[0x144];       /* GPT-2 byte character code point -> byte, -1 if none */
};

void bpe_free(struct kvc_bpe *b) {
    if (!b) return;
    for (int i = 0; i < b->n_re; i++) pcre2_code_free(b->re[i]);
    free(b->merge);
    free(b);
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static const struct merge_slot *merge_find(const struct kvc_bpe *b, int32_t l, int32_t r) {
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    for (uint64_t i = mix64(key) & b->mmask;; i = (i + 1) & b->mmask) {
        const struct merge_slot *s = &b->merge[i];
        if (s->key == key) return s;
        if (s->key == UINT64_MAX) return NULL;
    }
}

/* GPT-2's byte-to-unicode table: printable Latin-1 bytes map to themselves, the others to
 * U+0100 upwards in byte order. */
static void byte_map(struct kvc_bpe *b) {
    int n = 0;
    for (int i = 0; i < 0x144; i++) b->dec[i] = -1;
    for (int c = 0; c < 256; c++) {
        int keep = (c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || (c >= 0xae);
        int cp = keep ? c : 256 + n++;
        b->dec[cp] = (int16_t)c;
        if (cp < 0x80) {
            b->enc[c][0] = (char)cp;
            b->enc_n[c] = 1;
        } else {
            b->enc[c][0] = (char)(0xc0 | (cp >> 6));
            b->enc[c][1] = (char)(0x80 | (cp & 0x3f));
            b->enc_n[c] = 2;
        }
    }
}

static void show_str(const char *p, size_t n, char *out, size_t cap) {
    size_t k = n < cap - 4 ? n : cap - 4;
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)p[i];
        out[i] = (c >= 32 && c != 127) ? (char)c : '?';
    }
    strcpy(out + k, n > k ? "..." : "");
}

kvc_status bpe_load(struct kvc_tokenizer *t, const struct gguf_file *f, const char *pre,
                    int *add_bos_default, kvc_error *err) {
    int p = -1;
    for (int i = 0; i < N_PRE; i++)
        if (strcmp(pre_names[i].name, pre) == 0) p = i;
    if (p < 0) {
        char shown[64], list[640];
        show_str(pre, strlen(pre), shown, sizeof shown);
        return kvc_fail(err, KVC_ERR_UNSUPPORTED,
                        "%s: metadata 'tokenizer.ggml.pre' = '%s' is not supported (supported: %s)", f->path,
                        shown, bpe_pre_list(list, sizeof list));
    }
    const struct gguf_kv *mkv;
    kvc_status st = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_STRING, &mkv, err);
    if (st) return st;
    if (mkv->arr_n > (uint64_t)INT32_MAX / 4)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata 'tokenizer.ggml.merges' has %llu entries (limit %d)",
                        f->path, (unsigned long long)mkv->arr_n, INT32_MAX / 4);
    struct kvc_bpe *b = calloc(1, sizeof *b);
    if (!b) return kvc_fail(err, KVC_ERR_NOMEM, "%s: tokenizer: out of memory", f->path);
    t->bpe = b;
    b->ignore_merges = (pre_names[p].flags & P_IGNORE_MERGES) != 0;
    *add_bos_default = (pre_names[p].flags & P_ADD_BOS) != 0;
    if (pre_names[p].flags & P_NO_BOS) t->bos = -1;
    byte_map(b);
    for (int c = 0; c < 256; c++) b->byte_id[c] = tok_lookup(t, b->enc[c], b->enc_n[c]);

    /* merges: "A B" split at the first space after the first byte (as llama.cpp); both parts
     * must be tokens; the first occurrence of a pair keeps its rank */
    uint64_t n_m = mkv->arr_n, cap = 16;
    while (cap < n_m * 2) cap <<= 1;
    b->mmask = cap - 1;
    b->merge = malloc((size_t)cap * sizeof *b->merge);
    char *cat = malloc((size_t)t->max_len * 2 + 2);
    if (!b->merge || !cat) {
        free(cat);
        return kvc_fail(err, KVC_ERR_NOMEM, "%s: tokenizer: out of memory for %llu merges", f->path,
                        (unsigned long long)n_m);
    }
    for (uint64_t i = 0; i < cap; i++) b->merge[i].key = UINT64_MAX;
    for (uint64_t i = 0; i < n_m; i++) {
        const struct gguf_str *s = &mkv->strs[i];
        char shown[64];
        const char *sp = s->n > 1 ? memchr(s->p + 1, ' ', s->n - 1) : NULL;
        if (!sp) {
            free(cat);
            show_str(s->p, s->n, shown, sizeof shown);
            return kvc_fail(err, KVC_ERR_FORMAT,
                            "%s: metadata 'tokenizer.ggml.merges'[%llu] = '%s' is not two tokens separated by a space",
                            f->path, (unsigned long long)i, shown);
        }
        size_t ln = (size_t)(sp - s->p), rn = s->n - ln - 1;
        int32_t l = tok_lookup(t, s->p, ln), r = tok_lookup(t, sp + 1, rn);
        if (l < 0 || r < 0) {
            free(cat);
            show_str(s->p, s->n, shown, sizeof shown);
            return kvc_fail(err, KVC_ERR_FORMAT,
                            "%s: metadata 'tokenizer.ggml.merges'[%llu] = '%s' names a token missing from "
                            "'tokenizer.ggml.tokens'", f->path, (unsigned long long)i, shown);
        }
        memcpy(cat, s->p, ln);
        memcpy(cat + ln, sp + 1, rn);
        int32_t res = tok_lookup(t, cat, ln + rn);
        uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
        for (uint64_t j = mix64(key) & b->mmask;; j = (j + 1) & b->mmask) {
            if (b->merge[j].key == key) break; /* duplicate pair: the first rank stays */
            if (b->merge[j].key == UINT64_MAX) {
                b->merge[j] = (struct merge_slot){key, (int32_t)i, res};
                break;
            }
        }
    }
    free(cat);

    /* the pre-tokenizer's regexes */
    for (int i = 0; i < MAX_RE && families[pre_names[p].family].re[i]; i++) {
        const char *re = families[pre_names[p].family].re[i];
        int ec;
        PCRE2_SIZE eo;
        b->re[i] = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY | PCRE2_NO_UTF_CHECK, &ec, &eo, NULL);
        if (!b->re[i]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return kvc_fail(err, KVC_ERR_INTERNAL, "%s: pre-tokenizer '%s': regex %d does not compile at %zu: %s",
                            f->path, pre, i, (size_t)eo, (const char *)msg);
        }
        b->n_re = i + 1;
        (void)pcre2_jit_compile(b->re[i], PCRE2_JIT_COMPLETE); /* the interpreter is the fallback */
    }
    return KVC_OK;
}

/* ---- text -> code points -> pre-tokens ---- */

/* llama.cpp's decoder: the lead byte gives the length; a byte that does not start a complete
 * sequence becomes U+FFFD and decoding goes on at the next byte. */
static uint32_t next_cp(const unsigned char *s, size_t n, size_t *i) {
    size_t k = *i;
    unsigned c = s[k];
    if (c < 0x80) {
        *i = k + 1;
        return c;
    }
    int len = (c & 0x40) == 0 ? 0 : (c & 0x20) == 0 ? 2 : (c & 0x10) == 0 ? 3 : (c & 0x08) == 0 ? 4 : 0;
    if (len && k + (size_t)len <= n) {
        uint32_t cp = c & (0x7f >> len);
        int ok = 1;
        for (int j = 1; j < len; j++) {
            if ((s[k + j] & 0xc0) != 0x80) ok = 0;
            cp = cp << 6 | (s[k + j] & 0x3f);
        }
        if (ok && cp <= 0x10ffff) {
            *i = k + (size_t)len;
            return cp;
        }
    }
    *i = k + 1;
    return 0xfffd;
}

/* UTF-8 of a code point (surrogates included, as llama.cpp writes them) */
static int put_cp(uint32_t cp, unsigned char *o) {
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = (unsigned char)(0xc0 | cp >> 6); o[1] = (unsigned char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Code points assigned in Unicode 15.0 and 15.1, which llama.cpp's tables (generated from
 * UCD 15.1) classify and PCRE2 builds on Unicode 14 (Debian 12's 10.42) leave unassigned: the
 * regexes see a code point of Unicode <= 6 of the same class instead, outside every literal
 * range of the pre-tokenizers (letter U+10000, mark U+101FD, number U+10107, punctuation
 * U+10100, symbol U+10137). */
enum { CP_L = 0x10000, CP_M = 0x101fd, CP_N = 0x10107, CP_P = 0x10100, CP_S = 0x10137 };
static const struct {
    uint32_t lo, hi, as;
} new_cps[] = {
    {0x00CF3, 0x00CF3, CP_M}, {0x00ECE, 0x00ECE, CP_M}, {0x02FFC, 0x02FFF, CP_S}, {0x031EF, 0x031EF, CP_S},
    {0x10EFD, 0x10EFF, CP_M}, {0x1123F, 0x11240, CP_L}, {0x11241, 0x11241, CP_M}, {0x11B00, 0x11B09, CP_P},
    {0x11F00, 0x11F01, CP_M}, {0x11F02, 0x11F02, CP_L}, {0x11F03, 0x11F03, CP_M}, {0x11F04, 0x11F10, CP_L},
    {0x11F12, 0x11F33, CP_L}, {0x11F34, 0x11F3A, CP_M}, {0x11F3E, 0x11F42, CP_M}, {0x11F43, 0x11F4F, CP_P},
    {0x11F50, 0x11F59, CP_N}, {0x1342F, 0x1342F, CP_L}, {0x13440, 0x13440, CP_M}, {0x13441, 0x13446, CP_L},
    {0x13447, 0x13455, CP_M}, {0x1B132, 0x1B132, CP_L}, {0x1B155, 0x1B155, CP_L}, {0x1D2C0, 0x1D2D3, CP_N},
    {0x1DF25, 0x1DF2A, CP_L}, {0x1E030, 0x1E06D, CP_L}, {0x1E08F, 0x1E08F, CP_M}, {0x1E4D0, 0x1E4EB, CP_L},
    {0x1E4EC, 0x1E4EF, CP_M}, {0x1E4F0, 0x1E4F9, CP_N}, {0x1F6DC, 0x1F6DC, CP_S}, {0x1F774, 0x1F776, CP_S},
    {0x1F77B, 0x1F77F, CP_S}, {0x1F7D9, 0x1F7D9, CP_S}, {0x1FA75, 0x1FA77, CP_S}, {0x1FA87, 0x1FA88, CP_S},
    {0x1FAAD, 0x1FAAF, CP_S}, {0x1FABB, 0x1FABD, CP_S}, {0x1FABF, 0x1FABF, CP_S}, {0x1FACE, 0x1FACF, CP_S},
    {0x1FADA, 0x1FADB, CP_S}, {0x1FAE8, 0x1FAE8, CP_S}, {0x1FAF7, 0x1FAF8, CP_S}, {0x2B739, 0x2B739, CP_L},
    {0x2EBF0, 0x2EE5D, CP_L}, {0x31350, 0x323AF, CP_L},
};
enum { N_NEW_CPS = sizeof new_cps / sizeof new_cps[0] };

/* The code point the regexes see: llama.cpp's non-ASCII whitespace as U+000B, code points
 * whose PCRE2 class differs from llama.cpp's (or that are not valid UTF-8) as one of the same
 * class. */
uint32_t bpe_regex_cp(uint32_t cp) {
    if (cp < 0x80) return cp;
    if (cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
        cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000)
        return 0x0b;
    if (cp == 0x180e) return 0x200b;
    if (cp >= 0xd800 && cp <= 0xdfff) return 0xe000;
    if (cp >= new_cps[0].lo && cp <= new_cps[N_NEW_CPS - 1].hi) {
        int lo = 0, hi = N_NEW_CPS - 1;
        while (lo <= hi) {
            int mid = (lo + hi) / 2;
            if (cp < new_cps[mid].lo) hi = mid - 1;
            else if (cp > new_cps[mid].hi) lo = mid + 1;
            else return new_cps[mid].as;
        }
    }
    return cp;
}

/* ---- BPE of one pre-token ---- */

struct sym {
    int prev, next;
    uint32_t off, n; /* bytes in the encoded word; n == 0 once merged into its left neighbour */
    int32_t id;      /* token of the symbol's text, -1 if none */
};

struct bigram {
    int32_t rank;
    int left, right;
    uint32_t size;
};

/* heap order: lower rank first, then lower left index (llama.cpp's llm_bigram_bpe) */
static inline int bg_before(const struct bigram *a, const struct bigram *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

struct work {
    struct sym *s;
    size_t scap;
    struct bigram *h;
    size_t hn, hcap;
    unsigned char *w; /* encoded word */
    size_t wcap;
};

static int heap_push(struct work *k, struct bigram b) {
    if (k->hn == k->hcap) {
        size_t nc = k->hcap ? k->hcap * 2 : 256;
        struct bigram *nv = realloc(k->h, nc * sizeof *nv);
        if (!nv) return -1;
        k->h = nv;
        k->hcap = nc;
    }
    size_t i = k->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_before(&b, &k->h[p])) break;
        k->h[i] = k->h[p];
        i = p;
    }
    k->h[i] = b;
    return 0;
}

static struct bigram heap_pop(struct work *k) {
    struct bigram top = k->h[0], last = k->h[--k->hn];
    size_t i = 0, n = k->hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bg_before(&k->h[c + 1], &k->h[c])) c++;
        if (!bg_before(&k->h[c], &last)) break;
        k->h[i] = k->h[c];
        i = c;
    }
    if (n) k->h[i] = last;
    return top;
}

static int try_pair(const struct kvc_bpe *b, struct work *k, int l, int r) {
    if (l < 0 || r < 0 || k->s[l].id < 0 || k->s[r].id < 0) return 0;
    const struct merge_slot *m = merge_find(b, k->s[l].id, k->s[r].id);
    if (!m) return 0;
    return heap_push(k, (struct bigram){m->rank, l, r, k->s[l].n + k->s[r].n});
}

/* Tokenize the bytes of one pre-token (p, n bytes) and append the ids. 0 or -1 (memory). */
static int bpe_word(const struct kvc_tokenizer *t, struct work *k, const unsigned char *p, size_t n,
                    struct idvec *o) {
    const struct kvc_bpe *b = t->bpe;
    if (n == 0) return 0;
    if (k->wcap < 2 * n) {
        unsigned char *nw = realloc(k->w, 2 * n);
        if (!nw) return -1;
        k->w = nw;
        k->wcap = 2 * n;
    }
    if (k->scap < n) {
        struct sym *ns = realloc(k->s, n * sizeof *ns);
        if (!ns) return -1;
        k->s = ns;
        k->scap = n;
    }
    size_t wn = 0;
    for (size_t i = 0; i < n; i++) {
        k->s[i] = (struct sym){(int)i - 1, i + 1 < n ? (int)i + 1 : -1, (uint32_t)wn, b->enc_n[p[i]], b->byte_id[p[i]]};
        memcpy(k->w + wn, b->enc[p[i]], b->enc_n[p[i]]);
        wn += b->enc_n[p[i]];
    }
    if (b->ignore_merges) {
        int32_t id = tok_lookup(t, (const char *)k->w, wn);
        if (id >= 0) return tok_push(o, id);
    }
    k->hn = 0;
    for (size_t i = 1; i < n; i++)
        if (try_pair(b, k, (int)i - 1, (int)i)) return -1;
    while (k->hn) {
        struct bigram g = heap_pop(k);
        struct sym *l = &k->s[g.left], *r = &k->s[g.right];
        if (l->n == 0 || r->n == 0 || l->next != g.right || l->n + r->n != g.size) continue; /* stale */
        l->id = merge_find(b, l->id, r->id)->res;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) k->s[r->next].prev = g.left;
        if (try_pair(b, k, l->prev, g.left) || try_pair(b, k, g.left, l->next)) return -1;
    }
    for (int i = 0; i != -1; i = k->s[i].next) {
        const struct sym *s = &k->s[i];
        if (s->id >= 0) {
            if (tok_push(o, s->id)) return -1;
            continue;
        }
        for (uint32_t j = 0; j < s->n; j++) { /* as llama.cpp: single bytes that are tokens */
            int32_t id = tok_lookup(t, (const char *)k->w + s->off + j, 1);
            if (id >= 0 && tok_push(o, id)) return -1;
        }
    }
    return 0;
}

/* ---- a fragment: decode, split, BPE each piece ---- */

/* Scratch reused across the fragments of one tokenize call: regex match state and the
 * JIT stack (creating them per fragment costs more than matching short fragments). */
struct bpe_scratch {
    pcre2_match_data *md;
    pcre2_match_context *mc;
    pcre2_jit_stack *js;
};

struct bpe_scratch *bpe_scratch_create(void) {
    struct bpe_scratch *sc = calloc(1, sizeof *sc);
    if (!sc) return NULL;
    sc->md = pcre2_match_data_create(4, NULL);
    sc->mc = pcre2_match_context_create(NULL);
    sc->js = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!sc->md || !sc->mc || !sc->js) {
        bpe_scratch_free(sc);
        return NULL;
    }
    pcre2_jit_stack_assign(sc->mc, NULL, sc->js);
    return sc;
}

void bpe_scratch_free(struct bpe_scratch *sc) {
    if (!sc) return;
    pcre2_match_data_free(sc->md);
    pcre2_match_context_free(sc->mc);
    pcre2_jit_stack_free(sc->js);
    free(sc);
}

kvc_status bpe_encode(const struct kvc_tokenizer *t, struct bpe_scratch *sc, const char *text, size_t len,
                      struct idvec *o, kvc_error *err) {
    const struct kvc_bpe *b = t->bpe;
    if (len == 0) return KVC_OK;
    const unsigned char *s = (const unsigned char *)text;
    kvc_status st = KVC_OK;
    uint32_t *cp = malloc(len * sizeof *cp);             /* (n) code points */
    uint32_t *boff = malloc((len + 1) * sizeof *boff);   /* (n+1) offset of cp i in rx */
    unsigned char *rx = malloc(4 * len + 1);             /* regex text (valid UTF-8) */
    uint32_t *b2c = NULL;                                /* (rx bytes + 1) byte -> cp index */
    uint32_t *pa = NULL, *pb = NULL;                     /* piece ends (cp index), two lists */
    unsigned char *word = NULL;
    struct work k = {0};
    if (!cp || !boff || !rx) goto nomem;
    size_t n = 0, rn = 0;
    for (size_t i = 0; i < len;) {
        cp[n] = next_cp(s, len, &i);
        boff[n] = (uint32_t)rn;
        rn += (size_t)put_cp(bpe_regex_cp(cp[n]), rx + rn);
        n++;
    }
    boff[n] = (uint32_t)rn;
    b2c = malloc((rn + 1) * sizeof *b2c);
    pa = malloc((n + 1) * sizeof *pa);
    pb = malloc((n + 1) * sizeof *pb);
    word = malloc(4 * n);
    if (!b2c || !pa || !pb || !word) goto nomem;
    for (size_t i = 0; i <= n; i++) b2c[boff[i]] = (uint32_t)i;
    size_t na = 1;
    pa[0] = (uint32_t)n;
    for (int r = 0; r < b->n_re; r++) {
        size_t nb = 0;
        uint32_t a = 0;
        for (size_t q = 0; q < na; q++) {
            uint32_t e = pa[q];
            PCRE2_SPTR sub = rx + boff[a];
            PCRE2_SIZE sl = boff[e] - boff[a], from = 0, prev = 0;
            while (from < sl) {
                int rc = pcre2_match(b->re[r], sub, sl, from, PCRE2_NO_UTF_CHECK, sc->md, sc->mc);
                if (rc == PCRE2_ERROR_NOMATCH) break;
                if (rc < 0) {
                    PCRE2_UCHAR msg[160];
                    pcre2_get_error_message(rc, msg, sizeof msg);
                    st = kvc_fail(err, KVC_ERR_INTERNAL, "tokenize: pre-tokenizer '%s' regex %d: %s", t->pre, r,
                                  (const char *)msg);
                    goto done;
                }
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sc->md);
                if (ov[1] <= ov[0]) { /* empty match: go on after the next character */
                    from = ov[0] + 1;
                    while (from < sl && (sub[from] & 0xc0) == 0x80) from++;
                    continue;
                }
                if (ov[0] > prev) pb[nb++] = b2c[boff[a] + ov[0]];
                pb[nb++] = b2c[boff[a] + ov[1]];
                prev = from = ov[1];
            }
            if (prev < sl) pb[nb++] = e;
            a = e;
        }
        uint32_t *tmp = pa;
        pa = pb;
        pb = tmp;
        na = nb;
    }
    uint32_t a = 0;
    for (size_t q = 0; q < na; q++) {
        size_t wn = 0;
        for (uint32_t i = a; i < pa[q]; i++) wn += (size_t)put_cp(cp[i], word + wn);
        if (bpe_word(t, &k, word, wn, o)) goto nomem;
        a = pa[q];
    }
    goto done;
nomem:
    st = kvc_fail(err, KVC_ERR_NOMEM, "tokenize: out of memory (text of %zu bytes)", len);
done:
    free(cp);
    free(boff);
    free(rx);
    free(b2c);
    free(pa);
    free(pb);
    free(word);
    free(k.s);
    free(k.h);
    free(k.w);
    return st;
}

int bpe_piece(const struct kvc_tokenizer *t, int32_t id, char *buf, int cap) {
    const struct kvc_bpe *b = t->bpe;
    const struct gguf_str *s = &t->text[id];
    const unsigned char *p = (const unsigned char *)s->p;
    int w = 0;
    for (size_t i = 0; i < s->n && w < cap;) {
        size_t i0 = i;
        uint32_t c = next_cp(p, s->n, &i);
        if (c < 0x144 && b->dec[c] >= 0) {
            buf[w++] = (char)b->dec[c];
        } else { /* not a byte character: its bytes as written */
            for (size_t j = i0; j < i && w < cap; j++) buf[w++] = (char)p[j];
        }
    }
    return w;
}
