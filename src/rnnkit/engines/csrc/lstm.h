/* LSTM over a whole sequence (one direction of one layer) for one REAL type: forward and backward.

   The equations are torch.nn.LSTM's (gate order i, f, g, o), with optional peepholes (rnnkit.cells):
       i = σ(W_ii x_t + W_hi h_{t-1} + b_i + w_ci ⊙ c_{t-1})     f = σ(W_if x_t + W_hf h_{t-1} + b_f + w_cf ⊙ c_{t-1})
       g = tanh(W_ig x_t + W_hg h_{t-1} + b_g)                    c_t = f ⊙ c_{t-1} + i ⊙ g
       o = σ(W_io x_t + W_ho h_{t-1} + b_o + w_co ⊙ c_t)          h_t = o ⊙ tanh(c_t)
   with b = b_ih + b_hh.

   Threads split the hidden units into blocks of VL. Per step, a thread computes all four gates of its own
   units — two tile products over its packed panels of W_ih and W_hh, then the cell update straight from
   the tiles — so the update needs nobody else's data; the threads meet once per step, because step t + 1
   reads all of h_t. The input projection is done inside the step rather than as one GEMM over all steps
   first: the same arithmetic, without writing and re-reading a (T, B, 4H) buffer.
   Lengths: where t ≥ len[b], sequence b has ended and its state is carried unchanged. */

typedef struct {
    long T, B, H, F;
    const REAL *x;        /* (T, B, F) inputs */
    const REAL *Wxp, *Wp; /* W_ih and W_hh packed by rk_pack_gates(4, H, F or H, …) */
    const REAL *bias;     /* (4H) b_ih + b_hh, or NULL */
    const REAL *peep;     /* (3, H): w_ci, w_cf, w_co, or NULL */
    const long *len;      /* (B,) or NULL */
    const REAL *h0, *c0;  /* (B, H) the initial state */
    REAL *Hs, *Cs;        /* (T, B, H) each: h_1 … h_T, c_1 … c_T */
    REAL *G;              /* (T, B, 4H) activated gates, or NULL (inference) */
    rk_barrier bar;
} RK(lstm_fwd_job);

/* One batch row of step t for units u … u + nu. ax, ah: the tile rows (W_i* x_t and W_h* h_{t-1} for the
   four gates); bw: the block's bias vectors, pw: its peephole vectors; cp/cn/hn = c_{t-1}, c_t, h_t at the
   row's units; gb = where the gates go (or NULL). */
static inline __attribute__((always_inline)) void RK(lstm_cell)(const long nu, long H, const REAL *ax, const REAL *ah,
                                                                 const vec *bw, const vec *pw, const REAL *cp,
                                                                 REAL *cn, REAL *hn, REAL *gb) {
    vec pre[4];
    for (int k = 0; k < 4; k++) pre[k] = RK(vload)(ax + k * VL) + RK(vload)(ah + k * VL) + bw[k];
    const vec c_prev = RK(vload_n)(cp, nu);
    const vec i = RK(vsigmoid)(pre[0] + pw[0] * c_prev);
    const vec f = RK(vsigmoid)(pre[1] + pw[1] * c_prev);
    const vec g = RK(vtanh)(pre[2]);
    const vec c = f * c_prev + i * g;
    const vec o = RK(vsigmoid)(pre[3] + pw[2] * c);
    RK(vstore_n)(cn, c, nu);
    RK(vstore_n)(hn, o * RK(vtanh)(c), nu);
    if (gb) {
        RK(vstore_n)(gb, i, nu);
        RK(vstore_n)(gb + H, f, nu);
        RK(vstore_n)(gb + 2 * H, g, nu);
        RK(vstore_n)(gb + 3 * H, o, nu);
    }
}

