/* Dropout for one REAL type: y = x · keep / (1 − p), with keep = 1 for a fraction 1 − p of the elements.

   The mask is not stored: keep(i) is a hash of (seed, i), so the backward recomputes it from the same
   seed (dL/dx = dL/dy · keep / (1 − p)), and the result depends only on the seed — not on the number of
   threads or on how the work is split. The hash is "lowbias32" (Wellons' integer hash: two multiplies,
   three xor-shifts), whose output bits are statistically independent enough for a Bernoulli mask. The
   loop is plain C that the compiler vectorises (16 hashes per AVX-512 instruction sequence). */

typedef struct {
    long n;
    const REAL *x;
    REAL *y;
    uint32_t key, threshold;
    REAL scale;
} RK(dropout_job);

static void RK(dropout_task)(void *ctx, int tid, int nth) {
    const RK(dropout_job) *j = ctx;
    /* The job's fields in locals, the arrays `restrict`: called through OpenMP's outlined function, the loop
       cannot see that y does not overlap *j, and reloading j->x… after every store kept it scalar — 16×
       slower on two threads than on one (measured: 450 against 28 µs for 2^18 floats). */
    const REAL *restrict x = j->x;
    REAL *restrict y = j->y;
    const uint32_t key = j->key, threshold = j->threshold;
    const REAL scale = j->scale;
    long lo, hi;
    rk_share(j->n, tid, nth, &lo, &hi);
    for (long i = lo; i < hi; i++) {
        const uint32_t u = rk_hash32((uint32_t)i ^ key);
        y[i] = u >= threshold ? x[i] * scale : 0;
    }
}

/* 0 < p < 1 (the caller handles p = 0 and p = 1); seed: any 64-bit value, drawn from torch's generator. */
static void RK(dropout_entry)(const rk_dropout_args *a) {
    const uint64_t seed = a->seed;
    const uint32_t key = rk_hash32((uint32_t)seed ^ rk_hash32((uint32_t)(seed >> 32) + 0x9e3779b9u));
    RK(dropout_job) j = {a->n, a->x, a->y, key, (uint32_t)(a->p * 4294967296.0), (REAL)(1.0 / (1.0 - a->p))};
    rk_parallel(RK(dropout_task), &j, a->n < (1L << 16) ? 1 : a->nth);
}
