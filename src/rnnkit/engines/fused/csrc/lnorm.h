/* Layer-normalised LSTM and GRU (Ba, Kiros & Hinton 2016) over a whole sequence, for one REAL type: forward and
   backward. The equations are rnnkit.cells.LayerNormLSTMCell's and LayerNormGRUCell's; σ = rec_act, act any
   named activations, LN(z; α, β) = α ⊙ (z − μ) / sqrt(σ² + ε) + β over a row's features:
       LSTM: a = LN(W_ih x_t; α_x, β_x) + LN(W_hh h_{t-1}; α_h, β_h)     (4H: i, f, g, o)
             c_t = σ(a_f) ⊙ c_{t-1} + σ(a_i) ⊙ act(a_g)     h_t = σ(a_o) ⊙ act(LN(c_t; α_c, β_c))
       GRU:  (x_r, x_z, x_n) = LN(W_ih x_t; α_x, β_x)    (h_r, h_z, h_n) = LN(W_hh h_{t-1}; α_h, β_h)
             r = σ(x_r + h_r)   z = σ(x_z + h_z)   n = act(x_n + r ⊙ h_n)   h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
   W_ih x_t has no recurrence: the caller computes it for all steps as one GEMM; its layer norm is done here, row
   by row, with the rest.

   A layer norm needs every feature of its row, so a step is two phases: the product W_hh h_{t-1} split over
   units (each thread's panels of W_hh stay in its cache, as in lstm.h), the threads meet, then the layer norms
   and the update split over rows (batch entries), and the threads meet again. The backward walks the steps in
   reverse the same way: the pointwise and layer norm derivatives by rows, then dL/dh_{t-1} = dZ_t · W_hh by
   units; the gains' and shifts' gradients are summed per thread (the caller adds the threads' sums). Statistics are two-pass (the variance
   of z − μ, not E[z²] − μ², which cancels in float32). Rows past their sequence's end carry the state and write
   zeros. */
#include <math.h>

typedef struct {
    const rk_ln_fwd_args *f;
    const rk_ln_bwd_args *b;
    rk_barrier bar;
} RK(ln_job);

static inline REAL RK(hsum)(vec v) {
    REAL s = 0;
    for (long j = 0; j < VL; j++) s += v[j];
    return s;
}

/* μ and 1/sqrt(σ² + ε) of z[0 … n), two passes. */
static void RK(ln_stats)(const REAL *z, long n, REAL *mu, REAL *rs) {
    vec acc = {0};
    long j = 0;
    for (; j + VL <= n; j += VL) acc += RK(vload)(z + j);
    REAL s = RK(hsum)(acc);
    for (; j < n; j++) s += z[j];
    const REAL m = s / (REAL)n;
    acc = (vec){0};
    for (j = 0; j + VL <= n; j += VL) {
        const vec d = RK(vload)(z + j) - m;
        acc += d * d;
    }
    REAL s2 = RK(hsum)(acc);
    for (; j < n; j++) s2 += (z[j] - m) * (z[j] - m);
    *mu = m;
    *rs = (REAL)(1.0 / sqrt((double)(s2 / (REAL)n) + 1e-5)); /* ε: rnnkit.cells.layernorm.LN_EPS */
}

/* The layer norm's backward for one row of n, from dout = dL/dLN(z) and ŷ = (z − μ)/σ: dz = r (d − mean(d) −
   ŷ mean(d ⊙ ŷ)) with d = dout ⊙ α (dz may be dout itself); adds dout ⊙ ŷ and dout to the gain's and the
   shift's sums da, db. */
