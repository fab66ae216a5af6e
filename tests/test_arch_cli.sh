#!/usr/bin/env bash
# test_arch_cli.sh - the CLI on the new architectures: `logits --json` on a synthetic qwen2 and
# Llama 3 model (layout of the llama.cpp dumps, every calibration-free KV codec), `run --chat`
# on SmolLM2 (piped message: llama.cpp's greedy reply, stops at <|im_end|>), and the chat
# errors (unknown --chat-format, model without a template), pca keys=pre on qwen2 (NEOX RoPE)
# and Llama 3 (rope_freqs factors).
# Under CI=true missing files fail.
set -u
BIN=${KVC_BIN:-build/kvcodec}
S=${KVC_SHARED:-../shared}
SMOL=${KVC_SMOLLM2:-build/models/SmolLM2-135M-Instruct.Q4_1.gguf}
pass=0; fail=0
ok() { echo "PASS $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
missing() {
    if [ "${CI:-}" = "true" ]; then bad "$1 is missing (CI=true)"; else echo "SKIP: $1 is missing"; fi
}
TMP=$(mktemp -d /tmp/test_arch_cli.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

PROMPT=$S/reference/prompt-synth.txt
for m in qwen2-q5km llama3-q4km; do
    M=$S/models/synth/$m.gguf
    if [ ! -f "$M" ]; then missing "$M"; continue; fi
    for kv in f16 q8_0 q4_0 q4_0h hdc:bits=3; do
        if "$BIN" logits -m "$M" -f "$PROMPT" --json --kv-k "$kv" --kv-v "$kv" > "$TMP/l.json" 2> "$TMP/err"; then
            r=$(python3 - "$TMP/l.json" "$S/reference/logits-$m.json" "$kv" <<'PY'
import json, sys
o = json.load(open(sys.argv[1])); r = json.load(open(sys.argv[2])); kv = sys.argv[3]
ok = o["tokens"] == r["tokens"] and len(o["top10"]) == len(r["top10"]) and len(o["full_logits_last"]) == r["n_vocab"]
ok = ok and all(len(row) == 10 and all(len(p) == 2 for p in row) for row in o["top10"]) and len(o["top1_prob"]) == len(o["tokens"])
# our top-1 among llama.cpp's top-10 at most positions (looser for the 3-bit codec)
hits = sum(1 for a, b in zip(o["top10"], r["top10"]) if a[0][0] in [p[0] for p in b])
need = 0.95 if kv in ("f16", "q8_0") else 0.6
print("PASS" if ok and hits >= need * len(o["top10"]) else "FAIL", "logits --json", kv, "top-1 in llama.cpp's top-10 at", hits, "of", len(o["top10"]))
PY
)
            case "$r" in PASS*) ok "$m: ${r#PASS }" ;; *) bad "$m: $r" ;; esac
        else
            bad "$m: logits --kv-k $kv failed: $(head -1 "$TMP/err")"
        fi
    done
done

# info / plan: KV bytes per token from key_length (Llama 3 synth: 2 layers x 1 KV head x 128 x K+V x 2 bytes)
M=$S/models/synth/llama3-q4km.gguf
Q=$S/models/synth/qwen2-q5km.gguf
if [ -f "$M" ] && [ -f "$Q" ]; then
    r=$(python3 - "$BIN" "$M" "$Q" <<'PY'
import json, subprocess, sys
b, m, q = sys.argv[1:4]
i = json.loads(subprocess.run([b, "info", "-m", m, "--json"], capture_output=True, text=True).stdout)
f16 = [c for c in i["codecs"] if c["codec"] == "f16"][0]
ok = i["head_dim"] == 128 and i["n_embd"] == 256 and f16["kv_bytes_per_token"] == 2 * 1 * 128 * 2 * 2 and i["rope_freq_factors"]
j = json.loads(subprocess.run([b, "info", "-m", q, "--json"], capture_output=True, text=True).stdout)
ok = ok and j["arch"] == "qwen2" and j["rope_layout"] == "neox" and j["qkv_bias"] and j["tied_output"]
p = json.loads(subprocess.run([b, "plan", "-m", m, "--ram", "1G", "--json"], capture_output=True, text=True).stdout)
rows = p if isinstance(p, list) else p.get("rows", [])
pf = [r for r in rows if r.get("codec", r.get("kv_k")) in ("f16", "f16/f16")]
ok = ok and pf and abs(pf[0].get("kv_bytes_per_token", pf[0].get("bytes_per_token", 0)) - 1024) < 1e-9
print("PASS" if ok else "FAIL", "info/plan: llama3 head dim 128 -> f16 1024 bytes/token; qwen2 neox + biases", "" if ok else (i, j, pf))
PY
)
    case "$r" in PASS*) ok "${r#PASS }" ;; *) bad "$r" ;; esac
fi

