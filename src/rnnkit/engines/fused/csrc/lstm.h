/* LSTM over a whole sequence (one direction of one layer) for one REAL type: forward and backward.

   The equations are torch.nn.LSTM's (gate order i, f, g, o), with optional peepholes and projection
   (rnnkit.cells.LSTMCell, PeepholeLSTMCell); σ = rec_act and act are any named activations:
       i = σ(W_ii x_t + W_hi h_{t-1} + b_i + w_ci ⊙ c_{t-1})     f = σ(W_if x_t + W_hf h_{t-1} + b_f + w_cf ⊙ c_{t-1})
       g = act(W_ig x_t + W_hg h_{t-1} + b_g)                     c_t = f ⊙ c_{t-1} + i ⊙ g
       o = σ(W_io x_t + W_ho h_{t-1} + b_o + w_co ⊙ c_t)          m_t = o ⊙ act(c_t)
       h_t = m_t, or W_hr m_t with a projection (P > 0)
   with b = b_ih + b_hh.

   Threads split the hidden units into blocks of VL. Per step, a thread computes all four gates of its own
   units — two tile products over its packed panels of W_ih and W_hh, then the cell update straight from
   the tiles — so the update needs nobody else's data; the threads meet once per step, because step t + 1
   reads all of h_t (twice with a projection: h_t = W_hr m_t needs all of m_t, and its units are split in
   wide panels of P). The input projection is done inside the step rather than as one GEMM over all steps
   first: the same arithmetic, without writing and re-reading a (T, B, 4H) buffer.
   Lengths: where t ≥ len[b], sequence b has ended and its state is carried unchanged. */

/* v's first nu values at p + off (float) or, where q is set (bf16 products: a gradient only ever read as a bf16
   operand), at q + off rounded to bf16 instead; the LSTM's and the GRU's backward write their dPre through it. */
static inline __attribute__((always_inline)) void RK(vstore_either)(REAL *p, uint16_t *q, long off, vec v, long nu) {
#if RK_BF16_HERE
    if (q) {
        rk_vstore_bf16(q + off, (__m512)v, nu);
        return;
    }
#endif
    RK(vstore_n)(p + off, v, nu);
}

typedef struct {
    const rk_lstm_fwd_args *f;
    const rk_lstm_bwd_args *b;
    rk_barrier bar;
} RK(lstm_job);

/* One batch row of step t for units u … u + nu. ax, ah: the tile rows (W_i* x_t and W_h* h_{t-1} for the
   four gates); bw: the block's bias vectors, pw: its peephole vectors; cp/cn = c_{t-1}, c_t and mn = m_t at
   the row's units; gb = where the gates go (or NULL). Zoneout (reg.h), where zh / zc are not NULL: m_t (= h_t,
   no projection) and c_t are mixed with h_{t-1} (hp) and c_{t-1} — h from the candidate c̃_t, as Krueger et al. */
static inline __attribute__((always_inline)) void RK(lstm_cell)(const long nu, long H, const REAL *ax, const REAL *ah,
                                                                 const vec *bw, const vec *pw, const REAL *cp,
                                                                 REAL *cn, REAL *mn, REAL *gb, const vec *zh,
                                                                 const REAL *hp, const vec *zc, const int act,
                                                                 const int rec) {
    vec pre[4];
    for (int k = 0; k < 4; k++) pre[k] = RK(vload)(ax + k * VL) + RK(vload)(ah + k * VL) + bw[k];
    const vec c_prev = RK(vload_n)(cp, nu);
    const vec i = RK(act)(rec, pre[0] + pw[0] * c_prev); /* input gate */
    const vec f = RK(act)(rec, pre[1] + pw[1] * c_prev); /* forget gate */
    const vec g = RK(act)(act, pre[2]);                  /* candidate */
    const vec c = f * c_prev + i * g;                    /* memory */
    const vec o = RK(act)(rec, pre[3] + pw[2] * c);      /* output gate */
    RK(vstore_n)(cn, zc ? RK(zone_mix)(*zc, c_prev, c) : c, nu);
    const vec m = o * RK(act)(act, c);
    RK(vstore_n)(mn, zh ? RK(zone_mix)(*zh, RK(vload_n)(hp, nu), m) : m, nu);
    if (gb) { /* read again only by the backward: around the caches */
        RK(vstream_n)(gb, i, nu);
        RK(vstream_n)(gb + H, f, nu);
        RK(vstream_n)(gb + 2 * H, g, nu);
        RK(vstream_n)(gb + 3 * H, o, nu);
    }
}

