/* pca.c - the `pca` KV codec: rows are stored as coefficients of (x - mean) in a calibrated
 * principal basis of their (layer, KV head) (kvcodec calibrate; --kv-calib FILE), and
 * attention runs in that latent space:
 *   keys (keys=post, default): the basis of post-RoPE keys; prepare_query computes P q and
 *     q.mean once, and score = (P q).c + q.mean, O(rank) per key;
 *   keys=pre: the basis of pre-RoPE keys; encode undoes RoPE (exactly: the rotation of the
 *     row's position, with the forward pass's own cos/sin) and projects; score rebuilds the
 *     pre-RoPE key mean + P^T c (O(d rank)), rotates it to the row's position and dots it
 *     with q, so scores are exact with respect to the stored coefficients (NEOX RoPE, qwen2:
 *     the vectors are kept in RoPE order, pca_impl.h, so the kernels are the same; Llama 3
 *     frequency factors and linear scaling: in the cos/sin table, as the forward pass);
 *   values: accumulate sums weighted coefficients (and the weights) in the latent space,
 *     finish projects once: out = P^T acc + (sum w) mean.
 * Storage of the coefficients:
 *   rank=R     the first R coefficients, coef=f32 | f16 (default) | q8 | q4 (q8 / q4: one
 *              f16 scale per row, symmetric);
 *   var=X      per head the smallest rank whose eigenvalues explain a share X of the variance
 *              (rows are sized for max=R, default d, because a row size cannot depend on the
 *              calibration);
 *   bits=B     transform coding: all d coefficients, coefficient k gets b_k >= 0 bits by
 *              reverse water-filling on the calibrated per-coefficient errors (sum b_k =
 *              round(B d)), a uniform quantizer whose step was fitted on calibration rows,
 *              the indices packed LSB first (row = ceil(B d / 8) bytes).
 * Kernels: scalar reference, AVX2 and AVX-512 (pca_avx512.c). Encoders give the same bytes at every level
 * (the projection adds the same products in the same order, without fused multiply-adds). */
#include "pca_impl.h"

#include <errno.h>

static const char *const fmt_name[] = {"f32", "f16", "q8", "q4", "bits"};

/* ------------------------------------------------------------------ parameters ---- */

static const char *pca_params = "rank=R | var=X[,max=R] | bits=B[,wide=F] | layers=B0/B1/...[,wide=F] | heads=B0/B1/... (per layer and "
                                "KV head, layer-major) (default bits=4); "
                                "coef=f16|q8|q4|f32 (rank/var); keys=post|pre|pair; dot=auto|bf16|f16|f32 (keys=pair; auto: bf16 on AMD with AVX512-BF16, else f16 with AVX512-FP16, else f32)";

static kvc_status bad_param(const char *key, const char *val, const char *why, kvc_error *err) {
    return kvc_fail(err, KVC_ERR_ARG, "KV codec 'pca': %s=%s: %s (parameters: %s)", key, val, why, pca_params);
}

static kvc_status parse_kv(void *vcfg, const char *key, const char *val, kvc_error *err) {
    struct pca_cfg *c = vcfg;
    char *end;
    errno = 0;
    if (strcmp(key, "rank") == 0 || strcmp(key, "max") == 0) {
        long v = strtol(val, &end, 10);
        if (errno || end == val || *end || v < 1 || v > PCA_MAX_D)
            return bad_param(key, val, "expected an integer in 1..1024", err);
        if (key[0] == 'r') {
            c->mode = PCA_RANK;
            c->rank = (int)v;
            c->n_mode++;
        } else {
            c->max = (int)v;
            c->max_set = 1;
        }
        return KVC_OK;
    }
    if (strcmp(key, "var") == 0) {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !(v > 0 && v <= 1))
            return bad_param(key, val, "expected a share of variance in (0, 1]", err);
        c->mode = PCA_VAR;
        c->var = v;
        c->n_mode++;
        return KVC_OK;
    }
    if (strcmp(key, "bits") == 0) {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !(v > 0 && v <= KVC_CALIB_MAX_BITS))
            return bad_param(key, val, "expected average bits per element in (0, 8]", err);
        c->mode = PCA_BITS;
        c->bits = v;
        c->n_mode++;
        return KVC_OK;
    }
    if (strcmp(key, "layers") == 0 || strcmp(key, "heads") == 0) { /* per-layer / per-head bits: B0/B1/... */
        const char *p = val, *what = key[0] == 'l' ? "expected bits per element in (0, 8] for each layer, '/'-separated"
                                                    : "expected bits per element in (0, 8] for each (layer, KV head), "
                                                      "layer-major, '/'-separated";
        c->n_layers = 0;
        c->per_head = key[0] == 'h';
        for (;;) {
            double v = strtod(p, &end);
            if (errno || end == p || !(v > 0 && v <= KVC_CALIB_MAX_BITS) || c->n_layers >= PCA_MAX_LAYERS)
                return kvc_fail(err, KVC_ERR_ARG, "KV codec 'pca': %s=%s: %s (at most %d values)", key, val, what,
                                PCA_MAX_LAYERS);
            c->lbits[c->n_layers++] = v;
            if (*end == 0) break;
            if (*end != '/') return bad_param(key, val, what, err);
            p = end + 1;
        }
        double s = 0;
        for (int i = 0; i < c->n_layers; i++) s += c->lbits[i];
        c->mode = PCA_BITS;
        c->bits = s / c->n_layers;
        c->n_mode++;
        return KVC_OK;
    }
    if (strcmp(key, "wide") == 0) {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !(v >= 0.25 && v <= 4))
            return bad_param(key, val, "expected a step factor in 0.25..4", err);
        c->wide = v;
        c->wide_set = 1;
        return KVC_OK;
    }
    if (strcmp(key, "coef") == 0) {
        int f = -1;
        for (int i = FMT_F32; i <= FMT_Q4; i++)
            if (strcmp(val, fmt_name[i]) == 0) f = i;
        if (f < 0) return bad_param(key, val, "expected f16, q8, q4 or f32", err);
        c->coef = f;
        c->coef_set = 1;
        return KVC_OK;
    }
    if (strcmp(key, "keys") == 0) {
        if (strcmp(val, "post") == 0) c->pre = 0;
        else if (strcmp(val, "pre") == 0) c->pre = 1;
        else if (strcmp(val, "pair") == 0) c->pre = 2;
        else return bad_param(key, val, "expected post, pre or pair", err);
        return KVC_OK;
    }
    if (strcmp(key, "dot") == 0) {
        if (strcmp(val, "bf16") == 0) c->dot = PCA_DOT_BF16;
        else if (strcmp(val, "f32") == 0) c->dot = PCA_DOT_F32;
        else if (strcmp(val, "f16") == 0) c->dot = PCA_DOT_F16;
        else if (strcmp(val, "auto") == 0) c->dot = PCA_DOT_AUTO;
        else return bad_param(key, val, "expected auto, bf16, f16 or f32", err);
        c->dot_set = 1;
        return KVC_OK;
    }
    return kvc_fail(err, KVC_ERR_ARG, "KV codec 'pca': unknown parameter '%s' (parameters: %s)", key, pca_params);
}

