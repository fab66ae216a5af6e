#!/usr/bin/env python3
"""make_corpus.py - writes the seed corpus for fuzz/fuzz_gguf.c into fuzz/corpus/.

Small generated GGUF files (v2 and v3) that exercise every metadata value type, string and
numeric arrays, general.alignment, and tensors of several types; and, when
../shared/models/stories260K.gguf is there (or $KVC_SHARED/models/...), its first 4 KiB (a
real header, truncated) and its metadata alone with n_tensors = 0 (a real tokenizer, no
weights: the model itself is never copied into the repository). Deterministic: running it again gives the same
bytes.

    python3 fuzz/make_corpus.py [outdir]
"""
import os
import struct
import sys

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
       BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
# tensor types: id -> (block elements, bytes per block)
T_F32, T_F16, T_Q4_0, T_Q8_0, T_Q4_K, T_Q6_K, T_I8, T_BF16 = 0, 1, 2, 8, 12, 14, 24, 30
TYPES = {T_F32: (1, 4), T_F16: (1, 2), T_Q4_0: (32, 18), T_Q8_0: (32, 34), T_Q4_K: (256, 144),
         T_Q6_K: (256, 210), T_I8: (1, 1), T_BF16: (1, 2)}


def s(x):
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("<Q", len(b)) + b


def value(t, v):
    if t == STRING:
        return s(v)
    if t == ARRAY:
        et, items = v
        out = struct.pack("<IQ", et, len(items))
        return out + b"".join(value(et, i) for i in items)
    return struct.pack(FMT[t], v)


def gguf(kvs, tensors, version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, [ne...], type)] laid out in order."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += s(k) + struct.pack("<I", t) + value(t, v)
    off, infos, blobs = 0, b"", []
    for i, (name, ne, t) in enumerate(tensors):
        blck, bpb = TYPES[t]
        nel = 1
        for d in ne:
            nel *= d
        nbytes = nel // blck * bpb
        infos += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        infos += struct.pack("<IQ", t, off)
        blob = bytes((i * 37 + j * 11) & 0xFF for j in range(nbytes))
        pad = (-nbytes) % alignment if i + 1 < len(tensors) else 0
        blobs.append(blob + b"\0" * pad)
        off += nbytes + pad
    out += infos
    out += b"\0" * ((-len(out)) % alignment)
    return out + b"".join(blobs)


def small(version):
    kvs = [
        ("general.architecture", STRING, "llama"),
        ("t.u8", U8, 200), ("t.i8", I8, -100), ("t.u16", U16, 60000), ("t.i16", I16, -30000),
        ("t.u32", U32, 4000000000), ("t.i32", I32, -2000000000), ("t.f32", F32, 1.5),
        ("t.bool", BOOL, True), ("t.str", STRING, "hello, gguf"), ("t.u64", U64, 10**12),
        ("t.i64", I64, -5), ("t.f64", F64, 2.25),
        ("t.arr_i32", ARRAY, (I32, [1, -2, 3, -4, 5])),
        ("t.arr_f32", ARRAY, (F32, [0.5, 1.5, -2.5])),
        ("t.arr_str", ARRAY, (STRING, ["a", "", "bc", "<s>"])),
        ("t.arr_u8", ARRAY, (U8, [])),
        ("t.arr_u64", ARRAY, (U64, [0, 2**63, 2**64 - 1])),
        ("general.alignment", U32, 64),
    ]
    tensors = [("w.f32", [4, 3], T_F32), ("w.f16", [8, 2, 1], T_F16), ("w.q80", [64, 2], T_Q8_0)]
    return gguf(kvs, tensors, version, 64)


