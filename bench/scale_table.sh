#!/bin/bash
# scale_table.sh - issue 13's speed table and plots: every codec of bench/sweep-kvref.txt that
# needs no calibration, on synth qwen2.5-0.5b and llama-3.2-1b files, decode t/s, share of the
# bandwidth bound, KV MiB and peak RSS at depths 0, 4K, 16K, 32K (all codecs) and 64K (f16 and the
# three codecs the targets check), synthetic fill, -r 3, -t 2. About 14 minutes on a quiet
# 2-core machine (estimate in docs/performance.md). Writes bench/results/scale-MODEL-WTYPE.json,
# docs/results/speed-MODEL.svg and prints the tables.
#   usage: bench/scale_table.sh [WTYPE (default q4_k_m)]      (after make -j2 && make bench)
set -euo pipefail
W=${1:-q4_k_m}
K=./build/kvcodec
ALL="f16/f16;q8_0/q8_0;q8_0/q4_0;q4_0/q4_0;q4_0h/q4_0h;hdc:bits=4/hdc:bits=4;hdc:bits=3/hdc:bits=3;hdc:bits=2/hdc:bits=2;hdc:bits=2/hdc:bits=3"
DEEP="f16/f16;q4_0/q4_0;hdc:bits=3/hdc:bits=3;hdc:bits=2/hdc:bits=3"
OPTS="--fill synthetic -r 3 --pp 16 --tg 32 -t 2 --json"
mkdir -p bench/results docs/results
t0=$(date +%s)
for m in qwen2.5-0.5b llama-3.2-1b; do
    f=build/synth-$m-$W.gguf
    [ -f "$f" ] || $K synth --preset $m --type "$W" -o "$f"
    $K bench -m "$f" $OPTS --depths 0,4096,16384,32768 --codecs "$ALL" > "build/scale-$m-a.json"
    $K bench -m "$f" $OPTS --depths 65536 --codecs "$DEEP" > "build/scale-$m-b.json"
    out=bench/results/scale-$m-$W.json
    echo "## $m, $W weights"
    python3 bench/scale_table.py "build/scale-$m-a.json" "build/scale-$m-b.json" --merged "$out"
    build/bench/plot_bench "docs/results/speed-$m.svg" "$m ($W weights): decode t/s vs cache depth (-t 2)" "$out"
    echo "($(( $(date +%s) - t0 )) s so far)"
done
