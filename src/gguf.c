/* gguf.c - GGUF v2/v3 parser. Everything read from the file is untrusted: each read is
 * bounds-checked by a cursor, counts are checked against the bytes left before anything is
 * allocated, and tensor extents are checked against the file size (overflow-safe). */
#include "gguf.h"
#include "types.h"
#include "util.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAX_STRING (1u << 24)   /* 16 MiB: far above any real key, name or token */
#define GGUF_MAX_NAME 256            /* tensor name bytes */
#define GGUF_DEFAULT_ALIGNMENT 32

static const size_t vtype_size[GGUF_NTYPES] = {
    [GGUF_U8] = 1, [GGUF_I8] = 1, [GGUF_U16] = 2, [GGUF_I16] = 2, [GGUF_U32] = 4,
    [GGUF_I32] = 4, [GGUF_F32] = 4, [GGUF_BOOL] = 1, [GGUF_STRING] = 0, [GGUF_ARRAY] = 0,
    [GGUF_U64] = 8, [GGUF_I64] = 8, [GGUF_F64] = 8,
};

const char *gguf_vtype_name(uint32_t t) {
    static const char *names[GGUF_NTYPES] = {"u8",  "i8",   "u16",    "i16",   "u32",
                                             "i32", "f32",  "bool",   "string", "array",
                                             "u64", "i64",  "f64"};
    return t < GGUF_NTYPES ? names[t] : "unknown";
}

/* A bounds-checked read cursor over the file. */
struct cur {
    const uint8_t *p;
    uint64_t size, off;
    const char *path;
    kvc_error *err;
};

static kvc_status cur_need(struct cur *c, uint64_t n, const char *what) {
    if (n > c->size - c->off)
        return kvc_fail(c->err, KVC_ERR_FORMAT,
                        "%s: %s: needs %llu bytes at offset %llu, file has %llu bytes",
                        c->path, what, (unsigned long long)n, (unsigned long long)c->off,
                        (unsigned long long)c->size);
    return KVC_OK;
}

static kvc_status rd_u32(struct cur *c, uint32_t *v, const char *what) {
    kvc_status st = cur_need(c, 4, what);
    if (st) return st;
    memcpy(v, c->p + c->off, 4);
    c->off += 4;
    return KVC_OK;
}

static kvc_status rd_u64(struct cur *c, uint64_t *v, const char *what) {
    kvc_status st = cur_need(c, 8, what);
    if (st) return st;
    memcpy(v, c->p + c->off, 8);
    c->off += 8;
    return KVC_OK;
}

static kvc_status rd_str(struct cur *c, struct gguf_str *s, uint64_t max, const char *what) {
    uint64_t n;
    kvc_status st = rd_u64(c, &n, what);
    if (st) return st;
    if (n > max)
        return kvc_fail(c->err, KVC_ERR_FORMAT, "%s: %s: string length %llu exceeds limit %llu",
                        c->path, what, (unsigned long long)n, (unsigned long long)max);
    if ((st = cur_need(c, n, what))) return st;
    s->p = (const char *)c->p + c->off;
    s->n = n;
    c->off += n;
    return KVC_OK;
}

int gguf_str_eq(struct gguf_str s, const char *z) {
    size_t n = strlen(z);
    return s.n == n && memcmp(s.p, z, n) == 0;
}

/* Print at most 60 chars of a file string, with non-printables as '?'. */
static const char *str_show(struct gguf_str s, char *buf, size_t cap) {
    size_t n = s.n < cap - 1 ? (size_t)s.n : cap - 1;
    if (n > 60) n = 60;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        buf[i] = (ch >= 32 && ch < 127) ? (char)ch : '?';
    }
    buf[n] = 0;
    return buf;
}

