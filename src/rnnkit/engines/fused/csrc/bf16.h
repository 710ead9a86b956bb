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
    long NG, H, K, U, KK; /* KK: pairs of k, K padded (to 2 for vdpbf16ps, to 32 for AMX) */
    long rs, cs;          /* W's strides: W[row, k] at W[row * rs + k * cs] (a transposed view packs as it is) */
    const float *W;
    uint16_t *Wp;
} rk_pack_bf16_job;

/* 16 units' (k, k + 1) pairs, rows row0 … row0 + 15 of W, as 32 bf16 in the packed order (unit-major, k-minor). */
RK_BF16 static void rk_pack_pairs16(const rk_pack_bf16_job *j, long row0, long k, uint16_t *dst) {
    const float *w = j->W + row0 * j->rs + k * j->cs;
    __m512i out;
    if (j->cs == 1) { /* rows of W: each pair is 8 contiguous bytes, gathered 8 at a time */
        const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)j->rs));
        const __m512 lo = _mm512_castsi512_ps(_mm512_i32gather_epi64(idx, w, 4));
        const __m512 hi = _mm512_castsi512_ps(_mm512_i32gather_epi64(idx, w + 8 * j->rs, 4));
        out = (__m512i)_mm512_cvtne2ps_pbh(hi, lo); /* lo's 16 values first: v0 k, v0 k+1, v1 k, … */
    } else { /* k apart by cs: the 16 units' k values, then their k + 1 values, interleaved after rounding */
        __m512 a, b;
        if (j->rs == 1) { /* a transposed view: the units are contiguous */
            a = _mm512_loadu_ps(w), b = _mm512_loadu_ps(w + j->cs);
        } else {
            const __m512i idx = _mm512_mullo_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32((int)j->rs));
            a = _mm512_i32gather_ps(idx, w, 4), b = _mm512_i32gather_ps(idx, w + j->cs, 4);
        }
        const __m512i ab = (__m512i)_mm512_cvtne2ps_pbh(b, a); /* a's 16 values, then b's */
        const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                                               6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        out = _mm512_permutexvar_epi16(order, ab);
    }
    _mm512_storeu_si512(dst, out);
}

/* Rows of W with k contiguous (cs = 1): 16 units × 8 pairs (k0 … k0 + 15) of gate g at once, without gathers —
   16 row loads, rounded two rows to a register, then an 8 × 8 transpose of the pairs (32-bit words) in each
   256-bit half; the 8 vectors go to pairs kk0 … kk0 + 7 (dst, then every `step` values). A 1024 × 256 W_hh packs
   in 24 µs this way against 84 µs gathering each pair (two Zen 4 cores). */
RK_BF16 static void rk_pack_rows16x8(const rk_pack_bf16_job *j, long row0, long k0, uint16_t *dst, long step) {
    const float *w = j->W + row0 * j->rs + k0;
    __m512i z[8], t[8], s[8];
    for (int v = 0; v < 8; v++) /* low half: unit v's 8 pairs; high half: unit v + 8's */
        z[v] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(w + (v + 8) * j->rs), _mm512_loadu_ps(w + v * j->rs));
    for (int v = 0; v < 8; v += 2) {
        t[v] = _mm512_unpacklo_epi32(z[v], z[v + 1]);
        t[v + 1] = _mm512_unpackhi_epi32(z[v], z[v + 1]);
    }
    for (int q = 0; q < 8; q += 4) {
        s[q] = _mm512_unpacklo_epi64(t[q], t[q + 2]);
        s[q + 1] = _mm512_unpackhi_epi64(t[q], t[q + 2]);
        s[q + 2] = _mm512_unpacklo_epi64(t[q + 1], t[q + 3]);
        s[q + 3] = _mm512_unpackhi_epi64(t[q + 1], t[q + 3]);
    }
    /* s[c] (c < 4) holds pairs c and c + 4 of units 0-3 (and 8-11) by 128-bit lane; s[c + 4] those of units 4-7 */
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    for (int c = 0; c < 4; c++) {
        _mm512_storeu_si512(dst + c * step, _mm512_permutex2var_epi64(s[c], lo, s[c + 4]));
        _mm512_storeu_si512(dst + (c + 4) * step, _mm512_permutex2var_epi64(s[c], hi, s[c + 4]));
    }
}