static kvc_status pca_parse(void *vcfg, const char *params, kvc_error *err) {
    struct pca_cfg *c = vcfg;
    memset(c, 0, sizeof *c);
    c->coef = FMT_F16;
    c->dot = PCA_DOT_AUTO;
    kvc_status st = kv_params_each("pca", params, c, parse_kv, err);
    if (st) return st;
    if (c->n_mode > 1)
        return kvc_fail(err, KVC_ERR_ARG, "KV codec 'pca:%s': give one of rank=, var=, bits= (parameters: %s)",
                        params, pca_params);
    if (c->n_mode == 0) {
        c->mode = PCA_BITS;
        c->bits = 4;
    }
    if (c->mode == PCA_BITS && c->coef_set)
        return kvc_fail(err, KVC_ERR_ARG,
                        "KV codec 'pca:%s': coef= applies to rank= and var= (bits= packs its own integer "
                        "coefficients)", params);
    if (c->wide_set && c->mode != PCA_BITS)
        return kvc_fail(err, KVC_ERR_ARG, "KV codec 'pca:%s': wide= applies to bits= only", params);
    if (c->dot_set && c->pre != 2)
        return kvc_fail(err, KVC_ERR_ARG, "KV codec 'pca:%s': dot= applies to keys=pair only", params);
    if (c->pre == 2 && c->mode != PCA_BITS)
        return kvc_fail(err, KVC_ERR_ARG, "KV codec 'pca:%s': keys=pair applies to bits= only", params);
    if (c->max_set && c->mode != PCA_VAR)
        return kvc_fail(err, KVC_ERR_ARG, "KV codec 'pca:%s': max= applies to var= only", params);
    return KVC_OK;
}

/* The configuration of "pca" without parameters (also used for a NULL cfg). */
static const struct pca_cfg pca_default = {.mode = PCA_BITS, .bits = 4, .coef = FMT_F16};

static int cfg_cap(const struct pca_cfg *c, int d) {
    if (c->mode == PCA_RANK) return c->rank;
    if (c->mode == PCA_VAR) return c->max ? c->max : d;
    return d;
}
static int cfg_total_bits(const struct pca_cfg *c, int d) { return (int)llround(c->bits * d); }
/* bits of value i of layers= / heads= (else bits=) */
static int cfg_layer_bits(const struct pca_cfg *c, int d, int i) {
    return c->n_layers > 0 && i >= 0 && i < c->n_layers ? (int)llround(c->lbits[i] * d) : cfg_total_bits(c, d);
}
/* bits of one row of a slot: layers= gives each layer its own, heads= each (layer, KV head) */
static int cfg_slot_bits(const struct pca_cfg *c, const struct kv_slot_info *info) {
    const int H = info->calib ? info->calib->id.n_head_kv : 0;
    return cfg_layer_bits(c, info->d, c->per_head ? info->layer * H + info->head : info->layer);
}

static kvc_status pca_check_dim(const void *vcfg, int d, kvc_error *err) {
    const struct pca_cfg *c = vcfg ? vcfg : &pca_default;
    if (d < 2 || d % 2 || d > PCA_MAX_D)
        return kvc_fail(err, KVC_ERR_UNSUPPORTED, "KV codec 'pca': head dim %d must be even and in 2..%d", d, PCA_MAX_D);
    if (c->mode != PCA_BITS && cfg_cap(c, d) > d)
        return kvc_fail(err, KVC_ERR_ARG, "KV codec 'pca': %s=%d exceeds the head dim %d",
                        c->mode == PCA_RANK ? "rank" : "max", cfg_cap(c, d), d);
    if (c->mode == PCA_BITS)
        for (int l = 0; l < (c->n_layers > 0 ? c->n_layers : 1); l++) {
            int t = cfg_layer_bits(c, d, l);
            if (t < 1 || t > KVC_CALIB_MAX_BITS * d)
                return kvc_fail(err, KVC_ERR_ARG, "KV codec 'pca': bits=%g gives %d bits per row of %d (1..%d)",
                                c->n_layers ? c->lbits[l] : c->bits, t, d, KVC_CALIB_MAX_BITS * d);
        }
    return KVC_OK;
}

static size_t fmt_row_bytes(int fmt, int cap) {
    switch (fmt) {
    case FMT_F32: return 4 * (size_t)cap;
    case FMT_F16: return 2 * (size_t)cap;
    case FMT_Q8: return 2 + (size_t)cap;
    case FMT_Q4: return 2 + ((size_t)cap + 1) / 2;
    }
    return 0;
}

static size_t pca_row_bytes(const void *vcfg, int d) {
    const struct pca_cfg *c = vcfg ? vcfg : &pca_default;
    if (pca_check_dim(c, d, NULL) != KVC_OK) return 0;
    if (c->mode == PCA_BITS && c->n_layers > 0) { /* layers=: the mean row, rounded up (kvc_codec_bits) */
        size_t s = 0;
        for (int l = 0; l < c->n_layers; l++) s += ((size_t)cfg_layer_bits(c, d, l) + 7) / 8;
        return (s + (size_t)c->n_layers - 1) / (size_t)c->n_layers;
    }
    if (c->mode == PCA_BITS) return ((size_t)cfg_total_bits(c, d) + 7) / 8;
    return fmt_row_bytes(c->coef, cfg_cap(c, d));
}

/* qp: d slots, the constant, then (bits rows) the int16 copy: scale + 64 int16 (see
 * pca_prepare_finish). */
static int pca_qp_floats(const void *cfg, int d) { (void)cfg; return d + 2 + 32 < 64 ? 64 : d + 2 + 32; }
static int pca_acc_floats(const void *cfg, int d) { (void)cfg; return d + 1; }

/* ------------------------------------------------------------------ state ---- */

static void pca_state_free(void *vs) {
    struct pca_state *s = vs;
    if (!s) return;
    kvc_free_aligned(s->mean);
    kvc_free_aligned(s->P);
    kvc_free_aligned(s->PT);
    kvc_free_aligned(s->ET);
    kvc_free_aligned(s->nb);
    kvc_free_aligned(s->step);
    kvc_free_aligned(s->off);
    kvc_free_aligned(s->boff);
    kvc_free_aligned(s->bsh);
    kvc_free_aligned(s->bmask);
    kvc_free_aligned(s->widx);
    kvc_free_aligned(s->wsh);
    kvc_free_aligned(s->wmask);
    kvc_free_aligned(s->rope_ff);
    pca_pair_free(s->pair);
    free(s);
}

