/* sample.c - next-token choice from a row of logits (kvc_sample in kvcodec.h), used by
 * `kvcodec run` and the server: greedy at temperature 0, else temperature, top-k and top-p over
 * the candidates sorted by probability, drawn with a splitmix64 stream seeded by the caller. */
#include "kvcodec.h"

#include <math.h>
#include <stdlib.h>

struct kvc_sampling kvc_sampling_default(void) {
    struct kvc_sampling p = {.temp = 0.8, .top_k = 40, .top_p = 0.95};
    return p;
}

static int cand_cmp(const void *a, const void *b) {
    const struct kvc_token_prob *x = a, *y = b;
    return x->p < y->p ? 1 : x->p > y->p ? -1 : x->id - y->id;
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int kvc_sample(const float *logits, int nv, const struct kvc_sampling *sp, uint64_t *rng,
               struct kvc_token_prob *cand) {
    int best = 0;
    for (int i = 1; i < nv; i++)
        if (logits[i] > logits[best]) best = i;
    if (!(sp->temp > 0)) return best;
    for (int i = 0; i < nv; i++) cand[i] = (struct kvc_token_prob){i, (float)((logits[i] - logits[best]) / sp->temp)};
    qsort(cand, (size_t)nv, sizeof *cand, cand_cmp);
    const int n = sp->top_k > 0 && sp->top_k < nv ? sp->top_k : nv;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += (cand[i].p = expf(cand[i].p));
    double cum = 0;
    int keep = n;
    for (int i = 0; i < n; i++) { /* the smallest prefix whose probability reaches top_p */
        cum += cand[i].p / sum;
        if (cum >= sp->top_p) {
            keep = i + 1;
            break;
        }
    }
    double tot = 0;
    for (int i = 0; i < keep; i++) tot += cand[i].p;
    double r = (double)(rng_next(rng) >> 11) / 9007199254740992.0 * tot;
    for (int i = 0; i < keep; i++) {
        r -= cand[i].p;
        if (r < 0) return cand[i].id;
    }
    return cand[keep - 1].id;
}
