/* test.h - a tiny test harness: CHECK macros that count and report failures, a
 * check_tensor-style diff of float arrays, access to ../shared, and a summary line that
 * tests/run.sh adds up. Under CI=true, a test that needs ../shared fails if it is missing. */
#ifndef KVC_TEST_H
#define KVC_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int t_pass, t_fail;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (cond) {                                                         \
            t_pass++;                                                       \
        } else {                                                            \
            t_fail++;                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fprintf(stderr, "\n");                                          \
        }                                                                   \
    } while (0)

/* Compare two float arrays: max |a-b| <= atol + rtol*|b| elementwise. Prints the worst. */
static inline int check_tensor(const char *what, const float *a, const float *b, long n,
                               double atol, double rtol) {
    double worst = 0;
    long wi = -1;
    int ok = 1;
    for (long i = 0; i < n; i++) {
        double diff = fabs((double)a[i] - (double)b[i]);
        double lim = atol + rtol * fabs((double)b[i]);
        if (!(diff <= lim)) ok = 0; /* catches NaN */
        if (!(diff <= worst)) { worst = diff; wi = i; }
    }
    if (ok) t_pass++;
    else {
        t_fail++;
        fprintf(stderr, "FAIL %s: max |diff| %.3g at %ld (%.6g vs %.6g), atol %.3g rtol %.3g\n",
                what, worst, wi, wi >= 0 ? a[wi] : 0.0, wi >= 0 ? b[wi] : 0.0, atol, rtol);
    }
    return ok;
}

/* Path of a file in ../shared (relative to the repository root, where tests run).
 * Returns NULL (and counts a failure under CI=true) when it is missing. */
static inline const char *shared_path(const char *rel) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ & 7];
    const char *root = getenv("KVC_SHARED");
    snprintf(p, 512, "%s/%s", root ? root : "../shared", rel);
    struct stat st;
    if (stat(p, &st) == 0) return p;
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
        t_fail++;
        fprintf(stderr, "FAIL: %s is missing (CI=true: shared data is required)\n", p);
    } else {
        fprintf(stderr, "SKIP: %s is missing (not under CI)\n", p);
    }
    return NULL;
}

static inline int test_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, t_pass, t_fail);
    return t_fail ? 1 : 0;
}

/* xorshift random numbers for reproducible random inputs. */
static inline unsigned long long t_rng_next(unsigned long long *s) {
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s;
}
static inline float t_randf(unsigned long long *s) { /* uniform in [-1, 1) */
    return (float)((double)(t_rng_next(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static inline float t_randn(unsigned long long *s) { /* standard normal (Box-Muller) */
    double u1 = ((double)(t_rng_next(s) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (double)(t_rng_next(s) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

#endif
