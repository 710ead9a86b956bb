/* One time step's element-wise work of an LSTM or GRU (forward or backward), for one REAL type: the
   per-step path of the fused engine (rnnkit/engines/_fused_gated.py), used where the sequence kernels do
   not apply (LSTM with a projection, calls that return the gates) and by the one-token stepper. Each
   function takes B rows of H units; the vector math is vmath.h's. */

/* LSTM forward: x = W_ih x_t + b and g = W_hh h_{t-1} (4H each, gate order i, f, g, o); g becomes the
   activated gates; c = f·cp + i·g; m = o·tanh(c). Peepholes wci, wcf, wco (zero vectors when absent). */
void RK(lstm_fwd)(const REAL *x, REAL *g, const REAL *cp, REAL *c, REAL *m, const REAL *wci, const REAL *wcf,
                  const REAL *wco, long B, long H) {
    for (long b = 0; b < B; b++)
        for (long u = 0; u < H; u += VL) {
            const long n = H - u < VL ? H - u : VL, s = b * H + u;
            const REAL *xb = x + b * 4 * H + u;
            REAL *gb = g + b * 4 * H + u;
            const vec c_prev = RK(vload_n)(cp + s, n);
            const vec i = RK(vsigmoid)(RK(vload_n)(xb, n) + RK(vload_n)(gb, n) + RK(vload_n)(wci + u, n) * c_prev);
            const vec f = RK(vsigmoid)(RK(vload_n)(xb + H, n) + RK(vload_n)(gb + H, n) + RK(vload_n)(wcf + u, n) * c_prev);
            const vec gg = RK(vtanh)(RK(vload_n)(xb + 2 * H, n) + RK(vload_n)(gb + 2 * H, n));
            const vec cv = f * c_prev + i * gg;
            const vec o = RK(vsigmoid)(RK(vload_n)(xb + 3 * H, n) + RK(vload_n)(gb + 3 * H, n) + RK(vload_n)(wco + u, n) * cv);
            RK(vstore_n)(gb, i, n);
            RK(vstore_n)(gb + H, f, n);
            RK(vstore_n)(gb + 2 * H, gg, n);
            RK(vstore_n)(gb + 3 * H, o, n);
            RK(vstore_n)(c + s, cv, n);
            RK(vstore_n)(m + s, o * RK(vtanh)(cv), n);
        }
}

/* LSTM backward: g = activated gates, dm = dL/dm_t; dc holds dL/dc_t from later steps and becomes
   dL/dc_{t-1}; dp = the gradients of the four pre-activations. */
void RK(lstm_bwd)(const REAL *g, const REAL *cp, const REAL *c, const REAL *dm, REAL *dc, REAL *dp, const REAL *wci,
                  const REAL *wcf, const REAL *wco, long B, long H) {
    const vec one = RK(splat)(1);
    for (long b = 0; b < B; b++)
        for (long u = 0; u < H; u += VL) {
            const long n = H - u < VL ? H - u : VL, s = b * H + u;
            const REAL *gb = g + b * 4 * H + u;
            REAL *dpb = dp + b * 4 * H + u;
            const vec i = RK(vload_n)(gb, n), f = RK(vload_n)(gb + H, n), gg = RK(vload_n)(gb + 2 * H, n);
            const vec o = RK(vload_n)(gb + 3 * H, n), tc = RK(vtanh)(RK(vload_n)(c + s, n));
            const vec d = RK(vload_n)(dm + s, n), c_prev = RK(vload_n)(cp + s, n);
            const vec dpo = d * tc * o * (one - o);
            const vec dcn = RK(vload_n)(dc + s, n) + d * o * (one - tc * tc) + dpo * RK(vload_n)(wco + u, n);
            const vec dpi = dcn * gg * i * (one - i), dpf = dcn * c_prev * f * (one - f);
            RK(vstore_n)(dpb, dpi, n);
            RK(vstore_n)(dpb + H, dpf, n);
            RK(vstore_n)(dpb + 2 * H, dcn * i * (one - gg * gg), n);
            RK(vstore_n)(dpb + 3 * H, dpo, n);
            RK(vstore_n)(dc + s, dcn * f + dpi * RK(vload_n)(wci + u, n) + dpf * RK(vload_n)(wcf + u, n), n);
        }
}

/* GRU (reset after the product) forward: x = W_ih x_t + b_ih, hh = W_hh h + b_hh (3H each, order r, z, n);
   g = r, z, n; h = n + z·(hp − n). */
void RK(gru_fwd)(const REAL *x, const REAL *hh, const REAL *hp, REAL *g, REAL *h, long B, long H) {
    for (long b = 0; b < B; b++)
        for (long u = 0; u < H; u += VL) {
            const long n = H - u < VL ? H - u : VL, s = b * H + u;
            const REAL *xb = x + b * 3 * H + u, *hb = hh + b * 3 * H + u;
            REAL *gb = g + b * 3 * H + u;
            const vec r = RK(vsigmoid)(RK(vload_n)(xb, n) + RK(vload_n)(hb, n));
            const vec z = RK(vsigmoid)(RK(vload_n)(xb + H, n) + RK(vload_n)(hb + H, n));
            const vec nn = RK(vtanh)(RK(vload_n)(xb + 2 * H, n) + r * RK(vload_n)(hb + 2 * H, n));
            RK(vstore_n)(gb, r, n);
            RK(vstore_n)(gb + H, z, n);
            RK(vstore_n)(gb + 2 * H, nn, n);
            RK(vstore_n)(h + s, nn + z * (RK(vload_n)(hp + s, n) - nn), n);
        }
}

/* GRU backward: dh = dL/dh_t, hn = W_hn h + b_hn; dp = gradients of x's pre-activations, dhh = gradient of
   W_hh h + b_hh, dhp = the direct part z·dh of dL/dh_{t-1}. */
void RK(gru_bwd)(const REAL *g, const REAL *hn, const REAL *hp, const REAL *dh, REAL *dp, REAL *dhh, REAL *dhp, long B,
                 long H) {
    const vec one = RK(splat)(1);
    for (long b = 0; b < B; b++)
        for (long u = 0; u < H; u += VL) {
            const long n = H - u < VL ? H - u : VL, s = b * H + u;
            const REAL *gb = g + b * 3 * H + u;
            REAL *dpb = dp + b * 3 * H + u, *dqb = dhh + b * 3 * H + u;
            const vec r = RK(vload_n)(gb, n), z = RK(vload_n)(gb + H, n), nn = RK(vload_n)(gb + 2 * H, n);
            const vec d = RK(vload_n)(dh + s, n);
            const vec dpn = (d - d * z) * (one - nn * nn);
            const vec dpr = dpn * RK(vload_n)(hn + s, n) * r * (one - r);
            const vec dpz = d * (RK(vload_n)(hp + s, n) - nn) * z * (one - z);
            RK(vstore_n)(dpb, dpr, n);
            RK(vstore_n)(dpb + H, dpz, n);
            RK(vstore_n)(dpb + 2 * H, dpn, n);
            RK(vstore_n)(dqb, dpr, n);
            RK(vstore_n)(dqb + H, dpz, n);
            RK(vstore_n)(dqb + 2 * H, dpn * r, n);
            RK(vstore_n)(dhp + s, d * z, n);
        }
}
