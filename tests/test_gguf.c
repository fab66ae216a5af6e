/* test_gguf.c - the GGUF reader against real models, a small GGUF v2/v3 file written here,
 * one malformed variant of it per check the parser makes (each must fail with
 * KVC_ERR_FORMAT and a message naming the file and the field), truncation at every offset,
 * and 20000 random mutations. Every buffer handed to gguf_parse is malloc'ed with exactly its
 * size, so that under ASan any read past the end is caught. */
#include "gguf.h"
#include "test.h"
#include "types.h"
#include "util.h"

#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

/* ------------------------------------------------------------------ a small GGUF writer */

struct wb {
    uint8_t *p;
    size_t n, cap;
};

static void wb_put(struct wb *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n) c *= 2;
        uint8_t *q = realloc(b->p, c);
        if (!q) abort();
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void wb_u8(struct wb *b, uint8_t v) { wb_put(b, &v, 1); }
static void wb_u16(struct wb *b, uint16_t v) { wb_put(b, &v, 2); }
static void wb_u32(struct wb *b, uint32_t v) { wb_put(b, &v, 4); }
static void wb_u64(struct wb *b, uint64_t v) { wb_put(b, &v, 8); }
static void wb_f32(struct wb *b, float v) { wb_put(b, &v, 4); }
static void wb_f64(struct wb *b, double v) { wb_put(b, &v, 8); }
static void wb_str(struct wb *b, const char *s) {
    wb_u64(b, strlen(s));
    wb_put(b, s, strlen(s));
}
static void wb_key(struct wb *b, const char *k, uint32_t type) {
    wb_str(b, k);
    wb_u32(b, type);
}
static void wb_pad(struct wb *b, size_t a) {
    while (b->n % a) wb_u8(b, 0);
}

/* Where the interesting fields of the small file are, so that malformed variants can patch
 * them in place. */
#define NT 3
struct layout {
    size_t version, n_tensors, n_kv;
    size_t key0_len;                   /* length of the first key */
    size_t key_i8;                     /* bytes of the key "t.i8" */
    size_t u32_type;                   /* type field of "t.u32" */
    size_t str_len;                    /* length of the value of "t.str" */
    size_t arr_i32_type, arr_i32_n;    /* element type and count of "t.arr_i32" */
    size_t arr_str_n;                  /* count of "t.arr_str" */
    size_t align_type, align_val;      /* "general.alignment" */
    struct {
        size_t name_len, name, n_dims, ne[4], type, offset;
    } t[NT];
    size_t header_end, data_start, size;
    uint32_t n_kv_val;
};

#define ALIGN 64
static const char *const tname[NT] = {"w.f32", "w.f16", "w.q80"};
static const uint32_t tdims[NT] = {2, 3, 2};
static const uint64_t tne[NT][4] = {{4, 3, 1, 1}, {8, 2, 1, 1}, {64, 2, 1, 1}};
static const uint32_t ttype[NT] = {KVC_TYPE_F32, KVC_TYPE_F16, KVC_TYPE_Q8_0};
static const uint64_t toff[NT] = {0, 64, 128};
static const uint64_t tbytes[NT] = {48, 32, 136};

static float f32_val(int i) { return (float)i * 0.25f - 1.0f; }
static float f16_val(int i) { return (float)i * 0.5f - 3.0f; } /* exact in f16 */

/* The small valid file: every scalar type, a string, numeric / string / empty arrays,
 * general.alignment = 64, and F32, F16 and Q8_0 tensors; the last tensor ends at the end. */
static void build_valid(uint32_t version, struct wb *b, struct layout *L) {
    memset(L, 0, sizeof *L);
    b->n = 0;
    wb_put(b, "GGUF", 4);
    L->version = b->n;
    wb_u32(b, version);
    L->n_tensors = b->n;
    wb_u64(b, NT);
    L->n_kv = b->n;
    wb_u64(b, 0); /* patched below */
    uint32_t nkv = 0;
    L->key0_len = b->n;
    wb_key(b, "general.architecture", GGUF_STRING), wb_str(b, "llama"), nkv++;
    wb_key(b, "t.u8", GGUF_U8), wb_u8(b, 200), nkv++;
    L->key_i8 = b->n + 8;
    wb_key(b, "t.i8", GGUF_I8), wb_u8(b, (uint8_t)-100), nkv++;
    wb_key(b, "t.u16", GGUF_U16), wb_u16(b, 60000), nkv++;
    wb_key(b, "t.i16", GGUF_I16), wb_u16(b, (uint16_t)-30000), nkv++;
    L->u32_type = b->n + 8 + 5;
    wb_key(b, "t.u32", GGUF_U32), wb_u32(b, 4000000000u), nkv++;
    wb_key(b, "t.i32", GGUF_I32), wb_u32(b, (uint32_t)-2000000000), nkv++;
    wb_key(b, "t.f32", GGUF_F32), wb_f32(b, 1.5f), nkv++;
    wb_key(b, "t.bool", GGUF_BOOL), wb_u8(b, 1), nkv++;
    wb_key(b, "t.str", GGUF_STRING);
    L->str_len = b->n;
    wb_str(b, "hello, gguf"), nkv++;
    wb_key(b, "t.u64", GGUF_U64), wb_u64(b, 1000000000000ull), nkv++;
    wb_key(b, "t.i64", GGUF_I64), wb_u64(b, (uint64_t)-5), nkv++;
    wb_key(b, "t.f64", GGUF_F64), wb_f64(b, 2.25), nkv++;
    wb_key(b, "t.arr_i32", GGUF_ARRAY);
    L->arr_i32_type = b->n;
    wb_u32(b, GGUF_I32);
    L->arr_i32_n = b->n;
    wb_u64(b, 5);
    for (int i = 1; i <= 5; i++) wb_u32(b, (uint32_t)(i % 2 ? i : -i));
    nkv++;
    wb_key(b, "t.arr_f32", GGUF_ARRAY), wb_u32(b, GGUF_F32), wb_u64(b, 3);
    wb_f32(b, 0.5f), wb_f32(b, 1.5f), wb_f32(b, -2.5f), nkv++;
    wb_key(b, "t.arr_str", GGUF_ARRAY), wb_u32(b, GGUF_STRING);
    L->arr_str_n = b->n;
    wb_u64(b, 4);
    wb_str(b, "a"), wb_str(b, ""), wb_str(b, "bc"), wb_str(b, "<s>"), nkv++;
    wb_key(b, "t.arr_u8", GGUF_ARRAY), wb_u32(b, GGUF_U8), wb_u64(b, 0), nkv++;
    wb_key(b, "general.alignment", GGUF_U32);
    L->align_type = b->n - 4;
    L->align_val = b->n;
    wb_u32(b, ALIGN), nkv++;
    wb_key(b, "t.small", GGUF_U8), wb_u8(b, 7), nkv++;
    memcpy(b->p + L->n_kv, &(uint64_t){nkv}, 8);
    L->n_kv_val = nkv;
    for (int i = 0; i < NT; i++) {
        L->t[i].name_len = b->n;
        L->t[i].name = b->n + 8;
        wb_str(b, tname[i]);
        L->t[i].n_dims = b->n;
        wb_u32(b, tdims[i]);
        for (uint32_t d = 0; d < tdims[i]; d++) {
            L->t[i].ne[d] = b->n;
            wb_u64(b, tne[i][d]);
        }
        L->t[i].type = b->n;
        wb_u32(b, ttype[i]);
        L->t[i].offset = b->n;
        wb_u64(b, toff[i]);
    }
    L->header_end = b->n;
    wb_pad(b, ALIGN);
    L->data_start = b->n;
    /* F32 [4,3] */
    for (int i = 0; i < 12; i++) wb_f32(b, f32_val(i));
    wb_pad(b, ALIGN);
    /* F16 [8,2,1] */
    for (int i = 0; i < 16; i++) wb_u16(b, kvc_f32_to_f16(f16_val(i)));
    wb_pad(b, ALIGN);
    /* Q8_0 [64,2]: 4 blocks, block k has d = 0.5 * (k + 1), qs[j] = j - 16 */
    for (int k = 0; k < 4; k++) {
        wb_u16(b, kvc_f32_to_f16(0.5f * (float)(k + 1)));
        for (int j = 0; j < 32; j++) wb_u8(b, (uint8_t)(int8_t)(j - 16));
    }
    L->size = b->n;
}