static kvc_status parse_value(struct cur *c, struct gguf_kv *kv, const char *key) {
    kvc_status st;
    char what[160];
    snprintf(what, sizeof what, "metadata '%s' value", key);
    if (kv->type >= GGUF_NTYPES)
        return kvc_fail(c->err, KVC_ERR_FORMAT, "%s: metadata '%s': value type %u is not a GGUF type (0..%d)",
                        c->path, key, kv->type, GGUF_NTYPES - 1);
    kv->data = c->p + c->off;
    if (kv->type == GGUF_STRING) {
        struct gguf_str s;
        return rd_str(c, &s, GGUF_MAX_STRING, what);
    }
    if (kv->type != GGUF_ARRAY) {
        if ((st = cur_need(c, vtype_size[kv->type], what))) return st;
        c->off += vtype_size[kv->type];
        return KVC_OK;
    }
    if ((st = rd_u32(c, &kv->arr_type, what))) return st;
    if ((st = rd_u64(c, &kv->arr_n, what))) return st;
    kv->data = c->p + c->off;
    if (kv->arr_type >= GGUF_NTYPES || kv->arr_type == GGUF_ARRAY)
        return kvc_fail(c->err, KVC_ERR_FORMAT,
                        "%s: metadata '%s': array element type %u is not supported (scalars or strings only)",
                        c->path, key, kv->arr_type);
    uint64_t left = c->size - c->off;
    if (kv->arr_type == GGUF_STRING) {
        /* each string takes at least 8 bytes: bound the count before allocating */
        if (kv->arr_n > left / 8)
            return kvc_fail(c->err, KVC_ERR_FORMAT,
                            "%s: metadata '%s': array of %llu strings cannot fit in the %llu bytes left",
                            c->path, key, (unsigned long long)kv->arr_n, (unsigned long long)left);
        kv->strs = calloc(kv->arr_n ? kv->arr_n : 1, sizeof *kv->strs);
        if (!kv->strs) return kvc_fail(c->err, KVC_ERR_NOMEM, "%s: metadata '%s': out of memory", c->path, key);
        for (uint64_t i = 0; i < kv->arr_n; i++)
            if ((st = rd_str(c, &kv->strs[i], GGUF_MAX_STRING, what))) return st;
        return KVC_OK;
    }
    uint64_t bytes;
    if (kvc_mul_overflow(kv->arr_n, vtype_size[kv->arr_type], &bytes) || bytes > left)
        return kvc_fail(c->err, KVC_ERR_FORMAT,
                        "%s: metadata '%s': array of %llu x %s needs more than the %llu bytes left",
                        c->path, key, (unsigned long long)kv->arr_n, gguf_vtype_name(kv->arr_type),
                        (unsigned long long)left);
    c->off += bytes;
    return KVC_OK;
}

/* Duplicate names: sort (name, index) pairs and compare neighbours, O(n log n), so that a
 * hostile file with millions of keys or tensors cannot make the check quadratic. The names are
 * struct gguf_str fields at byte offset `field` of n records of `stride` bytes. Returns 1 and
 * the indices of the first two occurrences of the name whose second occurrence comes first in
 * the file, 0 when all names differ, -1 when out of memory. */
struct name_ref {
    struct gguf_str s;
    uint64_t idx;
};

