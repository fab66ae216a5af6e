/* gguf_write.c - streaming GGUF v3 writer (see gguf_write.h): metadata is serialised into a
 * growing byte buffer as it is added, tensor infos are kept in an array with their offsets,
 * and the data section is streamed with the padding between tensors inserted here. */
#include "gguf_write.h"
#include "types.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GW_ALIGN 32

struct gw_tensor {
    char *name;
    int n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    uint32_t type;
    uint64_t offset, nbytes;
};

struct gguf_writer {
    char path[256];
    FILE *f;
    uint8_t *meta;          /* serialised key/values */
    size_t meta_n, meta_cap;
    uint64_t n_kv;
    char **keys;            /* for the uniqueness check */
    struct gw_tensor *t;
    uint64_t n_t, cap_t;
    uint64_t data_size;     /* bytes of the data section (with padding) */
    int stage;              /* 0 = collecting, 1 = streaming data, 2 = finished, -1 = failed */
    uint64_t cur, cur_done; /* tensor being streamed, bytes of it written */
    uint64_t written;       /* bytes of the data section written */
    kvc_error err;
};

static kvc_status gw_fail(struct gguf_writer *w, kvc_status st, const char *what) {
    w->stage = -1;
    return kvc_fail(&w->err, st, "%s: %s", w->path, what);
}

const kvc_error *gguf_writer_error(const struct gguf_writer *w) { return &w->err; }

kvc_status gguf_writer_create(const char *path, struct gguf_writer **out, kvc_error *err) {
    *out = NULL;
    struct gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return kvc_fail(err, KVC_ERR_NOMEM, "%s: out of memory", path);
    snprintf(w->path, sizeof w->path, "%s", path);
    w->f = fopen(path, "wb");
    if (!w->f) {
        free(w);
        return kvc_fail(err, KVC_ERR_IO, "%s: cannot open for writing", path);
    }
    *out = w;
    return KVC_OK;
}

void gguf_writer_free(struct gguf_writer *w) {
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        if (w->stage != 2) remove(w->path);
    }
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (uint64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w->meta);
    free(w);
}

/* ---- little-endian serialisation into the metadata buffer ---- */

static int meta_reserve(struct gguf_writer *w, size_t n) {
    if (w->meta_n + n <= w->meta_cap) return 0;
    size_t cap = w->meta_cap ? w->meta_cap : 4096;
    while (cap < w->meta_n + n) {
        if (cap > SIZE_MAX / 2) return -1;
        cap *= 2;
    }
    uint8_t *p = realloc(w->meta, cap);
    if (!p) return -1;
    w->meta = p;
    w->meta_cap = cap;
    return 0;
}

static void put_le(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static int meta_le(struct gguf_writer *w, uint64_t v, int n) {
    if (meta_reserve(w, (size_t)n)) return -1;
    put_le(w->meta + w->meta_n, v, n);
    w->meta_n += (size_t)n;
    return 0;
}

static int meta_bytes(struct gguf_writer *w, const void *p, size_t n) {
    if (meta_reserve(w, n)) return -1;
    if (n) memcpy(w->meta + w->meta_n, p, n);
    w->meta_n += n;
    return 0;
}

static int meta_str(struct gguf_writer *w, const char *s, uint64_t n) {
    return meta_le(w, n, 8) || meta_bytes(w, s, (size_t)n);
}

static uint32_t f32_bits(float v) {
    uint32_t b;
    memcpy(&b, &v, 4);
    return b;
}

/* Start a key: check the stage, the key's length and uniqueness, write key and type. */
static kvc_status kv_begin(struct gguf_writer *w, const char *key, uint32_t type) {
    if (w->stage != 0) return gw_fail(w, KVC_ERR_ARG, "metadata added after the data section started");
    size_t n = strlen(key);
    if (n == 0 || n > 65535) return gw_fail(w, KVC_ERR_ARG, "metadata key is empty or longer than 65535 bytes");
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0) {
            kvc_fail(&w->err, KVC_ERR_ARG, "%s: metadata key '%s' added twice", w->path, key);
            w->stage = -1;
            return KVC_ERR_ARG;
        }
    char **k = realloc(w->keys, sizeof *k * (size_t)(w->n_kv + 1));
    if (!k) return gw_fail(w, KVC_ERR_NOMEM, "out of memory");
    w->keys = k;
    if (!(k[w->n_kv] = strdup(key))) return gw_fail(w, KVC_ERR_NOMEM, "out of memory");
    w->n_kv++;
    if (meta_str(w, key, n) || meta_le(w, type, 4)) return gw_fail(w, KVC_ERR_NOMEM, "out of memory");
    return KVC_OK;
}