/* An exactly-sized heap copy (so ASan sees reads past the end). */
static uint8_t *dup_exact(const uint8_t *src, size_t n) {
    uint8_t *p = malloc(n ? n : 1);
    if (!p) abort();
    if (n) memcpy(p, src, n);
    return p;
}
static void put32(uint8_t *p, size_t off, uint32_t v) { memcpy(p + off, &v, 4); }
static void put64(uint8_t *p, size_t off, uint64_t v) { memcpy(p + off, &v, 8); }

/* Invariants of a parsed file against its buffer; returns the number of violations and
 * describes the first in why. Also reads every byte it checks (ASan touches). */
static int in_buf(const void *p, uint64_t n, const uint8_t *base, uint64_t size) {
    const uint8_t *q = p;
    if (q < base || q > base + size) return 0;
    return n <= (uint64_t)(base + size - q);
}

static volatile unsigned t_sink;

static int validate(const struct gguf_file *f, const uint8_t *buf, size_t size, char *why, size_t cap) {
    int bad = 0;
#define V(cond, ...) \
    do { if (!(cond)) { if (!bad++) snprintf(why, cap, __VA_ARGS__); } } while (0)
    V(f->base == buf && f->size == size, "base/size");
    V(f->version == 2 || f->version == 3, "version %u", f->version);
    V(f->alignment >= 1 && (f->alignment & (f->alignment - 1)) == 0, "alignment %llu",
      (unsigned long long)f->alignment);
    V(f->data_offset <= size, "data_offset %llu > size", (unsigned long long)f->data_offset);
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const struct gguf_kv *kv = &f->kv[i];
        V(in_buf(kv->key.p, kv->key.n, buf, size), "kv %llu key outside", (unsigned long long)i);
        V(kv->type < GGUF_NTYPES, "kv %llu type %u", (unsigned long long)i, kv->type);
        if (kv->key.n) t_sink += (unsigned char)kv->key.p[0] + (unsigned char)kv->key.p[kv->key.n - 1];
        if (kv->type == GGUF_STRING) {
            struct gguf_str s;
            uint64_t n;
            V(in_buf(kv->data, 8, buf, size), "kv %llu string length outside", (unsigned long long)i);
            memcpy(&n, kv->data, 8);
            s.p = (const char *)kv->data + 8;
            s.n = n;
            V(in_buf(s.p, s.n, buf, size), "kv %llu string outside", (unsigned long long)i);
            if (s.n) t_sink += (unsigned char)s.p[s.n - 1];
        } else if (kv->type == GGUF_ARRAY) {
            V(kv->arr_type < GGUF_NTYPES && kv->arr_type != GGUF_ARRAY, "kv %llu arr_type %u",
              (unsigned long long)i, kv->arr_type);
            if (kv->arr_type == GGUF_STRING) {
                V(kv->strs != NULL, "kv %llu strs NULL", (unsigned long long)i);
                for (uint64_t j = 0; kv->strs && j < kv->arr_n; j++) {
                    V(in_buf(kv->strs[j].p, kv->strs[j].n, buf, size), "kv %llu str %llu outside",
                      (unsigned long long)i, (unsigned long long)j);
                    if (kv->strs[j].n) t_sink += (unsigned char)kv->strs[j].p[kv->strs[j].n - 1];
                }
            } else if (kv->arr_type < GGUF_NTYPES) {
                for (uint64_t j = 0; j < kv->arr_n; j++) t_sink += (unsigned)(gguf_arr_num(kv, j) != 0);
            }
        } else if (kv->type < GGUF_NTYPES) {
            V(in_buf(kv->data, 1, buf, size), "kv %llu value outside", (unsigned long long)i);
        }
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        const struct kvc_type_size *ti = kvc_type_info(t->type);
        V(in_buf(t->name.p, t->name.n, buf, size), "tensor %llu name outside", (unsigned long long)i);
        V(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS, "tensor %llu n_dims %u", (unsigned long long)i,
          t->n_dims);
        V(ti != NULL, "tensor %llu type %u", (unsigned long long)i, t->type);
        if (!ti) continue;
        unsigned __int128 nel = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) nel *= t->ne[d];
        V(t->ne[0] % (uint64_t)ti->blck == 0, "tensor %llu ne[0] %% blck", (unsigned long long)i);
        V(nel / (uint64_t)ti->blck * (uint64_t)ti->bytes == t->nbytes, "tensor %llu nbytes %llu",
          (unsigned long long)i, (unsigned long long)t->nbytes);
        V(t->offset % f->alignment == 0, "tensor %llu offset unaligned", (unsigned long long)i);
        V((const uint8_t *)t->data == buf + f->data_offset + t->offset, "tensor %llu data pointer",
          (unsigned long long)i);
        V(in_buf(t->data, t->nbytes, buf, size), "tensor %llu data outside", (unsigned long long)i);
        if (t->nbytes && in_buf(t->data, t->nbytes, buf, size))
            t_sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
        for (uint64_t j = 0; j < i; j++) {
            const struct gguf_tensor *u = &f->tensors[j];
            V(t->offset >= u->offset + u->nbytes || u->offset >= t->offset + t->nbytes,
              "tensors %llu and %llu overlap", (unsigned long long)j, (unsigned long long)i);
            V(!(t->name.n == u->name.n && memcmp(t->name.p, u->name.p, t->name.n) == 0),
              "tensors %llu and %llu share a name", (unsigned long long)j, (unsigned long long)i);
        }
    }
    for (uint64_t i = 0; i < f->n_kv; i++)
        for (uint64_t j = 0; j < i; j++)
            V(!(f->kv[i].key.n == f->kv[j].key.n &&
                memcmp(f->kv[i].key.p, f->kv[j].key.p, f->kv[i].key.n) == 0),
              "keys %llu and %llu equal", (unsigned long long)j, (unsigned long long)i);
#undef V
    return bad;
}

/* ------------------------------------------------------------------ real models */

static void check_all_tensors_inside(const struct gguf_file *f, const char *what) {
    char why[200] = "";
    int bad = validate(f, f->base, (size_t)f->size, why, sizeof why);
    CHECK(bad == 0, "%s: %d invariant violations, first: %s", what, bad, why);
    /* the data section is covered up to the end of the file by the last tensor */
    uint64_t end = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        uint64_t e = f->data_offset + f->tensors[i].offset + f->tensors[i].nbytes;
        if (e > end) end = e;
    }
    CHECK(end == f->size, "%s: last tensor ends at %llu, file has %llu bytes", what,
          (unsigned long long)end, (unsigned long long)f->size);
}

static void check_u32(const struct gguf_file *f, const char *key, uint32_t want) {
    uint32_t v = 0;
    kvc_error err = {0};
    kvc_status st = gguf_get_u32(f, key, &v, &err);
    CHECK(st == KVC_OK && v == want, "%s: %s = %u (status %d: %s), want %u", f->path, key, v, st,
          err.msg, want);
}

