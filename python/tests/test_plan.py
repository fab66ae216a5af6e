"""kvcodec.plan (kvc_plan_memory) against `kvcodec plan --json`: the CLI prints what the same
library call returns, for --ram rows and --ctx peaks, with sinks/recent, batch, threads and reserve."""
import json

import pytest

import kvcodec
from conftest import run

ARGS = dict(kv_sinks=4, kv_recent=32, batch=64, threads=3, reserve=5 << 20)


def _cli(cli, model_path, *extra):
    r = run([cli, "plan", "-m", model_path, "--codecs", "q8_0/q4_0", "--kv-sinks", "4", "--kv-recent", "32",
             "-b", "64", "-t", "3", "--reserve", "5M", "--json", *extra])
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_plan_ram_rows_equal_cli(cli, model_path, model):
    rows = _cli(cli, model_path, "--ram", "64M,1G,100T")
    assert len(rows) == 3
    for row in rows:
        p = kvcodec.plan(model, "q8_0", "q4_0", ram=row["ram_bytes"], **ARGS)
        assert p["max_context"] == row["max_context"]
        assert p["capped_at_engine_limit"] == row["capped_at_engine_limit"]
        assert p["fits_trained_ctx"] == row["fits_trained_ctx"]
        for k in ("kv_bytes_per_token", "kv_fixed_bytes", "kv_bytes_trained_ctx", "weights_bytes",
                  "overhead_fixed_bytes", "overhead_per_token_bytes"):
            assert round(p[k]) == row[k], k
        assert round(p["overhead_bytes_at_max"]) == row["overhead_bytes"]
        assert round(p["kv_bytes_at_max"]) == row["kv_bytes_at_max"]
        assert p["bits_k"] == 8.5 and p["bits_v"] == 4.5
    assert [r["capped_at_engine_limit"] for r in rows] == [False, False, True]


def test_plan_ctx_peaks_equal_cli(cli, model_path, model):
    rows = _cli(cli, model_path, "--ctx", "1,300,5000")
    assert [r["n_ctx"] for r in rows] == [1, 300, 5000]
    for row in rows:
        p = kvcodec.plan(model, "q8_0", "q4_0", ctx=row["n_ctx"], **ARGS)
        assert round(p["predicted_peak_bytes"]) == row["predicted_peak_bytes"]
        assert round(p["overhead_bytes_at_ctx"]) == row["overhead_bytes"]
        assert round(p["kv_bytes_at_ctx"]) == row["kv_bytes"]
        assert p["max_context"] == 0  # no budget given


def test_plan_errors(model):
    with pytest.raises(kvcodec.Error) as e:
        kvcodec.plan(model, "nosuch", "f16", ram=1 << 30)
    assert e.value.status == 5 and "nosuch" in str(e.value)
    with pytest.raises(kvcodec.Error) as e:
        kvcodec.plan(model, ctx=(1 << 24) + 1)
    assert e.value.status == 5 and "context" in str(e.value)
