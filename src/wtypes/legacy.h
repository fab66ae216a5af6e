/* legacy.h - helpers of the 32-element block types (Q4_1, Q5_0, Q5_1, IQ4_NL): the chunk
 * walk of their unpackers (8 blocks of 32 per 256-element chunk, blocks past the row zero). */
#ifndef KVC_WTYPES_LEGACY_H
#define KVC_WTYPES_LEGACY_H

#include "wtype.h"
#include "util.h"
#include <string.h>

/* Blocks [8 chunk, 8 chunk + valid) of a row of n elements; zero-fills out for the rest. */
static inline int legacy_chunk(int64_t chunk, int64_t n, struct kvc_unpacked *out) {
    const int64_t nb = n / 32, b0 = chunk * 8;
    const int valid = (int)(nb - b0 < 8 ? nb - b0 : 8);
    if (valid < 8) {
        memset(out->u + 32 * valid, 0, (size_t)(256 - 32 * valid));
        for (int g = 2 * valid; g < 16; g++) out->a[g] = out->b[g] = 0;
    }
    return valid;
}

#endif
