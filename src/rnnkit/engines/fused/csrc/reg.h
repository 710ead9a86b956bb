/* The regularisers inside the time loop, for one REAL type (rk_reg_args in rnnkit_c.h; the equations and the
   masks' definition are rnnkit/regularisers.py's, which the reference loop computes with the same hash).

   Forward: a cell mixes its new state with the previous one by zoneout (reg_zone_d, reg_mix) where it stores
   it, reads h_{t-1} for the recurrent product through reg_hprev (the masked ring under recurrent dropout), and
   after its units of h_t are final stores their masked copy for the next step (reg_store_hd).
   Backward: the gradient reaching a step's candidate state is (1 − d) ⊙ dL/dh_t; reg_bwd_fix, after the
   recurrent product has added dPre_t · W_hh into dL/dh_{t-1}, masks that product's part with rmask and adds
   zoneout's direct path d ⊙ dL/dh_t. No mask is stored: a step's zoneout mask is recomputed from the hash. */

static inline int RK(zone_on)(const rk_reg_args *g, int k) { return g && g->p[k] != 0; }

/* d for state k at step t, row b, units u … u + n of N: 1 (keep the previous value) or 0 in training, p at
   evaluation; zeros past n. */
static inline vec RK(zone_d)(const rk_reg_args *g, int k, long t, long B, long b, long N, long u, long n) {
    if (!g->train) return RK(splat)((REAL)g->p[k]);
    vec d = {0};
    const uint32_t base = (uint32_t)((t * B + b) * N + u), key = g->key[k], thr = g->thr[k];
    for (long v = 0; v < n; v++) d[v] = rk_hash32((base + (uint32_t)v) ^ key) < thr ? 1 : 0;
    return d;
}

/* d ⊙ prev + (1 − d) ⊙ cand: exactly prev or cand where d is 0 or 1 */
static inline vec RK(zone_mix)(vec d, vec prev, vec cand) { return d * prev + ((REAL)1 - d) * cand; }

/* What the recurrent product of step t reads as h_{t-1} (B × N): the ring's masked copy, or the state itself. */
static inline const REAL *RK(reg_hprev)(const rk_reg_args *g, long t, long B, long N, const REAL *hp) {
    return g && g->rmask ? (const REAL *)g->hd + (t % 2) * B * N : hp;
}

/* hd[(t + 1) % 2] = h_t ⊙ rmask for every row and units [lo, hi) of N (ended rows too: their carried h). */
static void RK(reg_store_hd)(const rk_reg_args *g, long t, long B, long N, long lo, long hi, const REAL *h) {
    if (!g || !g->rmask) return;
    const REAL *m = (const REAL *)g->rmask;
    REAL *o = (REAL *)g->hd + ((t + 1) % 2) * B * N;
    for (long b = 0; b < B; b++)
        for (long u = lo; u < hi; u++) o[b * N + u] = h[b * N + u] * m[b * N + u];
}

/* Zoneout on state 0 for the rows of a range of units [lo, hi) of N that have not ended, in place:
   dh (B × N) = (1 − d) ⊙ dh — the part of dL/dh_t that reaches the step's candidate. */
static void RK(reg_zone_grad)(const rk_reg_args *g, long t, long B, const int64_t *len, long N, long lo, long hi,
                              REAL *dh) {
    if (!RK(zone_on)(g, 0)) return;
    for (long b = 0; b < B; b++) {
        if (len && t >= len[b]) continue;
        for (long u = lo; u < hi; u += VL) {
            const long n = hi - u < VL ? hi - u : VL, s = b * N + u;
            const vec d = RK(zone_d)(g, 0, t, B, b, N, u, n);
            RK(vstore_n)(dh + s, ((REAL)1 - d) * RK(vload_n)(dh + s, n), n);
        }
    }
}

/* After nxt += (the recurrent product's gradient) for rows that have not ended, whose nxt started at 0:
   nxt = rmask ⊙ nxt + d ⊙ (cur + go), the product's part through the dropout mask plus zoneout's direct path
   (cur + go = dL/dh_t). Ended rows carry dL/dh_t unchanged and are left alone. */
static void RK(reg_bwd_fix)(const rk_reg_args *g, long t, long B, const int64_t *len, long N, long lo, long hi,
                            const REAL *cur, const REAL *go, REAL *nxt) {
    if (!g || (!g->rmask && !RK(zone_on)(g, 0))) return;
    for (long b = 0; b < B; b++) {
        if (len && t >= len[b]) continue;
        for (long u = lo; u < hi; u += VL) {
            const long n = hi - u < VL ? hi - u : VL, s = b * N + u;
            vec v = RK(vload_n)(nxt + s, n);
            if (g->rmask) v *= RK(vload_n)((const REAL *)g->rmask + s, n);
            if (RK(zone_on)(g, 0))
                v += RK(zone_d)(g, 0, t, B, b, N, u, n) * (RK(vload_n)(cur + s, n) + RK(vload_n)(go + s, n));
            RK(vstore_n)(nxt + s, v, n);
        }
    }
}
