/* kvcache.c - KV cache storage and attention over encoded rows. A query at position t sees
 * up to four segments: sink rows [0, S) in the window codec (f16 unless --kv-window), codec
 * rows [S, t+1-R), and the recent rows [t+1-R, t] in the window codec, read from the ring
 * (positions before the batch) or the stage (positions in the batch). Attention calls only
 * codec kernels: score, accumulate, finish. */
#include "kvcache.h"
#include "../arch/softmax.h"
#include "../arch/tile_gemm.h"
#include "../util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KV_MAX_SEGS 5

struct seg {
    const struct kv_slot *ks, *vs; /* key and value slots */
    const void *kd, *vd;           /* encoded rows */
    int pos0, n, isw;
};

uint64_t kv_stage_bytes(int n_head_kv, int n_batch, size_t row_bytes) {
    return (uint64_t)n_head_kv * (uint64_t)n_batch * (uint64_t)row_bytes;
}

kvc_status kv_window_check(const char *spec_w, int d, size_t *row_bytes, kvc_error *err) {
    struct kv_spec w;
    kvc_status st = kv_spec_parse(spec_w ? spec_w : "f16", &w, err);
    if (st) return st;
    const struct kv_codec *cd = w.codec;
    /* window rows share the plain value sums (d floats, no finish) and need no per-slot state
     * (calibration, seeds) and one row size for every slot */
    if ((st = cd->check_dim(w.cfg, d, err)) == KVC_OK) {
        const int plain = !cd->state_create && !cd->slot_row_bytes && !cd->score_whole &&
                          cd->acc_floats(w.cfg, d) == d && cd->qp_floats(w.cfg, d) <= d &&
                          !kv_codec_kernels(cd, KVC_ISA_SCALAR)->finish;
        if (plain) *row_bytes = cd->row_bytes(w.cfg, d);
        else
            st = kvc_fail(err, KVC_ERR_ARG,
                          "--kv-window %s: the sink / recent rows need a plain codec without state or "
                          "calibration (f32, f16, bf16, q8_0, q4_0)",
                          w.text);
    }
    kv_spec_free(&w);
    return st;
}

static kvc_status side_init(struct kv_cache *c, struct kv_side *sd, const char *spec,
                            const char *spec_w, int is_value, const struct kv_rope *rope, uint64_t seed,
                            const struct kvc_calib *calib, enum kvc_isa isa, int lazy, kvc_error *err) {
    kvc_status st = kv_spec_parse(spec, &sd->spec, err);
    if (st) return st;
    if ((st = kv_window_check(spec_w, c->d, &sd->wrow, err))) return st;
    if ((st = kv_spec_parse(spec_w, &sd->specw, err))) return st;
    int nslots = c->n_layer * c->n_head_kv;
    sd->slot = calloc((size_t)nslots, sizeof *sd->slot);
    sd->slotw = calloc((size_t)nslots, sizeof *sd->slotw);
    if (!sd->slot || !sd->slotw) return kvc_fail(err, KVC_ERR_NOMEM, "kv cache: out of memory for slots");
    const int dec = sd->spec.codec->batch_decode && sd->spec.codec->batch_decode(sd->spec.cfg, is_value);
    if (dec) {
        if ((st = kv_spec_parse("f32", &sd->spec32, err))) return st;
        sd->slot32 = calloc((size_t)nslots, sizeof *sd->slot32);
        if (!sd->slot32) return kvc_fail(err, KVC_ERR_NOMEM, "kv cache: out of memory for slots");
    }
    for (int l = 0; l < c->n_layer; l++) {
        for (int h = 0; h < c->n_head_kv; h++) {
            uint64_t s = seed ^ ((uint64_t)(l * 1000 + h) << 1 | (uint64_t)is_value);
            struct kv_slot_info info = {
                .d = c->d, .layer = l, .head = h, .is_value = is_value,
                .rope_base = rope->base, .rope_neox = rope->neox,
                .rope_freq_factors = rope->freq_factors, .rope_freq_scale = rope->freq_scale,
                .seed = kvc_splitmix64(&s), .calib = calib,
                .store_tiles = 1, .store_origin = c->sinks, /* code_row: store row pos - sinks */
            };
            int i = l * c->n_head_kv + h;
            if ((st = kv_slot_init(&sd->slot[i], &sd->spec, &info, isa, err))) return st;
            struct kv_slot_info iw = info;
            iw.store_tiles = 0; /* sink / ring / stage rows are addressed one by one */
            if ((st = kv_slot_init(&sd->slotw[i], &sd->specw, &iw, isa, err))) return st;
            if (dec) { /* value rows decoded into the codec's sum space when it has one */
                struct kv_slot_info i32 = iw;
                if (is_value && sd->slot[i].k->decode_acc && sd->spec.codec->dec_acc_floats)
                    i32.d = sd->spec.codec->dec_acc_floats(sd->spec.cfg, c->d);
                if ((st = kv_slot_init(&sd->slot32[i], &sd->spec32, &i32, isa, err))) return st;
            }
        }
    }
    sd->row_bytes = sd->slot[0].row_bytes;
    sd->slot_off = malloc((size_t)nslots * sizeof *sd->slot_off);
    if (!sd->slot_off) return kvc_fail(err, KVC_ERR_NOMEM, "kv cache: out of memory for slots");
    uint64_t codes = 0, used = 0, sink, ring, stage; /* used: the rows' own bytes, without tile padding */
    sd->pos_bytes = 0;
    for (int i = 0; i < nslots; i++) {
        uint64_t b, tr = (uint64_t)sd->slot[i].tile_rows; /* a tiled store holds whole tiles */
        const uint64_t rows = ((uint64_t)(c->n_ctx - c->sinks) + tr - 1) / tr * tr;
        sd->slot_off[i] = codes;
        sd->pos_bytes += sd->slot[i].row_bytes;
        if (kvc_mul_overflow(rows, sd->slot[i].row_bytes, &b) || codes + b < codes)
            return kvc_fail(err, KVC_ERR_RANGE, "kv cache: -c %d is too large: size overflows", c->n_ctx);
        codes += b;
        used += (uint64_t)(c->n_ctx - c->sinks) * sd->slot[i].row_bytes;
    }
    codes += KV_STORE_SLACK; /* for kernels that read past a store's last tile */
    sink = (uint64_t)nslots * (uint64_t)c->sinks * sd->wrow;
    ring = (uint64_t)nslots * (uint64_t)c->recent * sd->wrow;
    stage = kv_stage_bytes(c->n_head_kv, c->n_batch, sd->wrow);
    sd->codes_bytes = codes;
    sd->codes_lazy = lazy;
    sd->codes = lazy ? kvc_alloc_lazy(codes) : kvc_alloc_aligned(codes);
    sd->sink = kvc_alloc_aligned(sink);
    sd->ring = kvc_alloc_aligned(ring);
    sd->stage = kvc_alloc_aligned(stage);
    if (!sd->codes || !sd->sink || !sd->ring || !sd->stage)
        return kvc_fail(err, KVC_ERR_NOMEM, "kv cache: cannot allocate %.1f MiB for %s rows of -c %d",
                        (double)(codes + sink + ring) / 1048576.0, is_value ? "value" : "key", c->n_ctx);
    sd->bytes = used + sink + ring; /* the cache's size as bits per element count it */
    return KVC_OK;
}