static int cmp_name_ref(const void *a, const void *b) {
    const struct name_ref *x = a, *y = b;
    if (x->s.n != y->s.n) return x->s.n < y->s.n ? -1 : 1;
    int r = x->s.n ? memcmp(x->s.p, y->s.p, (size_t)x->s.n) : 0;
    if (r) return r;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int find_duplicate(const void *recs, uint64_t n, size_t stride, size_t field, uint64_t *first,
                          uint64_t *second) {
    if (n < 2) return 0;
    struct name_ref *r = malloc((size_t)n * sizeof *r);
    if (!r) return -1;
    for (uint64_t i = 0; i < n; i++) {
        memcpy(&r[i].s, (const char *)recs + i * stride + field, sizeof r[i].s);
        r[i].idx = i;
    }
    qsort(r, (size_t)n, sizeof *r, cmp_name_ref);
    /* within a run of equal names the entries are in file order: the run's first two are the
     * first occurrence and the earliest repeat */
    int found = 0;
    uint64_t run = 0; /* index in r where the current run of equal names starts */
    for (uint64_t i = 1; i < n; i++) {
        int same = r[i].s.n == r[i - 1].s.n &&
                   (r[i].s.n == 0 || memcmp(r[i].s.p, r[i - 1].s.p, (size_t)r[i].s.n) == 0);
        if (!same) {
            run = i;
        } else if (i == run + 1 && (!found || r[i].idx < *second)) {
            *first = r[run].idx;
            *second = r[i].idx;
            found = 1;
        }
    }
    free(r);
    return found;
}

static int cmp_tensor_off(const void *a, const void *b) {
    const struct gguf_tensor *x = *(const struct gguf_tensor *const *)a;
    const struct gguf_tensor *y = *(const struct gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static kvc_status parse_tensors(struct gguf_file *f, struct cur *c) {
    kvc_status st;
    char nb[64], what[160];
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        struct gguf_tensor *t = &f->tensors[i];
        snprintf(what, sizeof what, "tensor %llu name", (unsigned long long)i);
        if ((st = rd_str(c, &t->name, GGUF_MAX_NAME, what))) return st;
        str_show(t->name, nb, sizeof nb);
        snprintf(what, sizeof what, "tensor %llu '%s' header", (unsigned long long)i, nb);
        if ((st = rd_u32(c, &t->n_dims, what))) return st;
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return kvc_fail(c->err, KVC_ERR_FORMAT, "%s: tensor '%s': n_dims %u outside 1..%d",
                            f->path, nb, t->n_dims, GGUF_MAX_DIMS);
        uint64_t nel = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if ((st = rd_u64(c, &t->ne[d], what))) return st;
            if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT64_MAX)
                return kvc_fail(c->err, KVC_ERR_FORMAT, "%s: tensor '%s': ne[%u] = %llu outside 1..2^63-1",
                                f->path, nb, d, (unsigned long long)t->ne[d]);
            if (kvc_mul_overflow(nel, t->ne[d], &nel) || nel > (uint64_t)INT64_MAX)
                return kvc_fail(c->err, KVC_ERR_FORMAT, "%s: tensor '%s': element count overflows 2^63",
                                f->path, nb);
        }
        if ((st = rd_u32(c, &t->type, what))) return st;
        const struct kvc_type_size *ti = kvc_type_info(t->type);
        if (!ti)
            return kvc_fail(c->err, KVC_ERR_FORMAT, "%s: tensor '%s': type %u is not a known GGUF tensor type",
                            f->path, nb, t->type);
        if (t->ne[0] % (uint64_t)ti->blck)
            return kvc_fail(c->err, KVC_ERR_FORMAT,
                            "%s: tensor '%s': ne[0] = %llu is not a multiple of the %s block size %d",
                            f->path, nb, (unsigned long long)t->ne[0], ti->name, ti->blck);
        if (kvc_mul_overflow(nel / (uint64_t)ti->blck, (uint64_t)ti->bytes, &t->nbytes))
            return kvc_fail(c->err, KVC_ERR_FORMAT, "%s: tensor '%s': byte size overflows", f->path, nb);
        if ((st = rd_u64(c, &t->offset, what))) return st;
    }
    {
        uint64_t j, i;
        int dup = find_duplicate(f->tensors, f->n_tensors, sizeof *f->tensors,
                                 offsetof(struct gguf_tensor, name), &j, &i);
        if (dup < 0) return kvc_fail(c->err, KVC_ERR_NOMEM, "%s: out of memory", f->path);
        if (dup)
            return kvc_fail(c->err, KVC_ERR_FORMAT, "%s: tensor '%s' appears twice (tensors %llu and %llu)",
                            f->path, str_show(f->tensors[i].name, nb, sizeof nb), (unsigned long long)j,
                            (unsigned long long)i);
    }
    /* the data section starts at the next multiple of the alignment */
    uint64_t a = f->alignment, start;
    if (kvc_add_overflow(c->off, a - 1, &start))
        return kvc_fail(c->err, KVC_ERR_FORMAT, "%s: data section offset overflows", f->path);
    start -= start % a;
    if (start > f->size && f->n_tensors > 0)
        return kvc_fail(c->err, KVC_ERR_FORMAT, "%s: data section starts at %llu, past the end of the file (%llu bytes)",
                        f->path, (unsigned long long)start, (unsigned long long)f->size);
    /* with no tensors the data section is empty: keep data_offset inside the file */
    f->data_offset = start <= f->size ? start : f->size;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        struct gguf_tensor *t = &f->tensors[i];
        str_show(t->name, nb, sizeof nb);
        uint64_t end, abs;
        if (t->offset % a)
            return kvc_fail(c->err, KVC_ERR_FORMAT, "%s: tensor '%s': offset %llu is not a multiple of the alignment %llu",
                            f->path, nb, (unsigned long long)t->offset, (unsigned long long)a);
        if (kvc_add_overflow(start, t->offset, &abs) || kvc_add_overflow(abs, t->nbytes, &end) || end > f->size)
            return kvc_fail(c->err, KVC_ERR_FORMAT,
                            "%s: tensor '%s': data [offset %llu + %llu bytes] ends past the end of the file "
                            "(data section: %llu bytes from file offset %llu)",
                            f->path, nb, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                            (unsigned long long)(f->size > start ? f->size - start : 0), (unsigned long long)start);
        t->data = f->base + abs;
    }
    /* tensors must not overlap */
    if (f->n_tensors > 1) {
        struct gguf_tensor **order = malloc(f->n_tensors * sizeof *order);
        if (!order) return kvc_fail(c->err, KVC_ERR_NOMEM, "%s: out of memory", f->path);
        for (uint64_t i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
        qsort(order, f->n_tensors, sizeof *order, cmp_tensor_off);
        for (uint64_t i = 1; i < f->n_tensors; i++) {
            const struct gguf_tensor *x = order[i - 1], *y = order[i];
            if (x->offset + x->nbytes > y->offset) { /* no overflow: both end inside the file */
                char nb2[64];
                str_show(x->name, nb, sizeof nb);
                str_show(y->name, nb2, sizeof nb2);
                st = kvc_fail(c->err, KVC_ERR_FORMAT,
                              "%s: tensor '%s' (offset %llu, %llu bytes) overlaps tensor '%s' (offset %llu): "
                              "sizes disagree with the data layout",
                              f->path, nb, (unsigned long long)x->offset, (unsigned long long)x->nbytes, nb2,
                              (unsigned long long)y->offset);
                free(order); /* after the message: x and y point into f->tensors, not order */
                return st;
            }
        }
        free(order);
    }
    return KVC_OK;
}