static void RK(lstm_fwd_task)(void *ctx, int tid, int nth) {
    RK(lstm_fwd_job) *j = ctx;
    const long T = j->T, B = j->B, H = j->H, F = j->F, nb = (H + VL - 1) / VL;
    const long nt = RK(ntiles)(B, RK(tile_rows)(4));
    long p_lo, p_hi;
    rk_share(nb, tid, nth, &p_lo, &p_hi);
    REAL tx[MR_MAX * 4 * VL] __attribute__((aligned(64))), th[MR_MAX * 4 * VL] __attribute__((aligned(64)));
    int sense = 0;
    for (long t = 0; t < T; t++) {
        const REAL *hp = t ? j->Hs + (t - 1) * B * H : j->h0, *cp = t ? j->Cs + (t - 1) * B * H : j->c0;
        const REAL *xt = j->x + t * B * F;
        REAL *hn = j->Hs + t * B * H, *cn = j->Cs + t * B * H;
        REAL *gt = j->G ? j->G + t * B * 4 * H : NULL;
        for (long p = p_lo; p < p_hi; p++) {
            const long u = p * VL, nu = H - u < VL ? H - u : VL;
            vec bw[4] = {{0}, {0}, {0}, {0}}, pw[3] = {{0}, {0}, {0}}; /* b_i, b_f, b_g, b_o; w_ci, w_cf, w_co */
            for (int k = 0; j->bias && k < 4; k++) bw[k] = RK(vload_n)(j->bias + k * H + u, nu);
            for (int k = 0; j->peep && k < 3; k++) pw[k] = RK(vload_n)(j->peep + k * H + u, nu);
            for (long i = 0; i < nt; i++) {
                const long b0 = B * i / nt, R = B * (i + 1) / nt - b0;
                for (long r = 0; r < R; r++) __builtin_prefetch(cp + (b0 + r) * H + u); /* read by the update */
                RK(tile)((int)R, 4, F, xt + b0 * F, F, 1, j->Wxp + p * F * 4 * VL, 4 * VL, tx); /* W_i* x_t */
                RK(tile)((int)R, 4, H, hp + b0 * H, H, 1, j->Wp + p * H * 4 * VL, 4 * VL, th);  /* W_h* h_{t-1} */
                for (long r = 0; r < R; r++) {
                    const long b = b0 + r, s = b * H + u;
                    if (j->len && t >= j->len[b]) { /* ended: carry the state */
                        for (long v = 0; v < nu; v++) hn[s + v] = hp[s + v], cn[s + v] = cp[s + v];
                        continue;
                    }
                    REAL *gb = gt ? gt + b * 4 * H + u : NULL;
                    const REAL *ax = tx + r * 4 * VL, *ah = th + r * 4 * VL;
                    if (nu == VL) /* a constant width lets the compiler drop the partial-block code */
                        RK(lstm_cell)(VL, H, ax, ah, bw, pw, cp + s, cn + s, hn + s, gb);
                    else
                        RK(lstm_cell)(nu, H, ax, ah, bw, pw, cp + s, cn + s, hn + s, gb);
                }
            }
        }
        rk_barrier_wait(&j->bar, nth, &sense);
    }
}

void RK(rk_lstm_fwd)(long T, long B, long H, long F, const REAL *x, const REAL *Wxp, const REAL *Wp,
                     const REAL *bias, const REAL *peep, const long *len, const REAL *h0, const REAL *c0, REAL *Hs,
                     REAL *Cs, REAL *G, int nth) {
    RK(lstm_fwd_job) j = {T, B, H, F, x, Wxp, Wp, bias, peep, len, h0, c0, Hs, Cs, G, {0, 0}};
    const long nb = (H + VL - 1) / VL;
    rk_parallel(RK(lstm_fwd_task), &j, nth < nb ? nth : (int)nb);
}

/* Backward. In: dh, dc = dL/dh_T, dL/dc_T; gout = dL/dh_t from the outputs (T, B, H). Out: dh, dc =
   dL/dh_0, dL/dc_0; dPre (T, B, 4H) = dL/d(pre-activations) = dL/dx; db (4H) += Σ dPre; dpeep (3, H) +=
   the peephole gradients. Per step t, from the last: the pointwise part for the thread's own units, a
   barrier (dPre_t must be whole), then dL/dh_{t-1} = dPre_t · W_hh for the thread's own units (skipped at
   t = 0 when nobody wants dL/dh_0: the initial state is a constant, as in training from zeros). */
typedef struct {
    long T, B, H;
    const REAL *G, *Cs;
    const REAL *W; /* W_hh (4H × ldw), columns past H zero or anything readable */
    long ldw;
    const REAL *peep;
    const long *len;
    const REAL *gout;
    REAL *dh, *dh2, *dc, *dPre, *db, *dpeep; /* dh2: (B, H) scratch */
    int need_dh0;                            /* 0: skip the last product (dL/dh_0 is not wanted) */
    rk_barrier bar;
} RK(lstm_bwd_job);

/* The backward of lstm_cell for one row: g = the saved gates, cp/cn = c_{t-1}, c_t, dh = dL/dh_t from the
   later steps and go from the output; dc holds dL/dc_t and becomes dL/dc_{t-1}; dp = dPre_t's row; nxt
   (where the product adds dPre_t · W_hh) starts at 0; db and dpeep (with peep, all at the row's units,
   stride H between gates) accumulate Σ dPre and the peephole gradients. */
