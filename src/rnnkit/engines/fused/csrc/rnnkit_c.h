/* The C kernels' interface, shared by the kernels (C) and the torch operators that call them (ops.cpp).

   kernels.c is compiled once per instruction set (RK_ISA = avx512, avx2 or generic) and once per element
   type inside each, and exports one table of entry points per (instruction set, type): ops.cpp picks the
   table for the running CPU at load time. Every entry point takes one argument struct, so the table's
   function types do not depend on the element type: data pointers are void and point at float or double
   as the table says. Shapes are in elements, row-major, contiguous unless a leading dimension is given. */
#ifndef RNNKIT_C_H
#define RNNKIT_C_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* activation codes: the named activations of rnnkit.activations that the kernels differentiate */
enum { RK_IDENTITY = 0, RK_TANH = 1, RK_RELU = 2, RK_SIGMOID = 3, RK_HARD_SIGMOID = 4 };

/* The regularisers inside the time loop (rnnkit.regularisers; reg.h), for every cell; a NULL pointer = none.
   Recurrent dropout: the recurrent product reads hd, a ring (2, B, S) of h ⊙ rmask ([0] = h_0 ⊙ rmask), instead
   of h; rmask (B, S) holds 0 or 1 / (1 − p), the same at every step; the carried state is not masked. dhd (B, S):
   backward scratch. Zoneout on state k (0: h — y for Jordan —, 1: the LSTM's c): s_t = d ⊙ s_{t-1} + (1 − d) ⊙ s̃_t,
   d = 1 where rk_hash32((uint32_t)((t·B + b)·N + n) ^ key[k]) < thr[k] in training (train = 1), d = p[k] at
   evaluation, p[k] = 0: off. */
typedef struct {
    const void *rmask;
    void *hd, *dhd;
    uint32_t key[2], thr[2];
    double p[2];
    int train;
} rk_reg_args;

/* C (M × N) = A · B (+ bias per column), A and B of any strides; ldc: C's row stride. */
typedef struct {
    long M, N, K;
    const void *A;
    long ars, aks;
    const void *B;
    long brs, bcs;
    void *C;
    long ldc;
    const void *bias;
    int nth;
} rk_gemm_args;

/* W (NG·H × K, gate blocks of H rows) -> Wp, one panel per block of U units (U = VL for the gated cells,
   4·VL for the one-gate ones); Wp holds ceil(H / U) · K · NG · U values. */
typedef struct {
    long NG, H, K, U;
    const void *W;
    void *Wp;
    int nth;
    long kmult; /* pack_bf16: k padded to a multiple of this (2, or 32 for AMX tiles) */
    long rs, cs; /* pack_bf16: W's row and column strides in elements (any layout; pack takes it contiguous) */
} rk_pack_args;

/* LSTM (peepholes and projection optional). S = P if P > 0 else H: the width of h.
   Forward writes Hs (T, B, S) = h_1 … h_T, Cs (T, B, H) = c_1 … c_T, G (T, B, 4H) the activated gates
   i, f, g, o (or NULL), M (T, B, H) = o ⊙ act(c) before the projection (needed when P > 0; zero rows where
   a sequence has ended). Backward: Cs is (T + 1, B, H) = c_0 … c_T; gout (T, B, S) = dL/dh_t from outside the
   recurrence (the outputs, and the final state at t = T); gC (T, B, H) and gG (T, B, 4H) the same for c_t and
   the gates, or NULL. Out: dh (B, S) = dL/dh_0, dc (B, H) = dL/dc_0 (both start at zero), dPre (T, B, 4H) =
   dL/d(pre-activations) (NULL with bf16 products: then only dpb holds it), db (4H) and dpeep (3, H) accumulated; with P > 0 also dHt (T, B, P) = dL/dh_t. */