/* A slot's row: layers= sizes each layer's rows on its own. */
static size_t pca_slot_row_bytes(const void *vcfg, const struct kv_slot_info *info) {
    const struct pca_cfg *c = vcfg ? vcfg : &pca_default;
    if (c->mode == PCA_BITS && c->n_layers > 0) return ((size_t)cfg_slot_bits(c, info) + 7) / 8;
    return pca_row_bytes(c, info->d);
}

static kvc_status pca_state_create(const void *vcfg, const struct kv_slot_info *info, void **out,
                                   kvc_error *err) {
    const struct pca_cfg *c = vcfg ? vcfg : &pca_default;
    *out = NULL;
    const struct kvc_calib *cal = info->calib;
    if (!cal)
        return kvc_fail(err, KVC_ERR_CALIB, "pca needs --kv-calib FILE (make one with kvcodec calibrate)");
    int d = info->d;
    if (cal->id.head_dim != d || info->layer < 0 || info->layer >= cal->id.n_layer || info->head < 0 ||
        info->head >= cal->id.n_head_kv)
        return kvc_fail(err, KVC_ERR_CALIB,
                        "pca: calibration %s has %d layers x %d KV heads of dim %d; the cache asks for layer %d, "
                        "head %d, dim %d", cal->path, cal->id.n_layer, cal->id.n_head_kv, cal->id.head_dim,
                        info->layer, info->head, d);
    int pre = c->pre && !info->is_value, pair = c->pre == 2 && !info->is_value;
    if (pre && cal->id.rope_base != info->rope_base)
        return kvc_fail(err, KVC_ERR_CALIB, "pca keys=pre: calibration rope base %g differs from the model's %g",
                        cal->id.rope_base, info->rope_base);
    int kind = info->is_value ? KVC_CALIB_V : pre ? KVC_CALIB_K_PRE : KVC_CALIB_K_POST;
    const struct kvc_calib_slot *cs = kvc_calib_slot_get(cal, info->layer, info->head, kind);

    struct pca_state *s = calloc(1, sizeof *s);
    if (!s) return kvc_fail(err, KVC_ERR_NOMEM, "pca: out of memory");
    s->d = d;
    s->pre = pre;
    s->neox = pre && !pair && info->rope_neox; /* keys=pair handles NEOX itself (pca_pair.c) */
    s->rope_base = info->rope_base;
    s->rope_scale = info->rope_freq_scale == 0 ? 1.0f : info->rope_freq_scale;
    if (pre && info->rope_freq_factors) { /* Llama 3: the model's factors (the forward pass's angles) */
        s->rope_ff = kvc_alloc_aligned((size_t)(d / 2) * sizeof(float));
        if (!s->rope_ff) {
            free(s);
            return kvc_fail(err, KVC_ERR_NOMEM, "pca: out of memory");
        }
        memcpy(s->rope_ff, info->rope_freq_factors, (size_t)(d / 2) * sizeof(float));
    }
    s->rope = pre ? kvc_calib_rope_for(cal, s->rope_ff, s->rope_scale) : cal->rope;
    s->fmt = c->mode == PCA_BITS ? FMT_BITS : c->coef;
    if (c->mode == PCA_BITS && c->n_layers > 0 && !c->per_head && c->n_layers != cal->id.n_layer) {
        pca_state_free(s);
        return kvc_fail(err, KVC_ERR_ARG, "KV codec 'pca': layers= lists %d values; the model has %d layers", c->n_layers,
                        cal->id.n_layer);
    }
    if (c->mode == PCA_BITS && c->per_head && c->n_layers != cal->id.n_layer * cal->id.n_head_kv) {
        pca_state_free(s);
        return kvc_fail(err, KVC_ERR_ARG, "KV codec 'pca': heads= lists %d values; the model has %d layers x %d KV heads",
                        c->n_layers, cal->id.n_layer, cal->id.n_head_kv);
    }
    const int slot_bits = c->mode == PCA_BITS ? cfg_slot_bits(c, info) : 0;
    s->rb = c->mode == PCA_BITS ? ((size_t)slot_bits + 7) / 8 : pca_row_bytes(c, d);
    uint8_t bits[PCA_MAX_D];
    int idx[PCA_MAX_D];
    /* Keys: steps 1.3x the calibrated (MSE-optimal) ones unless wide= says otherwise. Clipping
     * the rare large coefficients of a key changes which keys win the softmax, which the mean
     * squared error does not see; on held-out calibration text (calib.txt past the calibration
     * tokens) 1.15-1.3 halved the KL divergence of keys at 3 and 4 bits, values were best at 1. */
    float wide = (float)(c->wide_set ? c->wide : info->is_value ? 1.0 : pair ? PCA_PAIR_WIDE : PCA_KEY_WIDE);
    if (pair) {
        s->fmt = FMT_BITS;
        s->r = s->C = s->cap = d;
        s->rp = (d + 15) / 16 * 16;
        s->mean = kvc_alloc_aligned((size_t)d * sizeof(float));
        if (!s->mean) {
            pca_state_free(s);
            return kvc_fail(err, KVC_ERR_NOMEM, "pca: out of memory");
        }
        memcpy(s->mean, cs->mean, (size_t)d * sizeof(float));
        const int dot = c->dot != PCA_DOT_AUTO ? c->dot : pca_dot_auto();
        kvc_status st = pca_pair_init(s, cs, info, slot_bits, cal->max_bits, wide, dot, err);
        if (st) {
            pca_state_free(s);
            return st;
        }
        *out = s;
        return KVC_OK;
    }
    if (c->mode == PCA_BITS) {
        kvc_calib_alloc_bits(cs, d, cal->max_bits, slot_bits, bits);
        s->r = 0;
        for (int k = 0; k < d; k++)
            if (bits[k]) idx[s->r++] = k;
        s->C = d;
        s->cap = d;
    } else {
        s->cap = cfg_cap(c, d);
        s->r = s->cap;
        if (c->mode == PCA_VAR) {
            double cum[PCA_MAX_D];
            kvc_calib_explained(cs, d, cum);
            int r = 1;
            while (r < d && cum[r - 1] < c->var - 1e-12) r++;
            s->r = r < s->cap ? r : s->cap;
        }
        for (int k = 0; k < s->r; k++) idx[k] = k;
        s->C = s->cap;
    }
    int r = s->r, rp = (r + 15) / 16 * 16;
    if (rp == 0) rp = 16;
    s->rp = rp;
    s->mean = kvc_alloc_aligned((size_t)d * sizeof(float));
    s->P = kvc_alloc_aligned((size_t)(r ? r : 1) * d * sizeof(float));
    s->PT = kvc_alloc_aligned((size_t)d * rp * sizeof(float));
    s->ET = kvc_alloc_aligned((size_t)d * rp * sizeof(float));
    int ok = s->mean && s->P && s->PT && s->ET;
    if (ok && s->fmt == FMT_BITS) {
        s->nb = kvc_alloc_aligned((size_t)rp);
        s->step = kvc_alloc_aligned((size_t)rp * sizeof(float));
        s->off = kvc_alloc_aligned((size_t)rp * sizeof(float));
        s->boff = kvc_alloc_aligned((size_t)rp * 4);
        s->bsh = kvc_alloc_aligned((size_t)rp * 4);
        s->bmask = kvc_alloc_aligned((size_t)rp * 4);
        size_t rp32 = ((size_t)r + 31) / 32 * 32; /* the 16-bit tables are read 32 at a time */
        s->widx = kvc_alloc_aligned(rp32 * 2);
        s->wsh = kvc_alloc_aligned(rp32 * 2);
        s->wmask = kvc_alloc_aligned(rp32 * 2);
        ok = s->nb && s->step && s->off && s->boff && s->bsh && s->bmask && s->widx && s->wsh && s->wmask;
    }
    if (!ok) {
        pca_state_free(s);
        return kvc_fail(err, KVC_ERR_NOMEM, "pca: out of memory for the basis of layer %d head %d", info->layer,
                        info->head);
    }
    for (int i = 0; i < d; i++) s->mean[pca_rope_pos(s, i)] = cs->mean[i];
    /* Metric T (identity for plain PCA): coefficient k = basis_k . T (x - mean), so the encode
     * direction is T^T basis_k; x = mean + sum_k c_k T^-1 basis_k, so P holds T^-1 basis_k.
     * Natural dim i is stored at pca_rope_pos(i) (keys=pre on NEOX RoPE; else at i). */
    for (int j = 0; j < r; j++) {
        const float *bk = cs->basis + (size_t)idx[j] * d;
        for (int i = 0; i < d; i++) {
            double e = 0, p = 0;
            for (int t = 0; t < d; t++) {
                e += (double)cs->metric[(size_t)t * d + i] * bk[t];
                p += (double)cs->metric_inv[(size_t)i * d + t] * bk[t];
            }
            const int u = pca_rope_pos(s, i);
            s->P[(size_t)j * d + u] = (float)p;
            s->PT[(size_t)u * rp + j] = (float)p;
            s->ET[(size_t)u * rp + j] = (float)e;
        }
    }
    if (s->fmt == FMT_BITS) {
        int o = 0;
        for (int j = 0; j < r; j++) {
            int b = bits[idx[j]];
            s->nb[j] = (uint8_t)b;
            s->step[j] = cs->step[(size_t)b * d + idx[j]] * wide;
            s->off[j] = (0.5f - (float)(1 << (b - 1))) * s->step[j];
            s->boff[j] = o >> 3;
            s->bsh[j] = o & 7;
            s->bmask[j] = (1 << b) - 1;
            s->widx[j] = (uint16_t)(((o >> 3) >> 1) | (((o >> 3) & 1) << 5));
            s->wsh[j] = (uint16_t)(o & 7);
            s->wmask[j] = (uint16_t)((1 << b) - 1);
            o += b;
        }
    }
    *out = s;
    return KVC_OK;
}