static void RK(ln_row_bwd)(const REAL *dout, const REAL *gain, const REAL *yh, REAL rs, long n, REAL *dz, REAL *da,
                           REAL *db) {
    vec a1 = {0}, a2 = {0};
    long j = 0;
    for (; j + VL <= n; j += VL) {
        const vec o = RK(vload)(dout + j), y = RK(vload)(yh + j), d = o * RK(vload)(gain + j);
        a1 += d;
        a2 += d * y;
        RK(vstore)(da + j, RK(vload)(da + j) + o * y);
        RK(vstore)(db + j, RK(vload)(db + j) + o);
    }
    REAL s1 = RK(hsum)(a1), s2 = RK(hsum)(a2);
    for (long k = j; k < n; k++) {
        s1 += dout[k] * gain[k];
        s2 += dout[k] * gain[k] * yh[k];
        da[k] += dout[k] * yh[k];
        db[k] += dout[k];
    }
    const REAL m1 = s1 / (REAL)n, m2 = s2 / (REAL)n;
    for (j = 0; j + VL <= n; j += VL)
        RK(vstore)(dz + j, rs * (RK(vload)(dout + j) * RK(vload)(gain + j) - m1 - RK(vload)(yh + j) * m2));
    for (; j < n; j++) dz[j] = rs * (dout[j] * gain[j] - m1 - yh[j] * m2);
}

/* Ask for the n values at p (a whole row of a buffer written long ago, usually one page: the hardware prefetcher
   stops at page boundaries) while the current row is computed. */
static inline void RK(prefetch_row)(const REAL *p, long n) {
    for (long j = 0; j < n; j += 64 / (long)sizeof(REAL)) __builtin_prefetch(p + j, 0, 3);
}

/* The vector at `p + u` (nu values, zeros past them), or zeros where p is NULL (an absent shift). */
static inline vec RK(vopt)(const REAL *p, long u, long nu) {
    const vec zero = {0};
    return p ? RK(vload_n)(p + u, nu) : zero;
}

/* α ⊙ (z − μ) r + β at units u … u + nu of one gate block (offset k·H): a layer norm's output, from its stats. */
static inline vec RK(ln_out)(const REAL *z, const REAL *gain, const REAL *shift, REAL mu, REAL rs, long o, long nu) {
    return RK(vload_n)(gain + o, nu) * ((RK(vload_n)(z + o, nu) - mu) * rs) + RK(vopt)(shift, o, nu);
}

/* One row of the forward after the product: y (NG·H) holds W_hh h_{t-1} and becomes its normalised ŷ; z = W_ih x_t.
   stats: 1/σ of W_hh h, μ and 1/σ of W_ih x, μ and 1/σ of c_t. */
static inline __attribute__((always_inline)) void RK(ln_row_fwd)(const rk_ln_fwd_args *a, long NG, const REAL *z,
                                                                  REAL *y, const REAL *hp, const REAL *cp, REAL *hn,
                                                                  REAL *cn, REAL *g, REAL *stats, const int act,
                                                                  const int rec) {
    const long H = a->H, GH = NG * H;
    const REAL *ax = a->ax, *bx = a->bx, *ah = a->ah, *bh = a->bhh, *ac = a->ac, *bc = a->bc;
    REAL mh, rh, mx, rx;
    RK(ln_stats)(y, GH, &mh, &rh);
    for (long j = 0; j < GH; j++) y[j] = (y[j] - mh) * rh; /* ŷ, kept for the backward */
    RK(ln_stats)(z, GH, &mx, &rx);
    stats[0] = rh, stats[1] = mx, stats[2] = rx;
    for (long u = 0; u < H; u += VL) {
        const long nu = H - u < VL ? H - u : VL;
        vec xw[4], hw[4]; /* LN(W_ih x; α_x, β_x) and LN(W_hh h; α_h, β_h) */
        for (int k = 0; k < NG; k++) {
            xw[k] = RK(ln_out)(z, ax, bx, mx, rx, k * H + u, nu);
            hw[k] = RK(vload_n)(ah + k * H + u, nu) * RK(vload_n)(y + k * H + u, nu) + RK(vopt)(bh, k * H + u, nu);
        }
        if (NG == 4) {
            const vec i = RK(act)(rec, xw[0] + hw[0]), f = RK(act)(rec, xw[1] + hw[1]), gg = RK(act)(act, xw[2] + hw[2]);
            RK(vstore_n)(cn + u, f * RK(vload_n)(cp + u, nu) + i * gg, nu); /* c_t: not normalised */
            RK(vstore_n)(g + 3 * H + u, RK(act)(rec, xw[3] + hw[3]), nu);   /* o, read again below */
            RK(vstore_n)(g + u, i, nu);
            RK(vstore_n)(g + H + u, f, nu);
            RK(vstore_n)(g + 2 * H + u, gg, nu);
        } else {
            const vec r = RK(act)(rec, xw[0] + hw[0]), zz = RK(act)(rec, xw[1] + hw[1]);
            const vec n = RK(act)(act, xw[2] + r * hw[2]); /* reset after the product */
            RK(vstore_n)(hn + u, n + zz * (RK(vload_n)(hp + u, nu) - n), nu);
            if (g) {
                RK(vstore_n)(g + u, r, nu);
                RK(vstore_n)(g + H + u, zz, nu);
                RK(vstore_n)(g + 2 * H + u, n, nu);
            }
        }
    }
    if (NG != 4) return;
    REAL mc, rc;
    RK(ln_stats)(cn, H, &mc, &rc); /* LN(c_t; α_c, β_c), then h_t = o ⊙ act(LN(c_t)) */
    stats[3] = mc, stats[4] = rc;
    for (long u = 0; u < H; u += VL) {
        const long nu = H - u < VL ? H - u : VL;
        const vec lc = RK(ln_out)(cn, ac, bc, mc, rc, u, nu);
        RK(vstore_n)(hn + u, RK(vload_n)(g + 3 * H + u, nu) * RK(act)(act, lc), nu);
    }
}

