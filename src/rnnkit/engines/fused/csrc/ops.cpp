// The C kernels (kernels.c, one build per instruction set) as torch operators in the namespace rnnkit_c.
//
// These are the fused engine's raw kernels: each checks its tensors (dtype, device, shapes — one-line
// ValueError / TypeError, never a crash in the C code), allocates its outputs and calls the kernel table of
// the instruction set picked at load time. rnnkit/engines/fused/specs.py composes them into the public,
// differentiable operator rnnkit::sequence (rnnkit/engines/fused/ops.py). Layouts: see rnnkit_c.h.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <vector>

#include "rnnkit_c.h"

namespace {

using at::Tensor;
using c10::optional;

const rk_kernels *g_tables = nullptr;  // [0] float, [1] double, of the selected instruction set

bool cpu_has(const std::string &isa) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (isa == "avx512")
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("fma");
    if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return isa == "generic";
}

const rk_kernels *tables_for(const std::string &isa) {
#ifdef RK_HAVE_AVX512
    if (isa == "avx512") return rk_kernels_avx512();
#endif
#ifdef RK_HAVE_AVX2
    if (isa == "avx2") return rk_kernels_avx2();
#endif
    if (isa == "generic") return rk_kernels_generic();
    return nullptr;
}

// Pick the kernels: `isa` names one ("avx512", "avx2", "generic"), or "" for the best this CPU runs.
std::string select_isa(std::string isa) {
    if (isa.empty()) {
        for (const char *cand : {"avx512", "avx2", "generic"})
            if (cpu_has(cand) && tables_for(cand)) {
                isa = cand;
                break;
            }
    }
    TORCH_CHECK_VALUE(isa == "avx512" || isa == "avx2" || isa == "generic",
                      "unknown instruction set '", isa, "': use avx512, avx2 or generic");
    TORCH_CHECK_VALUE(tables_for(isa) != nullptr, "rnnkit's kernels were not built for ", isa,
                      " on this machine: use generic");
    TORCH_CHECK_VALUE(cpu_has(isa), "this CPU cannot run the ", isa, " kernels: use generic");
    g_tables = tables_for(isa);
    return isa;
}

const rk_kernels &kernels(const Tensor &like) {
    if (!g_tables) select_isa("");
    return g_tables[like.scalar_type() == at::kDouble ? 1 : 0];
}

std::string info();

// Which bf16 products run here (bf16.h): 2 = AMX tiles, 1 = vdpbf16ps, 0 = none. AMX needs the CPU's tiles and the
// kernel's permission to use their state (Linux: arch_prctl, once per process; torch's oneDNN asks for it too).
// RNNKIT_BF16=dot keeps vdpbf16ps where AMX exists (tests compare the two).
int64_t bf16_mode() {
    static int64_t mode = -1;
    if (mode >= 0) return mode;
    const rk_kernels &k = kernels(at::empty({0}));
    mode = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (k.pack_bf16 != nullptr && __builtin_cpu_supports("avx512bf16")) mode = 1;
    const char *force = std::getenv("RNNKIT_BF16");
    const bool dot_only = force && std::string(force) == "dot";
#if defined(__linux__)
    if (mode == 1 && !dot_only && __builtin_cpu_supports("amx-bf16") && __builtin_cpu_supports("amx-tile") &&
        syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0)
        mode = 2;
#endif
#endif
    return mode;
}

bool bf16_products() { return bf16_mode() > 0; }

// Operand rows and packed weights pad k to this many values: pairs for vdpbf16ps, tiles of 32 for AMX.
int64_t bf16_kmult() { return bf16_mode() == 2 ? 32 : 2; }
int64_t kpad(int64_t K) { return (K + bf16_kmult() - 1) / bf16_kmult() * bf16_kmult(); }

void check_bf16_products() {
    TORCH_CHECK_VALUE(bf16_products(), "rnnkit kernels: bf16 products need AVX512_BF16 and the avx512 kernels (",
                      info(), "); run in float32 instead");
}

std::string info() {
    const rk_kernels &k = kernels(at::empty({0}));
    return std::string(k.isa) + " (vectors of " + std::to_string(k.vector_bytes) + " bytes)";
}

// Until when kernels run on one thread because their threads kept waiting for each other (see timed()).
std::chrono::steady_clock::time_point g_alone_until;

// Threads for a kernel: torch's setting, or one while the machine is too busy for our threads to meet (every
// parallel region ends with all its threads meeting, the GEMM's and the packing's included).
int threads() { return std::chrono::steady_clock::now() < g_alone_until ? 1 : at::get_num_threads(); }

// Threads for a sequence kernel whose steps each multiply-add `macs` times: the threads meet once or twice per
// step, and below ~2^18 multiply-adds per step (one token of a 256-unit GRU at batch 1) a second thread saves
// less than the meeting costs — and on a busy machine, where the partner may be descheduled, far less.
int64_t g_min_step_macs = int64_t(1) << 18;
int step_threads(int64_t macs) { return macs < g_min_step_macs ? 1 : threads(); }

// Run a sequence kernel `run()` on `nth` threads, timed: if its threads spent more than a quarter of its time
// waiting for each other past their spinning (a partner thread was descheduled), and so did the kernel before it,
// run the next second of kernels on one thread — a per-step meeting with a thread that is not running costs up to
// a scheduler time slice each time. On a busy 2-core machine (another process holds a core) every kernel waits,
// and one thread keeps most of one core's speed instead of falling to a fraction of it. A single kernel that
// waited is not enough: in a VM the host takes a vCPU away now and then for a few ms, and a quiet-machine
// d2l LSTM step then spent half its kernels in the one-thread second (measured on a Zen 4 VM: 1.26-1.53x
// torch.nn.LSTM's time instead of 0.98-1.10x; with one core busy, the same kept speed either way).
std::atomic<int> g_waited_in_a_row{0};

template <class F>
void timed(const rk_kernels &k, int nth, F &&run) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    if (nth <= 1) return;
    const auto now = std::chrono::steady_clock::now();
    const long wall = (long)std::chrono::duration_cast<std::chrono::nanoseconds>(now - t0).count();
    if (k.take_waited_ns() * 4 <= wall) {
        g_waited_in_a_row = 0;
    } else if (++g_waited_in_a_row >= 2) {
        g_alone_until = now + std::chrono::seconds(1);
        g_waited_in_a_row = 0;
    }
}

// Set that threshold (tests set 0 to run small problems on every thread); returns the previous one.
int64_t set_min_step_work(int64_t macs) {
    const int64_t before = g_min_step_macs;
    g_min_step_macs = macs;
    return before;
}

// The machine's peak in flop/s for `dtype` ("float32" / "float64") on the torch threads: a pure multiply-add
// loop, timed over about `seconds`.
double peak_flops(const std::string &dtype, double seconds) {
    const rk_kernels &k = kernels(at::empty({0}, dtype == "float64" ? at::kDouble : at::kFloat));
    long iters = 1000;
    for (;;) {
        const auto t0 = std::chrono::steady_clock::now();
        const double flops = k.peak(iters, threads());
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (dt >= seconds || iters > (1L << 40)) return flops / dt;
        iters *= dt > 0 ? std::min(16.0, std::max(2.0, 1.2 * seconds / dt)) : 16;
    }
}

// ---- checks --------------------------------------------------------------------------------------------
void check_real(const Tensor &t, const char *what) {
    TORCH_CHECK_VALUE(t.device().is_cpu(), "rnnkit kernels: ", what, " is on ", t.device(),
                      "; the C kernels run on the CPU");
    TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "rnnkit kernels: ", what,
                     " has dtype ", t.scalar_type(), "; the C kernels take float32 or float64");
}

void check_same(const Tensor &t, const Tensor &ref, const char *what) {
    check_real(t, what);
    TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), "rnnkit kernels: ", what, " has dtype ", t.scalar_type(),
                     " but the input is ", ref.scalar_type());
}

void check_shape(const Tensor &t, at::IntArrayRef want, const char *what) {
    TORCH_CHECK_VALUE(t.sizes() == want, "rnnkit kernels: expected ", what, " of shape ", want, ", got ", t.sizes());
}

// A contiguous tensor of `ref`'s type (a copy only if needed), checked.
Tensor input(const Tensor &t, const Tensor &ref, const char *what) {
    check_same(t, ref, what);
    return t.contiguous();
}

Tensor opt(const optional<Tensor> &t, const Tensor &ref, const char *what, at::IntArrayRef shape) {
    if (!t.has_value() || !t->defined()) return Tensor();
    check_shape(*t, shape, what);
    return input(*t, ref, what);
}

const void *ptr(const Tensor &t) { return t.defined() && t.numel() ? t.data_ptr() : nullptr; }
void *mptr(const Tensor &t) { return t.defined() && t.numel() ? t.data_ptr() : nullptr; }