/* ------------------------------------------------------------------ shared scalar parts ---- */

/* y = x - mean, with RoPE of position pos undone first for keys=pre (y in RoPE order). */
void pca_center_row(const struct pca_state *s, const float *x, int pos, float *y) {
    int d = s->d;
    if (s->pre) {
        float buf[PCA_MAX_D];
        const float *cs = rope_cs(s, pos, buf);
        for (int i = 0; i < d; i += 2) {
            const int ia = s->neox ? i / 2 : i, ib = s->neox ? i / 2 + d / 2 : i + 1; /* pair i / 2 */
            float c = cs[i], sn = cs[i + 1], x0 = x[ia], x1 = x[ib];
            float u0 = x0 * c + x1 * sn, u1 = x1 * c - x0 * sn;
            y[i] = u0 - s->mean[i];
            y[i + 1] = u1 - s->mean[i + 1];
        }
    } else {
        for (int i = 0; i < d; i++) y[i] = x[i] - s->mean[i];
    }
}

/* Quantize r coefficients c into one row (the same bytes at every ISA level). */
void pca_pack_row(const struct pca_state *s, const float *c, uint8_t *dst) {
    int r = s->r;
    memset(dst, 0, s->rb);
    switch (s->fmt) {
    case FMT_F32:
        memcpy(dst, c, (size_t)r * 4);
        break;
    case FMT_F16:
        for (int j = 0; j < r; j++) {
            uint16_t h = kvc_f32_to_f16(c[j]);
            memcpy(dst + 2 * j, &h, 2);
        }
        break;
    case FMT_Q8: {
        float amax = 0;
        for (int j = 0; j < r; j++) amax = fabsf(c[j]) > amax ? fabsf(c[j]) : amax;
        uint16_t h = kvc_f32_to_f16(amax / 127.0f);
        float sc = kvc_f16_to_f32(h), inv = sc > 0 ? 1.0f / sc : 0.0f;
        memcpy(dst, &h, 2);
        for (int j = 0; j < r; j++) {
            float v = roundf(c[j] * inv);
            if (v > 127) v = 127;
            if (v < -127) v = -127;
            dst[2 + j] = (uint8_t)(int8_t)v;
        }
        break;
    }
    case FMT_Q4: {
        float amax = 0, mx = 0;
        for (int j = 0; j < r; j++)
            if (fabsf(c[j]) > amax) { amax = fabsf(c[j]); mx = c[j]; }
        uint16_t h = kvc_f32_to_f16(mx / -8.0f);
        float sc = kvc_f16_to_f32(h), inv = sc != 0 ? 1.0f / sc : 0.0f;
        memcpy(dst, &h, 2);
        for (int j = 0; j < s->cap; j++) {
            int q = 8;
            if (j < r) {
                float v = floorf(c[j] * inv + 8.5f);
                q = v < 0 ? 0 : v > 15 ? 15 : (int)v;
            }
            dst[2 + j / 2] |= (uint8_t)(q << (4 * (j & 1)));
        }
        break;
    }
    case FMT_BITS: {
        int o = 0;
        for (int j = 0; j < r; j++) {
            int b = s->nb[j];
            uint32_t q = (uint32_t)kvc_quant_index(c[j], s->step[j], b);
            for (int t = 0; t < b; t++, o++)
                if (q >> t & 1) dst[o >> 3] |= (uint8_t)(1u << (o & 7));
        }
        break;
    }
    }
}

