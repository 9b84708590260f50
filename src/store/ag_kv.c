#include "ag_kv.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>

/* A transaction handed out is LMDB's own (ag_kv_txn_t is never defined, only converted back), so
 * beginning and ending one allocates nothing beyond what LMDB does. The environment's user
 * context points back to the ag_kv_t, for the store's name in messages. */
struct ag_kv {
    MDB_env *env;
    char what[48];
};

int ag_kv_copy(ag_kv_t *kv, const char *dir)
{
    return mdb_env_copy2(kv->env, dir, MDB_CP_COMPACT) == 0 ? 0 : AG_EIO;
}

static MDB_txn *raw(ag_kv_txn_t *txn)
{
    return (MDB_txn *)txn;
}

static int kv_error(int mrc)
{
    switch (mrc) {
    case 0:
        return 0;
    case MDB_NOTFOUND:
        return AG_ENOTFOUND;
    case MDB_MAP_FULL:
        return AG_ENOSPACE;
    case ENOMEM:
        return AG_ENOMEM;
    default:
        return AG_ESTORAGE;
    }
}

static const char *what_of(MDB_txn *txn)
{
    const ag_kv_t *kv = mdb_env_get_userctx(mdb_txn_env(txn));
    return kv ? kv->what : "store";
}

/* Memory: *out owns the environment (ag_kv_close). */
int ag_kv_open(const char *dir, const char *what, size_t map_size, unsigned max_tables,
               ag_kv_t **out, ag_diag_t *diag)
{
    *out = NULL;
    ag_kv_t *kv = calloc(1, sizeof(*kv));
    if (!kv)
        return AG_ENOMEM;
    snprintf(kv->what, sizeof(kv->what), "%s", what);
    int mrc = mdb_env_create(&kv->env);
    if (mrc) {
        free(kv);
        return ag_fail(diag, AG_ESTORAGE, "cannot open the %s in %s: %s", what, dir,
                       mdb_strerror(mrc));
    }
    mrc = mdb_env_set_maxdbs(kv->env, max_tables);
    if (mrc == 0)
        mrc = mdb_env_set_mapsize(kv->env, map_size);
    if (mrc == 0)
        mrc = mdb_env_set_userctx(kv->env, kv);
    /* Flags 0: synchronous commits, read transactions tied to their thread. */
    if (mrc == 0)
        mrc = mdb_env_open(kv->env, dir, 0, 0600);
    if (mrc) {
        int rc = ag_fail(diag, kv_error(mrc) == AG_ENOMEM ? AG_ENOMEM : AG_ESTORAGE,
                         "cannot open the %s in %s: %s", what, dir, mdb_strerror(mrc));
        ag_kv_close(kv);
        return rc;
    }
    int stale = 0;
    mdb_reader_check(kv->env, &stale);
    *out = kv;
    return 0;
}

void ag_kv_close(ag_kv_t *kv)
{
    if (!kv)
        return;
    if (kv->env)
        mdb_env_close(kv->env);
    free(kv);
}

int ag_kv_begin(ag_kv_t *kv, bool write, ag_kv_txn_t **txn, ag_diag_t *diag)
{
    MDB_txn *t = NULL;
    int mrc = mdb_txn_begin(kv->env, NULL, write ? 0 : MDB_RDONLY, &t);
    *txn = (ag_kv_txn_t *)t;
    if (mrc)
        return ag_fail(diag, kv_error(mrc) == AG_ENOMEM ? AG_ENOMEM : AG_ESTORAGE,
                       "%s: cannot begin a transaction: %s", kv->what, mdb_strerror(mrc));
    return 0;
}

int ag_kv_commit(ag_kv_txn_t *txn, ag_diag_t *diag)
{
    char what[sizeof(((ag_kv_t *)0)->what)];
    snprintf(what, sizeof(what), "%s", what_of(raw(txn)));
    int mrc = mdb_txn_commit(raw(txn));
    if (mrc) {
        int rc = kv_error(mrc);
        return ag_fail(diag, rc == AG_ENOTFOUND ? AG_ESTORAGE : rc, "%s: cannot commit: %s", what,
                       mdb_strerror(mrc));
    }
    return 0;
}

void ag_kv_abort(ag_kv_txn_t *txn)
{
    if (txn)
        mdb_txn_abort(raw(txn));
}

int ag_kv_table(ag_kv_txn_t *txn, const char *name, ag_kv_table_t *out)
{
    MDB_dbi dbi;
    int rc = kv_error(mdb_dbi_open(raw(txn), name, MDB_CREATE, &dbi));
    if (rc == 0)
        *out = dbi;
    return rc == AG_ENOTFOUND ? AG_ESTORAGE : rc;
}

int ag_kv_get(ag_kv_txn_t *txn, ag_kv_table_t t, const void *key, size_t klen, ag_kv_val_t *val)
{
    MDB_val k = {klen, (void *)key}, v;
    int rc = kv_error(mdb_get(raw(txn), t, &k, &v));
    if (rc == 0) {
        val->data = v.mv_data;
        val->len = v.mv_size;
    }
    return rc;
}

int ag_kv_put(ag_kv_txn_t *txn, ag_kv_table_t t, const void *key, size_t klen, const void *val,
              size_t vlen)
{
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    int rc = kv_error(mdb_put(raw(txn), t, &k, &v, 0));
    return rc == AG_ENOTFOUND ? AG_ESTORAGE : rc;
}

int ag_kv_del(ag_kv_txn_t *txn, ag_kv_table_t t, const void *key, size_t klen)
{
    MDB_val k = {klen, (void *)key};
    return kv_error(mdb_del(raw(txn), t, &k, NULL));
}

int ag_kv_count(ag_kv_txn_t *txn, ag_kv_table_t t, size_t *n)
{
    MDB_stat st;
    int rc = kv_error(mdb_stat(raw(txn), t, &st));
    *n = rc == 0 ? st.ms_entries : 0;
    return rc == AG_ENOTFOUND ? AG_ESTORAGE : rc;
}

int ag_kv_each(ag_kv_txn_t *txn, ag_kv_table_t t, ag_kv_each_fn fn, void *ud)
{
    MDB_cursor *cur;
    int rc = kv_error(mdb_cursor_open(raw(txn), t, &cur));
    if (rc)
        return rc == AG_ENOTFOUND ? AG_ESTORAGE : rc;
    MDB_val k, v;
    int mrc;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        bool drop = false;
        rc =
            fn(ud, (ag_kv_val_t){k.mv_data, k.mv_size}, (ag_kv_val_t){v.mv_data, v.mv_size}, &drop);
        if (rc == 0 && drop && (mrc = mdb_cursor_del(cur, 0)) != 0) {
            rc = kv_error(mrc);
            break;
        }
    }
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = kv_error(mrc);
    mdb_cursor_close(cur);
    return rc;
}
