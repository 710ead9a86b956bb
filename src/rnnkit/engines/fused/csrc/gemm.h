/* Matrix products for one REAL type: the register-tile microkernel and a threaded GEMM built on it.

   The microkernel computes an R × (NV·VL) tile of A·B: for each k it loads NV vectors of row k of B and
   adds a(r, k) times them into R·NV accumulators held in registers (6 × 4 = 24 of the 32 AVX-512
   registers; 12 of the 16 on AVX2 and the portable build). For the small products an RNN step makes this
   beats calling a BLAS (MKL's sgemm reached about a third of the core's peak on an AMD Zen 5 CPU for them:
   docs/engines.md). The microkernel reads A through strides (a(r, k) = a[r·ars + k·aks]), so a transposed A
   costs nothing, and B as rows of whole vectors (the GEMM below packs B into such panels; the sequence
   kernels pack their weights once per call). */

#define MR_MAX 8

static inline __attribute__((always_inline)) void RK(mk)(const int R, const int NV, long K, const REAL *restrict a,
                                                          long ars, long aks, const REAL *restrict b, long ldb,
                                                          REAL *restrict out) {
    vec acc[MR_MAX][4];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = (vec){0};
    for (long k = 0; k < K; k++) {
        const REAL *bk = b + k * ldb;
        vec bv[4];
        for (int v = 0; v < NV; v++) bv[v] = RK(vload)(bk + v * VL);
        for (int r = 0; r < R; r++) {
            const REAL ark = a[r * ars + k * aks];
            for (int v = 0; v < NV; v++) acc[r][v] += ark * bv[v];
        }
    }
    for (int r = 0; r < R; r++) /* out: R rows of 4 vectors (fixed stride, whatever NV is) */
        for (int v = 0; v < NV; v++) RK(vstore)(out + (r * 4 + v) * VL, acc[r][v]);
}

typedef void (*RK(mk_fn))(long, const REAL *, long, long, const REAL *, long, REAL *);
#define MK_DEF(R, NV)                                                                                          \
    static void RK(mk_##R##_##NV)(long K, const REAL *a, long ars, long aks, const REAL *b, long ldb, REAL *o) { \
        RK(mk)(R, NV, K, a, ars, aks, b, ldb, o);                                                              \
    }
#define MK_ROW(R) MK_DEF(R, 1) MK_DEF(R, 2) MK_DEF(R, 3) MK_DEF(R, 4)
MK_ROW(1) MK_ROW(2) MK_ROW(3) MK_ROW(4) MK_ROW(5) MK_ROW(6) MK_ROW(7) MK_ROW(8)
#define MK_ENTRY(R) {RK(mk_##R##_1), RK(mk_##R##_2), RK(mk_##R##_3), RK(mk_##R##_4)}
static const RK(mk_fn) RK(mk_table)[MR_MAX][4] = {MK_ENTRY(1), MK_ENTRY(2), MK_ENTRY(3), MK_ENTRY(4),
                                                  MK_ENTRY(5), MK_ENTRY(6), MK_ENTRY(7), MK_ENTRY(8)};
#undef MK_DEF
#undef MK_ROW
#undef MK_ENTRY

/* acc tile (R rows × NV vectors) for rows a … a + R of A: out = A[rows] · B[:, NV vectors] */
static inline void RK(tile)(int R, int NV, long K, const REAL *a, long ars, long aks, const REAL *b, long ldb,
                            REAL *out) {
    RK(mk_table)[R - 1][NV - 1](K, a, ars, aks, b, ldb, out);
}

/* Rows per register tile for NV vectors per row: as many as keep the accumulators and the NV loaded vectors
   of B within the register file (32 vector registers with AVX-512, 16 otherwise). */
static inline int RK(tile_rows)(int NV) {
#if RK_VBYTES == 64
    return NV == 4 ? 6 : 8;
#else
    return NV == 4 ? 3 : NV == 3 ? 4 : NV == 2 ? 6 : 8;
#endif
}

/* Split n rows into tiles of at most `rows`, as evenly as possible: tile i is [n·i/nt, n·(i+1)/nt). */
static inline long RK(ntiles)(long n, int rows) { return (n + rows - 1) / rows; }

