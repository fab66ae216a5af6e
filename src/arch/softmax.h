/* softmax.h - in-place scaled softmax over attention scores, x = softmax(scale * x), with
 * -INFINITY entries (masked by sparse codecs) giving weight 0. Scalar reference (libm expf)
 * and AVX2 / AVX-512 versions (polynomial exp, relative error < 2e-7). */
#ifndef KVC_SOFTMAX_H
#define KVC_SOFTMAX_H

#include "isa.h"

void kvc_softmax_f32(enum kvc_isa isa, float *x, int n, float scale);

/* One block of an online (streaming) softmax. *m (running max of scaled scores, start
 * -INFINITY) and *l (running sum of exp(s - *m), start 0) carry over between blocks. x (n raw
 * scores) becomes exp(scale * x - m_new) in place, *m = m_new, *l is rescaled and the block's
 * sum added; returns alpha = exp(m_old - m_new), the factor by which every sum accumulated
 * with the earlier weights must be multiplied (1 when the max did not move). A block whose
 * scores are all -INFINITY before any finite one gives weights 0 and alpha 1. */
float kvc_softmax_online(enum kvc_isa isa, float *x, int n, float scale, float *m, float *l);

#endif
