/* gguf.h - GGUF (versions 2 and 3) reader: memory-maps a file (or parses a buffer),
 * validates every count, length, type, dimension, offset and size against the file size
 * with overflow-checked arithmetic, and exposes metadata and tensors without copying. */
#ifndef KVC_GGUF_H
#define KVC_GGUF_H

#include "kvcodec.h"
#include <stddef.h>
#include <stdint.h>

enum gguf_vtype {
    GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4, GGUF_I32 = 5,
    GGUF_F32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_U64 = 10,
    GGUF_I64 = 11, GGUF_F64 = 12, GGUF_NTYPES = 13
};

/* A string inside the mapped file: not NUL-terminated. */
struct gguf_str {
    const char *p;
    uint64_t n;
};

struct gguf_kv {
    struct gguf_str key;
    uint32_t type;          /* enum gguf_vtype */
    uint32_t arr_type;      /* element type when type == GGUF_ARRAY */
    uint64_t arr_n;         /* element count when type == GGUF_ARRAY */
    const uint8_t *data;    /* value bytes (first element for arrays) */
    struct gguf_str *strs;  /* for arrays of strings: arr_n entries (allocated) */
};

#define GGUF_MAX_DIMS 4
struct gguf_tensor {
    struct gguf_str name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous dimension; unused dims are 1 */
    uint32_t type;              /* enum kvc_type */
    uint64_t offset;            /* relative to the data section */
    uint64_t nbytes;
    const void *data;
};

struct gguf_file {
    char path[256];
    const uint8_t *base;    /* mapped (or caller's) bytes */
    uint64_t size;
    int mapped;             /* base is this reader's mapping (of the file, or of anonymous
                               memory the file was read into) of map_len bytes */
    size_t map_len;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    struct gguf_kv *kv;
    struct gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset;   /* start of the tensor data section */
};

/* Map and parse a file. On error *out is NULL and err names the file, the field and the
 * limit. */
kvc_status gguf_open(const char *path, struct gguf_file **out, kvc_error *err);
/* Same, but the file is read into anonymous memory advised for 2 MiB pages instead of mapped
 * (llama.cpp's --no-mmap): the tensors are private to the process and decode walks fewer pages. */
kvc_status gguf_open_read(const char *path, struct gguf_file **out, kvc_error *err);
/* Parse a buffer that stays alive and unchanged while the result is used (fuzzing, tests). */
kvc_status gguf_parse(const void *buf, size_t size, const char *name, struct gguf_file **out,
                      kvc_error *err);
/* Header and metadata only (tensor infos skipped, n_tensors = 0): for readers of metadata
 * such as the tokenizer, whatever tensor types the file holds. */
kvc_status gguf_open_meta(const char *path, struct gguf_file **out, kvc_error *err);
kvc_status gguf_parse_meta(const void *buf, size_t size, const char *name, struct gguf_file **out,
                           kvc_error *err);
void gguf_close(struct gguf_file *f); /* NULL is a no-op */

const struct gguf_kv *gguf_find(const struct gguf_file *f, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name);
int gguf_str_eq(struct gguf_str s, const char *c);

/* Typed getters: KVC_ERR_FORMAT when the key is present with the wrong type or a value that
 * does not fit; KVC_ERR_FORMAT ("missing") when absent and required. Integer getters accept
 * any integer type whose value fits. */
kvc_status gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out,
                        kvc_error *err);
kvc_status gguf_get_f32(const struct gguf_file *f, const char *key, float *out,
                        kvc_error *err);
kvc_status gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out,
                        kvc_error *err);
kvc_status gguf_get_bool(const struct gguf_file *f, const char *key, int *out,
                         kvc_error *err);
/* Array of a given element type (n elements at *data); for strings use kv->strs. */
kvc_status gguf_get_arr(const struct gguf_file *f, const char *key, uint32_t elem_type,
                        const struct gguf_kv **out, kvc_error *err);
/* Read array element i as a number (any numeric type) */
double gguf_arr_num(const struct gguf_kv *kv, uint64_t i);

const char *gguf_vtype_name(uint32_t t);

#endif