RK_BF16 static void rk_pack_bf16_task(void *ctx, int tid, int nth) {
    const rk_pack_bf16_job *j = ctx;
    const long U = j->U, K = j->K, KK = j->KK, nb = (j->H + U - 1) / U, step = j->NG * U * 2;
    long lo, hi;
    rk_share(nb, tid, nth, &lo, &hi);
    for (long p = lo; p < hi; p++) {
        uint16_t *dst = j->Wp + p * KK * step;
        long kk = 0;
        if (j->cs == 1 && (p + 1) * U <= j->H) /* whole panels of contiguous rows: 8 pairs at a time */
            for (; 2 * kk + 16 <= K; kk += 8, dst += 8 * step)
                for (long g = 0; g < j->NG; g++)
                    for (long v0 = 0; v0 < U; v0 += 16)
                        rk_pack_rows16x8(j, g * j->H + p * U + v0, 2 * kk, dst + g * U * 2 + v0 * 2, step);
        for (; kk < KK; kk++)
            for (long g = 0; g < j->NG; g++)
                for (long v0 = 0; v0 < U; v0 += 16, dst += 32) {
                    const long u0 = p * U + v0;
                    if (u0 + 16 <= j->H && 2 * kk + 1 < K) { /* 16 whole units, a whole pair */
                        rk_pack_pairs16(j, g * j->H + u0, 2 * kk, dst);
                        continue;
                    }
                    for (long v = 0; v < 16; v++) /* the edges: units past H and k past K are zeros */
                        for (int e = 0; e < 2; e++) {
                            const long u = u0 + v, k = 2 * kk + e;
                            dst[2 * v + e] = (u < j->H && k < K) ? rk_to_bf16(j->W[(g * j->H + u) * j->rs + k * j->cs]) : 0;
                        }
                }
    }
}

/* Wp holds ceil(H / U) · KK · NG · U · 2 values, KK = ceil(K / kmult) · kmult / 2. */
static void rk_pack_bf16_entry(const rk_pack_args *a) {
    const long m = a->kmult > 2 ? a->kmult : 2;
    rk_pack_bf16_job j = {a->NG, a->H, a->K, a->U, (a->K + m - 1) / m * m / 2, a->rs, a->cs, a->W, a->Wp};
    rk_parallel(rk_pack_bf16_task, &j, (double)a->NG * a->H * a->K < 1e5 ? 1 : a->nth);
}

/* out (R rows × NV vectors of 16 floats, row stride 4 vectors) = A[rows] · B: A's pair kk of row r at
   a + r·lda + kk·ldk (ldk = 2: rows of pairs), B's pair kk and vector v at b + kk·ldb + v·vstride. */
