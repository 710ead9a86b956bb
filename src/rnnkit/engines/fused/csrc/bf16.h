/* bf16 products with float accumulation (AVX512_BF16), for the float instance of the AVX-512 build.

   Under torch.autocast(dtype=torch.bfloat16) the sequence kernels keep the state, the cell update and every
   sum in float32 and take only the matrix products' operands in bf16: one vdpbf16ps multiplies two bf16
   pairs per lane and adds both products to a float accumulator, twice the products of a float FMA, and the
   packed weights are half the bytes to stream from cache.

   Layout. A bf16 operand row holds K values padded to an even Kp (zeros), so that a pair (a_k, a_k+1) is one
   32-bit word to broadcast. Packed weights (rk_pack_bf16) hold, per panel of U units, per pair kk, per gate g,
   U/16 vectors of 16 units × (k = 2kk, 2kk + 1) interleaved: the second operand of vdpbf16ps.
   These functions carry their own target attribute, so the rest of the build needs no bf16 flag; they are
   called only where the CPU reports avx512_bf16 (ops.cpp). */

#define RK_BF16 __attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl,avx512dq")))

/* float -> bf16, rounding to nearest even (NaN stays NaN): what torch's .bfloat16() does */
static inline uint16_t rk_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

typedef struct {
    long NG, H, K, U;
    const float *W;
    uint16_t *Wp;
} rk_pack_bf16_job;

static void rk_pack_bf16_task(void *ctx, int tid, int nth) {
    const rk_pack_bf16_job *j = ctx;
    const long U = j->U, K = j->K, KK = (K + 1) / 2, nb = (j->H + U - 1) / U;
    long lo, hi;
    rk_share(nb, tid, nth, &lo, &hi);
    for (long p = lo; p < hi; p++) {
        uint16_t *dst = j->Wp + p * KK * j->NG * U * 2;
        for (long kk = 0; kk < KK; kk++)
            for (long g = 0; g < j->NG; g++)
                for (long v = 0; v < U; v++) { /* unit p·U + v: W's row g·H + p·U + v, columns 2kk and 2kk + 1 */
                    const long u = p * U + v, row = g * j->H + u;
                    for (int e = 0; e < 2; e++) {
                        const long k = 2 * kk + e;
                        *dst++ = (u < j->H && k < K) ? rk_to_bf16(j->W[row * K + k]) : 0;
                    }
                }
    }
}

/* Wp holds ceil(H / U) · ceil(K / 2) · NG · U · 2 values. */
static void rk_pack_bf16_entry(const rk_pack_args *a) {
    rk_pack_bf16_job j = {a->NG, a->H, a->K, a->U, a->W, a->Wp};
    rk_parallel(rk_pack_bf16_task, &j, (double)a->NG * a->H * a->K < 1e5 ? 1 : a->nth);
}

/* out (R rows × NV vectors of 16 floats, row stride 4 vectors) = A[rows] · B: A rows of KK bf16 pairs (row
   stride lda), B's pair kk and vector v at b + kk·ldb + v·vstride. */
static inline __attribute__((always_inline)) RK_BF16 void rk_mk_bf16(const int R, const int NV, long KK,
                                                                    const uint16_t *a, long lda, const uint16_t *b,
                                                                    long ldb, long vstride, float *out) {
    __m512 acc[MR_MAX][4];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (long kk = 0; kk < KK; kk++) {
        __m512i bv[4];
        for (int v = 0; v < NV; v++) bv[v] = _mm512_loadu_si512(b + kk * ldb + v * vstride);
        for (int r = 0; r < R; r++) {
            int32_t pair;
            memcpy(&pair, a + r * lda + 2 * kk, 4);
            const __m512i av = _mm512_set1_epi32(pair);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], (__m512bh)av, (__m512bh)bv[v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(out + (r * 4 + v) * 16, acc[r][v]);
}

typedef void (*rk_mk_bf16_fn)(long, const uint16_t *, long, const uint16_t *, long, long, float *);
#define MKB_DEF(R, NV)                                                                                        \
    RK_BF16 static void rk_mkb_##R##_##NV(long KK, const uint16_t *a, long lda, const uint16_t *b, long ldb, \
                                          long vs, float *o) {                                                \
        rk_mk_bf16(R, NV, KK, a, lda, b, ldb, vs, o);                                                         \
    }
#define MKB_ROW(R) MKB_DEF(R, 1) MKB_DEF(R, 2) MKB_DEF(R, 3) MKB_DEF(R, 4)
MKB_ROW(1) MKB_ROW(2) MKB_ROW(3) MKB_ROW(4) MKB_ROW(5) MKB_ROW(6) MKB_ROW(7) MKB_ROW(8)
#define MKB_ENTRY(R) {rk_mkb_##R##_1, rk_mkb_##R##_2, rk_mkb_##R##_3, rk_mkb_##R##_4}
static const rk_mk_bf16_fn rk_mkb_table[MR_MAX][4] = {MKB_ENTRY(1), MKB_ENTRY(2), MKB_ENTRY(3), MKB_ENTRY(4),
                                                      MKB_ENTRY(5), MKB_ENTRY(6), MKB_ENTRY(7), MKB_ENTRY(8)};
#undef MKB_DEF
#undef MKB_ROW
#undef MKB_ENTRY

static inline void rk_tile_bf16(int R, int NV, long KK, const uint16_t *a, long lda, const uint16_t *b, long ldb,
                                long vstride, float *out) {
    rk_mkb_table[R - 1][NV - 1](KK, a, lda, b, ldb, vstride, out);
}

/* the first n (≤ 16) floats of v, rounded to bf16, at p */
RK_BF16 static void rk_store_bf16(uint16_t *p, const float *src, long n) {
    const __mmask16 m = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
    const __m256i h = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src));
    _mm256_mask_storeu_epi16(p, m, h);
}

/* out[:, n_lo:n_hi] += A · W[:, n_lo:n_hi] for the B rows of A (bf16, B × 2·KK, row stride lda), with Wᵀ packed
   by rk_pack_bf16 in panels of 16 units (NG = 1, U = 16); n_lo a multiple of 16. The backward's per-step
   product in bf16. */
static void rk_add_rows_product_bf16(long B, long KK, const uint16_t *A, long lda, const uint16_t *Wtp, long n_lo,
                                     long n_hi, float *out, long ldo) {
    float tile[MR_MAX * 4 * 16] __attribute__((aligned(64)));
    for (long n0 = n_lo; n0 < n_hi; n0 += 64) {
        const long nn = n_hi - n0 < 64 ? n_hi - n0 : 64;
        const int NV = (int)((nn + 15) / 16);
        const long nt = (B + RK(tile_rows)(NV) - 1) / RK(tile_rows)(NV);
        const uint16_t *b = Wtp + (n0 / 16) * KK * 32;
        for (long i = 0; i < nt; i++) {
            const long b0 = B * i / nt, R = B * (i + 1) / nt - b0;
            rk_tile_bf16((int)R, NV, KK, A + b0 * lda, lda, b, 32, KK * 32, tile);
            for (long r = 0; r < R; r++)
                for (long v = 0; v < nn; v++) out[(b0 + r) * ldo + n0 + v] += tile[r * 64 + v];
        }
    }
}