/* The torch defaults (tanh, sigmoid) as constants, so that RK(act)'s switch folds away on the common path. */
#define RK_LSTM_CELL(nu, ...)                                                                                    \
    do {                                                                                                         \
        if (dflt)                                                                                                \
            RK(lstm_cell)(nu, __VA_ARGS__, RK_TANH, RK_SIGMOID);                                                 \
        else                                                                                                     \
            RK(lstm_cell)(nu, __VA_ARGS__, a->act, a->rec_act);                                                  \
    } while (0)

static void RK(lstm_fwd_task)(void *ctx, int tid, int nth) {
    RK(lstm_job) *j = ctx;
    const rk_lstm_fwd_args *a = j->f;
    const long T = a->T, B = a->B, H = a->H, P = a->P, F = a->F, S = P ? P : H, nb = (H + VL - 1) / VL;
    const int amx = a->bf16 == 2; /* AMX tiles take 16 rows at a time */
    const long nt = RK(ntiles)(B, amx ? 16 : RK(tile_rows)(4));
    const int dflt = a->act == RK_TANH && a->rec_act == RK_SIGMOID;
    const REAL *x = a->x, *Wxp = a->Wxp, *Wp = a->Wp, *bias = a->bias, *peep = a->peep;
    REAL *Hs = a->Hs, *Cs = a->Cs, *G = a->G, *M = a->M;
    const rk_reg_args *g = a->reg;
    long p_lo, p_hi, q_lo, q_hi, v_lo, v_hi;
    rk_share(nb, tid, nth, &p_lo, &p_hi);
    const long u_lo = p_lo * VL, u_hi = p_hi * VL < H ? p_hi * VL : H;
    if (P) RK(own_panels)(P, UP, tid, nth, &q_lo, &q_hi, &v_lo, &v_hi);
    REAL tx[16 * 4 * VL] __attribute__((aligned(64))), th[16 * 4 * VL] __attribute__((aligned(64)));
    int sense = 0;
    long rows = 0; /* rows the AMX tiles are configured for */
    (void)rows;
    if (amx) memset(th, 0, sizeof th); /* the tile unit sums both products into tx */
    for (long t = 0; t < T; t++) {
        const REAL *hp = t ? Hs + (t - 1) * B * S : (const REAL *)a->h0;
        const REAL *cp = t ? Cs + (t - 1) * B * H : (const REAL *)a->c0;
        const REAL *xt = x + t * B * F;
        REAL *hn = Hs + t * B * S, *cn = Cs + t * B * H, *mn = P ? M + t * B * H : hn;
        REAL *gt = G ? G + t * B * 4 * H : NULL;
        for (long p = p_lo; p < p_hi; p++) {
            const long u = p * VL, nu = H - u < VL ? H - u : VL;
            vec bw[4] = {{0}, {0}, {0}, {0}}, pw[3] = {{0}, {0}, {0}}; /* b_i, b_f, b_g, b_o; w_ci, w_cf, w_co */
            for (int k = 0; bias && k < 4; k++) bw[k] = RK(vload_n)(bias + k * H + u, nu);
            for (int k = 0; peep && k < 3; k++) pw[k] = RK(vload_n)(peep + k * H + u, nu);
            for (long i = 0; i < nt; i++) {
                const long b0 = B * i / nt, R = B * (i + 1) / nt - b0;
                for (long r = 0; r < R; r++) __builtin_prefetch(cp + (b0 + r) * H + u); /* read by the update */
#if RK_BF16_HERE
                if (a->bf16) { /* the same two products with bf16 operands (bf16.h) */
                    const long Fp = a->Fp, Sp = a->Sp;
                    const uint16_t *xbt = (const uint16_t *)a->xb + t * B * Fp + b0 * Fp;
                    const uint16_t *hbp = (const uint16_t *)a->hb + (t % 2) * B * Sp + b0 * Sp;
                    const uint16_t *wx = (const uint16_t *)a->Wxp + p * Fp * 4 * VL, *wh = (const uint16_t *)a->Wp + p * Sp * 4 * VL;
                    if (amx) {
                        if (rows != R) rk_amx_config((int)(rows = R)); /* once, or for a last short tile */
                        rk_amx_gates(4, Fp, xbt, Fp, wx, Sp, hbp, Sp, wh, tx);
                    } else {
                        rk_tile_bf16((int)R, 4, Fp / 2, xbt, Fp, wx, 8 * VL, 2 * VL, tx);
                        rk_tile_bf16((int)R, 4, Sp / 2, hbp, Sp, wh, 8 * VL, 2 * VL, th);
                    }
                } else
#endif
                {
                    RK(tile)((int)R, 4, F, xt + b0 * F, F, 1, Wxp + p * F * 4 * VL, 4 * VL, tx); /* W_i* x_t */
                    RK(tile)((int)R, 4, S, RK(reg_hprev)(g, t, B, S, hp) + b0 * S, S, 1, Wp + p * S * 4 * VL, 4 * VL,
                             th); /* W_h* h_{t-1} (recurrent dropout: W_h* (m ⊙ h_{t-1})) */
                }
                for (long r = 0; r < R; r++) {
                    const long b = b0 + r, s = b * H + u;
                    if (a->len && t >= a->len[b]) { /* ended: carry the state (m is zero: it adds nothing to dW_hr) */
                        for (long v = 0; v < nu; v++) {
                            cn[s + v] = cp[s + v];
                            mn[s + v] = P ? 0 : hp[s + v];
                        }
                        for (int k = 0; gt && k < 4; k++) /* gates past the end are zero (and deterministic) */
                            for (long v = 0; v < nu; v++) gt[b * 4 * H + k * H + u + v] = 0;
                        continue;
                    }
                    REAL *gb = gt ? gt + b * 4 * H + u : NULL;
                    const REAL *ax = tx + r * 4 * VL, *ah = th + r * 4 * VL;
                    vec zhv, zcv; /* zoneout's d for h (without a projection: with one, panels_step mixes h) and c */
                    const vec *zh = NULL, *zc = NULL;
                    if (!P && RK(zone_on)(g, 0)) zhv = RK(zone_d)(g, 0, t, B, b, H, u, nu), zh = &zhv;
                    if (RK(zone_on)(g, 1)) zcv = RK(zone_d)(g, 1, t, B, b, H, u, nu), zc = &zcv;
                    if (nu == VL) /* a constant width lets the compiler drop the partial-block code */
                        RK_LSTM_CELL(VL, H, ax, ah, bw, pw, cp + s, cn + s, mn + s, gb, zh, hp + s, zc);
                    else
                        RK_LSTM_CELL(nu, H, ax, ah, bw, pw, cp + s, cn + s, mn + s, gb, zh, hp + s, zc);
                }
#if RK_BF16_HERE
                if (a->bf16 && !(g && g->rmask)) /* h_t in bf16 for the next step's product (ended rows: h_{t-1},
                                                     copied above); under recurrent dropout m ⊙ h_t, below */
                    for (long r = 0; r < R; r++)
                        rk_store_bf16((uint16_t *)a->hb + ((t + 1) % 2) * B * a->Sp + (b0 + r) * a->Sp + u,
                                      mn + (b0 + r) * H + u, nu);
#endif
            }
        }
        if (!P) RK(reg_store_hd)(g, t, B, H, u_lo, u_hi, hn);
#if RK_BF16_HERE
        if (a->bf16 && g && g->rmask) /* recurrent dropout: the next product reads m ⊙ h_t (no projection here) */
            rk_store_bf16_rows((uint16_t *)a->hb + ((t + 1) % 2) * B * a->Sp, a->Sp,
                               (const float *)g->hd + ((t + 1) % 2) * B * H, H, B, u_lo, u_hi);
#endif
        rk_barrier_wait(&j->bar, nth, &sense);
        if (P) { /* h_t = W_hr m_t for the thread's own units of h; ended sequences keep h_{t-1} */
            RK(panels_step)(RK_IDENTITY, B, t, a->len, q_lo, q_hi, P, mn, H, a->Whrp, NULL, 0, NULL, NULL, hp, hn, g);
            RK(reg_store_hd)(g, t, B, P, v_lo, v_hi, hn);
            rk_barrier_wait(&j->bar, nth, &sense);
        }
    }
    rk_stream_fence(); /* the gates, before the backward reads them */
#if RK_BF16_HERE
    if (rows) rk_amx_release();
#endif
}

