/* Threads for the GEMM and the sequence kernels: OpenMP, the same runtime torch uses.

   The library is linked against libgomp.so.1, and torch has loaded its own copy of that library by the
   time this one is loaded, so both share one OpenMP runtime and one team of worker threads. That matters
   on a small machine: with a second thread pool, torch's workers (which spin for a while after every
   parallel torch op) and ours would take turns on the same cores, and a kernel whose threads meet every
   time step would run at the speed of the slower turn. Built without OpenMP, everything runs on one thread.

   A job is `fn(ctx, tid, nth)` run by threads 0 … nth-1. Inside a job the threads meet at
   `rk_barrier_wait` once per time step: a spinning barrier (the other thread is microseconds away) that
   yields after a while, so a machine busy with other processes does not stall on a spinner whose
   partner was descheduled. */
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#define rk_relax() __builtin_ia32_pause()
#define rk_stream_fence() __builtin_ia32_sfence() /* non-temporal stores (RK(vstream_n), vmath.h) ordered before what follows */
#else
#define rk_relax() ((void)0)
#define rk_stream_fence() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#endif

typedef void (*rk_task)(void *ctx, int tid, int nth);

/* Run fn on nth threads (the caller is thread 0) and return when all are done. */
static void rk_parallel(rk_task fn, void *ctx, int nth) {
#ifdef _OPENMP
    if (nth > 1 && !omp_in_parallel()) {
#pragma omp parallel num_threads(nth)
        fn(ctx, omp_get_thread_num(), omp_get_num_threads());
        return;
    }
#endif
    (void)nth;
    fn(ctx, 0, 1);
}

/* Sense-reversing barrier for the nth threads of one job. Each thread keeps its own `sense`. */
typedef struct {
    atomic_int count;
    atomic_int sense;
} rk_barrier;

/* Time spent waiting past the spinning (ns, all threads): where a partner thread was descheduled (another process
   wants the core) or arrived much later. ops.cpp reads and resets it after each kernel and compares it with the
   kernel's time: a kernel whose threads meet every step runs at the pace of the slowest, so when waiting is a
   large part of the time, the next calls run on one thread for a while. A share, not a fixed duration: at 1024
   hidden units a step takes ~1 ms per thread and the threads arrive tens of µs apart (uneven work, a few % of
   the time), while at 256 units a step takes ~0.1 ms and a busy machine makes each wait as long or longer. */
static atomic_long rk_waited_ns;

static long rk_take_waited_ns(void) { return atomic_exchange(&rk_waited_ns, 0); }

static void rk_barrier_wait(rk_barrier *b, int nth, int *sense) {
    if (nth <= 1) return;
    const int s = !*sense;
    *sense = s;
    if (atomic_fetch_add(&b->count, 1) == nth - 1) {
        atomic_store(&b->count, 0);
        atomic_store_explicit(&b->sense, s, memory_order_release);
        return;
    }
    struct timespec t0 = {0, 0};
    long spins = 0;
    for (; atomic_load_explicit(&b->sense, memory_order_acquire) != s; spins++) {
        if (spins < 2000) {
            rk_relax();
            continue;
        }
        if (spins == 2000) clock_gettime(CLOCK_MONOTONIC, &t0); /* past the spinning: time the rest */
        sched_yield();
    }
    if (spins > 2000) {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        atomic_fetch_add_explicit(&rk_waited_ns, (t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec),
                                  memory_order_relaxed);
    }
}

/* The share [*lo, *hi) of n items that thread tid of nth takes: contiguous, sizes differing by at most one. */
static void rk_share(long n, int tid, int nth, long *lo, long *hi) {
    *lo = n * tid / nth;
    *hi = n * (tid + 1) / nth;
}