static void RK(ln_fwd_task)(void *ctx, int tid, int nth) {
    RK(ln_job) *j = ctx;
    const rk_ln_fwd_args *a = j->f;
    const long T = a->T, B = a->B, H = a->H, NG = a->NG, GH = NG * H, nb = (H + VL - 1) / VL;
    const int dflt = a->act == RK_TANH && a->rec_act == RK_SIGMOID, lstm = NG == 4;
    long r_lo, r_hi, p_lo, p_hi;
    rk_share(B, tid, nth, &r_lo, &r_hi);  /* rows: the layer norms and the update */
    rk_share(nb, tid, nth, &p_lo, &p_hi); /* panels of W_hh: the product (each thread's share stays in its cache) */
    const long nt = RK(ntiles)(B, RK(tile_rows)((int)NG));
    int sense = 0;
    const REAL *zx = a->zx, *Wp = a->Wp;
    REAL *Hs = a->Hs, *Cs = a->Cs, *G = a->G, *Yh = a->Yh;
    REAL *out_stats[5] = {a->Rh, a->Mx, a->Rx, a->Mc, a->Rc};
    REAL tile[MR_MAX * 4 * VL] __attribute__((aligned(64)));
    REAL orow[4 * VL * 64]; /* the LSTM keeps o in the gate row: a stand-in row when the gates are not kept */
    REAL *ob = (!G && lstm) ? (4 * H <= 4 * VL * 64 ? orow : malloc(sizeof(REAL) * 4 * H)) : NULL;
    for (long t = 0; t < T; t++) {
        const REAL *hp = t ? Hs + (t - 1) * B * H : (const REAL *)a->h0;
        const REAL *cp = !lstm ? NULL : t ? Cs + (t - 1) * B * H : (const REAL *)a->c0;
        REAL *hn = Hs + t * B * H, *cn = lstm ? Cs + t * B * H : NULL, *yt = Yh + (a->keep ? t * B * GH : 0);
        REAL *gt = G ? G + t * B * GH : NULL;
        /* W_hh h_{t-1} for the thread's panels (VL units of every gate), every row */
        for (long p = p_lo; p < p_hi; p++) {
            const long u = p * VL, nu = H - u < VL ? H - u : VL;
            for (long i = 0; i < nt; i++) {
                const long b0 = B * i / nt, R = B * (i + 1) / nt - b0;
                RK(tile)((int)R, (int)NG, H, hp + b0 * H, H, 1, Wp + p * H * NG * VL, NG * VL, tile);
                for (long r = 0; r < R; r++)
                    for (long k = 0; k < NG; k++)
                        RK(vstore_n)(yt + (b0 + r) * GH + k * H + u, RK(vload)(tile + r * 4 * VL + k * VL), nu);
            }
        }
        rk_barrier_wait(&j->bar, nth, &sense); /* a row's layer norm needs all of its W_hh h_{t-1} */
        for (long b = r_lo; b < r_hi; b++) {
            REAL stats[5] = {0, 0, 0, 0, 0};
            if (a->len && t >= a->len[b]) { /* ended: carry the state, zeros elsewhere */
                for (long v = 0; v < H; v++) {
                    hn[b * H + v] = hp[b * H + v];
                    if (lstm) cn[b * H + v] = cp[b * H + v];
                }
                for (long v = 0; v < GH; v++) {
                    yt[b * GH + v] = 0;
                    if (gt) gt[b * GH + v] = 0;
                }
            } else {
                if (b + 1 < r_hi) RK(prefetch_row)(zx + (t * B + b + 1) * GH, GH);
                const REAL *zr = zx + (t * B + b) * GH, *hpr = hp + b * H, *cpr = lstm ? cp + b * H : NULL;
                REAL *yr = yt + b * GH, *hnr = hn + b * H, *cnr = lstm ? cn + b * H : NULL;
                REAL *gr = gt ? gt + b * GH : ob;
                if (dflt)
                    RK(ln_row_fwd)(a, NG, zr, yr, hpr, cpr, hnr, cnr, gr, stats, RK_TANH, RK_SIGMOID);
                else
                    RK(ln_row_fwd)(a, NG, zr, yr, hpr, cpr, hnr, cnr, gr, stats, a->act, a->rec_act);
            }
            for (int k = 0; k < 5; k++)
                if (out_stats[k]) out_stats[k][t * B + b] = stats[k];
        }
        rk_barrier_wait(&j->bar, nth, &sense); /* step t + 1's product reads every row of h_t */
    }
    if (ob && ob != orow) free(ob);
}