typedef struct {
    long T, B, H, P, F;
    int act, rec_act;
    const void *x, *Wxp, *Wp, *Whrp; /* W_ih, W_hh (4 gates) and W_hr (P > 0; 1 gate, wide panels) packed */
    const void *bias, *peep;         /* (4H) b_ih + b_hh and (3, H) w_ci, w_cf, w_co, or NULL */
    const int64_t *len;              /* (B,) or NULL */
    const void *h0, *c0;
    void *Hs, *Cs, *G, *M;
    int nth;
    /* bf16 products (bf16.h; no projection), 1: vdpbf16ps, 2: AMX tiles: Wxp and Wp packed by pack_bf16, xb
       (T, B, Fp) the input in bf16, hb (2, B, Sp) a ring of h in bf16 ([0] = h0; Fp, Sp = F, S padded by zeros
       to a multiple of 2, or of 32 for AMX) */
    int bf16;
    long Fp, Sp;
    const void *xb;
    void *hb;
    const rk_reg_args *reg; /* or NULL */
} rk_lstm_fwd_args;

typedef struct {
    long T, B, H, P;
    int act, rec_act, need_dh0;
    const void *G, *Cs, *M;
    const void *W, *Whr; /* W_hh (4H × ldw), W_hr (P × ldr): columns readable to a whole vector */
    long ldw, ldr;
    const void *peep;
    const int64_t *len;
    const void *gout, *gC, *gG;
    void *dh, *dh2, *dc, *dPre, *db, *dpeep, *dHt, *dm; /* dh2 (B, S), dm (B, H): scratch */
    int nth;
    /* bf16 products (1, 2 as forward): Wtp = W_hhᵀ packed by pack_bf16 (NG 1, U 16); dpb (T, B, K4) every step's
       dPre_t in bf16 (the weight gradients' operand too), K4 = 4H padded by zeros as the forward's Fp */
    int bf16;
    const void *Wtp;
    void *dpb;
    long K4;
    const rk_reg_args *reg; /* or NULL */
} rk_lstm_bwd_args;

/* GRU, both forms. reset_after (torch's): n = act(W_in x + b_in + r ⊙ (W_hn h + b_hn)); HN (T, B, H) keeps
   W_hn h + b_hn. Reset before (Cho et al. 2014): n = act(W_in x + b_in + W_hn (r ⊙ h) + b_hn); HN keeps r ⊙ h.
   Wp packs W_hh's three gates (reset_after) or its r, z rows (reset before, with Wnp the n rows).
   G (T, B, 3H) = r, z, n, or NULL; scratch (B, 4H) is used in its place when G or HN is NULL. */
typedef struct {
    long T, B, H, F;
    int act, rec_act, reset_after;
    const void *x, *Wxp, *Wp, *Wnp;
    const void *bih, *bhh; /* (3H) each, or NULL */
    const int64_t *len;
    const void *h0;
    void *Hs, *G, *HN, *scratch;
    int nth;
    /* bf16 products (reset after only; 1: vdpbf16ps, 2: AMX), as the LSTM's: xb, hb, Fp, Hp */
    int bf16;
    long Fp, Hp;
    const void *xb;
    void *hb;
    const rk_reg_args *reg; /* or NULL */
} rk_gru_fwd_args;

/* Backward: Hs is (T + 1, B, H) = h_0 … h_T. Out: dh = dL/dh_0; dPre (T, B, 3H) = dL/d(W_ih x + b_ih);
   dHH (T, B, 3H) = dL/d(W_hh h + b_hh) (reset_after) — reset before needs no dHH: dW_hh comes from dPre,
   h and r ⊙ h; db_ih, db_hh accumulated; drh (B, H) scratch. */
typedef struct {
    long T, B, H;
    int act, rec_act, reset_after, need_dh0;
    const void *G, *HN, *Hs;
    const void *W; /* W_hh (3H × ldw) */
    long ldw;
    const int64_t *len;
    const void *gout, *gG;
    void *dh, *dh2, *dPre, *dHH, *db_ih, *db_hh, *drh;
    int nth;
    /* bf16 products (reset after only), as the LSTM's: Wtp = W_hhᵀ packed, dpb (T, B, K3) every step's dHH_t and
       dpx (T, B, 3H) its dPre_t, both in bf16 — then dPre and dHH are NULL */
    int bf16;
    const void *Wtp;
    void *dpb;
    long K3;
    void *dpx;
    const rk_reg_args *reg; /* or NULL */
} rk_gru_bwd_args;

/* Elman: h_t = act(W_ih x_t + W_hh h_{t-1} + bias). Hs: forward (T, B, H); backward (T + 1, B, H). */
typedef struct {
    long T, B, H, F;
    int act;
    const void *x, *Wxp, *Wp, *bias;
    const int64_t *len;
    const void *h0;
    void *Hs;
    int nth;
    const rk_reg_args *reg; /* or NULL */
} rk_elman_fwd_args;

