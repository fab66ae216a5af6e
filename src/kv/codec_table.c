/* codec_table.c - the table of KV codecs, spec-string parsing ("name" or "name:k=v,k=v"),
 * slot construction (dimension check, per-slot state, kernel choice with fallback to lower
 * ISA levels), and the public kvc_codec_bits / kvc_codec_list. The forward pass reaches
 * codecs only through this table. */
#include "codec.h"
#include "../util.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct kv_codec kv_codec_f32, kv_codec_f16, kv_codec_bf16, kv_codec_q8_0,
    kv_codec_q4_0, kv_codec_q4_0h;
extern const struct kv_codec kv_codec_hdc, kv_codec_hdc_select, kv_codec_pca;

const struct kv_codec *const kv_codec_table[] = {
    &kv_codec_f32, &kv_codec_f16, &kv_codec_bf16, &kv_codec_q8_0, &kv_codec_q4_0, &kv_codec_q4_0h,
    &kv_codec_hdc, &kv_codec_hdc_select, &kv_codec_pca,
};
const int kv_codec_table_len = (int)(sizeof kv_codec_table / sizeof kv_codec_table[0]);

const struct kv_codec *kv_codec_find(const char *name) {
    if (!name) return NULL;
    for (int i = 0; i < kv_codec_table_len; i++)
        if (strcmp(kv_codec_table[i]->name, name) == 0) return kv_codec_table[i];
    return NULL;
}

/* ---- list of names, built once ---- */
static char codec_list_buf[512];
static pthread_once_t codec_list_once = PTHREAD_ONCE_INIT;

static void codec_list_build(void) {
    size_t len = 0;
    for (int i = 0; i < kv_codec_table_len; i++) {
        int w = snprintf(codec_list_buf + len, sizeof codec_list_buf - len, "%s%s",
                         i ? ", " : "", kv_codec_table[i]->name);
        if (w < 0 || (size_t)w >= sizeof codec_list_buf - len) break; /* truncated: keep */
        len += (size_t)w;
    }
}

const char *kvc_codec_list(void) {
    pthread_once(&codec_list_once, codec_list_build);
    return codec_list_buf;
}

/* ---- spec parsing ---- */

kvc_status kv_spec_parse(const char *spec, struct kv_spec *out, kvc_error *err) {
    if (!out) return kvc_fail(err, KVC_ERR_ARG, "kv_spec_parse: no output spec");
    memset(out, 0, sizeof *out);
    if (!spec || !*spec)
        return kvc_fail(err, KVC_ERR_ARG, "empty KV codec spec (valid codecs: %s)",
                        kvc_codec_list());
    size_t len = strlen(spec);
    if (len >= sizeof out->text)
        return kvc_fail(err, KVC_ERR_ARG, "KV codec spec '%.40s...' is %zu bytes (max %zu)",
                        spec, len, sizeof out->text - 1);

    const char *colon = strchr(spec, ':');
    size_t name_len = colon ? (size_t)(colon - spec) : len;
    char name[sizeof out->text];
    memcpy(name, spec, name_len);
    name[name_len] = '\0';

    const struct kv_codec *c = kv_codec_find(name);
    if (!c)
        return kvc_fail(err, KVC_ERR_ARG, "unknown KV codec '%s' in spec '%s' (valid codecs: %s)",
                        name, spec, kvc_codec_list());
    const char *params = colon ? colon + 1 : NULL;
    if (params && !*params)
        return kvc_fail(err, KVC_ERR_ARG,
                        "malformed KV codec spec '%s': empty parameter list after ':' "
                        "(parameters of %s: %s; valid codecs: %s)",
                        spec, c->name, c->parse ? c->params : "none", kvc_codec_list());
    if (params && !c->parse)
        return kvc_fail(err, KVC_ERR_ARG,
                        "KV codec '%s' takes no parameters, got '%s' (spec '%s'; valid codecs: %s)",
                        c->name, params, spec, kvc_codec_list());

    void *cfg = calloc(1, c->cfg_size ? c->cfg_size : 1);
    if (!cfg) return kvc_fail(err, KVC_ERR_NOMEM, "out of memory parsing KV codec spec '%s'", spec);
    if (c->parse) {
        kvc_status st = c->parse(cfg, params ? params : "", err);
        if (st != KVC_OK) {
            free(cfg);
            return st;
        }
    }
    out->codec = c;
    out->cfg = cfg;
    memcpy(out->text, spec, len + 1);
    return KVC_OK;
}

void kv_spec_free(struct kv_spec *s) {
    if (!s) return;
    free(s->cfg);
    s->cfg = NULL;
    s->codec = NULL;
}

