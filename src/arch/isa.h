/* isa.h - instruction-set levels chosen at run time. Every fast kernel has a scalar
 * reference at KVC_ISA_SCALAR; tests compare each level with it. */
#ifndef KVC_ISA_H
#define KVC_ISA_H

enum kvc_isa { KVC_ISA_SCALAR = 0, KVC_ISA_AVX2 = 1, KVC_ISA_AVX512 = 2, KVC_ISA_COUNT = 3 };

/* Best level this CPU supports (AVX2 needs avx2+fma+f16c; AVX-512 needs
 * avx512f+bw+vl+dq). The environment variable KVC_ISA=scalar|avx2|avx512 lowers it. */
enum kvc_isa kvc_isa_best(void);
/* 1 when this CPU can run kernels of level isa. */
int kvc_isa_supported(enum kvc_isa isa);
const char *kvc_isa_name(enum kvc_isa isa);
/* 1 when AVX-512 VPOPCNTDQ is present (for popcount kernels). */
int kvc_cpu_has_vpopcntdq(void);
/* 1 when AVX-512 VNNI and VBMI are both present (int8 dot-product kernels with byte shuffles). */
int kvc_cpu_has_vnni_vbmi(void);
/* 1 when AVX-512 BF16 is present (vdpbf16ps: bf16 pair dot products summed in float). */
int kvc_cpu_has_avx512bf16(void);
/* 1 when AVX-512 FP16 is present (packed half-precision FMAs: Intel Sapphire Rapids on). */
int kvc_cpu_has_avx512fp16(void);
/* 1 when AVX-512 BF16 is present and measured faster than float FMAs for the keys=pair score:
 * AMD (Zen 4: the bf16 pair kernel was faster, docs/pair-speed.md); 0 on Intel, where vdpbf16ps
 * issues at half the FMA rate (pair score 13.0 vs 11.0 ns per row, docs/frontier.md). */
int kvc_cpu_prefers_bf16_dot(void);

/* Function attributes for SIMD code inside ordinary .c files (no per-file flags). */
#define KVC_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define KVC_TARGET_AVX512 \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

#endif