static void RK(ln_fwd_entry)(const rk_ln_fwd_args *a) {
    RK(ln_job) j = {.f = a};
    rk_parallel(RK(ln_fwd_task), &j, a->nth);
}

/* One row of the backward at step t: d = dL/dh_t (outside + later steps). Writes the row of dZx (dL/d(W_ih x))
   and dZ (dL/d(W_hh h_{t-1})), adds to the thread's sums (sm: α_x, β_x, α_h, β_h, α_c, β_c, NG·H apart); dc:
   dL/dc_t in, dL/dc_{t-1} out; nx: this row of dL/dh_{t-1} before the product (the GRU's direct path z ⊙ d);
   sc: 2 · NG·H scratch. */
static inline __attribute__((always_inline)) void RK(ln_row_bwd_step)(const rk_ln_bwd_args *a, long NG, long t,
                                                                       long b, const REAL *d, REAL *dc, REAL *nx,
                                                                       REAL *sm, REAL *sc, const int act,
                                                                       const int rec) {
    const long B = a->B, H = a->H, GH = NG * H, row = t * B + b;
    const REAL *g = (const REAL *)a->G + row * GH, *yh = (const REAL *)a->Yh + row * GH;
    const REAL *gg = a->gG ? (const REAL *)a->gG + row * GH : NULL, *ah = a->ah, *bh = a->bhh;
    const REAL *zx = (const REAL *)a->Zx + row * GH, mx = ((const REAL *)a->Mx)[row], rx = ((const REAL *)a->Rx)[row];
    REAL *dx = (REAL *)a->dZx + row * GH, *dz = (REAL *)a->dZ + row * GH, *yx = sc, *dhw = sc + GH;
    const vec zero = {0};
    if (NG == 4) {
        const REAL *cn = (const REAL *)a->Cs + (row + B) * H, *cp = (const REAL *)a->Cs + row * H;
        const REAL *ac = a->ac, *bc = a->bc, *gc = a->gC ? (const REAL *)a->gC + row * H : NULL;
        const REAL mc = ((const REAL *)a->Mc)[row], rc = ((const REAL *)a->Rc)[row];
        REAL *dlc = dhw, *ch = dhw + H, *dcl = dhw + 2 * H; /* dL/dLN(c_t), ĉ, dL/dc_t through the norm */
        for (long u = 0; u < H; u += VL) { /* through h_t = o ⊙ act(LN(c_t)): dL/da_o and dL/dLN(c_t) */
            const long nu = H - u < VL ? H - u : VL;
            const vec dh = RK(vload_n)(d + u, nu), o = RK(vload_n)(g + 3 * H + u, nu);
            const vec c_hat = (RK(vload_n)(cn + u, nu) - mc) * rc;
            const vec tl = RK(act)(act, RK(vload_n)(ac + u, nu) * c_hat + RK(vopt)(bc, u, nu));
            const vec eo = gg ? RK(vload_n)(gg + 3 * H + u, nu) : zero;
            RK(vstore_n)(dx + 3 * H + u, (dh * tl + eo) * RK(act_grad)(rec, o), nu);
            RK(vstore_n)(dlc + u, dh * o * RK(act_grad)(act, tl), nu);
            RK(vstore_n)(ch + u, c_hat, nu);
        }
        RK(ln_row_bwd)(dlc, ac, ch, rc, H, dcl, sm + 4 * GH, sm + 5 * GH);
        for (long u = 0; u < H; u += VL) { /* through c_t = f ⊙ c_{t-1} + i ⊙ g */
            const long nu = H - u < VL ? H - u : VL;
            vec dcn = RK(vload_n)(dc + u, nu) + RK(vload_n)(dcl + u, nu);
            if (gc) dcn += RK(vload_n)(gc + u, nu);
            const vec i = RK(vload_n)(g + u, nu), f = RK(vload_n)(g + H + u, nu), gv = RK(vload_n)(g + 2 * H + u, nu);
            vec e[3] = {zero, zero, zero};
            for (int k = 0; gg && k < 3; k++) e[k] = RK(vload_n)(gg + k * H + u, nu);
            RK(vstore_n)(dx + u, (dcn * gv + e[0]) * RK(act_grad)(rec, i), nu);
            RK(vstore_n)(dx + H + u, (dcn * RK(vload_n)(cp + u, nu) + e[1]) * RK(act_grad)(rec, f), nu);
            RK(vstore_n)(dx + 2 * H + u, (dcn * i + e[2]) * RK(act_grad)(act, gv), nu);
            RK(vstore_n)(dc + u, dcn * f, nu); /* the memory path: dL/dc_{t-1} = dL/dc_t ⊙ f */
        }
        for (long v = 0; v < H; v++) nx[v] = 0;
        dhw = dx; /* the LSTM adds both normalised halves: each gets dL/da */
    } else {
        const REAL *hp = (const REAL *)a->Hs + row * H;
        for (long u = 0; u < H; u += VL) {
            const long nu = H - u < VL ? H - u : VL;
            const vec dh = RK(vload_n)(d + u, nu);
            const vec r = RK(vload_n)(g + u, nu), z = RK(vload_n)(g + H + u, nu), n = RK(vload_n)(g + 2 * H + u, nu);
            const vec hw_n =
                RK(vload_n)(ah + 2 * H + u, nu) * RK(vload_n)(yh + 2 * H + u, nu) + RK(vopt)(bh, 2 * H + u, nu);
            vec e[3] = {zero, zero, zero};
            for (int k = 0; gg && k < 3; k++) e[k] = RK(vload_n)(gg + k * H + u, nu);
            const vec dan = (dh * (RK(splat)(1) - z) + e[2]) * RK(act_grad)(act, n);
            const vec dar = (dan * hw_n + e[0]) * RK(act_grad)(rec, r);
            const vec daz = (dh * (RK(vload_n)(hp + u, nu) - n) + e[1]) * RK(act_grad)(rec, z);
            RK(vstore_n)(dx + u, dar, nu);
            RK(vstore_n)(dx + H + u, daz, nu);
            RK(vstore_n)(dx + 2 * H + u, dan, nu);
            RK(vstore_n)(dhw + u, dar, nu);
            RK(vstore_n)(dhw + H + u, daz, nu);
            RK(vstore_n)(dhw + 2 * H + u, dan * r, nu); /* h_n is scaled by r */
            RK(vstore_n)(nx + u, dh * z, nu);           /* the direct path ∂h_t/∂h_{t-1} ∋ diag(z) */
        }
    }
    RK(ln_row_bwd)(dhw, ah, yh, ((const REAL *)a->Rh)[row], GH, dz, sm + 2 * GH, sm + 3 * GH); /* LN(W_hh h) */
    for (long j = 0; j < GH; j++) yx[j] = (zx[j] - mx) * rx;                                  /* ŷ of W_ih x */
    RK(ln_row_bwd)(dx, a->ax, yx, rx, GH, dx, sm, sm + GH); /* LN(W_ih x), in place: dZx */
}