/* The stored coefficients of one row, as floats (scalar reference of every format). */
static void unpack_row(const struct pca_state *s, const uint8_t *row, float *c) {
    int r = s->r;
    switch (s->fmt) {
    case FMT_F32:
        memcpy(c, row, (size_t)r * 4);
        break;
    case FMT_F16:
        for (int j = 0; j < r; j++) c[j] = f16_at(row + 2 * j);
        break;
    case FMT_Q8: {
        float sc = f16_at(row);
        for (int j = 0; j < r; j++) c[j] = sc * (float)(int8_t)row[2 + j];
        break;
    }
    case FMT_Q4: {
        float sc = f16_at(row);
        for (int j = 0; j < r; j++) c[j] = sc * (float)((row[2 + j / 2] >> (4 * (j & 1)) & 15) - 8);
        break;
    }
    case FMT_BITS:
        for (int j = 0; j < r; j++) {
            int bo = s->boff[j];
            uint32_t w = row[bo] | ((size_t)bo + 1 < s->rb ? (uint32_t)row[bo + 1] << 8 : 0);
            int q = (int)((w >> s->bsh[j]) & (uint32_t)s->bmask[j]);
            c[j] = (float)q * s->step[j] + s->off[j];
        }
        break;
    }
}

/* Integer indices of a bits row (for the latent-space kernels): q[j]. */
static inline float bits_index(const struct pca_state *s, const uint8_t *row, int j) {
    int bo = s->boff[j];
    uint32_t w = row[bo] | ((size_t)bo + 1 < s->rb ? (uint32_t)row[bo + 1] << 8 : 0);
    return (float)((w >> s->bsh[j]) & (uint32_t)s->bmask[j]);
}

/* Per-row scale of the rank formats (1 for f32 / f16) and the coefficient data. */
static inline float row_scale(const struct pca_state *s, const uint8_t *row) {
    return s->fmt == FMT_Q8 || s->fmt == FMT_Q4 ? f16_at(row) : 1.0f;
}

/* ------------------------------------------------------------------ scalar kernels ---- */

static void project_scalar(const struct pca_state *s, const float *y, float *c) {
    int r = s->r, rp = s->rp, d = s->d;
    for (int j = 0; j < r; j++) c[j] = 0;
    for (int i = 0; i < d; i++) {
        const float *pt = s->ET + (size_t)i * rp;
        float yi = y[i];
        for (int j = 0; j < r; j++) c[j] = c[j] + pt[j] * yi;
    }
}

static void encode_scalar(const struct kv_slot *sl, const float *x, int pos0, int n, void *dst) {
    const struct pca_state *s = sl->state;
    if (s->pair) {
        pca_pair_encode(sl, x, pos0, n, dst);
        return;
    }
    float y[PCA_MAX_D], c[PCA_MAX_D];
    for (int i = 0; i < n; i++) {
        pca_center_row(s, x + (size_t)i * s->d, pos0 + i, y);
        project_scalar(s, y, c);
        pca_pack_row(s, c, (uint8_t *)dst + (size_t)i * s->rb);
    }
}

static void rotate_fwd(float *x, const float *cs, int d) {
    for (int i = 0; i < d; i += 2) {
        float x0 = x[i], x1 = x[i + 1];
        x[i] = x0 * cs[i] - x1 * cs[i + 1];
        x[i + 1] = x0 * cs[i + 1] + x1 * cs[i];
    }
}

static void decode_scalar(const struct kv_slot *sl, const void *src, int pos0, int n, float *y) {
    const struct pca_state *s = sl->state;
    if (s->pair) {
        pca_pair_decode(sl, src, pos0, n, y);
        return;
    }
    int d = s->d;
    float c[PCA_MAX_D], buf[PCA_MAX_D];
    for (int i = 0; i < n; i++) {
        float *o = y + (size_t)i * d;
        unpack_row(s, (const uint8_t *)src + (size_t)i * s->rb, c);
        for (int t = 0; t < d; t++) o[t] = s->mean[t];
        for (int j = 0; j < s->r; j++)
            for (int t = 0; t < d; t++) o[t] += c[j] * s->P[(size_t)j * d + t];
        if (s->pre) {
            rotate_fwd(o, rope_cs(s, pos0 + i, buf), d);
            pca_from_rope_order(s, o);
        }
    }
}

/* qp: post keys: [0, r) P q (times the step for bits), [r, C) zero, [C] the constant;
 * bits rows with r <= 64 also get, for the integer score (score_g_vnni), [C + 1] the scale
 * sq = max|u| / 32767 and from [C + 2] on 64 int16 round(u_j / sq) (zero past r);
 * pre keys: q itself, in RoPE order (pca_impl.h). */
void pca_prepare_finish(const struct pca_state *s, const float *q, float *qp) {
    double m = 0;
    for (int i = 0; i < s->d; i++) m += (double)q[i] * s->mean[i];
    if (s->fmt == FMT_BITS)
        for (int j = 0; j < s->r; j++) {
            m += (double)qp[j] * s->off[j];
            qp[j] *= s->step[j];
        }
    for (int j = s->r; j < s->C; j++) qp[j] = 0;
    qp[s->C] = (float)m;
    if (s->fmt == FMT_BITS && s->r <= 64) {
        float mx = 0;
        for (int j = 0; j < s->r; j++) mx = fmaxf(mx, fabsf(qp[j]));
        const float inv = mx > 0 ? 32767.0f / mx : 0.0f;
        int16_t t[64] = {0};
        for (int j = 0; j < s->r; j++) t[j] = (int16_t)lrintf(qp[j] * inv);
        qp[s->C + 1] = mx / 32767.0f;
        memcpy(qp + s->C + 2, t, sizeof t);
    }
}

static void prepare_scalar(const struct kv_slot *sl, const float *q, float *qp) {
    const struct pca_state *s = sl->state;
    if (s->pair) {
        pca_pair_prepare(sl, q, qp);
        return;
    }
    if (s->pre) {
        pca_to_rope_order(s, q, qp);
        return;
    }
    for (int j = 0; j < s->r; j++) {
        const float *p = s->P + (size_t)j * s->d;
        float a = 0;
        for (int i = 0; i < s->d; i++) a += p[i] * q[i];
        qp[j] = a;
    }
    pca_prepare_finish(s, q, qp);
}