def llama_tiny():
    n_vocab, n_embd, n_ff = 32, 32, 64
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % i for i in range(8)] + \
           ["\u2581" + c for c in "abcdefghijklmnopqrstu"]
    assert len(toks) == n_vocab
    kvs = [
        ("general.architecture", STRING, "llama"), ("general.name", STRING, "tiny"),
        ("llama.block_count", U32, 1), ("llama.context_length", U32, 64),
        ("llama.embedding_length", U32, n_embd), ("llama.feed_forward_length", U32, n_ff),
        ("llama.attention.head_count", U32, 4), ("llama.attention.head_count_kv", U32, 2),
        ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5), ("llama.rope.freq_base", F32, 10000.0),
        ("llama.rope.dimension_count", U32, 8), ("general.file_type", U32, 2),
        ("tokenizer.ggml.model", STRING, "llama"),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, toks)),
        ("tokenizer.ggml.scores", ARRAY, (F32, [-float(i) for i in range(n_vocab)])),
        ("tokenizer.ggml.token_type", ARRAY, (I32, [2, 3, 3] + [6] * 8 + [1] * 21)),
        ("tokenizer.ggml.bos_token_id", U32, 1), ("tokenizer.ggml.eos_token_id", U32, 2),
        ("tokenizer.ggml.add_bos_token", BOOL, True),
    ]
    tensors = [
        ("token_embd.weight", [n_embd, n_vocab], T_Q8_0), ("output_norm.weight", [n_embd], T_F32),
        ("blk.0.attn_norm.weight", [n_embd], T_F32), ("blk.0.attn_q.weight", [n_embd, n_embd], T_Q4_0),
        ("blk.0.attn_k.weight", [n_embd, 16], T_F16), ("blk.0.attn_v.weight", [n_embd, 16], T_BF16),
        ("blk.0.attn_output.weight", [n_embd, n_embd], T_Q8_0),
        ("blk.0.ffn_gate.weight", [256, 1], T_Q4_K), ("blk.0.ffn_up.weight", [256, 1], T_Q6_K),
        ("blk.0.ffn_down.weight", [n_ff, n_embd, 1, 1], T_I8),
    ]
    return gguf(kvs, tensors, 3, 32)


def kv_section_end(b):
    """Offset where the metadata of a GGUF file ends (its tensor infos begin)."""
    off = 24
    sizes = {U8: 1, I8: 1, U16: 2, I16: 2, U32: 4, I32: 4, F32: 4, BOOL: 1, U64: 8, I64: 8, F64: 8}

    def skip(t, off):
        if t == STRING:
            return off + 8 + struct.unpack_from("<Q", b, off)[0]
        if t == ARRAY:
            et, n = struct.unpack_from("<IQ", b, off)
            off += 12
            if et != STRING:
                return off + n * sizes[et]
            for _ in range(n):
                off = skip(STRING, off)
            return off
        return off + sizes[t]

    for _ in range(struct.unpack_from("<Q", b, 16)[0]):
        off = skip(STRING, off)
        t = struct.unpack_from("<I", b, off)[0]
        off = skip(t, off + 4)
    return off


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus")
    os.makedirs(out, exist_ok=True)
    seeds = {
        "small-v3.gguf": small(3),
        "small-v2.gguf": small(2),
        "header-only.gguf": gguf([], [], 3),
        "kv-only-v2.gguf": gguf([("general.alignment", U32, 1), ("k", STRING, "v")], [], 2),
        "align1.gguf": gguf([("general.alignment", U32, 1)],
                            [("a", [3], T_F16), ("b", [5], T_I8), ("c", [32], T_Q4_0)], 3, 1),
        "llama-tiny.gguf": llama_tiny(),
    }
    shared = os.environ.get("KVC_SHARED", os.path.join(here, "..", "..", "shared"))
    model = os.path.join(shared, "models", "stories260K.gguf")
    if os.path.exists(model):
        with open(model, "rb") as fp:
            head = fp.read(65536)
        seeds["stories260K-head4k.gguf"] = head[:4096]
        # the real metadata (tokenizer included, no weights) as a file with no tensors
        meta = bytearray(head[:kv_section_end(head)])
        meta[8:16] = struct.pack("<Q", 0)
        seeds["stories260K-meta.gguf"] = bytes(meta)
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as fp:
            fp.write(data)
        print("%-26s %6d bytes" % (name, len(data)))


if __name__ == "__main__":
    main()
