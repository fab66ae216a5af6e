/* codec_api.c - the public codec handle (kvc_codec_*): one slot of the codec table for a
 * given (layer, KV head, K or V), outside any context, so that tools and the Python package
 * can encode / decode rows and run attention on encoded rows with the engine's kernels.
 * The slot seed is derived from the context seed as the cache derives it (kvcache.c). */
#include "codec.h"
#include "calib.h"
#include "calib_internal.h"
#include "kvcache.h"
#include "../util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct kvc_codec {
    struct kv_spec spec, specw;   /* the codec, and f16 (the cache's sinks/recent rows) */
    struct kv_slot slot, slotw;
    struct kvc_calib *calib;       /* owned, or NULL */
    enum kvc_isa isa;
    int d;
};

struct kvc_codec_params kvc_codec_default_params(void) {
    struct kvc_codec_params p = {0};
    p.spec = "f16";
    p.rope_base = 10000.0f;
    p.seed = 0x6b7663;
    p.isa = -1;
    return p;
}

void kvc_codec_free(kvc_codec *c) {
    if (!c) return;
    kv_slot_free(&c->slot);
    kv_slot_free(&c->slotw);
    kv_spec_free(&c->spec);
    kv_spec_free(&c->specw);
    kvc_calib_free(c->calib);
    free(c);
}

kvc_status kvc_codec_create(const struct kvc_codec_params *p, kvc_codec **out, kvc_error *err) {
    if (!p || !out) return kvc_fail(err, KVC_ERR_ARG, "kvc_codec_create: NULL argument");
    *out = NULL;
    if (p->head_dim <= 0 || p->head_dim > 4096)
        return kvc_fail(err, KVC_ERR_ARG, "codec: head_dim %d outside 1..4096", p->head_dim);
    if (p->layer < 0 || p->head < 0 || p->layer > 999 || p->head > 999)
        return kvc_fail(err, KVC_ERR_ARG, "codec: layer %d / head %d outside 0..999", p->layer, p->head);
    if (p->isa < -1 || p->isa > KVC_ISA_AVX512)
        return kvc_fail(err, KVC_ERR_ARG, "codec: isa %d outside -1..2", p->isa);
    kvc_codec *c = calloc(1, sizeof *c);
    if (!c) return kvc_fail(err, KVC_ERR_NOMEM, "codec: out of memory");
    c->d = p->head_dim;
    c->isa = p->isa < 0 ? kvc_isa_best() : (enum kvc_isa)p->isa;
    if (!kvc_isa_supported(c->isa)) {
        kvc_codec_free(c);
        return kvc_fail(err, KVC_ERR_UNSUPPORTED, "codec: isa %s is not supported by this CPU", kvc_isa_name((enum kvc_isa)p->isa));
    }
    float rope_base = p->rope_base;
    kvc_status st = KVC_OK;
    if (p->model) rope_base = kvc_model_get_info(p->model)->rope_base;
    if (p->calib) {
        st = p->model ? kvc_calib_load(p->calib, p->model, &c->calib, err) : kvc_calib_load_file(p->calib, &c->calib, err);
        if (st) goto fail;
        const struct kvc_calib_id *id = &c->calib->id;
        if (p->layer >= id->n_layer || p->head >= id->n_head_kv || p->head_dim != id->head_dim) {
            st = kvc_fail(err, KVC_ERR_CALIB, "%s: has %d layers x %d KV heads of dim %d; asked for layer %d, head %d, dim %d",
                          p->calib, id->n_layer, id->n_head_kv, id->head_dim, p->layer, p->head, p->head_dim);
            goto fail;
        }
        rope_base = id->rope_base;
    }
    if ((st = kv_spec_parse(p->spec, &c->spec, err)) || (st = kv_spec_parse("f16", &c->specw, err))) goto fail;
    /* the per-slot seed as kv_cache_init derives it */
    uint64_t s = p->seed ^ ((uint64_t)(p->layer * 1000 + p->head) << 1 | (uint64_t)(p->is_value != 0));
    struct kv_slot_info info = {.d = p->head_dim, .layer = p->layer, .head = p->head, .is_value = p->is_value != 0,
                                .rope_base = rope_base, .seed = kvc_splitmix64(&s), .calib = c->calib};
    if ((st = kv_slot_init(&c->slot, &c->spec, &info, c->isa, err)) ||
        (st = kv_slot_init(&c->slotw, &c->specw, &info, c->isa, err)))
        goto fail;
    *out = c;
    return KVC_OK;
fail:
    kvc_codec_free(c);
    return st;
}

size_t kvc_codec_row_bytes(const kvc_codec *c) { return c ? c->slot.row_bytes : 0; }
int kvc_codec_head_dim(const kvc_codec *c) { return c ? c->d : 0; }

static kvc_status check_rows(const kvc_codec *c, const void *a, const void *b, int pos0, int n, kvc_error *err) {
    if (!c || !a || !b) return kvc_fail(err, KVC_ERR_ARG, "codec: NULL argument");
    if (n < 0 || pos0 < 0 || (int64_t)pos0 + n > INT32_MAX)
        return kvc_fail(err, KVC_ERR_ARG, "codec: rows %d at position %d: must be >= 0 and end before 2^31", n, pos0);
    return KVC_OK;
}