typedef struct {
    long T, B, H;
    int act, need_dh0;
    const void *Hs, *W;
    long ldw;
    const int64_t *len;
    const void *gout;
    void *dh, *dh2, *dPre, *db;
    int nth;
    const rk_reg_args *reg; /* or NULL */
} rk_elman_bwd_args;

/* Jordan: h_t = act(W_ih x_t + W_yh y_{t-1} + bias), y_t = out_act(W_hy h_t + b_hy); the state is y (O).
   Ys: forward (T, B, O), backward (T + 1, B, O); Hh (T, B, H) the hidden layers; gH (T, B, H) = dL/dh_t
   from outside (the gates), or NULL. */
typedef struct {
    long T, B, H, O, F;
    int act, out_act;
    const void *x, *Wxp, *Wyp, *Whp, *bias, *bias_hy;
    const int64_t *len;
    const void *y0;
    void *Ys, *Hh;
    int nth;
    const rk_reg_args *reg; /* or NULL */
} rk_jordan_fwd_args;

typedef struct {
    long T, B, H, O;
    int act, out_act, need_dy0;
    const void *Ys, *Hh, *W_yh, *W_hy; /* W_yh (H × ldy), W_hy (O × ldh) */
    long ldy, ldh;
    const int64_t *len;
    const void *gout, *gH;
    void *dy, *dy2, *dh, *dPre, *dPreY, *db, *db_hy;
    int nth;
    const rk_reg_args *reg; /* or NULL */
} rk_jordan_bwd_args;

/* IndRNN (Li et al. 2018): h_t = act(XW_t + u ⊙ h_{t-1}), XW (T, B, H) = W_ih x + b_ih + b_hh (one GEMM before),
   u (H). Hs (T + 1, B, H): row 0 = h_0 (the caller's), the kernel writes rows 1..T. Backward: gout (T, B, H)
   = dL/dh_t (t = 1 … T) from outside; out dPre (T, B, H), dh (B, H) = dL/dh_0 through the recurrence (the caller
   adds the initial state's own gradient), du (nth, H) per-thread partial sums, zeroed by the caller. */
typedef struct {
    long T, B, H;
    int act;
    const void *xw, *u;
    const int64_t *len;
    void *Hs;
    int nth;
} rk_indrnn_fwd_args;

typedef struct {
    long T, B, H;
    int act;
    const void *Hs, *u;
    const int64_t *len;
    const void *gout;
    void *dPre, *dh, *du;
    int nth;
} rk_indrnn_bwd_args;

/* Layer-normalised LSTM (NG = 4) and GRU (NG = 3, reset after the product), lnorm.h. zx (T, B, NG·H) = W_ih x of
   every step (one GEMM by the caller); ax, bx = α_x, β_x (NG·H, bx may be NULL); Wp: W_hh packed (NG gates, VL
   units); bhh = β_h (NG·H) or NULL, ah = α_h (NG·H), ac = α_c and bc = β_c (H, bc may be NULL; LSTM). Forward
   writes Hs (T, B, H) = h_1 … h_T, Cs (T, B, H) = c_1 … c_T (LSTM), G (T, B, NG·H) the activated gates, Yh (T,
   B, NG·H) the normalised W_hh h_{t-1} (keep = 0: a (B, NG·H) scratch), Rh (T, B) its 1/σ, Mx, Rx (T, B) the
   mean and 1/σ of W_ih x, Mc, Rc (T, B) those of c_t (LSTM); all but Hs, Cs and Yh NULL when not kept. */
typedef struct {
    long T, B, H, NG;
    int act, rec_act, keep;
    const void *zx, *ax, *bx, *Wp, *bhh, *ah, *ac, *bc;
    const int64_t *len;
    const void *h0, *c0;
    void *Hs, *Cs, *G, *Yh, *Rh, *Mx, *Rx, *Mc, *Rc;
    int nth;
} rk_ln_fwd_args;