// Lengths (B,) int64 in [0, T] (0: an empty sequence keeps its initial state), or an undefined tensor.
Tensor lengths(const optional<Tensor> &len, int64_t T, int64_t B) {
    if (!len.has_value() || !len->defined()) return Tensor();
    TORCH_CHECK_TYPE(len->scalar_type() == at::kLong && len->device().is_cpu(),
                     "rnnkit kernels: lengths must be int64 on the CPU, got ", len->scalar_type(), " on ",
                     len->device());
    check_shape(*len, {B}, "lengths");
    Tensor l = len->contiguous();
    const int64_t *p = l.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; b++)
        TORCH_CHECK_VALUE(p[b] >= 0 && p[b] <= T, "rnnkit kernels: lengths must lie in [0, T=", T, "], got ", p[b]);
    return l;
}

// The gradient of a state sequence (T + 1, B, n) — or of its rows 1..T alone, (T, B, n): the layer's output, whose
// gradient autograd then hands over as it is instead of zero-filling T + 1 rows and copying it in (under a competing
// load those two parallel passes cost more than the kernels). The kernels read rows 1..T (`rows`); row 0, the
// initial state's own gradient, is `first` when given (the caller adds it to dh0).
struct StateGrad {
    Tensor g, first;  // g: the contiguous gradient `rows` points into (held here so that it outlives the kernel)
    const char *rows;
};

StateGrad state_grad(const Tensor &g_, const Tensor &ref, int64_t T, int64_t B, int64_t n, const char *what) {
    const bool full = g_.dim() == 3 && g_.size(0) == T + 1;
    TORCH_CHECK_VALUE(g_.dim() == 3 && (full || g_.size(0) == T) && g_.size(1) == B && g_.size(2) == n,
                      "rnnkit kernels: expected ", what, " of shape (", T + 1, ", ", B, ", ", n, ") or (", T, ", ", B,
                      ", ", n, "), got ", g_.sizes());
    const Tensor g = input(g_, ref, what);
    const char *rows = (const char *)ptr(g);
    if (full && rows) rows += B * n * g.element_size();
    return {g, full ? g.select(0, 0) : Tensor(), rows};
}

void add_first(Tensor &d, const StateGrad &g) {
    if (g.first.defined()) d.add_(g.first);  // Hs[0] is the initial state itself
}

const int64_t *lptr(const Tensor &l) { return l.defined() ? l.data_ptr<int64_t>() : nullptr; }

int64_t vl(const Tensor &like) { return kernels(like).vector_bytes / like.element_size(); }

// Packed panels of W for the number of gates and units per panel the kernel expects: size check only.
void check_packed(const Tensor &Wp, const Tensor &ref, int64_t ng, int64_t units, int64_t H, int64_t K,
                  const char *what) {
    check_same(Wp, ref, what);
    TORCH_CHECK_VALUE(Wp.is_contiguous() && Wp.dim() == 1, "rnnkit kernels: ", what, " must come from rnnkit_c::pack");
    const int64_t want = (H + units - 1) / units * K * ng * units;
    TORCH_CHECK_VALUE(Wp.numel() == want, "rnnkit kernels: ", what, " holds ", Wp.numel(), " values, expected ", want,
                      " (packed for another shape or instruction set?)");
}

void check_packed_bf16(const Tensor &Wp, int64_t ng, int64_t units, int64_t H, int64_t K, const char *what) {
    TORCH_CHECK_TYPE(Wp.scalar_type() == at::kBFloat16, "rnnkit kernels: ", what, " must come from rnnkit_c::pack_bf16");
    TORCH_CHECK_VALUE(Wp.is_contiguous() && Wp.dim() == 1, "rnnkit kernels: ", what, " must come from rnnkit_c::pack_bf16");
    const int64_t want = (H + units - 1) / units * (kpad(K) / 2) * ng * units * 2;
    TORCH_CHECK_VALUE(Wp.numel() == want, "rnnkit kernels: ", what, " holds ", Wp.numel(), " values, expected ", want);
}

// W with its columns padded to a whole number of vectors: the backward's products read whole vectors.
Tensor padded(const Tensor &W) {
    const int64_t v = vl(W), K = W.size(1), pad = (v - K % v) % v;
    if (pad == 0) return W.contiguous();
    Tensor out = at::zeros({W.size(0), K + pad}, W.options());
    out.narrow(1, 0, K).copy_(W);
    return out;
}

// (T + 1, B, S) with [0] = the initial state: the kernels write [1:], the backward reads [:T] as h_{t-1}.
Tensor states(const Tensor &s0, int64_t T) {
    Tensor out = at::empty({T + 1, s0.size(0), s0.size(1)}, s0.options());
    out.select(0, 0).copy_(s0);
    return out;
}

Tensor none_like(const Tensor &like) { return at::empty({0}, like.options()); }

// The regularisers inside the time loop (rk_reg_args, reg.h). zone: float64 (p_h, p_c, train, key_h, key_c) —
// zoneout's probabilities on h and c, whether the masks are drawn (training) or the expectation is taken, and
// the hash keys (32-bit integers) —, or undefined; rmask (B, S): recurrent-dropout multipliers, or undefined.
// h0 (forward): the ring of masked states starts with h0 ⊙ rmask; scratch (backward): the GRU's dhd.
struct Reg {
    rk_reg_args a{};
    Tensor rmask, hd, dhd;
    bool on = false;
    const rk_reg_args *ptr() const { return on ? &a : nullptr; }
};

Reg regularisers(const optional<Tensor> &zone, const optional<Tensor> &rmask, const Tensor &like, int64_t B, int64_t S,
                 const Tensor *h0, bool scratch) {
    Reg r;
    if (zone.has_value() && zone->defined() && zone->numel()) {
        TORCH_CHECK_VALUE(zone->numel() == 5 && zone->scalar_type() == at::kDouble && zone->device().is_cpu(),
                          "rnnkit kernels: zone must hold 5 float64 values (p_h, p_c, train, key_h, key_c)");
        const Tensor z = zone->contiguous();
        const double *v = z.data_ptr<double>();
        for (int k = 0; k < 2; k++) {
            TORCH_CHECK_VALUE(v[k] >= 0 && v[k] < 1, "rnnkit kernels: zoneout must be in [0, 1), got ", v[k]);
            r.a.p[k] = v[k];
            r.a.thr[k] = (uint32_t)(v[k] * 4294967296.0);  // as rnnkit.regularisers.threshold
            r.a.key[k] = (uint32_t)v[3 + k];
        }
        r.a.train = v[2] != 0;
        r.on = true;
    }
    if (rmask.has_value() && rmask->defined() && rmask->numel()) {
        check_shape(*rmask, {B, S}, "rmask");
        r.rmask = input(*rmask, like, "rmask");
        r.a.rmask = r.rmask.data_ptr();
        if (h0) {
            r.hd = at::empty({2, B, S}, like.options());
            r.hd.select(0, 0).copy_(*h0).mul_(r.rmask);
            r.a.hd = r.hd.data_ptr();
        }
        if (scratch) {
            r.dhd = at::empty({B, S}, like.options());
            r.a.dhd = r.dhd.data_ptr();
        }
        r.on = true;
    }
    return r;
}

// ---- operators -----------------------------------------------------------------------------------------
Tensor pack(const Tensor &W, int64_t ngates, bool wide) {
    check_real(W, "W");
    TORCH_CHECK_VALUE(W.dim() == 2 && ngates > 0 && W.size(0) % ngates == 0, "rnnkit kernels: cannot pack W of shape ",
                      W.sizes(), " into ", ngates, " gates");
    const Tensor w = W.contiguous();
    const int64_t H = W.size(0) / ngates, K = W.size(1), U = vl(W) * (wide ? 4 : 1);
    Tensor Wp = at::empty({(H + U - 1) / U * K * ngates * U}, W.options());
    const rk_pack_args a = {ngates, H, K, U, w.data_ptr(), Wp.data_ptr(), threads()};
    kernels(W).pack(&a);
    return Wp;
}

// W (ngates·H × K) packed for bf16 products (bf16.h): panels of `units` units, pairs of k interleaved.
Tensor pack_bf16(const Tensor &W, int64_t ngates, int64_t units) {
    check_bf16_products();
    TORCH_CHECK_TYPE(W.device().is_cpu() && W.scalar_type() == at::kFloat, "rnnkit kernels: pack_bf16 takes float32 "
                     "CPU weights, got ", W.scalar_type(), " on ", W.device());
    TORCH_CHECK_VALUE(W.dim() == 2 && ngates > 0 && W.size(0) % ngates == 0 && units > 0 && units % 16 == 0,
                      "rnnkit kernels: cannot pack W of shape ", W.sizes(), " into ", ngates, " gates of ", units,
                      " units");
    // any strides (a transposed W_hh packs as it is); the packer gathers 16 rows by int32 offsets (≤ 15 · rs)
    const Tensor w = W.stride(0) < (int64_t(1) << 27) ? W : W.contiguous();
    const int64_t H = W.size(0) / ngates, K = W.size(1), KK = kpad(K) / 2;
    Tensor Wp = at::empty({(H + units - 1) / units * KK * ngates * units * 2}, W.options().dtype(at::kBFloat16));
    const rk_pack_args a = {ngates, H, K, units, w.data_ptr(), Wp.data_ptr(), threads(), bf16_kmult(),
                            w.stride(0), w.stride(1)};
    kernels(W).pack_bf16(&a);
    return Wp;
}