static void RK(lstm_fwd_entry)(const rk_lstm_fwd_args *a) {
    RK(lstm_job) j = {.f = a};
    const int n1 = RK(threads_for)(a->H, VL, a->nth), n2 = a->P ? RK(threads_for)(a->P, UP, a->nth) : 1;
    rk_parallel(RK(lstm_fwd_task), &j, n1 > n2 ? n1 : n2);
}

/* The backward of lstm_cell for one row: g = the saved gates, cp/cn = c_{t-1}, c_t, dm = dL/dm_t, gg and gc
   the gradients reaching the gates and c_t from outside (or NULL); dc holds dL/dc_t from step t + 1 and
   becomes dL/dc_{t-1}; dp = dPre_t's row, or dq its bf16 row instead (bf16 products), all at the row's units,
   stride H between gates; sum[0..3] accumulate dPre (the bias gradient) and, with peepholes (dpeep set),
   sum[4..6] the peephole gradients. With zoneout on c (zc not NULL) the cell's c̃_t is recomputed from the gates,
   (1 − d) of dL/dc_t reaches it and d of it passes to c_{t-1}. */
static inline __attribute__((always_inline)) void RK(lstm_cell_bwd)(const long nu, long H, const REAL *g,
                                                                     const REAL *cp, const REAL *cn, const vec dm,
                                                                     const REAL *gg, const REAL *gc, REAL *dc,
                                                                     REAL *dp, uint16_t *dq, const REAL *peep, vec *sum,
                                                                     const int dpeep, const vec *zc, const int act,
                                                                     const int rec) {
    vec pw[3] = {{0}, {0}, {0}}, e[4] = {{0}, {0}, {0}, {0}}; /* w_ci, w_cf, w_co; outside gradients of i, f, g, o */
    for (int k = 0; peep && k < 3; k++) pw[k] = RK(vload_n)(peep + k * H, nu);
    for (int k = 0; gg && k < 4; k++) e[k] = RK(vload_n)(gg + k * H, nu);
    const vec i = RK(vload_n)(g, nu), f = RK(vload_n)(g + H, nu), gc_ = RK(vload_n)(g + 2 * H, nu);
    const vec o = RK(vload_n)(g + 3 * H, nu);
    const vec c_prev = RK(vload_n)(cp, nu), c = zc ? f * c_prev + i * gc_ : RK(vload_n)(cn, nu), tc = RK(act)(act, c);
    const vec dpo = (dm * tc + e[3]) * RK(act_grad)(rec, o);
    vec dcn, dC = {0}; /* dL/dc̃_t; with zoneout on c, dC = dL/dc_t */
    if (zc) {
        dC = RK(vload_n)(dc, nu);
        if (gc) dC += RK(vload_n)(gc, nu);
        dcn = ((REAL)1 - *zc) * dC + dm * o * RK(act_grad)(act, tc) + dpo * pw[2];
    } else {
        dcn = RK(vload_n)(dc, nu) + dm * o * RK(act_grad)(act, tc) + dpo * pw[2]; /* dL/dc_t */
        if (gc) dcn += RK(vload_n)(gc, nu);
    }
    const vec dpi = (dcn * gc_ + e[0]) * RK(act_grad)(rec, i);
    const vec dpf = (dcn * c_prev + e[1]) * RK(act_grad)(rec, f);
    const vec dpg = (dcn * i + e[2]) * RK(act_grad)(act, gc_);
    vec dcp = dcn * f + dpi * pw[0] + dpf * pw[1]; /* dL/dc_{t-1} */
    if (zc) dcp += *zc * dC;                        /* zoneout: the kept part of c_t is c_{t-1} */
    RK(vstore_n)(dc, dcp, nu);
    const vec d[4] = {dpi, dpf, dpg, dpo};
    for (int k = 0; k < 4; k++) {
        RK(vstore_either)(dp, dq, k * H, d[k], nu); /* bf16: read only as the products' operand */
        sum[k] += d[k];
    }
    if (dpeep) {
        sum[4] += dpi * c_prev;
        sum[5] += dpf * c_prev;
        sum[6] += dpo * c;
    }
}

