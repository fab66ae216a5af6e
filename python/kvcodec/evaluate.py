"""Evaluation through the library's one implementation (src/eval/): perplexity with the
comparison against an f16 cache, pass-key retrieval, calibration."""
from __future__ import annotations

import json
import os
import subprocess
from ctypes import byref
from typing import Callable, Optional, Sequence, Union

from . import _lib as L
from ._lib import Error
from .model import Model, ctx_params

ModelArg = Union[Model, str]


def _model(m: ModelArg) -> Model:
    return m if isinstance(m, Model) else Model(m)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise Error(1, "%s: cannot open: %s" % (path, e.strerror)) from None


def perplexity(model: ModelArg, text_path: str, ctx: int = 2048, chunks: Optional[int] = None, kv_k: str = "f16",
               kv_v: str = "f16", kv_sinks: int = 0, kv_recent: int = 0, kv_calib: Optional[str] = None,
               kv_preset: Optional[str] = None, threads: Optional[int] = None, batch: Optional[int] = None,
               compare: Optional[bool] = False, progress: Optional[Callable[[dict], None]] = None,
               kv_window: Optional[str] = None) -> dict:
    """Perplexity of `text_path` in chunks of `ctx` tokens, as `kvcodec ppl`.

    Returns the dict `kvcodec ppl --json` prints (same keys, same rounded values): ppl,
    ppl_stderr, n_tokens, ctx, chunks, bits_k, bits_v, bits_per_element, kv_bytes_per_token,
    and with compare (None = the CLI's default: when the cache is not f16/f16) ppl_base,
    ppl_change_pct, kld_mean, kld_stderr, kld_p99, top1_agree. `progress` is called with a
    dict after tokenizing (chunk 0) and after every chunk.
    """
    m = _model(model)
    text = _read(text_path)
    keep: list = []
    p = L.lib.kvc_ppl_default_params()
    p.ctx = ctx_params(ctx, kv_k, kv_v, kv_sinks, kv_recent, kv_calib, kv_preset, threads, batch, None, keep,
                       kv_window)
    p.chunks = int(chunks or 0)
    p.compare = -1 if compare is None else int(bool(compare))
    cb = None
    if progress is not None:
        def _cb(_user, pr):
            c = pr.contents
            progress({"chunk": c.chunk, "n_chunks": c.n_chunks, "ppl": c.ppl, "ppl_base": c.ppl_base,
                      "kld_mean": c.kld_mean, "top1": c.top1, "seconds": c.chunk_seconds})
        cb = L.PPL_PROGRESS_FN(_cb)
        p.progress = cb
    r = L.kvc_ppl_result()
    err = L.kvc_error()
    L.check(L.lib.kvc_perplexity(m._handle(), text, len(text), byref(p), byref(r), byref(err)), err)
    return json.loads(L.take_string(L.lib.kvc_ppl_json(byref(r), m.path.encode(), str(text_path).encode())))


def passkey(model: ModelArg, ctx: int = 2048, trials: int = 10, depths: Sequence[float] = (0.1, 0.5, 0.9),
            filler_file: Optional[str] = None, n_gen: int = 8, seed: int = 1234, kv_k: str = "f16", kv_v: str = "f16",
            kv_sinks: int = 0, kv_recent: int = 0, kv_calib: Optional[str] = None, kv_preset: Optional[str] = None,
            threads: Optional[int] = None, batch: Optional[int] = None,
            progress: Optional[Callable[[dict], None]] = None, kv_window: Optional[str] = None) -> dict:
    """Pass-key retrieval trials, as `kvcodec passkey`; returns the dict `passkey --json` prints.

    filler_file None uses the repeated filler; a path gives book haystacks cut from that text
    (`--filler books --filler-file PATH`). `progress` gets a dict after every trial.
    """
    m = _model(model)
    keep: list = []
    p = L.lib.kvc_passkey_default_params()
    p.ctx = ctx_params(ctx, kv_k, kv_v, kv_sinks, kv_recent, kv_calib, kv_preset, threads, batch, None, keep,
                       kv_window)
    p.trials = int(trials)
    depths = list(depths)
    if not 1 <= len(depths) <= L.MAX_DEPTHS:
        raise Error(L.KVC_ERR_ARG, "passkey: %d depths: need 1..%d" % (len(depths), L.MAX_DEPTHS))
    p.n_depths = len(depths)
    for i, d in enumerate(depths):
        p.depths[i] = float(d)
    if filler_file is not None:
        text = _read(filler_file)
        keep.append(text)
        p.filler_text = text
        p.filler_len = len(text)
    p.n_gen = int(n_gen)
    p.seed = int(seed)
    cb = None
    if progress is not None:
        def _cb(_user, pr):
            c = pr.contents
            progress({"depth": c.depth, "trial": c.trial, "key": c.key, "ok": bool(c.ok),
                      "generated": c.generated.decode("utf-8", "replace"), "seconds": c.seconds})
        cb = L.PASSKEY_PROGRESS_FN(_cb)
        p.progress = cb
    r = L.kvc_passkey_result()
    err = L.kvc_error()
    L.check(L.lib.kvc_passkey(m._handle(), byref(p), byref(r), byref(err)), err)
    ff = str(filler_file).encode() if filler_file is not None else None
    return json.loads(L.take_string(L.lib.kvc_passkey_json(byref(r), m.path.encode(), ff)))


_METRICS = {"attn": 3, "keys": 1, "values": 2, "plain": 0}


