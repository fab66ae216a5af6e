/* abi.c - layout of the public structs for language bindings (the Python package's ctypes
 * mirrors): kvc_abi_offset names the offset of a field or the size of a struct, so a binding
 * builds its mirror from the library it loaded and refuses to run on a mismatch. One row per
 * field; a field added to a public struct gets a row here. */
#include "kvcodec.h"

#include <stddef.h>
#include <string.h>

#define F(S, f) {#S, #f, offsetof(struct S, f)}
#define Z(S) {#S, NULL, sizeof(struct S)}
static const struct {
    const char *strct, *field;
    size_t off;
} rows[] = {
    Z(kvc_model_info), F(kvc_model_info, arch), F(kvc_model_info, name), F(kvc_model_info, n_layer),
    F(kvc_model_info, n_ctx_train), F(kvc_model_info, rope_base), F(kvc_model_info, tied_output),
    F(kvc_model_info, rope_neox), F(kvc_model_info, qkv_bias),
    F(kvc_model_info, n_params), F(kvc_model_info, file_bytes), F(kvc_model_info, eos_id),
    Z(kvc_ctx_params), F(kvc_ctx_params, n_ctx), F(kvc_ctx_params, n_batch), F(kvc_ctx_params, n_threads),
    F(kvc_ctx_params, kv_k), F(kvc_ctx_params, kv_v), F(kvc_ctx_params, kv_sinks), F(kvc_ctx_params, kv_recent),
    F(kvc_ctx_params, kv_calib), F(kvc_ctx_params, kv_preset), F(kvc_ctx_params, seed), F(kvc_ctx_params, isa),
    F(kvc_ctx_params, kv_window),
    Z(kvc_kv_info), F(kvc_kv_info, spec_v), F(kvc_kv_info, bits_k), F(kvc_kv_info, kv_bytes), F(kvc_kv_info, recent),
    F(kvc_kv_info, spec_window),
    Z(kvc_codec_params), F(kvc_codec_params, spec), F(kvc_codec_params, head_dim), F(kvc_codec_params, rope_base),
    F(kvc_codec_params, seed), F(kvc_codec_params, calib), F(kvc_codec_params, model), F(kvc_codec_params, isa),
    Z(kvc_ppl_params), F(kvc_ppl_params, ctx), F(kvc_ppl_params, chunks), F(kvc_ppl_params, compare),
    F(kvc_ppl_params, progress), F(kvc_ppl_params, user),
    Z(kvc_ppl_progress), F(kvc_ppl_progress, kv),
    Z(kvc_ppl_result), F(kvc_ppl_result, n_scored), F(kvc_ppl_result, compared), F(kvc_ppl_result, kv),
    F(kvc_ppl_result, seconds),
    Z(kvc_passkey_params), F(kvc_passkey_params, ctx), F(kvc_passkey_params, depths),
    F(kvc_passkey_params, filler_text), F(kvc_passkey_params, seed), F(kvc_passkey_params, progress),
    Z(kvc_passkey_progress), F(kvc_passkey_progress, generated), F(kvc_passkey_progress, kv),
    Z(kvc_passkey_result), F(kvc_passkey_result, seed), F(kvc_passkey_result, depths),
    F(kvc_passkey_result, depth_correct), F(kvc_passkey_result, kv), F(kvc_passkey_result, seconds),
    Z(kvc_calibrate_params), F(kvc_calibrate_params, max_tokens), F(kvc_calibrate_params, metric),
    F(kvc_calibrate_params, text_name), F(kvc_calibrate_params, progress), F(kvc_calibrate_params, user),
    Z(kvc_calibrate_progress), F(kvc_calibrate_progress, n_tokens_text), F(kvc_calibrate_progress, seconds),
    Z(kvc_calibrate_result), F(kvc_calibrate_result, n_tokens), F(kvc_calibrate_result, n_ctx),
    F(kvc_calibrate_result, sample_rows), F(kvc_calibrate_result, seconds),
    Z(kvc_bench_pair), F(kvc_bench_pair, v), F(kvc_bench_pair, preset),
    Z(kvc_bench_progress), F(kvc_bench_progress, kv_k), F(kvc_bench_progress, tps), F(kvc_bench_progress, n_ctx),
    Z(kvc_bench_params), F(kvc_bench_params, ctx), F(kvc_bench_params, pairs), F(kvc_bench_params, depths),
    F(kvc_bench_params, seed), F(kvc_bench_params, bandwidth), F(kvc_bench_params, progress),
    F(kvc_bench_params, user),
    Z(kvc_bench_cell), F(kvc_bench_cell, pp_median), F(kvc_bench_cell, peak_rss), F(kvc_bench_cell, bound_tps),
    Z(kvc_bench_result), F(kvc_bench_result, depths), F(kvc_bench_result, pairs), F(kvc_bench_result, bits),
    F(kvc_bench_result, kv_bytes), F(kvc_bench_result, synthetic), F(kvc_bench_result, max_rss),
    F(kvc_bench_result, cells),
    Z(kvc_plan_params), F(kvc_plan_params, ctx), F(kvc_plan_params, reserve_bytes), F(kvc_plan_params, ram_bytes),
    Z(kvc_plan_result), F(kvc_plan_result, bits_k), F(kvc_plan_result, kv_bytes_per_token_f16),
    F(kvc_plan_result, n_ctx_train), F(kvc_plan_result, weights_bytes), F(kvc_plan_result, overhead_per_token_bytes),
    F(kvc_plan_result, predicted_peak_bytes), F(kvc_plan_result, max_context),
    F(kvc_plan_result, capped_at_engine_limit), F(kvc_plan_result, fits_trained_ctx),
    F(kvc_plan_result, kv_bytes_at_max),
};

long kvc_abi_offset(const char *strct, const char *field) {
    if (!strct) return -1;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (strcmp(rows[i].strct, strct) != 0) continue;
        if (!field ? !rows[i].field : rows[i].field && !strcmp(rows[i].field, field)) return (long)rows[i].off;
    }
    return -1;
}
