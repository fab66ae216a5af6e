"""ctypes declarations of libkvcodec's public API (include/kvcodec.h).

The library is found, in this order: $KVCODEC_LIB (a path to libkvcodec.so), the copy
installed inside this package, then the system loader's search path. Every struct mirror is
checked against the loaded library's own layout (kvc_abi_offset) before use, so a package
and a library built from different sources fail loudly instead of reading garbage.
"""
from __future__ import annotations

import ctypes
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int,
                    c_long, c_size_t, c_uint8, c_uint64, c_void_p, c_int32, c_int64)
from pathlib import Path


class Error(Exception):
    """An error from libkvcodec: `status` is the pinned status code (kvc_status, e.g. 5 for
    KVC_ERR_ARG), `status_name` its name, `message` the library's one-line message."""

    def __init__(self, status: int, message: str):
        self.status = int(status)
        self.status_name = STATUS_NAMES.get(self.status, "KVC_ERR_%d" % self.status)
        self.message = message
        super().__init__("%s: %s" % (self.status_name, message))


STATUS_NAMES = {0: "KVC_OK", 1: "KVC_ERR_IO", 2: "KVC_ERR_FORMAT", 3: "KVC_ERR_UNSUPPORTED",
                4: "KVC_ERR_NOMEM", 5: "KVC_ERR_ARG", 6: "KVC_ERR_RANGE", 7: "KVC_ERR_CALIB",
                8: "KVC_ERR_INTERNAL"}
KVC_ERR_ARG = 5
KVC_ERR_UNSUPPORTED = 3
MAX_DEPTHS = 64


def _find_library() -> str:
    env = os.environ.get("KVCODEC_LIB")
    if env:
        if not os.path.isfile(env):
            raise Error(1, "KVCODEC_LIB=%s: no such file" % env)
        return env
    here = Path(__file__).resolve().parent / "libkvcodec.so"
    if here.is_file():
        return str(here)
    return "libkvcodec.so"


_path = _find_library()
try:
    lib = ctypes.CDLL(_path)
except OSError as e:  # pragma: no cover - depends on the installation
    raise ImportError("kvcodec: cannot load %s (%s); set KVCODEC_LIB to the path of libkvcodec.so"
                      % (_path, e)) from None
lib_path = _path


SPEC_MAX = 1024  # KVC_SPEC_MAX: bytes of a KV codec spec string, NUL included (kvcodec.h)


class kvc_error(Structure):
    _fields_ = [("status", c_int), ("msg", c_char * 512)]


lib.kvc_abi_offset.argtypes = [c_char_p, c_char_p]
lib.kvc_abi_offset.restype = c_long


def _abi(strct: str, field: str | None = None) -> int:
    return lib.kvc_abi_offset(strct.encode(), field.encode() if field else None)


def _mirror(name: str, fields: list, optional: dict | None = None) -> type:
    """A ctypes Structure for `struct name` with `fields`; optional fields (name -> type) are
    placed where the library has them. Raises Error when the layout differs from the library's."""
    fl = list(fields)
    for fname, ftype in (optional or {}).items():
        off = _abi(name, fname)
        if off < 0:
            continue
        # insert before the first known field the library places after it
        pos = len(fl)
        for i, (n, _) in enumerate(fl):
            o = _abi(name, n)
            if o > off:
                pos = i
                break
        fl.insert(pos, (fname, ftype))
    cls = type(name, (Structure,), {"_fields_": fl})
    want = _abi(name)
    if want != ctypes.sizeof(cls):
        raise ImportError("kvcodec: %s: struct %s is %d bytes in the library, %d in the Python mirror "
                          "(package and library from different sources?)" % (lib_path, name, want, ctypes.sizeof(cls)))
    for n, _ in fl:
        o = _abi(name, n)
        if o >= 0 and o != getattr(cls, n).offset:
            raise ImportError("kvcodec: %s: %s.%s at offset %d in the library, %d in the Python mirror"
                              % (lib_path, name, n, o, getattr(cls, n).offset))
    return cls