static void check_tensor_shape(const struct gguf_file *f, const char *name, uint32_t type, uint32_t n_dims,
                               uint64_t ne0, uint64_t ne1) {
    const struct gguf_tensor *t = gguf_find_tensor(f, name);
    CHECK(t != NULL, "%s: tensor %s missing", f->path, name);
    if (!t) return;
    CHECK(t->type == type && t->n_dims == n_dims && t->ne[0] == ne0 && t->ne[1] == ne1 && t->ne[2] == 1 &&
              t->ne[3] == 1,
          "%s: %s: type %u n_dims %u ne [%llu, %llu, %llu, %llu]", f->path, name, t->type, t->n_dims,
          (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], (unsigned long long)t->ne[2],
          (unsigned long long)t->ne[3]);
    const struct kvc_type_size *ti = kvc_type_info(type);
    CHECK(ti && t->nbytes == ne0 * ne1 / (uint64_t)ti->blck * (uint64_t)ti->bytes, "%s: %s nbytes %llu",
          f->path, name, (unsigned long long)t->nbytes);
}

static void check_tokens(const struct gguf_file *f, uint64_t n) {
    const struct gguf_kv *kv = NULL;
    kvc_error err = {0};
    kvc_status st = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_STRING, &kv, &err);
    CHECK(st == KVC_OK && kv && kv->arr_n == n, "%s: tokens: status %d %s n %llu", f->path, st, err.msg,
          kv ? (unsigned long long)kv->arr_n : 0ull);
    if (st == KVC_OK && kv->arr_n == n) {
        CHECK(kv->strs && gguf_str_eq(kv->strs[0], "<unk>") && gguf_str_eq(kv->strs[1], "<s>") &&
                  gguf_str_eq(kv->strs[2], "</s>"),
              "%s: first tokens", f->path);
    }
    st = gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_F32, &kv, &err);
    CHECK(st == KVC_OK && kv->arr_n == n, "%s: scores: %s", f->path, err.msg);
    st = gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_I32, &kv, &err);
    CHECK(st == KVC_OK && kv->arr_n == n && gguf_arr_num(kv, 0) == 2 && gguf_arr_num(kv, 1) == 3,
          "%s: token_type: %s", f->path, err.msg);
    /* wrong element type is refused */
    st = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_I32, &kv, &err);
    CHECK(st == KVC_ERR_FORMAT && strstr(err.msg, "tokenizer.ggml.tokens"), "%s: tokens as i32: %s", f->path,
          err.msg);
}

static void test_real_models(void) {
    const char *p;
    struct gguf_file *f = NULL;
    kvc_error err = {0};
    kvc_status st;

    if ((p = shared_path("models/stories260K.gguf"))) {
        st = gguf_open(p, &f, &err);
        CHECK(st == KVC_OK, "open %s: %s", p, err.msg);
        if (st == KVC_OK) {
            CHECK(f->mapped && f->version == 3 && f->n_tensors == 48 && f->n_kv == 19,
                  "stories: version %u n_tensors %llu n_kv %llu", f->version, (unsigned long long)f->n_tensors,
                  (unsigned long long)f->n_kv);
            CHECK(f->alignment == 32 && f->data_offset == 14176, "stories: alignment %llu data_offset %llu",
                  (unsigned long long)f->alignment, (unsigned long long)f->data_offset);
            check_u32(f, "llama.block_count", 5);
            check_u32(f, "llama.context_length", 128);
            check_u32(f, "llama.embedding_length", 64);
            check_u32(f, "llama.feed_forward_length", 172);
            check_u32(f, "llama.attention.head_count", 8);
            check_u32(f, "llama.attention.head_count_kv", 4);
            check_u32(f, "tokenizer.ggml.padding_token_id", 4294967295u);
            float eps = 0;
            CHECK(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &eps, &err) == KVC_OK &&
                      fabsf(eps - 1e-5f) < 1e-9f,
                  "stories: eps %g", eps);
            struct gguf_str s = {0};
            CHECK(gguf_get_str(f, "general.architecture", &s, &err) == KVC_OK && gguf_str_eq(s, "llama"),
                  "stories: architecture");
            check_tokens(f, 512);
            check_tensor_shape(f, "token_embd.weight", KVC_TYPE_F32, 2, 64, 512);
            check_tensor_shape(f, "blk.0.attn_k.weight", KVC_TYPE_F32, 2, 64, 32);
            check_tensor_shape(f, "blk.4.ffn_down.weight", KVC_TYPE_F32, 2, 172, 64);
            check_tensor_shape(f, "output_norm.weight", KVC_TYPE_F32, 1, 64, 1);
            CHECK(gguf_find_tensor(f, "blk.5.attn_q.weight") == NULL, "stories: no layer 5");
            check_all_tensors_inside(f, p);
            gguf_close(f);
        }
    }
    p = "models/kvref-q4_0.gguf"; /* the embedded default model (in the repository) */
    {
        st = gguf_open(p, &f, &err);
        CHECK(st == KVC_OK, "open %s: %s", p, err.msg);
        if (st == KVC_OK) {
            CHECK(f->n_tensors == 74 && f->n_kv == 26, "kvref-q4_0: n_tensors %llu n_kv %llu",
                  (unsigned long long)f->n_tensors, (unsigned long long)f->n_kv);
            check_u32(f, "llama.block_count", 8);
            check_u32(f, "llama.context_length", 4096);
            check_u32(f, "llama.embedding_length", 384);
            check_u32(f, "llama.attention.head_count", 6);
            check_u32(f, "llama.attention.head_count_kv", 2);
            check_u32(f, "general.file_type", 2);
            int b = -1;
            CHECK(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b, &err) == KVC_OK && b == 1, "add_bos");
            CHECK(gguf_get_bool(f, "tokenizer.ggml.add_eos_token", &b, &err) == KVC_OK && b == 0, "add_eos");
            check_tokens(f, 8192);
            check_tensor_shape(f, "token_embd.weight", KVC_TYPE_Q8_0, 2, 384, 8192);
            check_tensor_shape(f, "blk.0.attn_q.weight", KVC_TYPE_Q4_0, 2, 384, 384);
            check_tensor_shape(f, "blk.7.attn_k.weight", KVC_TYPE_Q4_0, 2, 384, 128);
            check_tensor_shape(f, "blk.3.ffn_down.weight", KVC_TYPE_Q4_0, 2, 1024, 384);
            check_tensor_shape(f, "output_norm.weight", KVC_TYPE_F32, 1, 384, 1);
            check_all_tensors_inside(f, p);
            gguf_close(f);
        }
    }
    if ((p = shared_path("models/kvref-f16.gguf"))) {
        st = gguf_open(p, &f, &err);
        CHECK(st == KVC_OK, "open %s: %s", p, err.msg);
        if (st == KVC_OK) {
            CHECK(f->n_tensors == 74 && f->n_kv == 26, "kvref-f16: n_tensors %llu n_kv %llu",
                  (unsigned long long)f->n_tensors, (unsigned long long)f->n_kv);
            check_u32(f, "llama.block_count", 8);
            check_u32(f, "llama.context_length", 4096);
            check_u32(f, "general.file_type", 1);
            check_tokens(f, 8192);
            check_tensor_shape(f, "token_embd.weight", KVC_TYPE_F16, 2, 384, 8192);
            check_tensor_shape(f, "blk.0.attn_q.weight", KVC_TYPE_F16, 2, 384, 384);
            check_tensor_shape(f, "blk.0.attn_norm.weight", KVC_TYPE_F32, 1, 384, 1);
            check_all_tensors_inside(f, p);
            gguf_close(f);
        }
    }
}

/* ------------------------------------------------------------------ the small valid file */

