// A persistent worker pool for the decode kernels: ~120 small GEMV dispatches per token make a
// per-call thread wake-up (DispatchQueue.concurrentPerform: a futex round trip, several µs) a
// visible cost. Workers spin for ~50 µs after a task (the next GEMV usually follows within a few
// microseconds), then sleep on a condition variable. One task at a time: a call made while the
// pool is busy (from a worker, or from another thread) runs its parts inline on the caller.
//
// Parts are handed out through one 64-bit atomic, (generation << 32) | next part, so a worker
// still holding a finished task can never take a part of the next one (its compare-exchange
// fails on the generation). Task descriptions alternate between two slots by generation parity.

#include "CI2QKernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define I2Q_PAUSE() _mm_pause()
#else
#define I2Q_PAUSE() ((void)0)
#endif

enum { MAX_WORKERS = 63 };

typedef struct {
    _Atomic(i2q_task_fn) fn;
    _Atomic(void *) ctx;
    _Atomic int64_t parts;
} task_slot;

static struct {
    pthread_mutex_t call;        // one task at a time
    pthread_mutex_t lock;        // sleeping workers
    pthread_cond_t wake;
    _Atomic uint64_t state;      // (generation << 32) | next part
    _Atomic int64_t done;        // parts of the current task finished
    _Atomic int sleepers;
    task_slot slot[2];
    int workers;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int wantedWorkers = 1;
static _Thread_local int isWorker = 0;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/// Takes parts of generation `gen` until none is left (or the task is over).
static void run_parts(uint64_t gen, i2q_task_fn fn, void *ctx, int64_t parts) {
    uint64_t s = atomic_load(&pool.state);
    while ((s >> 32) == gen && (int64_t)(s & 0xFFFFFFFFu) < parts) {
        if (atomic_compare_exchange_weak(&pool.state, &s, s + 1)) {
            fn(ctx, (int64_t)(s & 0xFFFFFFFFu));
            atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
            s = atomic_load(&pool.state);
        }
    }
}

static void *worker(void *arg) {
    (void)arg;
    isWorker = 1;
    uint64_t seen = atomic_load(&pool.state) >> 32;
    for (;;) {
        uint64_t g = atomic_load(&pool.state) >> 32;
        if (g == seen) {  // spin about 50 µs for the next task, then sleep
            const uint64_t until = now_ns() + 50000;
            unsigned spins = 0;
            while ((g = atomic_load_explicit(&pool.state, memory_order_acquire) >> 32) == seen) {
                I2Q_PAUSE();
                if (++spins % 64 == 0 && now_ns() > until) break;
            }
            if (g == seen) {
                pthread_mutex_lock(&pool.lock);
                atomic_fetch_add(&pool.sleepers, 1);
                while ((g = atomic_load(&pool.state) >> 32) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
                atomic_fetch_sub(&pool.sleepers, 1);
                pthread_mutex_unlock(&pool.lock);
            }
        }
        seen = g;
        task_slot *t = &pool.slot[g & 1];
        run_parts(g, atomic_load(&t->fn), atomic_load(&t->ctx), atomic_load(&t->parts));
    }
    return NULL;
}

static void start(void) {
    pool.workers = wantedWorkers < 0 ? 0 : (wantedWorkers > MAX_WORKERS ? MAX_WORKERS : wantedWorkers);
    for (int i = 0; i < pool.workers; i++) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        const int ok = pthread_create(&t, &a, worker, NULL) == 0;
        pthread_attr_destroy(&a);
        if (!ok) { pool.workers = i; break; }
    }
}

void i2q_pool_run(int64_t parts, int workers, i2q_task_fn fn, void *ctx) {
    if (parts <= 0) return;
    if (parts == 1 || isWorker) { for (int64_t p = 0; p < parts; p++) fn(ctx, p); return; }
    wantedWorkers = workers;  // used once, by the first call's pthread_once
    pthread_once(&once, start);
    if (pool.workers == 0 || parts > 0xFFFFFFFF || pthread_mutex_trylock(&pool.call) != 0) {
        for (int64_t p = 0; p < parts; p++) fn(ctx, p);  // no workers, or busy: inline
        return;
    }
    const uint64_t gen = (atomic_load(&pool.state) >> 32) + 1;
    task_slot *t = &pool.slot[gen & 1];
    atomic_store(&t->fn, fn);
    atomic_store(&t->ctx, ctx);
    atomic_store(&t->parts, parts);
    atomic_store(&pool.done, 0);
    atomic_store(&pool.state, gen << 32);  // publish (seq_cst: ordered before the sleepers check)
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    run_parts(gen, fn, ctx, parts);
    while (atomic_load_explicit(&pool.done, memory_order_acquire) < parts) I2Q_PAUSE();
    pthread_mutex_unlock(&pool.call);
}
