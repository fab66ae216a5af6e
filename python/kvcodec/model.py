"""Model and Context: a GGUF model and a KV cache of chosen codecs, as in the C API."""
from __future__ import annotations

import ctypes
from ctypes import POINTER, byref, c_float, c_int, c_int32, c_void_p
from typing import Optional, Sequence

import numpy as np

from . import _lib as L
from ._lib import Error


class Model:
    """A GGUF Llama-family model, memory-mapped, or with ``mmap=False`` read into memory in
    2 MiB pages where the kernel allows (faster decode, slower start; llama.cpp's --no-mmap).

    >>> m = Model("models/kvref-q4_0.gguf")
    >>> m.info["n_layer"], m.tokenize("Hello")
    """

    def __init__(self, path: str, mmap: bool = True):
        self.path = str(path)
        self._h = c_void_p()
        err = L.kvc_error()
        flags = 0 if mmap else L.KVC_LOAD_NO_MMAP
        L.check(L.lib.kvc_model_load_ex(self.path.encode(), flags, byref(self._h), byref(err)), err)

    def close(self) -> None:
        """Free the model now (also done when it is garbage-collected)."""
        if getattr(self, "_h", None) and self._h.value:
            L.lib.kvc_model_free(self._h)
            self._h = c_void_p()

    def __del__(self):
        self.close()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _handle(self) -> c_void_p:
        if not self._h.value:
            raise Error(L.KVC_ERR_ARG, "model %s is closed" % self.path)
        return self._h

    @property
    def info(self) -> dict:
        """Architecture and sizes from the GGUF metadata (struct kvc_model_info as a dict)."""
        p = L.lib.kvc_model_get_info(self._handle()).contents
        out = {}
        for name, _ in p._fields_:
            v = getattr(p, name)
            out[name] = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        return out

    def tokenize(self, text: str, add_bos: bool = True) -> np.ndarray:
        """Token ids (int32 array) of text, with BOS first when add_bos."""
        b = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        ids = POINTER(c_int32)()
        n = c_int()
        err = L.kvc_error()
        L.check(L.lib.kvc_tokenize(self._handle(), b, len(b), int(add_bos), byref(ids), byref(n), byref(err)), err)
        try:
            return np.ctypeslib.as_array(ids, shape=(n.value,)).copy() if n.value else np.zeros(0, np.int32)
        finally:
            L.lib.kvc_free(ids)

    def detokenize(self, ids: Sequence[int]) -> str:
        """Text of token ids as the CLI prints it (byte tokens joined into UTF-8)."""
        buf = ctypes.create_string_buffer(256)
        out = bytearray()
        n_vocab = self.info["n_vocab"]
        for t in ids:
            t = int(t)
            if not 0 <= t < n_vocab:
                raise Error(6, "token id %d outside 0..%d" % (t, n_vocab - 1))
            k = L.lib.kvc_token_to_text(self._handle(), t, buf, len(buf))
            out += buf.raw[:k]
        return out.decode("utf-8", "replace")


def ctx_params(n_ctx: int = 2048, kv_k: str = "f16", kv_v: str = "f16", kv_sinks: int = 0, kv_recent: int = 0,
               kv_calib: Optional[str] = None, kv_preset: Optional[str] = None, threads: Optional[int] = None,
               batch: Optional[int] = None, seed: Optional[int] = None, keep: Optional[list] = None,
               kv_window: Optional[str] = None):
    """struct kvc_ctx_params from the library's defaults and the given overrides. `keep`
    collects the encoded strings that must outlive the struct. kv_window: codec of the sink and
    recent rows (None: the library's f16)."""
    p = L.lib.kvc_ctx_default_params()
    keep = keep if keep is not None else []
    def s(v):
        b = str(v).encode()
        keep.append(b)
        return b
    p.n_ctx = int(n_ctx)
    p.kv_k = s(kv_k)
    p.kv_v = s(kv_v)
    p.kv_sinks = int(kv_sinks)
    p.kv_recent = int(kv_recent)
    if kv_calib is not None:
        p.kv_calib = s(kv_calib)
    if kv_preset is not None:
        if not L.HAS_KV_PRESET:
            raise Error(L.KVC_ERR_UNSUPPORTED, "kv_preset=%r: this libkvcodec (%s) has no kv_preset field in "
                        "struct kvc_ctx_params" % (kv_preset, L.lib_path))
        p.kv_preset = s(kv_preset)
    if kv_window is not None:
        if not L.HAS_KV_WINDOW:
            raise Error(L.KVC_ERR_UNSUPPORTED, "kv_window=%r: this libkvcodec (%s) has no kv_window field in "
                        "struct kvc_ctx_params" % (kv_window, L.lib_path))
        p.kv_window = s(kv_window)
    if threads is not None:
        p.n_threads = int(threads)
    if batch is not None:
        p.n_batch = int(batch)
    if seed is not None:
        p.seed = int(seed)
    return p


