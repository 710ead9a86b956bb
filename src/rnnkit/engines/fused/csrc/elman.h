/* Elman and Jordan layers over a whole sequence (one direction of one layer) for one REAL type.

   Elman (torch.nn.RNN):   h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
   Jordan (rnnkit.cells):  h_t = act(W_ih x_t + b_ih + W_yh y_{t-1} + b_yh),   y_t = out_act(W_hy h_t + b_hy)

   One gate per unit, so a panel holds 4·VL consecutive units (panels.h) and threads split those panels.
   Elman meets once per step; Jordan twice (y_t needs all of h_t, and step t + 1 all of y_t). Activations
   are named by code; every derivative is taken from the activation's output. */

/* ---- Elman ---- */
typedef struct {
    const rk_elman_fwd_args *f;
    const rk_elman_bwd_args *b;
    rk_barrier bar;
} RK(elman_job);

static void RK(elman_fwd_task)(void *ctx, int tid, int nth) {
    RK(elman_job) *j = ctx;
    const rk_elman_fwd_args *a = j->f;
    const long B = a->B, H = a->H, F = a->F;
    const REAL *x = a->x;
    REAL *Hs = a->Hs;
    long p_lo, p_hi, u_lo, u_hi;
    RK(own_panels)(H, UP, tid, nth, &p_lo, &p_hi, &u_lo, &u_hi);
    int sense = 0;
    for (long t = 0; t < a->T; t++) {
        const REAL *hp = t ? Hs + (t - 1) * B * H : (const REAL *)a->h0;
        RK(panels_step)(a->act, B, t, a->len, p_lo, p_hi, H, x + t * B * F, F, a->Wxp, RK(reg_hprev)(a->reg, t, B, H, hp),
                        H, a->Wp, a->bias, hp, Hs + t * B * H, a->reg);
        RK(reg_store_hd)(a->reg, t, B, H, u_lo, u_hi, Hs + t * B * H);
        rk_barrier_wait(&j->bar, nth, &sense);
    }
}

static void RK(elman_bwd_task)(void *ctx, int tid, int nth) {
    RK(elman_job) *j = ctx;
    const rk_elman_bwd_args *a = j->b;
    const long B = a->B, H = a->H;
    const REAL *Hs = a->Hs, *gout = a->gout;
    long p_lo, p_hi, u_lo, u_hi;
    RK(own_panels)(H, UP, tid, nth, &p_lo, &p_hi, &u_lo, &u_hi);
    REAL *cur = a->dh, *nxt = a->dh2;
    int sense = 0;
    for (long t = a->T - 1; t >= 0; t--) {
        REAL *dp = (REAL *)a->dPre + t * B * H;
        RK(panels_grad)(a->act, B, t, a->len, u_lo, u_hi, H, cur, gout + t * B * H, Hs + (t + 1) * B * H, dp, a->db,
                        nxt, Hs + t * B * H, a->reg);
        rk_barrier_wait(&j->bar, nth, &sense);
        if (t > 0 || a->need_dh0) {
            RK(add_rows_product)(B, H, dp, H, a->W, a->ldw, u_lo, u_hi, nxt, H);
            RK(reg_bwd_fix)(a->reg, t, B, a->len, H, u_lo, u_hi, cur, gout + t * B * H, nxt);
        }
        REAL *swap = cur;
        cur = nxt;
        nxt = swap;
    }
    RK(keep_in)(a->dh, cur, B, H, u_lo, u_hi);
}

static void RK(elman_fwd_entry)(const rk_elman_fwd_args *a) {
    RK(elman_job) j = {.f = a};
    rk_parallel(RK(elman_fwd_task), &j, RK(threads_for)(a->H, UP, a->nth));
}

static void RK(elman_bwd_entry)(const rk_elman_bwd_args *a) {
    RK(elman_job) j = {.b = a};
    rk_parallel(RK(elman_bwd_task), &j, RK(threads_for)(a->H, UP, a->nth));
}

/* ---- Jordan: the state is y (O features); the hidden layer h (H) is kept for the backward ---- */
typedef struct {
    const rk_jordan_fwd_args *f;
    const rk_jordan_bwd_args *b;
    rk_barrier bar;
} RK(jordan_job);