def calibrate(model: ModelArg, text_path: str, out_path: str, tokens: Optional[int] = None,
              ctx: Optional[int] = None, threads: Optional[int] = None, batch: Optional[int] = None,
              samples: Optional[int] = None, metric: str = "attn",
              progress: Optional[Callable[[dict], None]] = None) -> dict:
    """Fit a calibration file for `model` on `text_path` and write it to `out_path`, as
    `kvcodec calibrate -m MODEL -f TEXT -o OUT` (same call, same file).

    tokens (default 131072), ctx (chunk length, default 2048), threads (2), batch (512),
    samples (rows per slot for the quantizer steps, 4096) and metric ('attn', 'keys',
    'values' or 'plain') default as the CLI's flags. Evaluation texts are refused (Error with
    status KVC_ERR_ARG). `progress` gets a dict {done, total, n_tokens_text, seconds} after
    tokenizing (done 0) and after every batch. Returns a dict: path, n_tokens_text, n_tokens,
    n_ctx, n_layer, n_head_kv, head_dim, metric, sample_rows, seconds.
    """
    if not L.HAS_CALIBRATE:
        raise Error(L.KVC_ERR_UNSUPPORTED, "calibrate: this libkvcodec (%s) has no public calibration call "
                    "(kvc_calibrate); run `python -m kvcodec calibrate -m MODEL -f TEXT -o FILE`" % L.lib_path)
    if metric not in _METRICS:
        raise Error(L.KVC_ERR_ARG, "calibrate: metric %r: expected one of %s" % (metric, ", ".join(_METRICS)))
    m = _model(model)
    text = _read(text_path)
    p = L.lib.kvc_calibrate_default_params()
    if tokens is not None:
        p.max_tokens = int(tokens)
    if ctx is not None:
        p.n_ctx = int(ctx)
    if threads is not None:
        p.n_threads = int(threads)
    if batch is not None:
        p.n_batch = int(batch)
    if samples is not None:
        p.sample_rows = int(samples)
    p.metric = _METRICS[metric]
    name = os.path.basename(str(text_path)).encode()
    p.text_name = name
    cb = None
    if progress is not None:
        def _cb(_user, pr):
            c = pr.contents
            progress({"done": c.done, "total": c.total, "n_tokens_text": c.n_tokens_text, "seconds": c.seconds})
        cb = L.CALIBRATE_PROGRESS_FN(_cb)
        p.progress = cb
    r = L.kvc_calibrate_result()
    err = L.kvc_error()
    L.check(L.lib.kvc_calibrate(m._handle(), text, len(text), str(out_path).encode(), byref(p), byref(r),
                                byref(err)), err)
    out = {"path": str(out_path)}
    out.update({f: getattr(r, f) for f, _ in L.kvc_calibrate_result._fields_})
    return out


def cli_path() -> str:
    """Path of the kvcodec CLI: $KVCODEC_CLI, the copy installed in this package, else `kvcodec`."""
    env = os.environ.get("KVCODEC_CLI")
    if env:
        return env
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "kvcodec")
    return here if os.path.isfile(here) else "kvcodec"


def run_cli(args: Sequence[str], **kw) -> subprocess.CompletedProcess:
    """Run the kvcodec CLI with args (subprocess.run keywords pass through)."""
    return subprocess.run([cli_path(), *args], **kw)


_PLAN_FIELDS = ("bits_k", "bits_v", "kv_bytes_per_token", "kv_bytes_per_token_f16", "kv_fixed_bytes",
                "kv_bytes_trained_ctx", "n_ctx_train", "weights_bytes", "overhead_fixed_bytes",
                "overhead_per_token_bytes", "overhead_bytes_at_ctx", "kv_bytes_at_ctx", "predicted_peak_bytes",
                "max_context", "capped_at_engine_limit", "fits_trained_ctx", "overhead_bytes_at_max",
                "kv_bytes_at_max")


def plan(model: ModelArg, kv_k: str = "f16", kv_v: str = "f16", ctx: int = 0, ram: int = 0,
         kv_sinks: int = 0, kv_recent: int = 0, kv_calib: Optional[str] = None, kv_preset: Optional[str] = None,
         threads: Optional[int] = None, batch: Optional[int] = None, reserve: Optional[int] = None,
         kv_window: Optional[str] = None) -> dict:
    """Memory plan of a KV codec pair, as `kvcodec plan` computes it (kvc_plan_memory).

    ctx > 0: the predicted peak at that context (predicted_peak_bytes, overhead_bytes_at_ctx,
    kv_bytes_at_ctx); ram > 0 (bytes): the longest context that fits (max_context,
    capped_at_engine_limit, fits_trained_ctx, overhead_bytes_at_max, kv_bytes_at_max). reserve
    (bytes, default 16 MiB), threads (2) and batch (512) as the CLI's flags. Returns a dict of
    struct kvc_plan_result's fields (bytes as floats, counts as ints, flags as bools).
    """
    if not L.HAS_PLAN:
        raise Error(L.KVC_ERR_UNSUPPORTED, "plan: this libkvcodec (%s) has no kvc_plan_memory" % L.lib_path)
    m = _model(model)
    keep: list = []
    p = L.lib.kvc_plan_default_params()
    p.ctx = ctx_params(ctx, kv_k, kv_v, kv_sinks, kv_recent, kv_calib, kv_preset, threads, batch, None, keep,
                       kv_window)
    p.ram_bytes = int(ram)
    if reserve is not None:
        p.reserve_bytes = int(reserve)
    r = L.kvc_plan_result()
    err = L.kvc_error()
    L.check(L.lib.kvc_plan_memory(m._handle(), byref(p), byref(r), byref(err)), err)
    out = {f: getattr(r, f) for f in _PLAN_FIELDS}
    out["capped_at_engine_limit"] = bool(out["capped_at_engine_limit"])
    out["fits_trained_ctx"] = bool(out["fits_trained_ctx"])
    return out
