/* kernels_avx512_q.h - template for the AVX-512 quantized micro-kernels reading GGUF blocks
 * directly (Q8_0 and Q4_0 weights against Q8_0 activations), included twice by
 * kernels_avx512.c: KVC_Q_VNNI = 1 uses vpdpbusd (AVX512-VNNI; used for single dot products),
 * KVC_Q_VNNI = 0 uses vpmaddubsw + vpmaddwd (dots and matmul tiles on CPUs without VNNI).
 * Each block pair's integer sums are exact; they are scaled by d_w * d_x per block and
 * summed in f32 lanes. */
#if KVC_Q_VNNI
#define QNAME(name) name##_vnni
#define QTARGET KVC_TARGET_AVX512VNNI
#else
#define QNAME(name) name##_plain
#define QTARGET KVC_TARGET_AVX512
#endif

/* One block pair (two = 0: the single last block) of NW Q8_0 weight rows x NX rows. */
INLINE QTARGET void QNAME(q8_step)(const int NW, const int NX, const int two, const char *w,
                                   size_t ws, const char *x, size_t xs, int64_t b,
                                   __m512 acc[4][NXMAX]) {
    const __m512i zero = _mm512_setzero_si512();
    __m512i wq[4], wk[4];
    __m512 dw[4];
#if !KVC_Q_VNNI
    __mmask64 wm[4];
    const __m512i ones16 = _mm512_set1_epi16(1);
#endif
    UNROLL for (int r = 0; r < NW; r++) {
        const block_q8_0 *p = (const block_q8_0 *)(w + r * ws) + b;
        wq[r] = q8_pair(p, two);
        dw[r] = scale2(p[0].d, two ? p[1].d : 0, two);
#if KVC_Q_VNNI
        /* -128 * (lane sums of w): cancels the +128 bias of the unsigned activations. */
        wk[r] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, _mm512_set1_epi8((char)0x80), wq[r]));
#else
        wk[r] = _mm512_abs_epi8(wq[r]);
        wm[r] = _mm512_movepi8_mask(wq[r]);
#endif
    }
    UNROLL for (int j = 0; j < NX; j++) {
        const block_q8_0 *p = (const block_q8_0 *)(x + j * xs) + b;
        __m512i xq = q8_pair(p, two);
        const __m512 dx = scale2(p[0].d, two ? p[1].d : 0, two);
#if KVC_Q_VNNI
        xq = _mm512_xor_si512(xq, _mm512_set1_epi8((char)0x80)); /* x + 128 as unsigned */
#endif
        UNROLL for (int r = 0; r < NW; r++) {
#if KVC_Q_VNNI
            __m512i s = _mm512_dpbusd_epi32(wk[r], xq, wq[r]);
#else
            /* |w| * (x with w's sign): unsigned x signed pairs, summed to int32 lanes */
            __m512i sx = _mm512_mask_sub_epi8(xq, wm[r], zero, xq);
            __m512i s = _mm512_madd_epi16(_mm512_maddubs_epi16(wk[r], sx), ones16);
#endif
            acc[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[r], dx), acc[r][j]);
        }
    }
}

/* One block pair of NW Q4_0 weight rows x NX rows: sum (q - 8) x = sum q x - 8 sum x. */
INLINE QTARGET void QNAME(q4_step)(const int NW, const int NX, const int two, const char *w,
                                   size_t ws, const char *x, size_t xs, int64_t b,
                                   __m512 acc[4][NXMAX]) {
    __m512i wq[4];
    __m512 dw[4];
#if KVC_Q_VNNI
    const __m512i zero = _mm512_setzero_si512();
#else
    const __m512i ones16 = _mm512_set1_epi16(1);
#endif
    UNROLL for (int r = 0; r < NW; r++) {
        const block_q4_0 *p = (const block_q4_0 *)(w + r * ws) + b;
        wq[r] = q4_pair(p, two);
        dw[r] = scale2(p[0].d, two ? p[1].d : 0, two);
    }
    UNROLL for (int j = 0; j < NX; j++) {
        const block_q8_0 *p = (const block_q8_0 *)(x + j * xs) + b;
        const __m512i xq = q8_pair(p, two);
        const __m512 dx = scale2(p[0].d, two ? p[1].d : 0, two);
#if KVC_Q_VNNI
        const __m512i xk = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(8), xq));
#else
        const __m512i xk = _mm512_maddubs_epi16(_mm512_set1_epi8(8), xq); /* 8 (x_2k + x_2k+1) */
