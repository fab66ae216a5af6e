/* eigen.h - symmetric eigendecomposition for calibration (PCA bases): a thin wrapper over
 * LAPACKE_dsyevd (divide and conquer; falls back to dsyevr if it fails) that returns the
 * eigenvalues in descending order with a deterministic sign for each eigenvector. */
#ifndef KVC_EIGEN_H
#define KVC_EIGEN_H

#include "kvcodec.h"

/* A: n x n symmetric, row-major (only the upper triangle is read; A is not modified).
 * evals: n eigenvalues, largest first. evecs: n x n row-major, ROW k is the unit
 * eigenvector of evals[k]; its largest-magnitude component is positive (ties: the first).
 * KVC_ERR_ARG for n < 1 or non-finite input, KVC_ERR_NOMEM, KVC_ERR_INTERNAL when LAPACK
 * reports no convergence. err may be NULL. */
kvc_status kvc_eigh(int n, const double *A, double *evals, double *evecs, kvc_error *err);

#endif