static void side_free(struct kv_cache *c, struct kv_side *sd) {
    int nslots = c->n_layer * c->n_head_kv;
    if (sd->slot)
        for (int i = 0; i < nslots; i++) kv_slot_free(&sd->slot[i]);
    if (sd->slotw)
        for (int i = 0; i < nslots; i++) kv_slot_free(&sd->slotw[i]);
    if (sd->slot32)
        for (int i = 0; i < nslots; i++) kv_slot_free(&sd->slot32[i]);
    free(sd->slot);
    free(sd->slotw);
    free(sd->slot32);
    free(sd->slot_off);
    if (sd->codes_lazy) kvc_free_lazy(sd->codes, sd->codes_bytes);
    else kvc_free_aligned(sd->codes);
    kvc_free_aligned(sd->sink);
    kvc_free_aligned(sd->ring);
    kvc_free_aligned(sd->stage);
    kv_spec_free(&sd->spec);
    kv_spec_free(&sd->specw);
    if (sd->spec32.codec) kv_spec_free(&sd->spec32);
    memset(sd, 0, sizeof *sd);
}

kvc_status kv_cache_init(struct kv_cache *c, int n_layer, int n_head_kv, int d, int n_ctx,
                         int n_batch, const char *spec_k, const char *spec_v, int sinks,
                         int recent, float rope_base, uint64_t seed,
                         const struct kvc_calib *calib, enum kvc_isa isa, kvc_error *err) {
    struct kv_rope rope = {.base = rope_base, .neox = 0, .freq_factors = NULL, .freq_scale = 1.0f};
    return kv_cache_init_rope(c, n_layer, n_head_kv, d, n_ctx, n_batch, spec_k, spec_v, NULL, sinks, recent,
                              &rope, seed, calib, isa, err);
}

static kvc_status cache_init(struct kv_cache *c, int n_layer, int n_head_kv, int d, int n_ctx, int n_batch,
                             const char *spec_k, const char *spec_v, const char *spec_w, int sinks, int recent,
                             const struct kv_rope *rope, uint64_t seed, const struct kvc_calib *calib,
                             enum kvc_isa isa, int lazy, kvc_error *err) {
    memset(c, 0, sizeof *c);
    if (sinks < 0 || recent < 0 || sinks >= n_ctx || (int64_t)sinks + recent > n_ctx)
        return kvc_fail(err, KVC_ERR_ARG, "kv cache: --kv-sinks %d and --kv-recent %d must be >= 0 and together fit in -c %d",
                        sinks, recent, n_ctx);
    c->n_layer = n_layer; c->n_head_kv = n_head_kv; c->d = d; c->n_ctx = n_ctx;
    c->n_batch = n_batch; c->sinks = sinks; c->recent = recent; c->isa = isa;
    if (!spec_w) spec_w = "f16";
    kvc_status st = side_init(c, &c->k, spec_k, spec_w, 0, rope, seed, calib, isa, lazy, err);
    if (!st) st = side_init(c, &c->v, spec_v, spec_w, 1, rope, seed, calib, isa, lazy, err);
    if (st) kv_cache_free(c);
    return st;
}

kvc_status kv_cache_init_rope(struct kv_cache *c, int n_layer, int n_head_kv, int d, int n_ctx,
                              int n_batch, const char *spec_k, const char *spec_v, const char *spec_w, int sinks,
                              int recent, const struct kv_rope *rope, uint64_t seed,
                              const struct kvc_calib *calib, enum kvc_isa isa, kvc_error *err) {
    return cache_init(c, n_layer, n_head_kv, d, n_ctx, n_batch, spec_k, spec_v, spec_w, sinks, recent, rope, seed,
                      calib, isa, 0, err);
}