// `t` (K × N, float32 or bf16, unit column stride) as rows of bf16 pairs in panels of `panel` columns (0: one
// panel) (rk_rowpairs_args).
Tensor rowpairs(const rk_kernels &k, const Tensor &t, const char *what, int64_t panel) {
    TORCH_CHECK_VALUE(t.dim() == 2 && t.device().is_cpu() &&
                          (t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16),
                      "rnnkit kernels: weight_grads_bf16 takes 2-D float32 or bf16 CPU matrices, got ", what, " of ",
                      t.scalar_type(), " ", t.sizes(), " on ", t.device());
    const Tensor c = t.stride(1) == 1 && t.stride(0) >= t.size(1) ? t : t.contiguous();
    const int64_t K = c.size(0), N = c.size(1), P = panel ? panel : std::max<int64_t>((N + 15) / 16 * 16, 16);
    const int64_t Np = (N + P - 1) / P * P;
    Tensor out = at::empty({(K + 1) / 2 * 2 * Np}, c.options().dtype(at::kBFloat16));
    const rk_rowpairs_args a = {K, N, Np, P, c.stride(0), c.scalar_type() == at::kBFloat16, c.data_ptr(),
                                (uint16_t *)out.data_ptr(), threads()};
    k.rowpairs(&a);
    return out;
}

// dᵀ x (float32) for each x: the weight gradients under bf16 products, rows k = the T·B steps and batch rows, on
// rnnkit's vdpbf16ps microkernel with float32 results (bf16.h). d (K × M) and every x (K × N): float32 or bf16.
std::vector<Tensor> weight_grads_bf16(const Tensor &d, at::TensorList xs) {
    check_bf16_products();
    const rk_kernels &k = kernels(at::empty({0}));
    const Tensor D = rowpairs(k, d, "d", 64);
    const int64_t K = d.size(0), M = d.size(1), KK = (K + 1) / 2;
    std::vector<Tensor> out;
    for (const Tensor &x : xs) {
        TORCH_CHECK_VALUE(x.dim() == 2 && x.size(0) == K, "rnnkit kernels: weight_grads_bf16 needs x with ", K,
                          " rows like d, got ", x.sizes());
        const Tensor X = rowpairs(k, x, "x", 0);
        const int64_t N = x.size(1);
        const auto f32 = d.options().dtype(at::kFloat);
        Tensor C = K > 0 ? at::empty({M, N}, f32) : at::zeros({M, N}, f32);  // every value written, or none
        if (K > 0 && M > 0 && N > 0) {
            const rk_gemm_pairs_args a = {M, N, KK, X.numel() / (2 * KK), (const uint16_t *)D.data_ptr(),
                                          (const uint16_t *)X.data_ptr(), C.data_ptr<float>(), N, threads()};
            k.gemm_pairs(&a);
        }
        out.push_back(C);
    }
    return out;
}

// `t` (…, K) as bf16 with K padded by zeros (kpad): the row layout the bf16 products read.
Tensor to_bf16_pairs(const Tensor &t) {
    const int64_t K = t.size(-1);
    std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
    shape.back() = kpad(K);
    Tensor out = at::zeros(shape, t.options().dtype(at::kBFloat16));
    out.narrow(-1, 0, K).copy_(t);
    return out;
}

// (T, B, n) bf16 rows with n padded by zeros (kpad): where the backward kernels write each step's gate gradients in
// bf16, the operand of their next product and, returned as a (T, B, n) view, of the weight gradients' GEMMs.
Tensor bf16_rows(int64_t T, int64_t B, int64_t n, const Tensor &like) {
    Tensor rows = at::empty({T, B, kpad(n)}, like.options().dtype(at::kBFloat16));
    if (kpad(n) > n) rows.narrow(-1, n, kpad(n) - n).zero_();
    return rows;
}

// a @ b (+ bias) for 2-D tensors of any strides (a transposed view costs nothing).
Tensor gemm(const Tensor &a, const Tensor &b, const optional<Tensor> &bias) {
    check_real(a, "a");
    check_same(b, a, "b");
    TORCH_CHECK_VALUE(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0), "rnnkit kernels: cannot multiply ",
                      a.sizes(), " by ", b.sizes());
    const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
    const Tensor bs = opt(bias, a, "bias", {N});
    Tensor c = at::empty({M, N}, a.options());
    const rk_gemm_args g = {M, N, K, ptr(a), a.stride(0), a.stride(1), ptr(b), b.stride(0), b.stride(1),
                            mptr(c), N, ptr(bs), threads()};
    TORCH_CHECK(kernels(a).gemm(&g) == 0, "rnnkit gemm: out of memory for a packed copy of the right operand");
    return c;
}

Tensor dropout(const Tensor &x, double p, int64_t seed) {
    check_real(x, "x");
    TORCH_CHECK_VALUE(p > 0 && p < 1, "rnnkit kernels: dropout needs 0 < p < 1, got ", p);
    const Tensor xc = x.contiguous();
    Tensor y = at::empty_like(xc);
    const rk_dropout_args a = {xc.numel(), ptr(xc), mptr(y), (uint64_t)seed, p, threads()};
    kernels(x).dropout(&a);
    return y;
}

void check_act(int64_t code, const char *what) {
    TORCH_CHECK_VALUE(code >= RK_IDENTITY && code <= RK_HARD_SIGMOID, "rnnkit kernels: unknown ", what, " code ", code);
}

void check_input(const Tensor &x) {
    check_real(x, "x");
    TORCH_CHECK_VALUE(x.dim() == 3, "rnnkit kernels: expected x of shape (T, B, F), got ", x.sizes());
}

// Where a forward writes its new states. Default: (T + 1, B, ·) buffers it allocates, row 0 the initial state
// (the layer's and the backward's layout). The stepper passes its own (B, ·) rows instead (T = 1): no buffers,
// no copies of the initial state, no gathering of the layers' rows afterwards.
struct Into {
    void *h = nullptr, *c = nullptr;
};

// The new states' destination: `into`'s row, or row 1 of the buffer `s0` starts (allocated here into `buf`).
void *state_rows(const Into *into, void *Into::*which, const Tensor &s0, int64_t T, Tensor &buf) {
    if (into) return into->*which;
    buf = states(s0, T);
    return (char *)buf.data_ptr() + s0.numel() * s0.element_size();
}

