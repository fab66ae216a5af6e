/* quantize.h - weight types of quantized files: a scheme (one type for every matrix, or one of
 * llama.cpp's mixes q3_k_m / q4_k_m / q5_k_m) picks each tensor's type by llama.cpp's rules,
 * with its fallbacks for rows that are not whole blocks; and the re-quantization of a GGUF file,
 * streaming tensor by tensor (1-D tensors F32, metadata copied, general.file_type updated). */
#ifndef KVC_QUANTIZE_H
#define KVC_QUANTIZE_H

#include "kvcodec.h"
#include <stdint.h>

/* Encode n floats as one row of type (any type of the weight-type table: its reference
 * quantizer; n a multiple of the type's block). Returns 0, or -1 for a type without one. */
int kvc_encode_row(uint32_t type, const float *x, int64_t n, void *out);

enum kvc_quant_mix { KVC_MIX_PURE = 0, KVC_MIX_Q3_K_M, KVC_MIX_Q4_K_M, KVC_MIX_Q5_K_M };
struct kvc_quant_scheme {
    uint32_t type;          /* pure: every matrix's type; mixes: the base type (Q3_K, Q4_K, Q5_K) */
    int mix;                /* enum kvc_quant_mix */
};
/* Parse "q4_k_m", "q5_k_m", "q3_k_m" or a type name of the table (f16, q8_0, q4_0, q4_K,
 * q6_K, iq4_nl, ... case-insensitive). 0 on success. */
int kvc_quant_scheme_parse(const char *name, struct kvc_quant_scheme *out);
/* Names accepted by kvc_quant_scheme_parse, for help texts. */
const char *kvc_quant_scheme_names(void);
/* llama.cpp's general.file_type (LLAMA_FTYPE_*) of a scheme. */
uint32_t kvc_quant_ftype(const struct kvc_quant_scheme *s);
/* The type of one tensor: 1-D tensors F32; matrices by the scheme (mixes: llama.cpp's rules
 * for output / tied token_embd (Q6_K), attn_v, ffn_down, attn_output by layer), then
 * llama.cpp's fallback when ne0 is not whole blocks (Q2_K/Q3_K/IQ4_XS -> IQ4_NL, Q4_K ->
 * Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0; 32-element types -> F16). */
uint32_t kvc_quant_pick(const struct kvc_quant_scheme *s, const char *tensor, uint64_t ne0, int n_dims,
                        int n_layer, int has_output);

struct kvc_quantize_params {
    struct kvc_quant_scheme scheme; /* target of the 2-D weights */
    /* called after each tensor (may be NULL): name, its new type, tensors done / total */
    void (*progress)(void *ud, const char *tensor, uint32_t type, int done, int total);
    void *ud;
};

kvc_status kvc_quantize_file(const char *in, const char *out, const struct kvc_quantize_params *p,
                             kvc_error *err);

#endif
