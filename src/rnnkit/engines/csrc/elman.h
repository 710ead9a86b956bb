/* Elman and Jordan layers over a whole sequence (one direction of one layer) for one REAL type.

   Elman (torch.nn.RNN):   h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
   Jordan (rnnkit.cells):  h_t = act(W_ih x_t + b_ih + W_yh y_{t-1} + b_yh),   y_t = out_act(W_hy h_t + b_hy)

   One gate per unit, so a panel holds 4·VL consecutive units (rk_pack_gates with U = 4·VL) and threads
   split those panels. Elman meets once per step; Jordan twice (y_t needs all of h_t, and step t + 1 all
   of y_t). Activations are named by code (rk_act); every derivative is taken from the activation's output. */

static inline vec RK(act)(int code, vec x) {
    const vec zero = {0};
    switch (code) {
    case RK_TANH: return RK(vtanh)(x);
    case RK_RELU: return RK(vselect)(x < zero, zero, x); /* NaN passes through, as in torch */
    case RK_SIGMOID: return RK(vsigmoid)(x);
    default: return x;
    }
}

/* d act / d pre-activation, from the output y */
static inline vec RK(act_grad)(int code, vec y) {
    const vec one = RK(splat)(1), zero = {0};
    switch (code) {
    case RK_TANH: return one - y * y;
    case RK_RELU: return RK(vselect)(y > zero, one, zero);
    case RK_SIGMOID: return y * (one - y);
    default: return one;
    }
}

#define UP (4 * VL) /* units per panel */

/* out[b, units of panel p] = act(tile rows + bias) for one product pass: ta (and tb, if not NULL) hold the
   tile rows of the products for rows b0 … b0 + R; rows whose sequence has ended keep `prev`. */
static void RK(panel_update)(int code, long R, long b0, long t, const long *len, long p, long N, const REAL *ta,
                             const REAL *tb, const REAL *bias, const REAL *prev, REAL *out, long ldo) {
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
            RK(vstore_n)(o, RK(act)(code, pre), n);
        }
    }
}

/* Panels [p_lo, p_hi) of out (B × N) = act(A1 · W1p + A2 · W2p + bias): A1 is B × K1, A2 is B × K2 or NULL. */
static void RK(panels_step)(int code, long B, long t, const long *len, long p_lo, long p_hi, long N,
                            const REAL *A1, long K1, const REAL *W1p, const REAL *A2, long K2, const REAL *W2p,
                            const REAL *bias, const REAL *prev, REAL *out) {
    REAL ta[MR_MAX * 4 * VL] __attribute__((aligned(64))), tb[MR_MAX * 4 * VL] __attribute__((aligned(64)));
    for (long p = p_lo; p < p_hi; p++) {
        const long nu = N - p * UP < UP ? N - p * UP : UP;
        const int NV = (int)((nu + VL - 1) / VL);
        const long nt = RK(ntiles)(B, RK(tile_rows)(NV));
        for (long i = 0; i < nt; i++) {
            const long b0 = B * i / nt, R = B * (i + 1) / nt - b0;
            RK(tile)((int)R, NV, K1, A1 + b0 * K1, K1, 1, W1p + p * K1 * UP, UP, ta);
            if (A2) RK(tile)((int)R, NV, K2, A2 + b0 * K2, K2, 1, W2p + p * K2 * UP, UP, tb);
            RK(panel_update)(code, R, b0, t, len, p, N, ta, A2 ? tb : NULL, bias, prev, out, N);
        }
    }
}

/* dp[b, own units] = (dh + go)[b, own] ⊙ act'(y[b, own]) (0 past the sequence's end); db += Σ_b dp;
   nxt starts at 0 for the product that follows (or carries dh where the sequence has ended). */
