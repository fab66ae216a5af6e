/* eval_util.c - timing, JSON-number and scoring helpers (log-softmax, a double comparator) of
 * the evaluation runs (see eval_util.h), and kvc_free for the strings the library hands out. */
#include "eval_util.h"
#include "kvcodec.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

double kvc_eval_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

json_t *kvc_json_real(double x, int decimals) {
    if (!isfinite(x)) return json_null();
    double s = pow(10.0, decimals), r = round(x * s) / s;
    if (r == 0) r = 0; /* no -0.0 */
    return json_real(r);
}

json_t *kvc_json_str(const char *s) {
    json_t *j = s ? json_string(s) : NULL; /* NULL also for text that is not UTF-8 */
    return j ? j : json_null();
}

char *kvc_json_finish(json_t *obj) {
    if (!obj) return NULL;
    /* 15 significant digits: a value rounded to a few decimals prints as that decimal */
    char *s = json_dumps(obj, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(obj);
    return s;
}

void kvc_free(void *p) { free(p); }

int kvc_eval_log_softmax(const float *x, int n, float *out) {
    int am = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[am]) am = i;
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - x[am]);
    double lse = x[am] + log(s);
    for (int i = 0; i < n; i++) out[i] = (float)(x[i] - lse);
    return am;
}

int kvc_eval_cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
