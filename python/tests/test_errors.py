"""Errors raise kvcodec.Error with the library's status and one-line message."""
import numpy as np
import pytest

import kvcodec


def test_bad_spec():
    with pytest.raises(kvcodec.Error) as e:
        kvcodec.Codec("q9_9", 64)
    assert e.value.status == 5 and e.value.status_name == "KVC_ERR_ARG"
    assert "unknown KV codec 'q9_9'" in e.value.message and "\n" not in e.value.message


def test_bad_spec_in_context(model):
    with pytest.raises(kvcodec.Error) as e:
        kvcodec.Context(model, kv_k="hdc:bits=9", n_ctx=64)
    assert e.value.status == 5 and "bits" in e.value.message


def test_missing_file(tmp_path):
    p = tmp_path / "nope.gguf"
    with pytest.raises(kvcodec.Error) as e:
        kvcodec.Model(str(p))
    assert e.value.status == 1 and str(p) in e.value.message


def test_malformed_gguf(tmp_path):
    p = tmp_path / "bad.gguf"
    p.write_bytes(b"GGUF" + bytes([3, 0, 0, 0]) + b"\xff" * 40)
    with pytest.raises(kvcodec.Error) as e:
        kvcodec.Model(str(p))
    assert e.value.status == 2 and str(p) in e.value.message


def test_missing_text(model, tmp_path):
    with pytest.raises(kvcodec.Error) as e:
        kvcodec.perplexity(model, str(tmp_path / "none.txt"), ctx=64)
    assert e.value.status == 1


def test_short_text(model, tmp_path):
    p = tmp_path / "short.txt"
    p.write_text("Too short.")
    with pytest.raises(kvcodec.Error) as e:
        kvcodec.perplexity(model, str(p), ctx=64)
    assert e.value.status == 6 and "fewer than one chunk of 64" in e.value.message


def test_codec_shape_errors():
    c = kvcodec.Codec("q8_0", 64)
    with pytest.raises(kvcodec.Error):
        c.encode(np.zeros((2, 32), np.float32))
    with pytest.raises(kvcodec.Error):
        c.decode(np.zeros((2, 3), np.uint8))


def test_kv_preset_passed_through(model, tmp_path):
    # the library has kvc_ctx_params.kv_preset: a preset file that is not there is the
    # library's own one-line I/O error naming it (not ignored, not a Python-side error)
    assert kvcodec.HAS_KV_PRESET
    p = tmp_path / "none.preset"
    with pytest.raises(kvcodec.Error) as e:
        kvcodec.Context(model, kv_preset=str(p), n_ctx=64)
    assert e.value.status == 1 and str(p) in e.value.message and "\n" not in e.value.message


def test_calibrate_errors(model, tmp_path, repo):
    # an evaluation text is refused by the library (the CLI's rule), a missing text names its path,
    # a bad metric names the choices
    ev = tmp_path / "wikitext-2-test.raw"
    ev.write_text("some text " * 50)
    with pytest.raises(kvcodec.Error) as e:
        kvcodec.calibrate(model, str(ev), str(tmp_path / "c.gguf"), tokens=64, ctx=32)
    assert e.value.status == 5 and "evaluation file" in e.value.message
    assert not (tmp_path / "c.gguf").exists()
    with pytest.raises(kvcodec.Error) as e:
        kvcodec.calibrate(model, str(tmp_path / "none.txt"), str(tmp_path / "c.gguf"))
    assert e.value.status == 1 and "none.txt" in e.value.message
    with pytest.raises(kvcodec.Error) as e:
        kvcodec.calibrate(model, str(repo / "docs" / "codecs.md"), str(tmp_path / "c.gguf"), metric="pca")
    assert e.value.status == 5 and "attn" in e.value.message
    with pytest.raises(kvcodec.Error) as e:
        kvcodec.calibrate(model, str(repo / "docs" / "codecs.md"), str(tmp_path / "c.gguf"), ctx=1)
    assert e.value.status == 5 and "n_ctx 1" in e.value.message


def test_kv_window(model):
    # the window codec reaches the library: q8_0 sink / recent rows take fewer bytes than f16
    # ones (34 vs 64 bytes per 32 elements), kv_info names it; a codec with state is refused
    assert kvcodec.HAS_KV_WINDOW
    f16 = kvcodec.Context(model, kv_k="q4_0", kv_v="q4_0", kv_sinks=4, kv_recent=28, n_ctx=64).kv_info
    q8 = kvcodec.Context(model, kv_k="q4_0", kv_v="q4_0", kv_sinks=4, kv_recent=28, n_ctx=64, kv_window="q8_0").kv_info
    assert f16["spec_window"] == "f16" and q8["spec_window"] == "q8_0"
    # 64 positions: codec rows for the 60 past the sinks (the recent ones too: the ring is a copy)
    # plus 4 + 28 window rows of w bits per element
    assert abs(f16["bits_per_element"] - (60 * 4.5 + 32 * 16) / 64) < 1e-9
    assert abs(q8["bits_per_element"] - (60 * 4.5 + 32 * 8.5) / 64) < 1e-9
    with pytest.raises(kvcodec.Error) as e:
        kvcodec.Context(model, kv_sinks=2, n_ctx=64, kv_window="hdc:bits=3")
    assert "--kv-window" in e.value.message