class Context:
    """A KV cache of n_ctx positions over a model, with codecs for keys and values.

    Defaults are the CLI's (threads 2, batch 512, f16/f16). `eval(tokens)` runs tokens at
    positions n_past.. and returns their logits as a float32 array (n, n_vocab), or only the
    last row's (n_vocab,) with all_logits=False.
    """

    def __init__(self, model: Model, kv_k: str = "f16", kv_v: str = "f16", kv_sinks: int = 0, kv_recent: int = 0,
                 kv_calib: Optional[str] = None, kv_preset: Optional[str] = None, n_ctx: int = 2048,
                 threads: Optional[int] = None, batch: Optional[int] = None, seed: Optional[int] = None,
                 kv_window: Optional[str] = None):
        self.model = model
        self._h = c_void_p()
        self._keep: list = []
        p = ctx_params(n_ctx, kv_k, kv_v, kv_sinks, kv_recent, kv_calib, kv_preset, threads, batch, seed, self._keep,
                       kv_window)
        self.n_ctx = p.n_ctx
        self.n_batch = p.n_batch
        err = L.kvc_error()
        L.check(L.lib.kvc_ctx_create(model._handle(), byref(p), byref(self._h), byref(err)), err)
        self._n_vocab = model.info["n_vocab"]
        self._last_n = 0

    def close(self) -> None:
        """Free the cache now (also done when it is garbage-collected)."""
        if getattr(self, "_h", None) and self._h.value:
            L.lib.kvc_ctx_free(self._h)
            self._h = c_void_p()

    def __del__(self):
        self.close()

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _handle(self) -> c_void_p:
        if not self._h.value:
            raise Error(L.KVC_ERR_ARG, "context is closed")
        return self._h

    @property
    def n_past(self) -> int:
        """Positions filled so far."""
        return L.lib.kvc_ctx_n_past(self._handle())

    def reset(self) -> None:
        """Empty the cache."""
        L.lib.kvc_ctx_reset(self._handle())

    def truncate(self, n: int) -> None:
        """Keep the first n positions; the next eval goes on at position n."""
        err = L.kvc_error()
        L.check(L.lib.kvc_ctx_truncate(self._handle(), int(n), byref(err)), err)

    def eval(self, tokens: Sequence[int], all_logits: bool = True) -> np.ndarray:
        """Evaluate tokens (split into batches of n_batch); returns logits (n, n_vocab) float32,
        or the last token's (n_vocab,) when all_logits is False."""
        t = np.ascontiguousarray(np.asarray(tokens, dtype=np.int32).reshape(-1))
        if t.size == 0:
            raise Error(L.KVC_ERR_ARG, "eval: no tokens")
        outs = []
        err = L.kvc_error()
        for i in range(0, t.size, self.n_batch):
            part = t[i:i + self.n_batch]
            keep = all_logits or i + self.n_batch >= t.size
            L.check(L.lib.kvc_eval(self._handle(), part.ctypes.data_as(POINTER(c_int32)), part.size, int(all_logits),
                                   byref(err)), err)
            if keep:
                rows = part.size if all_logits else 1
                lg = L.lib.kvc_get_logits(self._handle())
                outs.append(np.ctypeslib.as_array(lg, shape=(rows, self._n_vocab)).copy())
        out = np.concatenate(outs, axis=0)
        return out if all_logits else out[-1]

    def logits(self) -> np.ndarray:
        """Logits of the last token evaluated (n_vocab,) float32."""
        lg = L.lib.kvc_get_logits(self._handle())
        return np.ctypeslib.as_array(lg, shape=(1, self._n_vocab))[0].copy()

    @property
    def kv_info(self) -> dict:
        """KV memory accounting (struct kvc_kv_info as a dict)."""
        k = L.kvc_kv_info()
        L.lib.kvc_ctx_kv_info(self._handle(), byref(k))
        return {n: (getattr(k, n).decode() if isinstance(getattr(k, n), bytes) else getattr(k, n)) for n, _ in k._fields_}