static kvc_status parse(struct gguf_file *f, int meta_only, kvc_error *err) {
    struct cur c = {f->base, f->size, 0, f->path, err};
    kvc_status st;
    char kb[64];
    if (f->size < 4 || memcmp(f->base, "GGUF", 4) != 0)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: magic: not a GGUF file (expected 'GGUF' in the first 4 bytes)", f->path);
    c.off = 4;
    if ((st = rd_u32(&c, &f->version, "header version"))) return st;
    if (f->version != 2 && f->version != 3)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: header version %u is not supported (2 or 3)", f->path, f->version);
    if ((st = rd_u64(&c, &f->n_tensors, "header n_tensors"))) return st;
    if ((st = rd_u64(&c, &f->n_kv, "header n_kv"))) return st;
    /* a kv takes >= 13 bytes, a tensor info >= 28: bound counts before allocating */
    uint64_t left = f->size - c.off;
    if (f->n_kv > left / 13)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: header n_kv = %llu cannot fit in the %llu bytes left (limit %llu)",
                        f->path, (unsigned long long)f->n_kv, (unsigned long long)left, (unsigned long long)(left / 13));
    if (f->n_tensors > left / 28)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: header n_tensors = %llu cannot fit in the %llu bytes left (limit %llu)",
                        f->path, (unsigned long long)f->n_tensors, (unsigned long long)left, (unsigned long long)(left / 28));
    f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors) return kvc_fail(err, KVC_ERR_NOMEM, "%s: out of memory", f->path);
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        struct gguf_kv *kv = &f->kv[i];
        char what[128];
        snprintf(what, sizeof what, "metadata %llu key", (unsigned long long)i);
        if ((st = rd_str(&c, &kv->key, 65535, what))) return st;
        str_show(kv->key, kb, sizeof kb);
        snprintf(what, sizeof what, "metadata '%s' type", kb);
        if ((st = rd_u32(&c, &kv->type, what))) return st;
        if ((st = parse_value(&c, kv, kb))) return st;
        if (gguf_str_eq(kv->key, "general.alignment")) {
            uint32_t a;
            if (kv->type != GGUF_U32)
                return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata 'general.alignment' has type %s, expected u32",
                                f->path, gguf_vtype_name(kv->type));
            memcpy(&a, kv->data, 4);
            if (a == 0 || (a & (a - 1)) || a > (1u << 20))
                return kvc_fail(err, KVC_ERR_FORMAT,
                                "%s: metadata 'general.alignment' = %u must be a power of two in 1..2^20",
                                f->path, a);
            f->alignment = a;
        }
    }
    {
        uint64_t j, i;
        int dup = find_duplicate(f->kv, f->n_kv, sizeof *f->kv, offsetof(struct gguf_kv, key), &j, &i);
        if (dup < 0) return kvc_fail(err, KVC_ERR_NOMEM, "%s: out of memory", f->path);
        if (dup)
            return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata key '%s' appears twice (entries %llu and %llu)",
                            f->path, str_show(f->kv[i].key, kb, sizeof kb), (unsigned long long)j,
                            (unsigned long long)i);
    }
    if (meta_only) { /* header and metadata only: the tensor infos are not read */
        f->n_tensors = 0;
        f->data_offset = f->size;
        return KVC_OK;
    }
    return parse_tensors(f, &c);
}

