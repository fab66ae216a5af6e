/* sample.h - next-token choice from logits: greedy at temperature 0 (first maximum), else
 * temperature, top-k and top-p over the candidates sorted by probability (the rule of
 * `kvcodec run`). */
#ifndef KVC_SERVE_SAMPLE_H
#define KVC_SERVE_SAMPLE_H

#include <stdint.h>

struct serve_cand {
    int id;
    float p;
};
/* cand: scratch of n_vocab entries; rng: splitmix64 state. */
int serve_sample(const float *logits, int n_vocab, double temp, int top_k, double top_p, uint64_t *rng,
                 struct serve_cand *cand);

#endif