kvc_model_info = _mirror("kvc_model_info", [
    ("arch", c_char * 32), ("name", c_char * 64),
    ("n_layer", c_int), ("n_embd", c_int), ("n_head", c_int), ("n_head_kv", c_int), ("head_dim", c_int),
    ("n_ff", c_int), ("n_vocab", c_int), ("n_ctx_train", c_int),
    ("rope_base", c_float), ("rms_eps", c_float), ("tied_output", c_int),
    ("rope_neox", c_int), ("rope_freq_factors", c_int), ("rope_freq_scale", c_float), ("qkv_bias", c_int),
    ("n_params", c_uint64), ("weights_bytes", c_uint64), ("decode_read_bytes", c_uint64),
    ("file_bytes", c_uint64), ("bos_id", c_int), ("eos_id", c_int)])

kvc_ctx_params = _mirror("kvc_ctx_params", [
    ("n_ctx", c_int), ("n_batch", c_int), ("n_threads", c_int), ("kv_k", c_char_p), ("kv_v", c_char_p),
    ("kv_sinks", c_int), ("kv_recent", c_int), ("kv_calib", c_char_p), ("seed", c_uint64), ("isa", c_int)],
    optional={"kv_preset": c_char_p, "kv_window": c_char_p})
HAS_KV_PRESET = _abi("kvc_ctx_params", "kv_preset") >= 0
HAS_KV_WINDOW = _abi("kvc_ctx_params", "kv_window") >= 0

kvc_kv_info = _mirror("kvc_kv_info", [
    ("spec_k", c_char * SPEC_MAX), ("spec_v", c_char * SPEC_MAX), ("bits_k", c_double), ("bits_v", c_double),
    ("bits_per_element", c_double), ("bytes_per_token", c_double), ("kv_bytes", c_uint64),
    ("n_ctx", c_int), ("sinks", c_int), ("recent", c_int)],
    optional={"spec_window": c_char * 32})

kvc_codec_params = _mirror("kvc_codec_params", [
    ("spec", c_char_p), ("head_dim", c_int), ("layer", c_int), ("head", c_int), ("is_value", c_int),
    ("rope_base", c_float), ("seed", c_uint64), ("calib", c_char_p), ("model", c_void_p), ("isa", c_int)])

kvc_ppl_progress = _mirror("kvc_ppl_progress", [
    ("chunk", c_int), ("n_chunks", c_int), ("n_chunks_available", c_int), ("n_tokens_text", c_int),
    ("per_chunk", c_int), ("compare", c_int), ("ppl", c_double), ("ppl_base", c_double),
    ("kld_mean", c_double), ("top1", c_double), ("chunk_seconds", c_double), ("kv", POINTER(kvc_kv_info))])
PPL_PROGRESS_FN = CFUNCTYPE(None, c_void_p, POINTER(kvc_ppl_progress))

kvc_ppl_params = _mirror("kvc_ppl_params", [
    ("ctx", kvc_ctx_params), ("chunks", c_int), ("compare", c_int), ("progress", PPL_PROGRESS_FN),
    ("user", c_void_p)])

kvc_ppl_result = _mirror("kvc_ppl_result", [
    ("ctx", c_int), ("chunks", c_int), ("n_chunks_available", c_int), ("n_tokens_text", c_int),
    ("n_scored", c_long), ("ppl", c_double), ("ppl_stderr", c_double), ("compared", c_int),
    ("ppl_base", c_double), ("ppl_change_pct", c_double), ("kld_mean", c_double), ("kld_stderr", c_double),
    ("kld_p99", c_double), ("top1_agree", c_double), ("kv", kvc_kv_info), ("seconds", c_double)])