#endif
        UNROLL for (int r = 0; r < NW; r++) {
#if KVC_Q_VNNI
            __m512i s = _mm512_dpbusd_epi32(xk, wq[r], xq);
#else
            __m512i s16 = _mm512_sub_epi16(_mm512_maddubs_epi16(wq[r], xq), xk);
            __m512i s = _mm512_madd_epi16(s16, ones16);
#endif
            acc[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[r], dx), acc[r][j]);
        }
    }
}

/* Micro-kernels over whole rows of nb blocks. */
INLINE QTARGET void QNAME(mk_q8)(const int NW, const int NX, const char *w, size_t ws,
                                 const char *x, size_t xs, int64_t nb, float *y, int64_t ldy) {
    __m512 acc[4][NXMAX];
    UNROLL for (int r = 0; r < NW; r++) UNROLL for (int j = 0; j < NX; j++)
        acc[r][j] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) QNAME(q8_step)(NW, NX, 1, w, ws, x, xs, b, acc);
    if (b < nb) QNAME(q8_step)(NW, NX, 0, w, ws, x, xs, b, acc);
    store_acc(NW, NX, acc, y, ldy);
}

INLINE QTARGET void QNAME(mk_q4)(const int NW, const int NX, const char *w, size_t ws,
                                 const char *x, size_t xs, int64_t nb, float *y, int64_t ldy) {
    __m512 acc[4][NXMAX];
    UNROLL for (int r = 0; r < NW; r++) UNROLL for (int j = 0; j < NX; j++)
        acc[r][j] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) QNAME(q4_step)(NW, NX, 1, w, ws, x, xs, b, acc);
    if (b < nb) QNAME(q4_step)(NW, NX, 0, w, ws, x, xs, b, acc);
    store_acc(NW, NX, acc, y, ldy);
}

/* Rows [r0, r1) of W against NX activation rows starting at t. */
INLINE QTARGET void QNAME(rows_q)(const int is_q4, const int NX, const struct kvc_tile *tl,
                                  int t, int64_t r0, int64_t r1) {
    const struct kvc_weight *w = tl->w;
    const char *x = (const char *)tl->x + (size_t)t * tl->x_stride;
    float *y = tl->y + t * tl->ldy;
    const char *wd = w->data;
    const size_t rb = w->row_bytes;
    const int64_t nb = w->n_in / 32;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        if (is_q4) QNAME(mk_q4)(4, NX, wd + r * rb, rb, x, tl->x_stride, nb, y + r, tl->ldy);
        else QNAME(mk_q8)(4, NX, wd + r * rb, rb, x, tl->x_stride, nb, y + r, tl->ldy);
    }
    for (; r < r1; r++) {
        if (is_q4) QNAME(mk_q4)(1, NX, wd + r * rb, rb, x, tl->x_stride, nb, y + r, tl->ldy);
        else QNAME(mk_q8)(1, NX, wd + r * rb, rb, x, tl->x_stride, nb, y + r, tl->ldy);
    }
}

INLINE QTARGET void QNAME(tile_q)(const int is_q4, const struct kvc_tile *tl, int t0, int t1,
                                  int64_t r0, int64_t r1) {
    int t = t0;
    for (; t + NXMAX <= t1; t += NXMAX) QNAME(rows_q)(is_q4, NXMAX, tl, t, r0, r1);
    switch (t1 - t) {
    case 3: QNAME(rows_q)(is_q4, 3, tl, t, r0, r1); break;
    case 2: QNAME(rows_q)(is_q4, 2, tl, t, r0, r1); break;
    case 1: QNAME(rows_q)(is_q4, 1, tl, t, r0, r1); break;
    default: break;
    }
}

static QTARGET void QNAME(tile_q8)(const struct kvc_tile *tl, int t0, int t1, int64_t r0,
                                   int64_t r1) {
    QNAME(tile_q)(0, tl, t0, t1, r0, r1);
}
static QTARGET void QNAME(tile_q4)(const struct kvc_tile *tl, int t0, int t1, int64_t r0,
                                   int64_t r1) {
    QNAME(tile_q)(1, tl, t0, t1, r0, r1);
}
static QTARGET float QNAME(dot_q8)(int64_t n, const void *w, const void *x) {
    float s;
    QNAME(mk_q8)(1, 1, w, 0, x, 0, n / 32, &s, 0);
    return s;
}
static QTARGET float QNAME(dot_q4)(int64_t n, const void *w, const void *x) {
    float s;
    QNAME(mk_q4)(1, 1, w, 0, x, 0, n / 32, &s, 0);
    return s;
}

#undef QNAME
#undef QTARGET