/* Pre-RoPE key of coefficients c, rotated to pos, dotted with q. */
static float pre_dot_scalar(const struct pca_state *s, const float *c, const float *q, int pos) {
    int d = s->d;
    float k[PCA_MAX_D], buf[PCA_MAX_D];
    for (int t = 0; t < d; t++) k[t] = s->mean[t];
    for (int j = 0; j < s->r; j++) {
        const float *p = s->P + (size_t)j * d;
        for (int t = 0; t < d; t++) k[t] += c[j] * p[t];
    }
    const float *cs = rope_cs(s, pos, buf);
    float a = 0;
    for (int t = 0; t < d; t += 2) {
        float k0 = k[t] * cs[t] - k[t + 1] * cs[t + 1];
        float k1 = k[t] * cs[t + 1] + k[t + 1] * cs[t];
        a += q[t] * k0 + q[t + 1] * k1;
    }
    return a;
}

static void score_scalar(const struct kv_slot *sl, const float *qp, const void *keys, int pos0, int n,
                         float *out) {
    const struct pca_state *s = sl->state;
    if (s->pair) {
        pca_pair_score_scalar(sl, qp, keys, pos0, n, out);
        return;
    }
    float c[PCA_MAX_D];
    for (int i = 0; i < n; i++) {
        const uint8_t *row = (const uint8_t *)keys + (size_t)i * s->rb;
        if (s->pre) {
            unpack_row(s, row, c);
            out[i] = pre_dot_scalar(s, c, qp, pos0 + i);
            continue;
        }
        float a = 0;
        if (s->fmt == FMT_BITS) {
            for (int j = 0; j < s->r; j++) a += qp[j] * bits_index(s, row, j);
        } else {
            unpack_row(s, row, c); /* q8 / q4 include the row scale */
            for (int j = 0; j < s->r; j++) a += qp[j] * c[j];
        }
        out[i] = a + qp[s->C];
    }
}

static void accumulate_scalar(const struct kv_slot *sl, const float *w, const void *vals, int pos0, int n,
                              float *acc) {
    (void)pos0;
    const struct pca_state *s = sl->state;
    float c[PCA_MAX_D];
    float ws = 0;
    for (int i = 0; i < n; i++) {
        const uint8_t *row = (const uint8_t *)vals + (size_t)i * s->rb;
        ws += w[i];
        if (s->fmt == FMT_BITS) {
            for (int j = 0; j < s->r; j++) acc[j] += w[i] * bits_index(s, row, j);
        } else {
            unpack_row(s, row, c);
            for (int j = 0; j < s->r; j++) acc[j] += w[i] * c[j];
        }
    }
    acc[s->C] += ws;
}

/* Latent coefficients of the weighted sum (bits: indices -> values). */
void pca_finish_coefs(const struct pca_state *s, const float *acc, float *c) {
    float W = acc[s->C];
    for (int j = 0; j < s->r; j++) c[j] = s->fmt == FMT_BITS ? acc[j] * s->step[j] + W * s->off[j] : acc[j];
}

static void finish_scalar(const struct kv_slot *sl, const float *acc, float *out) {
    const struct pca_state *s = sl->state;
    int d = s->d;
    float c[PCA_MAX_D], W = acc[s->C];
    pca_finish_coefs(s, acc, c);
    for (int t = 0; t < d; t++) out[t] = W * s->mean[t];
    for (int j = 0; j < s->r; j++) {
        const float *p = s->P + (size_t)j * d;
        for (int t = 0; t < d; t++) out[t] += c[j] * p[t];
    }
}

/* ------------------------------------------------------------------ AVX2 ---- */

/* 8 coefficients j0.. of a row as floats (index values for bits; without the q8 / q4 row
 * scale). The row must have 32 readable bytes past its end (callers copy the last row of a
 * call into a padded buffer). Lanes at or beyond r are zero. */
KVC_TARGET_AVX2 static inline __attribute__((always_inline)) __m256 dec256(const struct pca_state *s, const uint8_t *row, int fmt, int j0) {
    int rem = s->r - j0;
    __m256 v;
    switch (fmt) {
    case FMT_F32: v = _mm256_loadu_ps((const float *)row + j0); break;
    case FMT_F16: v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * j0))); break;
    case FMT_Q8: v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(row + 2 + j0)))); break;
    case FMT_Q4: {
        uint32_t u;
        memcpy(&u, row + 2 + j0 / 2, 4);
        __m128i x = _mm_cvtsi32_si128((int)u), m = _mm_set1_epi8(15);
        __m128i il = _mm_unpacklo_epi8(_mm_and_si128(x, m), _mm_and_si128(_mm_srli_epi16(x, 4), m));
        v = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(il), _mm256_set1_epi32(8)));
        break;
    }
    default: { /* FMT_BITS */
        __m256i g = _mm256_i32gather_epi32((const int *)row, _mm256_loadu_si256((const __m256i *)(s->boff + j0)), 1);
        g = _mm256_srlv_epi32(g, _mm256_loadu_si256((const __m256i *)(s->bsh + j0)));
        g = _mm256_and_si256(g, _mm256_loadu_si256((const __m256i *)(s->bmask + j0)));
        v = _mm256_cvtepi32_ps(g);
        break;
    }
    }
    if (rem < 8) v = _mm256_and_ps(v, _mm256_castsi256_ps(kv256_mask8(rem)));
    return v;
}

KVC_TARGET_AVX2 static inline void project_avx2(const struct pca_state *s, const float *y, float *c) {
    int rp = s->rp, d = s->d;
    for (int j0 = 0; j0 < rp; j0 += 8) {
        __m256 a = _mm256_setzero_ps();
        for (int i = 0; i < d; i++) /* mul then add, as the scalar code: identical bytes */
            a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(s->ET + (size_t)i * rp + j0), _mm256_set1_ps(y[i])));
        _mm256_storeu_ps(c + j0, a);
    }
}

KVC_TARGET_AVX2 static void encode_avx2(const struct kv_slot *sl, const float *x, int pos0, int n, void *dst) {
    const struct pca_state *s = sl->state;
    if (s->pair) {
        pca_pair_encode(sl, x, pos0, n, dst);
        return;
    }
    float y[PCA_MAX_D], c[PCA_MAX_D + 16];
    for (int i = 0; i < n; i++) {
        pca_center_row(s, x + (size_t)i * s->d, pos0 + i, y);
        project_avx2(s, y, c);
        pca_pack_row(s, c, (uint8_t *)dst + (size_t)i * s->rb);
    }
}