kvc_passkey_progress = _mirror("kvc_passkey_progress", [
    ("depth_index", c_int), ("trial", c_int), ("depth", c_double), ("key", c_int), ("n_prompt", c_int),
    ("ok", c_int), ("generated", c_char_p), ("depth_correct", c_int), ("depth_done", c_int),
    ("seconds", c_double), ("haystack_tokens", c_int), ("kv", POINTER(kvc_kv_info))])
PASSKEY_PROGRESS_FN = CFUNCTYPE(None, c_void_p, POINTER(kvc_passkey_progress))

kvc_passkey_params = _mirror("kvc_passkey_params", [
    ("ctx", kvc_ctx_params), ("trials", c_int), ("n_depths", c_int), ("depths", c_double * MAX_DEPTHS),
    ("filler_text", c_char_p), ("filler_len", c_size_t), ("n_gen", c_int), ("seed", c_uint64),
    ("progress", PASSKEY_PROGRESS_FN), ("user", c_void_p)])

kvc_passkey_result = _mirror("kvc_passkey_result", [
    ("ctx", c_int), ("n_gen", c_int), ("trials", c_int), ("haystack_tokens", c_int), ("books", c_int),
    ("n_ctx_train", c_int), ("seed", c_uint64), ("correct", c_int), ("total", c_int), ("accuracy", c_double),
    ("n_depths", c_int), ("depths", c_double * MAX_DEPTHS), ("depth_correct", c_int * MAX_DEPTHS),
    ("kv", kvc_kv_info), ("seconds", c_double)])

# kvc_calibrate arrived after kvc_passkey: a library without it leaves these None and
# kvcodec.calibrate raises Error(KVC_ERR_UNSUPPORTED).
HAS_CALIBRATE = hasattr(lib, "kvc_calibrate") and _abi("kvc_calibrate_params") > 0
kvc_calibrate_progress = kvc_calibrate_params = kvc_calibrate_result = CALIBRATE_PROGRESS_FN = None
if HAS_CALIBRATE:
    kvc_calibrate_progress = _mirror("kvc_calibrate_progress", [
        ("done", c_int64), ("total", c_int64), ("n_tokens_text", c_int64), ("seconds", c_double)])
    CALIBRATE_PROGRESS_FN = CFUNCTYPE(None, c_void_p, POINTER(kvc_calibrate_progress))
    kvc_calibrate_params = _mirror("kvc_calibrate_params", [
        ("n_ctx", c_int), ("n_batch", c_int), ("n_threads", c_int), ("max_tokens", c_int64),
        ("sample_rows", c_int), ("metric", c_int), ("text_name", c_char_p), ("progress", CALIBRATE_PROGRESS_FN),
        ("user", c_void_p)])
    kvc_calibrate_result = _mirror("kvc_calibrate_result", [
        ("n_tokens_text", c_int64), ("n_tokens", c_int64), ("n_ctx", c_int), ("n_layer", c_int),
        ("n_head_kv", c_int), ("head_dim", c_int), ("metric", c_int), ("sample_rows", c_int),
        ("seconds", c_double)])
BENCH_MAX_PAIRS, BENCH_MAX_DEPTHS = 16, 32
kvc_bench_pair = _mirror("kvc_bench_pair", [("k", c_char * SPEC_MAX), ("v", c_char * SPEC_MAX), ("preset", c_char * 256)])

kvc_bench_progress = _mirror("kvc_bench_progress", [
    ("event", c_int), ("pair", c_int), ("kv_k", c_char_p), ("kv_v", c_char_p), ("done", c_int), ("total", c_int),
    ("synthetic", c_int), ("rep", c_int), ("depth", c_int), ("is_tg", c_int), ("n_tokens", c_int),
    ("tps", c_double), ("seconds", c_double), ("n_ctx", c_int)])
BENCH_PROGRESS_FN = CFUNCTYPE(None, c_void_p, POINTER(kvc_bench_progress))