static void test_valid(uint32_t version) {
    struct wb w = {0};
    struct layout L;
    build_valid(version, &w, &L);
    uint8_t *buf = dup_exact(w.p, w.n);
    struct gguf_file *f = NULL;
    kvc_error err = {0};
    kvc_status st = gguf_parse(buf, w.n, "small.gguf", &f, &err);
    CHECK(st == KVC_OK, "v%u small file: %s", version, err.msg);
    if (st != KVC_OK) {
        free(buf);
        free(w.p);
        return;
    }
    char why[200] = "";
    CHECK(validate(f, buf, w.n, why, sizeof why) == 0, "v%u: %s", version, why);
    CHECK(f->version == version && f->n_kv == L.n_kv_val && f->n_tensors == NT && f->alignment == ALIGN &&
              f->data_offset == L.data_start && !f->mapped,
          "v%u header: version %u n_kv %llu n_tensors %llu alignment %llu data_offset %llu", version,
          f->version, (unsigned long long)f->n_kv, (unsigned long long)f->n_tensors,
          (unsigned long long)f->alignment, (unsigned long long)f->data_offset);

    uint32_t u = 0;
    float x = 0;
    int bo = -1;
    struct gguf_str s = {0};
    const struct gguf_kv *kv = NULL;
#define OKV(call, cond) CHECK((call) == KVC_OK && (cond), "v%u %s: %s", version, #call, err.msg)
#define BADV(call, kw)                                                                                  \
    do {                                                                                                \
        memset(&err, 0, sizeof err);                                                                    \
        kvc_status st_ = (call);                                                                        \
        CHECK(st_ == KVC_ERR_FORMAT && err.status == KVC_ERR_FORMAT && strstr(err.msg, "small.gguf") && \
                  strstr(err.msg, kw),                                                                  \
              "v%u %s: status %d '%s' (want '%s')", version, #call, st_, err.msg, kw);                  \
    } while (0)
    OKV(gguf_get_u32(f, "t.u8", &u, &err), u == 200);
    OKV(gguf_get_u32(f, "t.u16", &u, &err), u == 60000);
    OKV(gguf_get_u32(f, "t.u32", &u, &err), u == 4000000000u);
    OKV(gguf_get_u32(f, "t.small", &u, &err), u == 7);
    OKV(gguf_get_u32(f, "general.alignment", &u, &err), u == ALIGN);
    BADV(gguf_get_u32(f, "t.i8", &u, &err), "t.i8");    /* negative */
    BADV(gguf_get_u32(f, "t.i32", &u, &err), "t.i32");  /* negative */
    BADV(gguf_get_u32(f, "t.u64", &u, &err), "t.u64");  /* > 2^32-1 */
    BADV(gguf_get_u32(f, "t.f32", &u, &err), "integer"); /* float */
    BADV(gguf_get_u32(f, "t.bool", &u, &err), "integer");
    BADV(gguf_get_u32(f, "t.str", &u, &err), "string");
    BADV(gguf_get_u32(f, "t.arr_i32", &u, &err), "array");
    BADV(gguf_get_u32(f, "no.such.key", &u, &err), "missing");
    OKV(gguf_get_f32(f, "t.f32", &x, &err), x == 1.5f);
    OKV(gguf_get_f32(f, "t.f64", &x, &err), x == 2.25f);
    OKV(gguf_get_f32(f, "t.i16", &x, &err), x == -30000.0f);
    OKV(gguf_get_f32(f, "t.i8", &x, &err), x == -100.0f);
    OKV(gguf_get_f32(f, "t.i64", &x, &err), x == -5.0f);
    BADV(gguf_get_f32(f, "t.bool", &x, &err), "t.bool");
    BADV(gguf_get_f32(f, "t.str", &x, &err), "t.str");
    OKV(gguf_get_bool(f, "t.bool", &bo, &err), bo == 1);
    BADV(gguf_get_bool(f, "t.u8", &bo, &err), "bool");
    OKV(gguf_get_str(f, "t.str", &s, &err), gguf_str_eq(s, "hello, gguf"));
    OKV(gguf_get_str(f, "general.architecture", &s, &err), gguf_str_eq(s, "llama") && !gguf_str_eq(s, "llam"));
    BADV(gguf_get_str(f, "t.u32", &s, &err), "string");
    BADV(gguf_get_str(f, "nope", &s, &err), "missing");
    OKV(gguf_get_arr(f, "t.arr_i32", GGUF_I32, &kv, &err),
        kv->arr_n == 5 && gguf_arr_num(kv, 0) == 1 && gguf_arr_num(kv, 1) == -2 && gguf_arr_num(kv, 4) == 5 &&
            gguf_arr_num(kv, 5) == 0 && gguf_arr_num(kv, UINT64_MAX) == 0);
    OKV(gguf_get_arr(f, "t.arr_f32", GGUF_F32, &kv, &err),
        kv->arr_n == 3 && gguf_arr_num(kv, 0) == 0.5 && gguf_arr_num(kv, 2) == -2.5);
    OKV(gguf_get_arr(f, "t.arr_str", GGUF_STRING, &kv, &err),
        kv->arr_n == 4 && kv->strs && gguf_str_eq(kv->strs[0], "a") && gguf_str_eq(kv->strs[1], "") &&
            gguf_str_eq(kv->strs[2], "bc") && gguf_str_eq(kv->strs[3], "<s>") && gguf_arr_num(kv, 0) == 0);
    OKV(gguf_get_arr(f, "t.arr_u8", GGUF_U8, &kv, &err), kv->arr_n == 0 && gguf_arr_num(kv, 0) == 0);
    BADV(gguf_get_arr(f, "t.arr_i32", GGUF_F32, &kv, &err), "array of i32");
    BADV(gguf_get_arr(f, "t.u32", GGUF_U32, &kv, &err), "u32");
    BADV(gguf_get_arr(f, "nope", GGUF_U32, &kv, &err), "missing");
    kv = gguf_find(f, "t.u16");
    CHECK(kv && kv->type == GGUF_U16 && gguf_arr_num(kv, 0) == 0, "find t.u16");
    CHECK(gguf_find(f, "t.u1") == NULL && gguf_find(f, "") == NULL && gguf_find(f, "t.u166") == NULL,
          "find of absent keys");
    CHECK(strcmp(gguf_vtype_name(GGUF_STRING), "string") == 0 && strcmp(gguf_vtype_name(GGUF_F64), "f64") == 0 &&
              strcmp(gguf_vtype_name(99), "unknown") == 0,
          "vtype names");
#undef OKV
#undef BADV

    for (int i = 0; i < NT; i++) {
        const struct gguf_tensor *t = gguf_find_tensor(f, tname[i]);
        CHECK(t == &f->tensors[i], "tensor %s found", tname[i]);
        if (!t) continue;
        CHECK(t->n_dims == tdims[i] && t->type == ttype[i] && t->offset == toff[i] && t->nbytes == tbytes[i] &&
                  t->ne[0] == tne[i][0] && t->ne[1] == tne[i][1] && t->ne[2] == tne[i][2] && t->ne[3] == 1,
              "tensor %s: n_dims %u type %u offset %llu nbytes %llu", tname[i], t->n_dims, t->type,
              (unsigned long long)t->offset, (unsigned long long)t->nbytes);
        CHECK((const uint8_t *)t->data == buf + L.data_start + toff[i], "tensor %s data pointer", tname[i]);
    }
    CHECK(gguf_find_tensor(f, "w.f3") == NULL && gguf_find_tensor(f, "nope") == NULL, "absent tensor");
    const struct gguf_tensor *t = &f->tensors[0];
    int ok = 1;
    for (int i = 0; i < 12; i++) {
        float v;
        memcpy(&v, (const uint8_t *)t->data + 4 * i, 4);
        ok &= v == f32_val(i);
    }
    t = &f->tensors[1];
    for (int i = 0; i < 16; i++) {
        uint16_t h;
        memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
        ok &= kvc_f16_to_f32(h) == f16_val(i);
    }
    t = &f->tensors[2];
    for (int k = 0; k < 4; k++) {
        block_q8_0 blk;
        memcpy(&blk, (const uint8_t *)t->data + 34 * k, 34);
        ok &= kvc_f16_to_f32(blk.d) == 0.5f * (float)(k + 1) && blk.qs[0] == -16 && blk.qs[31] == 15;
    }
    CHECK(ok, "v%u tensor data reads back", version);
    gguf_close(f);
    gguf_close(NULL);
    free(buf);

    /* the same through gguf_open (mmap) of a temporary file */
    char path[] = "/tmp/kvc_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd >= 0) {
        CHECK(write(fd, w.p, w.n) == (ssize_t)w.n, "write %s", path);
        close(fd);
        st = gguf_open(path, &f, &err);
        CHECK(st == KVC_OK && f->mapped && f->n_tensors == NT && f->n_kv == L.n_kv_val, "open %s: %s", path,
              err.msg);
        if (st == KVC_OK) {
            CHECK(validate(f, f->base, (size_t)f->size, why, sizeof why) == 0, "open: %s", why);
            gguf_close(f);
        }
        /* a truncated file through the mmap path */
        CHECK(truncate(path, (off_t)(w.n - 1)) == 0, "truncate");
        st = gguf_open(path, &f, &err);
        CHECK(st == KVC_ERR_FORMAT && f == NULL && strstr(err.msg, path) && strstr(err.msg, "w.q80"),
              "open truncated: %d %s", st, err.msg);
        CHECK(truncate(path, 0) == 0, "truncate");
        st = gguf_open(path, &f, &err);
        CHECK(st == KVC_ERR_FORMAT && f == NULL && strstr(err.msg, path) && strstr(err.msg, "magic"),
              "open empty: %d %s", st, err.msg);
        unlink(path);
    }
    free(w.p);
}