#define KV_SCALAR(fn, ctype, gtype, nbytes, conv)                                      \
    kvc_status fn(struct gguf_writer *w, const char *key, ctype v) {                   \
        kvc_status st = kv_begin(w, key, gtype);                                       \
        if (st) return st;                                                             \
        if (meta_le(w, (uint64_t)(conv), nbytes)) return gw_fail(w, KVC_ERR_NOMEM, "out of memory"); \
        return KVC_OK;                                                                 \
    }
KV_SCALAR(gguf_writer_kv_u32, uint32_t, GGUF_U32, 4, v)
KV_SCALAR(gguf_writer_kv_i32, int32_t, GGUF_I32, 4, (uint32_t)v)
KV_SCALAR(gguf_writer_kv_f32, float, GGUF_F32, 4, f32_bits(v))
KV_SCALAR(gguf_writer_kv_bool, int, GGUF_BOOL, 1, v ? 1 : 0)
#undef KV_SCALAR

kvc_status gguf_writer_kv_str(struct gguf_writer *w, const char *key, const char *s) {
    kvc_status st = kv_begin(w, key, GGUF_STRING);
    if (st) return st;
    if (meta_str(w, s, strlen(s))) return gw_fail(w, KVC_ERR_NOMEM, "out of memory");
    return KVC_OK;
}

static kvc_status arr_begin(struct gguf_writer *w, const char *key, uint32_t et, uint64_t n) {
    kvc_status st = kv_begin(w, key, GGUF_ARRAY);
    if (st) return st;
    if (meta_le(w, et, 4) || meta_le(w, n, 8)) return gw_fail(w, KVC_ERR_NOMEM, "out of memory");
    return KVC_OK;
}

kvc_status gguf_writer_kv_arr_str(struct gguf_writer *w, const char *key, const char *const *s,
                                  const uint32_t *len, uint64_t n) {
    kvc_status st = arr_begin(w, key, GGUF_STRING, n);
    for (uint64_t i = 0; !st && i < n; i++)
        if (meta_str(w, s[i], len[i])) st = gw_fail(w, KVC_ERR_NOMEM, "out of memory");
    return st;
}

kvc_status gguf_writer_kv_arr_i32(struct gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    kvc_status st = arr_begin(w, key, GGUF_I32, n);
    for (uint64_t i = 0; !st && i < n; i++)
        if (meta_le(w, (uint32_t)v[i], 4)) st = gw_fail(w, KVC_ERR_NOMEM, "out of memory");
    return st;
}

kvc_status gguf_writer_kv_arr_f32(struct gguf_writer *w, const char *key, const float *v, uint64_t n) {
    kvc_status st = arr_begin(w, key, GGUF_F32, n);
    for (uint64_t i = 0; !st && i < n; i++)
        if (meta_le(w, f32_bits(v[i]), 4)) st = gw_fail(w, KVC_ERR_NOMEM, "out of memory");
    return st;
}

/* Size in bytes of one scalar of a GGUF value type (0 for strings / arrays / unknown). */
static int vtype_size(uint32_t t) {
    switch (t) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0;
    }
}

