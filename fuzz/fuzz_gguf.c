/* fuzz_gguf.c - libFuzzer target for the GGUF reader. The input is copied into a buffer
 * malloc'ed with exactly its size (gguf_parse keeps pointers into it, so ASan catches any read
 * past the end); when it parses, every key is looked up again, every array element and string
 * and every typed getter is exercised, and the first and last byte of every tensor is read.
 * Invariants the parser promises (extents inside the buffer, sizes consistent with the type
 * table, no overlaps, no duplicate names) are checked and abort on violation.
 *   clang -std=c11 -D_GNU_SOURCE -O1 -g -Iinclude -Isrc -fsanitize=fuzzer,address,undefined \
 *     fuzz/fuzz_gguf.c src/gguf.c src/util.c src/types.c -lm -o /tmp/fuzz_gguf
 * fuzz/run.sh builds and runs it. */
#include "gguf.h"
#include "types.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile unsigned sink;

#define REQUIRE(cond)                                                                  \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "fuzz_gguf: invariant failed: %s (line %d)\n", #cond, __LINE__); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

static int inside(const void *p, uint64_t n, const uint8_t *base, uint64_t size) {
    const uint8_t *q = p;
    if (q < base || q > base + size) return 0;
    return n <= (uint64_t)(base + size - q);
}

static void touch(const void *p, uint64_t n) {
    if (n) sink += ((const unsigned char *)p)[0] + ((const unsigned char *)p)[n - 1];
}

/* A NUL-terminated copy of a file string, or NULL if it holds a NUL or is too long. */
static const char *cstr(struct gguf_str s, char *buf, size_t cap) {
    if (s.n >= cap || memchr(s.p, 0, (size_t)s.n)) return NULL;
    memcpy(buf, s.p, (size_t)s.n);
    buf[s.n] = 0;
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    struct gguf_file *f = (struct gguf_file *)&buf;
    kvc_error err;
    err.msg[0] = 0;
    kvc_status st = gguf_parse(buf, size, "fuzz.gguf", &f, &err);
    if (st != KVC_OK) {
        REQUIRE(f == NULL);
        REQUIRE(st == KVC_ERR_FORMAT || st == KVC_ERR_NOMEM);
        REQUIRE(strstr(err.msg, "fuzz.gguf") != NULL);
        free(buf);
        return 0;
    }
    REQUIRE(f->base == buf && f->size == size);
    REQUIRE(f->version == 2 || f->version == 3);
    REQUIRE(f->alignment >= 1 && (f->alignment & (f->alignment - 1)) == 0);
    REQUIRE(f->data_offset <= size);
    char key[65536];
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const struct gguf_kv *kv = &f->kv[i];
        REQUIRE(inside(kv->key.p, kv->key.n, buf, size));
        touch(kv->key.p, kv->key.n);
        REQUIRE(kv->type < GGUF_NTYPES);
        sink += (unsigned)strlen(gguf_vtype_name(kv->type));
        const char *k = cstr(kv->key, key, sizeof key);
        if (!k) continue;
        /* keys are unique, so the lookup finds this very entry */
        REQUIRE(gguf_find(f, k) == kv);
        uint32_t u;
        float x;
        int b;
        struct gguf_str s;
        const struct gguf_kv *arr;
        kvc_error e2;
        st = gguf_get_u32(f, k, &u, &e2);
        if (!st) sink += u;
        st = gguf_get_f32(f, k, &x, &e2);
        if (!st) sink += (unsigned)(x == x);
        st = gguf_get_bool(f, k, &b, &e2);
        if (!st) sink += (unsigned)b;
        st = gguf_get_str(f, k, &s, &e2);
        REQUIRE((st == KVC_OK) == (kv->type == GGUF_STRING));
        if (!st) {
            REQUIRE(inside(s.p, s.n, buf, size));
            touch(s.p, s.n);
        }
        if (kv->type != GGUF_ARRAY) {
            REQUIRE(inside(kv->data, 1, buf, size));
            continue;
        }
        st = gguf_get_arr(f, k, kv->arr_type, &arr, &e2);
        REQUIRE(st == KVC_OK && arr == kv);
        REQUIRE(kv->arr_type < GGUF_NTYPES && kv->arr_type != GGUF_ARRAY);
        if (kv->arr_type == GGUF_STRING) {
            REQUIRE(kv->strs != NULL);
            for (uint64_t j = 0; j < kv->arr_n; j++) {
                REQUIRE(inside(kv->strs[j].p, kv->strs[j].n, buf, size));
                touch(kv->strs[j].p, kv->strs[j].n);
            }
        } else {
            for (uint64_t j = 0; j < kv->arr_n; j++) {
                double v = gguf_arr_num(kv, j);
                sink += (unsigned)(v == v);
            }
            sink += (unsigned)gguf_arr_num(kv, kv->arr_n); /* out of range: 0 */
        }
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        REQUIRE(inside(t->name.p, t->name.n, buf, size));
        touch(t->name.p, t->name.n);
        REQUIRE(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS);
        const struct kvc_type_size *ti = kvc_type_info(t->type);
        REQUIRE(ti != NULL);
        unsigned __int128 nel = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) {
            REQUIRE(t->ne[d] >= 1);
            REQUIRE(d < (int)t->n_dims || t->ne[d] == 1);
            nel *= t->ne[d];
        }
        REQUIRE(t->ne[0] % (uint64_t)ti->blck == 0);
        REQUIRE(nel / (uint64_t)ti->blck * (uint64_t)ti->bytes == t->nbytes);
        REQUIRE(t->offset % f->alignment == 0);
        REQUIRE((const uint8_t *)t->data == buf + f->data_offset + t->offset);
        REQUIRE(inside(t->data, t->nbytes, buf, size));
        touch(t->data, t->nbytes);
        const char *n = cstr(t->name, key, sizeof key);
        if (n) REQUIRE(gguf_find_tensor(f, n) == t);
    }
    /* no overlaps, no duplicate names: quadratic, so only on small counts */
    if (f->n_tensors <= 256)
        for (uint64_t i = 0; i < f->n_tensors; i++)
            for (uint64_t j = 0; j < i; j++) {
                const struct gguf_tensor *a = &f->tensors[i], *b = &f->tensors[j];
                REQUIRE(a->offset >= b->offset + b->nbytes || b->offset >= a->offset + a->nbytes);
                REQUIRE(!(a->name.n == b->name.n && memcmp(a->name.p, b->name.p, (size_t)a->name.n) == 0));
            }
    if (f->n_kv <= 256)
        for (uint64_t i = 0; i < f->n_kv; i++)
            for (uint64_t j = 0; j < i; j++) {
                const struct gguf_kv *a = &f->kv[i], *b = &f->kv[j];
                REQUIRE(!(a->key.n == b->key.n && memcmp(a->key.p, b->key.p, (size_t)a->key.n) == 0));
            }
    gguf_close(f);
    free(buf);
    return 0;
}