/* out[:, n_lo:n_hi] += A · W[:, n_lo:n_hi] for the B rows of A (B × K, row stride lda); W is K × ldw, readable
   to a whole number of vectors past n_hi. The per-step backward product of every sequence kernel: each
   thread adds the gradient reaching its own units of the previous state. */
static void RK(add_rows_product)(long B, long K, const REAL *A, long lda, const REAL *W, long ldw, long n_lo,
                                 long n_hi, REAL *out, long ldo) {
    REAL tile[MR_MAX * 4 * VL] __attribute__((aligned(64)));
    /* depth blocks of 256: the block of W a column chunk reads (256 × 4 vectors) stays in L2 while every
       row tile uses it, instead of the whole K × chunk slab streaming from L3 once per row tile (at 1024
       hidden units the slab is 1 MiB and this halves the backward's time) */
    for (long k0 = 0; k0 < K; k0 += 256) {
        const long kc = K - k0 < 256 ? K - k0 : 256;
        for (long n0 = n_lo; n0 < n_hi; n0 += 4 * VL) {
            const long nn = n_hi - n0 < 4 * VL ? n_hi - n0 : 4 * VL;
            const int NV = (int)((nn + VL - 1) / VL);
            const long nt = RK(ntiles)(B, RK(tile_rows)(NV));
            for (long i = 0; i < nt; i++) {
                const long b0 = B * i / nt, R = B * (i + 1) / nt - b0;
                RK(tile)((int)R, NV, kc, A + b0 * lda + k0, lda, 1, W + k0 * ldw + n0, ldw, tile);
                for (long r = 0; r < R; r++)
                    for (long v = 0; v < nn; v++) out[(b0 + r) * ldo + n0 + v] += tile[r * 4 * VL + v];
            }
        }
    }
}

/* A backward's state gradient alternates between two (B × N) buffers, one per step; once the last step is
   done, copy this thread's columns [u_lo, u_hi) of the result into `dst` unless they are there already. */
static void RK(keep_in)(REAL *dst, const REAL *cur, long B, long N, long u_lo, long u_hi) {
    if (cur == dst) return;
    for (long b = 0; b < B; b++)
        for (long u = u_lo; u < u_hi; u++) dst[b * N + u] = cur[b * N + u];
}

/* ---- C (M × N) = A·B (+ bias, one value per column), split over threads ---- */
#define KC 384 /* depth of one pass: the packed A block and B panels of this depth stay in L2 */
#define MB 48  /* rows of A that one B panel serves before the next panel (8 tiles of 6) */

typedef struct {
    long M, N, K;
    const REAL *A;
    long ars, aks;
    const REAL *B; /* b(k, n) = B[k·brs + n·bcs] */
    long brs, bcs;
    REAL *C;
    long ldc;
    const REAL *bias;
    int failed; /* a thread could not allocate its panel buffer */
} RK(gemm_job);

/* Write one tile row into C: the first depth pass stores (plus the bias), later passes add. */
static inline void RK(update_row)(const RK(gemm_job) * g, int first, REAL *c, const REAL *t, long n0, long nn) {
    long j = 0;
    for (; j + VL <= nn; j += VL) { /* whole vectors */
        vec v = RK(vload)(t + j);
        if (!first)
            v += RK(vload)(c + j);
        else if (g->bias)
            v += RK(vload)(g->bias + n0 + j);
        RK(vstore)(c + j, v);
    }
    for (; j < nn; j++) {
        REAL v = t[j];
        if (!first)
            v += c[j];
        else if (g->bias)
            v += g->bias[n0 + j];
        c[j] = v;
    }
}

/* Copy B's rows [k0, k0 + kc) × columns [n_lo, n_hi) into contiguous panels of 4 vectors (kc × 4·VL each,
   zeros past n_hi), so the microkernel streams B instead of striding through it; any strides. */