kvc_status kv_cache_init_lazy(struct kv_cache *c, int n_layer, int n_head_kv, int d, int n_ctx,
                              int n_batch, const char *spec_k, const char *spec_v, const char *spec_w, int sinks,
                              int recent, const struct kv_rope *rope, uint64_t seed,
                              const struct kvc_calib *calib, enum kvc_isa isa, kvc_error *err) {
    return cache_init(c, n_layer, n_head_kv, d, n_ctx, n_batch, spec_k, spec_v, spec_w, sinks, recent, rope, seed,
                      calib, isa, 1, err);
}

void kv_cache_free(struct kv_cache *c) {
    side_free(c, &c->k);
    side_free(c, &c->v);
}

/* Floats per prepared query / per value sum in the scratch: the codec's, at least d (the window
 * rows of sinks and recent positions share the rows). */
static size_t qp_floats_of(const struct kv_cache *c) {
    return (size_t)(c->k.slot[0].qp_floats > c->d ? c->k.slot[0].qp_floats : c->d);
}
static size_t acc_floats_of(const struct kv_cache *c) {
    return (size_t)(c->v.slot[0].acc_floats > c->d ? c->v.slot[0].acc_floats : c->d);
}

/* Scratch layout: scores (max(n_ctx, KV_MAX_QROWS * KV_BLOCK)), qp (R, q), qpw (R, d),
 * qpf (R, d), acc (R, a), accw (R, d), m (R), l (R) with R = KV_MAX_QROWS, kblk (KV_BLOCK, d), vblk (KV_BLOCK, a),
 * kt (d, KV_BLOCK). */
static size_t scores_floats(int n_ctx) {
    size_t R = KV_MAX_QROWS;
    return (size_t)n_ctx > R * KV_BLOCK ? (size_t)n_ctx : R * KV_BLOCK;
}

size_t kv_scratch_floats(int n_ctx, int d, size_t qp_floats, size_t acc_floats) {
    size_t R = KV_MAX_QROWS, dd = (size_t)d;
    size_t q = qp_floats > dd ? qp_floats : dd, a = acc_floats > dd ? acc_floats : dd;
    return scores_floats(n_ctx) + R * (q + dd + dd + a + dd) + 2 * R + (size_t)KV_BLOCK * (dd + a + dd);
}

kvc_status kv_cache_scratch_init(const struct kv_cache *c, struct kv_attn_scratch *s) {
    size_t q = qp_floats_of(c), a = acc_floats_of(c), R = KV_MAX_QROWS, d = (size_t)c->d;
    size_t nsc = scores_floats(c->n_ctx);
    s->scores = kvc_alloc_aligned(nsc * sizeof(float));
    s->qp = kvc_alloc_aligned(R * q * sizeof(float));
    s->qpw = kvc_alloc_aligned(R * d * sizeof(float));
    s->qpf = kvc_alloc_aligned(R * d * sizeof(float));
    s->acc = kvc_alloc_aligned(R * a * sizeof(float));
    s->accw = kvc_alloc_aligned(R * d * sizeof(float));
    s->m = kvc_alloc_aligned(R * sizeof(float));
    s->l = kvc_alloc_aligned(R * sizeof(float));
    s->kblk = kvc_alloc_aligned((size_t)KV_BLOCK * d * sizeof(float));
    s->vblk = kvc_alloc_aligned((size_t)KV_BLOCK * a * sizeof(float));
    s->kt = kvc_alloc_aligned((size_t)KV_BLOCK * d * sizeof(float));
    if (!s->scores || !s->qp || !s->qpw || !s->qpf || !s->acc || !s->accw || !s->m || !s->l || !s->kblk || !s->vblk ||
        !s->kt) {
        kv_cache_scratch_free(s);
        return KVC_ERR_NOMEM;
    }
    return KVC_OK;
}

void kv_cache_scratch_free(struct kv_attn_scratch *s) {
    kvc_free_aligned(s->scores);
    kvc_free_aligned(s->qp);
    kvc_free_aligned(s->qpw);
    kvc_free_aligned(s->qpf);
    kvc_free_aligned(s->acc);
    kvc_free_aligned(s->accw);
    kvc_free_aligned(s->m);
    kvc_free_aligned(s->l);
    kvc_free_aligned(s->kblk);
    kvc_free_aligned(s->vblk);
    kvc_free_aligned(s->kt);
    memset(s, 0, sizeof *s);
}

static inline uint8_t *code_row(const struct kv_cache *c, const struct kv_side *sd, int layer,
                                int head, int pos) {
    size_t i = (size_t)layer * c->n_head_kv + head;
    return sd->codes + sd->slot_off[i] + (size_t)(pos - c->sinks) * sd->slot[i].row_bytes;
}
static inline uint8_t *sink_row(const struct kv_cache *c, const struct kv_side *sd, int layer,
                                int head, int pos) {
    return sd->sink + (((size_t)layer * c->n_head_kv + head) * c->sinks + pos) * sd->wrow;
}
static inline uint8_t *ring_row(const struct kv_cache *c, const struct kv_side *sd, int layer,
                                int head, int pos) {
    return sd->ring + (((size_t)layer * c->n_head_kv + head) * c->recent + pos % c->recent) * sd->wrow;
}
static inline uint8_t *stage_row(const struct kv_cache *c, const struct kv_side *sd, int head,
                                 int i) {
    return sd->stage + ((size_t)head * c->n_batch + i) * sd->wrow;
}

static void store_side(struct kv_cache *c, struct kv_side *sd, int layer, int head, int p0,
                       int T, const float *rows) {
    int si = layer * c->n_head_kv + head;
    const struct kv_slot *s = &sd->slot[si], *s16 = &sd->slotw[si];
    int t = 0;
    for (; t < T && p0 + t < c->sinks; t++) /* sink positions: window codec only */
        s16->k->encode(s16, rows + (size_t)t * c->d, p0 + t, 1, sink_row(c, sd, layer, head, p0 + t));
    if (t < T) /* the rest: through the codec, in one call */
        s->k->encode(s, rows + (size_t)t * c->d, p0 + t, T - t, code_row(c, sd, layer, head, p0 + t));
    if (c->recent > 0) /* staged window-codec copies for the recent window */
        s16->k->encode(s16, rows, p0, T, stage_row(c, sd, head, 0));
}