KVC_TARGET_AVX2 static inline float hsum256(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

KVC_TARGET_AVX2 static void prepare_avx2(const struct kv_slot *sl, const float *q, float *qp) {
    const struct pca_state *s = sl->state;
    if (s->pair) {
        pca_pair_prepare(sl, q, qp);
        return;
    }
    if (s->pre) {
        pca_to_rope_order(s, q, qp);
        return;
    }
    int rp = s->rp, d = s->d;
    float tmp[PCA_MAX_D + 16];
    for (int j0 = 0; j0 < rp; j0 += 8) {
        __m256 a = _mm256_setzero_ps();
        for (int i = 0; i < d; i++)
            a = _mm256_fmadd_ps(_mm256_loadu_ps(s->PT + (size_t)i * rp + j0), _mm256_set1_ps(q[i]), a);
        _mm256_storeu_ps(tmp + j0, a);
    }
    memcpy(qp, tmp, (size_t)s->r * sizeof(float));
    pca_prepare_finish(s, q, qp);
}

/* Rebuild the pre-RoPE key of coefficients c, rotate it by cs, dot with q: 8 lanes of
 * partial sums. nch = d / 8 chunks (1..8) held in registers, so that the r multiply-adds of
 * each chunk form independent chains (generic loop for larger or odd-sized heads). */
KVC_TARGET_AVX2 static inline __attribute__((always_inline)) __m256
pre_dot_avx2_n(const struct pca_state *s, const float *c, const float *q, const float *cs, const int nch) {
    int d = s->d, r = s->r;
    __m256 k[8];
#pragma GCC unroll 8
    for (int ch = 0; ch < nch; ch++) k[ch] = _mm256_loadu_ps(s->mean + 8 * ch);
    for (int j = 0; j < r; j++) {
        const float *pj = s->P + (size_t)j * d;
        __m256 cj = _mm256_set1_ps(c[j]);
    #pragma GCC unroll 8
    for (int ch = 0; ch < nch; ch++) k[ch] = _mm256_fmadd_ps(cj, _mm256_loadu_ps(pj + 8 * ch), k[ch]);
    }
    __m256 acc = _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int ch = 0; ch < nch; ch++) {
        __m256 cv = _mm256_loadu_ps(cs + 8 * ch);
        __m256 rot = _mm256_fmaddsub_ps(k[ch], _mm256_moveldup_ps(cv),
                                        _mm256_mul_ps(_mm256_permute_ps(k[ch], 0xB1), _mm256_movehdup_ps(cv)));
        acc = _mm256_fmadd_ps(rot, _mm256_loadu_ps(q + 8 * ch), acc);
    }
    return acc;
}

KVC_TARGET_AVX2 static __m256 pre_dot_avx2_any(const struct pca_state *s, const float *c, const float *q,
                                               const float *cs) {
    int d = s->d, r = s->r;
    __m256 acc = _mm256_setzero_ps();
    for (int t = 0; t < d; t += 8) {
        __m256i m = kv256_mask8(d - t);
        __m256 k0 = _mm256_maskload_ps(s->mean + t, m), k1 = _mm256_setzero_ps();
        int j = 0;
        for (; j + 2 <= r; j += 2) {
            k0 = _mm256_fmadd_ps(_mm256_set1_ps(c[j]), _mm256_maskload_ps(s->P + (size_t)j * d + t, m), k0);
            k1 = _mm256_fmadd_ps(_mm256_set1_ps(c[j + 1]), _mm256_maskload_ps(s->P + (size_t)(j + 1) * d + t, m), k1);
        }
        if (j < r) k0 = _mm256_fmadd_ps(_mm256_set1_ps(c[j]), _mm256_maskload_ps(s->P + (size_t)j * d + t, m), k0);
        __m256 k = _mm256_add_ps(k0, k1);
        __m256 cv = _mm256_maskload_ps(cs + t, m);
        __m256 rot = _mm256_fmaddsub_ps(k, _mm256_moveldup_ps(cv),
                                        _mm256_mul_ps(_mm256_permute_ps(k, 0xB1), _mm256_movehdup_ps(cv)));
        acc = _mm256_fmadd_ps(rot, _mm256_maskload_ps(q + t, m), acc);
    }
    return acc;
}

KVC_TARGET_AVX2 static inline __m256 pre_dot_avx2(const struct pca_state *s, const float *c, const float *q,
                                                   const float *cs) {
    switch (s->d) {
    case 16: return pre_dot_avx2_n(s, c, q, cs, 2);
    case 32: return pre_dot_avx2_n(s, c, q, cs, 4);
    case 48: return pre_dot_avx2_n(s, c, q, cs, 6);
    case 64: return pre_dot_avx2_n(s, c, q, cs, 8);
    default: return pre_dot_avx2_any(s, c, q, cs);
    }
}

KVC_TARGET_AVX2 static inline __attribute__((always_inline)) void score_avx2_impl(const struct pca_state *s, const float *qp, const void *keys,
                                                   int pos0, int n, float *out, const int fmt, const int pre) {
    uint8_t pad[PCA_MAX_D * 4 + 64];
    float c[PCA_MAX_D + 16], buf[PCA_MAX_D];
    int r = s->r;
    for (int i0 = 0; i0 < n; i0 += 8) {
        int nb = n - i0 < 8 ? n - i0 : 8;
        __m256 v[8];
        for (int ii = 0; ii < nb; ii++) {
            const uint8_t *row = row_at(s, keys, i0 + ii, n, pad);
            float sc = fmt == FMT_Q8 || fmt == FMT_Q4 ? f16_at(row) : 1.0f;
            if (pre) {
                for (int j0 = 0; j0 < r; j0 += 8) {
                    __m256 x = dec256(s, row, fmt, j0);
                    if (fmt == FMT_BITS)
                        x = _mm256_fmadd_ps(x, _mm256_loadu_ps(s->step + j0), _mm256_loadu_ps(s->off + j0));
                    else if (fmt == FMT_Q8 || fmt == FMT_Q4)
                        x = _mm256_mul_ps(x, _mm256_set1_ps(sc));
                    _mm256_storeu_ps(c + j0, x);
                }
                v[ii] = pre_dot_avx2(s, c, qp, rope_cs(s, pos0 + i0 + ii, buf));
            } else {
                __m256 a = _mm256_setzero_ps();
                for (int j0 = 0; j0 < r; j0 += 8) {
                    __m256 qv = r - j0 >= 8 ? _mm256_loadu_ps(qp + j0) : _mm256_maskload_ps(qp + j0, kv256_mask8(r - j0));
                    a = _mm256_fmadd_ps(dec256(s, row, fmt, j0), qv, a);
                }
                v[ii] = _mm256_mul_ps(a, _mm256_set1_ps(sc));
            }
        }
        for (int ii = nb; ii < 8; ii++) v[ii] = _mm256_setzero_ps();
        __m256 sum = kv256_reduce8_ps(v);
        if (!pre) sum = _mm256_add_ps(sum, _mm256_set1_ps(qp[s->C]));
        _mm256_maskstore_ps(out + i0, kv256_mask8(nb), sum);
    }
}