std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_fwd_into(const Tensor &x_, const Tensor &Wxp, const Tensor &Wp,
                                                          const optional<Tensor> &Whrp, const optional<Tensor> &bias_,
                                                          const optional<Tensor> &peep_, const optional<Tensor> &len_,
                                                          const Tensor &h0_, const Tensor &c0_, int64_t act,
                                                          int64_t rec, bool keep, bool bf16,
                                                          const optional<Tensor> &zone, const optional<Tensor> &rmask,
                                                          const Into *into) {
    check_input(x_);
    check_act(act, "activation");
    check_act(rec, "recurrent activation");
    const Tensor x = x_.contiguous();
    const int64_t T = x.size(0), B = x.size(1), F = x.size(2), H = c0_.size(-1);
    const bool proj = Whrp.has_value() && Whrp->defined();
    const int64_t S = h0_.size(-1), P = proj ? S : 0, v = vl(x);
    check_shape(c0_, {B, H}, "c0");
    check_shape(h0_, {B, S}, "h0");
    TORCH_CHECK_VALUE(proj || S == H, "rnnkit kernels: h0 has ", S, " features but c0 ", H, " (no projection)");
    const Tensor h0 = input(h0_, x, "h0"), c0 = input(c0_, x, "c0");
    Tensor xb, hb;
    if (bf16) {
        check_bf16_products();
        TORCH_CHECK_VALUE(!proj && x.scalar_type() == at::kFloat, "rnnkit kernels: bf16 products take float32 "
                          "inputs and no projection");
        check_packed_bf16(Wxp, 4, v, H, F, "packed W_ih");
        check_packed_bf16(Wp, 4, v, H, S, "packed W_hh");
        xb = to_bf16_pairs(x);
        hb = at::zeros({2, B, kpad(S)}, x.options().dtype(at::kBFloat16));
        hb.select(0, 0).narrow(-1, 0, S).copy_(h0);
    } else {
        check_packed(Wxp, x, 4, v, H, F, "packed W_ih");
        check_packed(Wp, x, 4, v, H, S, "packed W_hh");
    }
    if (proj) check_packed(*Whrp, x, 1, 4 * v, P, H, "packed W_hr");
    const Tensor bias = opt(bias_, x, "bias", {4 * H}), peep = opt(peep_, x, "peepholes", {3, H});
    const Tensor len = lengths(len_, T, B);
    Tensor Hs, Cs;
    void *hout = state_rows(into, &Into::h, h0, T, Hs), *cout = state_rows(into, &Into::c, c0, T, Cs);
    Tensor G = keep ? at::empty({T, B, 4 * H}, x.options()) : none_like(x);
    Tensor M = proj ? at::empty({T, B, H}, x.options()) : none_like(x);
    const Reg reg = regularisers(zone, rmask, x, B, S, &h0, false);
    if (bf16 && reg.hd.defined()) hb.select(0, 0).narrow(-1, 0, S).copy_(reg.hd.select(0, 0));  // m ⊙ h0
    rk_lstm_fwd_args a = {T, B, H, P, F, (int)act, (int)rec, ptr(x), ptr(Wxp), ptr(Wp),
                                proj ? ptr(*Whrp) : nullptr, ptr(bias), ptr(peep), lptr(len), ptr(h0), ptr(c0),
                                hout, cout, mptr(G), mptr(M), step_threads(B * 4 * H * (F + S) + B * P * H),
                                bf16 ? bf16_mode() : 0, kpad(F), kpad(S), ptr(xb), mptr(hb)};
    a.reg = reg.ptr();
    if (T > 0 && B > 0) timed(kernels(x), a.nth, [&] { kernels(x).lstm_fwd(&a); });
    return {Hs, Cs, G, M};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_fwd(const Tensor &x, const Tensor &Wxp, const Tensor &Wp,
                                                     const optional<Tensor> &Whrp, const optional<Tensor> &bias,
                                                     const optional<Tensor> &peep, const optional<Tensor> &len,
                                                     const Tensor &h0, const Tensor &c0, int64_t act, int64_t rec,
                                                     bool keep, bool bf16, const optional<Tensor> &zone,
                                                     const optional<Tensor> &rmask) {
    return lstm_fwd_into(x, Wxp, Wp, Whrp, bias, peep, len, h0, c0, act, rec, keep, bf16, zone, rmask, nullptr);
}

// dPre (T, B, 4H) first: float32, or with bf16 products the kernel's bf16 rows (all it wrote), as gru_bwd does.
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_bwd(
    const Tensor &G_, const Tensor &Cs_, const Tensor &M_, const Tensor &W_hh, const optional<Tensor> &W_hr,
    const optional<Tensor> &peep_, const optional<Tensor> &len_, const Tensor &gHs_, const optional<Tensor> &gCs_,
    const optional<Tensor> &gG_, int64_t act, int64_t rec, bool need_dh0, bool bf16, const optional<Tensor> &zone,
    const optional<Tensor> &rmask) {
    check_real(G_, "G");
    TORCH_CHECK_VALUE(G_.dim() == 3 && G_.size(2) % 4 == 0, "rnnkit kernels: expected gates of shape (T, B, 4H), got ",
                      G_.sizes());
    const int64_t T = G_.size(0), B = G_.size(1), H = G_.size(2) / 4;
    const bool proj = W_hr.has_value() && W_hr->defined();
    const int64_t S = proj ? W_hr->size(0) : H, P = proj ? S : 0;
    const Tensor G = input(G_, G_, "G");
    check_shape(Cs_, {T + 1, B, H}, "Cs");
    check_shape(W_hh, {4 * H, S}, "W_hh");
    const StateGrad gHs = state_grad(gHs_, G, T, B, S, "the gradient of Hs");
    const Tensor Cs = input(Cs_, G, "Cs"), W = padded(input(W_hh, G, "W_hh"));
    Tensor M, Whr;
    if (proj) {
        check_shape(*W_hr, {P, H}, "W_hr");
        check_shape(M_, {T, B, H}, "M");
        M = input(M_, G, "M");
        Whr = padded(input(*W_hr, G, "W_hr"));
    }
    const Tensor peep = opt(peep_, G, "peepholes", {3, H}), len = lengths(len_, T, B);
    const Tensor gCs = opt(gCs_, G, "the gradient of Cs", {T + 1, B, H}), gG = opt(gG_, G, "the gradient of G", {T, B, 4 * H});
    Tensor dh = at::zeros({B, S}, G.options()), dc = at::zeros({B, H}, G.options());
    Tensor dh2 = at::empty({B, S}, G.options()), dm = at::empty({B, H}, G.options());
    // with bf16 products the kernel writes dPre only in bf16 (all that the weight gradients read)
    Tensor dPre = bf16 ? none_like(G) : at::empty({T, B, 4 * H}, G.options()), db = at::zeros({4 * H}, G.options());
    Tensor dpeep = peep.defined() ? at::zeros({3, H}, G.options()) : none_like(G);
    Tensor dHt = proj ? at::empty({T, B, P}, G.options()) : none_like(G);
    Tensor Wtp, dpb;
    if (bf16) {
        check_bf16_products();
        TORCH_CHECK_VALUE(!proj, "rnnkit kernels: bf16 products take no projection");
        Wtp = pack_bf16(W_hh.t(), 1, 16);
        dpb = bf16_rows(T, B, 4 * H, G);
    }
    const int64_t es = G.element_size();
    const Reg reg = regularisers(zone, rmask, G, B, S, nullptr, false);
    rk_lstm_bwd_args a = {T, B, H, P, (int)act, (int)rec, (int)need_dh0, ptr(G), ptr(Cs), ptr(M), ptr(W),
                                ptr(Whr), W.size(1), proj ? Whr.size(1) : 0, ptr(peep), lptr(len),
                                gHs.rows, gCs.defined() ? (const char *)ptr(gCs) + B * H * es : nullptr,
                                ptr(gG), mptr(dh), mptr(dh2), mptr(dc), mptr(dPre), mptr(db), mptr(dpeep), mptr(dHt),
                                mptr(dm), step_threads(B * 4 * H * S + B * P * H), bf16 ? bf16_mode() : 0, ptr(Wtp),
                                mptr(dpb), bf16 ? kpad(4 * H) : 0};
    a.reg = reg.ptr();
    if (T > 0 && B > 0) timed(kernels(G), a.nth, [&] { kernels(G).lstm_bwd(&a); });
    add_first(dh, gHs);
    if (gCs.defined()) dc.add_(gCs.select(0, 0));
    return {bf16 ? dpb.narrow(-1, 0, 4 * H) : dPre, dh, dc, db, dpeep, dHt};
}

std::tuple<Tensor, Tensor, Tensor> gru_fwd_into(const Tensor &x_, const Tensor &Wxp, const Tensor &Wp,
                                                const optional<Tensor> &Wnp, const optional<Tensor> &bih_,
                                                const optional<Tensor> &bhh_, const optional<Tensor> &len_,
                                                const Tensor &h0_, int64_t act, int64_t rec, bool reset_after,
                                                bool keep, bool bf16, const optional<Tensor> &zone,
                                                const optional<Tensor> &rmask, const Into *into) {
    check_input(x_);
    check_act(act, "activation");
    check_act(rec, "recurrent activation");
    const Tensor x = x_.contiguous();
    const int64_t T = x.size(0), B = x.size(1), F = x.size(2), H = h0_.size(-1), v = vl(x);
    check_shape(h0_, {B, H}, "h0");
    const Tensor h0 = input(h0_, x, "h0");
    Tensor xb, hb;
    if (bf16) {
        check_bf16_products();
        TORCH_CHECK_VALUE(reset_after && x.scalar_type() == at::kFloat, "rnnkit kernels: bf16 products take float32 "
                          "inputs and the reset-after GRU");
        check_packed_bf16(Wxp, 3, v, H, F, "packed W_ih");
        check_packed_bf16(Wp, 3, v, H, H, "packed W_hh");
        xb = to_bf16_pairs(x);
        hb = at::zeros({2, B, kpad(H)}, x.options().dtype(at::kBFloat16));
        hb.select(0, 0).narrow(-1, 0, H).copy_(h0);
    } else {
        check_packed(Wxp, x, 3, v, H, F, "packed W_ih");
        check_packed(Wp, x, reset_after ? 3 : 2, v, H, H, "packed W_hh");
    }
    if (!reset_after) {
        TORCH_CHECK_VALUE(Wnp.has_value() && Wnp->defined(), "rnnkit kernels: the reset-before GRU needs W_hn packed");
        check_packed(*Wnp, x, 1, v, H, H, "packed W_hn");
    }
    const Tensor bih = opt(bih_, x, "b_ih", {3 * H}), bhh = opt(bhh_, x, "b_hh", {3 * H}), len = lengths(len_, T, B);
    Tensor Hs;
    void *hout = state_rows(into, &Into::h, h0, T, Hs);
    Tensor G = keep ? at::empty({T, B, 3 * H}, x.options()) : none_like(x);
    Tensor HN = keep ? at::empty({T, B, H}, x.options()) : none_like(x);
    Tensor scratch = (!keep && !reset_after) ? at::empty({B, 4 * H}, x.options()) : none_like(x);
    const Reg reg = regularisers(zone, rmask, x, B, H, &h0, false);
    if (bf16 && reg.hd.defined()) hb.select(0, 0).narrow(-1, 0, H).copy_(reg.hd.select(0, 0));  // m ⊙ h0
    rk_gru_fwd_args a = {T, B, H, F, (int)act, (int)rec, (int)reset_after, ptr(x), ptr(Wxp), ptr(Wp),
                               reset_after ? nullptr : ptr(*Wnp), ptr(bih), ptr(bhh), lptr(len), ptr(h0),
                               hout, mptr(G), mptr(HN), mptr(scratch),
                               step_threads(B * 3 * H * (F + H)), bf16 ? (int)bf16_mode() : 0, kpad(F), kpad(H),
                               ptr(xb), mptr(hb)};
    a.reg = reg.ptr();
    if (T > 0 && B > 0) timed(kernels(x), a.nth, [&] { kernels(x).gru_fwd(&a); });
    return {Hs, G, HN};
}

std::tuple<Tensor, Tensor, Tensor> gru_fwd(const Tensor &x, const Tensor &Wxp, const Tensor &Wp,
                                           const optional<Tensor> &Wnp, const optional<Tensor> &bih,
                                           const optional<Tensor> &bhh, const optional<Tensor> &len, const Tensor &h0,
                                           int64_t act, int64_t rec, bool reset_after, bool keep, bool bf16,
                                           const optional<Tensor> &zone, const optional<Tensor> &rmask) {
    return gru_fwd_into(x, Wxp, Wp, Wnp, bih, bhh, len, h0, act, rec, reset_after, keep, bf16, zone, rmask, nullptr);
}

// dPre and dHH (T, B, 3H) first: float32, or with bf16 products the kernel's bf16 rows (all it wrote).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> gru_bwd(const Tensor &G_, const Tensor &HN_, const Tensor &Hs_,
                                                           const Tensor &W_hh, const optional<Tensor> &len_,
                                                           const Tensor &gHs_, const optional<Tensor> &gG_, int64_t act,
                                                           int64_t rec, bool reset_after, bool need_dh0, bool bf16,
                                                           const optional<Tensor> &zone, const optional<Tensor> &rmask) {
    check_real(G_, "G");
    TORCH_CHECK_VALUE(G_.dim() == 3 && G_.size(2) % 3 == 0, "rnnkit kernels: expected gates of shape (T, B, 3H), got ",
                      G_.sizes());
    const int64_t T = G_.size(0), B = G_.size(1), H = G_.size(2) / 3;
    const Tensor G = input(G_, G_, "G");
    check_shape(HN_, {T, B, H}, "HN");
    check_shape(Hs_, {T + 1, B, H}, "Hs");
    check_shape(W_hh, {3 * H, H}, "W_hh");
    const Tensor HN = input(HN_, G, "HN"), Hs = input(Hs_, G, "Hs"), W = padded(input(W_hh, G, "W_hh"));
    const StateGrad gHs = state_grad(gHs_, G, T, B, H, "the gradient of Hs");
    const Tensor gG = opt(gG_, G, "the gradient of G", {T, B, 3 * H});
    const Tensor len = lengths(len_, T, B);
    Tensor dh = at::zeros({B, H}, G.options()), dh2 = at::empty({B, H}, G.options());
    // with bf16 products the kernel writes dPre and dHH only in bf16 (all that the products and weight gradients read)
    Tensor dPre = bf16 ? at::empty({T, B, 3 * H}, G.options().dtype(at::kBFloat16)) : at::empty({T, B, 3 * H}, G.options());
    Tensor dHH = reset_after && !bf16 ? at::empty({T, B, 3 * H}, G.options()) : none_like(G);
    Tensor db_ih = at::zeros({3 * H}, G.options()), db_hh = at::zeros({3 * H}, G.options());
    Tensor drh = at::empty({B, H}, G.options());
    Tensor Wtp, dpb;
    if (bf16) {
        check_bf16_products();
        TORCH_CHECK_VALUE(reset_after, "rnnkit kernels: bf16 products take the reset-after GRU");
        Wtp = pack_bf16(W_hh.t(), 1, 16);
        dpb = bf16_rows(T, B, 3 * H, G);
    }
    const Reg reg = regularisers(zone, rmask, G, B, H, nullptr, true);
    rk_gru_bwd_args a = {T, B, H, (int)act, (int)rec, (int)reset_after, (int)need_dh0, ptr(G), ptr(HN), ptr(Hs),
                               ptr(W), W.size(1), lptr(len), gHs.rows,
                               ptr(gG), mptr(dh), mptr(dh2), bf16 ? nullptr : mptr(dPre), mptr(dHH), mptr(db_ih),
                               mptr(db_hh), mptr(drh), step_threads(B * 3 * H * H), bf16 ? (int)bf16_mode() : 0,
                               ptr(Wtp), mptr(dpb), bf16 ? kpad(3 * H) : 0, bf16 ? mptr(dPre) : nullptr};
    a.reg = reg.ptr();
    if (T > 0 && B > 0) timed(kernels(G), a.nth, [&] { kernels(G).gru_bwd(&a); });
    add_first(dh, gHs);
    return {dPre, bf16 ? dpb.narrow(-1, 0, 3 * H) : dHH, dh, db_ih, db_hh};
}