kvc_status kv_params_each(const char *codec, const char *params, void *cfg,
                          kvc_status (*fn)(void *cfg, const char *key, const char *val,
                                           kvc_error *err),
                          kvc_error *err) {
    if (!params) return KVC_OK;
    const char *p = params;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char item[KVC_SPEC_MAX];
        if (n >= sizeof item)
            return kvc_fail(err, KVC_ERR_ARG, "KV codec '%s': parameter too long in '%s'", codec,
                            params);
        memcpy(item, p, n);
        item[n] = '\0';
        char *eq = strchr(item, '=');
        if (!eq || eq == item || !eq[1])
            return kvc_fail(err, KVC_ERR_ARG,
                            "KV codec '%s': malformed parameter '%s' in '%s' "
                            "(expected key=value[,key=value...])",
                            codec, item, params);
        *eq = '\0';
        kvc_status st = fn(cfg, item, eq + 1, err);
        if (st != KVC_OK) return st;
        if (!end) break;
        p = end + 1;
        if (!*p) /* trailing comma */
            return kvc_fail(err, KVC_ERR_ARG,
                            "KV codec '%s': malformed parameters '%s' (trailing ',')", codec,
                            params);
    }
    return KVC_OK;
}

double kv_spec_bits(const struct kv_spec *s, int d) {
    if (!s || !s->codec || d <= 0) return 0;
    return 8.0 * (double)s->codec->row_bytes(s->cfg, d) / (double)d;
}

/* ---- slots ---- */

const struct kv_kernels *kv_codec_kernels(const struct kv_codec *c, enum kvc_isa isa) {
    int l = (int)isa;
    if (l >= KVC_ISA_COUNT) l = KVC_ISA_COUNT - 1;
    for (; l > KVC_ISA_SCALAR; l--)
        if (c->kern[l].encode) return &c->kern[l];
    return &c->kern[KVC_ISA_SCALAR];
}

kvc_status kv_slot_init(struct kv_slot *s, const struct kv_spec *spec,
                        const struct kv_slot_info *info, enum kvc_isa isa, kvc_error *err) {
    if (!s) return kvc_fail(err, KVC_ERR_INTERNAL, "kv_slot_init: no slot");
    memset(s, 0, sizeof *s);
    if (!spec || !spec->codec || !info)
        return kvc_fail(err, KVC_ERR_INTERNAL, "kv_slot_init: no spec or slot info");
    const struct kv_codec *c = spec->codec;
    int d = info->d;
    if (d <= 0)
        return kvc_fail(err, KVC_ERR_ARG, "KV codec '%s': head dim %d must be positive", c->name,
                        d);
    if (c->check_dim) {
        kvc_status st = c->check_dim(spec->cfg, d, err);
        if (st != KVC_OK) return st;
    }
    size_t rb = c->slot_row_bytes ? c->slot_row_bytes(spec->cfg, info) : c->row_bytes(spec->cfg, d);
    if (rb == 0)
        return kvc_fail(err, KVC_ERR_UNSUPPORTED, "KV codec '%s' does not support head dim %d",
                        c->name, d);
    s->codec = c;
    s->cfg = spec->cfg;
    s->info = *info;
    s->row_bytes = rb;
    s->qp_floats = c->qp_floats ? c->qp_floats(spec->cfg, d) : d;
    s->acc_floats = c->acc_floats ? c->acc_floats(spec->cfg, d) : d;
    if (c->state_create) {
        kvc_status st = c->state_create(spec->cfg, info, &s->state, err);
        if (st != KVC_OK) {
            memset(s, 0, sizeof *s);
            return st;
        }
    }
    /* Never hand out kernels the CPU cannot run: lower isa to a supported level. */
    int l = (int)isa;
    if (l < 0) l = 0;
    if (l >= KVC_ISA_COUNT) l = KVC_ISA_COUNT - 1;
    while (l > KVC_ISA_SCALAR && !kvc_isa_supported((enum kvc_isa)l)) l--;
    s->k = kv_codec_kernels(c, (enum kvc_isa)l);
    s->w8 = c->weights_8bit && c->weights_8bit(s);
    s->tile_rows = c->tile_rows ? c->tile_rows(s) : 1;
    if (s->tile_rows < 1 || !info->store_tiles) s->tile_rows = 1;
    return KVC_OK;
}

void kv_slot_free(struct kv_slot *s) {
    if (!s) return;
    if (s->codec && s->codec->state_free && s->state) s->codec->state_free(s->state);
    memset(s, 0, sizeof *s);
}

/* ---- public API ---- */

kvc_status kvc_codec_bits(const char *spec, int head_dim, double *bits, kvc_error *err) {
    if (!bits) return kvc_fail(err, KVC_ERR_ARG, "kvc_codec_bits: bits is NULL");
    *bits = 0;
    struct kv_spec s;
    kvc_status st = kv_spec_parse(spec, &s, err);
    if (st != KVC_OK) return st;
    if (head_dim <= 0) {
        kv_spec_free(&s);
        return kvc_fail(err, KVC_ERR_ARG, "KV codec '%s': head dim %d must be positive",
                        s.text, head_dim);
    }
    if (s.codec->check_dim) {
        st = s.codec->check_dim(s.cfg, head_dim, err);
        if (st != KVC_OK) {
            kv_spec_free(&s);
            return st;
        }
    }
    if (s.codec->row_bytes(s.cfg, head_dim) == 0) {
        kv_spec_free(&s);
        return kvc_fail(err, KVC_ERR_UNSUPPORTED, "KV codec '%s' does not support head dim %d",
                        spec, head_dim);
    }
    *bits = kv_spec_bits(&s, head_dim);
    kv_spec_free(&s);
    return KVC_OK;
}
