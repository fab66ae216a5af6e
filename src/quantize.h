/* quantize.h - re-quantize the matrices of a GGUF file into another weight type, streaming
 * tensor by tensor: 2-D weights go to the target type (rows that are not whole blocks of it
 * fall back to F16), 1-D tensors stay F32, metadata is copied (general.file_type updated). */
#ifndef KVC_QUANTIZE_H
#define KVC_QUANTIZE_H

#include "kvcodec.h"
#include <stdint.h>

/* Encode n floats as one row of type (F32, F16, BF16, Q8_0, Q4_0; n a multiple of the type's
 * block). Returns 0, or -1 for a type without an encoder. */
int kvc_encode_row(uint32_t type, const float *x, int64_t n, void *out);
/* Parse a target type name: f32, f16, bf16, q8_0, q4_0. 0 on success. */
int kvc_quant_type_parse(const char *name, uint32_t *type);
/* llama.cpp's general.file_type (LLAMA_FTYPE_*) for a pure-type file. */
uint32_t kvc_llama_ftype(uint32_t type);

struct kvc_quantize_params {
    uint32_t type;          /* target type of the 2-D weights */
    /* called after each tensor (may be NULL): name, its new type, tensors done / total */
    void (*progress)(void *ud, const char *tensor, uint32_t type, int done, int total);
    void *ud;
};

kvc_status kvc_quantize_file(const char *in, const char *out, const struct kvc_quantize_params *p,
                             kvc_error *err);

#endif