static inline __attribute__((always_inline)) void RK(lstm_cell_bwd)(const long nu, long H, const REAL *g,
                                                                     const REAL *cp, const REAL *cn, const REAL *dh,
                                                                     const REAL *go, REAL *dc, REAL *dp, REAL *nxt,
                                                                     const REAL *peep, REAL *db, REAL *dpeep) {
    const vec one = RK(splat)(1);
    vec pw[3] = {{0}, {0}, {0}}; /* w_ci, w_cf, w_co */
    for (int k = 0; peep && k < 3; k++) pw[k] = RK(vload_n)(peep + k * H, nu);
    const vec i = RK(vload_n)(g, nu), f = RK(vload_n)(g + H, nu), gg = RK(vload_n)(g + 2 * H, nu);
    const vec o = RK(vload_n)(g + 3 * H, nu);
    const vec c_prev = RK(vload_n)(cp, nu), c = RK(vload_n)(cn, nu), tc = RK(vtanh)(c);
    const vec dm = RK(vload_n)(dh, nu) + RK(vload_n)(go, nu); /* dL/dh_t */
    const vec dpo = dm * tc * o * (one - o);
    const vec dcn = RK(vload_n)(dc, nu) + dm * o * (one - tc * tc) + dpo * pw[2]; /* dL/dc_t */
    const vec dpi = dcn * gg * i * (one - i), dpf = dcn * c_prev * f * (one - f);
    const vec dpg = dcn * i * (one - gg * gg);
    RK(vstore_n)(dc, dcn * f + dpi * pw[0] + dpf * pw[1], nu); /* dL/dc_{t-1} */
    const vec d[4] = {dpi, dpf, dpg, dpo};
    for (int k = 0; k < 4; k++) {
        RK(vstore_n)(dp + k * H, d[k], nu);
        RK(vstore_n)(db + k * H, RK(vload_n)(db + k * H, nu) + d[k], nu);
    }
    RK(vstore_n)(nxt, (vec){0}, nu);
    if (dpeep) {
        const vec dw[3] = {dpi * c_prev, dpf * c_prev, dpo * c};
        for (int k = 0; k < 3; k++) RK(vstore_n)(dpeep + k * H, RK(vload_n)(dpeep + k * H, nu) + dw[k], nu);
    }
}

static void RK(lstm_bwd_task)(void *ctx, int tid, int nth) {
    RK(lstm_bwd_job) *j = ctx;
    const long B = j->B, H = j->H, nb = (H + VL - 1) / VL;
    long p_lo, p_hi;
    rk_share(nb, tid, nth, &p_lo, &p_hi);
    const long u_lo = p_lo * VL, u_hi = p_hi * VL < H ? p_hi * VL : H;
    REAL *cur = j->dh, *nxt = j->dh2;
    int sense = 0;
    const vec zero = {0};
    for (long t = j->T - 1; t >= 0; t--) {
        const REAL *gt = j->G + t * B * 4 * H, *cp = j->Cs + t * B * H, *cn = j->Cs + (t + 1) * B * H;
        const REAL *go = j->gout + t * B * H;
        REAL *dp = j->dPre + t * B * 4 * H;
        for (long b = 0; b < B; b++) /* row by row: each row's own units are contiguous in every buffer */
            for (long p = p_lo; p < p_hi; p++) {
                const long u = p * VL, nu = H - u < VL ? H - u : VL, s = b * H + u;
                REAL *dpb = dp + b * 4 * H + u;
                if (j->len && t >= j->len[b]) { /* ended: no gradient into the step; dh, dc pass through */
                    for (int k = 0; k < 4; k++) RK(vstore_n)(dpb + k * H, zero, nu);
                    for (long v = 0; v < nu; v++) nxt[s + v] = cur[s + v];
                    continue;
                }
                if (nu == VL)
                    RK(lstm_cell_bwd)(VL, H, gt + b * 4 * H + u, cp + s, cn + s, cur + s, go + s, j->dc + s, dpb,
                                      nxt + s, j->peep ? j->peep + u : NULL, j->db + u, j->dpeep ? j->dpeep + u : NULL);
                else
                    RK(lstm_cell_bwd)(nu, H, gt + b * 4 * H + u, cp + s, cn + s, cur + s, go + s, j->dc + s, dpb,
                                      nxt + s, j->peep ? j->peep + u : NULL, j->db + u, j->dpeep ? j->dpeep + u : NULL);
            }
        rk_barrier_wait(&j->bar, nth, &sense);
        if (t > 0 || j->need_dh0) /* nxt[:, own units] += dPre_t · W_hh[:, own units] */
            RK(add_rows_product)(B, 4 * H, dp, 4 * H, j->W, j->ldw, u_lo, u_hi, nxt, H);
        REAL *swap = cur;
        cur = nxt;
        nxt = swap;
    }
    RK(keep_in)(j->dh, cur, B, H, u_lo, u_hi);
}

void RK(rk_lstm_bwd)(long T, long B, long H, const REAL *G, const REAL *Cs, const REAL *W, long ldw,
                     const REAL *peep, const long *len, const REAL *gout, REAL *dh, REAL *dh2, REAL *dc, REAL *dPre,
                     REAL *db, REAL *dpeep, int need_dh0, int nth) {
    RK(lstm_bwd_job) j = {T, B, H, G, Cs, W, ldw, peep, len, gout, dh, dh2, dc, dPre, db, dpeep, need_dh0, {0, 0}};
    const long nb = (H + VL - 1) / VL;
    rk_parallel(RK(lstm_bwd_task), &j, nth < nb ? nth : (int)nb);
}
