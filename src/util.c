/* util.c - error filling, status strings and aligned allocation. */
#include "util.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

const char *kvc_status_str(kvc_status st) {
    switch (st) {
    case KVC_OK: return "ok";
    case KVC_ERR_IO: return "i/o error";
    case KVC_ERR_FORMAT: return "malformed file";
    case KVC_ERR_UNSUPPORTED: return "unsupported";
    case KVC_ERR_NOMEM: return "out of memory";
    case KVC_ERR_ARG: return "invalid argument";
    case KVC_ERR_RANGE: return "out of range";
    case KVC_ERR_CALIB: return "calibration error";
    case KVC_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

kvc_status kvc_fail(kvc_error *err, kvc_status st, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = st;
    }
    return st;
}

void *kvc_alloc_aligned(size_t n) {
    if (n == 0) n = 64;
    size_t r = (n + 63) & ~(size_t)63;
    if (r < n) return NULL;
    void *p = aligned_alloc(64, r);
    if (p) memset(p, 0, r);
    return p;
}

void kvc_free_aligned(void *p) { free(p); }

void *kvc_alloc_lazy(size_t n) {
    if (n == 0) n = 1;
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_NOHUGEPAGE
    madvise(p, n, MADV_NOHUGEPAGE); /* a huge page would take 2 MiB at the first write */
#endif
    return p;
}

void kvc_free_lazy(void *p, size_t n) {
    if (p) munmap(p, n ? n : 1);
}
