/* Vector types and exp / sigmoid / tanh on whole vectors, for one REAL type (included once per type).

   A vector is RK_VBYTES bytes, the register width of the instruction set this object is built for: 64
   (16 floats or 8 doubles) for AVX-512, 32 for AVX2, 16 for the portable build (SSE2, NEON). The code is
   written once with GCC/Clang vector extensions; only exp's rounding and scaling and the reciprocal use
   AVX-512 instructions directly, where they exist.

   exp(x) = 2^n · e^r with n = round(x / ln 2) and r = x − n ln 2 (ln 2 in two parts, so r is exact),
   |r| ≤ ln2/2, e^r by its Taylor series to the term where the remainder drops below half an ulp
   (r^8/8! for float, r^14/14! for double). x is clamped so that 2^n stays a normal number; NaN passes
   through. This file is compiled without -ffast-math: the rounding trick below must not be
   "simplified" away. */

typedef REAL vec __attribute__((vector_size(RK_VBYTES)));
typedef REAL vecu __attribute__((vector_size(RK_VBYTES), aligned(sizeof(REAL)))); /* unaligned loads/stores */
typedef IREAL ivec __attribute__((vector_size(RK_VBYTES)));

#define VL ((long)(RK_VBYTES / sizeof(REAL)))

static inline vec RK(splat)(REAL a) { return (vec){0} + a; }
static inline vec RK(vload)(const REAL *p) { return *(const vecu *)p; }
static inline void RK(vstore)(REAL *p, vec v) { *(vecu *)p = v; }

/* The first n (< VL allowed) elements of p, zeros after: the last, partial block of units. */
static inline vec RK(vload_n)(const REAL *p, long n) {
    if (n == VL) return RK(vload)(p);
    vec v = {0};
    for (long j = 0; j < n; j++) v[j] = p[j];
    return v;
}

static inline void RK(vstore_n)(REAL *p, vec v, long n) {
    if (n == VL) {
        RK(vstore)(p, v);
        return;
    }
    for (long j = 0; j < n; j++) p[j] = v[j];
}

/* The first n elements of v at p; a whole vector at an aligned p bypasses the caches (a non-temporal store, where
   the instruction set has one). For what a forward writes once and only its backward reads (the saved gates, ~4 MB
   a d2l LSTM call): a cached store would first fetch each line and evict what the next step reads. Measured on a
   Zen 4 core, the d2l LSTM forward ran ~10 % faster; its backward then fetches a step ahead (see lstm.h). A writer
   calls rk_stream_fence() before the buffer is read. */
static inline void RK(vstream_n)(REAL *p, vec v, long n) {
#if defined(__AVX512F__) && RK_VBYTES == 64
    if (n == VL && !((uintptr_t)p & 63)) {
        _mm512_stream_si512((void *)p, (__m512i)v);
        return;
    }
#elif defined(__AVX__) && RK_VBYTES == 32
    if (n == VL && !((uintptr_t)p & 31)) {
        _mm256_stream_si256((__m256i *)p, (__m256i)v);
        return;
    }
#elif defined(__SSE2__) && RK_VBYTES == 16
    if (n == VL && !((uintptr_t)p & 15)) {
        _mm_stream_si128((__m128i *)p, (__m128i)v);
        return;
    }
#endif
    RK(vstore_n)(p, v, n);
}

/* mask ? a : b, elementwise (C has no vector ?: operator) */
static inline vec RK(vselect)(ivec mask, vec a, vec b) { return (vec)(((ivec)a & mask) | ((ivec)b & ~mask)); }

#if defined(__AVX512F__) && RK_VBYTES == 64
/* AVX-512: rounding, the 2^n scaling and min/max are one instruction each, and 1/d is the 14-bit
   reciprocal estimate refined by Newton steps (one for float, two for double: error below one ulp).
   x stays clamped so that d = 1 + e^x is finite and the refinement cannot form inf · 0. */