static inline __attribute__((always_inline)) RK_BF16 void rk_mk_bf16(const int R, const int NV, long KK,
                                                                    const uint16_t *a, long lda, long ldk,
                                                                    const uint16_t *b, long ldb, long vstride,
                                                                    float *out) {
    __m512 acc[MR_MAX][4];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (long kk = 0; kk < KK; kk++) {
        __m512i bv[4];
        for (int v = 0; v < NV; v++) bv[v] = _mm512_loadu_si512(b + kk * ldb + v * vstride);
        for (int r = 0; r < R; r++) {
            int32_t pair;
            memcpy(&pair, a + r * lda + kk * ldk, 4);
            const __m512i av = _mm512_set1_epi32(pair);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], (__m512bh)av, (__m512bh)bv[v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(out + (r * 4 + v) * 16, acc[r][v]);
}

typedef void (*rk_mk_bf16_fn)(long, const uint16_t *, long, long, const uint16_t *, long, long, float *);
#define MKB_DEF(R, NV)                                                                                        \
    RK_BF16 static void rk_mkb_##R##_##NV(long KK, const uint16_t *a, long lda, long ldk, const uint16_t *b,   \
                                          long ldb, long vs, float *o) {                                      \
        rk_mk_bf16(R, NV, KK, a, lda, ldk, b, ldb, vs, o);                                                    \
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
    rk_mkb_table[R - 1][NV - 1](KK, a, lda, 2, b, ldb, vstride, out);
}

/* ---- weight gradients: dW = Dᵀ X over all T·B rows, on the same microkernel ----
   torch's bf16 GEMM (oneDNN) returns bf16, which then costs a conversion to float32 (and its rounding); for the
   narrow dW_ih (K × 28 one-hot features) it reached a third of the products' speed here. These run the reduction
   over rows k as pairs: rk_rowpairs puts rows 2kk and 2kk + 1 of a K × N matrix side by side in bf16, in panels
   of P columns (out[n / P][kk][n % P] = the pair; Np = N padded to a multiple of P, an odd K's last pair completed
   by zeros). One panel (P = Np) is a plain row layout. */
RK_BF16 static void rk_rowpairs_task(void *ctx, int tid, int nth) {
    const rk_rowpairs_args *j = ctx;
    const long KK = (j->K + 1) / 2;
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                           21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    long lo, hi;
    rk_share(KK, tid, nth, &lo, &hi);
    for (long kk = lo; kk < hi; kk++) {
        const int odd_end = 2 * kk + 1 >= j->K; /* the last row of an odd K pairs with zeros */
        for (long n = 0; n < j->Np; n += 16) {
            uint16_t *dst = j->out + (n / j->P) * KK * 2 * j->P + kk * 2 * j->P + 2 * (n % j->P);
            const __mmask16 m = j->N - n >= 16 ? (__mmask16)0xffff : j->N > n ? (__mmask16)((1u << (j->N - n)) - 1) : 0;
            __m512i ab; /* row 2kk's 16 values, then row 2kk + 1's, in bf16 */
            if (j->bf16) {
                const uint16_t *s = (const uint16_t *)j->src + 2 * kk * j->ld + n;
                const __m256i a = _mm256_maskz_loadu_epi16(m, s);
                const __m256i c = odd_end ? _mm256_setzero_si256() : _mm256_maskz_loadu_epi16(m, s + j->ld);
                ab = _mm512_inserti64x4(_mm512_castsi256_si512(a), c, 1);
            } else {
                const float *s = (const float *)j->src + 2 * kk * j->ld + n;
                const __m512 a = _mm512_maskz_loadu_ps(m, s);
                const __m512 c = odd_end ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, s + j->ld);
                ab = (__m512i)_mm512_cvtne2ps_pbh(c, a);
            }
            _mm512_storeu_si512(dst, _mm512_permutexvar_epi16(order, ab)); /* pairs (row 2kk, row 2kk + 1) */
        }
    }
}

static void rk_rowpairs_entry(const rk_rowpairs_args *a) {
    rk_parallel(rk_rowpairs_task, (void *)a, (double)a->K * a->Np < 1e5 ? 1 : a->nth);
}

/* C (M × N floats, row stride ldc) = Dᵀ X from their rowpairs (rk_rowpairs: D (K × M) in panels of 64 columns, X
   (K × N) in one), computed as Xᵀ D: a tile is up to 6 columns n of C (X's pairs, the A operand: X's rowpairs are
   small enough to stay in L2, where its strided reads hit) × the 64 rows m of one of D's panels (the B operand,
   read in order), written into C transposed. Threads take D's panels; each stays in L2 while every tile of it
   passes. (D as the A operand would stride 4 KB a pair through a matrix that lives in L3: three times slower.) */
RK_BF16 static void rk_gemm_pairs_task(void *ctx, int tid, int nth) {
    const rk_gemm_pairs_args *j = ctx;
    float tile[MR_MAX * 4 * 16] __attribute__((aligned(64)));
    const long nb = (j->M + 63) / 64, nt = (j->N + 5) / 6, ldk = 2 * j->Np;
    long lo, hi;
    rk_share(nb, tid, nth, &lo, &hi);
    for (long blk = lo; blk < hi; blk++) {
        const long m0 = blk * 64, mm = j->M - m0 < 64 ? j->M - m0 : 64;
        const int NV = (int)((mm + 15) / 16);
        for (long i = 0; i < nt; i++) {
            const long n0 = j->N * i / nt, R = j->N * (i + 1) / nt - n0; /* ≤ 6 columns: 24 accumulators + 4 of D */
            rk_mkb_table[R - 1][NV - 1](j->KK, j->X + 2 * n0, 2, ldk, j->D + blk * j->KK * 128, 128, 32, tile);
            for (long m = 0; m < mm; m++)
                for (long r = 0; r < R; r++) j->C[(m0 + m) * j->ldc + n0 + r] = tile[r * 64 + m];
        }
    }
}

static void rk_gemm_pairs_entry(const rk_gemm_pairs_args *a) {
    rk_parallel(rk_gemm_pairs_task, (void *)a, (double)a->M * a->N * a->KK < 1e5 ? 1 : a->nth);
}