KVC_TARGET_AVX2 static void score_avx2(const struct kv_slot *sl, const float *qp, const void *keys, int pos0,
                                       int n, float *out) {
    const struct pca_state *s = sl->state;
    if (s->pair) {
        pca_pair_score_scalar(sl, qp, keys, pos0, n, out);
        return;
    }
    if (s->pre) {
        switch (s->fmt) {
        case FMT_F32: score_avx2_impl(s, qp, keys, pos0, n, out, FMT_F32, 1); break;
        case FMT_F16: score_avx2_impl(s, qp, keys, pos0, n, out, FMT_F16, 1); break;
        case FMT_Q8: score_avx2_impl(s, qp, keys, pos0, n, out, FMT_Q8, 1); break;
        case FMT_Q4: score_avx2_impl(s, qp, keys, pos0, n, out, FMT_Q4, 1); break;
        default: score_avx2_impl(s, qp, keys, pos0, n, out, FMT_BITS, 1); break;
        }
        return;
    }
    switch (s->fmt) {
    case FMT_F32: score_avx2_impl(s, qp, keys, pos0, n, out, FMT_F32, 0); break;
    case FMT_F16: score_avx2_impl(s, qp, keys, pos0, n, out, FMT_F16, 0); break;
    case FMT_Q8: score_avx2_impl(s, qp, keys, pos0, n, out, FMT_Q8, 0); break;
    case FMT_Q4: score_avx2_impl(s, qp, keys, pos0, n, out, FMT_Q4, 0); break;
    default: score_avx2_impl(s, qp, keys, pos0, n, out, FMT_BITS, 0); break;
    }
}

KVC_TARGET_AVX2 static inline __attribute__((always_inline)) void accumulate_avx2_impl(const struct pca_state *s, const float *w, const void *vals,
                                                        int n, float *acc, const int fmt) {
    uint8_t pad[PCA_MAX_D * 4 + 64];
    int r = s->r;
    float ws = 0;
    for (int i = 0; i < n; i++) ws += w[i];
    for (int j0 = 0; j0 < r; j0 += 8) {
        __m256i m = kv256_mask8(r - j0);
        __m256 a = _mm256_maskload_ps(acc + j0, m);
        for (int i = 0; i < n; i++) {
            const uint8_t *row = row_at(s, vals, i, n, pad);
            float wi = w[i];
            if (fmt == FMT_Q8 || fmt == FMT_Q4) wi *= f16_at(row);
            a = _mm256_fmadd_ps(_mm256_set1_ps(wi), dec256(s, row, fmt, j0), a);
        }
        _mm256_maskstore_ps(acc + j0, m, a);
    }
    acc[s->C] += ws;
}

KVC_TARGET_AVX2 static void accumulate_avx2(const struct kv_slot *sl, const float *w, const void *vals, int pos0,
                                            int n, float *acc) {
    (void)pos0;
    const struct pca_state *s = sl->state;
    if (n <= 0) return;
    switch (s->fmt) {
    case FMT_F32: accumulate_avx2_impl(s, w, vals, n, acc, FMT_F32); break;
    case FMT_F16: accumulate_avx2_impl(s, w, vals, n, acc, FMT_F16); break;
    case FMT_Q8: accumulate_avx2_impl(s, w, vals, n, acc, FMT_Q8); break;
    case FMT_Q4: accumulate_avx2_impl(s, w, vals, n, acc, FMT_Q4); break;
    default: accumulate_avx2_impl(s, w, vals, n, acc, FMT_BITS); break;
    }
}

KVC_TARGET_AVX2 static void finish_avx2(const struct kv_slot *sl, const float *acc, float *out) {
    const struct pca_state *s = sl->state;
    int d = s->d;
    float c[PCA_MAX_D], W = acc[s->C];
    pca_finish_coefs(s, acc, c);
    for (int t = 0; t < d; t += 8) {
        __m256i m = kv256_mask8(d - t);
        __m256 o = _mm256_mul_ps(_mm256_set1_ps(W), _mm256_maskload_ps(s->mean + t, m));
        for (int j = 0; j < s->r; j++)
            o = _mm256_fmadd_ps(_mm256_set1_ps(c[j]), _mm256_maskload_ps(s->P + (size_t)j * d + t, m), o);
        _mm256_maskstore_ps(out + t, m, o);
    }
}

/* ------------------------------------------------------------------ the codec ---- */

/* keys=pre / pair: a key row costs O(d rank) / O(d) to score per query head, so attention over
 * a batch rebuilds each block of key rows once (decode) and scores floats; keys=post rows are
 * scored in the latent space at O(rank) and are not rebuilt; values are summed in the latent
 * space (one back-projection per query row), cheaper than rebuilding every row. */
static int pca_batch_decode(const void *vcfg, int is_value) {
    const struct pca_cfg *c = vcfg ? vcfg : &pca_default;
    return !is_value && c->pre != 0;
}


/* keys=pair rows in tiles of PCA_TILE where the store allows it and the fp16 kernel runs */
static int pca_tile_rows(const struct kv_slot *sl) {
    const struct pca_state *s = sl->state;
    return s && s->pair && s->pair->tiled ? PCA_TILE : 1;
}

const struct kv_codec kv_codec_pca = {
    .name = "pca",
    .id = KV_CODEC_PCA,
    .params = "rank=R | var=X[,max=R] | bits=B[,wide=F] | layers=B0/B1/... | heads=B0/B1/... (per layer x KV head)[,wide=F] (default bits=4); coef=f16|q8|q4|f32 (rank/var); keys=post|pre|pair; dot=auto|bf16|f16|f32 (keys=pair; auto: bf16 on AMD with AVX512-BF16, else f16 with AVX512-FP16, else f32)",
    .about = "calibrated principal basis per head (needs --kv-calib); attention in the latent space",
    .cfg_size = sizeof(struct pca_cfg),
    .batch_decode = pca_batch_decode,
    .parse = pca_parse,
    .row_bytes = pca_row_bytes,
    .slot_row_bytes = pca_slot_row_bytes,
    .check_dim = pca_check_dim,
    .state_create = pca_state_create,
    .state_free = pca_state_free,
    .qp_floats = pca_qp_floats,
    .acc_floats = pca_acc_floats,
    .tile_rows = pca_tile_rows,
    .kern = {
        [KVC_ISA_SCALAR] = {encode_scalar, decode_scalar, prepare_scalar, score_scalar, accumulate_scalar,
                            finish_scalar},
        [KVC_ISA_AVX2] = {encode_avx2, decode_scalar, prepare_avx2, score_avx2, accumulate_avx2, finish_avx2},
        [KVC_ISA_AVX512] = {pca_encode_avx512, pca_decode_avx512, pca_prepare_avx512, pca_score_avx512, pca_accumulate_avx512,
                            pca_finish_avx512, pca_score_g_avx512, pca_accumulate_g_avx512},
    },
};
