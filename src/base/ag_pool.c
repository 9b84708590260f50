#include "ag_base.h"

#include "ag_pool.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#define MAX_THREADS 256u

typedef void (*task_fn)(void *ud, size_t i);

/*
 * One job slot. `lock` guards everything except `next`, which participants claim indices from.
 * A worker joins a job only while it is open (under the lock, counting itself in `active`); the
 * caller closes the job only once `active` is back to zero, so no worker touches a job (or its
 * ud) after ag_pool_run returns.
 */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t work_cv; /* a job was opened, or stopping */
    pthread_cond_t done_cv; /* active dropped to 0, or busy cleared */
    bool running;
    bool stopping;
    unsigned nworkers;
    pthread_t *threads; /* owned, nworkers entries */
    /* the job */
    bool busy;
    bool open;
    uint64_t gen;
    task_fn fn;
    void *ud;
    size_t n;
    unsigned active;
    atomic_size_t next;
} pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .work_cv = PTHREAD_COND_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER,
};

/* Serializes init and shutdown, which join threads and so cannot hold pool.lock throughout. */
static pthread_mutex_t lifecycle_lock = PTHREAD_MUTEX_INITIALIZER;

static void run_items(task_fn fn, void *ud, size_t n)
{
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&pool.next, 1, memory_order_relaxed);
        if (i >= n)
            break;
        fn(ud, i);
    }
}

static void *worker_main(void *arg)
{
    AG_UNUSED(arg);
    uint64_t seen = 0;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (!pool.stopping && !(pool.open && pool.gen != seen))
            pthread_cond_wait(&pool.work_cv, &pool.lock);
        if (pool.stopping)
            break;
        seen = pool.gen;
        pool.active++;
        task_fn fn = pool.fn;
        void *ud = pool.ud;
        size_t n = pool.n;
        pthread_mutex_unlock(&pool.lock);

        run_items(fn, ud, n);

        pthread_mutex_lock(&pool.lock);
        if (--pool.active == 0)
            pthread_cond_broadcast(&pool.done_cv);
    }
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

/* Tells workers to exit and joins the first n of them. Called with lifecycle_lock held and no
 * job running. */
static void stop_workers(unsigned n)
{
    pthread_mutex_lock(&pool.lock);
    pool.stopping = true;
    pthread_cond_broadcast(&pool.work_cv);
    pthread_mutex_unlock(&pool.lock);
    for (unsigned i = 0; i < n; i++)
        pthread_join(pool.threads[i], NULL);
    free(pool.threads);
    pool.threads = NULL;
    pthread_mutex_lock(&pool.lock);
    pool.running = false;
    pool.nworkers = 0;
    pool.stopping = false;
    pthread_mutex_unlock(&pool.lock);
}

int ag_pool_init(unsigned nthreads)
{
    int rc = 0;
    pthread_mutex_lock(&lifecycle_lock);
    if (pool.running)
        goto out;
    if (nthreads == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = ncpu > 0 ? (unsigned)AG_MIN(ncpu, (long)MAX_THREADS) : 1u;
    }
    nthreads = AG_MIN(nthreads, MAX_THREADS);
    unsigned nworkers = nthreads - 1;
    if (nworkers > 0) {
        pool.threads = calloc(nworkers, sizeof(*pool.threads));
        if (!pool.threads) {
            rc = AG_ENOMEM;
            goto out;
        }
    }
    /* Workers block every signal so that process signals reach the threads that handle them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    unsigned started = 0;
    for (; started < nworkers; started++) {
        if (pthread_create(&pool.threads[started], NULL, worker_main, NULL) != 0)
            break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started < nworkers) {
        stop_workers(started);
        rc = AG_EINTERNAL;
        goto out;
    }
    pthread_mutex_lock(&pool.lock);
    pool.nworkers = nworkers;
    pool.running = true;
    pthread_mutex_unlock(&pool.lock);
out:
    pthread_mutex_unlock(&lifecycle_lock);
    return rc;
}

void ag_pool_shutdown(void)
{
    pthread_mutex_lock(&lifecycle_lock);
    if (pool.running) {
        pthread_mutex_lock(&pool.lock);
        pool.running = false; /* new runs go inline from here on */
        while (pool.busy)
            pthread_cond_wait(&pool.done_cv, &pool.lock);
        unsigned n = pool.nworkers;
        pthread_mutex_unlock(&pool.lock);
        stop_workers(n);
    }
    pthread_mutex_unlock(&lifecycle_lock);
}

unsigned ag_pool_size(void)
{
    pthread_mutex_lock(&pool.lock);
    unsigned n = pool.running ? pool.nworkers + 1 : 1;
    pthread_mutex_unlock(&pool.lock);
    return n;
}

void ag_pool_run(size_t n, void (*fn)(void *ud, size_t i), void *ud)
{
    if (n == 0)
        return;
    if (n > 1) {
        pthread_mutex_lock(&pool.lock);
        bool take = pool.running && !pool.busy && pool.nworkers > 0;
        if (take) {
            pool.busy = true;
            pool.fn = fn;
            pool.ud = ud;
            pool.n = n;
            atomic_store_explicit(&pool.next, 0, memory_order_relaxed);
            pool.gen++;
            pool.open = true;
            if (n - 1 >= pool.nworkers)
                pthread_cond_broadcast(&pool.work_cv);
            else
                for (size_t i = 0; i < n - 1; i++)
                    pthread_cond_signal(&pool.work_cv);
        }
        pthread_mutex_unlock(&pool.lock);
        if (take) {
            run_items(fn, ud, n);
            pthread_mutex_lock(&pool.lock);
            while (pool.active > 0)
                pthread_cond_wait(&pool.done_cv, &pool.lock);
            pool.open = false;
            pool.busy = false;
            pthread_cond_broadcast(&pool.done_cv);
            pthread_mutex_unlock(&pool.lock);
            return;
        }
    }
    for (size_t i = 0; i < n; i++)
        fn(ud, i);
}