static void RK(pack_b)(const RK(gemm_job) * g, long k0, long kc, long n_lo, long n_hi, REAL *Bp) {
    for (long n0 = n_lo; n0 < n_hi; n0 += 4 * VL) {
        const long nn = n_hi - n0 < 4 * VL ? n_hi - n0 : 4 * VL;
        REAL *dst = Bp + (n0 - n_lo) / (4 * VL) * kc * 4 * VL;
        for (long k = 0; k < kc; k++, dst += 4 * VL) {
            const REAL *src = g->B + (k0 + k) * g->brs + n0 * g->bcs;
            if (g->bcs == 1 && nn == 4 * VL)
                for (long v = 0; v < 4 * VL; v += VL) RK(vstore)(dst + v, RK(vload)(src + v));
            else
                for (long v = 0; v < 4 * VL; v++) dst[v] = v < nn ? src[v * g->bcs] : 0;
        }
    }
}

static void RK(gemm_region)(const RK(gemm_job) * g, long m_lo, long m_hi, long n_lo, long n_hi, REAL *Bp) {
    const int rows = RK(tile_rows)(4);
    REAL tile[MR_MAX * 4 * VL] __attribute__((aligned(64)));
    for (long k0 = 0; k0 < g->K; k0 += KC) {
        const long kc = g->K - k0 < KC ? g->K - k0 : KC;
        const int first = k0 == 0;
        RK(pack_b)(g, k0, kc, n_lo, n_hi, Bp);
        for (long m0 = m_lo; m0 < m_hi; m0 += MB) {
            const long mb = m_hi - m0 < MB ? m_hi - m0 : MB;
            const long nt = RK(ntiles)(mb, rows);
            for (long n0 = n_lo; n0 < n_hi; n0 += 4 * VL) {
                const long nn = n_hi - n0 < 4 * VL ? n_hi - n0 : 4 * VL; /* valid columns in this panel */
                const int NV = (int)((nn + VL - 1) / VL);
                const REAL *bp = Bp + (n0 - n_lo) / (4 * VL) * kc * 4 * VL;
                for (long i = 0; i < nt; i++) {
                    const long r0 = mb * i / nt, R = mb * (i + 1) / nt - r0;
                    /* A is read in place through its strides: either way a tile's R rows stay in a few cache
                       lines for many k (measured faster here than packing A as well) */
                    const REAL *a = g->A + (m0 + r0) * g->ars + k0 * g->aks;
                    RK(tile)((int)R, NV, kc, a, g->ars, g->aks, bp, 4 * VL, tile);
                    for (long r = 0; r < R; r++)
                        RK(update_row)(g, first, g->C + (m0 + r0 + r) * g->ldc + n0, tile + r * 4 * VL, n0, nn);
                }
            }
        }
    }
}

