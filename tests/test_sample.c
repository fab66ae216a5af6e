/* test_sample.c - kvc_sample, the sampler of `run` and the server: greedy takes the first
 * maximum and leaves the random state alone; sampled frequencies match a float64 softmax of
 * logits / temp; top-k and top-p keep exactly the candidates the rule names; a seed gives the
 * same draws again. */
#include "kvcodec.h"
#include "test.h"

#include <stdint.h>

#define NV 6
static const float logits[NV] = {1.0f, 2.0f, 3.0f, 0.5f, 3.0f - 1e-3f, -1.0f};

/* float64 softmax of logits / temp over the ids in keep (others 0). */
static void softmax_ref(double temp, const int *keep, double *p) {
    double mx = -1e300, sum = 0;
    for (int i = 0; i < NV; i++)
        if (keep[i] && logits[i] > mx) mx = logits[i];
    for (int i = 0; i < NV; i++) sum += (p[i] = keep[i] ? exp((logits[i] - mx) / temp) : 0);
    for (int i = 0; i < NV; i++) p[i] /= sum;
}

/* Draw n tokens; counts per id. */
static void draw(const struct kvc_sampling *sp, uint64_t seed, int n, int *count) {
    struct kvc_token_prob scr[NV];
    uint64_t rng = seed;
    memset(count, 0, sizeof(int) * NV);
    for (int i = 0; i < n; i++) {
        int t = kvc_sample(logits, NV, sp, &rng, scr);
        if (t >= 0 && t < NV) count[t]++;
    }
}

static void check_freq(const char *what, const int *count, int n, const double *p) {
    double worst = 0;
    for (int i = 0; i < NV; i++) {
        double d = fabs((double)count[i] / n - p[i]);
        if (p[i] == 0) CHECK(count[i] == 0, "%s: id %d drawn %d times, outside the kept set", what, i, count[i]);
        if (d > worst) worst = d;
    }
    /* 4 standard deviations of a frequency at n draws: sqrt(0.25 / n) * 4 */
    CHECK(worst <= 4 * sqrt(0.25 / n), "%s: frequency off by %.4f", what, worst);
}

int main(void) {
    struct kvc_token_prob scr[NV];
    struct kvc_sampling sp = kvc_sampling_default();
    CHECK(sp.temp == 0.8 && sp.top_k == 40 && sp.top_p == 0.95, "defaults %g %d %g", sp.temp, sp.top_k, sp.top_p);

    /* greedy: the first maximum; rng untouched */
    const float tie[4] = {0.0f, 2.0f, 2.0f, 1.0f};
    uint64_t rng = 42;
    sp = (struct kvc_sampling){0, 40, 0.95};
    CHECK(kvc_sample(tie, 4, &sp, &rng, scr) == 1 && rng == 42, "greedy on a tie: first maximum, rng %llu",
          (unsigned long long)rng);
    CHECK(kvc_sample(logits, NV, &sp, &rng, NULL) == 2, "greedy needs no scratch");

    /* top_k = 1 and top_p = 0 keep the best candidate only; each draw advances the state */
    sp = (struct kvc_sampling){1.0, 1, 1.0};
    CHECK(kvc_sample(logits, NV, &sp, &rng, scr) == 2 && rng != 42, "top_k 1 -> argmax");
    sp = (struct kvc_sampling){1.0, 0, 0.0};
    CHECK(kvc_sample(logits, NV, &sp, &rng, scr) == 2, "top_p 0 -> argmax");

    const int n = 20000;
    int count[NV], all[NV] = {1, 1, 1, 1, 1, 1};
    double p[NV];
    /* full distribution at two temperatures */
    sp = (struct kvc_sampling){1.0, 0, 1.0};
    draw(&sp, 7, n, count);
    softmax_ref(1.0, all, p);
    check_freq("temp 1", count, n, p);
    sp = (struct kvc_sampling){0.5, 0, 1.0};
    draw(&sp, 8, n, count);
    softmax_ref(0.5, all, p);
    check_freq("temp 0.5", count, n, p);
    /* top_k 3: ids 2, 4, 1 */
    sp = (struct kvc_sampling){1.0, 3, 1.0};
    draw(&sp, 9, n, count);
    softmax_ref(1.0, (const int[NV]){0, 1, 1, 0, 1, 0}, p);
    check_freq("top_k 3", count, n, p);
    /* top_p: the smallest prefix (by probability) whose mass reaches top_p, from the float64 rule */
    softmax_ref(1.0, all, p);
    int order[NV] = {2, 4, 1, 0, 3, 5}, keep[NV] = {0};
    double cum = 0, top_p = 0.75;
    for (int i = 0; i < NV; i++) {
        keep[order[i]] = 1;
        if ((cum += p[order[i]]) >= top_p) break;
    }
    sp = (struct kvc_sampling){1.0, 0, top_p};
    draw(&sp, 10, n, count);
    double pk[NV];
    softmax_ref(1.0, keep, pk);
    check_freq("top_p 0.75", count, n, pk);

    /* the same seed gives the same draws; another seed other draws */
    sp = (struct kvc_sampling){1.0, 0, 1.0};
    uint64_t r1 = 123, r2 = 123, r3 = 124;
    int same = 1, differ = 0;
    for (int i = 0; i < 64; i++) {
        int a = kvc_sample(logits, NV, &sp, &r1, scr), b = kvc_sample(logits, NV, &sp, &r2, scr);
        int c = kvc_sample(logits, NV, &sp, &r3, scr);
        same &= a == b;
        differ |= a != c;
    }
    CHECK(same && differ, "seeded draws: same seed same tokens (%d), another seed differs (%d)", same, differ);
    return test_summary("test_sample");
}