static inline vec RK(vexp)(vec x) {
    x = (vec)MM(min)((MMV)x, (MMV)RK(splat)(EXP_HI));
    x = (vec)MM(max)((MMV)x, (MMV)RK(splat)(EXP_LO));
    const vec n = (vec)MM(roundscale)((MMV)(x * (REAL)1.4426950408889634), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const vec r = x - n * (REAL)LN2_HI - n * (REAL)LN2_LO;
    vec p = RK(splat)(EXP_C[EXP_DEGREE]);
    for (int k = EXP_DEGREE - 1; k >= 0; k--) p = p * r + EXP_C[k];
    return (vec)MM(scalef)((MMV)p, (MMV)n);
}

static inline vec RK(vrecip)(vec d) {
    vec y = (vec)MM(rcp14)((MMV)d);
    for (int k = 0; k < RECIP_STEPS; k++) y = y * ((REAL)2 - d * y);
    return y;
}
#else
static inline vec RK(vexp)(vec x) {
    const vec lo = RK(splat)(EXP_LO), hi = RK(splat)(EXP_HI);
    x = RK(vselect)(x < lo, lo, x);
    x = RK(vselect)(x > hi, hi, x);
    const vec shifter = RK(splat)(ROUND_SHIFTER); /* adding and removing it rounds to an integer */
    vec n = (x * (REAL)1.4426950408889634 + shifter) - shifter;
    vec r = x - n * (REAL)LN2_HI - n * (REAL)LN2_LO;
    vec p = RK(splat)(EXP_C[EXP_DEGREE]);
    for (int k = EXP_DEGREE - 1; k >= 0; k--) p = p * r + EXP_C[k];
    ivec e = (__builtin_convertvector(n, ivec) + EXP_BIAS) << MANT_BITS;
    return p * (vec)e;
}

static inline vec RK(vrecip)(vec d) { return (REAL)1 / d; }
#endif

static inline vec RK(vsigmoid)(vec x) { return RK(vrecip)((REAL)1 + RK(vexp)(-x)); }

/* tanh(x) = 1 − 2 / (1 + e^{2x}): exact at ±∞; near 0 its absolute error is one ulp of 1. */
static inline vec RK(vtanh)(vec x) { return (REAL)1 - (REAL)2 * RK(vrecip)((REAL)1 + RK(vexp)(x + x)); }

/* The named activations by code (rnnkit_c.h), and their derivatives taken from the output y, as autograd
   does: tanh' = 1 − y², σ' = y (1 − y), relu' = [y > 0], hard_sigmoid' = [0 < y < 1] / 6. Callers pass a
   constant code where they can, so the switch folds away in the common cases. */
static inline __attribute__((always_inline)) vec RK(act)(int code, vec x) {
    const vec zero = {0}, one = RK(splat)(1);
    switch (code) {
    case RK_TANH: return RK(vtanh)(x);
    case RK_RELU: return RK(vselect)(x < zero, zero, x); /* NaN passes through, as in torch */
    case RK_SIGMOID: return RK(vsigmoid)(x);
    case RK_HARD_SIGMOID: { /* clamp(x / 6 + 1/2, 0, 1), torch's hardsigmoid */
        const vec y = x * (REAL)(1.0 / 6) + (REAL)0.5;
        return RK(vselect)(y < zero, zero, RK(vselect)(y > one, one, y));
    }
    default: return x;
    }
}

static inline __attribute__((always_inline)) vec RK(act_grad)(int code, vec y) {
    const vec one = RK(splat)(1), zero = {0};
    switch (code) {
    case RK_TANH: return one - y * y;
    case RK_RELU: return RK(vselect)(y > zero, one, zero);
    case RK_SIGMOID: return y * (one - y);
    case RK_HARD_SIGMOID: return RK(vselect)((y > zero) & (y < one), RK(splat)((REAL)(1.0 / 6)), zero);
    default: return one;
    }
}
