/* eigen.c - symmetric eigendecomposition through LAPACKE (dsyevd, dsyevr as fallback),
 * sorted largest first, signs fixed so that results are reproducible across LAPACK builds. */
#include "eigen.h"
#include "../util.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

kvc_status kvc_eigh(int n, const double *A, double *evals, double *evecs, kvc_error *err) {
    if (n < 1 || n > 1 << 15 || !A || !evals || !evecs)
        return kvc_fail(err, KVC_ERR_ARG, "eigh: bad arguments (n = %d)", n);
    size_t nn = (size_t)n * (size_t)n;
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++)
            if (!isfinite(A[(size_t)i * n + j]))
                return kvc_fail(err, KVC_ERR_ARG, "eigh: matrix entry (%d, %d) is not finite", i, j);
    double *a = malloc(nn * sizeof *a), *w = malloc((size_t)n * sizeof *w);
    double *z = malloc(nn * sizeof *z);
    lapack_int *isuppz = malloc(2 * (size_t)n * sizeof *isuppz);
    if (!a || !w || !z || !isuppz) {
        free(a); free(w); free(z); free(isuppz);
        return kvc_fail(err, KVC_ERR_NOMEM, "eigh: out of memory for a %d x %d matrix", n, n);
    }
    memcpy(a, A, nn * sizeof *a);
    /* Upper triangle in row-major order; eigenvalues ascending, eigenvectors in COLUMNS. */
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', n, a, n, w);
    const double *vec = a;
    if (info != 0) { /* retry with the relatively robust representation driver */
        memcpy(a, A, nn * sizeof *a);
        lapack_int m = 0;
        info = LAPACKE_dsyevr(LAPACK_ROW_MAJOR, 'V', 'A', 'U', n, a, n, 0.0, 0.0, 0, 0, 0.0, &m,
                              w, z, n, isuppz);
        if (info != 0 || m != n) {
            free(a); free(w); free(z); free(isuppz);
            return kvc_fail(err, KVC_ERR_INTERNAL,
                            "eigh: LAPACK dsyevd and dsyevr failed on a %d x %d matrix (info %d)",
                            n, n, (int)info);
        }
        vec = z;
    }
    for (int k = 0; k < n; k++) {
        int src = n - 1 - k; /* descending */
        evals[k] = w[src];
        double *row = evecs + (size_t)k * n;
        int big = 0;
        for (int i = 0; i < n; i++) {
            row[i] = vec[(size_t)i * n + src];
            if (fabs(row[i]) > fabs(row[big])) big = i;
        }
        if (row[big] < 0)
            for (int i = 0; i < n; i++) row[i] = -row[i];
    }
    free(a); free(w); free(z); free(isuppz);
    return KVC_OK;
}