static void RK(jordan_fwd_task)(void *ctx, int tid, int nth) {
    RK(jordan_job) *j = ctx;
    const rk_jordan_fwd_args *a = j->f;
    const long B = a->B, H = a->H, O = a->O, F = a->F;
    const REAL *x = a->x;
    REAL *Ys = a->Ys, *Hh = a->Hh;
    long hp_lo, hp_hi, hu_lo, hu_hi, yp_lo, yp_hi, yu_lo, yu_hi;
    RK(own_panels)(H, UP, tid, nth, &hp_lo, &hp_hi, &hu_lo, &hu_hi);
    RK(own_panels)(O, UP, tid, nth, &yp_lo, &yp_hi, &yu_lo, &yu_hi);
    int sense = 0;
    for (long t = 0; t < a->T; t++) {
        const REAL *yp = t ? Ys + (t - 1) * B * O : (const REAL *)a->y0;
        REAL *h = Hh + t * B * H;
        /* ended sequences: h is computed all the same (it is masked out), so `prev` is never read */
        RK(panels_step)(a->act, B, t, NULL, hp_lo, hp_hi, H, x + t * B * F, F, a->Wxp, RK(reg_hprev)(a->reg, t, B, O, yp),
                        O, a->Wyp, a->bias, h, h, NULL);
        rk_barrier_wait(&j->bar, nth, &sense);
        RK(panels_step)(a->out_act, B, t, a->len, yp_lo, yp_hi, O, h, H, a->Whp, NULL, 0, NULL, a->bias_hy, yp,
                        Ys + t * B * O, a->reg);
        RK(reg_store_hd)(a->reg, t, B, O, yu_lo, yu_hi, Ys + t * B * O);
        rk_barrier_wait(&j->bar, nth, &sense);
    }
}

static void RK(jordan_bwd_task)(void *ctx, int tid, int nth) {
    RK(jordan_job) *j = ctx;
    const rk_jordan_bwd_args *a = j->b;
    const long B = a->B, H = a->H, O = a->O;
    const REAL *Ys = a->Ys, *Hh = a->Hh, *gout = a->gout, *gH = a->gH;
    REAL *dh = a->dh;
    long hp_lo, hp_hi, hu_lo, hu_hi, yp_lo, yp_hi, yu_lo, yu_hi;
    RK(own_panels)(H, UP, tid, nth, &hp_lo, &hp_hi, &hu_lo, &hu_hi);
    RK(own_panels)(O, UP, tid, nth, &yp_lo, &yp_hi, &yu_lo, &yu_hi);
    REAL *cur = a->dy, *nxt = a->dy2;
    int sense = 0;
    for (long t = a->T - 1; t >= 0; t--) {
        REAL *dpy = (REAL *)a->dPreY + t * B * O, *dp = (REAL *)a->dPre + t * B * H;
        /* dPreY_t = dL/dy_t ⊙ out_act'(y_t); nxt (dL/dy_{t-1}) starts at 0, or carries dL/dy_t past the end */
        RK(panels_grad)(a->out_act, B, t, a->len, yu_lo, yu_hi, O, cur, gout + t * B * O, Ys + (t + 1) * B * O, dpy,
                        a->db_hy, nxt, Ys + t * B * O, a->reg);
        rk_barrier_wait(&j->bar, nth, &sense);
        /* dL/dh_t = dPreY_t · W_hy (+ the gradient reaching h_t from outside), then dPre_t = dL/dh_t ⊙ act'(h_t) */
        for (long b = 0; b < B; b++)
            for (long u = hu_lo; u < hu_hi; u++) dh[b * H + u] = gH ? gH[(t * B + b) * H + u] : 0;
        RK(add_rows_product)(B, O, dpy, O, a->W_hy, a->ldh, hu_lo, hu_hi, dh, H);
        RK(panels_grad)(a->act, B, t, a->len, hu_lo, hu_hi, H, dh, NULL, Hh + t * B * H, dp, a->db, NULL, NULL, NULL);
        rk_barrier_wait(&j->bar, nth, &sense);
        if (t > 0 || a->need_dy0) {
            RK(add_rows_product)(B, H, dp, H, a->W_yh, a->ldy, yu_lo, yu_hi, nxt, O);
            RK(reg_bwd_fix)(a->reg, t, B, a->len, O, yu_lo, yu_hi, cur, gout + t * B * O, nxt);
        }
        REAL *swap = cur;
        cur = nxt;
        nxt = swap;
    }
    RK(keep_in)(a->dy, cur, B, O, yu_lo, yu_hi);
}

static void RK(jordan_fwd_entry)(const rk_jordan_fwd_args *a) {
    RK(jordan_job) j = {.f = a};
    const int n1 = RK(threads_for)(a->H, UP, a->nth), n2 = RK(threads_for)(a->O, UP, a->nth);
    rk_parallel(RK(jordan_fwd_task), &j, n1 > n2 ? n1 : n2);
}

static void RK(jordan_bwd_entry)(const rk_jordan_bwd_args *a) {
    RK(jordan_job) j = {.b = a};
    const int n1 = RK(threads_for)(a->H, UP, a->nth), n2 = RK(threads_for)(a->O, UP, a->nth);
    rk_parallel(RK(jordan_bwd_task), &j, n1 > n2 ? n1 : n2);
}
