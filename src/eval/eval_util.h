/* eval_util.h - helpers shared by the evaluation runs in src/eval/: wall-clock seconds, log-softmax,
 * JSON numbers rounded to the digits the CLI reports (so a figure reads the same from
 * `kvcodec ... --json` and from the Python package). Not a public header. */
#ifndef KVC_EVAL_UTIL_H
#define KVC_EVAL_UTIL_H

#include <jansson.h>

double kvc_eval_now(void);
/* A JSON real rounded to `decimals` digits after the point. */
json_t *kvc_json_real(double x, int decimals);
/* Dump obj (one line, keys in insertion order), malloc'ed; obj is released. NULL on failure. */
char *kvc_json_finish(json_t *obj);
/* A JSON string, or null for NULL. */
json_t *kvc_json_str(const char *s);
/* log-softmax of x (n) into out (float64 sums); returns the argmax. */
int kvc_eval_log_softmax(const float *x, int n, float *out);
/* qsort comparator for doubles, ascending. */
int kvc_eval_cmp_dbl(const void *a, const void *b);

#endif
