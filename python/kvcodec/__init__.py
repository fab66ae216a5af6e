"""kvcodec: run GGUF Llama-family models with a compressed KV cache, and study KV codecs on
numpy arrays. Pure ctypes over libkvcodec.so (found through $KVCODEC_LIB, else the copy
installed in this package); numpy is the only dependency.

    import kvcodec
    m = kvcodec.Model("models/kvref-q4_0.gguf")
    r = kvcodec.perplexity(m, "wiki.txt", ctx=512, chunks=4, kv_k="q4_0", kv_v="q4_0", compare=True)
    c = kvcodec.Codec("hdc:bits=3", 64, role="k")
    codes = c.encode(rows)          # (n, 64) float32 -> (n, row_bytes) uint8

Errors raise kvcodec.Error with the library's status and one-line message.
"""
from ._lib import Error, HAS_KV_PRESET, HAS_KV_WINDOW, lib_path
from .codec import Codec, codec_bits, codec_list
from .evaluate import calibrate, passkey, perplexity, plan, run_cli
from .model import Context, Model

__version__ = "0.1.0"
__all__ = ["Error", "Model", "Context", "Codec", "perplexity", "passkey", "calibrate", "plan", "codec_bits", "codec_list",
           "run_cli", "lib_path", "HAS_KV_PRESET", "HAS_KV_WINDOW"]