static void test_open_errors(void) {
    struct gguf_file *f = (struct gguf_file *)&f;
    kvc_error err = {0};
    kvc_status st = gguf_open("/nonexistent/dir/model.gguf", &f, &err);
    CHECK(st == KVC_ERR_IO && f == NULL && err.status == KVC_ERR_IO && strstr(err.msg, "/nonexistent/dir/model.gguf"),
          "open missing: %d %s", st, err.msg);
    st = gguf_open("/tmp", &f, &err);
    CHECK(st == KVC_ERR_IO && f == NULL && strstr(err.msg, "/tmp") && strstr(err.msg, "regular"),
          "open dir: %d %s", st, err.msg);
}

/* Minimal and edge-case files that are valid. */
static void test_edge_valid(void) {
    struct wb w = {0};
    struct gguf_file *f = NULL;
    kvc_error err = {0};
    /* header only: no kv, no tensors */
    wb_put(&w, "GGUF", 4), wb_u32(&w, 3), wb_u64(&w, 0), wb_u64(&w, 0);
    uint8_t *b = dup_exact(w.p, w.n);
    kvc_status st = gguf_parse(b, w.n, "empty.gguf", &f, &err);
    CHECK(st == KVC_OK && f->n_kv == 0 && f->n_tensors == 0 && f->data_offset <= w.n, "header only: %s",
          err.msg);
    gguf_close(f);
    free(b);
    /* an empty key and a key in a file without tensors, unpadded */
    w.n = 0;
    wb_put(&w, "GGUF", 4), wb_u32(&w, 2), wb_u64(&w, 0), wb_u64(&w, 2);
    wb_key(&w, "", GGUF_U8), wb_u8(&w, 1);
    wb_key(&w, "general.alignment", GGUF_U32), wb_u32(&w, 1u << 20);
    b = dup_exact(w.p, w.n);
    st = gguf_parse(b, w.n, "nokv.gguf", &f, &err);
    CHECK(st == KVC_OK && f->n_kv == 2 && f->alignment == (1u << 20) && f->data_offset <= w.n,
          "no tensors: %s", err.msg);
    if (st == KVC_OK) CHECK(gguf_find(f, "") == &f->kv[0], "empty key found");
    gguf_close(f);
    free(b);
    /* arrays of every numeric type read back through gguf_arr_num */
    w.n = 0;
    wb_put(&w, "GGUF", 4), wb_u32(&w, 3), wb_u64(&w, 0), wb_u64(&w, 9);
    wb_key(&w, "a.bool", GGUF_ARRAY), wb_u32(&w, GGUF_BOOL), wb_u64(&w, 3), wb_u8(&w, 1), wb_u8(&w, 0), wb_u8(&w, 2);
    wb_key(&w, "a.u8", GGUF_ARRAY), wb_u32(&w, GGUF_U8), wb_u64(&w, 1), wb_u8(&w, 255);
    wb_key(&w, "a.i8", GGUF_ARRAY), wb_u32(&w, GGUF_I8), wb_u64(&w, 1), wb_u8(&w, 0x80);
    wb_key(&w, "a.u16", GGUF_ARRAY), wb_u32(&w, GGUF_U16), wb_u64(&w, 1), wb_u16(&w, 65535);
    wb_key(&w, "a.i16", GGUF_ARRAY), wb_u32(&w, GGUF_I16), wb_u64(&w, 1), wb_u16(&w, 0x8000);
    wb_key(&w, "a.u32", GGUF_ARRAY), wb_u32(&w, GGUF_U32), wb_u64(&w, 1), wb_u32(&w, 0xFFFFFFFFu);
    wb_key(&w, "a.u64", GGUF_ARRAY), wb_u32(&w, GGUF_U64), wb_u64(&w, 2), wb_u64(&w, 1ull << 40), wb_u64(&w, 0);
    wb_key(&w, "a.i64", GGUF_ARRAY), wb_u32(&w, GGUF_I64), wb_u64(&w, 1), wb_u64(&w, (uint64_t)-(1ll << 40));
    wb_key(&w, "a.f64", GGUF_ARRAY), wb_u32(&w, GGUF_F64), wb_u64(&w, 1), wb_f64(&w, -0.125);
    b = dup_exact(w.p, w.n);
    st = gguf_parse(b, w.n, "arrays.gguf", &f, &err);
    CHECK(st == KVC_OK, "arrays: %s", err.msg);
    if (st == KVC_OK) {
        const struct gguf_kv *k[9];
        static const char *const names[9] = {"a.bool", "a.u8", "a.i8", "a.u16", "a.i16",
                                             "a.u32", "a.u64", "a.i64", "a.f64"};
        int found = 1;
        for (int i = 0; i < 9; i++) found &= (k[i] = gguf_find(f, names[i])) != NULL;
        CHECK(found, "arrays: all keys found");
        if (found) {
            CHECK(gguf_arr_num(k[0], 0) == 1 && gguf_arr_num(k[0], 1) == 0 && gguf_arr_num(k[0], 2) == 1,
                  "bool array");
            CHECK(gguf_arr_num(k[1], 0) == 255 && gguf_arr_num(k[2], 0) == -128 && gguf_arr_num(k[3], 0) == 65535 &&
                      gguf_arr_num(k[4], 0) == -32768 && gguf_arr_num(k[5], 0) == 4294967295.0 &&
                      gguf_arr_num(k[6], 0) == 1099511627776.0 && gguf_arr_num(k[6], 1) == 0 &&
                      gguf_arr_num(k[7], 0) == -1099511627776.0 && gguf_arr_num(k[8], 0) == -0.125,
                  "numeric arrays read back");
        }
        gguf_close(f);
    }
    free(b);
    /* NULL name */
    st = gguf_parse(w.p, 3, NULL, &f, &err);
    CHECK(st == KVC_ERR_FORMAT && f == NULL, "NULL name: %s", err.msg);
    st = gguf_parse(NULL, 0, "null.gguf", &f, &err);
    CHECK(st == KVC_ERR_FORMAT && f == NULL && strstr(err.msg, "magic"), "NULL buffer: %s", err.msg);

    /* the small file with other alignments / adjacent tensors */
    struct layout L;
    build_valid(3, &w, &L);
    static const uint32_t aligns[] = {1, 2, 32};
    for (int i = 0; i < 3; i++) {
        b = dup_exact(w.p, w.n);
        put32(b, L.align_val, aligns[i]);
        st = gguf_parse(b, w.n, "align.gguf", &f, &err);
        size_t want = (L.header_end + aligns[i] - 1) / aligns[i] * aligns[i];
        CHECK(st == KVC_OK && f->alignment == aligns[i] && f->data_offset == want, "alignment %u: %s",
              aligns[i], err.msg);
        gguf_close(f);
        free(b);
    }
    b = dup_exact(w.p, w.n);
    put64(b, L.t[0].ne[1], 4); /* w.f32 grows to 64 bytes: ends exactly where w.f16 starts */
    st = gguf_parse(b, w.n, "adjacent.gguf", &f, &err);
    CHECK(st == KVC_OK, "adjacent tensors: %s", err.msg);
    gguf_close(f);
    free(b);
    free(w.p);
}