static kvc_status parse_buf(const void *buf, size_t size, const char *name, int meta_only,
                            struct gguf_file **out, kvc_error *err) {
    *out = NULL;
    struct gguf_file *f = calloc(1, sizeof *f);
    if (!f) return kvc_fail(err, KVC_ERR_NOMEM, "%s: out of memory", name ? name : "(buffer)");
    snprintf(f->path, sizeof f->path, "%s", name ? name : "(buffer)");
    f->base = buf;
    f->size = size;
    kvc_status st = parse(f, meta_only, err);
    if (st) {
        gguf_close(f);
        return st;
    }
    *out = f;
    return KVC_OK;
}

kvc_status gguf_parse(const void *buf, size_t size, const char *name, struct gguf_file **out,
                      kvc_error *err) {
    return parse_buf(buf, size, name, 0, out, err);
}

kvc_status gguf_parse_meta(const void *buf, size_t size, const char *name, struct gguf_file **out,
                           kvc_error *err) {
    return parse_buf(buf, size, name, 1, out, err);
}

#define GGUF_HUGE_PAGE ((size_t)2 << 20)

/* The whole file read into anonymous memory aligned to and advised for 2 MiB pages (the
 * weights then cost the decode's page walks a fifth of the TLB misses 4 KiB file pages do).
 * *alloc is the mapping's length, for munmap. */
