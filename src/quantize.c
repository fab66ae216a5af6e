/* quantize.c - re-quantize a GGUF's matrices (see quantize.h): each tensor is decoded one
 * chunk of rows at a time to f32 and encoded in its new type through the streaming writer;
 * the rule per tensor (target type, F16 fallback for partial blocks, F32 for 1-D) is
 * tensor_target(). */
#include "quantize.h"
#include "arch/kernels.h"
#include "gguf.h"
#include "gguf_write.h"
#include "types.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kvc_encode_row(uint32_t type, const float *x, int64_t n, void *out) {
    uint8_t *o = out;
    switch (type) {
    case KVC_TYPE_F32: memcpy(o, x, (size_t)n * 4); return 0;
    case KVC_TYPE_F16:
        for (int64_t i = 0; i < n; i++) { uint16_t h = kvc_f32_to_f16(x[i]); memcpy(o + 2 * i, &h, 2); }
        return 0;
    case KVC_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) { uint16_t h = kvc_f32_to_bf16(x[i]); memcpy(o + 2 * i, &h, 2); }
        return 0;
    case KVC_TYPE_Q8_0: kvc_quantize_row_q8_0(x, (block_q8_0 *)out, n, kvc_isa_best()); return 0;
    case KVC_TYPE_Q4_0: kvc_quantize_row_q4_0(x, (block_q4_0 *)out, n); return 0;
    default: return -1;
    }
}

int kvc_quant_type_parse(const char *name, uint32_t *type) {
    static const struct { const char *n; uint32_t t; } tab[] = {
        {"f32", KVC_TYPE_F32}, {"f16", KVC_TYPE_F16}, {"bf16", KVC_TYPE_BF16}, {"q8_0", KVC_TYPE_Q8_0}, {"q4_0", KVC_TYPE_Q4_0}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(name, tab[i].n)) { *type = tab[i].t; return 0; }
    return -1;
}

uint32_t kvc_llama_ftype(uint32_t t) {
    switch (t) {
    case KVC_TYPE_F32: return 0;
    case KVC_TYPE_F16: return 1;
    case KVC_TYPE_Q4_0: return 2;
    case KVC_TYPE_Q8_0: return 7;
    case KVC_TYPE_BF16: return 32;
    default: return 0;
    }
}

/* The type a tensor gets: 1-D (norms, biases, rope factors) F32; matrices the target, or F16
 * when their rows are not whole blocks of it. */
static uint32_t tensor_target(const struct gguf_tensor *t, uint32_t target) {
    if (t->n_dims < 2) return KVC_TYPE_F32;
    const struct kvc_type_size *ti = kvc_type_info(target);
    if (t->ne[0] % (uint64_t)ti->blck) return KVC_TYPE_F16;
    return target;
}

static int decodable(uint32_t t) {
    return t == KVC_TYPE_F32 || t == KVC_TYPE_F16 || t == KVC_TYPE_BF16 || t == KVC_TYPE_Q8_0 || t == KVC_TYPE_Q4_0;
}

kvc_status kvc_quantize_file(const char *in, const char *out, const struct kvc_quantize_params *p,
                             kvc_error *err) {
    float probe = 0;
    uint8_t probe_out[64];
    if (!kvc_type_info(p->type) || kvc_encode_row(p->type, &probe, 0, probe_out))
        return kvc_fail(err, KVC_ERR_ARG, "quantize: target type %u has no encoder (f32, f16, bf16, q8_0, q4_0)", p->type);
    struct gguf_file *f = NULL;
    kvc_status st = gguf_open(in, &f, err);
    if (st) return st;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        if (!decodable(t->type) || t->n_dims > 2) {
            const struct kvc_type_size *ti = kvc_type_info(t->type);
            st = kvc_fail(err, KVC_ERR_UNSUPPORTED, "%s: tensor '%.*s' of type %s with %u dims cannot be re-quantized "
                          "(f32, f16, bf16, q8_0, q4_0 sources of 1-2 dims)", in, (int)(t->name.n < 64 ? t->name.n : 64),
                          t->name.p, ti ? ti->name : "?", t->n_dims);
            gguf_close(f);
            return st;
        }
    }
    struct gguf_writer *w = NULL;
    if ((st = gguf_writer_create(out, &w, err))) { gguf_close(f); return st; }
    for (uint64_t i = 0; !st && i < f->n_kv; i++) {
        const struct gguf_kv *kv = &f->kv[i];
        if (gguf_str_eq(kv->key, "general.file_type") || gguf_str_eq(kv->key, "general.alignment")) continue;
        if (gguf_writer_kv_copy(w, f, kv)) st = (*err = *gguf_writer_error(w)).status;
    }
    if (!st && gguf_writer_kv_u32(w, "general.file_type", kvc_llama_ftype(p->type))) st = (*err = *gguf_writer_error(w)).status;
    uint64_t max_ne0 = 1;
    for (uint64_t i = 0; !st && i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.n < 127 ? t->name.n : 127), t->name.p);
        if (gguf_writer_add_tensor(w, name, (int)t->n_dims, t->ne, tensor_target(t, p->type)))
            st = (*err = *gguf_writer_error(w)).status;
        if (t->ne[0] > max_ne0) max_ne0 = t->ne[0];
    }
    if (!st && gguf_writer_begin_data(w)) st = (*err = *gguf_writer_error(w)).status;
    uint64_t chunk = ((uint64_t)1 << 20) / max_ne0 + 1; /* rows per chunk: ~4 MiB of floats */
    float *x = malloc(sizeof(float) * (size_t)(chunk * max_ne0));
    uint8_t *enc = malloc(sizeof(float) * (size_t)(chunk * max_ne0));
    if (!st && (!x || !enc)) st = kvc_fail(err, KVC_ERR_NOMEM, "quantize: out of memory");
    for (uint64_t i = 0; !st && i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        const struct kvc_type_size *si = kvc_type_info(t->type);
        uint32_t to = tensor_target(t, p->type);
        const struct kvc_type_size *ti = kvc_type_info(to);
        struct kvc_weight src = {.type = t->type, .n_in = (int64_t)t->ne[0], .n_out = (int64_t)t->ne[1],
                                 .row_bytes = (size_t)(t->ne[0] / (uint64_t)si->blck) * (size_t)si->bytes, .data = t->data};
        size_t ob = (size_t)(t->ne[0] / (uint64_t)ti->blck) * (size_t)ti->bytes;
        for (uint64_t r0 = 0; !st && r0 < t->ne[1]; r0 += chunk) {
            uint64_t nr = t->ne[1] - r0 < chunk ? t->ne[1] - r0 : chunk;
            for (uint64_t r = 0; r < nr; r++) {
                kvc_weight_row_to_f32(&src, (int64_t)(r0 + r), x);
                kvc_encode_row(to, x, (int64_t)t->ne[0], enc + r * ob);
            }
            if (gguf_writer_write_data(w, enc, ob * nr)) st = (*err = *gguf_writer_error(w)).status;
        }
        if (!st && p->progress) {
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(t->name.n < 127 ? t->name.n : 127), t->name.p);
            p->progress(p->ud, name, to, (int)i + 1, (int)f->n_tensors);
        }
    }
    if (!st && gguf_writer_finish(w)) st = (*err = *gguf_writer_error(w)).status;
    gguf_writer_free(w);
    free(x);
    free(enc);
    gguf_close(f);
    return st;
}