# pca keys=pre on the RoPE variants: qwen2 synth (NEOX halves, head dim 64) and llama3 synth
# (rope_freqs factors, head dim 128): calibrate, then ppl against the f16 cache. Full rank with
# f32 coefficients is exact (KLD that of an f32 cache), batched prefill (-b 256) and one token
# per call (-b 1, the fused per-token score); at rank d/2 - 8 the pre-RoPE basis beats the
# post-RoPE one (on qwen2 it would not if encode undid RoPE on other pairs than the forward
# pass's; the factors of llama3 move angles too little at -c 256 to show here: test_pca checks
# them against float64); bits=4 with keys=pre and keys=pair runs with a small KLD.
for m in qwen2-q5km:64 llama3-q4km:128; do
    M=$S/models/synth/${m%%:*}.gguf; D=${m##*:}
    if [ ! -f "$M" ]; then missing "$M"; continue; fi
    if "$BIN" calibrate -m "$M" -f "$S/text/calib.txt" -o "$TMP/q.calib" --tokens 16384 -c 512 -q 2> "$TMP/err"; then
        r=$(python3 - "$BIN" "$M" "$TMP/q.calib" "$S/text/books-valid.txt" "$D" <<'PY'
import json, subprocess, sys
b, q, cal, txt, d = sys.argv[1:6]
d = int(d)
def kld(k, batch=256):
    p = subprocess.run([b, "ppl", "-m", q, "-f", txt, "-c", "256", "--chunks", "2", "-b", str(batch), "--kv-k", k, "--kv-v", "f16",
                        "--kv-calib", cal, "--compare", "--json", "-q"], capture_output=True, text=True)
    return json.loads(p.stdout)["kld_mean"] if p.returncode == 0 else float("nan")
f32 = kld("f32")
full, full1 = kld("pca:rank=%d,coef=f32,keys=pre" % d), kld("pca:rank=%d,coef=f32,keys=pre" % d, 1)
r = d // 2 - 8
post, pre = kld("pca:rank=%d,coef=f32" % r), kld("pca:rank=%d,coef=f32,keys=pre" % r)
b4, b4p = kld("pca:bits=4,keys=pre"), kld("pca:bits=4,keys=pair")
ok = full <= 1.5 * f32 + 1e-4 and full1 <= 1.5 * f32 + 1e-4 and pre < 0.9 * post and 0 <= b4 < 0.1 and 0 <= b4p < 0.1
print("PASS" if ok else "FAIL", "pca keys=pre: KLD full rank %.6f / %.6f (-b 1) vs f32 cache %.6f; rank %d pre %.4f < 0.9 x post %.4f; bits=4 pre %.4f pair %.4f"
      % (full, full1, f32, r, pre, post, b4, b4p))
PY
)
        case "$r" in PASS*) ok "${m%%:*}: ${r#PASS }" ;; *) bad "${m%%:*}: $r" ;; esac
    else
        bad "calibrate $M: $(head -1 "$TMP/err")"
    fi
done

if [ -f "$SMOL" ]; then
    out=$(echo "What is the capital of France?" | "$BIN" run --chat -m "$SMOL" --temp 0 --system "You are a helpful assistant." 2> "$TMP/err"); rc=$?
    if [ $rc -eq 0 ] && [ "$out" = "The capital of France is Paris." ]; then ok "run --chat: llama.cpp's greedy reply, stopped at EOT"
    else bad "run --chat: rc $rc, reply '$out' ($(head -1 "$TMP/err"))"; fi
    out=$(printf 'Hi\nName a colour.\n' | "$BIN" run --chat -m "$SMOL" --temp 0 -n 24 2> "$TMP/err"); rc=$?
    n=$(printf '%s\n' "$out" | grep -c .)
    if [ $rc -eq 0 ] && [ "$n" -ge 2 ]; then ok "run --chat: two turns answered"; else bad "run --chat two turns: rc $rc, '$out'"; fi
    echo hi | "$BIN" run --chat -m "$SMOL" --chat-format nosuch > /dev/null 2> "$TMP/err"; rc=$?
    if [ $rc -ne 0 ] && grep -q "chatml, llama3" "$TMP/err" && [ "$(wc -l < "$TMP/err")" -eq 1 ]; then ok "unknown --chat-format lists the formats"
    else bad "unknown --chat-format: rc $rc, $(cat "$TMP/err")"; fi
else
    missing "$SMOL"
fi
if [ -f "$S/models/kvref-f16.gguf" ]; then
    echo hi | "$BIN" run --chat -m "$S/models/kvref-f16.gguf" > /dev/null 2> "$TMP/err"; rc=$?
    if [ $rc -ne 0 ] && grep -q "chat_template" "$TMP/err" && grep -q "zephyr" "$TMP/err"; then ok "model without a chat template: error names --chat-format values"
    else bad "no template: rc $rc, $(cat "$TMP/err")"; fi
else
    missing "$S/models/kvref-f16.gguf"
fi
echo "test_arch_cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
