/* GRU over a whole sequence (one direction of one layer) for one REAL type: forward and backward.

   Gate order r, z, n as in torch.nn.GRU; σ = rec_act and act are any named activations:
       r = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)        z = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
       n = act(W_in x_t + b_in + r ⊙ (W_hn h_{t-1} + b_hn))     (reset after the product: torch's form)
       n = act(W_in x_t + b_in + W_hn (r ⊙ h_{t-1}) + b_hn)     (reset before: Cho et al. 2014)
       h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
   The work split is the LSTM's (lstm.h): each thread owns blocks of VL units and all three gates of them,
   computes the tile products (input and recurrent, kept apart because r multiplies only the second), then
   the update. Torch's form meets once per step; Cho's twice, since W_hn (r ⊙ h) needs r of every unit.
   Regularisers (reg.h): under recurrent dropout every product with W_h* reads h ⊙ m (Cho's form: r ⊙ h ⊙ m),
   the interpolation z ⊙ h_{t-1} the state itself; zoneout mixes h_t with h_{t-1}. */

typedef struct {
    const rk_gru_fwd_args *f;
    const rk_gru_bwd_args *b;
    rk_barrier bar;
} RK(gru_job);

/* Reset after: one row's update from the tiles ax (W_i* x_t) and ah (W_h* h_{t-1}), all three gates. */
static inline __attribute__((always_inline)) void RK(gru_cell)(const long nu, long H, const REAL *ax, const REAL *ah,
                                                                const vec *bw, const REAL *hp, REAL *hn, REAL *gb,
                                                                REAL *hnb, const vec *zh, const int act,
                                                                const int rec) {
    const vec h_prev = RK(vload_n)(hp, nu);
    const vec r = RK(act)(rec, RK(vload)(ax) + bw[0] + RK(vload)(ah) + bw[3]);
    const vec z = RK(act)(rec, RK(vload)(ax + VL) + bw[1] + RK(vload)(ah + VL) + bw[4]);
    const vec hh = RK(vload)(ah + 2 * VL) + bw[5]; /* W_hn h + b_hn */
    const vec n = RK(act)(act, RK(vload)(ax + 2 * VL) + bw[2] + r * hh);
    const vec h = n + z * (h_prev - n);
    RK(vstore_n)(hn, zh ? RK(zone_mix)(*zh, h_prev, h) : h, nu);
    if (gb) { /* read again only by the backward: around the caches (vmath.h) */
        RK(vstream_n)(gb, r, nu);
        RK(vstream_n)(gb + H, z, nu);
        RK(vstream_n)(gb + 2 * H, n, nu);
        RK(vstream_n)(hnb, hh, nu);
    }
}

#define RK_GRU_DISPATCH(fn, nu, ...)                                                                             \
    do {                                                                                                         \
        if (dflt)                                                                                                \
            fn(nu, __VA_ARGS__, RK_TANH, RK_SIGMOID);                                                            \
        else                                                                                                     \
            fn(nu, __VA_ARGS__, a->act, a->rec_act);                                                             \
    } while (0)

/* Reset before, first half: r and z of one row into gb (r, z, and n's input part W_in x_t + b_in), and r ⊙ h
   into rh for the product the second half needs. */
static inline __attribute__((always_inline)) void RK(gru_rz)(const long nu, long H, const REAL *ax, const REAL *ah,
                                                              const vec *bw, const REAL *hp, REAL *gb, REAL *rh,
                                                              const int act, const int rec) {
    (void)act;
    const vec r = RK(act)(rec, RK(vload)(ax) + bw[0] + RK(vload)(ah) + bw[3]);
    const vec z = RK(act)(rec, RK(vload)(ax + VL) + bw[1] + RK(vload)(ah + VL) + bw[4]);
    RK(vstore_n)(gb, r, nu);
    RK(vstore_n)(gb + H, z, nu);
    RK(vstore_n)(gb + 2 * H, RK(vload)(ax + 2 * VL) + bw[2], nu);
    RK(vstore_n)(rh, r * RK(vload_n)(hp, nu), nu);
}