/* ------------------------------------------------------------------ malformed files */

static int n_bad_cases;

/* Parse an exactly-sized copy; it must fail with FORMAT, *out NULL, and a message naming the
 * file and containing kw. */
static void expect_bad(const uint8_t *src, size_t n, const char *name, const char *kw, int line) {
    uint8_t *b = dup_exact(src, n);
    struct gguf_file *f = (struct gguf_file *)&f;
    kvc_error err = {0};
    kvc_status st = gguf_parse(b, n, name, &f, &err);
    n_bad_cases++;
    CHECK(st == KVC_ERR_FORMAT && err.status == KVC_ERR_FORMAT && f == NULL,
          "line %d: %s: status %d (%s), want KVC_ERR_FORMAT", line, name, st, err.msg);
    CHECK(strstr(err.msg, name) != NULL, "line %d: %s: message lacks the file name: '%s'", line, name, err.msg);
    if (kw)
        CHECK(strstr(err.msg, kw) != NULL, "line %d: %s: message lacks '%s': '%s'", line, name, kw, err.msg);
    if (st == KVC_OK) gguf_close(f);
    free(b);
}

/* A patched copy of the valid v3 file: BAD("name", "keyword", statements on b) */
#define BAD(name, kw, ...)                               \
    do {                                                 \
        uint8_t *b = dup_exact(w.p, w.n);                \
        size_t bn = w.n;                                 \
        __VA_ARGS__;                                     \
        expect_bad(b, bn, name, kw, __LINE__);           \
        free(b);                                         \
    } while (0)

