/* cmd_preset.c - `kvcodec preset`: write a preset file, a calibration that also names one
 * cache setting (codecs, sinks, recent window, window codec), checked by building that cache on the
 * model first; `--kv-preset FILE` then runs exactly that setting. */
#include "cli.h"
#include "kv/calib_internal.h"

#include <stdio.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: kvcodec preset [-m MODEL] --kv-calib CALIB --kv-k SPEC --kv-v SPEC [--kv-sinks N]\n"
            "                      [--kv-recent N] [--kv-window SPEC] [-c CTX] [--note TEXT] -o FILE\n\n"
            "Writes FILE: the calibration CALIB plus the setting, with its bits per element at -c CTX\n"
            "(default 2048; sink / recent rows in their window codec and scales counted). The setting is checked by\n"
            "building the cache on MODEL first. Use it with --kv-preset FILE (ppl, run, passkey,\n"
            "bench --codecs \"preset=FILE\", info).\n");
    ctx_opts_help(f, 1);
    fprintf(f, "  --note TEXT          how the setting was chosen (stored, printed by info)\n"
               "  -o, --output FILE    preset file to write\n");
}

int cmd_preset(int argc, char **argv) {
    struct args a = {argc, 1, argv, "preset"};
    struct ctx_opts o;
    ctx_opts_init(&o);
    const char *outp = NULL, *note = "";
    for (; a.i < argc; a.i++) {
        if (arg_flag(&a, "--help") || arg_flag(&a, "-h")) { help(stdout); return 0; }
        int r = ctx_opts_parse(&o, &a);
        if (r < 0) return 2;
        if (r) continue;
        if (arg_str(&a, "-o", "--output", &outp) || arg_str(&a, "--note", NULL, &note)) continue;
        return arg_unknown(&a);
    }
    if (!outp) return usage_error(a.cmd, "-o FILE is required (where to write the preset)");
    if (!o.p.kv_calib) return usage_error(a.cmd, "--kv-calib FILE is required (the preset carries the calibration)");
    if (o.preset_path)
        return usage_error(a.cmd, "--kv-preset: give the setting with --kv-k/--kv-v/--kv-sinks/--kv-recent/--kv-window");
    if (strlen(o.p.kv_k) >= KVC_SPEC_MAX || strlen(o.p.kv_v) >= KVC_SPEC_MAX || strlen(note) >= 256)
        return usage_error(a.cmd, "--kv-k / --kv-v longer than %d characters or --note longer than 255", KVC_SPEC_MAX - 1);
    kvc_model *m;
    if (load_model(a.cmd, o.model, o.load_flags, &m)) return 1;
    kvc_error e = {0};
    kvc_ctx *c = NULL;
    struct kvc_calib *cal = NULL;
    int rc = 0;
    if (kvc_ctx_create(m, &o.p, &c, &e) || kvc_calib_load_file(o.p.kv_calib, &cal, &e)) {
        rc = lib_error(a.cmd, &e);
        goto done;
    }
    struct kvc_kv_info kv;
    kvc_ctx_kv_info(c, &kv);
    cal->has_preset = 1;
    memset(&cal->preset, 0, sizeof cal->preset);
    snprintf(cal->preset.kv_k, sizeof cal->preset.kv_k, "%s", o.p.kv_k);
    snprintf(cal->preset.kv_v, sizeof cal->preset.kv_v, "%s", o.p.kv_v);
    snprintf(cal->preset.note, sizeof cal->preset.note, "%s", note);
    snprintf(cal->preset.kv_window, sizeof cal->preset.kv_window, "%s", kv.spec_window);
    cal->preset.sinks = o.p.kv_sinks;
    cal->preset.recent = o.p.kv_recent;
    cal->preset.ctx = o.p.n_ctx;
    cal->preset.bits_per_element = kv.bits_per_element;
    if (kvc_calib_save(cal, outp, &e)) {
        rc = lib_error(a.cmd, &e);
        goto done;
    }
    printf("kvcodec preset: wrote %s: K %s, V %s, sinks %d, recent %d in %s, %.3f bits/element at -c %d\n", outp,
           o.p.kv_k, o.p.kv_v, o.p.kv_sinks, o.p.kv_recent, kv.spec_window, kv.bits_per_element, o.p.n_ctx);
done:
    kvc_calib_free(cal);
    kvc_ctx_free(c);
    kvc_model_free(m);
    return rc;
}