void kv_cache_store(struct kv_cache *c, int layer, int head, int p0, int T, const float *k_rows,
                    const float *v_rows) {
    store_side(c, &c->k, layer, head, p0, T, k_rows);
    store_side(c, &c->v, layer, head, p0, T, v_rows);
}

int kv_cache_read(const struct kv_cache *c, int layer, int head, int p0, int n, float *k, float *v) {
    if (c->recent > 0 || p0 < 0 || p0 + n > c->n_past) return -1;
    const struct kv_side *sides[2] = {&c->k, &c->v};
    float *outs[2] = {k, v};
    for (int s = 0; s < 2; s++) {
        const struct kv_side *sd = sides[s];
        int si = layer * c->n_head_kv + head;
        for (int i = 0; i < n; i++) {
            int pos = p0 + i;
            float *y = outs[s] + (size_t)i * c->d;
            if (pos < c->sinks) sd->slotw[si].k->decode(&sd->slotw[si], sink_row(c, sd, layer, head, pos), pos, 1, y);
            else sd->slot[si].k->decode(&sd->slot[si], code_row(c, sd, layer, head, pos), pos, 1, y);
        }
    }
    return 0;
}

void kv_cache_commit_layer(struct kv_cache *c, int layer, int p0, int T) {
    if (c->recent == 0) return;
    int first = T > c->recent ? T - c->recent : 0;
    for (int h = 0; h < c->n_head_kv; h++)
        for (int i = first; i < T; i++) {
            memcpy(ring_row(c, &c->k, layer, h, p0 + i), stage_row(c, &c->k, h, i), c->k.wrow);
            memcpy(ring_row(c, &c->v, layer, h, p0 + i), stage_row(c, &c->v, h, i), c->v.wrow);
        }
}

void kv_cache_truncate(struct kv_cache *c, int n) {
    if (n < 0 || n > c->n_past) return;
    if (c->recent > 0 && n < c->n_past) { /* the ring still holds [n_past - recent, n_past) */
        int lo = c->n_past - c->recent > c->ring_lo ? c->n_past - c->recent : c->ring_lo;
        c->ring_lo = lo < n ? lo : n;
    }
    if (n == 0) c->ring_lo = 0; /* empty: nothing to read */
    c->n_past = n;
}

/* Split [a, b) of recent (window-codec) rows into ring / stage segments. */
static int add_recent(const struct kv_cache *c, int layer, int head, int a, int b, int p0,
                      struct seg *sg, int ns, const struct kv_slot *ksw,
                      const struct kv_slot *vsw) {
    while (a < b) {
        struct seg s = {.ks = ksw, .vs = vsw, .pos0 = a, .isw = 1};
        if (a >= p0) { /* in the batch: stage */
            s.n = b - a;
            s.kd = stage_row(c, &c->k, head, a - p0);
            s.vd = stage_row(c, &c->v, head, a - p0);
        } else { /* committed: ring, contiguous up to the wrap or the batch start */
            int lim = p0 < b ? p0 : b;
            int wrap = a - a % c->recent + c->recent;
            if (wrap < lim) lim = wrap;
            s.n = lim - a;
            s.kd = ring_row(c, &c->k, layer, head, a);
            s.vd = ring_row(c, &c->v, layer, head, a);
        }
        sg[ns++] = s;
        a += s.n;
    }
    return ns;
}

/* The segments a query at position t (batch start p0) sees, in position order. */
static int build_segs(const struct kv_cache *c, int layer, int head, int t, int p0, struct seg *sg) {
    int si = layer * c->n_head_kv + head;
    const struct kv_slot *ks = &c->k.slot[si], *vs = &c->v.slot[si];
    const struct kv_slot *ksw = &c->k.slotw[si], *vsw = &c->v.slotw[si];
    int ns = 0, n = t + 1;
    int sink_end = c->sinks < n ? c->sinks : n;
    int code_end = c->recent > 0 ? n - c->recent : n;
    if (code_end < c->sinks) code_end = c->sinks;
    if (code_end < c->ring_lo) code_end = c->ring_lo < n ? c->ring_lo : n; /* cut from the ring */
    if (sink_end > 0)
        sg[ns++] = (struct seg){ksw, vsw, sink_row(c, &c->k, layer, head, 0),
                                sink_row(c, &c->v, layer, head, 0), 0, sink_end, 1};
    if (code_end > c->sinks)
        sg[ns++] = (struct seg){ks, vs, code_row(c, &c->k, layer, head, c->sinks),
                                code_row(c, &c->v, layer, head, c->sinks), c->sinks,
                                code_end - c->sinks, 0};
    int rec_start = code_end > sink_end ? code_end : sink_end;
    if (c->recent > 0 && rec_start < n) ns = add_recent(c, layer, head, rec_start, n, p0, sg, ns, ksw, vsw);
    return ns;
}