/* The first n (≤ 16) values of v rounded to bf16 (nearest even, NaN kept a quiet NaN: torch's .bfloat16()) at p, in
   plain AVX-512F/BW integer steps: unlike the bf16 conversion instruction, which needs its own target attribute,
   this inlines into the sequence kernels (the forward's h_t for its next product, the backward's dPre straight
   from the registers). */
static inline __attribute__((always_inline)) void rk_vstore_bf16(uint16_t *p, __m512 v, long n) {
    const __m512i u = _mm512_castps_si512(v), one = _mm512_set1_epi32(1);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    const __m256i h = _mm512_cvtepi32_epi16(r);
    if (n >= 16)
        _mm256_storeu_si256((__m256i *)p, h);
    else
        _mm256_mask_storeu_epi16(p, (__mmask16)((1u << n) - 1), h);
}

/* the first n (≤ 16) floats at src, rounded to bf16, at p */
static inline __attribute__((always_inline)) void rk_store_bf16(uint16_t *p, const float *src, long n) {
    rk_vstore_bf16(p, _mm512_maskz_loadu_ps(n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1), src), n);
}

/* Units [lo, hi) of the B rows of src (row stride lds) in bf16 into dst (row stride ldd): under recurrent dropout,
   the next step's product operand m ⊙ h_t from the float32 ring reg.h keeps. */
RK_BF16 static void rk_store_bf16_rows(uint16_t *dst, long ldd, const float *src, long lds, long B, long lo, long hi) {
    for (long b = 0; b < B; b++)
        for (long u = lo; u < hi; u += 16) rk_store_bf16(dst + b * ldd + u, src + b * lds + u, hi - u < 16 ? hi - u : 16);
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

/* ---- AMX: the same products on the tile unit (Intel Sapphire Rapids and later) ----
   One TDPBF16PS multiplies a 16 × 32 bf16 tile by a 32 × 16 one into 16 × 16 floats: 16 times the products of a
   vector FMA. The packed weights' layout above is already AMX's "VNNI" layout for the second operand (16 rows
   of pairs), given k padded to a multiple of 32; operand rows (x, h, dPre in bf16) are padded the same way.
   Tiles 0-3 accumulate (R rows × 16 floats), tile 4 holds the rows' operand, tile 5 the weights'. */
#define RK_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} rk_tilecfg;

/* Tiles for R (≤ 16) rows; every thread configures its own before its first tile operation. */
RK_AMX static void rk_amx_config(int R) {
    rk_tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 5; t++) c.rows[t] = (uint8_t)R, c.colsb[t] = 64;
    c.rows[5] = 16, c.colsb[5] = 64;
    /* GCC does not see ldtilecfg read the struct and drops the stores above without this barrier (the tile
       unit then faults on the garbage left in the red zone) */
    __asm__ __volatile__("" : : "r"(&c) : "memory");
    _tile_loadconfig(&c);
}

RK_AMX static void rk_amx_release(void) { _tile_release(); }

/* Accumulate into tile `acc` (a constant) the product of rows (tile 4) by weights (tile 5). */
#define RK_AMX_DP(acc, w, ldw)                                                                                  \
    do {                                                                                                        \
        _tile_loadd(5, (w), (ldw));                                                                             \
        _tile_dpbf16ps(acc, 4, 5);                                                                              \
    } while (0)

/* out (R rows × NG·16 floats, row stride 64 floats) = A1 · W1 + A2 · W2 for the panel of 16 units whose packed
   weights start at w1, w2 (NG gates, rk_pack_bf16 with k padded to 32): A rows of K1, K2 bf16 (multiples of 32)
   at row strides lda1, lda2 (elements); A2 may be NULL. */
RK_AMX static void rk_amx_gates(int NG, long K1, const uint16_t *a1, long lda1, const uint16_t *w1, long K2,
                                const uint16_t *a2, long lda2, const uint16_t *w2, float *out) {
    const long ldw = NG * 64; /* bytes between pair rows of one gate */
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int pass = 0; pass < 2; pass++) {
        const uint16_t *a = pass ? a2 : a1, *w = pass ? w2 : w1;
        const long K = pass ? K2 : K1, lda = pass ? lda2 : lda1;
        for (long kb = 0; a && kb < K / 32; kb++) {
            const uint16_t *wk = w + kb * 16 * NG * 32; /* 16 pair rows of every gate */
            _tile_loadd(4, a + kb * 32, lda * 2);
            RK_AMX_DP(0, wk, ldw);
            if (NG > 1) RK_AMX_DP(1, wk + 32, ldw);
            if (NG > 2) RK_AMX_DP(2, wk + 64, ldw);
            if (NG > 3) RK_AMX_DP(3, wk + 96, ldw);
        }
    }
    _tile_stored(0, out, 256);
    if (NG > 1) _tile_stored(1, out + 16, 256);
    if (NG > 2) _tile_stored(2, out + 32, 256);
    if (NG > 3) _tile_stored(3, out + 48, 256);
}