Tensor elman_fwd_into(const Tensor &x_, const Tensor &Wxp, const Tensor &Wp, const optional<Tensor> &bias_,
                      const optional<Tensor> &len_, const Tensor &h0_, int64_t act, const optional<Tensor> &zone,
                      const optional<Tensor> &rmask, const Into *into) {
    check_input(x_);
    check_act(act, "activation");
    const Tensor x = x_.contiguous();
    const int64_t T = x.size(0), B = x.size(1), F = x.size(2), H = h0_.size(-1), v = vl(x);
    check_shape(h0_, {B, H}, "h0");
    const Tensor h0 = input(h0_, x, "h0");
    check_packed(Wxp, x, 1, 4 * v, H, F, "packed W_ih");
    check_packed(Wp, x, 1, 4 * v, H, H, "packed W_hh");
    const Tensor bias = opt(bias_, x, "bias", {H}), len = lengths(len_, T, B);
    Tensor Hs;
    void *hout = state_rows(into, &Into::h, h0, T, Hs);
    const Reg reg = regularisers(zone, rmask, x, B, H, &h0, false);
    rk_elman_fwd_args a = {T, B, H, F, (int)act, ptr(x), ptr(Wxp), ptr(Wp), ptr(bias), lptr(len), ptr(h0),
                           hout, step_threads(B * H * (F + H))};
    a.reg = reg.ptr();
    if (T > 0 && B > 0) timed(kernels(x), a.nth, [&] { kernels(x).elman_fwd(&a); });
    return Hs;
}

Tensor elman_fwd(const Tensor &x, const Tensor &Wxp, const Tensor &Wp, const optional<Tensor> &bias,
                 const optional<Tensor> &len, const Tensor &h0, int64_t act, const optional<Tensor> &zone,
                 const optional<Tensor> &rmask) {
    return elman_fwd_into(x, Wxp, Wp, bias, len, h0, act, zone, rmask, nullptr);
}

std::tuple<Tensor, Tensor, Tensor> elman_bwd(const Tensor &Hs_, const Tensor &W_hh, const optional<Tensor> &len_,
                                             const Tensor &gHs_, int64_t act, bool need_dh0,
                                             const optional<Tensor> &zone, const optional<Tensor> &rmask) {
    check_real(Hs_, "Hs");
    TORCH_CHECK_VALUE(Hs_.dim() == 3 && Hs_.size(0) >= 1, "rnnkit kernels: expected Hs of shape (T + 1, B, H), got ",
                      Hs_.sizes());
    const int64_t T = Hs_.size(0) - 1, B = Hs_.size(1), H = Hs_.size(2);
    check_shape(W_hh, {H, H}, "W_hh");
    const Tensor Hs = input(Hs_, Hs_, "Hs"), W = padded(input(W_hh, Hs, "W_hh"));
    const StateGrad gHs = state_grad(gHs_, Hs, T, B, H, "the gradient of Hs");
    const Tensor len = lengths(len_, T, B);
    Tensor dh = at::zeros({B, H}, Hs.options()), dh2 = at::empty({B, H}, Hs.options());
    Tensor dPre = at::empty({T, B, H}, Hs.options()), db = at::zeros({H}, Hs.options());
    const Reg reg = regularisers(zone, rmask, Hs, B, H, nullptr, false);
    rk_elman_bwd_args a = {T, B, H, (int)act, (int)need_dh0, ptr(Hs), ptr(W), W.size(1), lptr(len),
                           gHs.rows, mptr(dh), mptr(dh2), mptr(dPre),
                           mptr(db), step_threads(B * H * H)};
    a.reg = reg.ptr();
    if (T > 0 && B > 0) timed(kernels(Hs), a.nth, [&] { kernels(Hs).elman_bwd(&a); });
    add_first(dh, gHs);
    return {dPre, dh, db};
}

