#!/usr/bin/env bash
# serve_figures.sh - the README's serve figures in one command (a few minutes on 2 cores):
# for kvref (the embedded models/kvref-q4_0.gguf) and the qwen2.5-0.5b shape (random weights,
# `kvcodec synth --preset qwen2.5-0.5b --type q4_0`, cached in build/models/), how many
# sequences of CTX positions fit in a BUDGET MiB KV pool (the bytes `kvcodec serve` charges for
# a full sequence) and the aggregate decode tokens/s of the server's engine step
# (kvc_eval_batch) with 1, 4 and 16 active sequences at DEPTH positions, f16 against the best
# codec at or under 3.5 bits per element. Prints one Markdown table.
#   scripts/serve_figures.sh [THREADS] [STEPS] [REPS]      (defaults 2 8 3)
# Environment: CODECS (default "f16;hdc:bits=3"), CTX (4096), DEPTH (4096), BUDGET_MIB (1024).
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-2}; STEPS=${2:-8}; REPS=${3:-3}
CODECS=${CODECS:-"f16;hdc:bits=3"}; CTX=${CTX:-4096}; DEPTH=${DEPTH:-4096}; BUDGET=${BUDGET_MIB:-1024}
make -s -j2 build/kvcodec build/bench/bench_serve >&2
QWEN=build/models/qwen2.5-0.5b-synth-q4_0.gguf
if [ ! -f "$QWEN" ]; then
    mkdir -p build/models
    build/kvcodec synth --preset qwen2.5-0.5b --type q4_0 -o "$QWEN" >&2
fi
echo "KV pool of $BUDGET MiB, sequences of $CTX positions; aggregate decode tokens/s at depth $DEPTH"
echo "(-t $T, $STEPS steps, median of $REPS, codecs interleaved; $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"
echo
echo "| model | KV codec | bits/elem | MiB per sequence | sequences in $BUDGET MiB | t/s, 1 seq | t/s, 4 seq | t/s, 16 seq |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for M in models/kvref-q4_0.gguf "$QWEN"; do
    build/bench/bench_serve -m "$M" --codecs "$CODECS" --ctx "$CTX" --depth "$DEPTH" --budget-mib "$BUDGET" \
        --steps "$STEPS" -r "$REPS" -t "$T" --markdown
done
