"""kvcodec.Codec on numpy arrays against the engine: the code bytes a KV cache stores for the
same rows (build/tests/codec_ref runs kv_cache_store and the forward pass's attention), and
attention outputs within float rounding; decode against the input rows; attention of the
lossless-ish f32 codec against float64 numpy."""
import numpy as np
import pytest

import kvcodec
from conftest import run

SPECS = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_0h", "hdc:bits=3", "hdc:bits=2", "hdc-select:k=16,inner=q8_0"]


def engine(codec_ref, tmp_path, spec_k, spec_v, d, layer, head, k, v, q, calib=None):
    inp = tmp_path / "in.f32"
    np.concatenate([k.ravel(), v.ravel(), q.ravel()]).astype(np.float32).tofile(inp)
    out = tmp_path / "out"
    r = run([codec_ref, spec_k, spec_v, str(d), str(layer), str(head), str(len(k)), str(len(q)), str(inp), str(out)]
            + ([calib] if calib else []))
    assert r.returncode == 0, r.stderr
    kc = np.fromfile(str(out) + ".k", np.uint8)
    vc = np.fromfile(str(out) + ".v", np.uint8)
    att = np.fromfile(str(out) + ".attn", np.float32).reshape(len(q), d)
    return kc, vc, att


@pytest.mark.parametrize("spec", SPECS)
def test_codec_equals_engine(codec_ref, tmp_path, spec):
    rng = np.random.default_rng(7)
    d, n, nq, layer, head = 64, 300, 3, 2, 1
    k = rng.standard_normal((n, d)).astype(np.float32)
    v = rng.standard_normal((n, d)).astype(np.float32)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    kc_e, vc_e, att_e = engine(codec_ref, tmp_path, spec, spec, d, layer, head, k, v, q)
    ck = kvcodec.Codec(spec, d, layer=layer, head=head, role="k")
    cv = kvcodec.Codec(spec, d, layer=layer, head=head, role="v")
    kc, vc = ck.encode(k), cv.encode(v)
    assert kc.shape == (n, ck.row_bytes)
    assert np.array_equal(kc.ravel(), kc_e), "key bytes differ from the engine's cache"
    assert np.array_equal(vc.ravel(), vc_e), "value bytes differ from the engine's cache"
    att = ck.attention(q, kc, vc, positions=range(n), value_codec=cv)
    np.testing.assert_allclose(att, att_e, rtol=1e-5, atol=1e-6)
    # the default value codec is the same spec with role 'v'
    np.testing.assert_array_equal(ck.attention(q, kc, vc, 0), att)


@pytest.mark.parametrize("spec,tol", [("f32", 0), ("f16", 1e-3), ("bf16", 1e-2), ("q8_0", 0.03), ("q4_0", 0.5)])
def test_decode_close_to_input(spec, tol):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 64)).astype(np.float32)
    c = kvcodec.Codec(spec, 64)
    y = c.decode(c.encode(x))
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.abs(y - x).max() <= tol


def test_f32_attention_against_float64():
    rng = np.random.default_rng(3)
    d, n = 64, 700  # three blocks of the online softmax
    k, v = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    q = rng.standard_normal((5, d))
    c = kvcodec.Codec("f32", d)
    got = c.attention(q.astype(np.float32), c.encode(k), kvcodec.Codec("f32", d, role="v").encode(v), 0)
    kk, vv, qq = k.astype(np.float32).astype(np.float64), v.astype(np.float32).astype(np.float64), q.astype(np.float32)
    s = qq.astype(np.float64) @ kk.T / np.sqrt(d)
    w = np.exp(s - s.max(axis=1, keepdims=True))
    ref = (w / w.sum(axis=1, keepdims=True)) @ vv
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_codec_bits_and_list():
    assert kvcodec.codec_bits("q8_0", 64) == 8.5
    assert "hdc" in kvcodec.codec_list()
    assert kvcodec.Codec("hdc:bits=3", 64).bits == pytest.approx(kvcodec.codec_bits("hdc:bits=3", 64))


@pytest.fixture(scope="module")
def small_calib(cli, tmp_path_factory, repo):
    """A small calibration of the embedded model (256 tokens) for the pca codec."""
    out = tmp_path_factory.mktemp("calib") / "kvref-q4_0-small.gguf"
    r = run([cli, "calibrate", "-m", str(repo / "models" / "kvref-q4_0.gguf"), "-f", str(repo / "docs" / "codecs.md"),
             "-o", str(out), "--tokens", "256", "-c", "128"])
    assert r.returncode == 0, r.stderr
    return str(out)


@pytest.mark.parametrize("flags,kw", [([], {}),
                                      (["--metric", "plain", "-t", "1", "--samples", "512", "-b", "64"],
                                       {"metric": "plain", "threads": 1, "samples": 512, "batch": 64})])
def test_calibrate_equals_cli(cli, small_calib, model, repo, tmp_path, flags, kw):
    """kvcodec.calibrate writes the very file `kvcodec calibrate` writes (one implementation:
    kvc_calibrate; the run is deterministic, so the bytes are equal)."""
    text = str(repo / "docs" / "codecs.md")
    ref = small_calib
    if flags:
        ref = str(tmp_path / "cli.gguf")
        r = run([cli, "calibrate", "-m", str(repo / "models" / "kvref-q4_0.gguf"), "-f", text, "-o", ref,
                 "--tokens", "256", "-c", "128", "-q", *flags])
        assert r.returncode == 0, r.stderr
    events = []
    out = tmp_path / "py.gguf"
    res = kvcodec.calibrate(model, text, str(out), tokens=256, ctx=128, progress=events.append, **kw)
    assert out.read_bytes() == open(ref, "rb").read()
    assert res["path"] == str(out) and res["n_tokens"] == 256 and res["n_ctx"] == 128
    assert res["n_layer"] == model.info["n_layer"] and res["head_dim"] == model.info["head_dim"]
    assert res["n_tokens_text"] > 256 and res["metric"] == (0 if flags else 3)
    assert events[0]["done"] == 0 and events[0]["total"] == 256
    assert events[-1]["done"] == 256 and all(a["done"] < b["done"] for a, b in zip(events, events[1:]))


@pytest.mark.parametrize("spec", ["pca:bits=3", "pca:bits=4", "pca:rank=32,coef=q8"])
def test_pca_equals_engine(codec_ref, tmp_path, small_calib, model, spec):
    rng = np.random.default_rng(11)
    d, n, nq, layer, head = 64, 280, 3, 5, 1
    k = rng.standard_normal((n, d)).astype(np.float32)
    v = rng.standard_normal((n, d)).astype(np.float32)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    kc_e, vc_e, att_e = engine(codec_ref, tmp_path, spec, spec, d, layer, head, k, v, q, small_calib)
    ck = kvcodec.Codec(spec, d, layer=layer, head=head, role="k", calib=small_calib, model=model)
    cv = kvcodec.Codec(spec, d, layer=layer, head=head, role="v", calib=small_calib, model=model)
    kc, vc = ck.encode(k), cv.encode(v)
    assert np.array_equal(kc.ravel(), kc_e) and np.array_equal(vc.ravel(), vc_e)
    np.testing.assert_allclose(ck.attention(q, kc, vc, 0, value_codec=cv), att_e, rtol=1e-5, atol=1e-6)


def test_pca_needs_calib():
    with pytest.raises(kvcodec.Error) as e:
        kvcodec.Codec("pca:bits=3", 64)
    assert e.value.status == 7 and "calib" in e.value.message
