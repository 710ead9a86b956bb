/* GRU over a whole sequence (one direction of one layer) for one REAL type: forward and backward.

   torch.nn.GRU's equations (reset applied after the product, gate order r, z, n):
       r = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)        z = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
       n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t-1} + b_hn))          h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
   The work split is the LSTM's (lstm.h): each thread owns blocks of VL units and all three gates of them,
   computes both tile products (input and recurrent, kept apart because r multiplies only the second),
   then the update; one barrier per step. */

typedef struct {
    long T, B, H, F;
    const REAL *x;          /* (T, B, F) */
    const REAL *Wxp, *Wp;   /* W_ih and W_hh packed by rk_pack_gates(3, H, F or H, …) */
    const REAL *bih, *bhh;  /* (3H) each, or NULL */
    const long *len;
    const REAL *h0; /* (B, H) the initial state */
    REAL *Hs;       /* (T, B, H): h_1 … h_T */
    REAL *G, *HN; /* (T, B, 3H) r, z, n and (T, B, H) W_hn h + b_hn, or NULL (inference) */
    rk_barrier bar;
} RK(gru_fwd_job);

static inline __attribute__((always_inline)) void RK(gru_cell)(const long nu, long H, const REAL *ax, const REAL *ah,
                                                                const vec *bw, const REAL *hp, REAL *hn, REAL *gb,
                                                                REAL *hnb) {
    const vec h_prev = RK(vload_n)(hp, nu);
    const vec r = RK(vsigmoid)(RK(vload)(ax) + bw[0] + RK(vload)(ah) + bw[3]);
    const vec z = RK(vsigmoid)(RK(vload)(ax + VL) + bw[1] + RK(vload)(ah + VL) + bw[4]);
    const vec hh = RK(vload)(ah + 2 * VL) + bw[5]; /* W_hn h + b_hn */
    const vec n = RK(vtanh)(RK(vload)(ax + 2 * VL) + bw[2] + r * hh);
    RK(vstore_n)(hn, n + z * (h_prev - n), nu);
    if (gb) {
        RK(vstore_n)(gb, r, nu);
        RK(vstore_n)(gb + H, z, nu);
        RK(vstore_n)(gb + 2 * H, n, nu);
        RK(vstore_n)(hnb, hh, nu);
    }
}

static void RK(gru_fwd_task)(void *ctx, int tid, int nth) {
    RK(gru_fwd_job) *j = ctx;
    const long T = j->T, B = j->B, H = j->H, F = j->F, nb = (H + VL - 1) / VL;
    const long nt = RK(ntiles)(B, RK(tile_rows)(3));
    long p_lo, p_hi;
    rk_share(nb, tid, nth, &p_lo, &p_hi);
    REAL tx[MR_MAX * 4 * VL] __attribute__((aligned(64))), th[MR_MAX * 4 * VL] __attribute__((aligned(64)));
    int sense = 0;
    for (long t = 0; t < T; t++) {
        const REAL *hp = t ? j->Hs + (t - 1) * B * H : j->h0, *xt = j->x + t * B * F;
        REAL *hn = j->Hs + t * B * H;
        REAL *gt = j->G ? j->G + t * B * 3 * H : NULL, *HNt = j->HN ? j->HN + t * B * H : NULL;
        for (long p = p_lo; p < p_hi; p++) {
            const long u = p * VL, nu = H - u < VL ? H - u : VL;
            vec bw[6] = {{0}, {0}, {0}, {0}, {0}, {0}}; /* b_ir, b_iz, b_in, b_hr, b_hz, b_hn */
            for (int k = 0; j->bih && k < 3; k++) bw[k] = RK(vload_n)(j->bih + k * H + u, nu);
            for (int k = 0; j->bhh && k < 3; k++) bw[3 + k] = RK(vload_n)(j->bhh + k * H + u, nu);
            for (long i = 0; i < nt; i++) {
                const long b0 = B * i / nt, R = B * (i + 1) / nt - b0;
                for (long r = 0; r < R; r++) __builtin_prefetch(hp + (b0 + r) * H + u);
                RK(tile)((int)R, 3, F, xt + b0 * F, F, 1, j->Wxp + p * F * 3 * VL, 3 * VL, tx); /* W_i* x_t */
                RK(tile)((int)R, 3, H, hp + b0 * H, H, 1, j->Wp + p * H * 3 * VL, 3 * VL, th);  /* W_h* h_{t-1} */
                for (long r = 0; r < R; r++) {
                    const long b = b0 + r, s = b * H + u;
                    if (j->len && t >= j->len[b]) {
                        for (long v = 0; v < nu; v++) hn[s + v] = hp[s + v];
                        continue;
                    }
                    REAL *gb = gt ? gt + b * 3 * H + u : NULL, *hnb = HNt ? HNt + s : NULL;
                    const REAL *ax = tx + r * 4 * VL, *ah = th + r * 4 * VL;
                    if (nu == VL)
                        RK(gru_cell)(VL, H, ax, ah, bw, hp + s, hn + s, gb, hnb);
                    else
                        RK(gru_cell)(nu, H, ax, ah, bw, hp + s, hn + s, gb, hnb);
                }
            }
        }
        rk_barrier_wait(&j->bar, nth, &sense);
    }
}

void RK(rk_gru_fwd)(long T, long B, long H, long F, const REAL *x, const REAL *Wxp, const REAL *Wp,
                    const REAL *bih, const REAL *bhh, const long *len, const REAL *h0, REAL *Hs, REAL *G, REAL *HN,
                    int nth) {
    RK(gru_fwd_job) j = {T, B, H, F, x, Wxp, Wp, bih, bhh, len, h0, Hs, G, HN, {0, 0}};
    const long nb = (H + VL - 1) / VL;
    rk_parallel(RK(gru_fwd_task), &j, nth < nb ? nth : (int)nb);
}

