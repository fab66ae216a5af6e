"""kvcodec.perplexity and kvcodec.passkey against the CLI's --json on the same inputs: the same
keys and the same printed values (one implementation, src/eval/)."""
import json

import kvcodec
from conftest import REPO, run

TEXT = str(REPO / "docs" / "codecs.md")


def same(py, cli):
    a = {k: v for k, v in py.items() if k != "seconds"}
    b = {k: v for k, v in cli.items() if k != "seconds"}
    assert a == b


def test_ppl_compare_equals_cli(cli, model_path):
    args = ["ppl", "-m", model_path, "-f", TEXT, "-c", "128", "--chunks", "3", "--kv-k", "q4_0", "--kv-v", "q8_0",
            "--compare", "--json", "-q"]
    r = run([cli, *args])
    assert r.returncode == 0, r.stderr
    want = json.loads(r.stdout)
    got = kvcodec.perplexity(model_path, TEXT, ctx=128, chunks=3, kv_k="q4_0", kv_v="q8_0", compare=True)
    assert "kld_mean" in got and got["chunks"] == 3 and got["n_tokens"] == 3 * 63
    same(got, want)


def test_ppl_default_compare_and_progress(cli, model):
    r = run([cli, "ppl", "-m", model.path, "-f", TEXT, "-c", "64", "--chunks", "2", "--json", "-q"])
    assert r.returncode == 0, r.stderr
    seen = []
    got = kvcodec.perplexity(model, TEXT, ctx=64, chunks=2, compare=None, progress=seen.append)
    same(got, json.loads(r.stdout))
    assert "kld_mean" not in got  # f16/f16: no comparison by default
    assert [s["chunk"] for s in seen] == [0, 1, 2]
    assert abs(seen[-1]["ppl"] - got["ppl"]) < 1e-5 * got["ppl"]


def test_passkey_equals_cli(cli, model_path):
    r = run([cli, "passkey", "-m", model_path, "-c", "256", "--trials", "2", "--depths", "0.25,0.75", "--json", "-q"])
    assert r.returncode == 0, r.stderr
    got = kvcodec.passkey(model_path, ctx=256, trials=2, depths=[0.25, 0.75])
    same(got, json.loads(r.stdout))
    assert got["total"] == 4
