/* softmax.h - in-place scaled softmax over attention scores, x = softmax(scale * x), with
 * -INFINITY entries (masked by sparse codecs) giving weight 0. Scalar reference (libm expf)
 * and AVX2 / AVX-512 versions (polynomial exp, relative error < 2e-7). */
#ifndef KVC_SOFTMAX_H
#define KVC_SOFTMAX_H

#include "isa.h"

void kvc_softmax_f32(enum kvc_isa isa, float *x, int n, float scale);

#endif