void kv_cache_attend(const struct kv_cache *c, struct kv_attn_scratch *s, int layer, int head,
                     const float *q, int t, int p0, float scale, float *out) {
    int si = layer * c->n_head_kv + head, d = c->d, n = t + 1;
    const struct kv_slot *ks = &c->k.slot[si], *vs = &c->v.slot[si];
    const struct kv_slot *ksw = &c->k.slotw[si];
    struct seg sg[KV_MAX_SEGS];
    int ns = build_segs(c, layer, head, t, p0, sg);

    /* scores */
    int hasw = 0, hascodec = 0;
    for (int i = 0; i < ns; i++) { hasw |= sg[i].isw; hascodec |= !sg[i].isw; }
    if (hascodec) ks->k->prepare_query(ks, q, s->qp);
    if (hasw) ksw->k->prepare_query(ksw, q, s->qpw);
    int off = 0;
    for (int i = 0; i < ns; i++) {
        sg[i].ks->k->score(sg[i].ks, sg[i].isw ? s->qpw : s->qp, sg[i].kd, sg[i].pos0, sg[i].n, s->scores + off);
        off += sg[i].n;
    }
    /* softmax (sparse codecs may leave -inf scores: weight 0) */
    kvc_softmax_f32(c->isa, s->scores, n, scale);
    /* values */
    if (hascodec) memset(s->acc, 0, (size_t)vs->acc_floats * sizeof(float));
    if (hasw) memset(s->accw, 0, (size_t)d * sizeof(float));
    off = 0;
    for (int i = 0; i < ns; i++) {
        sg[i].vs->k->accumulate(sg[i].vs, s->scores + off, sg[i].vd, sg[i].pos0, sg[i].n,
                                sg[i].isw ? s->accw : s->acc);
        off += sg[i].n;
    }
    if (hascodec) {
        if (vs->k->finish) vs->k->finish(vs, s->acc, out);
        else memcpy(out, s->acc, (size_t)d * sizeof(float));
    } else {
        memset(out, 0, (size_t)d * sizeof(float));
    }
    if (hasw)
        for (int j = 0; j < d; j++) out[j] += s->accw[j];
}

/* ---- blocked attention with an online softmax ---- */

/* Layout of one partial result: m, l, has_codec, hasw, acc (acc_floats), accw (d). */
enum { PART_M = 0, PART_L = 1, PART_HASC = 2, PART_HASW = 3, PART_ACC = 4 };

size_t kv_part_floats_of(int d, size_t acc_floats) {
    return PART_ACC + (acc_floats > (size_t)d ? acc_floats : (size_t)d) + (size_t)d;
}
size_t kv_part_floats(const struct kv_cache *c) { return kv_part_floats_of(c->d, acc_floats_of(c)); }

static void scale_vec(float *x, size_t n, float a) {
    for (size_t i = 0; i < n; i++) x[i] *= a;
}

/* out (d) from normalised sums: the codec's finish of acc / l plus accw / l. */
static void finish_row(const struct kv_cache *c, const struct kv_slot *vs, float *acc, size_t accf,
                       const float *accw, float l, int has_codec, int hasw, float *out) {
    const int d = c->d;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    if (has_codec) {
        scale_vec(acc, accf, inv);
        if (vs->k->finish) vs->k->finish(vs, acc, out);
        else memcpy(out, acc, (size_t)d * sizeof(float));
    } else {
        memset(out, 0, (size_t)d * sizeof(float));
    }
    if (hasw)
        for (int j = 0; j < d; j++) out[j] += accw[j] * inv;
}

/* Pieces of the segments sg inside [b0, e): runs BODY for each non-empty one, with pc (the
 * segment), [x0, x1) and kd / vd (its first K / V row there). */
#define FOR_PIECES(sg, ns, b0, e, BODY)                                                          \
    for (int k_ = 0; k_ < (ns); k_++) {                                                          \
        const struct seg *pc = &(sg)[k_];                                                        \
        const int x0 = pc->pos0 > (b0) ? pc->pos0 : (b0);                                        \
        const int x1 = pc->pos0 + pc->n < (e) ? pc->pos0 + pc->n : (e);                          \
        if (x0 >= x1) continue;                                                                  \
        const char *kd = (const char *)pc->kd + (size_t)(x0 - pc->pos0) * pc->ks->row_bytes;     \
        const char *vd = (const char *)pc->vd + (size_t)(x0 - pc->pos0) * pc->vs->row_bytes;     \
        (void)kd;                                                                                \
        (void)vd;                                                                                \
        BODY                                                                                     \
    }

/* One query row r over positions [b0, e) of its segments: scores, online-softmax step,
 * rescale of the earlier sums, weighted values. */
static void attend_block_one(const struct kv_cache *c, struct kv_attn_scratch *s, const struct seg *sg,
                             int ns, int r, size_t qpf, size_t accf, int b0, int e, float scale) {
    const int d = c->d;
    float *sc = s->scores, *acc = s->acc + (size_t)r * accf, *accw = s->accw + (size_t)r * d;
    FOR_PIECES(sg, ns, b0, e, {
        pc->ks->k->score(pc->ks, pc->isw ? s->qpw + (size_t)r * d : s->qp + (size_t)r * qpf, kd, x0,
                         x1 - x0, sc + (x0 - b0));
    })
    const float alpha = kvc_softmax_online(c->isa, sc, e - b0, scale, &s->m[r], &s->l[r]);
    if (alpha != 1.0f) {
        scale_vec(acc, accf, alpha);
        scale_vec(accw, (size_t)d, alpha);
    }
    FOR_PIECES(sg, ns, b0, e, {
        pc->vs->k->accumulate(pc->vs, sc + (x0 - b0), vd, x0, x1 - x0, pc->isw ? accw : acc);
    })
}

/* Scores (out + g * os) of the G prepared queries (qp + g * qs) against n rows of slot sl: the
 * codec's grouped kernel when it has one, else one query at a time. */
