/* gguf_write.h - streaming GGUF v3 writer: metadata and tensor descriptions are collected
 * first (kept in memory: they are small), then the header is written and the tensor data is
 * streamed tensor by tensor in any number of chunks, so files larger than RAM can be made.
 * Every value is serialised byte by byte in little-endian order (no struct writes). */
#ifndef KVC_GGUF_WRITE_H
#define KVC_GGUF_WRITE_H

#include "gguf.h"
#include "kvcodec.h"
#include <stddef.h>
#include <stdint.h>

struct gguf_writer;

/* Open path for writing (alignment 32, the GGUF default). */
kvc_status gguf_writer_create(const char *path, struct gguf_writer **out, kvc_error *err);
/* Close and free; when the file was not finished (an error or an early stop) it is removed. */
void gguf_writer_free(struct gguf_writer *w);

/* Metadata (before gguf_writer_begin_data). Keys must be unique. */
kvc_status gguf_writer_kv_u32(struct gguf_writer *w, const char *key, uint32_t v);
kvc_status gguf_writer_kv_i32(struct gguf_writer *w, const char *key, int32_t v);
kvc_status gguf_writer_kv_f32(struct gguf_writer *w, const char *key, float v);
kvc_status gguf_writer_kv_bool(struct gguf_writer *w, const char *key, int v);
kvc_status gguf_writer_kv_str(struct gguf_writer *w, const char *key, const char *s);
/* Arrays: n elements. Strings are given with their lengths (may hold any bytes). */
kvc_status gguf_writer_kv_arr_str(struct gguf_writer *w, const char *key, const char *const *s,
                                  const uint32_t *len, uint64_t n);
kvc_status gguf_writer_kv_arr_i32(struct gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
kvc_status gguf_writer_kv_arr_f32(struct gguf_writer *w, const char *key, const float *v, uint64_t n);
/* Copy one key/value of a parsed file (any type, arrays included). */
kvc_status gguf_writer_kv_copy(struct gguf_writer *w, const struct gguf_file *f, const struct gguf_kv *kv);

/* Describe a tensor: ne[0] is the contiguous dimension; type an enum kvc_type whose block
 * size divides ne[0]. Tensors are written in the order they were added. */
kvc_status gguf_writer_add_tensor(struct gguf_writer *w, const char *name, int n_dims,
                                  const uint64_t *ne, uint32_t type);

/* Write header, metadata and tensor descriptions; then stream data with write_data. */
kvc_status gguf_writer_begin_data(struct gguf_writer *w);
/* Append n bytes of tensor data: bytes fill the current tensor, padding between tensors is
 * inserted automatically; writing more than the tensors hold is an error. */
kvc_status gguf_writer_write_data(struct gguf_writer *w, const void *p, size_t n);
/* Check that every tensor got all its bytes, flush and close. */
kvc_status gguf_writer_finish(struct gguf_writer *w);
/* The error of the last failing call (one line naming the file). */
const kvc_error *gguf_writer_error(const struct gguf_writer *w);

#endif