static void RK(ln_bwd_task)(void *ctx, int tid, int nth) {
    RK(ln_job) *j = ctx;
    const rk_ln_bwd_args *a = j->b;
    const long T = a->T, B = a->B, H = a->H, NG = a->NG, GH = NG * H, nb = (H + VL - 1) / VL;
    const int dflt = a->act == RK_TANH && a->rec_act == RK_SIGMOID;
    long r_lo, r_hi, p_lo, p_hi;
    rk_share(B, tid, nth, &r_lo, &r_hi);  /* rows: the pointwise and layer norm derivatives */
    rk_share(nb, tid, nth, &p_lo, &p_hi); /* units of h_{t-1}: the product dZ_t · W_hh */
    const long v_lo = p_lo * VL, v_hi = p_hi * VL < H ? p_hi * VL : H;
    int sense = 0;
    REAL *cur = a->dh, *nxt = a->dh2, *dc = a->dc, *dZx = a->dZx, *dZ = a->dZ;
    REAL *sm = (REAL *)a->sums + tid * 6 * GH, *sc = (REAL *)a->scratch + tid * 2 * GH;
    const REAL *gout = a->gout, *gC = a->gC;
    for (long t = T - 1; t >= 0; t--) {
        for (long b = r_lo; b < r_hi; b++) {
            const long row = t * B + b;
            REAL *d = cur + b * H; /* dL/dh_t: from later steps, plus from outside */
            for (long v = 0; v < H; v++) d[v] += gout[row * H + v];
            if (a->len && t >= a->len[b]) { /* ended: nothing enters the step; dh and dc pass through */
                for (long v = 0; v < GH; v++) dZx[row * GH + v] = dZ[row * GH + v] = 0;
                for (long v = 0; v < H; v++) {
                    nxt[b * H + v] = d[v];
                    if (gC) dc[b * H + v] += gC[row * H + v];
                }
                continue;
            }
            if (b + 1 < r_hi) { /* the next row's saved buffers, while this one is computed */
                RK(prefetch_row)((const REAL *)a->G + (row + 1) * GH, GH);
                RK(prefetch_row)((const REAL *)a->Yh + (row + 1) * GH, GH);
                RK(prefetch_row)((const REAL *)a->Zx + (row + 1) * GH, GH);
                RK(prefetch_row)(gout + (row + 1) * H, H);
            }
            REAL *dcb = dc ? dc + b * H : NULL;
            if (dflt)
                RK(ln_row_bwd_step)(a, NG, t, b, d, dcb, nxt + b * H, sm, sc, RK_TANH, RK_SIGMOID);
            else
                RK(ln_row_bwd_step)(a, NG, t, b, d, dcb, nxt + b * H, sm, sc, a->act, a->rec_act);
        }
        rk_barrier_wait(&j->bar, nth, &sense); /* dZ_t must be whole */
        if ((t > 0 || a->need_dh0) && v_lo < v_hi) /* dL/dh_{t-1} += dZ_t · W_hh for the thread's units */
            RK(add_rows_product)(B, GH, dZ + t * B * GH, GH, a->W, a->ldw, v_lo, v_hi, nxt, H);
        rk_barrier_wait(&j->bar, nth, &sense); /* step t - 1 reads whole rows of it */
        REAL *swap = cur;
        cur = nxt;
        nxt = swap;
    }
    if (cur != a->dh)
        for (long b = r_lo; b < r_hi; b++)
            for (long v = 0; v < H; v++) ((REAL *)a->dh)[b * H + v] = cur[b * H + v];
}

static void RK(ln_bwd_entry)(const rk_ln_bwd_args *a) {
    RK(ln_job) j = {.b = a};
    rk_parallel(RK(ln_bwd_task), &j, a->nth);
}