static void score_rows_g(const struct kv_slot *sl, int G, const float *qp, size_t qs, const void *rows, int pos0,
                         int n, float *out, size_t os) {
    if (sl->k->score_g) {
        sl->k->score_g(sl, G, qp, qs, rows, pos0, n, out, os);
        return;
    }
    for (int g = 0; g < G; g++) sl->k->score(sl, qp + (size_t)g * qs, rows, pos0, n, out + (size_t)g * os);
}
/* acc + g * as += the weights w + g * ws times n rows of slot sl, for the G queries (grouped
 * kernel when the codec has one). */
static void acc_rows_g(const struct kv_slot *sl, int G, const float *w, size_t ws, const void *rows, int pos0,
                       int n, float *acc, size_t as) {
    if (sl->k->accumulate_g) {
        sl->k->accumulate_g(sl, G, w, ws, rows, pos0, n, acc, as);
        return;
    }
    for (int g = 0; g < G; g++) sl->k->accumulate(sl, w + (size_t)g * ws, rows, pos0, n, acc + (size_t)g * as);
}

/* The G query rows r0..r0+G-1 of one token (one KV head's query heads) over [b0, e), e - b0
 * <= os (KV_BLOCK or KV_DECODE_BLOCK: the stride of the G rows' scores), for blocks whose
 * rows are read encoded (batch-decoded blocks go to attend_block_gemm): each piece is scored
 * and accumulated for all G rows in one grouped call when the codec has one, so its rows are
 * read once. */
static void attend_block_grouped(const struct kv_cache *c, struct kv_attn_scratch *s,
                                 const struct seg *sg, int ns, int G, int r0, size_t qpf,
                                 size_t accf, int b0, int e, float scale, size_t os) {
    const int d = c->d;
    float *sc = s->scores;
    /* the cheaper exp when every row of the block goes to value sums that round the weights
     * to 8 bits anyway (softmax.h: relative error 1e-4 against a step of 1/255) */
    int fast = 1;
    FOR_PIECES(sg, ns, b0, e, {
        fast &= !pc->isw && pc->vs->w8;
        const float *qb = pc->isw ? s->qpw + (size_t)r0 * d : s->qp + (size_t)r0 * qpf;
        score_rows_g(pc->ks, G, qb, pc->isw ? (size_t)d : qpf, kd, x0, x1 - x0, sc + (x0 - b0), os);
    })
    for (int g = 0; g < G; g++) {
        const int r = r0 + g;
        const float alpha = (fast ? kvc_softmax_online_fast : kvc_softmax_online)(c->isa, sc + (size_t)g * os, e - b0,
                                                                                  scale, &s->m[r], &s->l[r]);
        if (alpha != 1.0f) {
            scale_vec(s->acc + (size_t)r * accf, accf, alpha);
            scale_vec(s->accw + (size_t)r * d, (size_t)d, alpha);
        }
    }
    FOR_PIECES(sg, ns, b0, e, {
        acc_rows_g(pc->vs, G, sc + (x0 - b0), os, vd, x0, x1 - x0,
                   pc->isw ? s->accw + (size_t)r0 * d : s->acc + (size_t)r0 * accf, pc->isw ? (size_t)d : accf);
    })
}

/* All nt tokens (rows i * G + g; token i at position t0 + i) over one block [b0, b1) whose codec
 * rows [lo, up) were decoded into s->kblk (keys, when ks32) / s->vblk (values, when vs32): the
 * decoded rows go through two matrix products for every token at once, S = Q K^T and
 * A += P V (register tiles, tile_gemm.h), instead of token by token. The window pieces (sinks,
 * recent rows: they differ per token) and codec rows not decoded are scored and summed per
 * token as in attend_block_grouped; the window scores overwrite the columns S computed for
 * them, and before P V each token's weights outside its own codec rows (window pieces, past its
 * causal end) are zeroed, so every token sums exactly its own segments. */
