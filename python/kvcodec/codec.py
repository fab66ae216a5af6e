"""Codecs on numpy arrays: the engine's codec table for one (layer, KV head, K or V) slot."""
from __future__ import annotations

from ctypes import POINTER, byref, c_float, c_uint8, c_void_p
from typing import Optional, Union

import numpy as np

from . import _lib as L
from ._lib import Error
from .model import Model


class Codec:
    """One KV codec slot, e.g. Codec("hdc:bits=3", 64, layer=2, head=1, role="k").

    encode(rows (n, d) float32) -> codes (n, row_bytes) uint8, the bytes the engine stores
    for those rows at positions pos0..; decode(codes) -> (n, d) float32;
    attention(q, key_codes, value_codes, positions) runs the cache's attention kernels on the
    codes. The slot seed derives from `seed` (the context seed, default as the CLI's) as in a
    context, so rows encode to the same bytes as in the engine's cache. calib is a calibration
    file (codecs such as pca need one); with model= it is checked against that model.
    """

    def __init__(self, spec: str, head_dim: int, layer: int = 0, head: int = 0, role: str = "k",
                 calib: Optional[str] = None, model: Optional[Model] = None, seed: Optional[int] = None,
                 rope_base: Optional[float] = None, isa: Optional[int] = None):
        if role not in ("k", "v"):
            raise Error(L.KVC_ERR_ARG, "codec role %r: expected 'k' or 'v'" % (role,))
        self.spec, self.head_dim, self.layer, self.head, self.role = spec, int(head_dim), int(layer), int(head), role
        self.calib, self.model, self._seed, self._rope, self._isa = calib, model, seed, rope_base, isa
        p = L.lib.kvc_codec_default_params()
        self._keep = [spec.encode()]
        p.spec = self._keep[0]
        p.head_dim = self.head_dim
        p.layer, p.head, p.is_value = self.layer, self.head, int(role == "v")
        if calib is not None:
            self._keep.append(str(calib).encode())
            p.calib = self._keep[-1]
        if model is not None:
            p.model = model._handle()
        if seed is not None:
            p.seed = int(seed)
        if rope_base is not None:
            p.rope_base = float(rope_base)
        if isa is not None:
            p.isa = int(isa)
        self._h = c_void_p()
        err = L.kvc_error()
        L.check(L.lib.kvc_codec_create(byref(p), byref(self._h), byref(err)), err)
        self.row_bytes = int(L.lib.kvc_codec_row_bytes(self._h))
        self.bits = 8.0 * self.row_bytes / self.head_dim
        self._sibling: Optional[Codec] = None

    def close(self) -> None:
        if getattr(self, "_h", None) and self._h.value:
            L.lib.kvc_codec_free(self._h)
            self._h = c_void_p()
        if getattr(self, "_sibling", None) is not None:
            self._sibling.close()

    def __del__(self):
        self.close()

    def __repr__(self) -> str:
        return "Codec(%r, %d, layer=%d, head=%d, role=%r): %d bytes/row, %.3f bits/element" % (
            self.spec, self.head_dim, self.layer, self.head, self.role, self.row_bytes, self.bits)

    def _rows(self, x: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        if a.ndim == 1:
            a = a.reshape(1, -1)
        if a.ndim != 2 or a.shape[1] != self.head_dim:
            raise Error(L.KVC_ERR_ARG, "codec %s: rows of shape %s: expected (n, %d)" % (self.spec, x.shape, self.head_dim))
        return a

    def _codes(self, c: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(np.asarray(c, dtype=np.uint8))
        if a.ndim == 1:
            a = a.reshape(1, -1)
        if a.ndim != 2 or a.shape[1] != self.row_bytes:
            raise Error(L.KVC_ERR_ARG, "codec %s: codes of shape %s: expected (n, %d)" % (self.spec, c.shape, self.row_bytes))
        return a

    def encode(self, rows: np.ndarray, pos0: int = 0) -> np.ndarray:
        """rows (n, d) of positions pos0.. -> codes (n, row_bytes) uint8."""
        x = self._rows(rows)
        out = np.zeros((x.shape[0], self.row_bytes), np.uint8)
        err = L.kvc_error()
        L.check(L.lib.kvc_codec_encode(self._h, x.ctypes.data_as(POINTER(c_float)), int(pos0), x.shape[0],
                                       out.ctypes.data_as(POINTER(c_uint8)), byref(err)), err)
        return out

    def decode(self, codes: np.ndarray, pos0: int = 0) -> np.ndarray:
        """codes (n, row_bytes) of positions pos0.. -> rows (n, d) float32."""
        c = self._codes(codes)
        out = np.zeros((c.shape[0], self.head_dim), np.float32)
        err = L.kvc_error()
        L.check(L.lib.kvc_codec_decode(self._h, c.ctypes.data_as(POINTER(c_uint8)), int(pos0), c.shape[0],
                                       out.ctypes.data_as(POINTER(c_float)), byref(err)), err)
        return out

    def _value_codec(self) -> "Codec":
        if self.role == "v":
            raise Error(L.KVC_ERR_ARG, "attention: call it on the key codec (role 'k'), or pass value_codec")
        if self._sibling is None:
            self._sibling = Codec(self.spec, self.head_dim, self.layer, self.head, "v", self.calib, self.model,
                                  self._seed, self._rope, self._isa)
        return self._sibling

    def attention(self, q: np.ndarray, key_codes: np.ndarray, value_codes: np.ndarray,
                  positions: Union[int, np.ndarray, range] = 0, value_codec: Optional["Codec"] = None,
                  scale: Optional[float] = None) -> np.ndarray:
        """Attention of queries q (n_q, d) (or (d,)) over encoded keys and values of
        consecutive positions (`positions`: the first one, or the whole range) with the
        engine's kernels: softmax(scale * score(q, k)) . v, scale 1/sqrt(d) by default.
        This codec encodes the keys; values use value_codec (default: this spec with role 'v').
        Returns (n_q, d) float32 (or (d,) for one query)."""
        vc = value_codec or self._value_codec()
        kc = self._codes(key_codes)
        vcodes = vc._codes(value_codes)
        if kc.shape[0] != vcodes.shape[0]:
            raise Error(L.KVC_ERR_ARG, "attention: %d key rows but %d value rows" % (kc.shape[0], vcodes.shape[0]))
        if isinstance(positions, (int, np.integer)):
            pos0 = int(positions)
        else:
            pa = np.asarray(list(positions) if isinstance(positions, range) else positions, dtype=np.int64).reshape(-1)
            if pa.size != kc.shape[0] or (pa.size and np.any(pa != pa[0] + np.arange(pa.size))):
                raise Error(L.KVC_ERR_ARG, "attention: positions must be consecutive, one per row (%d rows)" % kc.shape[0])
            pos0 = int(pa[0]) if pa.size else 0
        qa = np.asarray(q, dtype=np.float32)
        one = qa.ndim == 1
        qa = self._rows(qa)
        out = np.zeros_like(qa)
        err = L.kvc_error()
        L.check(L.lib.kvc_codec_attend(self._h, vc._h, qa.ctypes.data_as(POINTER(c_float)), qa.shape[0],
                                       kc.ctypes.data_as(POINTER(c_uint8)), vcodes.ctypes.data_as(POINTER(c_uint8)),
                                       pos0, kc.shape[0], float(scale or 0.0), out.ctypes.data_as(POINTER(c_float)),
                                       byref(err)), err)
        return out[0] if one else out


def codec_bits(spec: str, head_dim: int) -> float:
    """Bits per element of a codec spec at head dimension head_dim."""
    from ctypes import c_double
    b = c_double()
    err = L.kvc_error()
    L.check(L.lib.kvc_codec_bits(spec.encode(), int(head_dim), byref(b), byref(err)), err)
    return b.value


def codec_list() -> list:
    """Names of the codecs in the library's table."""
    return L.lib.kvc_codec_list().decode().split(", ")
