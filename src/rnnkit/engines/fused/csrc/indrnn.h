/* IndRNN (Li et al. 2018) over a whole sequence (one direction of one layer) for one REAL type.

   h_t = act(XW_t + u ⊙ h_{t-1}),   XW = W_ih x + b_ih + b_hh for all steps (one GEMM before the call).

   No matrix in the recurrence: every (sequence, unit) is its own scalar recurrence, so each thread takes whole
   sequences and walks all their steps, and the threads never meet. Past a sequence's end the state is copied
   (frozen); the backward passes its gradient through unchanged there. Derivatives from the output, as autograd. */

static void RK(indrnn_fwd_task)(void *ctx, int tid, int nth) {
    const rk_indrnn_fwd_args *a = ctx;
    const long B = a->B, H = a->H;
    const REAL *xw = a->xw, *u = a->u;
    REAL *Hs = a->Hs; /* (T + 1, B, H), row 0 = h_0 */
    for (long b = B * tid / nth; b < B * (tid + 1) / nth; b++) {
        for (long t = 0; t < a->T; t++) {
            const REAL *hp = Hs + (t * B + b) * H, *p = xw + (t * B + b) * H;
            REAL *h = Hs + ((t + 1) * B + b) * H;
            if (a->len && t >= a->len[b]) {
                memcpy(h, hp, H * sizeof(REAL));
                continue;
            }
            for (long k = 0; k < H; k += VL) {
                const long n = H - k < VL ? H - k : VL;
                const vec pre = RK(vload_n)(p + k, n) + RK(vload_n)(u + k, n) * RK(vload_n)(hp + k, n);
                RK(vstore_n)(h + k, RK(act)(a->act, pre), n); /* h_t = act(W x_t + u ⊙ h_{t-1} + b) */
            }
        }
    }
}

/* Backward: gout (T + 1, B, H) = dL/dh_t from outside (row 0: dL/dh_0 is added by the caller). Writes dPre
   (T, B, H) = dL/d(pre-activation), dh (B, H) = dL/dh_0 from the recurrence, and du (nth, H): per thread
   Σ_t Σ_b dPre ⊙ h_{t-1}, summed by the caller. */
static void RK(indrnn_bwd_task)(void *ctx, int tid, int nth) {
    const rk_indrnn_bwd_args *a = ctx;
    const long B = a->B, H = a->H;
    const REAL *Hs = a->Hs, *u = a->u, *gout = a->gout;
    REAL *dPre = a->dPre, *du = (REAL *)a->du + tid * H, *dh = a->dh;
    for (long k = 0; k < H; k++) du[k] = 0;
    for (long b = B * tid / nth; b < B * (tid + 1) / nth; b++) {
        REAL *d = dh + b * H; /* dL/dh_t, carried backwards; starts at 0 past the last step */
        for (long k = 0; k < H; k++) d[k] = 0;
        for (long t = a->T - 1; t >= 0; t--) {
            const REAL *g = gout + (t * B + b) * H, *h = Hs + ((t + 1) * B + b) * H, *hp = h - B * H;
            REAL *dp = dPre + (t * B + b) * H;
            const int alive = !a->len || t < a->len[b];
            for (long k = 0; k < H; k += VL) {
                const long n = H - k < VL ? H - k : VL;
                const vec dh_t = RK(vload_n)(d + k, n) + RK(vload_n)(g + k, n);
                if (!alive) { /* h_t = h_{t-1}: the gradient passes through, nothing reaches the gates */
                    RK(vstore_n)(dp + k, (vec){0}, n);
                    RK(vstore_n)(d + k, dh_t, n);
                    continue;
                }
                const vec da = dh_t * RK(act_grad)(a->act, RK(vload_n)(h + k, n));
                RK(vstore_n)(dp + k, da, n);
                RK(vstore_n)(du + k, RK(vload_n)(du + k, n) + da * RK(vload_n)(hp + k, n), n);
                RK(vstore_n)(d + k, da * RK(vload_n)(u + k, n), n); /* ∂h_t/∂h_{t-1} = diag(u ⊙ act') */
            }
        }
    }
}

static void RK(indrnn_fwd_entry)(const rk_indrnn_fwd_args *a) {
    const int nth = a->nth < a->B ? a->nth : (int)(a->B > 0 ? a->B : 1);
    rk_parallel(RK(indrnn_fwd_task), (void *)a, nth);
}

static void RK(indrnn_bwd_entry)(const rk_indrnn_bwd_args *a) {
    rk_parallel(RK(indrnn_bwd_task), (void *)a, a->nth); /* du has one row per thread: the caller sized it */
}