// IndRNN: xw = W_ih x + b for all steps (the caller's GEMM); the kernel runs the elementwise recurrence.
Tensor indrnn_fwd(const Tensor &xw_, const Tensor &u_, const optional<Tensor> &len_, const Tensor &h0_, int64_t act) {
    check_input(xw_);
    check_act(act, "activation");
    const Tensor xw = xw_.contiguous();
    const int64_t T = xw.size(0), B = xw.size(1), H = xw.size(2);
    check_shape(u_, {H}, "u (weight_hh)");
    check_shape(h0_, {B, H}, "h0");
    const Tensor u = input(u_, xw, "u"), h0 = input(h0_, xw, "h0"), len = lengths(len_, T, B);
    Tensor Hs = states(h0, T);
    const rk_indrnn_fwd_args a = {T, B, H, (int)act, ptr(xw), ptr(u), lptr(len), mptr(Hs),
                                  step_threads(T * B * H)};
    if (T > 0 && B > 0 && H > 0) kernels(xw).indrnn_fwd(&a);
    return Hs;
}

std::tuple<Tensor, Tensor, Tensor> indrnn_bwd(const Tensor &Hs_, const Tensor &u_, const optional<Tensor> &len_,
                                              const Tensor &gHs_, int64_t act) {
    check_real(Hs_, "Hs");
    check_act(act, "activation");
    TORCH_CHECK_VALUE(Hs_.dim() == 3 && Hs_.size(0) >= 1, "rnnkit kernels: expected Hs of shape (T + 1, B, H), got ",
                      Hs_.sizes());
    const int64_t T = Hs_.size(0) - 1, B = Hs_.size(1), H = Hs_.size(2);
    check_shape(u_, {H}, "u (weight_hh)");
    const Tensor Hs = input(Hs_, Hs_, "Hs"), u = input(u_, Hs, "u");
    const StateGrad gHs = state_grad(gHs_, Hs, T, B, H, "the gradient of Hs");
    const Tensor len = lengths(len_, T, B);
    const int nth = step_threads(T * B * H);
    Tensor dh = at::zeros({B, H}, Hs.options()), dPre = at::empty({T, B, H}, Hs.options());
    Tensor du = at::zeros({nth, H}, Hs.options());
    const rk_indrnn_bwd_args a = {T, B, H, (int)act, ptr(Hs), ptr(u), lptr(len), gHs.rows, mptr(dPre), mptr(dh),
                                  mptr(du), nth};
    if (T > 0 && B > 0 && H > 0) kernels(Hs).indrnn_bwd(&a);
    add_first(dh, gHs);
    return {dPre, dh, du.sum(0)};
}

std::tuple<Tensor, Tensor> jordan_fwd_into(const Tensor &x_, const Tensor &Wxp, const Tensor &Wyp, const Tensor &Whp,
                                           const optional<Tensor> &bias_, const optional<Tensor> &bhy_,
                                           const optional<Tensor> &len_, const Tensor &y0_, int64_t H, int64_t act,
                                           int64_t out_act, const optional<Tensor> &zone,
                                           const optional<Tensor> &rmask, const Into *into) {
    check_input(x_);
    check_act(act, "activation");
    check_act(out_act, "output activation");
    const Tensor x = x_.contiguous();
    const int64_t T = x.size(0), B = x.size(1), F = x.size(2), O = y0_.size(-1), v = vl(x);
    check_shape(y0_, {B, O}, "y0");
    const Tensor y0 = input(y0_, x, "y0");
    check_packed(Wxp, x, 1, 4 * v, H, F, "packed W_ih");
    check_packed(Wyp, x, 1, 4 * v, H, O, "packed W_yh");
    check_packed(Whp, x, 1, 4 * v, O, H, "packed W_hy");
    const Tensor bias = opt(bias_, x, "bias", {H}), bhy = opt(bhy_, x, "b_hy", {O}), len = lengths(len_, T, B);
    Tensor Ys, Hh = at::empty({T, B, H}, x.options());
    void *yout = state_rows(into, &Into::h, y0, T, Ys);
    const Reg reg = regularisers(zone, rmask, x, B, O, &y0, false);
    rk_jordan_fwd_args a = {T, B, H, O, F, (int)act, (int)out_act, ptr(x), ptr(Wxp), ptr(Wyp), ptr(Whp),
                                  ptr(bias), ptr(bhy), lptr(len), ptr(y0), yout,
                                  mptr(Hh), step_threads(B * H * (F + 2 * O))};
    a.reg = reg.ptr();
    if (T > 0 && B > 0) timed(kernels(x), a.nth, [&] { kernels(x).jordan_fwd(&a); });
    return {Ys, Hh};
}