/* The GRU's products (reset after: r multiplies only W_hn h + b_hn, so the candidate's two products stay apart):
   tx = (x W_irᵀ + h W_hrᵀ, x W_izᵀ + h W_hzᵀ, x W_inᵀ) and th = (·, ·, h W_hnᵀ) for the panel of 16 units; th's first
   two gates are left alone (the caller keeps them zero). Same operands and layout as rk_amx_gates with NG = 3. */
RK_AMX static void rk_amx_gru(long K1, const uint16_t *a1, long lda1, const uint16_t *w1, long K2, const uint16_t *a2,
                              long lda2, const uint16_t *w2, float *tx, float *th) {
    const long ldw = 3 * 64;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (long kb = 0; kb < K1 / 32; kb++) {
        const uint16_t *wk = w1 + kb * 16 * 3 * 32;
        _tile_loadd(4, a1 + kb * 32, lda1 * 2);
        RK_AMX_DP(0, wk, ldw);
        RK_AMX_DP(1, wk + 32, ldw);
        RK_AMX_DP(2, wk + 64, ldw);
    }
    for (long kb = 0; kb < K2 / 32; kb++) {
        const uint16_t *wk = w2 + kb * 16 * 3 * 32;
        _tile_loadd(4, a2 + kb * 32, lda2 * 2);
        RK_AMX_DP(0, wk, ldw);
        RK_AMX_DP(1, wk + 32, ldw);
        RK_AMX_DP(3, wk + 64, ldw);
    }
    _tile_stored(0, tx, 256);
    _tile_stored(1, tx + 16, 256);
    _tile_stored(2, tx + 32, 256);
    _tile_stored(3, th + 32, 256);
}

/* out[:, n_lo:n_hi] += A · W[:, n_lo:n_hi] on the tile unit: A (bf16, B × K, K a multiple of 32, row stride lda),
   Wᵀ packed by rk_pack_bf16 in panels of 16 units with k padded to 32; n_lo a multiple of 16. */
RK_AMX static void rk_amx_add_rows_product(long B, long K, const uint16_t *A, long lda, const uint16_t *Wtp, long n_lo,
                                           long n_hi, float *out, long ldo) {
    float tile[16 * 64] __attribute__((aligned(64)));
    int rows = 16;
    rk_amx_config(16);
    for (long b0 = 0; b0 < B; b0 += 16) {
        const int R = B - b0 < 16 ? (int)(B - b0) : 16;
        if (R != rows) rk_amx_config(rows = R);
        for (long n0 = n_lo; n0 < n_hi; n0 += 64) {
            const long nn = n_hi - n0 < 64 ? n_hi - n0 : 64, np = (nn + 15) / 16;
            const uint16_t *w = Wtp + (n0 / 16) * (K / 2) * 32, *wp = w + (K / 2) * 32;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (long kb = 0; kb < K / 32; kb++) {
                _tile_loadd(4, A + b0 * lda + kb * 32, lda * 2);
                RK_AMX_DP(0, w + kb * 512, 64);
                if (np > 1) RK_AMX_DP(1, wp + kb * 512, 64);
                if (np > 2) RK_AMX_DP(2, wp + (K / 2) * 32 + kb * 512, 64);
                if (np > 3) RK_AMX_DP(3, wp + 2 * (K / 2) * 32 + kb * 512, 64);
            }
            _tile_stored(0, tile, 256);
            if (np > 1) _tile_stored(1, tile + 16, 256);
            if (np > 2) _tile_stored(2, tile + 32, 256);
            if (np > 3) _tile_stored(3, tile + 48, 256);
            for (long r = 0; r < R; r++)
                for (long v = 0; v < nn; v++) out[(b0 + r) * ldo + n0 + v] += tile[r * 64 + v];
        }
    }
    _tile_release();
}
#undef RK_AMX_DP