kvc_bench_params = _mirror("kvc_bench_params", [
    ("ctx", kvc_ctx_params), ("n_pairs", c_int), ("pairs", kvc_bench_pair * BENCH_MAX_PAIRS), ("n_depths", c_int),
    ("depths", c_int * BENCH_MAX_DEPTHS), ("reps", c_int), ("pp", c_int), ("tg", c_int), ("seed", c_uint64),
    ("fill_synthetic", c_int), ("fill_prefix", c_int), ("bandwidth", c_double), ("progress", BENCH_PROGRESS_FN),
    ("user", c_void_p)])

kvc_bench_cell = _mirror("kvc_bench_cell", [
    ("pp_tps", POINTER(c_double)), ("tg_tps", POINTER(c_double)), ("pp_median", c_double), ("pp_sd", c_double),
    ("tg_median", c_double), ("tg_sd", c_double), ("peak_rss", c_uint64), ("bandwidth", c_double),
    ("bytes_per_token", c_double), ("bound_tps", c_double)])

kvc_bench_result = _mirror("kvc_bench_result", [
    ("n_pairs", c_int), ("n_depths", c_int), ("reps", c_int), ("pp", c_int), ("tg", c_int), ("n_ctx", c_int),
    ("n_ctx_train", c_int), ("n_threads", c_int), ("fill_prefix", c_int), ("depths", c_int * BENCH_MAX_DEPTHS),
    ("pairs", kvc_bench_pair * BENCH_MAX_PAIRS), ("bits", c_double * BENCH_MAX_PAIRS),
    ("kv_bytes", c_uint64 * BENCH_MAX_PAIRS), ("kv_bytes_per_token", c_double * BENCH_MAX_PAIRS),
    ("synthetic", c_int * BENCH_MAX_PAIRS), ("peak_scoped", c_int), ("bandwidth_given", c_int),
    ("max_rss", c_uint64), ("cells", POINTER(kvc_bench_cell))])

# kvc_plan_memory (`kvcodec plan`'s memory model); None with a library from before it.
HAS_PLAN = hasattr(lib, "kvc_plan_memory") and _abi("kvc_plan_params") > 0
kvc_plan_params = kvc_plan_result = None
if HAS_PLAN:
    kvc_plan_params = _mirror("kvc_plan_params", [
        ("ctx", kvc_ctx_params), ("reserve_bytes", c_uint64), ("ram_bytes", c_uint64)])
    kvc_plan_result = _mirror("kvc_plan_result", [
        ("bits_k", c_double), ("bits_v", c_double), ("kv_bytes_per_token", c_double),
        ("kv_bytes_per_token_f16", c_double), ("kv_fixed_bytes", c_double), ("kv_bytes_trained_ctx", c_double),
        ("n_ctx_train", c_int), ("weights_bytes", c_double), ("overhead_fixed_bytes", c_double),
        ("overhead_per_token_bytes", c_double), ("overhead_bytes_at_ctx", c_double), ("kv_bytes_at_ctx", c_double),
        ("predicted_peak_bytes", c_double), ("max_context", c_int64), ("capped_at_engine_limit", c_int),
        ("fits_trained_ctx", c_int), ("overhead_bytes_at_max", c_double), ("kv_bytes_at_max", c_double)])

