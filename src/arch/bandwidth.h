/* bandwidth.h - the summing kernel behind kvc_measure_read_bandwidth (kvcodec.h): exact
 * 64-bit wrap-around sum of n words, scalar reference and SIMD versions (same result). */
#ifndef KVC_BANDWIDTH_H
#define KVC_BANDWIDTH_H

#include "kvcodec.h"
#include "isa.h"

uint64_t kvc_sum_u64_scalar(const uint64_t *x, size_t n);
/* Best kernel at or below level isa that the CPU runs. */
uint64_t kvc_sum_u64(enum kvc_isa isa, const uint64_t *x, size_t n);

#endif
