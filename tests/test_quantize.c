/* test_quantize.c - kvcodec quantize round trips on a small synth model (f32 weights) and a
 * hand-made file: matrices within the target type's rounding bound of the source (Q8_0:
 * half a step of amax/127 per block; Q4_0: a step of amax/8, the clamped end), 1-D tensors and metadata unchanged, a matrix whose rows
 * are not whole blocks written as F16, Q8_0 -> Q8_0 byte-identical, bad inputs refused; the
 * q4_k_m / q5_k_m mixes give every tensor the type llama-quantize gave it (../shared synth models). */
#include "arch/kernels.h"
#include "gguf.h"
#include "gguf_write.h"
#include "quantize.h"
#include "synth.h"
#include "test.h"
#include "types.h"

#include <unistd.h>

static void row_f32(const struct gguf_tensor *t, uint64_t r, float *out) {
    const struct kvc_type_size *ti = kvc_type_info(t->type);
    struct kvc_weight w = {.type = t->type, .n_in = (int64_t)t->ne[0], .n_out = (int64_t)t->ne[1],
                           .row_bytes = (size_t)(t->ne[0] / (uint64_t)ti->blck) * (size_t)ti->bytes, .data = t->data};
    kvc_weight_row_to_f32(&w, (int64_t)r, out);
}

/* every tensor of b against a: same names and shapes, values within the bound of type */
static void compare(const char *pa, const char *pb, uint32_t type) {
    struct gguf_file *a = NULL, *b = NULL;
    kvc_error e = {0};
    CHECK(gguf_open(pa, &a, &e) == KVC_OK, "%s", e.msg);
    CHECK(gguf_open(pb, &b, &e) == KVC_OK, "%s", e.msg);
    if (!a || !b) { gguf_close(a); gguf_close(b); return; }
    CHECK(a->n_tensors == b->n_tensors, "tensor counts %llu vs %llu", (unsigned long long)a->n_tensors,
          (unsigned long long)b->n_tensors);
    CHECK(b->n_kv == a->n_kv + (gguf_find(a, "general.file_type") == NULL), "metadata counts %llu vs %llu", (unsigned long long)a->n_kv, (unsigned long long)b->n_kv);
    for (uint64_t i = 0; i < a->n_kv; i++) { /* every key but the file type keeps its bytes */
        const struct gguf_kv *ka = &a->kv[i];
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)ka->key.n, ka->key.p);
        const struct gguf_kv *kb = gguf_find(b, key);
        CHECK(kb && kb->type == ka->type, "key %s missing or retyped", key);
        if (!kb || !strcmp(key, "general.file_type")) continue;
        if (ka->type == GGUF_ARRAY && ka->arr_type == GGUF_STRING) {
            int same = kb->arr_n == ka->arr_n;
            for (uint64_t j = 0; same && j < ka->arr_n; j++)
                same = ka->strs[j].n == kb->strs[j].n && !memcmp(ka->strs[j].p, kb->strs[j].p, (size_t)ka->strs[j].n);
            CHECK(same, "string array %s differs", key);
        } else if (ka->type == GGUF_ARRAY) {
            CHECK(kb->arr_n == ka->arr_n && !memcmp(ka->data, kb->data, (size_t)ka->arr_n * 4), "array %s differs", key);
        } else if (ka->type == GGUF_STRING) {
            struct gguf_str sa, sb;
            CHECK(gguf_get_str(a, key, &sa, &e) == KVC_OK && gguf_get_str(b, key, &sb, &e) == KVC_OK && sa.n == sb.n &&
                      !memcmp(sa.p, sb.p, (size_t)sa.n), "string %s differs", key);
        } else {
            CHECK(!memcmp(ka->data, kb->data, 4), "value %s differs", key);
        }
    }
    uint32_t ft = 0;
    CHECK(gguf_get_u32(b, "general.file_type", &ft, &e) == KVC_OK && ft == kvc_quant_ftype(&(struct kvc_quant_scheme){type, 0}), "file_type %u", ft);
    float *x = malloc(sizeof(float) * 65536), *y = malloc(sizeof(float) * 65536);
    for (uint64_t i = 0; i < a->n_tensors; i++) {
        const struct gguf_tensor *ta = &a->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)ta->name.n, ta->name.p);
        const struct gguf_tensor *tb = gguf_find_tensor(b, name);
        CHECK(tb && tb->ne[0] == ta->ne[0] && tb->ne[1] == ta->ne[1] && tb->n_dims == ta->n_dims, "%s shape", name);
        if (!tb) continue;
        uint32_t want = ta->n_dims < 2 ? KVC_TYPE_F32 : ta->ne[0] % 32 && type != KVC_TYPE_F32 && type != KVC_TYPE_F16 ? KVC_TYPE_F16 : type;
        CHECK(tb->type == want, "%s: type %u, expected %u", name, tb->type, want);
        double worst = 0;
        for (uint64_t r = 0; r < ta->ne[1]; r++) {
            row_f32(ta, r, x);
            row_f32(tb, r, y);
            for (uint64_t c0 = 0; c0 < ta->ne[0]; c0 += 32) {
                double amax = 0;
                uint64_t c1 = c0 + 32 < ta->ne[0] ? c0 + 32 : ta->ne[0];
                for (uint64_t c = c0; c < c1; c++) amax = fmax(amax, fabs(x[c]));
                /* half a step, plus the f16 rounding of the block scale (<= 2^-11 relative, times
                 * the largest index); Q4_0's step is max/-8 and index 16 clamps to 15: a full step */
                double bound = tb->type == KVC_TYPE_Q8_0 ? amax / 254 + 127 * amax / 127 / 2048 + 1e-7
                             : tb->type == KVC_TYPE_Q4_0 ? amax / 8 + 8 * amax / 8 / 2048 + 1e-7
                             : tb->type == KVC_TYPE_F16 ? amax / 2048 + 1e-7 : 0;
                for (uint64_t c = c0; c < c1; c++) worst = fmax(worst, fabs(x[c] - y[c]) - bound);
            }
        }
        CHECK(worst <= 0, "%s: error exceeds the %u bound by %g", name, tb->type, worst);
    }
    free(x);
    free(y);
    gguf_close(a);
    gguf_close(b);
}

