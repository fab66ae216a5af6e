/* isa.c - run-time CPU feature detection: picks the best instruction-set level for the
 * kernels (scalar, AVX2+FMA+F16C, AVX-512 F/BW/VL/DQ), lowered by the environment variable
 * KVC_ISA=scalar|avx2|avx512, plus extra feature bits (VPOPCNTDQ, AVX512-VNNI, AVX512-BF16). */
#include "isa.h"
#include "kernels_internal.h"
#include <cpuid.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* F16C is CPUID.1:ECX bit 29 (clang 14 has no __builtin_cpu_supports("f16c")). */
static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c >> 29) & 1;
}

/* Highest level the hardware (and OS, which __builtin_cpu_supports checks via XGETBV)
 * supports, ignoring the environment. */
static enum kvc_isa hw_level(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !cpu_has_f16c())
        return KVC_ISA_SCALAR;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return KVC_ISA_AVX512;
    return KVC_ISA_AVX2;
}

/* Cached values; -1 = not computed yet. Racing first calls compute the same value. */
static _Atomic int cached_hw = -1, cached_best = -1;

static enum kvc_isa hw_level_cached(void) {
    int v = atomic_load_explicit(&cached_hw, memory_order_relaxed);
    if (v < 0) {
        v = (int)hw_level();
        atomic_store_explicit(&cached_hw, v, memory_order_relaxed);
    }
    return (enum kvc_isa)v;
}

enum kvc_isa kvc_isa_best(void) {
    int v = atomic_load_explicit(&cached_best, memory_order_relaxed);
    if (v >= 0) return (enum kvc_isa)v;
    v = (int)hw_level_cached();
    const char *env = getenv("KVC_ISA");
    if (env) {
        int want = -1;
        if (strcmp(env, "scalar") == 0) want = KVC_ISA_SCALAR;
        else if (strcmp(env, "avx2") == 0) want = KVC_ISA_AVX2;
        else if (strcmp(env, "avx512") == 0) want = KVC_ISA_AVX512;
        if (want >= 0 && want < v) v = want; /* the environment can only lower it */
    }
    atomic_store_explicit(&cached_best, v, memory_order_relaxed);
    return (enum kvc_isa)v;
}

int kvc_isa_supported(enum kvc_isa isa) {
    return (int)isa >= 0 && isa < KVC_ISA_COUNT && isa <= hw_level_cached();
}

const char *kvc_isa_name(enum kvc_isa isa) {
    switch (isa) {
    case KVC_ISA_SCALAR: return "scalar";
    case KVC_ISA_AVX2: return "avx2";
    case KVC_ISA_AVX512: return "avx512";
    default: return "unknown";
    }
}

int kvc_cpu_has_vpopcntdq(void) {
    __builtin_cpu_init();
    return hw_level_cached() == KVC_ISA_AVX512 && __builtin_cpu_supports("avx512vpopcntdq");
}

int kvc_cpu_has_vnni_vbmi(void) {
    __builtin_cpu_init();
    return hw_level_cached() == KVC_ISA_AVX512 && __builtin_cpu_supports("avx512vnni") &&
           __builtin_cpu_supports("avx512vbmi");
}

int kvc_cpu_has_avx512vnni(void) {
    __builtin_cpu_init();
    return hw_level_cached() == KVC_ISA_AVX512 && __builtin_cpu_supports("avx512vnni");
}

int kvc_cpu_has_avx512bf16(void) {
    __builtin_cpu_init();
    return hw_level_cached() == KVC_ISA_AVX512 && __builtin_cpu_supports("avx512bf16");
}

int kvc_cpu_has_avx512fp16(void) {
    __builtin_cpu_init();
    return hw_level_cached() == KVC_ISA_AVX512 && __builtin_cpu_supports("avx512fp16");
}

int kvc_cpu_prefers_bf16_dot(void) {
    __builtin_cpu_init();
    return kvc_cpu_has_avx512bf16() && __builtin_cpu_is("amd");
}