static kvc_status read_whole(const char *path, int fd, size_t size, void **out, size_t *alloc,
                             kvc_error *err) {
    *out = NULL;
    size_t len = size + GGUF_HUGE_PAGE - 1;
    len -= len % GGUF_HUGE_PAGE;
    if (len < size) return kvc_fail(err, KVC_ERR_NOMEM, "%s: size: %zu bytes cannot be allocated", path, size);
    /* over-allocate by one huge page and trim, so the start is 2 MiB-aligned */
    uint8_t *raw = mmap(NULL, len + GGUF_HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return kvc_fail(err, KVC_ERR_NOMEM, "%s: cannot allocate %zu bytes to read it into: %s", path, size,
                        strerror(errno));
    size_t head = (GGUF_HUGE_PAGE - (uintptr_t)raw % GGUF_HUGE_PAGE) % GGUF_HUGE_PAGE;
    if (head) munmap(raw, head);
    munmap(raw + head + len, GGUF_HUGE_PAGE - head); /* head < GGUF_HUGE_PAGE: never empty */
    uint8_t *buf = raw + head;
#ifdef MADV_HUGEPAGE
    madvise(buf, len, MADV_HUGEPAGE); /* advice only: 4 KiB pages where the kernel has none */
#endif
    size_t done = 0;
    while (done < size) {
        size_t want = size - done < ((size_t)1 << 30) ? size - done : ((size_t)1 << 30);
        ssize_t n = read(fd, buf + done, want);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            munmap(buf, len);
            return kvc_fail(err, KVC_ERR_IO, "%s: read stopped at byte %zu of %zu: %s", path, done, size,
                            n < 0 ? strerror(errno) : "end of file");
        }
        done += (size_t)n;
    }
    mprotect(buf, len, PROT_READ);
    *out = buf;
    *alloc = len;
    return KVC_OK;
}

