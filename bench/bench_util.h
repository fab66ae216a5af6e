/* bench_util.h - what the benchmark programs share: thread CPU clocks, the comparison behind
 * qsort of medians, and a seeded standard normal generator (xorshift64 + Box-Muller) so that
 * every program draws the same rows. Header-only (static functions), bench/ only. */
#ifndef KVC_BENCH_UTIL_H
#define KVC_BENCH_UTIL_H

#include <math.h>
#include <time.h>

static double clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}
/* this thread's CPU time: what a kernel costs, whatever else runs on the machine */
static double now_ns(void) { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static unsigned long long rng = 88172645463325252ull;
static float randn(void) {
    double u1, u2;
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    u1 = ((rng >> 11) + 1.0) / 9007199254740993.0;
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    u2 = (rng >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

#endif
