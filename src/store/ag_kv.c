#include "ag_kv.h"

#include <errno.h>
#include <lmdb.h>
#include <stdatomic.h>
#include <stdio.h>

#include "ag_grow.h"
#include "ag_log.h"

#define MAX_TABLE_SLOTS 64

/* The environment's user context points back to the ag_kv_t, for the store's name in messages.
 * When a replicator is installed (ag_kv_set_repl, docs/CLUSTER.md), the environment is the local
 * copy of a replicated store: applied is the revision it reflects, tables[] names each open table
 * (by its LMDB handle) so a change can be sent by name. */
struct ag_kv {
    MDB_env *env;
    char what[48];
    char name[48]; /* what, spaces as '-': the store's name for the replicator */
    const ag_repl_t *repl;
    bool attached;            /* the first load is done; later applies tell the owner */
    _Atomic uint64_t applied; /* written with the LMDB write lock held */
    char tables[MAX_TABLE_SLOTS][32];
    ag_kv_remote_fn on_remote;
    void *on_remote_ctx;
};

/* A change recorded by a write transaction of a replicated store (bytes owned). */
typedef struct rec_change {
    unsigned dbi;
    void *key, *val;
    size_t klen, vlen;
    bool del;
} rec_change_t;

struct ag_kv_txn {
    MDB_txn *t;
    ag_kv_t *kv;
    bool write;
    uint64_t base; /* the revision the commit is compared against */
    rec_change_t *ch;
    size_t n, cap;
};

static const ag_repl_t *g_repl;

void ag_kv_set_repl(const ag_repl_t *repl)
{
    g_repl = repl;
}

bool ag_kv_replicated(const ag_kv_t *kv)
{
    return kv && kv->repl;
}

void ag_kv_set_on_remote(ag_kv_t *kv, ag_kv_remote_fn fn, void *ctx)
{
    kv->on_remote = fn;
    kv->on_remote_ctx = ctx;
}

int ag_kv_copy(ag_kv_t *kv, const char *dir)
{
    return mdb_env_copy2(kv->env, dir, MDB_CP_COMPACT) == 0 ? 0 : AG_EIO;
}

static MDB_txn *raw(ag_kv_txn_t *txn)
{
    return txn->t;
}

static void txn_free(ag_kv_txn_t *txn)
{
    for (size_t i = 0; i < txn->n; i++) {
        free(txn->ch[i].key);
        free(txn->ch[i].val);
    }
    free(txn->ch);
    free(txn);
}

