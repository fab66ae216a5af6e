/* types.c - the table of GGUF tensor types: name, block size, bytes per block (the sizes of
 * every GGUF type the loader may meet; computable ones also have a row in wtypes/table.c). */
#include "types.h"
#include <stddef.h>

static const struct kvc_type_size type_table[] = {
    [KVC_TYPE_F32] = {"f32", 1, 4, 1},      [KVC_TYPE_F16] = {"f16", 1, 2, 1},
    [KVC_TYPE_Q4_0] = {"q4_0", 32, 18, 1},  [KVC_TYPE_Q4_1] = {"q4_1", 32, 20, 1},
    [KVC_TYPE_Q5_0] = {"q5_0", 32, 22, 1},  [KVC_TYPE_Q5_1] = {"q5_1", 32, 24, 1},
    [KVC_TYPE_Q8_0] = {"q8_0", 32, 34, 1},  [KVC_TYPE_Q8_1] = {"q8_1", 32, 36, 0},
    [KVC_TYPE_Q2_K] = {"q2_K", 256, 84, 1}, [KVC_TYPE_Q3_K] = {"q3_K", 256, 110, 1},
    [KVC_TYPE_Q4_K] = {"q4_K", 256, 144, 1},[KVC_TYPE_Q5_K] = {"q5_K", 256, 176, 1},
    [KVC_TYPE_Q6_K] = {"q6_K", 256, 210, 1},[KVC_TYPE_Q8_K] = {"q8_K", 256, 292, 0},
    [KVC_TYPE_IQ4_NL] = {"iq4_nl", 32, 18, 1}, [KVC_TYPE_IQ4_XS] = {"iq4_xs", 256, 136, 1},
    [KVC_TYPE_I8] = {"i8", 1, 1, 0},        [KVC_TYPE_I16] = {"i16", 1, 2, 0},
    [KVC_TYPE_I32] = {"i32", 1, 4, 0},      [KVC_TYPE_I64] = {"i64", 1, 8, 0},
    [KVC_TYPE_F64] = {"f64", 1, 8, 0},      [KVC_TYPE_BF16] = {"bf16", 1, 2, 1},
};

const struct kvc_type_size *kvc_type_info(uint32_t type) {
    if (type >= sizeof type_table / sizeof type_table[0]) return NULL;
    if (type_table[type].name == NULL) return NULL;
    return &type_table[type];
}
