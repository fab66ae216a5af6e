"""Shared fixtures of the Python package's tests: the repository paths, the embedded model,
the CLI and the engine-side helper (build/tests/codec_ref) from the build being tested."""
import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("KVC_BUILD", REPO / "build"))
if not BUILD.is_absolute():
    BUILD = REPO / BUILD
MODEL = REPO / "models" / "kvref-q4_0.gguf"


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def model_path():
    return str(MODEL)


@pytest.fixture(scope="session")
def model():
    import kvcodec
    return kvcodec.Model(str(MODEL))


@pytest.fixture(scope="session")
def cli():
    b = os.environ.get("KVC_BIN")
    p = pathlib.Path(b) if b else BUILD / "kvcodec"
    if not p.is_absolute():
        p = REPO / p
    assert p.is_file(), "%s is missing: run make" % p
    return str(p)


@pytest.fixture(scope="session")
def codec_ref():
    p = BUILD / "tests" / "codec_ref"
    assert p.is_file(), "%s is missing: run make tests" % p
    return str(p)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)