static kvc_status open_file(const char *path, int meta_only, int read_all, struct gguf_file **out,
                            kvc_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return kvc_fail(err, KVC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return kvc_fail(err, KVC_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: magic: file is empty (0 bytes)", path);
    }
    void *map;
    size_t map_len = (size_t)sb.st_size;
    if (read_all) {
        kvc_status st = read_whole(path, fd, (size_t)sb.st_size, &map, &map_len, err);
        close(fd);
        if (st) return st;
    } else {
        map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (map == MAP_FAILED) return kvc_fail(err, KVC_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    }
    kvc_status st = parse_buf(map, (size_t)sb.st_size, path, meta_only, out, err);
    if (st) {
        munmap(map, map_len);
        return st;
    }
    (*out)->mapped = 1;
    (*out)->map_len = map_len;
    return KVC_OK;
}

kvc_status gguf_open(const char *path, struct gguf_file **out, kvc_error *err) {
    return open_file(path, 0, 0, out, err);
}

kvc_status gguf_open_read(const char *path, struct gguf_file **out, kvc_error *err) {
    return open_file(path, 0, 1, out, err);
}

kvc_status gguf_open_meta(const char *path, struct gguf_file **out, kvc_error *err) {
    return open_file(path, 1, 0, out, err);
}

void gguf_close(struct gguf_file *f) {
    if (!f) return;
    if (f->kv)
        for (uint64_t i = 0; i < f->n_kv; i++) free(f->kv[i].strs);
    free(f->kv);
    free(f->tensors);
    if (f->mapped) munmap((void *)f->base, f->map_len);
    free(f);
}

const struct gguf_kv *gguf_find(const struct gguf_file *f, const char *key) {
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (gguf_str_eq(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name) {
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (gguf_str_eq(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

static kvc_status need_kv(const struct gguf_file *f, const char *key, const struct gguf_kv **kv,
                          kvc_error *err) {
    *kv = gguf_find(f, key);
    if (!*kv) return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata '%s' is missing", f->path, key);
    return KVC_OK;
}

/* Read a scalar numeric value of any type as double; 0 if not numeric. */
static int scalar_num(uint32_t type, const uint8_t *p, double *v) {
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
            float f32; uint64_t u64; int64_t i64; double f64; } u;
    if (type >= GGUF_NTYPES || vtype_size[type] == 0) return 0;
    memcpy(&u, p, vtype_size[type]);
    switch (type) {
    case GGUF_U8: *v = u.u8; break;
    case GGUF_I8: *v = u.i8; break;
    case GGUF_U16: *v = u.u16; break;
    case GGUF_I16: *v = u.i16; break;
    case GGUF_U32: *v = u.u32; break;
    case GGUF_I32: *v = u.i32; break;
    case GGUF_F32: *v = u.f32; break;
    case GGUF_BOOL: *v = u.u8 != 0; break;
    case GGUF_U64: *v = (double)u.u64; break;
    case GGUF_I64: *v = (double)u.i64; break;
    case GGUF_F64: *v = u.f64; break;
    default: return 0;
    }
    return 1;
}

double gguf_arr_num(const struct gguf_kv *kv, uint64_t i) {
    double v = 0;
    if (kv->type == GGUF_ARRAY && i < kv->arr_n && kv->arr_type < GGUF_NTYPES)
        scalar_num(kv->arr_type, kv->data + i * vtype_size[kv->arr_type], &v);
    return v;
}

kvc_status gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out, kvc_error *err) {
    const struct gguf_kv *kv;
    kvc_status st = need_kv(f, key, &kv, err);
    if (st) return st;
    double v;
    if (kv->type == GGUF_F32 || kv->type == GGUF_F64 || kv->type == GGUF_BOOL || !scalar_num(kv->type, kv->data, &v))
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata '%s' has type %s, expected an integer",
                        f->path, key, gguf_vtype_name(kv->type));
    if (v < 0 || v > 4294967295.0)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata '%s' = %.0f outside 0..2^32-1", f->path, key, v);
    *out = (uint32_t)v;
    return KVC_OK;
}

kvc_status gguf_get_f32(const struct gguf_file *f, const char *key, float *out, kvc_error *err) {
    const struct gguf_kv *kv;
    kvc_status st = need_kv(f, key, &kv, err);
    if (st) return st;
    double v;
    if (kv->type == GGUF_BOOL || !scalar_num(kv->type, kv->data, &v))
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata '%s' has type %s, expected a number",
                        f->path, key, gguf_vtype_name(kv->type));
    *out = (float)v;
    return KVC_OK;
}

kvc_status gguf_get_bool(const struct gguf_file *f, const char *key, int *out, kvc_error *err) {
    const struct gguf_kv *kv;
    kvc_status st = need_kv(f, key, &kv, err);
    if (st) return st;
    if (kv->type != GGUF_BOOL)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata '%s' has type %s, expected bool",
                        f->path, key, gguf_vtype_name(kv->type));
    *out = kv->data[0] != 0;
    return KVC_OK;
}

kvc_status gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out, kvc_error *err) {
    const struct gguf_kv *kv;
    kvc_status st = need_kv(f, key, &kv, err);
    if (st) return st;
    if (kv->type != GGUF_STRING)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata '%s' has type %s, expected string",
                        f->path, key, gguf_vtype_name(kv->type));
    uint64_t n;
    memcpy(&n, kv->data, 8);
    out->n = n;
    out->p = (const char *)kv->data + 8;
    return KVC_OK;
}

kvc_status gguf_get_arr(const struct gguf_file *f, const char *key, uint32_t elem_type,
                        const struct gguf_kv **out, kvc_error *err) {
    kvc_status st = need_kv(f, key, out, err);
    if (st) return st;
    if ((*out)->type != GGUF_ARRAY || (*out)->arr_type != elem_type)
        return kvc_fail(err, KVC_ERR_FORMAT, "%s: metadata '%s' has type %s%s%s, expected array of %s",
                        f->path, key, gguf_vtype_name((*out)->type),
                        (*out)->type == GGUF_ARRAY ? " of " : "",
                        (*out)->type == GGUF_ARRAY ? gguf_vtype_name((*out)->arr_type) : "",
                        gguf_vtype_name(elem_type));
    return KVC_OK;
}