static int data_eq(const char *pa, const char *pb) {
    struct gguf_file *a = NULL, *b = NULL;
    kvc_error e;
    int eq = gguf_open(pa, &a, &e) == KVC_OK && gguf_open(pb, &b, &e) == KVC_OK && a->n_tensors == b->n_tensors;
    for (uint64_t i = 0; eq && i < a->n_tensors; i++)
        eq = a->tensors[i].nbytes == b->tensors[i].nbytes &&
             !memcmp(a->tensors[i].data, b->tensors[i].data, (size_t)a->tensors[i].nbytes);
    gguf_close(a);
    gguf_close(b);
    return eq;
}

/* the per-tensor types of a mix against a file llama-quantize made with it (../shared):
 * every tensor but `except` (overridden on llama-quantize's command line) must match */
static void mix_vs_llamacpp(const char *rel, const char *scheme, const char *except) {
    const char *ref = shared_path(rel);
    if (!ref) return;
    char out[128];
    snprintf(out, sizeof out, "/tmp/kvc-test-q-%d-mix.gguf", (int)getpid());
    struct kvc_quantize_params qp = {0};
    CHECK(kvc_quant_scheme_parse(scheme, &qp.scheme) == 0, "scheme %s", scheme);
    kvc_error e = {0};
    CHECK(kvc_quantize_file(ref, out, &qp, &e) == KVC_OK, "%s", e.msg);
    struct gguf_file *a = NULL, *b = NULL;
    CHECK(gguf_open(ref, &a, &e) == KVC_OK, "%s", e.msg);
    CHECK(gguf_open(out, &b, &e) == KVC_OK, "%s", e.msg);
    int n = 0, same = 0;
    for (uint64_t i = 0; a && b && i < a->n_tensors; i++) {
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)a->tensors[i].name.n, a->tensors[i].name.p);
        const struct gguf_tensor *t = gguf_find_tensor(b, name);
        if (!t || (except && !strcmp(name, except))) continue;
        n++;
        same += t->type == a->tensors[i].type;
        CHECK(t->type == a->tensors[i].type, "%s %s: %s, llama-quantize %s", scheme, name, kvc_type_info(t->type)->name,
              kvc_type_info(a->tensors[i].type)->name);
    }
    CHECK(n > 10, "%s: only %d tensors compared", rel, n);
    gguf_close(a);
    gguf_close(b);
    unlink(out);
}