kvc_status gguf_writer_kv_copy(struct gguf_writer *w, const struct gguf_file *f, const struct gguf_kv *kv) {
    char key[1024];
    if (kv->key.n >= sizeof key) return gw_fail(w, KVC_ERR_UNSUPPORTED, "metadata key longer than 1023 bytes");
    memcpy(key, kv->key.p, (size_t)kv->key.n);
    key[kv->key.n] = 0;
    (void)f;
    kvc_status st;
    if (kv->type == GGUF_STRING) {
        const uint8_t *d = kv->data; /* the value: u64 length, then the bytes (checked by the parser) */
        uint64_t n = 0;
        for (int i = 0; i < 8; i++) n |= (uint64_t)d[i] << (8 * i);
        if ((st = kv_begin(w, key, GGUF_STRING))) return st;
        if (meta_str(w, (const char *)d + 8, n)) return gw_fail(w, KVC_ERR_NOMEM, "out of memory");
        return KVC_OK;
    }
    if (kv->type == GGUF_ARRAY) {
        if ((st = arr_begin(w, key, kv->arr_type, kv->arr_n))) return st;
        if (kv->arr_type == GGUF_STRING) {
            for (uint64_t i = 0; i < kv->arr_n; i++)
                if (meta_str(w, kv->strs[i].p, kv->strs[i].n)) return gw_fail(w, KVC_ERR_NOMEM, "out of memory");
            return KVC_OK;
        }
        int es = vtype_size(kv->arr_type);
        if (!es) return gw_fail(w, KVC_ERR_UNSUPPORTED, "nested metadata arrays are not copied");
        if (meta_bytes(w, kv->data, (size_t)(kv->arr_n * (uint64_t)es))) return gw_fail(w, KVC_ERR_NOMEM, "out of memory");
        return KVC_OK;
    }
    int es = vtype_size(kv->type);
    if (!es) return gw_fail(w, KVC_ERR_UNSUPPORTED, "metadata value of unknown type");
    if ((st = kv_begin(w, key, kv->type))) return st;
    if (meta_bytes(w, kv->data, (size_t)es)) return gw_fail(w, KVC_ERR_NOMEM, "out of memory");
    return KVC_OK;
}

kvc_status gguf_writer_add_tensor(struct gguf_writer *w, const char *name, int n_dims,
                                  const uint64_t *ne, uint32_t type) {
    if (w->stage != 0) return gw_fail(w, KVC_ERR_ARG, "tensor added after the data section started");
    const struct kvc_type_size *ti = kvc_type_info(type);
    if (!ti) return gw_fail(w, KVC_ERR_ARG, "tensor of unknown type");
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || strlen(name) == 0 || strlen(name) > 63) {
        kvc_fail(&w->err, KVC_ERR_ARG, "%s: tensor '%s': name of 1..63 bytes and 1..4 dims required", w->path, name);
        w->stage = -1;
        return KVC_ERR_ARG;
    }
    uint64_t nel = 1;
    for (int d = 0; d < n_dims; d++)
        if (ne[d] == 0 || kvc_mul_overflow(nel, ne[d], &nel)) return gw_fail(w, KVC_ERR_ARG, "tensor with a zero or overflowing dimension");
    if (ne[0] % (uint64_t)ti->blck) {
        kvc_fail(&w->err, KVC_ERR_ARG, "%s: tensor '%s': row of %llu is not a multiple of %s's block %d", w->path,
                 name, (unsigned long long)ne[0], ti->name, ti->blck);
        w->stage = -1;
        return KVC_ERR_ARG;
    }
    if (w->n_t == w->cap_t) {
        uint64_t cap = w->cap_t ? w->cap_t * 2 : 64;
        struct gw_tensor *t = realloc(w->t, sizeof *t * (size_t)cap);
        if (!t) return gw_fail(w, KVC_ERR_NOMEM, "out of memory");
        w->t = t;
        w->cap_t = cap;
    }
    struct gw_tensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return gw_fail(w, KVC_ERR_NOMEM, "out of memory");
    w->n_t++;
    t->n_dims = n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->type = type;
    t->nbytes = nel / (uint64_t)ti->blck * (uint64_t)ti->bytes;
    t->offset = (w->data_size + GW_ALIGN - 1) / GW_ALIGN * GW_ALIGN;
    w->data_size = t->offset + t->nbytes;
    return KVC_OK;
}

static kvc_status out_bytes(struct gguf_writer *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->f) != n) return gw_fail(w, KVC_ERR_IO, "write failed (disk full?)");
    return KVC_OK;
}