static void test_malformed(void) {
    struct wb w = {0};
    struct layout L;
    build_valid(3, &w, &L);
    const uint64_t HUGE63 = 1ull << 63, HUGE40 = 1ull << 40;

    /* magic */
    expect_bad(w.p, 0, "empty.gguf", "magic", __LINE__);
    expect_bad(w.p, 3, "short.gguf", "magic", __LINE__);
    BAD("magic.gguf", "magic", b[3] = 'X');
    BAD("magic2.gguf", "magic", memcpy(b, "FUGG", 4));
    /* version */
    BAD("v1.gguf", "version", put32(b, L.version, 1));
    BAD("v4.gguf", "version", put32(b, L.version, 4));
    BAD("v0.gguf", "version", put32(b, L.version, 0));
    BAD("vmax.gguf", "version", put32(b, L.version, 0xFFFFFFFFu));
    BAD("vbig-endian.gguf", "version", put32(b, L.version, 0x03000000u));
    /* counts */
    BAD("nkv63.gguf", "n_kv", put64(b, L.n_kv, HUGE63));
    BAD("nkv40.gguf", "n_kv", put64(b, L.n_kv, HUGE40));
    BAD("nkvmax.gguf", "n_kv", put64(b, L.n_kv, UINT64_MAX));
    BAD("nt63.gguf", "n_tensors", put64(b, L.n_tensors, HUGE63));
    BAD("nt40.gguf", "n_tensors", put64(b, L.n_tensors, HUGE40));
    BAD("ntmax.gguf", "n_tensors", put64(b, L.n_tensors, UINT64_MAX));
    BAD("nkv+1.gguf", NULL, put64(b, L.n_kv, L.n_kv_val + 1));
    BAD("nkv-1.gguf", NULL, put64(b, L.n_kv, L.n_kv_val - 1));
    BAD("nt+1.gguf", "tensor", put64(b, L.n_tensors, NT + 1));
    /* strings */
    BAD("keylen63.gguf", "string length", put64(b, L.key0_len, HUGE63));
    BAD("keylen40.gguf", "string length", put64(b, L.key0_len, HUGE40));
    BAD("keylen64k.gguf", "string length", put64(b, L.key0_len, 65536));
    BAD("keylen-past.gguf", "metadata 0 key", put64(b, L.key0_len, 60000));
    BAD("strlen63.gguf", "string length", put64(b, L.str_len, HUGE63));
    BAD("strlen40.gguf", "string length", put64(b, L.str_len, HUGE40));
    BAD("strlen-past.gguf", "t.str", put64(b, L.str_len, 1u << 20));
    BAD("strlen-max.gguf", "string length", put64(b, L.str_len, UINT64_MAX));
    BAD("namelen.gguf", "string length", put64(b, L.t[0].name_len, 257));
    BAD("namelen63.gguf", "tensor 0 name", put64(b, L.t[0].name_len, HUGE63));
    BAD("namelen-past.gguf", "tensor 2 name", put64(b, L.t[2].name_len, 2000));
    /* arrays */
    BAD("arrn62.gguf", "t.arr_i32", put64(b, L.arr_i32_n, 1ull << 62)); /* n * 4 overflows */
    BAD("arrn63.gguf", "array", put64(b, L.arr_i32_n, HUGE63));
    BAD("arrn40.gguf", "array", put64(b, L.arr_i32_n, HUGE40));
    BAD("arrnmax.gguf", "array", put64(b, L.arr_i32_n, UINT64_MAX));
    BAD("arrstr40.gguf", "strings", put64(b, L.arr_str_n, HUGE40));
    BAD("arrstr63.gguf", "strings", put64(b, L.arr_str_n, HUGE63));
    BAD("arrstrmax.gguf", "strings", put64(b, L.arr_str_n, UINT64_MAX));
    BAD("nested.gguf", "array element type", put32(b, L.arr_i32_type, GGUF_ARRAY));
    BAD("arrtype13.gguf", "array element type", put32(b, L.arr_i32_type, GGUF_NTYPES));
    BAD("arrtypemax.gguf", "array element type", put32(b, L.arr_i32_type, 0xFFFFFFFFu));
    /* value types */
    BAD("vtype13.gguf", "value type", put32(b, L.u32_type, 13));
    BAD("vtype99.gguf", "value type", put32(b, L.u32_type, 99));
    BAD("vtypemax.gguf", "value type", put32(b, L.u32_type, 0xFFFFFFFFu));
    /* duplicate key: "t.i8" -> "t.u8" */
    BAD("dupkey.gguf", "t.u8", b[L.key_i8 + 2] = 'u');
    BAD("dupkey2.gguf", "twice", b[L.key_i8 + 2] = 'u');
    /* alignment */
    BAD("align0.gguf", "alignment", put32(b, L.align_val, 0));
    BAD("align3.gguf", "alignment", put32(b, L.align_val, 3));
    BAD("align48.gguf", "alignment", put32(b, L.align_val, 48));
    BAD("align2p21.gguf", "alignment", put32(b, L.align_val, 1u << 21));
    BAD("align2p31.gguf", "alignment", put32(b, L.align_val, 1u << 31));
    BAD("alignmax.gguf", "alignment", put32(b, L.align_val, 0xFFFFFFFFu));
    BAD("align-i32.gguf", "alignment", put32(b, L.align_type, GGUF_I32));
    BAD("align-f32.gguf", "alignment", put32(b, L.align_type, GGUF_F32));
    BAD("align-u8.gguf", NULL, put32(b, L.align_type, GGUF_U8)); /* then misparses */
    BAD("align-u16.gguf", NULL, put32(b, L.align_type, GGUF_U16));
    /* tensor dims */
    BAD("ndims0.gguf", "n_dims", put32(b, L.t[0].n_dims, 0));
    BAD("ndims5.gguf", "n_dims", put32(b, L.t[0].n_dims, 5));
    BAD("ndimsmax.gguf", "n_dims", put32(b, L.t[1].n_dims, 0xFFFFFFFFu));
    BAD("ne0zero.gguf", "ne[0]", put64(b, L.t[0].ne[0], 0));
    BAD("ne1zero.gguf", "ne[1]", put64(b, L.t[0].ne[1], 0));
    BAD("ne2zero.gguf", "ne[2]", put64(b, L.t[1].ne[2], 0));
    BAD("ne63.gguf", "ne[0]", put64(b, L.t[0].ne[0], HUGE63));
    BAD("nemax.gguf", "ne[1]", put64(b, L.t[2].ne[1], UINT64_MAX));
    BAD("neoverflow.gguf", "overflows", put64(b, L.t[0].ne[0], 1ull << 32), put64(b, L.t[0].ne[1], 1ull << 32));
    BAD("neoverflow3.gguf", "overflows", put64(b, L.t[1].ne[0], 1ull << 21), put64(b, L.t[1].ne[1], 1ull << 21),
        put64(b, L.t[1].ne[2], 1ull << 21));
    BAD("ne2p63.gguf", "overflows", put64(b, L.t[0].ne[0], 1ull << 62), put64(b, L.t[0].ne[1], 2));
    BAD("bytesoverflow.gguf", "byte size", put64(b, L.t[0].ne[0], 1ull << 62), put64(b, L.t[0].ne[1], 1));
    BAD("bytes2p63.gguf", "past the end", put64(b, L.t[0].ne[0], 1ull << 61), put64(b, L.t[0].ne[1], 1));
    /* tensor type */
    BAD("ttype99.gguf", "type 99", put32(b, L.t[0].type, 99));
    BAD("ttype4.gguf", "type 4", put32(b, L.t[0].type, 4)); /* a removed type id */
    BAD("ttype31.gguf", "type 31", put32(b, L.t[1].type, 31));
    BAD("ttypemax.gguf", "tensor", put32(b, L.t[2].type, 0xFFFFFFFFu));
    BAD("q80-ne48.gguf", "block size", put64(b, L.t[2].ne[0], 48));
    BAD("q80-ne16.gguf", "block size", put64(b, L.t[2].ne[0], 16));
    BAD("q4k-ne64.gguf", "block size", put32(b, L.t[2].type, KVC_TYPE_Q4_K));
    BAD("iq4xs-ne64.gguf", "block size", put32(b, L.t[2].type, KVC_TYPE_IQ4_XS));
    BAD("q6k-ne64.gguf", "block size", put32(b, L.t[2].type, KVC_TYPE_Q6_K));
    /* offsets */
    BAD("off-unaligned.gguf", "alignment", put64(b, L.t[1].offset, 65));
    BAD("off-align32.gguf", "alignment", put64(b, L.t[1].offset, 32));
    BAD("off-past.gguf", "past the end", put64(b, L.t[1].offset, 1ull << 46));
    BAD("off-max.gguf", "past the end", put64(b, L.t[2].offset, UINT64_MAX - 63));
    BAD("off-end.gguf", "past the end", put64(b, L.t[2].offset, (L.size - L.data_start + 63) / 64 * 64));
    BAD("off+size.gguf", "past the end", put64(b, L.t[2].offset, 192));
    BAD("size-disagrees.gguf", "past the end", put64(b, L.t[2].ne[1], 3));
    BAD("size-disagrees2.gguf", "offset", put64(b, L.t[2].ne[0], 96));
    BAD("type-disagrees.gguf", "past the end", put32(b, L.t[2].type, KVC_TYPE_F32));
    BAD("data-short.gguf", "w.q80", bn--);
    BAD("data-short2.gguf", "past the end", bn -= 136);
    /* overlapping tensors */
    BAD("overlap.gguf", "overlaps", put64(b, L.t[1].offset, 0));
    BAD("overlap2.gguf", "overlaps", put64(b, L.t[2].offset, 64));
    BAD("overlap3.gguf", "overlaps", put64(b, L.t[0].ne[1], 5));
    BAD("overlap-same.gguf", "w.f16", put64(b, L.t[2].offset, 64));
    /* duplicate tensor name: "w.f16" -> "w.f32" */
    BAD("dupname.gguf", "appears twice", memcpy(b + L.t[1].name, "w.f32", 5));
    BAD("dupname2.gguf", "w.q80", memcpy(b + L.t[0].name, "w.q80", 5));

    /* truncation at every offset: each must fail, with a message naming a field */
    for (int version = 2; version <= 3; version++) {
        build_valid((uint32_t)version, &w, &L);
        int bad = 0, badkw = 0;
        for (size_t n = 0; n < w.n; n++) {
            uint8_t *b = dup_exact(w.p, n);
            struct gguf_file *f = NULL;
            kvc_error err = {0};
            kvc_status st = gguf_parse(b, n, "trunc.gguf", &f, &err);
            if (st != KVC_ERR_FORMAT || f || !strstr(err.msg, "trunc.gguf")) {
                if (!bad++) fprintf(stderr, "truncated v%d at %zu: status %d '%s'\n", version, n, st, err.msg);
            } else if (!strstr(err.msg, "magic") && !strstr(err.msg, "version") && !strstr(err.msg, "n_kv") &&
                       !strstr(err.msg, "n_tensors") && !strstr(err.msg, "metadata") &&
                       !strstr(err.msg, "tensor") && !strstr(err.msg, "data section")) {
                if (!badkw++) fprintf(stderr, "truncated v%d at %zu: message names no field: '%s'\n", version, n, err.msg);
            }
            gguf_close(f);
            free(b);
        }
        CHECK(bad == 0 && badkw == 0, "v%d truncations: %d not refused, %d without a field name (of %zu)", version,
              bad, badkw, w.n);
    }
    free(w.p);
}

/* Truncations of the real stories260K.gguf, from a heap copy of exactly each length: every
 * length in the header and a little past it, then a sample through the tensor data. */
