/*
 * ag_pool.h — one fixed, process-wide worker pool for splitting a single request's scan across
 * cores (fork/join over an index range).
 *
 * There is one job slot. A request that finds it taken — another request is using the pool, or
 * the caller is itself inside a pool task — runs its work inline on its own thread instead of
 * queueing: under load every core is already busy with a request, and waiting would only add
 * latency. So ag_pool_run never blocks on another caller's work and never deadlocks when nested.
 */
#ifndef AG_POOL_H
#define AG_POOL_H

#include "ag_base.h"

/* Starts the pool so that one ag_pool_run uses nthreads threads in total: nthreads - 1 workers
 * plus the calling thread. 0 = the number of online CPUs. Idempotent: if the pool is running,
 * returns 0 and keeps its size. AG_EINTERNAL if a thread cannot be started (no pool then). Call
 * it from the main thread at startup. */
int ag_pool_init(unsigned nthreads);
/* Waits for a running job to finish, stops and joins the workers. Later ag_pool_run calls run
 * inline; ag_pool_init may start the pool again. No-op if not running. */
void ag_pool_shutdown(void);
/* Threads one ag_pool_run may use (1 when the pool is not running). A hint for sizing work. */
unsigned ag_pool_size(void);

/* Runs fn(ud, i) for every i in [0, n), each exactly once, on the pool's workers plus the
 * calling thread, and returns when all calls have returned. fn must be safe to run concurrently
 * for different i. Safe to call concurrently from any number of threads (including from inside
 * fn); runs everything inline when the pool is not running or busy. ud is borrowed for the call. */
void ag_pool_run(size_t n, void (*fn)(void *ud, size_t i), void *ud);

#endif