/* Reset before, second half: n = act(W_in x + b_in + W_hn (r ⊙ h) + b_hn) and the new state. */
static inline __attribute__((always_inline)) void RK(gru_n)(const long nu, long H, const REAL *an, vec b_hn,
                                                             const REAL *hp, REAL *hn, REAL *gb, const vec *zh,
                                                             const int act, const int rec) {
    (void)rec;
    const vec n = RK(act)(act, RK(vload_n)(gb + 2 * H, nu) + RK(vload)(an) + b_hn);
    const vec z = RK(vload_n)(gb + H, nu), h_prev = RK(vload_n)(hp, nu);
    RK(vstore_n)(gb + 2 * H, n, nu);
    const vec h = n + z * (h_prev - n);
    RK(vstore_n)(hn, zh ? RK(zone_mix)(*zh, h_prev, h) : h, nu);
}

static void RK(gru_fwd_task)(void *ctx, int tid, int nth) {
    RK(gru_job) *j = ctx;
    const rk_gru_fwd_args *a = j->f;
    const long T = a->T, B = a->B, H = a->H, F = a->F, nb = (H + VL - 1) / VL;
    const int after = a->reset_after, dflt = a->act == RK_TANH && a->rec_act == RK_SIGMOID;
    const int NG = after ? 3 : 2; /* gates in the recurrent product of the first half */
    const long nt = RK(ntiles)(B, RK(tile_rows)(3)), nt1 = RK(ntiles)(B, RK(tile_rows)(1));
    const REAL *x = a->x, *bih = a->bih, *bhh = a->bhh;
    REAL *Hs = a->Hs, *G = a->G, *HN = a->HN, *scratch = a->scratch;
    const rk_reg_args *g = a->reg;
    long p_lo, p_hi;
    rk_share(nb, tid, nth, &p_lo, &p_hi);
    const long u_lo = p_lo * VL, u_hi = p_hi * VL < H ? p_hi * VL : H;
    const int amx = a->bf16 == 2; /* AMX tiles take 16 rows at a time */
    const long ntx = amx ? RK(ntiles)(B, 16) : nt;
    REAL tx[16 * 4 * VL] __attribute__((aligned(64))), th[16 * 4 * VL] __attribute__((aligned(64)));
    int sense = 0;
    long rows = 0; /* rows the AMX tiles are configured for */
    (void)rows;
    if (amx) memset(th, 0, sizeof th); /* the tile unit leaves th's r and z slots to tx */
    for (long t = 0; t < T; t++) {
        const REAL *hp = t ? Hs + (t - 1) * B * H : (const REAL *)a->h0, *xt = x + t * B * F;
        const REAL *hq = RK(reg_hprev)(g, t, B, H, hp); /* what W_h* multiplies: h_{t-1}, or m ⊙ h_{t-1} */
        REAL *hn = Hs + t * B * H;
        /* without saved buffers (inference), the reset-before form still passes r, z and r ⊙ h between its
           halves: through the (B, 4H) scratch */
        REAL *gt = G ? G + t * B * 3 * H : after ? NULL : scratch;
        REAL *HNt = HN ? HN + t * B * H : after ? NULL : scratch + 3 * B * H;
        for (long p = p_lo; p < p_hi; p++) {
            const long u = p * VL, nu = H - u < VL ? H - u : VL;
            vec bw[6] = {{0}, {0}, {0}, {0}, {0}, {0}}; /* b_ir, b_iz, b_in, b_hr, b_hz, b_hn */
            for (int k = 0; bih && k < 3; k++) bw[k] = RK(vload_n)(bih + k * H + u, nu);
            for (int k = 0; bhh && k < 3; k++) bw[3 + k] = RK(vload_n)(bhh + k * H + u, nu);
            for (long i = 0; i < ntx; i++) {
                const long b0 = B * i / ntx, R = B * (i + 1) / ntx - b0;
                for (long r = 0; r < R; r++) __builtin_prefetch(hp + (b0 + r) * H + u);
#if RK_BF16_HERE
                if (a->bf16) { /* the same products with bf16 operands (bf16.h; reset after only) */
                    const long Fp = a->Fp, Hp = a->Hp;
                    const uint16_t *xbt = (const uint16_t *)a->xb + t * B * Fp + b0 * Fp;
                    const uint16_t *hbp = (const uint16_t *)a->hb + (t % 2) * B * Hp + b0 * Hp;
                    const uint16_t *wx = (const uint16_t *)a->Wxp + p * Fp * 3 * VL, *wh = (const uint16_t *)a->Wp + p * Hp * 3 * VL;
                    if (amx) {
                        if (rows != R) rk_amx_config((int)(rows = R));
                        rk_amx_gru(Fp, xbt, Fp, wx, Hp, hbp, Hp, wh, tx, th);
                    } else {
                        rk_tile_bf16((int)R, 3, Fp / 2, xbt, Fp, wx, 6 * VL, 2 * VL, tx);
                        rk_tile_bf16((int)R, 3, Hp / 2, hbp, Hp, wh, 6 * VL, 2 * VL, th);
                    }
                } else
#endif
                {
                    RK(tile)((int)R, 3, F, xt + b0 * F, F, 1, (const REAL *)a->Wxp + p * F * 3 * VL, 3 * VL, tx);
                    RK(tile)((int)R, NG, H, hq + b0 * H, H, 1, (const REAL *)a->Wp + p * H * NG * VL, NG * VL, th);
                }
                for (long r = 0; r < R; r++) {
                    const long b = b0 + r, s = b * H + u;
                    if (a->len && t >= a->len[b]) { /* ended: carry the state; gates (and HN) past the end are 0 */
                        for (long v = 0; v < nu; v++) {
                            hn[s + v] = hp[s + v];
                            if (HNt) HNt[s + v] = 0; /* reset before: r ⊙ h, read by the product below */
                        }
                        for (int k = 0; gt && k < 3; k++)
                            for (long v = 0; v < nu; v++) gt[b * 3 * H + k * H + u + v] = 0;
                        continue;
                    }
                    REAL *gb = gt ? gt + b * 3 * H + u : NULL, *hnb = HNt ? HNt + s : NULL;
                    const REAL *ax = tx + r * 4 * VL, *ah = th + r * 4 * VL;
                    vec zhv;
                    const vec *zh = NULL;
                    if (after && RK(zone_on)(g, 0)) zhv = RK(zone_d)(g, 0, t, B, b, H, u, nu), zh = &zhv;
                    if (!after && nu == VL)
                        RK_GRU_DISPATCH(RK(gru_rz), VL, H, ax, ah, bw, hq + s, gb, hnb);
                    else if (!after)
                        RK_GRU_DISPATCH(RK(gru_rz), nu, H, ax, ah, bw, hq + s, gb, hnb);
                    else if (nu == VL)
                        RK_GRU_DISPATCH(RK(gru_cell), VL, H, ax, ah, bw, hp + s, hn + s, gb, hnb, zh);
                    else
                        RK_GRU_DISPATCH(RK(gru_cell), nu, H, ax, ah, bw, hp + s, hn + s, gb, hnb, zh);
                }
#if RK_BF16_HERE
                if (a->bf16 && !(g && g->rmask)) /* h_t in bf16 for the next step's product (ended rows: h_{t-1},
                                                     copied above); under recurrent dropout m ⊙ h_t, below */
                    for (long r = 0; r < R; r++)
                        rk_store_bf16((uint16_t *)a->hb + ((t + 1) % 2) * B * a->Hp + (b0 + r) * a->Hp + u,
                                      hn + (b0 + r) * H + u, nu);
#endif
            }
        }
        if (after) {
            RK(reg_store_hd)(g, t, B, H, u_lo, u_hi, hn);
#if RK_BF16_HERE
            if (a->bf16 && g && g->rmask) /* recurrent dropout: the next product reads m ⊙ h_t */
                rk_store_bf16_rows((uint16_t *)a->hb + ((t + 1) % 2) * B * a->Hp, a->Hp,
                                   (const float *)g->hd + ((t + 1) % 2) * B * H, H, B, u_lo, u_hi);
#endif
            rk_barrier_wait(&j->bar, nth, &sense);
            continue;
        }
        rk_barrier_wait(&j->bar, nth, &sense);
        for (long p = p_lo; p < p_hi; p++) { /* second half: W_hn (r ⊙ h) needs r ⊙ h of every unit */
            const long u = p * VL, nu = H - u < VL ? H - u : VL;
            const vec b_hn = bhh ? RK(vload_n)(bhh + 2 * H + u, nu) : (vec){0};
            for (long i = 0; i < nt1; i++) {
                const long b0 = B * i / nt1, R = B * (i + 1) / nt1 - b0;
                RK(tile)((int)R, 1, H, HNt + b0 * H, H, 1, (const REAL *)a->Wnp + p * H * VL, VL, th);
                for (long r = 0; r < R; r++) {
                    const long b = b0 + r, s = b * H + u;
                    if (a->len && t >= a->len[b]) continue;
                    vec zhv;
                    const vec *zh = NULL;
                    if (RK(zone_on)(g, 0)) zhv = RK(zone_d)(g, 0, t, B, b, H, u, nu), zh = &zhv;
                    if (nu == VL)
                        RK_GRU_DISPATCH(RK(gru_n), VL, H, th + r * 4 * VL, b_hn, hp + s, hn + s, gt + b * 3 * H + u, zh);
                    else
                        RK_GRU_DISPATCH(RK(gru_n), nu, H, th + r * 4 * VL, b_hn, hp + s, hn + s, gt + b * 3 * H + u, zh);
                }
            }
        }
        RK(reg_store_hd)(g, t, B, H, u_lo, u_hi, hn);
        rk_barrier_wait(&j->bar, nth, &sense);
    }
    rk_stream_fence(); /* the gates, before the backward reads them */
#if RK_BF16_HERE
    if (rows) rk_amx_release();
#endif
}