std::tuple<Tensor, Tensor> jordan_fwd(const Tensor &x, const Tensor &Wxp, const Tensor &Wyp, const Tensor &Whp,
                                      const optional<Tensor> &bias, const optional<Tensor> &bhy,
                                      const optional<Tensor> &len, const Tensor &y0, int64_t H, int64_t act,
                                      int64_t out_act, const optional<Tensor> &zone, const optional<Tensor> &rmask) {
    return jordan_fwd_into(x, Wxp, Wyp, Whp, bias, bhy, len, y0, H, act, out_act, zone, rmask, nullptr);
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> jordan_bwd(const Tensor &Ys_, const Tensor &Hh_, const Tensor &W_yh,
                                                              const Tensor &W_hy, const optional<Tensor> &len_,
                                                              const Tensor &gYs_, const optional<Tensor> &gHh_,
                                                              int64_t act, int64_t out_act, bool need_dy0,
                                                              const optional<Tensor> &zone,
                                                              const optional<Tensor> &rmask) {
    check_real(Hh_, "Hh");
    TORCH_CHECK_VALUE(Hh_.dim() == 3 && Ys_.dim() == 3, "rnnkit kernels: expected Hh (T, B, H) and Ys (T + 1, B, O)");
    const int64_t T = Hh_.size(0), B = Hh_.size(1), H = Hh_.size(2), O = Ys_.size(2);
    check_shape(Ys_, {T + 1, B, O}, "Ys");
    check_shape(W_yh, {H, O}, "W_yh");
    check_shape(W_hy, {O, H}, "W_hy");
    const Tensor Hh = input(Hh_, Hh_, "Hh"), Ys = input(Ys_, Hh, "Ys");
    const StateGrad gYs = state_grad(gYs_, Hh, T, B, O, "the gradient of Ys");
    const Tensor Wy = padded(input(W_yh, Hh, "W_yh")), Wh = padded(input(W_hy, Hh, "W_hy"));
    const Tensor gHh = opt(gHh_, Hh, "the gradient of Hh", {T, B, H}), len = lengths(len_, T, B);
    Tensor dy = at::zeros({B, O}, Hh.options()), dy2 = at::empty({B, O}, Hh.options()), dh = at::empty({B, H}, Hh.options());
    Tensor dPre = at::empty({T, B, H}, Hh.options()), dPreY = at::empty({T, B, O}, Hh.options());
    Tensor db = at::zeros({H}, Hh.options()), db_hy = at::zeros({O}, Hh.options());
    const Reg reg = regularisers(zone, rmask, Hh, B, O, nullptr, false);
    rk_jordan_bwd_args a = {T, B, H, O, (int)act, (int)out_act, (int)need_dy0, ptr(Ys), ptr(Hh), ptr(Wy), ptr(Wh),
                                  Wy.size(1), Wh.size(1), lptr(len), gYs.rows,
                                  ptr(gHh), mptr(dy), mptr(dy2), mptr(dh), mptr(dPre), mptr(dPreY), mptr(db),
                                  mptr(db_hy), step_threads(B * H * 2 * O)};
    a.reg = reg.ptr();
    if (T > 0 && B > 0) timed(kernels(Hh), a.nth, [&] { kernels(Hh).jordan_bwd(&a); });
    add_first(dy, gYs);
    return {dPre, dPreY, dy, db, db_hy};
}

// Layer-normalised LSTM (c0 given: 4 gates) and GRU (3 gates), from zx = W_ih x of every step (lnorm.h). The
// threads split the units for the products and the rows for the layer norms: at most one per row.
int ln_threads(int64_t B, int64_t macs) { return (int)std::max<int64_t>(1, std::min<int64_t>(step_threads(macs), B)); }

std::vector<Tensor> ln_fwd(const Tensor &zx_, const Tensor &ax_, const optional<Tensor> &bx_, const Tensor &Wp,
                           const optional<Tensor> &bhh_, const Tensor &ah_, const optional<Tensor> &ac_,
                           const optional<Tensor> &bc_, const optional<Tensor> &len_, const Tensor &h0_,
                           const optional<Tensor> &c0_, int64_t act, int64_t rec, bool keep) {
    check_input(zx_);
    check_act(act, "activation");
    check_act(rec, "recurrent activation");
    const Tensor zx = zx_.contiguous();
    const int64_t T = zx.size(0), B = zx.size(1), GH = zx.size(2), H = h0_.size(-1);
    const bool lstm = c0_.has_value() && c0_->defined();
    const int64_t NG = lstm ? 4 : 3;
    TORCH_CHECK_VALUE(GH == NG * H, "rnnkit kernels: expected W_ih x of shape (T, B, ", NG * H, ") for ", NG,
                      " gates of ", H, " units, got ", zx.sizes());
    check_shape(h0_, {B, H}, "h0");
    const Tensor h0 = input(h0_, zx, "h0");
    Tensor c0;
    if (lstm) {
        check_shape(*c0_, {B, H}, "c0");
        c0 = input(*c0_, zx, "c0");
    }
    check_packed(Wp, zx, NG, vl(zx), H, H, "packed W_hh");
    check_shape(ax_, {GH}, "the gain of LN(W_ih x)");
    check_shape(ah_, {GH}, "the gain of LN(W_hh h)");
    const Tensor ax = input(ax_, zx, "the gain of LN(W_ih x)"), bx = opt(bx_, zx, "b_ih", {GH});
    const Tensor ah = input(ah_, zx, "the gain of LN(W_hh h)"), bhh = opt(bhh_, zx, "b_hh", {GH});
    const Tensor ac = lstm ? opt(ac_, zx, "the gain of LN(c)", {H}) : Tensor(), bc = opt(bc_, zx, "the shift of LN(c)", {H});
    TORCH_CHECK_VALUE(!lstm || ac.defined(), "rnnkit kernels: the layer-normalised LSTM needs the gain of LN(c)");
    const Tensor len = lengths(len_, T, B);
    Tensor Hs = states(h0, T), Cs = lstm ? states(c0, T) : none_like(zx);
    Tensor G = keep ? at::empty({T, B, GH}, zx.options()) : none_like(zx);
    Tensor Yh = keep ? at::empty({T, B, GH}, zx.options()) : at::empty({B, GH}, zx.options());
    auto stat = [&](bool want) { return keep && want ? at::empty({T, B}, zx.options()) : none_like(zx); };
    Tensor Rh = stat(true), Mx = stat(true), Rx = stat(true), Mc = stat(lstm), Rc = stat(lstm);
    const int64_t es = zx.element_size();
    const rk_ln_fwd_args a = {T, B, H, NG, (int)act, (int)rec, (int)keep, ptr(zx), ptr(ax), ptr(bx), ptr(Wp), ptr(bhh),
                              ptr(ah), ptr(ac), ptr(bc), lptr(len), ptr(h0), ptr(c0), (char *)mptr(Hs) + B * H * es,
                              lstm ? (char *)mptr(Cs) + B * H * es : nullptr, mptr(G), mptr(Yh), mptr(Rh), mptr(Mx),
                              mptr(Rx), mptr(Mc), mptr(Rc), ln_threads(B, B * GH * H)};
    if (T > 0 && B > 0) timed(kernels(zx), a.nth, [&] { kernels(zx).ln_fwd(&a); });
    return {Hs, Cs, G, keep ? Yh : none_like(zx), Rh, Mx, Rx, Mc, Rc};
}

std::vector<Tensor> ln_bwd(const Tensor &G_, const Tensor &Yh_, const Tensor &Rh_, const Tensor &Hs_, const Tensor &Cs_,
                           const Tensor &Mc_, const Tensor &Rc_, const Tensor &Zx_, const Tensor &Mx_, const Tensor &Rx_,
                           const Tensor &W_hh, const Tensor &ax_, const optional<Tensor> &bhh_, const Tensor &ah_,
                           const optional<Tensor> &ac_, const optional<Tensor> &bc_, const optional<Tensor> &len_,
                           const Tensor &gHs_, const optional<Tensor> &gCs_, const optional<Tensor> &gG_, int64_t act,
                           int64_t rec, bool need_dh0) {
    check_real(G_, "G");
    TORCH_CHECK_VALUE(G_.dim() == 3 && Hs_.dim() == 3, "rnnkit kernels: expected gates (T, B, NG·H) and Hs (T + 1, B, H)");
    const int64_t T = G_.size(0), B = G_.size(1), GH = G_.size(2), H = Hs_.size(2), NG = H ? GH / H : 0;
    TORCH_CHECK_VALUE((NG == 3 || NG == 4) && GH == NG * H, "rnnkit kernels: expected 3 or 4 gates of ", H,
                      " units, got ", GH, " values");
    const bool lstm = NG == 4;
    const Tensor G = input(G_, G_, "G");
    check_shape(Yh_, {T, B, GH}, "Yh");
    check_shape(Zx_, {T, B, GH}, "Zx");
    check_shape(Rh_, {T, B}, "Rh");
    check_shape(Mx_, {T, B}, "Mx");
    check_shape(Rx_, {T, B}, "Rx");
    check_shape(Hs_, {T + 1, B, H}, "Hs");
    check_shape(W_hh, {GH, H}, "W_hh");
    check_shape(ax_, {GH}, "the gain of LN(W_ih x)");
    check_shape(ah_, {GH}, "the gain of LN(W_hh h)");
    const Tensor Yh = input(Yh_, G, "Yh"), Rh = input(Rh_, G, "Rh"), Hs = input(Hs_, G, "Hs");
    const Tensor Zx = input(Zx_, G, "Zx"), Mx = input(Mx_, G, "Mx"), Rx = input(Rx_, G, "Rx");
    const Tensor W = padded(input(W_hh, G, "W_hh"));
    const StateGrad gHs = state_grad(gHs_, G, T, B, H, "the gradient of Hs");
    const Tensor ax = input(ax_, G, "the gain of LN(W_ih x)");
    const Tensor ah = input(ah_, G, "the gain of LN(W_hh h)"), bhh = opt(bhh_, G, "b_hh", {GH});
    Tensor Cs, Mc, Rc, ac, bc, gCs;
    if (lstm) {
        check_shape(Cs_, {T + 1, B, H}, "Cs");
        check_shape(Mc_, {T, B}, "Mc");
        check_shape(Rc_, {T, B}, "Rc");
        Cs = input(Cs_, G, "Cs"), Mc = input(Mc_, G, "Mc"), Rc = input(Rc_, G, "Rc");
        ac = opt(ac_, G, "the gain of LN(c)", {H}), bc = opt(bc_, G, "the shift of LN(c)", {H});
        TORCH_CHECK_VALUE(ac.defined(), "rnnkit kernels: the layer-normalised LSTM needs the gain of LN(c)");
        gCs = opt(gCs_, G, "the gradient of Cs", {T + 1, B, H});
    }
    const Tensor gG = opt(gG_, G, "the gradient of G", {T, B, GH}), len = lengths(len_, T, B);
    const int nth = ln_threads(B, B * GH * H);
    Tensor dh = at::zeros({B, H}, G.options()), dh2 = at::empty({B, H}, G.options());
    Tensor dc = lstm ? at::zeros({B, H}, G.options()) : none_like(G);
    Tensor dZx = at::empty({T, B, GH}, G.options()), dZ = at::empty({T, B, GH}, G.options());
    Tensor sums = at::zeros({nth, 6, GH}, G.options()), scratch = at::empty({nth, 2, GH}, G.options());
    const int64_t es = G.element_size();
    const rk_ln_bwd_args a = {T, B, H, NG, (int)act, (int)rec, (int)need_dh0, ptr(G), ptr(Yh), ptr(Rh), ptr(Hs),
                              ptr(Cs), ptr(Mc), ptr(Rc), ptr(Zx), ptr(Mx), ptr(Rx), ptr(W), W.size(1), ptr(ax), ptr(bhh),
                              ptr(ah), ptr(ac), ptr(bc), lptr(len), gHs.rows,
                              gCs.defined() ? (const char *)ptr(gCs) + B * H * es : nullptr, ptr(gG), mptr(dZx),
                              mptr(dZ), mptr(dh), mptr(dh2), mptr(dc), mptr(sums), mptr(scratch), nth};
    if (T > 0 && B > 0) timed(kernels(G), a.nth, [&] { kernels(G).ln_bwd(&a); });
    add_first(dh, gHs);
    if (gCs.defined()) dc.add_(gCs.select(0, 0));
    return {dZx, dZ, dh, dc, nth > 1 ? sums.sum(0) : sums.select(0, 0)};
}

}  // namespace