static void RK(panels_grad)(int code, long B, long t, const long *len, long u_lo, long u_hi, long N,
                            const REAL *dh, const REAL *go, const REAL *y, REAL *dp, REAL *db, REAL *nxt) {
    const vec zero = {0};
    for (long b = 0; b < B; b++)
        for (long u = u_lo; u < u_hi; u += VL) {
            const long n = u_hi - u < VL ? u_hi - u : VL, s = b * N + u;
            if (len && t >= len[b]) {
                RK(vstore_n)(dp + s, zero, n);
                if (nxt) RK(vstore_n)(nxt + s, RK(vload_n)(dh + s, n), n);
                continue;
            }
            vec d = RK(vload_n)(dh + s, n);
            if (go) d += RK(vload_n)(go + s, n);
            d *= RK(act_grad)(code, RK(vload_n)(y + s, n));
            RK(vstore_n)(dp + s, d, n);
            if (db) RK(vstore_n)(db + u, RK(vload_n)(db + u, n) + d, n);
            if (nxt) RK(vstore_n)(nxt + s, zero, n);
        }
}

static void RK(own_units)(long N, int tid, int nth, long *p_lo, long *p_hi, long *u_lo, long *u_hi) {
    rk_share((N + UP - 1) / UP, tid, nth, p_lo, p_hi);
    *u_lo = *p_lo * UP;
    *u_hi = *p_hi * UP < N ? *p_hi * UP : N;
}

/* ---- Elman ---- */
typedef struct {
    long T, B, H, F;
    int act, need_dh0;
    const REAL *x, *Wxp, *Wp, *bias; /* bias = b_ih + b_hh (H) or NULL */
    const long *len;
    const REAL *h0;             /* forward: (B, H) the initial state */
    REAL *Hs;                   /* forward: (T, B, H) h_1 … h_T; backward: (T + 1, B, H) h_0 … h_T */
    const REAL *W, *gout;       /* backward: W_hh (H × ldw), dL/d outputs (T, B, H) */
    long ldw;
    REAL *dh, *dh2, *dPre, *db; /* backward: dL/dh_T → dL/dh_0, scratch, (T, B, H), (H) */
    rk_barrier bar;
} RK(elman_job);

static void RK(elman_fwd_task)(void *ctx, int tid, int nth) {
    RK(elman_job) *j = ctx;
    const long B = j->B, H = j->H;
    long p_lo, p_hi, u_lo, u_hi;
    RK(own_units)(H, tid, nth, &p_lo, &p_hi, &u_lo, &u_hi);
    int sense = 0;
    for (long t = 0; t < j->T; t++) {
        const REAL *hp = t ? j->Hs + (t - 1) * B * H : j->h0;
        RK(panels_step)(j->act, B, t, j->len, p_lo, p_hi, H, j->x + t * B * j->F, j->F, j->Wxp, hp, H, j->Wp,
                        j->bias, hp, j->Hs + t * B * H);
        rk_barrier_wait(&j->bar, nth, &sense);
    }
}

static void RK(elman_bwd_task)(void *ctx, int tid, int nth) {
    RK(elman_job) *j = ctx;
    const long B = j->B, H = j->H;
    long p_lo, p_hi, u_lo, u_hi;
    RK(own_units)(H, tid, nth, &p_lo, &p_hi, &u_lo, &u_hi);
    REAL *cur = j->dh, *nxt = j->dh2;
    int sense = 0;
    for (long t = j->T - 1; t >= 0; t--) {
        REAL *dp = j->dPre + t * B * H;
        RK(panels_grad)(j->act, B, t, j->len, u_lo, u_hi, H, cur, j->gout + t * B * H, j->Hs + (t + 1) * B * H, dp,
                        j->db, nxt);
        rk_barrier_wait(&j->bar, nth, &sense);
        if (t > 0 || j->need_dh0) RK(add_rows_product)(B, H, dp, H, j->W, j->ldw, u_lo, u_hi, nxt, H);
        REAL *swap = cur;
        cur = nxt;
        nxt = swap;
    }
    RK(keep_in)(j->dh, cur, B, H, u_lo, u_hi);
}

static int RK(threads_for)(long N, int nth) {
    const long panels = (N + UP - 1) / UP;
    return nth < panels ? nth : (int)panels;
}