static kvc_status out_zeros(struct gguf_writer *w, uint64_t n) {
    static const uint8_t z[GW_ALIGN];
    while (n) {
        size_t k = n < GW_ALIGN ? (size_t)n : GW_ALIGN;
        kvc_status st = out_bytes(w, z, k);
        if (st) return st;
        n -= k;
    }
    return KVC_OK;
}

kvc_status gguf_writer_begin_data(struct gguf_writer *w) {
    if (w->stage != 0) return gw_fail(w, KVC_ERR_ARG, "begin_data called twice or after an error");
    uint8_t h[24];
    memcpy(h, "GGUF", 4);
    put_le(h + 4, 3, 4);
    put_le(h + 8, w->n_t, 8);
    put_le(h + 16, w->n_kv, 8);
    kvc_status st = out_bytes(w, h, sizeof h);
    if (!st) st = out_bytes(w, w->meta, w->meta_n);
    uint64_t pos = sizeof h + w->meta_n;
    for (uint64_t i = 0; !st && i < w->n_t; i++) {
        const struct gw_tensor *t = &w->t[i];
        uint64_t nl = strlen(t->name);
        uint8_t b[8 + 4 + 8 * GGUF_MAX_DIMS + 4 + 8];
        size_t k = 0;
        put_le(b, nl, 8);
        if ((st = out_bytes(w, b, 8)) || (st = out_bytes(w, t->name, (size_t)nl))) break;
        put_le(b + k, (uint64_t)t->n_dims, 4); k += 4;
        for (int d = 0; d < t->n_dims; d++) { put_le(b + k, t->ne[d], 8); k += 8; }
        put_le(b + k, t->type, 4); k += 4;
        put_le(b + k, t->offset, 8); k += 8;
        st = out_bytes(w, b, k);
        pos += 8 + nl + k;
    }
    if (!st) st = out_zeros(w, (GW_ALIGN - pos % GW_ALIGN) % GW_ALIGN);
    if (st) return st;
    w->stage = 1;
    return KVC_OK;
}

kvc_status gguf_writer_write_data(struct gguf_writer *w, const void *p, size_t n) {
    if (w->stage != 1) return gw_fail(w, KVC_ERR_ARG, "tensor data written outside the data section");
    const uint8_t *b = p;
    while (n) {
        if (w->cur >= w->n_t) return gw_fail(w, KVC_ERR_ARG, "more tensor data than the tensors hold");
        const struct gw_tensor *t = &w->t[w->cur];
        if (w->cur_done == 0 && w->written < t->offset) { /* padding before this tensor */
            kvc_status st = out_zeros(w, t->offset - w->written);
            if (st) return st;
            w->written = t->offset;
        }
        uint64_t left = t->nbytes - w->cur_done;
        size_t k = n < left ? n : (size_t)left;
        kvc_status st = out_bytes(w, b, k);
        if (st) return st;
        b += k;
        n -= k;
        w->cur_done += k;
        w->written += k;
        if (w->cur_done == t->nbytes) { w->cur++; w->cur_done = 0; }
    }
    return KVC_OK;
}

kvc_status gguf_writer_finish(struct gguf_writer *w) {
    if (w->stage != 1) return gw_fail(w, KVC_ERR_ARG, "finish called before begin_data or after an error");
    if (w->cur != w->n_t) {
        kvc_fail(&w->err, KVC_ERR_ARG, "%s: tensor '%s' got %llu of its %llu bytes", w->path, w->t[w->cur].name,
                 (unsigned long long)w->cur_done, (unsigned long long)w->t[w->cur].nbytes);
        w->stage = -1;
        return KVC_ERR_ARG;
    }
    FILE *f = w->f;
    w->f = NULL;
    if (fflush(f) != 0 || ferror(f)) {
        fclose(f);
        remove(w->path);
        return gw_fail(w, KVC_ERR_IO, "write failed (disk full?)");
    }
    if (fclose(f) != 0) {
        remove(w->path);
        return gw_fail(w, KVC_ERR_IO, "close failed");
    }
    w->stage = 2;
    return KVC_OK;
}
