/* Products and updates over wide panels (4·VL units of one gate each), for one REAL type: the building
   blocks of the one-gate layers (Elman, Jordan) and of the LSTM's projection. A thread owns whole panels;
   rows (batch entries) whose sequence has ended keep their previous value. */

#define UP (4 * VL) /* units per wide panel */

/* out[b, units of panel p] = act(tile rows + bias) for one product pass: ta (and tb, if not NULL) hold the
   tile rows of the products for rows b0 … b0 + R; rows whose sequence has ended keep `prev`. With zoneout on
   the state (g, reg.h; B rows in all) the new value is mixed with `prev`. */
static void RK(panel_update)(int code, long R, long b0, long t, const int64_t *len, long p, long N, const REAL *ta,
                             const REAL *tb, const REAL *bias, const REAL *prev, REAL *out, long ldo, long B,
                             const rk_reg_args *g) {
    const long u = p * UP, nu = N - u < UP ? N - u : UP;
    for (long r = 0; r < R; r++) {
        const long b = b0 + r;
        for (long v = 0; v < nu; v += VL) {
            const long n = nu - v < VL ? nu - v : VL;
            REAL *o = out + b * ldo + u + v;
            if (len && t >= len[b]) {
                RK(vstore_n)(o, RK(vload_n)(prev + b * ldo + u + v, n), n);
                continue;
            }
            vec pre = RK(vload)(ta + r * 4 * VL + v);
            if (tb) pre += RK(vload)(tb + r * 4 * VL + v);
            if (bias) pre += RK(vload_n)(bias + u + v, n);
            vec y = RK(act)(code, pre);
            if (RK(zone_on)(g, 0))
                y = RK(zone_mix)(RK(zone_d)(g, 0, t, B, b, N, u + v, n), RK(vload_n)(prev + b * ldo + u + v, n), y);
            RK(vstore_n)(o, y, n);
        }
    }
}

/* Panels [p_lo, p_hi) of out (B × N) = act(A1 · W1p + A2 · W2p + bias): A1 is B × K1, A2 is B × K2 or NULL;
   g: zoneout on out (or NULL). */
static void RK(panels_step)(int code, long B, long t, const int64_t *len, long p_lo, long p_hi, long N,
                            const REAL *A1, long K1, const REAL *W1p, const REAL *A2, long K2, const REAL *W2p,
                            const REAL *bias, const REAL *prev, REAL *out, const rk_reg_args *g) {
    REAL ta[MR_MAX * 4 * VL] __attribute__((aligned(64))), tb[MR_MAX * 4 * VL] __attribute__((aligned(64)));
    for (long p = p_lo; p < p_hi; p++) {
        const long nu = N - p * UP < UP ? N - p * UP : UP;
        const int NV = (int)((nu + VL - 1) / VL);
        const long nt = RK(ntiles)(B, RK(tile_rows)(NV));
        for (long i = 0; i < nt; i++) {
            const long b0 = B * i / nt, R = B * (i + 1) / nt - b0;
            RK(tile)((int)R, NV, K1, A1 + b0 * K1, K1, 1, W1p + p * K1 * UP, UP, ta);
            if (A2) RK(tile)((int)R, NV, K2, A2 + b0 * K2, K2, 1, W2p + p * K2 * UP, UP, tb);
            RK(panel_update)(code, R, b0, t, len, p, N, ta, A2 ? tb : NULL, bias, prev, out, N, B, g);
        }
    }
}

/* dp[b, own units] = (dh + go)[b, own] ⊙ act'(y[b, own]) (0 past the sequence's end); db += Σ_b dp.
   nxt (if not NULL) starts at 0 for the product that follows — or, where the sequence has ended (the state
   was carried unchanged), carries dh + go to the previous step. With zoneout on y (g; prev = y_{t-1}) only
   (1 − d) ⊙ (dh + go) reaches the candidate, whose value is y where d = 0 in training, and at evaluation
   (y − p y_{t-1}) / (1 − p). */
static void RK(panels_grad)(int code, long B, long t, const int64_t *len, long u_lo, long u_hi, long N,
                            const REAL *dh, const REAL *go, const REAL *y, REAL *dp, REAL *db, REAL *nxt,
                            const REAL *prev, const rk_reg_args *g) {
    const vec zero = {0};
    for (long b = 0; b < B; b++)
        for (long u = u_lo; u < u_hi; u += VL) {
            const long n = u_hi - u < VL ? u_hi - u : VL, s = b * N + u;
            vec d = RK(vload_n)(dh + s, n);
            if (go) d += RK(vload_n)(go + s, n);
            if (len && t >= len[b]) {
                RK(vstore_n)(dp + s, zero, n);
                if (nxt) RK(vstore_n)(nxt + s, d, n);
                continue;
            }
            vec yv = RK(vload_n)(y + s, n);
            if (RK(zone_on)(g, 0)) {
                const vec z = RK(zone_d)(g, 0, t, B, b, N, u, n);
                if (!g->train) yv = (yv - z * RK(vload_n)(prev + s, n)) / ((REAL)1 - z);
                d *= (REAL)1 - z;
            }
            d *= RK(act_grad)(code, yv);
            RK(vstore_n)(dp + s, d, n);
            if (db) RK(vstore_n)(db + u, RK(vload_n)(db + u, n) + d, n);
            if (nxt) RK(vstore_n)(nxt + s, zero, n);
        }
}

/* The panels [p_lo, p_hi) and units [u_lo, u_hi) of N that thread tid of nth owns. */
static void RK(own_panels)(long N, long U, int tid, int nth, long *p_lo, long *p_hi, long *u_lo, long *u_hi) {
    rk_share((N + U - 1) / U, tid, nth, p_lo, p_hi);
    *u_lo = *p_lo * U;
    *u_hi = *p_hi * U < N ? *p_hi * U : N;
}

/* Threads worth starting for N units in panels of U: one panel each at most. */
static int RK(threads_for)(long N, long U, int nth) {
    const long panels = (N + U - 1) / U;
    return nth < panels ? nth : (int)(panels > 0 ? panels : 1);
}