void RK(rk_elman_fwd)(long T, long B, long H, long F, int act, const REAL *x, const REAL *Wxp, const REAL *Wp,
                      const REAL *bias, const long *len, const REAL *h0, REAL *Hs, int nth) {
    RK(elman_job) j = {.T = T, .B = B, .H = H, .F = F, .act = act, .x = x, .Wxp = Wxp, .Wp = Wp, .bias = bias,
                       .len = len, .h0 = h0, .Hs = Hs};
    rk_parallel(RK(elman_fwd_task), &j, RK(threads_for)(H, nth));
}

void RK(rk_elman_bwd)(long T, long B, long H, int act, const REAL *Hs, const REAL *W, long ldw, const long *len,
                      const REAL *gout, REAL *dh, REAL *dh2, REAL *dPre, REAL *db, int need_dh0, int nth) {
    RK(elman_job) j = {.T = T, .B = B, .H = H, .act = act, .need_dh0 = need_dh0, .len = len, .Hs = (REAL *)Hs,
                       .W = W, .ldw = ldw, .gout = gout, .dh = dh, .dh2 = dh2, .dPre = dPre, .db = db};
    rk_parallel(RK(elman_bwd_task), &j, RK(threads_for)(H, nth));
}

/* ---- Jordan: the state is y (O features); the hidden layer h (H) is kept for the backward ---- */
typedef struct {
    long T, B, H, O, F;
    int act, out_act, need_dy0;
    const REAL *x, *Wxp, *Wyp, *Whp; /* packed W_ih (H × F), W_yh (H × O), W_hy (O × H) */
    const REAL *bias, *bias_hy;      /* b_ih + b_yh (H), b_hy (O), or NULL */
    const long *len;
    const REAL *y0;            /* forward: (B, O) the initial state */
    REAL *Ys, *Hh;             /* states: forward (T, B, O) y_1 … y_T, backward (T + 1, B, O) y_0 … y_T;
                                  (T, B, H) hidden layers */
    const REAL *W_yh, *W_hy;   /* backward: H × ldy, O × ldh (columns padded) */
    long ldy, ldh;
    const REAL *gout;          /* (T, B, O) */
    REAL *dy, *dy2, *dPre, *dPreY, *dh, *db, *db_hy; /* dPre (T, B, H), dPreY (T, B, O), dh: (B, H) scratch */
    rk_barrier bar;
} RK(jordan_job);

static void RK(jordan_fwd_task)(void *ctx, int tid, int nth) {
    RK(jordan_job) *j = ctx;
    const long B = j->B, H = j->H, O = j->O;
    long hp_lo, hp_hi, hu_lo, hu_hi, yp_lo, yp_hi, yu_lo, yu_hi;
    RK(own_units)(H, tid, nth, &hp_lo, &hp_hi, &hu_lo, &hu_hi);
    RK(own_units)(O, tid, nth, &yp_lo, &yp_hi, &yu_lo, &yu_hi);
    int sense = 0;
    for (long t = 0; t < j->T; t++) {
        const REAL *yp = t ? j->Ys + (t - 1) * B * O : j->y0;
        REAL *h = j->Hh + t * B * H;
        /* ended sequences: h keeps whatever (it is masked out), so `prev` may be h itself */
        RK(panels_step)(j->act, B, t, NULL, hp_lo, hp_hi, H, j->x + t * B * j->F, j->F, j->Wxp, yp, O, j->Wyp,
                        j->bias, h, h);
        rk_barrier_wait(&j->bar, nth, &sense);
        RK(panels_step)(j->out_act, B, t, j->len, yp_lo, yp_hi, O, h, H, j->Whp, NULL, 0, NULL, j->bias_hy, yp,
                        j->Ys + t * B * O);
        rk_barrier_wait(&j->bar, nth, &sense);
    }
}