static void attend_block_gemm(const struct kv_cache *c, struct kv_attn_scratch *s, struct seg (*sg)[KV_MAX_SEGS],
                              const int *ns, int nt, int G, int t0, size_t qpf, size_t accf, int b0, int b1, int lo,
                              int up, float scale, const struct kv_slot *vs, const struct kv_slot *ks32,
                              const struct kv_slot *vs32) {
    const int d = c->d;
    const size_t os = KV_BLOCK;
    int cx0[KV_MAX_QROWS], cx1[KV_MAX_QROWS], ilo = nt, ihi = 0;
    /* each token's codec rows in the block (empty: cx0 = cx1 = lo); the products cover the
     * tokens [ilo, ihi) that have some */
    for (int i = 0; i < nt; i++) {
        const int e = b1 < t0 + i + 1 ? b1 : t0 + i + 1;
        cx0[i] = cx1[i] = lo;
        FOR_PIECES(sg[i], ns[i], b0, e, {
            if (pc->isw) continue;
            cx0[i] = x0;
            cx1[i] = x1;
            if (i < ilo) ilo = i;
            ihi = i + 1;
        })
    }
    const int gemm = up > lo && ilo < ihi, M = (ihi - ilo) * G;
    float *sc = s->scores;
    /* scores: decoded keys for all rows in one product, then each token's other pieces */
    if (gemm && ks32) {
        kvc_transpose_f32(c->isa, up - lo, d, s->kblk + (size_t)(lo - b0) * d, (size_t)d, s->kt + (lo - b0), os);
        kvc_gemm_f32(c->isa, M, up - lo, d, s->qpf + (size_t)ilo * G * d, (size_t)d, s->kt + (lo - b0), os,
                     sc + (size_t)ilo * G * os + (lo - b0), os, 0);
    }
    for (int i = 0; i < nt; i++) {
        const int e = b1 < t0 + i + 1 ? b1 : t0 + i + 1;
        float *si = sc + (size_t)i * G * os;
        FOR_PIECES(sg[i], ns[i], b0, e, {
            if (pc->isw)
                score_rows_g(pc->ks, G, s->qpw + (size_t)i * G * d, (size_t)d, kd, x0, x1 - x0, si + (x0 - b0), os);
            else if (!ks32)
                score_rows_g(pc->ks, G, s->qp + (size_t)i * G * qpf, qpf, kd, x0, x1 - x0, si + (x0 - b0), os);
        })
    }
    /* online softmax per row, earlier sums rescaled */
    for (int i = 0; i < nt; i++) {
        const int e = b1 < t0 + i + 1 ? b1 : t0 + i + 1;
        if (e <= b0) continue;
        for (int g = 0; g < G; g++) {
            const int r = i * G + g;
            const float alpha = kvc_softmax_online(c->isa, sc + (size_t)r * os, e - b0, scale, &s->m[r], &s->l[r]);
            if (alpha != 1.0f) {
                scale_vec(s->acc + (size_t)r * accf, accf, alpha);
                scale_vec(s->accw + (size_t)r * d, (size_t)d, alpha);
            }
        }
    }
    /* values: each token's pieces that are not decoded rows, then its weights outside its
     * codec rows zeroed for the product */
    for (int i = 0; i < nt; i++) {
        const int e = b1 < t0 + i + 1 ? b1 : t0 + i + 1;
        float *si = sc + (size_t)i * G * os;
        FOR_PIECES(sg[i], ns[i], b0, e, {
            if (pc->isw)
                acc_rows_g(pc->vs, G, si + (x0 - b0), os, vd, x0, x1 - x0, s->accw + (size_t)i * G * d, (size_t)d);
            else if (!vs32)
                acc_rows_g(pc->vs, G, si + (x0 - b0), os, vd, x0, x1 - x0, s->acc + (size_t)i * G * accf, accf);
        })
        if (vs32 && gemm && i >= ilo && i < ihi)
            for (int g = 0; g < G; g++) {
                float *w = si + (size_t)g * os;
                for (int x = lo; x < cx0[i]; x++) w[x - b0] = 0.0f;
                for (int x = cx1[i]; x < up; x++) w[x - b0] = 0.0f;
            }
    }
    if (gemm && vs32) { /* into the plain sums, or the codec's when decoded into its space */
        const int plain = !vs->k->decode_acc, dv = vs32->info.d;
        kvc_gemm_f32(c->isa, M, dv, up - lo, sc + (size_t)ilo * G * os + (lo - b0), os,
                     s->vblk + (size_t)(lo - b0) * dv, (size_t)dv,
                     plain ? s->accw + (size_t)ilo * G * d : s->acc + (size_t)ilo * G * accf, plain ? (size_t)d : accf,
                     1);
    }
}

