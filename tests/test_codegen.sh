#!/usr/bin/env bash
# test_codegen.sh - the decode kernels keep their weight prefetch in the compiled objects:
# each AVX-512 one-row kernel of a K-quant / IQ4_XS tile and the Q4_0 one-row kernel holds at
# least one prefetch instruction (objdump of $KVC_BUILD's objects). GCC once dropped the spread
# prefetch of every K-quant tile when kvc_pf_spread was not inlined early (decode -10-30 %),
# which no output test can see. Needs objdump (binutils, installed with gcc).
set -u
cd "$(dirname "$0")/.." || exit 1
B=${KVC_BUILD:-build}
pass=0; fail=0
if ! command -v objdump > /dev/null; then
    echo "FAIL objdump not found (binutils)"; echo "test_codegen: 0 passed, 1 failed"; exit 1
fi
check() { # object symbol
    local n
    if [ ! -f "$B/$1" ]; then echo "FAIL $B/$1 is missing (build first)"; fail=$((fail + 1)); return; fi
    n=$(objdump -d --no-show-raw-insn "$B/$1" | awk -v s="<$2>:" '$2 == s {on = 1; next} /^$/ {on = 0} on' | grep -c prefetch)
    if [ "$n" -ge 1 ]; then echo "PASS $2 ($1): $n prefetch instruction(s)"; pass=$((pass + 1))
    else echo "FAIL $2 ($1) has no prefetch instruction: the decode would wait on DRAM"; fail=$((fail + 1)); fi
}
for t in q4_k:q4_K q5_k:q5_K q6_k:q6_K q3_k:q3_K q2_k:q2_K iq4:iq4_xs; do
    check "src/wtypes/${t%%:*}.o" "${t##*:}_tile_vnni"
done
check src/arch/kernels_avx512_vnni.o gemv_q4
echo "test_codegen: $pass passed, $fail failed"
[ $fail -eq 0 ]