static void RK(jordan_bwd_task)(void *ctx, int tid, int nth) {
    RK(jordan_job) *j = ctx;
    const long B = j->B, H = j->H, O = j->O;
    long hp_lo, hp_hi, hu_lo, hu_hi, yp_lo, yp_hi, yu_lo, yu_hi;
    RK(own_units)(H, tid, nth, &hp_lo, &hp_hi, &hu_lo, &hu_hi);
    RK(own_units)(O, tid, nth, &yp_lo, &yp_hi, &yu_lo, &yu_hi);
    REAL *cur = j->dy, *nxt = j->dy2;
    int sense = 0;
    for (long t = j->T - 1; t >= 0; t--) {
        REAL *dpy = j->dPreY + t * B * O, *dp = j->dPre + t * B * H;
        /* dPreY_t = dL/dy_t ⊙ out_act'(y_t); nxt (dL/dy_{t-1}) starts at 0, or carries dL/dy_t past the end */
        RK(panels_grad)(j->out_act, B, t, j->len, yu_lo, yu_hi, O, cur, j->gout + t * B * O, j->Ys + (t + 1) * B * O,
                        dpy, j->db_hy, nxt);
        rk_barrier_wait(&j->bar, nth, &sense);
        /* dL/dh_t = dPreY_t · W_hy, then dPre_t = dL/dh_t ⊙ act'(h_t) */
        for (long b = 0; b < B; b++)
            for (long u = hu_lo; u < hu_hi; u++) j->dh[b * H + u] = 0;
        RK(add_rows_product)(B, O, dpy, O, j->W_hy, j->ldh, hu_lo, hu_hi, j->dh, H);
        RK(panels_grad)(j->act, B, t, j->len, hu_lo, hu_hi, H, j->dh, NULL, j->Hh + t * B * H, dp, j->db, NULL);
        rk_barrier_wait(&j->bar, nth, &sense);
        if (t > 0 || j->need_dy0) RK(add_rows_product)(B, H, dp, H, j->W_yh, j->ldy, yu_lo, yu_hi, nxt, O);
        REAL *swap = cur;
        cur = nxt;
        nxt = swap;
    }
    RK(keep_in)(j->dy, cur, B, O, yu_lo, yu_hi);
}

void RK(rk_jordan_fwd)(long T, long B, long H, long O, long F, int act, int out_act, const REAL *x, const REAL *Wxp,
                       const REAL *Wyp, const REAL *Whp, const REAL *bias, const REAL *bias_hy, const long *len,
                       const REAL *y0, REAL *Ys, REAL *Hh, int nth) {
    RK(jordan_job) j = {.T = T, .B = B, .H = H, .O = O, .F = F, .act = act, .out_act = out_act, .x = x, .Wxp = Wxp,
                        .Wyp = Wyp, .Whp = Whp, .bias = bias, .bias_hy = bias_hy, .len = len, .y0 = y0, .Ys = Ys,
                        .Hh = Hh};
    const int a = RK(threads_for)(H, nth), b = RK(threads_for)(O, nth);
    rk_parallel(RK(jordan_fwd_task), &j, a > b ? a : b);
}

void RK(rk_jordan_bwd)(long T, long B, long H, long O, int act, int out_act, const REAL *Ys, const REAL *Hh,
                       const REAL *W_yh, long ldy, const REAL *W_hy, long ldh, const long *len, const REAL *gout,
                       REAL *dy, REAL *dy2, REAL *dh, REAL *dPre, REAL *dPreY, REAL *db, REAL *db_hy, int need_dy0,
                       int nth) {
    RK(jordan_job) j = {.T = T, .B = B, .H = H, .O = O, .act = act, .out_act = out_act, .need_dy0 = need_dy0,
                        .len = len, .Ys = (REAL *)Ys, .Hh = (REAL *)Hh, .W_yh = W_yh, .W_hy = W_hy, .ldy = ldy,
                        .ldh = ldh, .gout = gout, .dy = dy, .dy2 = dy2, .dPre = dPre, .dPreY = dPreY, .dh = dh,
                        .db = db, .db_hy = db_hy};
    const int a = RK(threads_for)(H, nth), b = RK(threads_for)(O, nth);
    rk_parallel(RK(jordan_bwd_task), &j, a > b ? a : b);
}

#undef UP