/* Backward. In: dh = dL/dh_T, gout (T, B, H). Out: dh = dL/dh_0; dPre (T, B, 3H) = dL/dx; dHH (T, B, 3H) =
   dL/d(W_hh h + b_hh); db_ih += Σ dPre, db_hh += Σ dHH. Per step: pointwise for own units, barrier,
   dL/dh_{t-1} = z ⊙ dh_t + dHH_t · W_hh for own units. */
typedef struct {
    long T, B, H;
    const REAL *G, *HN, *Hs;
    const REAL *W; /* W_hh (3H × ldw) */
    long ldw;
    const long *len;
    const REAL *gout;
    REAL *dh, *dh2, *dPre, *dHH, *db_ih, *db_hh;
    int need_dh0;
    rk_barrier bar;
} RK(gru_bwd_job);

static void RK(gru_bwd_task)(void *ctx, int tid, int nth) {
    RK(gru_bwd_job) *j = ctx;
    const long B = j->B, H = j->H, nb = (H + VL - 1) / VL;
    long p_lo, p_hi;
    rk_share(nb, tid, nth, &p_lo, &p_hi);
    const long u_lo = p_lo * VL, u_hi = p_hi * VL < H ? p_hi * VL : H;
    REAL *cur = j->dh, *nxt = j->dh2;
    int sense = 0;
    const vec one = RK(splat)(1), zero = {0};
    for (long t = j->T - 1; t >= 0; t--) {
        const REAL *gt = j->G + t * B * 3 * H, *HNt = j->HN + t * B * H, *hp = j->Hs + t * B * H;
        const REAL *go = j->gout + t * B * H;
        REAL *dp = j->dPre + t * B * 3 * H, *dq = j->dHH + t * B * 3 * H;
        for (long p = p_lo; p < p_hi; p++) {
            const long u = p * VL, nu = H - u < VL ? H - u : VL;
            vec s_r = zero, s_z = zero, s_n = zero, s_hn = zero;
            for (long b = 0; b < B; b++) {
                const long s = b * H + u;
                REAL *dpb = dp + b * 3 * H + u, *dqb = dq + b * 3 * H + u;
                if (j->len && t >= j->len[b]) {
                    for (int k = 0; k < 3; k++) RK(vstore_n)(dpb + k * H, zero, nu), RK(vstore_n)(dqb + k * H, zero, nu);
                    for (long v = 0; v < nu; v++) nxt[s + v] = cur[s + v];
                    continue;
                }
                const REAL *gb = gt + b * 3 * H + u;
                const vec r_ = RK(vload_n)(gb, nu), z_ = RK(vload_n)(gb + H, nu), n_ = RK(vload_n)(gb + 2 * H, nu);
                const vec d = RK(vload_n)(cur + s, nu) + RK(vload_n)(go + s, nu); /* dL/dh_t */
                const vec dpn = (d - d * z_) * (one - n_ * n_);
                const vec dpr = dpn * RK(vload_n)(HNt + s, nu) * r_ * (one - r_);
                const vec dpz = d * (RK(vload_n)(hp + s, nu) - n_) * z_ * (one - z_);
                RK(vstore_n)(dpb, dpr, nu);
                RK(vstore_n)(dpb + H, dpz, nu);
                RK(vstore_n)(dpb + 2 * H, dpn, nu);
                RK(vstore_n)(dqb, dpr, nu);
                RK(vstore_n)(dqb + H, dpz, nu);
                RK(vstore_n)(dqb + 2 * H, dpn * r_, nu);
                RK(vstore_n)(nxt + s, d * z_, nu); /* the direct path; the product below adds the rest */
                s_r += dpr, s_z += dpz, s_n += dpn, s_hn += dpn * r_;
            }
            const vec si[3] = {s_r, s_z, s_n}, sh[3] = {s_r, s_z, s_hn};
            for (int k = 0; k < 3; k++) {
                RK(vstore_n)(j->db_ih + k * H + u, RK(vload_n)(j->db_ih + k * H + u, nu) + si[k], nu);
                RK(vstore_n)(j->db_hh + k * H + u, RK(vload_n)(j->db_hh + k * H + u, nu) + sh[k], nu);
            }
        }
        rk_barrier_wait(&j->bar, nth, &sense);
        if (t > 0 || j->need_dh0) /* nxt[:, own units] += dHH_t · W_hh[:, own units] */
            RK(add_rows_product)(B, 3 * H, dq, 3 * H, j->W, j->ldw, u_lo, u_hi, nxt, H);
        REAL *swap = cur;
        cur = nxt;
        nxt = swap;
    }
    RK(keep_in)(j->dh, cur, B, H, u_lo, u_hi);
}

void RK(rk_gru_bwd)(long T, long B, long H, const REAL *G, const REAL *HN, const REAL *Hs, const REAL *W, long ldw,
                    const long *len, const REAL *gout, REAL *dh, REAL *dh2, REAL *dPre, REAL *dHH, REAL *db_ih,
                    REAL *db_hh, int need_dh0, int nth) {
    RK(gru_bwd_job) j = {T, B, H, G, HN, Hs, W, ldw, len, gout, dh, dh2, dPre, dHH, db_ih, db_hh, need_dh0, {0, 0}};
    const long nb = (H + VL - 1) / VL;
    rk_parallel(RK(gru_bwd_task), &j, nth < nb ? nth : (int)nb);
}