static void RK(gru_fwd_entry)(const rk_gru_fwd_args *a) {
    RK(gru_job) j = {.f = a};
    rk_parallel(RK(gru_fwd_task), &j, RK(threads_for)(a->H, VL, a->nth));
}

/* Backward, per step t from the last, for the thread's own units (d = dL/dh_t, e = the gates' outside
   gradients):
     dn = d (1 − z) + e_n, dz = d (h_{t-1} − n) + e_z, and dL/dh_{t-1} starts at d ⊙ z (the direct path);
     reset after:  dr = dn' ⊙ (W_hn h + b_hn) + e_r; dHH = (dr', dz', dn' ⊙ r); barrier;
                   dL/dh_{t-1} += dHH · W_hh;
     reset before: barrier; drh = dn' · W_hn (the gradient of r ⊙ h); dr = drh ⊙ h_{t-1} + e_r;
                   dL/dh_{t-1} += drh ⊙ r; barrier; dL/dh_{t-1} += (dr', dz') · W_h{r,z}
   where x' = x ⊙ the activation's derivative. */
static void RK(gru_bwd_task)(void *ctx, int tid, int nth) {
    RK(gru_job) *j = ctx;
    const rk_gru_bwd_args *a = j->b;
    const long B = a->B, H = a->H, nb = (H + VL - 1) / VL, ldw = a->ldw;
    const int after = a->reset_after, dflt = a->act == RK_TANH && a->rec_act == RK_SIGMOID;
    const int act = dflt ? RK_TANH : a->act, rec = dflt ? RK_SIGMOID : a->rec_act;
    const REAL *G = a->G, *HN = a->HN, *Hs = a->Hs, *gout = a->gout, *gG = a->gG, *W = a->W;
    REAL *dPre = a->dPre, *dHH = a->dHH, *db_ih = a->db_ih, *db_hh = a->db_hh, *drh = a->drh;
    const rk_reg_args *g = a->reg;
    const REAL *rmask = g ? (const REAL *)g->rmask : NULL;
    long p_lo, p_hi;
    rk_share(nb, tid, nth, &p_lo, &p_hi);
    const long u_lo = p_lo * VL, u_hi = p_hi * VL < H ? p_hi * VL : H;
    REAL *cur = a->dh, *nxt = a->dh2;
    int sense = 0;
    const vec zero = {0};
    REAL *acc = nxt; /* where the products through W_h* add up: nxt, or with recurrent dropout g->dhd (then masked) */
    for (long t = a->T - 1; t >= 0; t--) {
        const REAL *gt = G + t * B * 3 * H, *HNt = HN + t * B * H, *hp = Hs + t * B * H, *go = gout + t * B * H;
        REAL *dp = dPre ? dPre + t * B * 3 * H : NULL, *dq = after && dHH ? dHH + t * B * 3 * H : NULL;
        /* with bf16 products, dPre_t and dHH_t only in bf16 (xq, hq): what the products read */
        uint16_t *xq = a->bf16 ? (uint16_t *)a->dpx + t * B * 3 * H : NULL;
        uint16_t *hq = a->bf16 ? (uint16_t *)a->dpb + t * B * a->K3 : NULL;
        acc = rmask ? (REAL *)g->dhd : nxt;
        for (long p = p_lo; p < p_hi; p++) {
            const long u = p * VL, nu = H - u < VL ? H - u : VL;
            vec s_r = zero, s_z = zero, s_n = zero, s_hn = zero;
            for (long b = 0; b < B; b++) {
                const long s = b * H + u;
                REAL *dpb = dp ? dp + b * 3 * H + u : NULL, *dqb = dq ? dq + b * 3 * H + u : NULL;
                uint16_t *xqb = xq ? xq + b * 3 * H + u : NULL, *hqb = hq ? hq + b * a->K3 + u : NULL;
                if (t > 0) { /* this row of step t − 1 a step ahead (its gates come from memory: RK(vstream_n)) */
                    for (int k = 0; k < 3; k++) __builtin_prefetch(gt - B * 3 * H + b * 3 * H + u + k * H, 0, 2);
                    __builtin_prefetch(HNt - B * H + s, 0, 2);
                    __builtin_prefetch(hp - B * H + s, 0, 2); /* h_{t−2} */
                }
                const vec dt = RK(vload_n)(cur + s, nu) + RK(vload_n)(go + s, nu); /* dL/dh_t */
                if (a->len && t >= a->len[b]) { /* ended: dL/dh_t passes to h_{t-1} */
                    for (int k = 0; k < 3; k++) {
                        RK(vstore_either)(dpb, xqb, k * H, zero, nu);
                        if (after) RK(vstore_either)(dqb, hqb, k * H, zero, nu);
                    }
                    RK(vstore_n)(nxt + s, dt, nu);
                    continue;
                }
                vec d = dt, zd = zero; /* zoneout: (1 − d) of dL/dh_t reaches the candidate, d of it h_{t-1} */
                if (RK(zone_on)(g, 0)) zd = RK(zone_d)(g, 0, t, B, b, H, u, nu), d = ((REAL)1 - zd) * dt;
                vec e[3] = {zero, zero, zero};
                for (int k = 0; gG && k < 3; k++) e[k] = RK(vload_n)(gG + (t * B + b) * 3 * H + u + k * H, nu);
                const REAL *gb = gt + b * 3 * H + u;
                const vec r_ = RK(vload_n)(gb, nu), z_ = RK(vload_n)(gb + H, nu), n_ = RK(vload_n)(gb + 2 * H, nu);
                const vec dpn = (d - d * z_ + e[2]) * RK(act_grad)(act, n_);
                const vec dpz = (d * (RK(vload_n)(hp + s, nu) - n_) + e[1]) * RK(act_grad)(rec, z_);
                RK(vstore_either)(dpb, xqb, H, dpz, nu);
                RK(vstore_either)(dpb, xqb, 2 * H, dpn, nu);
                /* the direct path; the products below add the rest */
                RK(vstore_n)(nxt + s, RK(zone_on)(g, 0) ? d * z_ + zd * dt : d * z_, nu);
                s_z += dpz, s_n += dpn;
                if (after) {
                    const vec dpr = (dpn * RK(vload_n)(HNt + s, nu) + e[0]) * RK(act_grad)(rec, r_);
                    RK(vstore_either)(dpb, xqb, 0, dpr, nu);
                    RK(vstore_either)(dqb, hqb, 0, dpr, nu);
                    RK(vstore_either)(dqb, hqb, H, dpz, nu);
                    RK(vstore_either)(dqb, hqb, 2 * H, dpn * r_, nu);
                    s_r += dpr, s_hn += dpn * r_;
                }
            }
            if (after) {
                const vec si[3] = {s_r, s_z, s_n}, sh[3] = {s_r, s_z, s_hn};
                for (int k = 0; k < 3; k++) {
                    RK(vstore_n)(db_ih + k * H + u, RK(vload_n)(db_ih + k * H + u, nu) + si[k], nu);
                    RK(vstore_n)(db_hh + k * H + u, RK(vload_n)(db_hh + k * H + u, nu) + sh[k], nu);
                }
            } else { /* b_hh enters like b_ih; r's sums are added in the second half */
                for (int k = 1; k < 3; k++) {
                    const vec sk = k == 1 ? s_z : s_n;
                    RK(vstore_n)(db_ih + k * H + u, RK(vload_n)(db_ih + k * H + u, nu) + sk, nu);
                    RK(vstore_n)(db_hh + k * H + u, RK(vload_n)(db_hh + k * H + u, nu) + sk, nu);
                }
            }
        }
        rk_barrier_wait(&j->bar, nth, &sense);
#if RK_BF16_HERE
        if (hq) {
            if (t > 0 || a->need_dh0) { /* into acc, as below: masked into nxt at the end under recurrent dropout */
                if (acc != nxt)
                    for (long b = 0; b < B; b++)
                        for (long u = u_lo; u < u_hi; u++) acc[b * H + u] = 0;
                if (a->bf16 == 2)
                    rk_amx_add_rows_product(B, a->K3, hq, a->K3, a->Wtp, u_lo, u_hi, acc, H);
                else
                    rk_add_rows_product_bf16(B, a->K3 / 2, hq, a->K3, a->Wtp, u_lo, u_hi, acc, H);
            }
        } else
#endif
            if (after) {
            if (t > 0 || a->need_dh0) { /* nxt[:, own units] += dHH_t · W_hh[:, own units] */
                if (acc != nxt)
                    for (long b = 0; b < B; b++)
                        for (long u = u_lo; u < u_hi; u++) acc[b * H + u] = 0;
                RK(add_rows_product)(B, 3 * H, dq, 3 * H, W, ldw, u_lo, u_hi, acc, H);
            }
        } else {
            if (acc != nxt)
                for (long b = 0; b < B; b++)
                    for (long u = u_lo; u < u_hi; u++) acc[b * H + u] = 0;
            for (long b = 0; b < B; b++)
                for (long u = u_lo; u < u_hi; u++) drh[b * H + u] = 0;
            RK(add_rows_product)(B, H, dp + 2 * H, 3 * H, W + 2 * H * ldw, ldw, u_lo, u_hi, drh, H); /* dn' · W_hn */
            for (long p = p_lo; p < p_hi; p++) {
                const long u = p * VL, nu = H - u < VL ? H - u : VL;
                vec s_r = zero;
                for (long b = 0; b < B; b++) {
                    const long s = b * H + u;
                    if (a->len && t >= a->len[b]) continue; /* dPre_r is already 0 */
                    const REAL *gb = gt + b * 3 * H + u;
                    const vec r_ = RK(vload_n)(gb, nu), g_rh = RK(vload_n)(drh + s, nu);
                    const vec e_r = gG ? RK(vload_n)(gG + (t * B + b) * 3 * H + u, nu) : zero;
                    vec hq = RK(vload_n)(hp + s, nu); /* what W_hn multiplied r by: h_{t-1}, or m ⊙ h_{t-1} */
                    if (rmask) hq *= RK(vload_n)(rmask + s, nu);
                    const vec dpr = (g_rh * hq + e_r) * RK(act_grad)(rec, r_);
                    RK(vstore_n)(dp + b * 3 * H + u, dpr, nu);
                    RK(vstore_n)(acc + s, RK(vload_n)(acc + s, nu) + g_rh * r_, nu);
                    s_r += dpr;
                }
                RK(vstore_n)(db_ih + u, RK(vload_n)(db_ih + u, nu) + s_r, nu);
                RK(vstore_n)(db_hh + u, RK(vload_n)(db_hh + u, nu) + s_r, nu);
            }
            rk_barrier_wait(&j->bar, nth, &sense);
            if (t > 0 || a->need_dh0) /* nxt[:, own units] += (dr', dz') · W_h{r,z}[:, own units] */
                RK(add_rows_product)(B, 2 * H, dp, 3 * H, W, ldw, u_lo, u_hi, acc, H);
        }
        if (acc != nxt && (t > 0 || a->need_dh0)) /* recurrent dropout: the products reached m ⊙ h_{t-1} */
            for (long b = 0; b < B; b++)
                for (long u = u_lo; u < u_hi; u++) nxt[b * H + u] += rmask[b * H + u] * acc[b * H + u];
        REAL *swap = cur;
        cur = nxt;
        nxt = swap;
    }
    RK(keep_in)(a->dh, cur, B, H, u_lo, u_hi);
}

static void RK(gru_bwd_entry)(const rk_gru_bwd_args *a) {
    RK(gru_job) j = {.b = a};
    rk_parallel(RK(gru_bwd_task), &j, RK(threads_for)(a->H, VL, a->nth));
}

#undef RK_GRU_DISPATCH