/* Records a change of a replicated store's write transaction (bytes copied). */
static int record(ag_kv_txn_t *txn, unsigned dbi, const void *key, size_t klen, const void *val,
                  size_t vlen, bool del)
{
    if (!txn->kv->repl || !txn->write)
        return 0;
    if (dbi >= MAX_TABLE_SLOTS || !txn->kv->tables[dbi][0])
        return AG_ESTORAGE;
    if (AG_GROW(txn->ch, txn->cap, txn->n + 1, 8, 1 << 20) != 0)
        return AG_ENOMEM;
    rec_change_t *c = &txn->ch[txn->n];
    memset(c, 0, sizeof(*c));
    c->dbi = dbi;
    c->del = del;
    c->klen = klen;
    c->vlen = del ? 0 : vlen;
    if (!(c->key = malloc(klen ? klen : 1)) || (!del && !(c->val = malloc(vlen ? vlen : 1)))) {
        free(c->key);
        return AG_ENOMEM;
    }
    memcpy(c->key, key, klen);
    if (!del && vlen)
        memcpy(c->val, val, vlen);
    txn->n++;
    return 0;
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

static int kv_apply(void *sink, bool reset, const ag_repl_change_t *ch, size_t n, uint64_t rev);

/* Memory: *out owns the environment (ag_kv_close). */
int ag_kv_open(const char *dir, const char *what, size_t map_size, unsigned max_tables,
               ag_kv_t **out, ag_diag_t *diag)
{
    *out = NULL;
    ag_kv_t *kv = calloc(1, sizeof(*kv));
    if (!kv)
        return AG_ENOMEM;
    snprintf(kv->what, sizeof(kv->what), "%s", what);
    snprintf(kv->name, sizeof(kv->name), "%s", what);
    for (char *p = kv->name; *p; p++)
        if (*p == ' ' || *p == '/')
            *p = '-';
    if (max_tables + 2 > MAX_TABLE_SLOTS) {
        free(kv);
        return ag_fail(diag, AG_EINTERNAL, "%s: too many tables", what);
    }
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
    if (g_repl) {
        /* The local copy is replaced by the replicated state before anyone reads it. */
        kv->repl = g_repl;
        int rc = g_repl->attach(g_repl->ctx, kv->name, kv, kv_apply, diag);
        if (rc) {
            kv->repl = NULL;
            ag_kv_close(kv);
            return rc;
        }
        kv->attached = true;
    }
    *out = kv;
    return 0;
}

void ag_kv_close(ag_kv_t *kv)
{
    if (!kv)
        return;
    if (kv->repl)
        kv->repl->detach(kv->repl->ctx, kv);
    if (kv->env)
        mdb_env_close(kv->env);
    free(kv);
}

int ag_kv_begin(ag_kv_t *kv, bool write, ag_kv_txn_t **txn, ag_diag_t *diag)
{
    *txn = NULL;
    ag_kv_txn_t *x = calloc(1, sizeof(*x));
    if (!x)
        return ag_fail(diag, AG_ENOMEM, "%s: out of memory", kv->what);
    int mrc = mdb_txn_begin(kv->env, NULL, write ? 0 : MDB_RDONLY, &x->t);
    if (mrc) {
        free(x);
        return ag_fail(diag, kv_error(mrc) == AG_ENOMEM ? AG_ENOMEM : AG_ESTORAGE,
                       "%s: cannot begin a transaction: %s", kv->what, mdb_strerror(mrc));
    }
    x->kv = kv;
    x->write = write;
    if (write && kv->repl)
        x->base = kv->repl->base(kv->repl->ctx);
    *txn = x;
    return 0;
}

/* A replicated store's changes go to the replicator first (compare-and-swap against the base
 * revision); only when it accepted them is the local copy committed. */
int ag_kv_commit(ag_kv_txn_t *txn, ag_diag_t *diag)
{
    ag_kv_t *kv = txn->kv;
    uint64_t rev = 0;
    if (kv->repl && txn->write && txn->n) {
        ag_repl_change_t *ch = calloc(txn->n, sizeof(*ch));
        if (!ch) {
            ag_kv_abort(txn);
            return ag_fail(diag, AG_ENOMEM, "%s: out of memory", kv->what);
        }
        for (size_t i = 0; i < txn->n; i++) {
            const rec_change_t *c = &txn->ch[i];
            ch[i] =
                (ag_repl_change_t){kv->tables[c->dbi], c->key, c->klen, c->val, c->vlen, c->del};
        }
        int rc = kv->repl->commit(kv->repl->ctx, kv->name, txn->base, ch, txn->n, &rev, diag);
        free(ch);
        if (rc) {
            ag_kv_abort(txn);
            return rc;
        }
        atomic_store(&kv->applied, rev);
    }
    int mrc = mdb_txn_commit(raw(txn));
    if (rev)
        kv->repl->done(kv->repl->ctx, rev, mrc == 0);
    txn_free(txn);
    if (mrc) {
        int rc = kv_error(mrc);
        return ag_fail(diag, rc == AG_ENOTFOUND ? AG_ESTORAGE : rc, "%s: cannot commit: %s",
                       kv->what, mdb_strerror(mrc));
    }
    return 0;
}

void ag_kv_abort(ag_kv_txn_t *txn)
{
    if (!txn)
        return;
    mdb_txn_abort(raw(txn));
    txn_free(txn);
}

int ag_kv_table(ag_kv_txn_t *txn, const char *name, ag_kv_table_t *out)
{
    MDB_dbi dbi;
    if (strlen(name) >= sizeof(txn->kv->tables[0]))
        return AG_EINVAL;
    int rc = kv_error(mdb_dbi_open(raw(txn), name, MDB_CREATE, &dbi));
    if (rc == 0 && dbi >= MAX_TABLE_SLOTS)
        rc = AG_ESTORAGE;
    if (rc == 0) {
        snprintf(txn->kv->tables[dbi], sizeof(txn->kv->tables[dbi]), "%s", name);
        *out = dbi;
    }
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
    if (rc == 0)
        rc = record(txn, t, key, klen, val, vlen, false);
    return rc == AG_ENOTFOUND ? AG_ESTORAGE : rc;
}

int ag_kv_del(ag_kv_txn_t *txn, ag_kv_table_t t, const void *key, size_t klen)
{
    MDB_val k = {klen, (void *)key};
    int rc = kv_error(mdb_del(raw(txn), t, &k, NULL));
    if (rc == 0)
        rc = record(txn, t, key, klen, NULL, 0, true);
    return rc;
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
        if (rc == 0 && drop && (rc = record(txn, t, k.mv_data, k.mv_size, NULL, 0, true)) == 0 &&
            (mrc = mdb_cursor_del(cur, 0)) != 0) {
            rc = kv_error(mrc);
            break;
        }
    }
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = kv_error(mrc);
    mdb_cursor_close(cur);
    return rc;
}

