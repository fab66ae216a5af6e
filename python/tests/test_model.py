"""Model / Context basics: info, tokenize round trip, eval logits vs the CLI's greedy run,
truncate, mmap=False loads, and no leak over 1,000 create/free cycles (tracemalloc and process RSS)."""
import gc
import os
import tracemalloc

import numpy as np

import kvcodec
from conftest import run


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_package_is_installed_copy():
    # the tests run against the installed package and its own copy of the library
    assert "site-packages" in kvcodec.__file__ or os.environ.get("KVCODEC_LIB")


def test_info_and_tokenize(model, cli):
    info = model.info
    assert info["n_layer"] == 8 and info["head_dim"] == 64 and info["arch"] == "llama"
    ids = model.tokenize("Once upon a time")
    assert ids[0] == info["bos_id"] and ids.dtype == np.int32
    r = run([cli, "tokenize", "-m", model.path, "-p", "Once upon a time"])
    assert r.returncode == 0 and [int(x) for x in r.stdout.split()] == ids.tolist()
    assert model.detokenize(ids[1:]).strip() == "Once upon a time"


def test_eval_greedy_matches_cli(model, cli):
    prompt = "Once upon a time"
    r = run([cli, "run", "-m", model.path, "-p", prompt, "-n", "8", "--temp", "0"])
    assert r.returncode == 0, r.stderr
    c = kvcodec.Context(model, n_ctx=128)
    ids = list(model.tokenize(prompt))
    lg = c.eval(ids)
    assert lg.shape == (len(ids), model.info["n_vocab"]) and c.n_past == len(ids)
    out = []
    nxt = int(np.argmax(lg[-1]))
    for _ in range(8):
        out.append(nxt)
        nxt = int(np.argmax(c.eval([nxt], all_logits=False)))
    text = model.detokenize(out)
    assert text.strip() and text.strip() in r.stdout


def test_truncate_gives_same_logits(model):
    c = kvcodec.Context(model, n_ctx=64, kv_k="q8_0", kv_v="q8_0")
    ids = model.tokenize("The little dog ran to the park and")
    full = c.eval(ids)
    c.truncate(3)
    assert c.n_past == 3
    again = c.eval(ids[3:])
    np.testing.assert_allclose(again, full[3:], rtol=1e-5, atol=1e-5)


def test_no_mmap_same_logits(model, model_path):
    # the file read into memory (mmap=False) gives the mapped file's logits exactly
    ids = model.tokenize("The little dog ran to the park and")
    a = kvcodec.Context(model, n_ctx=32, threads=1).eval(ids)
    with kvcodec.Model(model_path, mmap=False) as m2:
        b = kvcodec.Context(m2, n_ctx=32, threads=1).eval(ids)
    assert np.array_equal(a, b)


def test_no_leak_over_1000_cycles(model_path):
    def cycle():
        m = kvcodec.Model(model_path)
        c = kvcodec.Context(m, n_ctx=32, threads=1)
        c.close()
        m.close()
    for _ in range(50):
        cycle()
    gc.collect()
    tracemalloc.start()
    snap0 = tracemalloc.take_snapshot()
    rss0 = rss_bytes()
    for _ in range(1000):
        cycle()
    gc.collect()
    snap1 = tracemalloc.take_snapshot()
    rss1 = rss_bytes()
    tracemalloc.stop()
    py_growth = sum(s.size_diff for s in snap1.compare_to(snap0, "filename"))
    assert py_growth < 64 * 1024, "Python heap grew %d bytes over 1000 cycles" % py_growth
    assert rss1 - rss0 < 8 * 1024 * 1024, "RSS grew %d bytes over 1000 cycles" % (rss1 - rss0)
