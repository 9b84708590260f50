#include "ag_env.h"

#include "ag_log.h"

#define GROW_MIN ((size_t)64 << 20)

void ag_env_gate_init(ag_env_gate_t *g, MDB_env *env, size_t max)
{
    memset(g, 0, sizeof(*g));
    pthread_rwlock_init(&g->lock, NULL); /* glibc's default: reader-preferring (see ag_env.h) */
    pthread_mutex_init(&g->spare_mu, NULL);
    g->env = env;
    g->max = max;
    MDB_envinfo info;
    if (env && mdb_env_info(env, &info) == 0)
        g->size = info.me_mapsize;
    if (g->size > g->max)
        ag_log(AG_LOG_WARN,
               "the storage map is already %zu MiB, above storage.map_size_gb (%zu MiB): it is "
               "not grown further",
               g->size >> 20, g->max >> 20);
}

void ag_env_gate_destroy(ag_env_gate_t *g)
{
    ag_env_read_drop(g);
    pthread_mutex_destroy(&g->spare_mu);
    pthread_rwlock_destroy(&g->lock);
}

int ag_env_read_begin(ag_env_gate_t *g, MDB_txn **out)
{
    MDB_txn *t = NULL;
    pthread_mutex_lock(&g->spare_mu);
    if (g->nspare)
        t = g->spare[--g->nspare];
    pthread_mutex_unlock(&g->spare_mu);
    if (t) {
        if (mdb_txn_renew(t) == 0) {
            *out = t;
            return 0;
        }
        mdb_txn_abort(t);
    }
    return mdb_txn_begin(g->env, NULL, MDB_RDONLY, out);
}

void ag_env_read_end(ag_env_gate_t *g, MDB_txn *txn)
{
    mdb_txn_reset(txn);
    pthread_mutex_lock(&g->spare_mu);
    if (g->nspare < AG_ENV_SPARE) {
        g->spare[g->nspare++] = txn;
        txn = NULL;
    }
    pthread_mutex_unlock(&g->spare_mu);
    if (txn)
        mdb_txn_abort(txn);
}

void ag_env_read_drop(ag_env_gate_t *g)
{
    pthread_mutex_lock(&g->spare_mu);
    while (g->nspare)
        mdb_txn_abort(g->spare[--g->nspare]);
    pthread_mutex_unlock(&g->spare_mu);
}

size_t ag_env_enter(ag_env_gate_t *g)
{
    if (!g)
        return 0;
    pthread_rwlock_rdlock(&g->lock);
    return g->size;
}

void ag_env_leave(ag_env_gate_t *g)
{
    if (g)
        pthread_rwlock_unlock(&g->lock);
}

int ag_env_grow(ag_env_gate_t *g, size_t seen)
{
    if (!g)
        return AG_ENOSPACE;
    pthread_rwlock_wrlock(&g->lock);
    int rc = 0;
    if (g->size == seen) {
        if (g->size >= g->max) {
            rc = AG_ENOSPACE;
        } else {
            size_t want = g->size > GROW_MIN ? g->size * 2 : g->size + GROW_MIN;
            if (want > g->max || want < g->size)
                want = g->max;
            int mrc = mdb_env_set_mapsize(g->env, want); /* no transaction is open: exclusive */
            if (mrc == 0) {
                MDB_envinfo info;
                g->size = mdb_env_info(g->env, &info) == 0 ? info.me_mapsize : want;
                g->grown++;
                ag_log(AG_LOG_INFO, "storage map grown from %zu to %zu MiB (ceiling %zu MiB)",
                       seen >> 20, g->size >> 20, g->max >> 20);
            } else {
                ag_log(AG_LOG_ERROR, "cannot grow the storage map to %zu MiB: %s", want >> 20,
                       mdb_strerror(mrc));
                rc = AG_ESTORAGE;
            }
        }
    }
    pthread_rwlock_unlock(&g->lock);
    return rc;
}

void ag_env_headroom(ag_env_gate_t *g)
{
    if (!g)
        return;
    size_t seen = ag_env_enter(g);
    MDB_envinfo info;
    MDB_stat st;
    bool low = mdb_env_info(g->env, &info) == 0 && mdb_env_stat(g->env, &st) == 0 &&
               ((size_t)info.me_last_pgno + 1) * st.ms_psize > seen / 4 * 3;
    ag_env_leave(g);
    if (low && seen < g->max)
        ag_env_grow(g, seen);
}