void kv_cache_attend_rows(const struct kv_cache *c, struct kv_attn_scratch *s, int layer,
                          int head, int G, const float *q, size_t q_stride, int i0, int i1,
                          int p0, int pa, int pb, float scale, float *out, float *parts) {
    const int si = layer * c->n_head_kv + head, d = c->d, nt = i1 - i0;
    const struct kv_slot *ks = &c->k.slot[si], *vs = &c->v.slot[si];
    const struct kv_slot *ksw = &c->k.slotw[si];
    const size_t qpf = qp_floats_of(c), accf = acc_floats_of(c);
    /* batch_decode codecs: key rows decoded once per block for all tokens of the call, scored
     * as f32 rows against the plain q (qpf) */
    const struct kv_slot *ks32 =
        c->k.slot32 && i1 - i0 >= KV_BATCH_DECODE_MIN && !ks->codec->score_whole ? &c->k.slot32[si] : NULL;
    /* the same for value rows: f32 rows summed into the plain sums (accw), or into the codec's
     * sums when it decodes into its own space (decode_acc) */
    const struct kv_slot *vs32 =
        c->v.slot32 && i1 - i0 >= KV_BATCH_DECODE_MIN_V && !ks->codec->score_whole ? &c->v.slot32[si] : NULL;
    struct seg sg[KV_MAX_QROWS][KV_MAX_SEGS];
    int ns[KV_MAX_QROWS], hasc[KV_MAX_QROWS], hasw[KV_MAX_QROWS];
    int any_c = 0, anyw = 0;
    /* segments of each token, clipped to [pa, pb): flags say which kinds it meets */
    for (int i = 0; i < nt; i++) {
        const int t = p0 + i0 + i;
        ns[i] = build_segs(c, layer, head, t, p0, sg[i]);
        hasc[i] = hasw[i] = 0;
        for (int k = 0; k < ns[i]; k++) {
            const struct seg *g = &sg[i][k];
            if (g->pos0 >= pb || g->pos0 + g->n <= pa) continue;
            if (g->isw) hasw[i] = 1;
            else hasc[i] = 1;
        }
        any_c |= hasc[i];
        anyw |= hasw[i];
    }
    /* prepared queries and empty sums for every row (i, g) */
    for (int i = 0; i < nt; i++)
        for (int g = 0; g < G; g++) {
            const int r = i * G + g;
            const float *qr = q + (size_t)(i0 + i) * q_stride + (size_t)g * d;
            if (any_c && !ks32) ks->k->prepare_query(ks, qr, s->qp + (size_t)r * qpf);
            if (anyw) ksw->k->prepare_query(ksw, qr, s->qpw + (size_t)r * d);
            if (ks32) memcpy(s->qpf + (size_t)r * d, qr, (size_t)d * sizeof(float));
            s->m[r] = -INFINITY;
            s->l[r] = 0.0f;
        }
    memset(s->acc, 0, (size_t)nt * G * accf * sizeof(float));
    memset(s->accw, 0, (size_t)nt * G * d * sizeof(float));
    /* top-k codecs rank a whole segment at once: one block spans everything */
    const int B = ks->codec->score_whole ? c->n_ctx
                  : nt * G * KV_DECODE_BLOCK <= KV_MAX_QROWS * KV_BLOCK && !ks32 && !vs32 ? KV_DECODE_BLOCK
                                                                                  : KV_BLOCK;
    const int hi = pb < p0 + i1 ? pb : p0 + i1; /* the last token sees up to p0 + i1 - 1 */
    for (int b0 = pa; b0 < hi; b0 += B) {
        const int b1 = hi - b0 < B ? hi : b0 + B;
        int dlo = 0, dup = 0; /* the decoded rows [dlo, dup) */
        if ((ks32 || vs32) && any_c) { /* decode the block's codec rows that any token reads */
            int lo = 0, up = 0;
            for (int i = 0; i < nt; i++)
                for (int k = 0; k < ns[i]; k++) {
                    const struct seg *g = &sg[i][k];
                    if (g->isw) continue;
                    const int x0 = g->pos0 > b0 ? g->pos0 : b0, x1 = g->pos0 + g->n < b1 ? g->pos0 + g->n : b1;
                    if (x0 >= x1) continue;
                    if (up <= lo) { lo = x0; up = x1; }
                    lo = x0 < lo ? x0 : lo;
                    up = x1 > up ? x1 : up;
                }
            if (up > lo && ks32)
                ks->k->decode(ks, code_row(c, &c->k, layer, head, lo), lo, up - lo, s->kblk + (size_t)(lo - b0) * d);
            if (up > lo && vs32)
                (vs->k->decode_acc ? vs->k->decode_acc : vs->k->decode)(
                    vs, code_row(c, &c->v, layer, head, lo), lo, up - lo, s->vblk + (size_t)(lo - b0) * vs32->info.d);
            dlo = lo;
            dup = up;
        }
        if (ks32 || vs32) { /* decoded rows (B = KV_BLOCK): matrix products for all tokens */
            attend_block_gemm(c, s, sg, ns, nt, G, p0 + i0, qpf, accf, b0, b1, dlo, dup, scale, vs, ks32, vs32);
            continue;
        }
        for (int i = 0; i < nt; i++) {
            const int e = b1 < p0 + i0 + i + 1 ? b1 : p0 + i0 + i + 1; /* causal end */
            if (e <= b0) continue;
            if (!ks->codec->score_whole)
                attend_block_grouped(c, s, sg[i], ns[i], G, i * G, qpf, accf, b0, e, scale, (size_t)B);
            else
                for (int g = 0; g < G; g++) attend_block_one(c, s, sg[i], ns[i], i * G + g, qpf, accf, b0, e, scale);
        }
    }
    /* finish, or hand the partial state on; with value rows decoded to plain floats the codec
     * rows' sums are in the plain sums (accw) too */
    const size_t pf = kv_part_floats(c);
    if (vs32 && !vs->k->decode_acc)
        for (int i = 0; i < nt; i++) {
            hasw[i] |= hasc[i];
            hasc[i] = 0;
        }
    for (int i = 0; i < nt; i++)
        for (int g = 0; g < G; g++) {
            const int r = i * G + g;
            float *acc = s->acc + (size_t)r * accf, *accw = s->accw + (size_t)r * d;
            if (!parts) {
                finish_row(c, vs, acc, accf, accw, s->l[r], hasc[i], hasw[i],
                           out + (size_t)(i0 + i) * q_stride + (size_t)g * d);
                continue;
            }
            float *p = parts + (size_t)r * pf;
            p[PART_M] = s->m[r];
            p[PART_L] = s->l[r];
            p[PART_HASC] = (float)hasc[i];
            p[PART_HASW] = (float)hasw[i];
            memcpy(p + PART_ACC, acc, accf * sizeof(float));
            memcpy(p + PART_ACC + accf, accw, (size_t)d * sizeof(float));
        }
}

void kv_cache_attend_merge(const struct kv_cache *c, int layer, int head, float *const *parts,
                           int n_parts, float *out) {
    const struct kv_slot *vs = &c->v.slot[layer * c->n_head_kv + head];
    const size_t accf = acc_floats_of(c), n = accf + (size_t)c->d;
    float M = -INFINITY;
    for (int k = 0; k < n_parts; k++)
        if (parts[k][PART_M] > M) M = parts[k][PART_M];
    /* the first part becomes the sum: scaled by exp(m_k - M), the others added to it */
    float *p0 = parts[0];
    int hasc = 0, hasw = 0;
    float L = 0.0f;
    for (int k = 0; k < n_parts; k++) {
        float *p = parts[k];
        hasc |= p[PART_HASC] != 0.0f;
        hasw |= p[PART_HASW] != 0.0f;
        const float w = p[PART_M] == -INFINITY ? 0.0f : expf(p[PART_M] - M);
        L += p[PART_L] * w;
        if (k == 0) scale_vec(p0 + PART_ACC, n, w);
        else
            for (size_t j = 0; j < n; j++) p0[PART_ACC + j] += w * p[PART_ACC + j];
    }
    finish_row(c, vs, p0 + PART_ACC, accf, p0 + PART_ACC + accf, L, hasc, hasw, out);
}

double kv_side_bits(const struct kv_cache *c, const struct kv_side *sd) {
    double elems = (double)c->n_layer * c->n_head_kv * (double)c->n_ctx * c->d;
    return 8.0 * (double)sd->bytes / elems;
}