#define RK_LSTM_CELL_BWD(nu, ...)                                                                                \
    do {                                                                                                         \
        if (dflt)                                                                                                \
            RK(lstm_cell_bwd)(nu, __VA_ARGS__, RK_TANH, RK_SIGMOID);                                             \
        else                                                                                                     \
            RK(lstm_cell_bwd)(nu, __VA_ARGS__, a->act, a->rec_act);                                              \
    } while (0)

/* Per step t, from the last: (with a projection: dHt_t = dL/dh_t for own units of h, a barrier, then
   dm_t = dHt_t · W_hr for own units of m); the pointwise part for the thread's own units; a barrier (dPre_t
   must be whole); then dL/dh_{t-1} = dPre_t · W_hh for own units of h (skipped at t = 0 when nobody wants
   dL/dh_0: the initial state is a constant, as in training from zeros). */
static void RK(lstm_bwd_task)(void *ctx, int tid, int nth) {
    RK(lstm_job) *j = ctx;
    const rk_lstm_bwd_args *a = j->b;
    const long B = a->B, H = a->H, P = a->P, S = P ? P : H, nb = (H + VL - 1) / VL;
    const int dflt = a->act == RK_TANH && a->rec_act == RK_SIGMOID;
    const REAL *G = a->G, *Cs = a->Cs, *gout = a->gout, *gC = a->gC, *gG = a->gG, *peep = a->peep;
    REAL *dc = a->dc, *dPre = a->dPre, *db = a->db, *dpeep = a->dpeep, *dHt = a->dHt, *dm = a->dm;
    const rk_reg_args *g = a->reg;
    long p_lo, p_hi, q_lo = 0, q_hi = 0, v_lo, v_hi;
    rk_share(nb, tid, nth, &p_lo, &p_hi);
    const long u_lo = p_lo * VL, u_hi = p_hi * VL < H ? p_hi * VL : H;
    if (P)
        RK(own_panels)(P, UP, tid, nth, &q_lo, &q_hi, &v_lo, &v_hi);
    else
        v_lo = u_lo, v_hi = u_hi; /* the units of h whose dL/dh_{t-1} this thread computes */
    REAL *cur = a->dh, *nxt = a->dh2;
    int sense = 0;
    for (long t = a->T - 1; t >= 0; t--) {
        const REAL *gt = G + t * B * 4 * H, *cp = Cs + t * B * H, *cn = Cs + (t + 1) * B * H;
        const REAL *go = gout + t * B * S;
        REAL *dp = dPre ? dPre + t * B * 4 * H : NULL, *dh = P ? dHt + t * B * P : NULL;
        uint16_t *dq = a->bf16 ? (uint16_t *)a->dpb + t * B * a->K4 : NULL; /* dPre_t in bf16, or NULL */
        if (P) { /* dL/dh_t, whole, then dL/dm_t = dL/dh_t · W_hr for own units */
            for (long b = 0; b < B; b++)
                for (long v = v_lo; v < v_hi; v++) dh[b * P + v] = cur[b * P + v] + go[b * P + v];
            RK(reg_zone_grad)(g, t, B, a->len, P, v_lo, v_hi, dh); /* zoneout on h: (1 − d) reaches W_hr m_t */
            rk_barrier_wait(&j->bar, nth, &sense);
            for (long b = 0; b < B; b++)
                for (long u = u_lo; u < u_hi; u++) dm[b * H + u] = 0;
            RK(add_rows_product)(B, P, dh, P, a->Whr, a->ldr, u_lo, u_hi, dm, H);
        }
        for (long p = p_lo; p < p_hi; p++) { /* block by block, so that the sums over the batch stay in registers */
            const long u = p * VL, nu = H - u < VL ? H - u : VL;
            vec sum[7] = {{0}, {0}, {0}, {0}, {0}, {0}, {0}}; /* Σ_b dPre (4 gates), Σ_b of the peepholes' gradients */
            for (long b = 0; b < B; b++) {
                const long s = b * H + u;
                REAL *dpb = dp ? dp + b * 4 * H + u : NULL;
                uint16_t *dqb = dq ? dq + b * a->K4 + u : NULL;
                const REAL *gc = gC ? gC + t * B * H + s : NULL, *gg = gG ? gG + (t * B + b) * 4 * H + u : NULL;
                if (a->len && t >= a->len[b]) { /* ended: no gradient into the step; dh, dc pass through */
                    for (int k = 0; k < 4; k++)
                        if (dqb)
                            memset(dqb + k * H, 0, nu * sizeof *dqb);
                        else
                            memset(dpb + k * H, 0, nu * sizeof *dpb);
                    if (gc) RK(vstore_n)(dc + s, RK(vload_n)(dc + s, nu) + RK(vload_n)(gc, nu), nu);
                    continue;
                }
                if (t > 0) { /* this row of step t − 1 a step ahead (its gates come from memory: RK(vstream_n)) */
                    for (int k = 0; k < 4; k++) __builtin_prefetch(gt - B * 4 * H + b * 4 * H + u + k * H, 0, 2);
                    __builtin_prefetch(cp - B * H + s, 0, 2); /* c_{t−2} */
                }
                vec dmv = P ? RK(vload_n)(dm + s, nu) : RK(vload_n)(cur + s, nu) + RK(vload_n)(go + s, nu);
                if (!P && RK(zone_on)(g, 0)) dmv *= (REAL)1 - RK(zone_d)(g, 0, t, B, b, H, u, nu); /* to the candidate */
                vec zcv;
                const vec *zc = NULL;
                if (RK(zone_on)(g, 1)) zcv = RK(zone_d)(g, 1, t, B, b, H, u, nu), zc = &zcv;
                if (nu == VL)
                    RK_LSTM_CELL_BWD(VL, H, gt + b * 4 * H + u, cp + s, cn + s, dmv, gg, gc, dc + s, dpb, dqb,
                                     peep ? peep + u : NULL, sum, dpeep != NULL, zc);
                else
                    RK_LSTM_CELL_BWD(nu, H, gt + b * 4 * H + u, cp + s, cn + s, dmv, gg, gc, dc + s, dpb, dqb,
                                     peep ? peep + u : NULL, sum, dpeep != NULL, zc);
            }
            for (int k = 0; k < 4; k++) RK(vstore_n)(db + k * H + u, RK(vload_n)(db + k * H + u, nu) + sum[k], nu);
            for (int k = 0; dpeep && k < 3; k++)
                RK(vstore_n)(dpeep + k * H + u, RK(vload_n)(dpeep + k * H + u, nu) + sum[4 + k], nu);
        }
        /* nxt starts as the part of dL/dh_t that skips the step (ended sequences), then gets dPre_t · W_hh */
        for (long b = 0; b < B; b++) {
            const int ended = a->len && t >= a->len[b];
            for (long v = v_lo; v < v_hi; v++)
                nxt[b * S + v] = !ended ? 0 : P ? dh[b * P + v] : cur[b * S + v] + go[b * S + v];
        }
        rk_barrier_wait(&j->bar, nth, &sense);
        if (t > 0 || a->need_dh0) {
#if RK_BF16_HERE
            if (dq) {
                if (a->bf16 == 2)
                    rk_amx_add_rows_product(B, a->K4, dq, a->K4, a->Wtp, v_lo, v_hi, nxt, S);
                else
                    rk_add_rows_product_bf16(B, a->K4 / 2, dq, a->K4, a->Wtp, v_lo, v_hi, nxt, S);
            } else
#endif
                RK(add_rows_product)(B, 4 * H, dp, 4 * H, a->W, a->ldw, v_lo, v_hi, nxt, S);
            RK(reg_bwd_fix)(g, t, B, a->len, S, v_lo, v_hi, cur, go, nxt); /* recurrent dropout, zoneout's path */
        }
        REAL *swap = cur;
        cur = nxt;
        nxt = swap;
    }
    RK(keep_in)(a->dh, cur, B, S, v_lo, v_hi);
}

static void RK(lstm_bwd_entry)(const rk_lstm_bwd_args *a) {
    RK(lstm_job) j = {.b = a};
    const int n1 = RK(threads_for)(a->H, VL, a->nth), n2 = a->P ? RK(threads_for)(a->P, UP, a->nth) : 1;
    rk_parallel(RK(lstm_bwd_task), &j, n1 > n2 ? n1 : n2);
}

#undef RK_LSTM_CELL
#undef RK_LSTM_CELL_BWD