static void test_truncated_real(void) {
    const char *p = shared_path("models/stories260K.gguf");
    if (!p) return;
    FILE *fp = fopen(p, "rb");
    CHECK(fp != NULL, "fopen %s", p);
    if (!fp) return;
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *all = malloc((size_t)sz);
    CHECK(all && fread(all, 1, (size_t)sz, fp) == (size_t)sz, "read %s", p);
    fclose(fp);
    if (!all) return;
    struct gguf_file *f = NULL;
    kvc_error err = {0};
    uint8_t *b = dup_exact(all, (size_t)sz);
    kvc_status st = gguf_parse(b, (size_t)sz, "stories.gguf", &f, &err);
    CHECK(st == KVC_OK && f->n_tensors == 48, "stories from memory: %s", err.msg);
    size_t data_start = st == KVC_OK ? (size_t)f->data_offset : 14176;
    gguf_close(f);
    free(b);
    int bad = 0, tried = 0;
    size_t n = 0;
    while (n < (size_t)sz) {
        b = dup_exact(all, n);
        st = gguf_parse(b, n, "stories-trunc.gguf", &f, &err);
        tried++;
        if (st != KVC_ERR_FORMAT || f || !strstr(err.msg, "stories-trunc.gguf")) {
            if (!bad++) fprintf(stderr, "stories truncated at %zu: status %d '%s'\n", n, st, err.msg);
        }
        gguf_close(f);
        free(b);
        if (n < data_start + 256) n++;           /* the whole header, byte by byte */
        else if (n + 8 >= (size_t)sz) n++;        /* the last bytes */
        else if (n + 4099 < (size_t)sz) n += 4099; /* a sample of the tensor data */
        else n = (size_t)sz - 8;
    }
    CHECK(bad == 0, "stories260K truncations: %d of %d not refused", bad, tried);
    free(all);
}

/* ------------------------------------------------------------------ random mutation */

static void test_mutations(void) {
    struct wb w[2] = {{0}, {0}};
    struct layout L;
    build_valid(3, &w[0], &L);
    build_valid(2, &w[1], &L);
    unsigned long long rng = 0x9e3779b97f4a7c15ull;
    static const uint64_t special[] = {0, 1, 2, 3, 4, 5, 8, 9, 12, 13, 31, 32, 33, 63, 64, 65, 255, 256,
                                       65535, 65536, 0x7fffffffull, 0x80000000ull, 0xffffffffull,
                                       1ull << 32, 1ull << 40, 1ull << 62, 1ull << 63, UINT64_MAX,
                                       UINT64_MAX - 63, (uint64_t)INT64_MAX};
    int iters = 20000, ok_count = 0, violations = 0, status_bad = 0;
    for (int it = 0; it < iters; it++) {
        const struct wb *src = &w[it & 1];
        size_t n = src->n;
        int op = (int)(t_rng_next(&rng) % 8);
        if (op == 0) n = (size_t)(t_rng_next(&rng) % (src->n + 1)); /* truncate */
        else if (op == 1) n = src->n + (size_t)(t_rng_next(&rng) % 200); /* extend with junk */
        uint8_t *b = malloc(n ? n : 1);
        if (!b) abort();
        memcpy(b, src->p, n < src->n ? n : src->n);
        for (size_t i = src->n; i < n; i++) b[i] = (uint8_t)t_rng_next(&rng);
        int k = 1 + (int)(t_rng_next(&rng) % 4);
        for (int j = 0; j < k && n > 0; j++) {
            size_t at = (size_t)(t_rng_next(&rng) % n);
            uint64_t r = t_rng_next(&rng);
            switch (r % 6) {
            case 0: b[at] ^= (uint8_t)(1u << (r >> 8) % 8); break;          /* flip a bit */
            case 1: b[at] = (uint8_t)(r >> 16); break;                     /* random byte */
            case 2: case 3: {                                              /* random / special u64 */
                uint64_t v = (r >> 8) % 3 ? special[(r >> 16) % (sizeof special / sizeof special[0])]
                                          : t_rng_next(&rng);
                size_t m = n - at < 8 ? n - at : 8;
                memcpy(b + at, &v, m);
                break;
            }
            case 4: {                                                      /* special u32 */
                uint32_t v = (uint32_t)special[(r >> 16) % (sizeof special / sizeof special[0])];
                size_t m = n - at < 4 ? n - at : 4;
                memcpy(b + at, &v, m);
                break;
            }
            default: {                                                     /* copy a run */
                size_t from = (size_t)((r >> 8) % n), len = (size_t)((r >> 24) % 32);
                if (len > n - at) len = n - at;
                if (len > n - from) len = n - from;
                memmove(b + at, b + from, len);
            }
            }
        }
        struct gguf_file *f = NULL;
        kvc_error err = {0};
        kvc_status st = gguf_parse(b, n, "mut.gguf", &f, &err);
        if (st == KVC_OK) {
            char why[200] = "";
            ok_count++;
            if (validate(f, b, n, why, sizeof why)) {
                if (!violations++) fprintf(stderr, "mutation %d parses but: %s\n", it, why);
            }
            gguf_close(f);
        } else if (st != KVC_ERR_FORMAT || f || !strstr(err.msg, "mut.gguf")) {
            if (!status_bad++) fprintf(stderr, "mutation %d: status %d '%s'\n", it, st, err.msg);
        }
        free(b);
    }
    CHECK(violations == 0, "%d of %d mutated files parse with invariant violations", violations, ok_count);
    CHECK(status_bad == 0, "%d mutated files fail without KVC_ERR_FORMAT and the file name", status_bad);
    CHECK(ok_count > 100 && ok_count < iters, "mutations: %d of %d parse (expect some, not all)", ok_count, iters);
    fprintf(stderr, "mutations: %d iterations, %d parse\n", iters, ok_count);
    free(w[0].p);
    free(w[1].p);
}

/* Many keys / tensors: the duplicate checks must stay fast (not quadratic). */
static void test_many(void) {
    struct wb w = {0};
    const uint64_t nkv = 200000;
    wb_put(&w, "GGUF", 4), wb_u32(&w, 3), wb_u64(&w, 0), wb_u64(&w, nkv);
    char key[32];
    for (uint64_t i = 0; i < nkv; i++) {
        snprintf(key, sizeof key, "k%07llu", (unsigned long long)((i * 7919) % nkv));
        wb_key(&w, key, GGUF_U8), wb_u8(&w, (uint8_t)i);
    }
    uint8_t *b = dup_exact(w.p, w.n);
    struct gguf_file *f = NULL;
    kvc_error err = {0};
    kvc_status st = gguf_parse(b, w.n, "many.gguf", &f, &err);
    CHECK(st == KVC_OK && f->n_kv == nkv, "200000 keys: %s", err.msg);
    gguf_close(f);
    /* the same with one repeated key at the end: key 5 */
    memcpy(b + w.n - 1 - 4 - 8, "k0000005", 8);
    st = gguf_parse(b, w.n, "many-dup.gguf", &f, &err);
    CHECK(st == KVC_ERR_FORMAT && strstr(err.msg, "k0000005") && strstr(err.msg, "twice"), "dup of 200000: %s",
          err.msg);
    free(b);
    /* all keys equal */
    w.n = 0;
    wb_put(&w, "GGUF", 4), wb_u32(&w, 3), wb_u64(&w, 0), wb_u64(&w, nkv);
    for (uint64_t i = 0; i < nkv; i++) wb_key(&w, "same", GGUF_U8), wb_u8(&w, 0);
    b = dup_exact(w.p, w.n);
    st = gguf_parse(b, w.n, "same.gguf", &f, &err);
    CHECK(st == KVC_ERR_FORMAT && strstr(err.msg, "entries 0 and 1"), "all equal: %s", err.msg);
    free(b);
    free(w.p);
}

int main(void) {
    test_real_models();
    test_open_errors();
    test_valid(3);
    test_valid(2);
    test_edge_valid();
    test_malformed();
    fprintf(stderr, "malformed cases: %d\n", n_bad_cases);
    test_truncated_real();
    test_mutations();
    test_many();
    return test_summary("test_gguf");
}