/* ---- the local copy of a replicated store ------------------------------------------------ */

/* Empties every named table of the environment (their names are the main table's keys);
 * *dropped counts the records removed. */
static int clear_all(MDB_txn *t, size_t *dropped)
{
    MDB_dbi main_dbi;
    int mrc = mdb_dbi_open(t, NULL, 0, &main_dbi);
    if (mrc)
        return mrc;
    MDB_cursor *cur;
    if ((mrc = mdb_cursor_open(t, main_dbi, &cur)) != 0)
        return mrc;
    char names[MAX_TABLE_SLOTS][32];
    size_t n = 0;
    MDB_val k, v;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && n < MAX_TABLE_SLOTS;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size && k.mv_size < sizeof(names[0])) {
            memcpy(names[n], k.mv_data, k.mv_size);
            names[n++][k.mv_size] = '\0';
        }
    }
    mdb_cursor_close(cur);
    if (mrc != 0 && mrc != MDB_NOTFOUND)
        return mrc;
    for (size_t i = 0; i < n; i++) {
        MDB_dbi dbi;
        MDB_stat st;
        if ((mrc = mdb_dbi_open(t, names[i], 0, &dbi)) != 0 || (mrc = mdb_stat(t, dbi, &st)) != 0 ||
            (mrc = mdb_drop(t, dbi, 0)) != 0)
            return mrc;
        *dropped += st.ms_entries;
    }
    return 0;
}

static int kv_apply(void *sink, bool reset, const ag_repl_change_t *ch, size_t n, uint64_t rev)
{
    ag_kv_t *kv = sink;
    MDB_txn *t;
    int mrc = mdb_txn_begin(kv->env, NULL, 0, &t);
    if (mrc)
        return kv_error(mrc) == AG_ENOMEM ? AG_ENOMEM : AG_ESTORAGE;
    if (!reset && rev <= atomic_load(&kv->applied)) {
        mdb_txn_abort(t);
        return 1;
    }
    size_t dropped = 0;
    if (reset)
        mrc = clear_all(t, &dropped);
    for (size_t i = 0; mrc == 0 && i < n; i++) {
        MDB_dbi dbi;
        if ((mrc = mdb_dbi_open(t, ch[i].table, MDB_CREATE, &dbi)) != 0)
            break;
        MDB_val k = {ch[i].klen, (void *)ch[i].key}, v = {ch[i].vlen, (void *)ch[i].val};
        mrc = ch[i].del ? mdb_del(t, dbi, &k, NULL) : mdb_put(t, dbi, &k, &v, 0);
        if (mrc == MDB_NOTFOUND)
            mrc = 0;
    }
    if (mrc) {
        mdb_txn_abort(t);
        ag_log(AG_LOG_ERROR, "%s: cannot apply replicated changes: %s", kv->what,
               mdb_strerror(mrc));
        return kv_error(mrc) == AG_ENOMEM ? AG_ENOMEM : AG_ESTORAGE;
    }
    /* Joining a cluster replaces what a node kept on its own (docs/CLUSTER.md "Joining"). */
    if (reset && !kv->attached && dropped > n)
        ag_log(AG_LOG_WARN,
               "%s: the local copy held %zu records, the cluster's state %zu: the cluster's "
               "replaces it",
               kv->what, dropped, n);
    atomic_store(&kv->applied, rev);
    if ((mrc = mdb_txn_commit(t)) != 0) {
        ag_log(AG_LOG_ERROR, "%s: cannot commit replicated changes: %s", kv->what,
               mdb_strerror(mrc));
        return AG_ESTORAGE;
    }
    if (kv->attached && kv->on_remote)
        kv->on_remote(kv->on_remote_ctx);
    return 0;
}
