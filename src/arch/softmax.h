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

/* The same step with a cheaper exp, for value sums that round the weights to 8 bits anyway
 * (hdc's int8 sums: step tmax / 255): 2^y with y = (scale x - m_new) log2 e, y >= -126, as
 * 2^round(y) times a degree-3 polynomial in the rest (|rest| <= 1/2); y < -126 gives 0. Every
 * weight and the block's sum are within KVC_EXP_FAST_REL (relative) + 2^-126 (absolute) of
 * float64 exp; alpha is libm's. Needs scale > 0 (otherwise, and at the AVX2 level, it is
 * kvc_softmax_online). KVC_ISA_SCALAR runs the scalar reference of the same step
 * (kvc_exp_fast_ref per weight, the same fused y). */
#define KVC_EXP_FAST_REL 1e-4f
float kvc_softmax_online_fast(enum kvc_isa isa, float *x, int n, float scale, float *m, float *l);
float kvc_exp_fast_ref(float y); /* 2^y as above (0 below -126) */

#endif