def _fn(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


E = POINTER(kvc_error)
_fn("kvc_status_str", c_char_p, c_int)
_fn("kvc_model_load", c_int, c_char_p, POINTER(c_void_p), E)
_fn("kvc_model_load_ex", c_int, c_char_p, ctypes.c_uint, POINTER(c_void_p), E)
KVC_LOAD_NO_MMAP = 1
_fn("kvc_model_free", None, c_void_p)
_fn("kvc_model_get_info", POINTER(kvc_model_info), c_void_p)
_fn("kvc_tokenize", c_int, c_void_p, c_char_p, c_size_t, c_int, POINTER(POINTER(c_int32)), POINTER(c_int), E)
_fn("kvc_token_to_text", c_int, c_void_p, c_int32, c_char_p, c_int)
_fn("kvc_ctx_default_params", kvc_ctx_params)
_fn("kvc_ctx_create", c_int, c_void_p, POINTER(kvc_ctx_params), POINTER(c_void_p), E)
_fn("kvc_ctx_free", None, c_void_p)
_fn("kvc_ctx_reset", None, c_void_p)
_fn("kvc_ctx_truncate", c_int, c_void_p, c_int, E)
_fn("kvc_ctx_n_past", c_int, c_void_p)
_fn("kvc_eval", c_int, c_void_p, POINTER(c_int32), c_int, c_int, E)
_fn("kvc_get_logits", POINTER(c_float), c_void_p)
_fn("kvc_ctx_kv_info", None, c_void_p, POINTER(kvc_kv_info))
_fn("kvc_codec_bits", c_int, c_char_p, c_int, POINTER(c_double), E)
_fn("kvc_codec_list", c_char_p)
_fn("kvc_free", None, c_void_p)
_fn("kvc_codec_default_params", kvc_codec_params)
_fn("kvc_codec_create", c_int, POINTER(kvc_codec_params), POINTER(c_void_p), E)
_fn("kvc_codec_free", None, c_void_p)
_fn("kvc_codec_row_bytes", c_size_t, c_void_p)
_fn("kvc_codec_head_dim", c_int, c_void_p)
_fn("kvc_codec_encode", c_int, c_void_p, POINTER(c_float), c_int, c_int, POINTER(c_uint8), E)
_fn("kvc_codec_decode", c_int, c_void_p, POINTER(c_uint8), c_int, c_int, POINTER(c_float), E)
_fn("kvc_codec_attend", c_int, c_void_p, c_void_p, POINTER(c_float), c_int, POINTER(c_uint8), POINTER(c_uint8),
    c_int, c_int, c_float, POINTER(c_float), E)
_fn("kvc_ppl_default_params", kvc_ppl_params)
_fn("kvc_perplexity", c_int, c_void_p, c_char_p, c_size_t, POINTER(kvc_ppl_params), POINTER(kvc_ppl_result), E)
_fn("kvc_ppl_json", c_void_p, POINTER(kvc_ppl_result), c_char_p, c_char_p)
_fn("kvc_passkey_default_params", kvc_passkey_params)
_fn("kvc_passkey", c_int, c_void_p, POINTER(kvc_passkey_params), POINTER(kvc_passkey_result), E)
_fn("kvc_passkey_json", c_void_p, POINTER(kvc_passkey_result), c_char_p, c_char_p)
if HAS_PLAN:
    _fn("kvc_plan_default_params", kvc_plan_params)
    _fn("kvc_plan_memory", c_int, c_void_p, POINTER(kvc_plan_params), POINTER(kvc_plan_result), E)
if HAS_CALIBRATE:
    _fn("kvc_calibrate_default_params", kvc_calibrate_params)
    _fn("kvc_calibrate", c_int, c_void_p, c_char_p, c_size_t, c_char_p, POINTER(kvc_calibrate_params),
        POINTER(kvc_calibrate_result), E)
_fn("kvc_bench_default_params", kvc_bench_params)
_fn("kvc_bench", c_int, c_void_p, POINTER(kvc_bench_params), POINTER(kvc_bench_result), E)
_fn("kvc_bench_result_free", None, POINTER(kvc_bench_result))


def check(status: int, err: kvc_error) -> None:
    """Raise Error(status, message) when a call failed."""
    if status != 0:
        msg = err.msg.decode("utf-8", "replace") or lib.kvc_status_str(status).decode()
        raise Error(status, msg)


def take_string(ptr: int | None) -> str:
    """Copy a malloc'ed C string from the library and free it."""
    if not ptr:
        raise Error(4, "out of memory")
    try:
        return ctypes.string_at(ptr).decode("utf-8")
    finally:
        lib.kvc_free(ptr)
