/* sample.c - next-token choice from logits (see sample.h): the same rule and random stream
 * as `kvcodec run`, so a request with the same seed samples the same tokens. */
#include "sample.h"

#include <math.h>
#include <stdlib.h>

static int cand_cmp(const void *a, const void *b) {
    float x = ((const struct serve_cand *)a)->p, y = ((const struct serve_cand *)b)->p;
    return x < y ? 1 : x > y ? -1 : ((const struct serve_cand *)a)->id - ((const struct serve_cand *)b)->id;
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int serve_sample(const float *logits, int nv, double temp, int top_k, double top_p, uint64_t *rng,
                 struct serve_cand *cand) {
    int best = 0;
    for (int i = 1; i < nv; i++)
        if (logits[i] > logits[best]) best = i;
    if (temp <= 0) return best;
    for (int i = 0; i < nv; i++) cand[i] = (struct serve_cand){i, (float)((logits[i] - logits[best]) / temp)};
    qsort(cand, (size_t)nv, sizeof *cand, cand_cmp);
    int n = top_k > 0 && top_k < nv ? top_k : nv;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += (cand[i].p = expf(cand[i].p));
    double cum = 0;
    int keep = n;
    for (int i = 0; i < n; i++) {
        cum += cand[i].p / sum;
        if (cum >= top_p) {
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
