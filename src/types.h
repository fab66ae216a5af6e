/* types.h - GGUF tensor types: ids as in the GGUF spec, block sizes and byte sizes, and
 * the block layouts of the quantized types kvcodec computes with (Q8_0, Q4_0). */
#ifndef KVC_TYPES_H
#define KVC_TYPES_H

#include <stdint.h>

enum kvc_type {
    KVC_TYPE_F32 = 0,
    KVC_TYPE_F16 = 1,
    KVC_TYPE_Q4_0 = 2,
    KVC_TYPE_Q4_1 = 3,
    KVC_TYPE_Q5_0 = 6,
    KVC_TYPE_Q5_1 = 7,
    KVC_TYPE_Q8_0 = 8,
    KVC_TYPE_Q8_1 = 9,
    KVC_TYPE_Q2_K = 10,
    KVC_TYPE_Q3_K = 11,
    KVC_TYPE_Q4_K = 12,
    KVC_TYPE_Q5_K = 13,
    KVC_TYPE_Q6_K = 14,
    KVC_TYPE_Q8_K = 15,
    KVC_TYPE_IQ4_NL = 20,
    KVC_TYPE_IQ4_XS = 23,
    KVC_TYPE_I8 = 24,
    KVC_TYPE_I16 = 25,
    KVC_TYPE_I32 = 26,
    KVC_TYPE_I64 = 27,
    KVC_TYPE_F64 = 28,
    KVC_TYPE_BF16 = 30,
};

struct kvc_type_size {
    const char *name;
    int blck;       /* elements per block */
    int bytes;      /* bytes per block */
    int computable; /* 1 when kvcodec has kernels for it (a row of wtypes/table.c) */
};
/* NULL when the id is not a known GGUF type. */
const struct kvc_type_size *kvc_type_info(uint32_t type);

#define QK8_0 32
#define QK4_0 32
/* Q8_0 block: x[i] = d * qs[i]. */
typedef struct {
    uint16_t d;       /* f16 scale */
    int8_t qs[QK8_0];
} block_q8_0;
/* Q4_0 block: x[j] = d * ((qs[j] & 15) - 8), x[j + 16] = d * ((qs[j] >> 4) - 8). */
typedef struct {
    uint16_t d;       /* f16 scale */
    uint8_t qs[QK4_0 / 2];
} block_q4_0;
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 layout");
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 layout");

#endif