int main(void) {
    char src[128], odd[128], out[128], out2[128];
    int pid = (int)getpid();
    snprintf(src, sizeof src, "/tmp/kvc-test-q-%d-src.gguf", pid);
    snprintf(odd, sizeof odd, "/tmp/kvc-test-q-%d-odd.gguf", pid);
    snprintf(out, sizeof out, "/tmp/kvc-test-q-%d-out.gguf", pid);
    snprintf(out2, sizeof out2, "/tmp/kvc-test-q-%d-out2.gguf", pid);
    struct kvc_synth_params p = kvc_synth_default_params();
    p.preset = "qwen2.5-0.5b"; /* biases and a tied embedding */
    p.n_layer = 2;
    p.n_embd = 128;
    p.n_head = 2;
    p.n_head_kv = 1;
    p.n_ff = 256;
    p.n_vocab = 600;
    p.type = KVC_TYPE_F32;
    kvc_error e = {0};
    CHECK(kvc_synth_write(src, &p, &e) == KVC_OK, "%s", e.msg);
    struct kvc_quantize_params qp = {0};
    uint32_t types[] = {KVC_TYPE_Q8_0, KVC_TYPE_Q4_0, KVC_TYPE_F16};
    for (int i = 0; i < 3; i++) {
        qp.scheme.type = types[i];
        CHECK(kvc_quantize_file(src, out, &qp, &e) == KVC_OK, "%s", e.msg);
        compare(src, out, types[i]);
    }
    /* Q8_0 -> Q8_0 keeps every byte */
    qp.scheme.type = KVC_TYPE_Q8_0;
    CHECK(kvc_quantize_file(src, out, &qp, &e) == KVC_OK, "%s", e.msg);
    CHECK(kvc_quantize_file(out, out2, &qp, &e) == KVC_OK, "%s", e.msg);
    CHECK(data_eq(out, out2), "q8_0 -> q8_0 changed tensor data");

    /* rows of 48 are not whole Q4_0 blocks: F16 */
    struct gguf_writer *w = NULL;
    CHECK(gguf_writer_create(odd, &w, &e) == KVC_OK, "%s", e.msg);
    uint64_t ne[2] = {48, 3};
    float v[144];
    for (int i = 0; i < 144; i++) v[i] = sinf((float)i);
    CHECK(w && gguf_writer_kv_str(w, "general.architecture", "test") == KVC_OK, "kv");
    CHECK(w && gguf_writer_add_tensor(w, "m.weight", 2, ne, KVC_TYPE_F32) == KVC_OK, "add");
    CHECK(w && gguf_writer_begin_data(w) == KVC_OK && gguf_writer_write_data(w, v, sizeof v) == KVC_OK &&
              gguf_writer_finish(w) == KVC_OK, "write");
    gguf_writer_free(w);
    qp.scheme.type = KVC_TYPE_Q4_0;
    CHECK(kvc_quantize_file(odd, out, &qp, &e) == KVC_OK, "%s", e.msg);
    compare(odd, out, KVC_TYPE_Q4_0);

    /* refused: a missing file, a type without an encoder */
    CHECK(kvc_quantize_file("/nonexistent.gguf", out, &qp, &e) == KVC_ERR_IO, "%s", e.msg);
    qp.scheme.type = KVC_TYPE_Q8_1; /* no quantizer for this GGUF type */
    CHECK(kvc_quantize_file(src, out, &qp, &e) == KVC_ERR_ARG, "q8_1 accepted: %s", e.msg);
    unlink(src); unlink(odd); unlink(out); unlink(out2);
    mix_vs_llamacpp("models/synth/llama3-q4km.gguf", "q4_k_m", NULL);
    mix_vs_llamacpp("models/synth/qwen2-q5km.gguf", "q5_k_m", "token_embd.weight"); /* --token-embedding-type q8_0 */
    return test_summary("test_quantize");
}
