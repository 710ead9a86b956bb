/* rnnkit's compiled kernels, for float and double: a threaded GEMM; whole-sequence forward/backward
   passes of the LSTM, GRU, Elman and Jordan layers; dropout. Plain C (no torch headers), compiled once per
   instruction set with RK_ISA set to avx512, avx2 or generic (rnnkit/engines/fused/build.py passes the
   flags); the torch operators of ops.cpp call the table this file exports (rnnkit_c.h). Each type-generic
   header is included once per type, with RK(name) giving name_f32 / name_f64; everything but the table
   getter is static, so the instruction-set variants link side by side. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rnnkit_c.h"
#include "pool.h"
#if defined(__SSE2__) /* x86: AVX-512 where built for it, the non-temporal stores (vmath.h) everywhere */
#include <immintrin.h>
#endif

#ifndef RK_ISA
#define RK_ISA generic
#endif
#define RK_STR2(x) #x
#define RK_STR(x) RK_STR2(x)
#define RK_ISA_STR RK_STR(RK_ISA)
/* vector width in bytes: a register of the instruction set (SSE2 / NEON: 16) */
#ifndef RK_VBYTES
#define RK_VBYTES 16
#endif

/* lowbias32 (Chris Wellons' integer hash): the counter-based random numbers of dropout.h */
static inline uint32_t rk_hash32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

#define RK_CAT2(a, b) a##_##b
#define RK_CAT(a, b) RK_CAT2(a, b)
#define RK(name) RK_CAT(name, SFX)

/* bf16 products (bf16.h): the float instance of the AVX-512 build, with a compiler that knows AVX512_BF16 */
#if RK_VBYTES == 64 && defined(__x86_64__) && (defined(__clang__) || __GNUC__ >= 10)
#define RK_HAS_BF16 1
#else
#define RK_HAS_BF16 0
#endif

/* ---- float ---- */
#define RK_BF16_HERE RK_HAS_BF16
#define REAL float
#define IREAL int32_t
#define SFX f32
#define vec vec_f32
#define vecu vecu_f32
#define ivec ivec_f32
#define EXP_LO (-87.3f)
#define EXP_HI 88.3f
#define ROUND_SHIFTER 12582912.0f /* 1.5 · 2^23 */
#define LN2_HI 0.693359375f
#define LN2_LO (-2.12194440e-4f)
#define EXP_BIAS 127
#define MANT_BITS 23
#define EXP_DEGREE 7
static const float EXP_C_f32[] = {1.0f, 1.0f, 1.0f / 2, 1.0f / 6, 1.0f / 24, 1.0f / 120, 1.0f / 720, 1.0f / 5040};
#define EXP_C EXP_C_f32
#define MM(op) _mm512_##op##_ps
#define MMV __m512
#define RECIP_STEPS 1
#include "instance.h"

/* ---- double ---- */
#define RK_BF16_HERE 0
#define REAL double
#define IREAL int64_t
#define SFX f64
#define vec vec_f64
#define vecu vecu_f64
#define ivec ivec_f64
#define EXP_LO (-708.0)
#define EXP_HI 709.0
#define ROUND_SHIFTER 6755399441055744.0 /* 1.5 · 2^52 */
#define LN2_HI 6.93147180369123816490e-01
#define LN2_LO 1.90821492927058770002e-10
#define EXP_BIAS 1023
#define MANT_BITS 52
#define EXP_DEGREE 13
static const double EXP_C_f64[] = {1.0,
                                   1.0,
                                   1.0 / 2,
                                   1.0 / 6,
                                   1.0 / 24,
                                   1.0 / 120,
                                   1.0 / 720,
                                   1.0 / 5040,
                                   1.0 / 40320,
                                   1.0 / 362880,
                                   1.0 / 3628800,
                                   1.0 / 39916800,
                                   1.0 / 479001600,
                                   1.0 / 6227020800.0};
#define EXP_C EXP_C_f64
#define MM(op) _mm512_##op##_pd
#define MMV __m512d
#define RECIP_STEPS 2
#include "instance.h"

/* the two tables (float, double) of this instruction set */
#define RK_ENTRY2(isa) rk_kernels_##isa
#define RK_ENTRY(isa) RK_ENTRY2(isa)
const rk_kernels *RK_ENTRY(RK_ISA)(void) {
    static rk_kernels tables[2];
    tables[0] = table_f32;
    tables[1] = table_f64;
    return tables;
}
