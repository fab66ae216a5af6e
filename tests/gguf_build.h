/* gguf_build.h - writes small GGUF files into memory for tests: a growing buffer and one
 * helper per metadata value kind (string, u32, bool, arrays of strings / f32 / i32). */
#ifndef KVC_GGUF_BUILD_H
#define KVC_GGUF_BUILD_H

#include "gguf.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct gbuf {
    unsigned char *p;
    size_t n, cap;
};

static void gput(struct gbuf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        while (b->n + n > b->cap) b->cap = b->cap ? b->cap * 2 : 1024;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void gu32(struct gbuf *b, uint32_t v) { gput(b, &v, 4); }
static void gu64(struct gbuf *b, uint64_t v) { gput(b, &v, 8); }
static void gstr(struct gbuf *b, const char *s) { gu64(b, strlen(s)); gput(b, s, strlen(s)); }
static void kv_str(struct gbuf *b, const char *k, const char *v) { gstr(b, k); gu32(b, GGUF_STRING); gstr(b, v); }
static void kv_u32(struct gbuf *b, const char *k, uint32_t v) { gstr(b, k); gu32(b, GGUF_U32); gu32(b, v); }
static void kv_bool(struct gbuf *b, const char *k, int v) {
    unsigned char c = (unsigned char)v;
    gstr(b, k); gu32(b, GGUF_BOOL); gput(b, &c, 1);
}
static void kv_strs(struct gbuf *b, const char *k, const char *const *v, int n) {
    gstr(b, k); gu32(b, GGUF_ARRAY); gu32(b, GGUF_STRING); gu64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) gstr(b, v[i]);
}
static void kv_f32s(struct gbuf *b, const char *k, const float *v, int n) {
    gstr(b, k); gu32(b, GGUF_ARRAY); gu32(b, GGUF_F32); gu64(b, (uint64_t)n); gput(b, v, 4 * (size_t)n);
}
static void kv_i32s(struct gbuf *b, const char *k, const int32_t *v, int n) {
    gstr(b, k); gu32(b, GGUF_ARRAY); gu32(b, GGUF_I32); gu64(b, (uint64_t)n); gput(b, v, 4 * (size_t)n);
}

#endif