// One token through a unidirectional stack (Stepper, engines/fused/stepper.py): each layer's forward kernel for
// one step, fed the new h of the layer below, all in one call. At batch 1 a Python call per layer, and the slicing
// and stacking around it, cost more than the kernels themselves. `packed` holds each layer's packed weights in turn
// (the spec's pack() list), `state` each state tensor (num_layers, B, size); `zone`: zoneout's (p_h, p_c, 0, 0, 0)
// for a layer trained with it (the evaluation's expectation), or none. Returns the new state tensors.
std::vector<Tensor> step(const std::string &cell, const Tensor &x, const std::vector<Tensor> &state,
                         const std::vector<optional<Tensor>> &packed, at::IntArrayRef config,
                         const optional<Tensor> &zone) {
    TORCH_CHECK_VALUE(!state.empty() && state.size() <= 2 && state[0].dim() == 3,
                      "rnnkit kernels: expected one or two states (L, B, size)");
    TORCH_CHECK_VALUE(x.dim() == 2, "rnnkit kernels: expected one step's input (B, F), got ", x.sizes());
    const int64_t L = state[0].size(0), per = L ? int64_t(packed.size()) / L : 0;
    TORCH_CHECK_VALUE(per * L == int64_t(packed.size()) && per >= 3, "rnnkit kernels: expected the packed weights of ",
                      L, " layers, got ", packed.size(), " tensors");
    const int n_state = cell == "lstm" ? 2 : 1;
    TORCH_CHECK_VALUE(int64_t(state.size()) == n_state, "rnnkit kernels: ", cell, " has ", n_state,
                      " state tensors, got ", state.size());
    auto need = [&](int64_t l, int64_t i) -> const Tensor & {
        const optional<Tensor> &t = packed[l * per + i];
        TORCH_CHECK_VALUE(t.has_value() && t->defined(), "rnnkit kernels: packed weight ", i, " of layer ", l,
                          " is missing");
        return *t;
    };
    auto maybe = [&](int64_t l, int64_t i) -> const optional<Tensor> & { return packed[l * per + i]; };
    const optional<Tensor> none;
    std::vector<Tensor> out;  // the new states, (L, B, size) each: every layer writes its own row
    for (const Tensor &s : state) out.push_back(at::empty(s.sizes(), s.options()));
    Tensor inp = x.unsqueeze(0);  // (1, B, F)
    for (int64_t l = 0; l < L; ++l) {
        const Into into{out[0][l].data_ptr(), n_state > 1 ? out[1][l].data_ptr() : nullptr};
        if (cell == "lstm") {
            lstm_fwd_into(inp, need(l, 0), need(l, 1), maybe(l, 2), maybe(l, 3), maybe(l, 4), none, state[0][l],
                          state[1][l], config[0], config[1], false, false, zone, none, &into);
        } else if (cell == "gru") {
            gru_fwd_into(inp, need(l, 0), need(l, 1), maybe(l, 2), maybe(l, 3), maybe(l, 4), none, state[0][l],
                         config[0], config[1], config[3] != 0, false, false, zone, none, &into);
        } else if (cell == "elman") {
            elman_fwd_into(inp, need(l, 0), need(l, 1), maybe(l, 2), none, state[0][l], config[0], zone, none, &into);
        } else if (cell == "jordan") {
            jordan_fwd_into(inp, need(l, 0), need(l, 1), need(l, 2), maybe(l, 3), maybe(l, 4), none, state[0][l],
                            config[3], config[0], config[1], zone, none, &into);
        } else {
            TORCH_CHECK_VALUE(false, "rnnkit kernels: no one-step path for cell '", cell, "'");
        }
        inp = out[0][l].unsqueeze(0);  // (1, B, S): the next layer reads this one's output
    }
    return out;
}

TORCH_LIBRARY(rnnkit_c, m) {
    m.def("select_isa(str isa) -> str", &select_isa);
    m.def("info() -> str", &info);
    m.def("bf16_products() -> bool", &bf16_products);
    m.def("bf16_mode() -> int", &bf16_mode);
    m.def("peak_flops(str dtype, float seconds) -> float", &peak_flops);
    m.def("set_min_step_work(int macs) -> int", &set_min_step_work);
    m.def("pack(Tensor W, int ngates, bool wide) -> Tensor", &pack);
    m.def("pack_bf16(Tensor W, int ngates, int units) -> Tensor", &pack_bf16);
    m.def("gemm(Tensor a, Tensor b, Tensor? bias=None) -> Tensor", &gemm);
    m.def("weight_grads_bf16(Tensor d, Tensor[] xs) -> Tensor[]", &weight_grads_bf16);
    m.def("dropout(Tensor x, float p, int seed) -> Tensor", &dropout);
    m.def("lstm_fwd(Tensor x, Tensor Wxp, Tensor Wp, Tensor? Whrp, Tensor? bias, Tensor? peep, Tensor? lengths, "
          "Tensor h0, Tensor c0, int act, int rec_act, bool keep, bool bf16=False, Tensor? zone=None, Tensor? rmask=None) "
          "-> (Tensor, Tensor, Tensor, Tensor)",
          &lstm_fwd);
    m.def("lstm_bwd(Tensor G, Tensor Cs, Tensor M, Tensor W_hh, Tensor? W_hr, Tensor? peep, Tensor? lengths, "
          "Tensor gHs, Tensor? gCs, Tensor? gG, int act, int rec_act, bool need_dh0, bool bf16=False, Tensor? zone=None, "
          "Tensor? rmask=None) "
          "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
          &lstm_bwd);
    m.def("gru_fwd(Tensor x, Tensor Wxp, Tensor Wp, Tensor? Wnp, Tensor? b_ih, Tensor? b_hh, Tensor? lengths, "
          "Tensor h0, int act, int rec_act, bool reset_after, bool keep, bool bf16=False, Tensor? zone=None, "
          "Tensor? rmask=None) -> (Tensor, Tensor, Tensor)",
          &gru_fwd);
    m.def("gru_bwd(Tensor G, Tensor HN, Tensor Hs, Tensor W_hh, Tensor? lengths, Tensor gHs, Tensor? gG, int act, "
          "int rec_act, bool reset_after, bool need_dh0, bool bf16=False, Tensor? zone=None, Tensor? rmask=None) "
          "-> (Tensor, Tensor, Tensor, Tensor, Tensor)",
          &gru_bwd);
    m.def("elman_fwd(Tensor x, Tensor Wxp, Tensor Wp, Tensor? bias, Tensor? lengths, Tensor h0, int act, "
          "Tensor? zone=None, Tensor? rmask=None) -> Tensor",
          &elman_fwd);
    m.def("elman_bwd(Tensor Hs, Tensor W_hh, Tensor? lengths, Tensor gHs, int act, bool need_dh0, Tensor? zone=None, "
          "Tensor? rmask=None) "
          "-> (Tensor, Tensor, Tensor)",
          &elman_bwd);
    m.def("indrnn_fwd(Tensor xw, Tensor u, Tensor? lengths, Tensor h0, int act) -> Tensor", &indrnn_fwd);
    m.def("indrnn_bwd(Tensor Hs, Tensor u, Tensor? lengths, Tensor gHs, int act) -> (Tensor, Tensor, Tensor)",
          &indrnn_bwd);
    m.def("jordan_fwd(Tensor x, Tensor Wxp, Tensor Wyp, Tensor Whp, Tensor? bias, Tensor? b_hy, Tensor? lengths, "
          "Tensor y0, int hidden, int act, int out_act, Tensor? zone=None, Tensor? rmask=None) -> (Tensor, Tensor)",
          &jordan_fwd);
    m.def("jordan_bwd(Tensor Ys, Tensor Hh, Tensor W_yh, Tensor W_hy, Tensor? lengths, Tensor gYs, Tensor? gHh, "
          "int act, int out_act, bool need_dy0, Tensor? zone=None, Tensor? rmask=None) "
          "-> (Tensor, Tensor, Tensor, Tensor, Tensor)",
          &jordan_bwd);
    m.def("step(str cell, Tensor x, Tensor[] state, Tensor?[] packed, int[] config, Tensor? zone=None) -> Tensor[]",
          &step);
    m.def("ln_fwd(Tensor zx, Tensor ax, Tensor? bx, Tensor Wp, Tensor? b_hh, Tensor ah, Tensor? ac, Tensor? bc, "
          "Tensor? lengths, Tensor h0, Tensor? c0, int act, int rec_act, bool keep) -> Tensor[]",
          &ln_fwd);
    m.def("ln_bwd(Tensor G, Tensor Yh, Tensor Rh, Tensor Hs, Tensor Cs, Tensor Mc, Tensor Rc, Tensor Zx, Tensor Mx, "
          "Tensor Rx, Tensor W_hh, Tensor ax, Tensor? b_hh, Tensor ah, Tensor? ac, Tensor? bc, Tensor? lengths, "
          "Tensor gHs, Tensor? gCs, Tensor? gG, int act, int rec_act, bool need_dh0) -> Tensor[]",
          &ln_bwd);
}