kvc_status kvc_codec_encode(const kvc_codec *c, const float *x, int pos0, int n, uint8_t *dst, kvc_error *err) {
    kvc_status st = check_rows(c, x, dst, pos0, n, err);
    if (st || n == 0) return st;
    c->slot.k->encode(&c->slot, x, pos0, n, dst);
    return KVC_OK;
}

kvc_status kvc_codec_decode(const kvc_codec *c, const uint8_t *src, int pos0, int n, float *y, kvc_error *err) {
    kvc_status st = check_rows(c, src, y, pos0, n, err);
    if (st || n == 0) return st;
    c->slot.k->decode(&c->slot, src, pos0, n, y);
    return KVC_OK;
}

/* Attention through the cache's own blocked kernel (kv_cache_attend_rows, the decode path of
 * the forward pass): a one-(layer, head) view of a cache whose code rows are the given ones,
 * no sinks or recent rows; the queries are the G query heads of one token at the last
 * position, restricted to [pos0, pos0 + n) and finished by kv_cache_attend_merge. */
kvc_status kvc_codec_attend(const kvc_codec *kc, const kvc_codec *vc, const float *q, int n_q,
                            const uint8_t *k_codes, const uint8_t *v_codes, int pos0, int n,
                            float scale, float *out, kvc_error *err) {
    if (!kc || !vc || !q || !k_codes || !v_codes || !out) return kvc_fail(err, KVC_ERR_ARG, "codec attend: NULL argument");
    if (kc->d != vc->d)
        return kvc_fail(err, KVC_ERR_ARG, "codec attend: key head_dim %d != value head_dim %d", kc->d, vc->d);
    if (kc->slot.info.is_value || !vc->slot.info.is_value)
        return kvc_fail(err, KVC_ERR_ARG, "codec attend: needs a key codec (is_value 0) and a value codec (is_value 1)");
    if (n < 1 || n_q < 1 || pos0 < 0 || (int64_t)pos0 + n > (1 << 28))
        return kvc_fail(err, KVC_ERR_ARG, "codec attend: %d queries over %d rows at position %d: need >= 1 of each, end < 2^28",
                        n_q, n, pos0);
    const int d = kc->d;
    const size_t kb = kc->slot.row_bytes, vb = vc->slot.row_bytes;
    if (!(scale > 0)) scale = 1.0f / sqrtf((float)d);
    struct kv_cache c;
    memset(&c, 0, sizeof c);
    c.n_layer = 1; c.n_head_kv = 1; c.d = d; c.n_ctx = pos0 + n; c.n_batch = 1; c.isa = kc->isa;
    c.k.slot = (struct kv_slot *)&kc->slot;
    c.k.slotw = (struct kv_slot *)&kc->slotw;
    c.v.slot = (struct kv_slot *)&vc->slot;
    c.v.slotw = (struct kv_slot *)&vc->slotw;
    c.k.row_bytes = kb;
    c.v.row_bytes = vb;
    uint64_t off0 = 0;
    c.k.slot_off = c.v.slot_off = &off0; /* one slot each, its rows at the start of codes */
    c.k.pos_bytes = kb;
    c.v.pos_bytes = vb;
    c.n_past = pos0 + n;
    /* (pos0 + n, row_bytes): rows before pos0 are never read (range [pos0, pos0 + n)) */
    uint8_t *kbuf = calloc((size_t)(pos0 + n), kb), *vbuf = calloc((size_t)(pos0 + n), vb);
    size_t pf = 0;
    float *parts = NULL;
    struct kv_attn_scratch s = {0};
    kvc_status st = KVC_OK;
    if (!kbuf || !vbuf) { st = kvc_fail(err, KVC_ERR_NOMEM, "codec attend: out of memory for %d rows", pos0 + n); goto done; }
    memcpy(kbuf + (size_t)pos0 * kb, k_codes, (size_t)n * kb);
    memcpy(vbuf + (size_t)pos0 * vb, v_codes, (size_t)n * vb);
    c.k.codes = kbuf;
    c.v.codes = vbuf;
    pf = kv_part_floats(&c);
    parts = malloc(sizeof(float) * pf * KV_MAX_QROWS); /* (KV_MAX_QROWS, part floats) */
    if (!parts || kv_cache_scratch_init(&c, &s)) { st = kvc_fail(err, KVC_ERR_NOMEM, "codec attend: out of memory"); goto done; }
    for (int g0 = 0; g0 < n_q; g0 += KV_MAX_QROWS) {
        int G = n_q - g0 < KV_MAX_QROWS ? n_q - g0 : KV_MAX_QROWS;
        kv_cache_attend_rows(&c, &s, 0, 0, G, q + (size_t)g0 * d, (size_t)G * d, 0, 1, pos0 + n - 1, pos0, pos0 + n,
                             scale, out + (size_t)g0 * d, parts);
        for (int g = 0; g < G; g++) {
            float *pp = parts + (size_t)g * pf;
            kv_cache_attend_merge(&c, 0, 0, &pp, 1, out + (size_t)(g0 + g) * d);
        }
    }
done:
    kv_cache_scratch_free(&s);
    free(parts);
    free(kbuf);
    free(vbuf);
    return st;
}

int kv_batch_decode_values(const void *cfg, int is_value) {
    (void)cfg;
    return is_value;
}

int kv_batch_decode_all(const void *cfg, int is_value) {
    (void)cfg;
    (void)is_value;
    return 1;
}