/* Backward: Hs, Cs (T + 1, B, H) = states 0 … T; gout (T, B, H) = dL/dh_t and gC (T, B, H) = dL/dc_t from
   outside (gC, gG (T, B, NG·H) may be NULL); W = W_hh (NG·H × ldw). Out: dZx (T, B, NG·H) = dL/d(W_ih x), dZ =
   dL/d(W_hh h); dh, dc (B, H) = dL/dh_0, dL/dc_0 (start at zero); per thread (nth × 6 × NG·H, zeroed) the sums
   of dL/dα_x, dβ_x, dα_h, dβ_h, dα_c, dβ_c (the last two in their first H); dh2 (B, H) and scratch (nth × 2 ×
   NG·H) scratch. */
typedef struct {
    long T, B, H, NG;
    int act, rec_act, need_dh0;
    const void *G, *Yh, *Rh, *Hs, *Cs, *Mc, *Rc, *Zx, *Mx, *Rx, *W;
    long ldw;
    const void *ax, *bhh, *ah, *ac, *bc;
    const int64_t *len;
    const void *gout, *gC, *gG;
    void *dZx, *dZ, *dh, *dh2, *dc, *sums, *scratch;
    int nth;
} rk_ln_bwd_args;

/* Inverted dropout with a hashed mask: y = x · keep(seed, i) / (1 − p), 0 < p < 1. */
typedef struct {
    long n;
    const void *x;
    void *y;
    uint64_t seed;
    double p;
    int nth;
} rk_dropout_args;

/* Weight gradients in bf16 (bf16.h): rowpairs lays a K × N matrix (float or bf16, row stride ld) out as KK = ⌈K/2⌉
   rows of bf16 pairs (rows 2kk, 2kk + 1) in panels of P columns, N padded to Np (a multiple of P, P of 16);
   gemm_pairs computes C (M × N floats) = Dᵀ X from D (K × M) in panels of 64 and X (K × N) in one panel (Np). */
typedef struct {
    long K, N, Np, P, ld;
    int bf16; /* src holds bf16 (else float) */
    const void *src;
    uint16_t *out;
    int nth;
} rk_rowpairs_args;

typedef struct {
    long M, N, KK, Np;
    const uint16_t *D, *X;
    float *C;
    long ldc;
    int nth;
} rk_gemm_pairs_args;

typedef struct {
    const char *isa;
    int vector_bytes; /* bytes per vector: the width of a block of units (VL = vector_bytes / sizeof(real)) */
    int (*gemm)(const rk_gemm_args *);
    void (*pack)(const rk_pack_args *);
    void (*lstm_fwd)(const rk_lstm_fwd_args *);
    void (*lstm_bwd)(const rk_lstm_bwd_args *);
    void (*gru_fwd)(const rk_gru_fwd_args *);
    void (*gru_bwd)(const rk_gru_bwd_args *);
    void (*elman_fwd)(const rk_elman_fwd_args *);
    void (*elman_bwd)(const rk_elman_bwd_args *);
    void (*jordan_fwd)(const rk_jordan_fwd_args *);
    void (*jordan_bwd)(const rk_jordan_bwd_args *);
    void (*dropout)(const rk_dropout_args *);
    void (*pack_bf16)(const rk_pack_args *); /* NULL where this build has no bf16 products (bf16.h) */
    double (*peak)(long iters, int nth);      /* flops of a pure multiply-add loop (gemm.h) */
    long (*take_waited_ns)(void);             /* barrier waiting past the spinning since the last call, ns (pool.h) */
    void (*indrnn_fwd)(const rk_indrnn_fwd_args *);
    void (*indrnn_bwd)(const rk_indrnn_bwd_args *);
    void (*ln_fwd)(const rk_ln_fwd_args *);   /* layer-normalised LSTM and GRU (lnorm.h) */
    void (*ln_bwd)(const rk_ln_bwd_args *);
    void (*rowpairs)(const rk_rowpairs_args *); /* bf16 weight gradients (bf16.h); NULL as pack_bf16 */
    void (*gemm_pairs)(const rk_gemm_pairs_args *);
} rk_kernels;

/* One per compiled instruction set: [0] float, [1] double. */
const rk_kernels *rk_kernels_avx512(void);
const rk_kernels *rk_kernels_avx2(void);
const rk_kernels *rk_kernels_generic(void);

#ifdef __cplusplus
}
#endif
#endif