static void RK(gemm_task)(void *ctx, int tid, int nth) {
    RK(gemm_job) *g = ctx;
    const long panels = (g->N + 4 * VL - 1) / (4 * VL), row_blocks = (g->M + MB - 1) / MB;
    REAL *Bp = aligned_alloc(64, sizeof(REAL) * KC * 4 * VL * panels);
    if (!Bp) { /* out of memory: rk_gemm reports it */
        __atomic_store_n(&g->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    long lo, hi;
    if (row_blocks >= nth || row_blocks >= panels) { /* threads take whole row blocks */
        rk_share(row_blocks, tid, nth, &lo, &hi);
        long m_hi = hi * MB < g->M ? hi * MB : g->M;
        if (lo * MB < m_hi) RK(gemm_region)(g, lo * MB, m_hi, 0, g->N, Bp);
    } else { /* few rows: threads take panels of columns */
        rk_share(panels, tid, nth, &lo, &hi);
        long n_hi = hi * 4 * VL < g->N ? hi * 4 * VL : g->N;
        if (lo * 4 * VL < n_hi) RK(gemm_region)(g, 0, g->M, lo * 4 * VL, n_hi, Bp);
    }
    free(Bp);
}

/* C = A·B (+ bias), A and B of any strides. Returns 0, or -1 if memory ran out. */
static int RK(gemm_entry)(const rk_gemm_args *a) {
    const long M = a->M, N = a->N, K = a->K, ldc = a->ldc;
    REAL *C = a->C;
    const REAL *bias = a->bias;
    int nth = a->nth;
    if (M <= 0 || N <= 0) return 0;
    if (K == 0) { /* an empty sum: C = bias */
        for (long m = 0; m < M; m++)
            for (long n = 0; n < N; n++) C[m * ldc + n] = bias ? bias[n] : 0;
        return 0;
    }
    RK(gemm_job) g = {M, N, K, a->A, a->ars, a->aks, a->B, a->brs, a->bcs, C, ldc, bias, 0};
    /* below ~1 MFLOP a second thread costs more to wake than it saves */
    if ((double)M * N * K < 5e5) nth = 1;
    rk_parallel(RK(gemm_task), &g, nth);
    return g.failed ? -1 : 0;
}

/* ---- weights packed for the per-step products of a sequence kernel ----
   W (NG·H × K, torch's layout: gate blocks of H rows) becomes one panel per block of U hidden units;
   panel p holds, for each k < K, the NG gate rows' values at column k for units p·U … p·U + U − 1 (zeros
   past H). One tile product over a panel then yields every gate of those units, which is what lets the
   pointwise update follow the product without any other thread's data. Gated cells use U = VL (NG
   vectors per k); the one-gate Elman and Jordan layers use U = 4·VL. */
typedef struct {
    long NG, H, K, U;
    const REAL *W;
    REAL *Wp;
} RK(pack_job);

static void RK(pack_task)(void *ctx, int tid, int nth) {
    const RK(pack_job) *j = ctx;
    const long U = j->U, nb = (j->H + U - 1) / U, K = j->K;
    long lo, hi;
    rk_share(nb, tid, nth, &lo, &hi);
    for (long p = lo; p < hi; p++) {
        const long nu = j->H - p * U < U ? j->H - p * U : U;
        REAL *panel = j->Wp + p * K * j->NG * U;
        /* VL rows at a time: they stay in L1 across k (all NG·U rows at once sit K·sizeof(REAL) bytes
           apart and, for K a power of two, fall into a few cache sets and evict each other: 1.6× slower) */
        for (long gate = 0; gate < j->NG; gate++)
            for (long v0 = 0; v0 < U; v0 += VL)
                for (long k = 0; k < K; k++) {
                    const REAL *col = j->W + (gate * j->H + p * U) * K + k; /* W[gate·H + u, k], u = p·U … */
                    REAL *dst = panel + (k * j->NG + gate) * U;
                    for (long v = v0; v < v0 + VL; v++) dst[v] = v < nu ? col[v * K] : 0;
                }
    }
}

/* Wp must hold ceil(H / U) · K · NG · U values. */
static void RK(pack_entry)(const rk_pack_args *a) {
    RK(pack_job) j = {a->NG, a->H, a->K, a->U, a->W, a->Wp};
    rk_parallel(RK(pack_task), &j, (double)a->NG * a->H * a->K < 1e5 ? 1 : a->nth);
}

/* ---- the machine's peak: multiply-adds per second of a loop that does nothing else ----
   12 independent accumulators hide the FMA latency (4 cycles on recent x86, two units per core); the result
   is the ceiling every kernel is measured against (rnnkit bench: "% of peak"). */
typedef struct {
    long iters;
    double *flops; /* per thread */
} RK(peak_job);

static void RK(peak_task)(void *ctx, int tid, int nth) {
    RK(peak_job) *j = ctx;
    (void)nth;
    vec acc[12];
    for (int k = 0; k < 12; k++) acc[k] = RK(splat)((REAL)(k + 1) * (REAL)1e-3);
    const vec m = RK(splat)((REAL)0.999999), c = RK(splat)((REAL)1e-7);
    for (long i = 0; i < j->iters; i++)
        for (int k = 0; k < 12; k++) acc[k] = acc[k] * m + c;
    REAL sink = 0;
    for (int k = 0; k < 12; k++) sink += acc[k][0];
    j->flops[tid] = sink == sink ? 2.0 * 12 * VL * (double)j->iters : 0; /* use the result: no dead code */
}

/* multiply-add operations ×2 done by nth threads in `iters` rounds each (timed by the caller) */
static double RK(peak_entry)(long iters, int nth) {
    double flops[256] = {0};
    RK(peak_job) j = {iters, flops};
    rk_parallel(RK(peak_task), &j, nth > 256 ? 256 : nth);
    double total = 0;
    for (int t = 0; t < 256; t++) total += flops[t];
    return total;
}
