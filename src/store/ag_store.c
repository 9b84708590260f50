#include "ag_store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ag_clock.h"
#include "ag_cmp.h"
#include "ag_grow.h"
#include "ag_log.h"
#include "ag_metrics.h"
#include "store/ag_collection_int.h"
#include "store/ag_env.h"
#include "store/ag_snapshot.h"
#include "store/ag_store_int.h"
#include "json/ag_json.h"

typedef struct alias_entry {
    char *alias;
    char *target;
} alias_entry_t;

/* Collections and aliases a catalog holds at most (a bound for its arrays, far above use). */
#define MAX_ENTRIES (1u << 20)

struct ag_store {
    int lock_fd; /* <storage>/aegis.lock, write-locked for the life of the store; -1 = none */
    MDB_env *env;
    ag_env_gate_t gate; /* map growth (store/ag_env.h); set up once env is open */
    bool gate_ready;
    MDB_dbi meta;
    pthread_rwlock_t lock; /* guards the two registries below */
    ag_collection_t **colls;
    size_t ncolls, cap_colls;
    alias_entry_t *aliases;
    size_t naliases, cap_aliases;
    uint32_t next_cid;
    pthread_t flusher;
    bool flusher_running;
    pthread_t indexer;
    bool indexer_running;
    pthread_mutex_t stop_mutex;
    pthread_cond_t stop_cond;
    bool stopping;
    double flush_interval_s;
    double progress_s;     /* indexing progress lines: interval ... */
    uint32_t progress_min; /* ... and the queue length that makes them worth a line */
    /* Tenancy snapshots by collection name: {collection: <ag_tenancy_t *, as an integer>}.
     * Each snapshot is immutable (replaced, never edited) and shared with readers through its
     * own reference count, never jansson's (see ag_tenancy_t). A leaf lock. */
    pthread_rwlock_t tenancy_mu;
    json_t *tenancy;
};

/* One published tenancy snapshot {"key": k|null, "tenants": {...}}. Its JSON tree belongs to it
 * alone (no node shared with another tree) and is only ever read while published, so threads
 * share it without touching jansson's reference counts, whose unsynchronised reads are data
 * races; the last release frees it. */
struct ag_tenancy {
    _Atomic size_t refs;
    json_t *json;
};

const json_t *ag_tenancy_json(const ag_tenancy_t *t)
{
    return t ? t->json : NULL;
}

void ag_tenancy_release(ag_tenancy_t *t)
{
    if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1) {
        json_decref(t->json);
        free(t);
    }
}

/* A new snapshot owning json (taken, also on failure); NULL on ENOMEM. */
static ag_tenancy_t *tenancy_new(json_t *json)
{
    ag_tenancy_t *t = json ? malloc(sizeof(*t)) : NULL;
    if (!t) {
        json_decref(json);
        return NULL;
    }
    atomic_init(&t->refs, 1);
    t->json = json;
    return t;
}

/* The published snapshot of name (borrowed; caller holds tenancy_mu), or NULL. */
static ag_tenancy_t *tenancy_at(const ag_store_t *st, const char *name)
{
    json_t *slot = st->tenancy ? json_object_get(st->tenancy, name) : NULL;
    return slot ? (ag_tenancy_t *)(intptr_t)json_integer_value(slot) : NULL;
}

/* The JSON of name's published snapshot (borrowed; caller holds tenancy_mu), or NULL. */
static const json_t *tenancy_json_at(const ag_store_t *st, const char *name)
{
    return ag_tenancy_json(tenancy_at(st, name));
}

/* Unpublishes name's snapshot (readers holding it keep it). Caller holds tenancy_mu (write). */
static void tenancy_unpublish(ag_store_t *st, const char *name)
{
    ag_tenancy_t *old = tenancy_at(st, name);
    if (!old)
        return;
    json_object_del(st->tenancy, name);
    ag_tenancy_release(old);
}

/* Releases every published snapshot and the map (closing the store). */
static void tenancy_free_all(ag_store_t *st)
{
    const char *name;
    json_t *slot;
    json_object_foreach(st->tenancy, name, slot)
        ag_tenancy_release((ag_tenancy_t *)(intptr_t)json_integer_value(slot));
    json_decref(st->tenancy);
    st->tenancy = NULL;
}

/* ---- registry helpers (caller holds st->lock) ---------------------------------------------- */

static ssize_t find_coll(const ag_store_t *st, const char *name)
{
    for (size_t i = 0; i < st->ncolls; i++)
        if (strcmp(st->colls[i]->name, name) == 0)
            return (ssize_t)i;
    return -1;
}

static ssize_t find_alias(const alias_entry_t *a, size_t n, const char *alias)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(a[i].alias, alias) == 0)
            return (ssize_t)i;
    return -1;
}

static int push_coll(ag_store_t *st, ag_collection_t *c)
{
    if (AG_GROW(st->colls, st->cap_colls, st->ncolls + 1, 16, MAX_ENTRIES) != 0)
        return AG_ENOMEM;
    st->colls[st->ncolls++] = c;
    return 0;
}

static void aliases_free(alias_entry_t *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i].alias);
        free(a[i].target);
    }
    free(a);
}

/* ---- meta records -------------------------------------------------------------------------- */

static int meta_put_json(MDB_txn *txn, MDB_dbi dbi, const char *key, const json_t *v)
{
    char *text = ag_json_dump(v);
    if (!text)
        return AG_ENOMEM;
    MDB_val k = {strlen(key), (void *)key}, d = {strlen(text), text};
    int rc = mdb_put(txn, dbi, &k, &d, 0);
    free(text);
    return rc ? AG_ESTORAGE : 0;
}

static int meta_put_str(MDB_txn *txn, MDB_dbi dbi, const char *key, const char *val)
{
    MDB_val k = {strlen(key), (void *)key}, d = {strlen(val), (void *)val};
    return mdb_put(txn, dbi, &k, &d, 0) ? AG_ESTORAGE : 0;
}

static int meta_del(MDB_txn *txn, MDB_dbi dbi, const char *key)
{
    MDB_val k = {strlen(key), (void *)key};
    int rc = mdb_del(txn, dbi, &k, NULL);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : AG_ESTORAGE;
}

/* The catalog record of c (new reference, NULL on ENOMEM): its params, and schema when given
 * (borrowed), else a copy of c's published one. */
static json_t *coll_record(const ag_collection_t *c, const json_t *schema)
{
    json_t *own = schema ? json_deep_copy(schema) : ag_coll__schema_copy(c);
    return own ? json_pack("{s:i,s:O,s:o}", "cid", (json_int_t)c->cid, "params", c->params,
                           "schema", own)
               : NULL;
}

static void key_for(char *buf, size_t len, char kind, const char *name)
{
    snprintf(buf, len, "%c/%s", kind, name);
}

/* ---- tenancy snapshots --------------------------------------------------------------------- */

/* The tenant key of a payload schema: the (alphabetically first) keyword/uuid field whose
 * params.is_tenant is true, or NULL. Borrowed from schema. */
static const char *schema_tenant_key(const json_t *schema)
{
    const char *best = NULL, *field;
    json_t *def;
    json_object_foreach((json_t *)schema, field, def)
    {
        const char *type = json_string_value(json_object_get(def, "data_type"));
        json_t *params = json_object_get(def, "params");
        if (!type || (strcmp(type, "keyword") != 0 && strcmp(type, "uuid") != 0) ||
            !json_is_true(json_object_get(params, "is_tenant")))
            continue;
        if (!best || strcmp(field, best) < 0)
            best = field;
    }
    return best;
}

/* Replaces one part of collection name's snapshot: key (when set_key) and/or tenants (when not
 * NULL; borrowed, copied). Caller holds tenancy_mu. */
static int tenancy_put_locked(ag_store_t *st, const char *name, bool set_key, const char *key,
                              const json_t *tenants)
{
    if (!st->tenancy && !(st->tenancy = json_object()))
        return AG_ENOMEM;
    const json_t *old = tenancy_json_at(st, name);
    json_t *snap = json_object();
    /* Copies, never shared nodes: the new tree must belong to the new snapshot alone. */
    json_t *k = set_key ? (key ? json_string(key) : json_null())
                        : json_deep_copy(old ? json_object_get(old, "key") : NULL);
    json_t *t = tenants ? json_deep_copy(tenants)
                        : json_deep_copy(old ? json_object_get(old, "tenants") : NULL);
    if (!k)
        k = json_null();
    if (!t)
        t = json_object();
    if (!snap || !k || !t || json_object_set_new(snap, "key", k) != 0 ||
        json_object_set_new(snap, "tenants", t) != 0) {
        json_decref(snap);
        return AG_ENOMEM;
    }
    ag_tenancy_t *next = tenancy_new(snap);
    json_t *slot = next ? json_integer((json_int_t)(intptr_t)next) : NULL;
    if (!slot) {
        ag_tenancy_release(next);
        return AG_ENOMEM;
    }
    ag_tenancy_t *prev = tenancy_at(st, name);
    if (json_object_set_new(st->tenancy, name, slot) != 0) {
        ag_tenancy_release(next);
        return AG_ENOMEM;
    }
    ag_tenancy_release(prev);
    return 0;
}

static void tenancy_put(ag_store_t *st, const char *name, bool set_key, const char *key,
                        const json_t *tenants)
{
    pthread_rwlock_wrlock(&st->tenancy_mu);
    if (tenancy_put_locked(st, name, set_key, key, tenants) != 0)
        ag_log(AG_LOG_ERROR, "out of memory updating the tenants of '%s'", name);
    pthread_rwlock_unlock(&st->tenancy_mu);
}

static void tenancy_drop(ag_store_t *st, const char *name)
{
    pthread_rwlock_wrlock(&st->tenancy_mu);
    tenancy_unpublish(st, name);
    pthread_rwlock_unlock(&st->tenancy_mu);
}

/* ---- flusher ------------------------------------------------------------------------------- */

static void *flusher_main(void *arg)
{
    ag_store_t *st = arg;
    pthread_mutex_lock(&st->stop_mutex);
    while (!st->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long ns = (long)(st->flush_interval_s * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec += ns % 1000000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&st->stop_cond, &st->stop_mutex, &ts);
        pthread_mutex_unlock(&st->stop_mutex);
        int rc = mdb_env_sync(st->env, 1);
        if (rc)
            ag_log(AG_LOG_ERROR, "periodic storage sync failed: %s", mdb_strerror(rc));
        pthread_mutex_lock(&st->stop_mutex);
    }
    pthread_mutex_unlock(&st->stop_mutex);
    return NULL;
}

/* ---- background indexer -------------------------------------------------------------------- */

/* Indexing progress lines (docs/API.md "Logs"): every `interval` seconds while at least `min`
 * vectors wait to be linked, and one line when the queue has drained. */
typedef struct index_progress {
    double interval;
    uint64_t min;
    double next;     /* when the queue is next measured */
    double since;    /* when the current long queue was first reported */
    uint64_t linked; /* vectors linked since the last line */
    uint64_t total;  /* vectors linked since the long queue was first reported */
    bool reporting;  /* a long queue was reported and has not drained yet */
} index_progress_t;

/* Called once per collection while measuring; only the last call (last set) writes a line. */
static void progress_line(index_progress_t *pr, double now, uint64_t queued, const char *longest,
                          uint64_t longest_n, bool last)
{
    if (!last)
        return;
    pr->next = now + pr->interval;
    if (queued >= pr->min) {
        if (!pr->reporting) {
            pr->reporting = true;
            pr->since = now;
            pr->total = 0;
        }
        pr->total += pr->linked;
        ag_log(AG_LOG_INFO,
               "indexing: %llu vectors queued (most in '%s': %llu), %llu linked in the last "
               "%.3g s",
               (unsigned long long)queued, longest ? longest : "-", (unsigned long long)longest_n,
               (unsigned long long)pr->linked, pr->interval);
    } else if (pr->reporting && queued == 0) {
        pr->total += pr->linked;
        pr->reporting = false;
        ag_log(AG_LOG_INFO, "indexing: done, every queued vector is linked (%llu in %.1f s)",
               (unsigned long long)pr->total, now - pr->since);
    }
    pr->linked = 0;
}

/* Links queued points into the HNSW graphs, a small step per collection at a time, so ingestion
 * never waits for graph construction, and writes the graphs' checkpoints (paced by each collection,
 * docs/RELIABILITY.md, "Crash recovery"). Idle: sleeps until the next poll. */
static void *indexer_main(void *arg)
{
    ag_store_t *st = arg;
    enum { STEP = 32 };
    index_progress_t pr = {.interval = st->progress_s, .min = st->progress_min};
    pr.next = ag_now_mono() + pr.interval;
    /* Linking is background work: at the lowest priority it takes the CPU only when requests
     * leave it idle (Linux applies nice values per thread). Named, so tools and bench/ingest.mjs
     * can tell its CPU time from the request path's (/proc/<pid>/task/<tid>/comm). */
    (void)pthread_setname_np(pthread_self(), "ag-indexer");
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19) != 0)
        ag_log(AG_LOG_DEBUG, "indexer: cannot lower its priority");
    for (;;) {
        pthread_mutex_lock(&st->stop_mutex);
        bool stop = st->stopping;
        pthread_mutex_unlock(&st->stop_mutex);
        if (stop)
            break;
        ag_collection_t *batch[64];
        size_t n = 0;
        pthread_rwlock_rdlock(&st->lock);
        for (size_t i = 0; i < st->ncolls && n < AG_ARRAY_LEN(batch); i++) {
            batch[n] = st->colls[i];
            ag_coll_ref(batch[n++]);
        }
        pthread_rwlock_unlock(&st->lock);
        uint32_t done = 0;
        double now = ag_now_mono();
        bool due = now >= pr.next;
        uint64_t queued = 0;
        const char *longest = NULL;
        uint64_t longest_n = 0;
        for (size_t i = 0; i < n; i++) {
            done += ag_coll_index_step(batch[i], STEP);
            /* Checkpoints are written here, off every writer's path (paced by the collection). */
            ag_coll_index_checkpoint(batch[i]);
            if (due) {
                ag_coll_counts_t k;
                ag_coll_counts(batch[i], &k);
                queued += k.queued;
                if (k.queued > longest_n) {
                    longest_n = k.queued;
                    longest = ag_coll_name(batch[i]);
                }
                progress_line(&pr, now, queued, longest, longest_n, i + 1 == n);
            }
            ag_coll_unref(batch[i]);
            sched_yield(); /* let a waiting writer or search take the lock first */
        }
        if (due && n == 0)
            progress_line(&pr, now, 0, NULL, 0, true);
        pr.linked += done;
        ag_metrics_add(AG_M_VECTORS_LINKED, done);
        if (done == 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_mutex_lock(&st->stop_mutex);
            if (!st->stopping)
                pthread_cond_timedwait(&st->stop_cond, &st->stop_mutex, &ts);
            pthread_mutex_unlock(&st->stop_mutex);
        }
    }
    return NULL;
}

/* ---- open / close -------------------------------------------------------------------------- */

static int mkdir_p(const char *path)
{
    char buf[4096];
    if (strlen(path) >= sizeof(buf))
        return AG_EINVAL;
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0700) != 0 && errno != EEXIST)
                return AG_EIO;
            *p = '/';
        }
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
        return AG_EIO;
    return 0;
}

static int load_all(ag_store_t *st, ag_diag_t *diag)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc)
        return ag_fail(diag, AG_ESTORAGE, "cannot begin a transaction: %s", mdb_strerror(rc));
    if (mdb_dbi_open(txn, "meta", MDB_CREATE, &st->meta) != 0) {
        mdb_txn_abort(txn);
        return ag_fail(diag, AG_ESTORAGE, "cannot open the catalog");
    }
    MDB_cursor *cur;
    MDB_val k, v;
    if (mdb_cursor_open(txn, st->meta, &cur) != 0) {
        mdb_txn_abort(txn);
        return ag_fail(diag, AG_ESTORAGE, "cannot read the catalog");
    }
    st->next_cid = 1;
    int result = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && result == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        char key[600];
        if (k.mv_size >= sizeof(key))
            continue;
        memcpy(key, k.mv_data, k.mv_size);
        key[k.mv_size] = '\0';
        if (strncmp(key, "c/", 2) == 0) {
            json_error_t jerr;
            json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, &jerr);
            json_t *cid = json_object_get(rec, "cid");
            if (!rec || !json_is_integer(cid)) {
                json_decref(rec);
                result = ag_fail(diag, AG_ESTORAGE, "catalog record for '%s' is corrupt", key + 2);
                break;
            }
            ag_collection_t *c = NULL;
            result = ag_coll_open(st->env, txn, key + 2, (uint32_t)json_integer_value(cid),
                                  json_object_get(rec, "params"), json_object_get(rec, "schema"),
                                  false, &c, diag);
            json_decref(rec);
            if (result == 0)
                c->gate = &st->gate;
            if (result == 0)
                result = ag_coll_load(c, txn, diag);
            if (result == 0)
                result = push_coll(st, c);
            else if (c)
                ag_coll_unref(c);
            if (result == 0 && c->cid >= st->next_cid)
                st->next_cid = c->cid + 1;
            if (result == 0)
                tenancy_put(st, c->name, true, schema_tenant_key(c->schema), NULL);
            if (result == 0)
                ag_log(AG_LOG_INFO, "loaded collection '%s': %u points", c->name, c->live);
        } else if (strncmp(key, "a/", 2) == 0) {
            if (AG_GROW(st->aliases, st->cap_aliases, st->naliases + 1, 16, MAX_ENTRIES) != 0) {
                result = AG_ENOMEM;
                break;
            }
            alias_entry_t *a = &st->aliases[st->naliases];
            a->alias = strdup(key + 2);
            a->target = strndup(v.mv_data, v.mv_size);
            if (!a->alias || !a->target) {
                free(a->alias);
                free(a->target);
                result = AG_ENOMEM;
                break;
            }
            st->naliases++;
        } else if (strncmp(key, "t/", 2) == 0) {
            json_error_t jerr;
            json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, &jerr);
            if (!json_is_object(rec)) {
                json_decref(rec);
                result = ag_fail(diag, AG_ESTORAGE, "tenant record for '%s' is corrupt", key + 2);
                break;
            }
            tenancy_put(st, key + 2, false, NULL, rec);
            json_decref(rec);
        } else if (strncmp(key, "r/", 2) == 0) {
            /* A restore staged but never swapped in (the server died): drop its databases. */
            json_error_t jerr;
            json_t *rec = json_loadb(v.mv_data, v.mv_size, 0, &jerr);
            json_t *cid = json_object_get(rec, "cid");
            ag_collection_t *c = NULL;
            ag_diag_t ig = {{0}};
            if (json_is_integer(cid) &&
                ag_coll_open(st->env, txn, "staged", (uint32_t)json_integer_value(cid),
                             json_object_get(rec, "params"), json_object_get(rec, "schema"), false,
                             &c, &ig) == 0) {
                if (ag_coll_drop_dbs(c, txn) != 0)
                    result = ag_fail(diag, AG_ESTORAGE, "cannot drop a staged restore");
                ag_coll_drop_index_files(c); /* loading: no gate held, no checkpoint running */
                ag_coll_unref(c);
            }
            json_decref(rec);
            if (result == 0 && mdb_cursor_del(cur, 0) != 0)
                result = ag_fail(diag, AG_ESTORAGE, "cannot drop a staged restore");
            if (result == 0)
                ag_log(AG_LOG_WARN, "dropped a restore interrupted before it completed (%s)", key);
        } else if (strcmp(key, "seq") == 0 && v.mv_size == 4) {
            uint32_t seq;
            memcpy(&seq, v.mv_data, 4);
            if (seq > st->next_cid)
                st->next_cid = seq;
        }
    }
    mdb_cursor_close(cur);
    if (result) {
        mdb_txn_abort(txn);
        return result;
    }
    rc = mdb_txn_commit(txn);
    return rc ? ag_fail(diag, AG_ESTORAGE, "cannot commit: %s", mdb_strerror(rc)) : 0;
}

/*
 * One process per storage directory: a write lock (fcntl) on <path>/aegis.lock, taken before
 * anything in the directory is read and held until ag_store_close (the kernel drops it when the
 * process dies, so a crash never leaves it behind). A second server on the same directory stops
 * at once, naming the directory and the holder's pid. The file also holds the pid, for people.
 */
static int lock_storage(ag_store_t *st, const char *path, ag_diag_t *diag)
{
    char file[4096];
    int n = snprintf(file, sizeof(file), "%s/aegis.lock", path);
    if (n < 0 || (size_t)n >= sizeof(file))
        return ag_fail(diag, AG_ECONFIG, "storage path is too long");
    int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return ag_fail(diag, AG_EIO, "cannot open the storage lock '%s': %s", file,
                       strerror(errno));
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        int err = errno;
        struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        long pid = fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK ? (long)who.l_pid : 0;
        close(fd);
        if (err == EACCES || err == EAGAIN)
            return ag_fail(diag, AG_ECONFIG,
                           "storage directory '%s' is in use by another Aegis process (pid %ld); "
                           "stop it, or give this one another storage.storage_path",
                           path, pid);
        return ag_fail(diag, AG_EIO, "cannot lock the storage directory '%s': %s", path,
                       strerror(err));
    }
    char text[32];
    int len = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)len, 0) != len)
        ag_log(AG_LOG_WARN, "cannot write the pid into %s (the lock is held anyway)", file);
    st->lock_fd = fd;
    return 0;
}

int ag_store_open(const ag_store_config_t *cfg, ag_store_t **out, ag_diag_t *diag)
{
    ag_store_t *st = calloc(1, sizeof(*st));
    if (!st)
        return AG_ENOMEM;
    pthread_rwlock_init(&st->lock, NULL);
    pthread_mutex_init(&st->stop_mutex, NULL);
    pthread_cond_init(&st->stop_cond, NULL);
    pthread_rwlock_init(&st->tenancy_mu, NULL);
    st->flush_interval_s = cfg->flush_interval_s > 0 ? cfg->flush_interval_s : 1.0;
    st->progress_s = cfg->progress_s > 0 ? cfg->progress_s : 5.0;
    st->progress_min = cfg->progress_min ? cfg->progress_min : 1000;
    int rc;
    st->lock_fd = -1;
    if (mkdir_p(cfg->path) != 0) {
        rc = ag_fail(diag, AG_EIO, "cannot create the storage directory '%s'", cfg->path);
        goto fail;
    }
    if ((rc = lock_storage(st, cfg->path, diag)) != 0)
        goto fail;
    if ((rc = mdb_env_create(&st->env)) != 0 || (rc = mdb_env_set_maxdbs(st->env, 32768)) != 0 ||
        (rc = mdb_env_set_mapsize(st->env, cfg->map_size)) != 0 ||
        (rc = mdb_env_set_maxreaders(st->env, 512)) != 0) {
        rc = ag_fail(diag, AG_ESTORAGE, "cannot set up LMDB: %s", mdb_strerror(rc));
        goto fail;
    }
    rc = mdb_env_open(st->env, cfg->path, MDB_NOMETASYNC | MDB_NOTLS, 0600);
    if (rc) {
        rc =
            ag_fail(diag, AG_ESTORAGE, "cannot open storage '%s': %s", cfg->path, mdb_strerror(rc));
        goto fail;
    }
    /* The map starts at storage.initial_map_size_mb (or what the data file already needs) and
     * grows up to storage.map_size_gb (store/ag_env.h). */
    ag_env_gate_init(&st->gate, st->env, cfg->map_max ? cfg->map_max : cfg->map_size);
    st->gate_ready = true;
    int stale = 0;
    mdb_reader_check(st->env, &stale);
    if ((rc = load_all(st, diag)) != 0)
        goto fail;
    if (pthread_create(&st->flusher, NULL, flusher_main, st) == 0)
        st->flusher_running = true;
    if (pthread_create(&st->indexer, NULL, indexer_main, st) == 0)
        st->indexer_running = true;
    *out = st;
    return 0;
fail:
    ag_store_close(st);
    return rc;
}

void ag_store_close(ag_store_t *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->stop_mutex);
    st->stopping = true;
    pthread_cond_broadcast(&st->stop_cond);
    pthread_mutex_unlock(&st->stop_mutex);
    if (st->flusher_running)
        pthread_join(st->flusher, NULL);
    if (st->indexer_running)
        pthread_join(st->indexer, NULL);
    for (size_t i = 0; i < st->ncolls; i++) {
        ag_collection_t *c = st->colls[i];
        pthread_mutex_lock(&c->write_mutex);
        /* A clean shutdown: the graphs are written for the next start (the indexer is stopped,
         * writes are over), then no write may start after the environment is gone. */
        if (ag_coll_save_indexes(c) != 0)
            ag_log(AG_LOG_WARN,
                   "collection '%s': the graph could not be saved; it is rebuilt at "
                   "the next start",
                   c->name);
        c->dropped = true;
        pthread_mutex_unlock(&c->write_mutex);
        ag_coll_unref(c);
    }
    free(st->colls);
    aliases_free(st->aliases, st->naliases);
    if (st->env) {
        mdb_env_sync(st->env, 1);
        if (st->gate_ready)
            ag_env_read_drop(&st->gate); /* spare read transactions first */
        mdb_env_close(st->env);
    }
    if (st->gate_ready)
        ag_env_gate_destroy(&st->gate);
    if (st->lock_fd >= 0)
        close(st->lock_fd); /* releases the storage lock */
    pthread_rwlock_destroy(&st->lock);
    pthread_mutex_destroy(&st->stop_mutex);
    pthread_cond_destroy(&st->stop_cond);
    tenancy_free_all(st);
    pthread_rwlock_destroy(&st->tenancy_mu);
    free(st);
}

int ag_store_sync(ag_store_t *st)
{
    return mdb_env_sync(st->env, 1) ? AG_EIO : 0;
}

/* ---- lookups ------------------------------------------------------------------------------- */

int ag_store_get(ag_store_t *st, const char *name, ag_collection_t **out, bool *via_alias)
{
    pthread_rwlock_rdlock(&st->lock);
    ssize_t i = find_coll(st, name);
    bool alias = false;
    if (i < 0) {
        ssize_t a = find_alias(st->aliases, st->naliases, name);
        if (a >= 0) {
            i = find_coll(st, st->aliases[a].target);
            alias = true;
        }
    }
    if (i >= 0) {
        *out = st->colls[i];
        ag_coll_ref(*out);
    }
    pthread_rwlock_unlock(&st->lock);
    if (via_alias)
        *via_alias = alias;
    return i >= 0 ? 0 : AG_ENOTFOUND;
}

int ag_store_alias_target(ag_store_t *st, const char *alias, char *buf, size_t len)
{
    pthread_rwlock_rdlock(&st->lock);
    ssize_t a = find_alias(st->aliases, st->naliases, alias);
    if (a >= 0)
        snprintf(buf, len, "%s", st->aliases[a].target);
    pthread_rwlock_unlock(&st->lock);
    return a >= 0 ? 0 : AG_ENOTFOUND;
}

json_t *ag_store_list(ag_store_t *st)
{
    pthread_rwlock_rdlock(&st->lock);
    json_t **names = calloc(st->ncolls + 1, sizeof(json_t *));
    size_t n = st->ncolls;
    for (size_t i = 0; names && i < n; i++)
        names[i] = json_string(st->colls[i]->name);
    pthread_rwlock_unlock(&st->lock);
    json_t *arr = json_array();
    if (!names || !arr) {
        free(names);
        json_decref(arr);
        return NULL;
    }
    qsort(names, n, sizeof(json_t *), ag_cmp_json_str);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, names[i]);
    free(names);
    return arr;
}

json_t *ag_store_aliases(ag_store_t *st, const char *collection)
{
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    pthread_rwlock_rdlock(&st->lock);
    for (size_t i = 0; i < st->naliases; i++) {
        if (collection && strcmp(st->aliases[i].target, collection) != 0)
            continue;
        json_array_append_new(arr, json_pack("{s:s,s:s}", "alias_name", st->aliases[i].alias,
                                             "collection_name", st->aliases[i].target));
    }
    pthread_rwlock_unlock(&st->lock);
    return arr;
}

/* ---- catalog changes ----------------------------------------------------------------------- */

/* ---- catalog transactions: inside the map-size gate (store/ag_env.h) ----------------------- */

/* Every write transaction of the catalog: the map is grown first if it is getting full, and the
 * transaction holds the gate (shared) from begin to commit or abort. */
static int txn_begin(ag_store_t *st, MDB_txn **txn)
{
    ag_env_headroom(&st->gate);
    ag_env_enter(&st->gate);
    int rc = mdb_txn_begin(st->env, NULL, 0, txn);
    if (rc)
        ag_env_leave(&st->gate);
    return rc;
}

static int txn_commit(ag_store_t *st, MDB_txn *txn)
{
    int rc = mdb_txn_commit(txn);
    ag_env_leave(&st->gate);
    if (rc == 0)
        ag_op_meta_touch(); /* after the commit (partial-snapshot manifests) */
    return rc;
}

static void txn_abort(ag_store_t *st, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    ag_env_leave(&st->gate);
}

int ag_store_create(ag_store_t *st, const char *name, const json_t *params, ag_diag_t *diag)
{
    pthread_rwlock_wrlock(&st->lock);
    int rc;
    MDB_txn *txn = NULL;
    ag_collection_t *c = NULL;
    if (find_coll(st, name) >= 0 || find_alias(st->aliases, st->naliases, name) >= 0) {
        rc = ag_fail(diag, AG_EEXIST, "Collection `%s` already exists!", name);
        goto out;
    }
    if ((rc = txn_begin(st, &txn)) != 0) {
        rc = ag_fail(diag, AG_ESTORAGE, "cannot begin a transaction: %s", mdb_strerror(rc));
        goto out;
    }
    uint32_t cid = st->next_cid;
    if ((rc = ag_coll_open(st->env, txn, name, cid, params, NULL, true, &c, diag)) != 0)
        goto out;
    c->gate = &st->gate;
    char key[AG_MAX_NAME_LEN + 8];
    key_for(key, sizeof(key), 'c', name);
    json_t *rec = coll_record(c, NULL);
    uint32_t seq = cid + 1;
    rc = rec ? meta_put_json(txn, st->meta, key, rec) : AG_ENOMEM;
    json_decref(rec);
    if (rc == 0) {
        MDB_val k = {3, (void *)"seq"}, v = {4, &seq};
        rc = mdb_put(txn, st->meta, &k, &v, 0) ? AG_ESTORAGE : 0;
    }
    if (rc == 0) {
        key_for(key, sizeof(key), 't', name); /* no stale tenants from an earlier namesake */
        rc = meta_del(txn, st->meta, key);
    }
    if (rc == 0)
        rc = push_coll(st, c); /* reserve before commit so a failure leaves nothing behind */
    if (rc) {
        rc = ag_fail(diag, rc, "cannot store the new collection");
        goto out;
    }
    if ((rc = txn_commit(st, txn)) != 0) {
        txn = NULL;
        st->ncolls--;
        rc = ag_fail(diag, AG_ESTORAGE, "cannot commit: %s", mdb_strerror(rc));
        goto out;
    }
    txn = NULL;
    c = NULL;
    st->next_cid = seq;
    tenancy_drop(st, name);
    tenancy_put(st, name, true, NULL, NULL);
    mdb_env_sync(st->env, 1);
    rc = 0;
out:
    if (txn)
        txn_abort(st, txn);
    if (c)
        ag_coll_unref(c);
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

/* Locks collection `name` (through an alias too when via_alias) for a catalog change, in the
 * store's one lock order: the collection's write mutex first, then the catalog lock (a writer
 * holding its write mutex may read the catalog; docs/ARCHITECTURE.md, "Locks"). On 0, both are
 * held, *out is the collection (the caller owns one reference, besides the catalog's) and *idx
 * its place in st->colls. AG_ENOTFOUND, holding nothing, when there is no such collection. */
static int lock_for_change(ag_store_t *st, const char *name, bool via_alias, ag_collection_t **out,
                           ssize_t *idx)
{
    for (;;) {
        pthread_rwlock_rdlock(&st->lock);
        ssize_t i = find_coll(st, name);
        if (i < 0 && via_alias) {
            ssize_t a = find_alias(st->aliases, st->naliases, name);
            i = a >= 0 ? find_coll(st, st->aliases[a].target) : -1;
        }
        ag_collection_t *c = i >= 0 ? st->colls[i] : NULL;
        if (c)
            ag_coll_ref(c);
        pthread_rwlock_unlock(&st->lock);
        if (!c)
            return AG_ENOTFOUND;
        pthread_mutex_lock(&c->write_mutex); /* wait for a running write, block new ones */
        pthread_rwlock_wrlock(&st->lock);
        i = find_coll(st, c->name);
        if (i >= 0 && st->colls[i] == c && !c->dropped) {
            *out = c;
            *idx = i;
            return 0;
        }
        /* replaced or deleted while we waited: look again */
        pthread_rwlock_unlock(&st->lock);
        pthread_mutex_unlock(&c->write_mutex);
        ag_coll_unref(c);
    }
}

int ag_store_delete(ag_store_t *st, const char *name, bool *existed, ag_diag_t *diag)
{
    *existed = false;
    ag_collection_t *c;
    ssize_t i;
    if (lock_for_change(st, name, false, &c, &i) != 0)
        return 0;
    MDB_txn *txn;
    int rc = txn_begin(st, &txn);
    if (rc == 0) {
        char key[AG_MAX_NAME_LEN + 8];
        key_for(key, sizeof(key), 'c', name);
        rc = meta_del(txn, st->meta, key);
        if (rc == 0) {
            key_for(key, sizeof(key), 't', name);
            rc = meta_del(txn, st->meta, key);
        }
        for (size_t a = 0; rc == 0 && a < st->naliases; a++) {
            if (strcmp(st->aliases[a].target, name) != 0)
                continue;
            key_for(key, sizeof(key), 'a', st->aliases[a].alias);
            rc = meta_del(txn, st->meta, key);
        }
        if (rc == 0)
            rc = ag_coll_drop_dbs(c, txn);
        if (rc == 0)
            rc = txn_commit(st, txn) ? AG_ESTORAGE : 0;
        else
            txn_abort(st, txn);
    } else {
        rc = AG_ESTORAGE;
    }
    if (rc == 0) {
        ag_coll_drop_index_files(c); /* after the commit: the gate is not held */
        c->dropped = true;
        st->colls[i] = st->colls[--st->ncolls];
        size_t w = 0;
        for (size_t a = 0; a < st->naliases; a++) {
            if (strcmp(st->aliases[a].target, name) == 0) {
                free(st->aliases[a].alias);
                free(st->aliases[a].target);
            } else {
                st->aliases[w++] = st->aliases[a];
            }
        }
        st->naliases = w;
        *existed = true;
        tenancy_drop(st, name);
        mdb_env_sync(st->env, 1);
    }
    pthread_rwlock_unlock(&st->lock);
    pthread_mutex_unlock(&c->write_mutex);
    if (rc == 0)
        ag_coll_unref(c); /* the catalog's reference */
    ag_coll_unref(c);     /* ours */
    return rc ? ag_fail(diag, rc, "cannot delete collection '%s'", name) : 0;
}

/* Stores c's catalog record, with schema (borrowed) or, when NULL, c's published schema. */
static int persist_coll(ag_store_t *st, ag_collection_t *c, const json_t *schema, ag_diag_t *diag)
{
    MDB_txn *txn;
    int rc = txn_begin(st, &txn);
    if (rc)
        return ag_fail(diag, AG_ESTORAGE, "cannot begin a transaction: %s", mdb_strerror(rc));
    char key[AG_MAX_NAME_LEN + 8];
    key_for(key, sizeof(key), 'c', c->name);
    json_t *rec = coll_record(c, schema);
    rc = rec ? meta_put_json(txn, st->meta, key, rec) : AG_ENOMEM;
    json_decref(rec);
    if (rc) {
        txn_abort(st, txn);
        return ag_fail(diag, rc, "cannot store the collection's settings");
    }
    if (txn_commit(st, txn) != 0)
        return ag_fail(diag, AG_ESTORAGE, "cannot commit the collection's settings");
    mdb_env_sync(st->env, 1);
    return 0;
}

/* Stores next (borrowed) as c's payload schema, unless it would move the tenant key of declared
 * tenants. Caller holds c's write mutex; publishing next is the caller's. */
static int save_schema(ag_store_t *st, ag_collection_t *c, const json_t *next, ag_diag_t *diag)
{
    /* Declared tenants are enforced through the tenant key: while any is declared, no schema
     * change may move, drop or retype it (docs/SECURITY.md "Tenants"). */
    const char *key = schema_tenant_key(next);
    pthread_rwlock_rdlock(&st->tenancy_mu);
    const json_t *snap = tenancy_json_at(st, c->name);
    const char *cur = json_string_value(json_object_get(snap, "key"));
    size_t declared = json_object_size(json_object_get(snap, "tenants"));
    bool moves = declared > 0 && (!key || !cur || strcmp(key, cur) != 0);
    char was[AG_MAX_NAME_LEN + 1];
    snprintf(was, sizeof(was), "%s", cur ? cur : "");
    pthread_rwlock_unlock(&st->tenancy_mu);
    if (moves)
        return ag_fail(diag, AG_ECONFLICT,
                       "the payload index on `%.200s` is the tenant key of %zu declared tenant(s); "
                       "it cannot be dropped, replaced or joined by another is_tenant index while "
                       "tenants are declared (delete them first)",
                       was, declared);
    return persist_coll(st, c, next, diag);
}

/* The schema is never changed in place (searches read it concurrently): the change is made on a
 * copy, stored, then published (ag_coll__set_schema). */
int ag_store_set_index(ag_store_t *st, ag_collection_t *c, const char *field, json_t *def,
                       bool *existed, ag_diag_t *diag)
{
    json_t *next = ag_coll__schema_copy(c);
    if (!next) {
        json_decref(def);
        return ag_fail(diag, AG_ENOMEM, "out of memory changing the payload index");
    }
    bool had = json_object_get(next, field) != NULL;
    if (existed)
        *existed = had;
    if (!def && !had) {
        json_decref(next);
        return 0;
    }
    int rc = def ? json_object_set_new(next, field, def) : json_object_del(next, field);
    if (rc) {
        json_decref(next);
        return ag_fail(diag, AG_ENOMEM, "out of memory changing the payload index");
    }
    if ((rc = save_schema(st, c, next, diag)) != 0) {
        json_decref(next);
        return rc;
    }
    ag_coll__set_schema(c, next); /* c owns next now; only this writer can replace it */
    tenancy_put(st, c->name, true, schema_tenant_key(next), NULL);
    return 0;
}

/* ---- tenants ------------------------------------------------------------------------------- */

/* The tenancy snapshot of c, taking only tenancy_mu (never the store lock). */
static int tenancy_of(ag_store_t *st, const ag_collection_t *c, ag_tenancy_t **out)
{
    pthread_rwlock_rdlock(&st->tenancy_mu);
    ag_tenancy_t *t = tenancy_at(st, c->name);
    if (t)
        atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    pthread_rwlock_unlock(&st->tenancy_mu);
    if (!t)
        t = tenancy_new(json_pack("{s:n,s:{}}", "key", "tenants"));
    *out = t;
    return t ? 0 : AG_ENOMEM;
}

int ag_store_tenancy(ag_store_t *st, const char *name, ag_tenancy_t **out)
{
    *out = NULL;
    ag_collection_t *c;
    if (ag_store_get(st, name, &c, NULL) != 0)
        return AG_ENOTFOUND;
    int rc = tenancy_of(st, c, out);
    ag_coll_unref(c);
    return rc;
}

int ag_store_tenancy_locked(ag_store_t *st, ag_collection_t *c, ag_tenancy_t **out)
{
    *out = NULL;
    if (c->dropped) /* set under the write mutex the caller holds */
        return AG_ENOTFOUND;
    return tenancy_of(st, c, out);
}

/* Writes next as c's tenant record and, once committed and synced, publishes it. Caller holds
 * c's write mutex (so tenant changes of one collection are serialised) but not tenancy_mu, which
 * is taken only to publish: readers never wait for the sync. */
static int tenants_commit(ag_store_t *st, ag_collection_t *c, const json_t *next, ag_diag_t *diag)
{
    MDB_txn *txn;
    if (txn_begin(st, &txn) != 0)
        return ag_fail(diag, AG_ESTORAGE, "cannot begin a transaction");
    char key[AG_MAX_NAME_LEN + 8];
    key_for(key, sizeof(key), 't', c->name);
    int rc = meta_put_json(txn, st->meta, key, next);
    if (rc) {
        txn_abort(st, txn);
        return ag_fail(diag, rc, "cannot store the tenants of '%s'", c->name);
    }
    if (txn_commit(st, txn) != 0)
        return ag_fail(diag, AG_ESTORAGE, "cannot commit the tenants of '%s'", c->name);
    if (mdb_env_sync(st->env, 1) != 0)
        return ag_fail(diag, AG_EIO, "cannot sync the tenants of '%s'", c->name);
    pthread_rwlock_wrlock(&st->tenancy_mu);
    int prc = tenancy_put_locked(st, c->name, false, NULL, next);
    pthread_rwlock_unlock(&st->tenancy_mu);
    return prc ? ag_fail(diag, AG_ENOMEM, "out of memory") : 0;
}

static json_t *tenants_copy(ag_store_t *st, const char *name)
{
    pthread_rwlock_rdlock(&st->tenancy_mu);
    const json_t *snap = tenancy_json_at(st, name);
    json_t *t = snap ? json_object_get(snap, "tenants") : NULL;
    json_t *copy = t ? json_deep_copy(t) : json_object();
    pthread_rwlock_unlock(&st->tenancy_mu);
    return copy;
}

int ag_store_tenant_set(ag_store_t *st, ag_collection_t *c, const char *tenant, bool create,
                        bool active, ag_diag_t *diag)
{
    json_t *next = tenants_copy(st, c->name);
    int rc = next ? 0 : AG_ENOMEM;
    json_t *cur = next ? json_object_get(next, tenant) : NULL;
    if (rc == 0 && create && cur)
        rc = ag_fail(diag, AG_EEXIST, "tenant `%s` already exists in collection `%s`", tenant,
                     c->name);
    else if (rc == 0 && !create && !cur)
        rc = ag_fail(diag, AG_ENOTFOUND, "tenant `%s` doesn't exist in collection `%s`", tenant,
                     c->name);
    if (rc == 0 && json_object_set_new(next, tenant, json_pack("{s:b}", "active", active)) != 0)
        rc = AG_ENOMEM;
    if (rc == 0)
        rc = tenants_commit(st, c, next, diag);
    json_decref(next);
    return rc;
}

int ag_store_tenant_remove(ag_store_t *st, ag_collection_t *c, const char *tenant, ag_diag_t *diag)
{
    json_t *next = tenants_copy(st, c->name);
    int rc = next ? 0 : AG_ENOMEM;
    if (rc == 0 && json_object_del(next, tenant) != 0)
        rc = ag_fail(diag, AG_ENOTFOUND, "tenant `%s` doesn't exist in collection `%s`", tenant,
                     c->name);
    if (rc == 0)
        rc = tenants_commit(st, c, next, diag);
    json_decref(next);
    return rc;
}

/* Merges src's keys into dst recursively (objects merge, other values replace). A
 * quantization_config is replaced whole (one method at a time), and "Disabled" removes it. */
static int merge_into(json_t *dst, const json_t *src)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)src, k, v)
    {
        json_t *cur = json_object_get(dst, k);
        if (json_is_null(v)) /* Qdrant's config diffs: null leaves the setting as it is */
            continue;
        if (strcmp(k, "quantization_config") == 0) {
            if (json_is_string(v)) /* "Disabled" (checked by ag_coll_check_settings) */
                json_object_del(dst, k);
            else if (json_object_set_new(dst, k, json_deep_copy(v)) != 0)
                return AG_ENOMEM;
            continue;
        }
        if (json_is_object(cur) && json_is_object(v)) {
            if (merge_into(cur, v) != 0)
                return AG_ENOMEM;
        } else if (json_object_set_new(dst, k, json_deep_copy(v)) != 0) {
            return AG_ENOMEM;
        }
    }
    return 0;
}

/* check_only: every check of the PATCH, nothing changed (cluster mode refuses a PATCH before
 * recording it in etcd; docs/CLUSTER.md "Collections"). */
static int update_params(ag_store_t *st, const char *name, const json_t *patch, bool check_only,
                         bool *changes, ag_diag_t *diag)
{
    ag_collection_t *c;
    if (ag_store_get(st, name, &c, NULL) != 0)
        return ag_fail(diag, AG_ENOTFOUND, "Collection `%s` doesn't exist!", name);
    int rc = ag_coll_write_begin(c);
    if (rc) {
        ag_coll_unref(c);
        return ag_fail(diag, rc, "Collection `%s` doesn't exist!", name);
    }
    json_t *next = json_deep_copy(c->params);
    rc = next ? 0 : AG_ENOMEM;
    if (rc == 0)
        rc = ag_coll_check_settings(patch, true, diag);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)patch, k, v)
    {
        if (rc)
            break;
        if (json_is_null(v))
            continue;
        if (strcmp(k, "params") == 0) {
            rc = merge_into(next, v);
        } else if (strcmp(k, "vectors") == 0) {
            json_t *vecs = json_object_get(next, "vectors");
            const char *vn;
            json_t *vp;
            json_object_foreach(v, vn, vp)
            {
                json_t *target = c->unnamed && vn[0] == '\0' ? vecs : json_object_get(vecs, vn);
                if (!target) {
                    rc = ag_fail(diag, AG_EINVAL, "vectors.%.200s: no such vector", vn);
                    break;
                }
                /* Where the rows live is fixed at creation (store/ag_coll_disk.c). */
                const json_t *od = json_object_get(vp, "on_disk");
                if (json_is_boolean(od) &&
                    json_is_true(od) != json_is_true(json_object_get(target, "on_disk"))) {
                    rc = ag_fail(diag, AG_EINVAL,
                                 "vectors.%.200s.on_disk: cannot be changed on an existing "
                                 "collection (create a new one with the setting)",
                                 vn);
                    break;
                }
                if ((rc = merge_into(target, vp)) != 0)
                    break;
            }
        } else if (strcmp(k, "sparse_vectors") == 0) {
            json_t *sv = json_object_get(next, "sparse_vectors");
            const char *vn;
            json_t *vp;
            json_object_foreach(v, vn, vp)
            {
                json_t *target = json_object_get(sv, vn);
                if (!target) {
                    rc = ag_fail(diag, AG_EINVAL, "sparse_vectors.%.200s: no such vector", vn);
                    break;
                }
                if ((rc = merge_into(target, vp)) != 0)
                    break;
            }
        } else if (strcmp(k, "quantization_config") == 0) {
            json_t *one = json_pack("{s:O}", k, v);
            rc = one ? merge_into(next, one) : AG_ENOMEM;
            json_decref(one);
        } else if (strcmp(k, "metadata") == 0 && json_is_object(v)) {
            /* Qdrant's metadata patch: keys merged one level deep, a null value removes its key */
            json_t *cur = json_object_get(next, k);
            if (!json_is_object(cur)) {
                json_object_set_new(next, k, json_object());
                cur = json_object_get(next, k);
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv)
            {
                if (rc == 0)
                    rc = json_is_null(mv)
                             ? (json_object_del(cur, mk), 0)
                             : (json_object_set_new(cur, mk, json_deep_copy(mv)) ? AG_ENOMEM : 0);
            }
        } else {
            json_t *cur = json_object_get(next, k);
            if (!json_is_object(cur)) {
                json_object_set_new(next, k, json_object());
                cur = json_object_get(next, k);
            }
            rc = json_is_object(v) ? merge_into(cur, v)
                                   : json_object_set_new(next, k, json_deep_copy(v));
        }
    }
    if (check_only) {
        if (changes)
            *changes = rc == 0 && !json_equal(next, c->params);
        json_decref(next);
        ag_coll_write_end(c);
        ag_coll_unref(c);
        return rc;
    }
    /* A changed hnsw_config gets new graphs now, built in the background (nothing is visible
     * until the new parameters are stored). */
    ag_index_t *fresh[AG_MAX_VECTORS];
    if (rc == 0 && (rc = ag_coll_hnsw_prepare(c, next, fresh)) != 0)
        ag_fail(diag, rc, "hnsw_config: out of memory building the new index");
    if (rc == 0) {
        /* Readers look at params under the read lock: swap it under the write lock. */
        pthread_rwlock_wrlock(&c->lock);
        json_t *old = c->params;
        c->params = next;
        pthread_rwlock_unlock(&c->lock);
        rc = persist_coll(st, c, NULL, diag);
        pthread_rwlock_wrlock(&c->lock);
        if (rc) {
            c->params = old;
            json_decref(next);
        } else {
            json_decref(old);
            /* Out of memory leaves that vector searching its float vectors (logged). */
            if (ag_coll__apply_quant(c) != 0)
                ag_log(AG_LOG_WARN,
                       "collection '%s': out of memory building quantized vectors; searches "
                       "use the float vectors",
                       c->name);
        }
        pthread_rwlock_unlock(&c->lock);
        if (rc)
            ag_coll_hnsw_discard(c, fresh);
        else
            ag_coll_hnsw_commit(c, fresh);
    } else {
        json_decref(next);
    }
    ag_coll_write_end(c);
    ag_coll_unref(c);
    return rc;
}

int ag_store_update_params(ag_store_t *st, const char *name, const json_t *patch, ag_diag_t *diag)
{
    return update_params(st, name, patch, false, NULL, diag);
}

int ag_store_update_check(ag_store_t *st, const char *name, const json_t *patch, bool *changes,
                          ag_diag_t *diag)
{
    return update_params(st, name, patch, true, changes, diag);
}

/* ---- named vectors ------------------------------------------------------------------------- */

int ag_store_vector_check(ag_store_t *st, const char *name, const char *vname, const json_t *cfg,
                          ag_diag_t *diag)
{
    ag_collection_t *c;
    if (ag_store_get(st, name, &c, NULL) != 0)
        return ag_fail(diag, AG_ENOTFOUND, "Not found: Collection `%s` doesn't exist!", name);
    json_t *params = NULL;
    int rc = ag_coll_write_begin(c);
    if (rc == 0) {
        rc = ag_coll_vector_params(c, vname, cfg, &params, diag);
        ag_coll_write_end(c);
    } else {
        rc = ag_fail(diag, AG_ENOTFOUND, "Not found: Collection `%s` doesn't exist!", name);
    }
    json_decref(params);
    ag_coll_unref(c);
    return rc;
}

int ag_store_vector_change(ag_store_t *st, const char *name, const char *vname, const json_t *cfg,
                           ag_diag_t *diag)
{
    ag_collection_t *c, *nc = NULL;
    ssize_t i;
    if (lock_for_change(st, name, true, &c, &i) != 0)
        return ag_fail(diag, AG_ENOTFOUND, "Not found: Collection `%s` doesn't exist!", name);
    json_t *params = NULL, *rec = NULL, *schema = NULL;
    MDB_txn *txn = NULL;
    int rc = ag_coll_vector_params(c, vname, cfg, &params, diag);
    if (rc)
        goto out;
    if ((rc = txn_begin(st, &txn)) != 0) {
        txn = NULL;
        rc = ag_fail(diag, AG_ESTORAGE, "cannot begin a transaction: %s", mdb_strerror(rc));
        goto out;
    }
    if (!cfg && (rc = ag_coll_vector_rows(c, txn, vname, diag)) != 0)
        goto out;
    char key[AG_MAX_NAME_LEN + 8];
    key_for(key, sizeof(key), 'c', c->name);
    schema = ag_coll__schema_copy(c);
    rec = schema ? json_pack("{s:i,s:O,s:O}", "cid", (json_int_t)c->cid, "params", params, "schema",
                             schema)
                 : NULL;
    if ((rc = rec ? meta_put_json(txn, st->meta, key, rec) : AG_ENOMEM) != 0) {
        rc = ag_fail(diag, rc, "cannot store the collection's settings");
        goto out;
    }
    /* The collection as it will be, loaded from this transaction: if that fails, nothing
     * changes anywhere. */
    if ((rc = ag_coll_open(st->env, txn, c->name, c->cid, params, schema, false, &nc, diag)) != 0 ||
        (rc = ag_coll_load(nc, txn, diag)) != 0)
        goto out;
    nc->gate = &st->gate;
    rc = txn_commit(st, txn);
    txn = NULL;
    if (rc) {
        rc = ag_fail(diag, AG_ESTORAGE, "cannot commit: %s", mdb_strerror(rc));
        goto out;
    }
    mdb_env_sync(st->env, 1);
    /* Requests holding the old object finish on it; a write queued behind this change finds it
     * dropped and answers "not found" (the client retries on the new one). Its graphs must not
     * be saved over the new numbering. */
    c->dropped = true;
    c->index_ready = false;
    st->colls[i] = nc;
    nc = NULL;
    ag_log(AG_LOG_INFO, "collection '%s': vector '%s' %s", c->name, vname,
           cfg ? "added" : "removed");
    pthread_rwlock_unlock(&st->lock);
    pthread_mutex_unlock(&c->write_mutex);
    json_decref(params);
    json_decref(rec);
    json_decref(schema);
    ag_coll_unref(c); /* the catalog's reference */
    ag_coll_unref(c); /* ours */
    return 0;
out:
    if (txn)
        txn_abort(st, txn);
    if (nc)
        ag_coll_unref(nc);
    pthread_rwlock_unlock(&st->lock);
    pthread_mutex_unlock(&c->write_mutex);
    ag_coll_unref(c);
    json_decref(params);
    json_decref(rec);
    json_decref(schema);
    return rc;
}

/* ---- aliases ------------------------------------------------------------------------------- */

static int alias_set(alias_entry_t **a, size_t *n, size_t *cap, const char *alias,
                     const char *target)
{
    ssize_t i = find_alias(*a, *n, alias);
    char *t = strdup(target);
    if (!t)
        return AG_ENOMEM;
    if (i >= 0) {
        free((*a)[i].target);
        (*a)[i].target = t;
        return 0;
    }
    if (AG_GROW(*a, *cap, *n + 1, 16, MAX_ENTRIES) != 0) {
        free(t);
        return AG_ENOMEM;
    }
    (*a)[*n].alias = strdup(alias);
    if (!(*a)[*n].alias) {
        free(t);
        return AG_ENOMEM;
    }
    (*a)[*n].target = t;
    (*n)++;
    return 0;
}

static void alias_remove(alias_entry_t *a, size_t *n, size_t i)
{
    free(a[i].alias);
    free(a[i].target);
    a[i] = a[--(*n)];
}

static int get_name(const json_t *obj, const char *key, const char *path, const char **out,
                    ag_diag_t *diag)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return ag_fail(diag, AG_EINVAL, "%s.%s: expected a string", path, key);
    *out = json_string_value(v);
    return ag_name_check(*out, json_string_length(v), key, diag);
}

int ag_store_alias_actions(ag_store_t *st, const json_t *actions, ag_alias_check_fn check,
                           void *check_ctx, ag_diag_t *diag)
{
    if (!json_is_array(actions))
        return ag_fail(diag, AG_EINVAL, "actions: expected an array");
    pthread_rwlock_wrlock(&st->lock);
    /* Work on a copy; the registry changes only if every action is valid and the commit works. */
    size_t n = 0, cap = st->naliases + 1;
    alias_entry_t *work = calloc(cap, sizeof(*work));
    int rc = work ? 0 : AG_ENOMEM;
    for (size_t i = 0; rc == 0 && i < st->naliases; i++)
        rc = alias_set(&work, &n, &cap, st->aliases[i].alias, st->aliases[i].target);
    size_t idx;
    json_t *act;
    char path[64];
    json_array_foreach(actions, idx, act)
    {
        if (rc)
            break;
        snprintf(path, sizeof(path), "actions[%zu]", idx);
        if (!json_is_object(act) || json_object_size(act) != 1) {
            rc = ag_fail(diag, AG_EINVAL,
                         "%s: expected one of create_alias, delete_alias, "
                         "rename_alias",
                         path);
            break;
        }
        const json_t *body;
        const char *a = NULL, *b = NULL;
        if ((body = json_object_get(act, "create_alias")) != NULL) {
            if (!json_is_object(body) ||
                (rc = AG_JSON_ONLY(body, path, diag, "collection_name", "alias_name")) != 0 ||
                (rc = get_name(body, "collection_name", path, &a, diag)) != 0 ||
                (rc = get_name(body, "alias_name", path, &b, diag)) != 0) {
                rc =
                    rc ? rc : ag_fail(diag, AG_EINVAL, "%s.create_alias: expected an object", path);
                break;
            }
            if (find_coll(st, a) < 0) {
                rc = ag_fail(diag, AG_ENOTFOUND, "Collection `%s` doesn't exist!", a);
                break;
            }
            if (find_coll(st, b) >= 0) {
                rc = ag_fail(diag, AG_EEXIST, "alias `%s`: a collection has that name", b);
                break;
            }
            /* Re-pointing an existing alias also takes it from its old collection. */
            ssize_t old = find_alias(work, n, b);
            if (check && old >= 0 && (rc = check(check_ctx, b, work[old].target, diag)) != 0)
                break;
            if (check && (rc = check(check_ctx, b, a, diag)) != 0)
                break;
            rc = alias_set(&work, &n, &cap, b, a);
        } else if ((body = json_object_get(act, "delete_alias")) != NULL) {
            if (!json_is_object(body) || (rc = AG_JSON_ONLY(body, path, diag, "alias_name")) != 0 ||
                (rc = get_name(body, "alias_name", path, &a, diag)) != 0) {
                rc =
                    rc ? rc : ag_fail(diag, AG_EINVAL, "%s.delete_alias: expected an object", path);
                break;
            }
            ssize_t i = find_alias(work, n, a);
            if (i < 0) {
                rc = ag_fail(diag, AG_ENOTFOUND, "Alias `%s` doesn't exist!", a);
                break;
            }
            if (check && (rc = check(check_ctx, a, work[i].target, diag)) != 0)
                break;
            alias_remove(work, &n, (size_t)i);
        } else if ((body = json_object_get(act, "rename_alias")) != NULL) {
            if (!json_is_object(body) ||
                (rc = AG_JSON_ONLY(body, path, diag, "old_alias_name", "new_alias_name")) != 0 ||
                (rc = get_name(body, "old_alias_name", path, &a, diag)) != 0 ||
                (rc = get_name(body, "new_alias_name", path, &b, diag)) != 0) {
                rc =
                    rc ? rc : ag_fail(diag, AG_EINVAL, "%s.rename_alias: expected an object", path);
                break;
            }
            ssize_t i = find_alias(work, n, a);
            if (i < 0) {
                rc = ag_fail(diag, AG_ENOTFOUND, "Alias `%s` doesn't exist!", a);
                break;
            }
            if (find_coll(st, b) >= 0) {
                rc = ag_fail(diag, AG_EEXIST, "alias `%s`: a collection has that name", b);
                break;
            }
            ssize_t old = find_alias(work, n, b);
            if (check && ((rc = check(check_ctx, a, work[i].target, diag)) != 0 ||
                          (rc = check(check_ctx, b, work[i].target, diag)) != 0 ||
                          (old >= 0 && (rc = check(check_ctx, b, work[old].target, diag)) != 0)))
                break;
            char *target = strdup(work[i].target);
            if (!target) {
                rc = AG_ENOMEM;
                break;
            }
            alias_remove(work, &n, (size_t)i);
            rc = alias_set(&work, &n, &cap, b, target);
            free(target);
        } else {
            rc = ag_fail(diag, AG_EINVAL, "%s: unknown action", path);
        }
    }
    MDB_txn *txn = NULL;
    if (rc == 0 && txn_begin(st, &txn) != 0)
        rc = ag_fail(diag, AG_ESTORAGE, "cannot begin a transaction");
    char key[AG_MAX_NAME_LEN + 8];
    for (size_t i = 0; rc == 0 && i < st->naliases; i++) {
        key_for(key, sizeof(key), 'a', st->aliases[i].alias);
        rc = meta_del(txn, st->meta, key);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        key_for(key, sizeof(key), 'a', work[i].alias);
        rc = meta_put_str(txn, st->meta, key, work[i].target);
    }
    if (txn) {
        if (rc == 0 && txn_commit(st, txn) != 0)
            rc = ag_fail(diag, AG_ESTORAGE, "cannot commit the alias change");
        else if (rc)
            txn_abort(st, txn);
    }
    if (rc == 0) {
        aliases_free(st->aliases, st->naliases);
        st->aliases = work;
        st->naliases = n;
        st->cap_aliases = cap;
        mdb_env_sync(st->env, 1);
    } else {
        aliases_free(work, n);
    }
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

/* ---- snapshots (store/ag_snapshot.c; docs/SECURITY.md "Snapshots") -------------------------- */

int ag_store__snapshot_begin(ag_store_t *st, const char *collection, MDB_txn **txn, MDB_dbi *meta,
                             ag_collection_t ***colls, size_t *n)
{
    *colls = NULL;
    *n = 0;
    pthread_rwlock_rdlock(&st->lock);
    size_t want = st->ncolls;
    ssize_t only = -1;
    if (collection) {
        only = find_coll(st, collection);
        if (only < 0) {
            pthread_rwlock_unlock(&st->lock);
            return AG_ENOTFOUND;
        }
        want = 1;
    }
    ag_collection_t **list = calloc(want ? want : 1, sizeof(*list));
    /* The read transaction holds the map-size gate until ag_store__snapshot_end. */
    if (list)
        ag_env_enter(&st->gate);
    if (!list || mdb_txn_begin(st->env, NULL, MDB_RDONLY, txn) != 0) {
        if (list)
            ag_env_leave(&st->gate);
        free(list);
        pthread_rwlock_unlock(&st->lock);
        return list ? AG_ESTORAGE : AG_ENOMEM;
    }
    for (size_t i = 0; i < want; i++) {
        list[i] = st->colls[only >= 0 ? (size_t)only : i];
        ag_coll_ref(list[i]);
    }
    *meta = st->meta;
    *colls = list;
    *n = want;
    return 0;
}

void ag_store__snapshot_end(ag_store_t *st, MDB_txn *txn, ag_collection_t **colls, size_t n)
{
    mdb_txn_abort(txn);
    ag_env_leave(&st->gate);
    pthread_rwlock_unlock(&st->lock);
    for (size_t i = 0; i < n; i++)
        ag_coll_unref(colls[i]);
    free(colls);
}

typedef struct restore_slot {
    json_t *params, *schema, *tenants;
    ag_collection_t *fresh; /* the restored collection (owned until it enters the registry) */
    ssize_t old;            /* its namesake's index in the registry, or -1 */
} restore_slot_t;

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (ag_collection_t *const *)a;
    uintptr_t y = (uintptr_t) * (ag_collection_t *const *)b;
    return x < y ? -1 : x > y;
}

/* Frees the slots (and staged collections still held). */
static void restore_free(restore_slot_t *slots, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (slots[i].fresh)
            ag_coll_unref(slots[i].fresh);
        json_decref(slots[i].params);
        json_decref(slots[i].schema);
        json_decref(slots[i].tenants);
    }
    free(slots);
}

/* Drops the databases of staged collections that were not swapped in, and their markers. */
static void discard_staged(ag_store_t *st, restore_slot_t *slots, size_t n)
{
    MDB_txn *txn;
    char key[32];
    if (txn_begin(st, &txn) != 0)
        return; /* the markers remain: the next start drops them */
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!slots[i].fresh)
            continue;
        snprintf(key, sizeof(key), "r/%u", (unsigned)slots[i].fresh->cid);
        rc = ag_coll_drop_dbs(slots[i].fresh, txn);
        if (rc == 0)
            rc = meta_del(txn, st->meta, key);
    }
    if (rc == 0)
        txn_commit(st, txn);
    else
        txn_abort(st, txn);
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (slots[i].fresh)
            ag_coll_drop_index_files(slots[i].fresh);
}

int ag_store_restore(ag_store_t *st, const ag_restore_item_t *items, size_t n,
                     const json_t *aliases, ag_diag_t *diag)
{
    if (n > MAX_ENTRIES)
        return ag_fail(diag, AG_EINVAL, "snapshot: too many collections");
    if (aliases && !json_is_object(aliases))
        return ag_fail(diag, AG_EINVAL, "snapshot: aliases.json is malformed");
    restore_slot_t *slots = calloc(n ? n : 1, sizeof(*slots));
    if (!slots)
        return AG_ENOMEM;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        slots[i].old = -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(items[i].name, items[j].name) == 0)
                rc = ag_fail(diag, AG_EINVAL, "snapshot: collection '%.64s' appears twice",
                             items[i].name);
        if (rc == 0)
            rc = ag_snap__read_config(items[i].dir, &slots[i].params, &slots[i].schema,
                                      &slots[i].tenants, diag);
    }

    /* 1. Numbers for the new collections' databases: a moment under the catalog lock. */
    uint32_t cid0 = 0;
    if (rc == 0) {
        pthread_rwlock_wrlock(&st->lock);
        cid0 = st->next_cid;
        st->next_cid += (uint32_t)n;
        pthread_rwlock_unlock(&st->lock);
    }

    /* 2. Staging, without the catalog lock (docs/SECURITY.md "Snapshots"): every record is
     * validated and written into new databases, which are loaded into memory; searches and
     * catalog reads go on. A marker r/<cid> per staged collection lets the next start drop them
     * if the server dies before the swap. */
    MDB_txn *txn = NULL;
    char key[AG_MAX_NAME_LEN + 8];
    if (rc == 0 && txn_begin(st, &txn) != 0) {
        txn = NULL;
        rc = ag_fail(diag, AG_ESTORAGE, "cannot begin a transaction");
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        restore_slot_t *s = &slots[i];
        rc = ag_coll_open(st->env, txn, items[i].name, cid0 + (uint32_t)i, s->params, s->schema,
                          true, &s->fresh, diag);
        if (rc == 0)
            s->fresh->gate = &st->gate;
        if (rc == 0)
            rc = ag_snap__fill(s->fresh, txn, items[i].dir, diag);
        json_t *rec = rc == 0 ? coll_record(s->fresh, NULL) : NULL;
        if (rc == 0) {
            snprintf(key, sizeof(key), "r/%u", (unsigned)s->fresh->cid);
            rc = rec ? meta_put_json(txn, st->meta, key, rec) : AG_ENOMEM;
        }
        json_decref(rec);
        if (rc == 0)
            rc = ag_coll_load(s->fresh, txn, diag);
    }
    if (rc == 0) {
        uint32_t seq = cid0 + (uint32_t)n, had;
        MDB_val k = {3, (void *)"seq"}, v;
        if (mdb_get(txn, st->meta, &k, &v) == 0 && v.mv_size == 4) {
            memcpy(&had, v.mv_data, 4);
            seq = had > seq ? had : seq;
        }
        v.mv_size = 4;
        v.mv_data = &seq;
        rc = mdb_put(txn, st->meta, &k, &v, 0) ? AG_ESTORAGE : 0;
    }
    if (txn) {
        if (rc == 0 && txn_commit(st, txn) != 0)
            rc = ag_fail(diag, AG_ESTORAGE, "cannot commit the restore");
        else if (rc)
            txn_abort(st, txn);
        txn = NULL;
    }
    if (rc) {
        restore_free(slots, n);
        if (!diag->msg[0])
            ag_fail(diag, rc, "cannot restore the snapshot");
        return rc;
    }

    /* 3. The swap. Writers of the collections being replaced are stopped first — their write
     * mutexes taken before the catalog lock (a writer holding its mutex reads the catalog, so the
     * other order could deadlock), in address order (two restores agree) — then, under the
     * catalog lock: catalog records, aliases, the old databases dropped, in one transaction. */
    ag_collection_t **olds = calloc(n ? n : 1, sizeof(*olds));
    ag_collection_t **order = calloc(n ? n : 1, sizeof(*order));
    if (!olds || !order) {
        free(olds);
        free(order);
        discard_staged(st, slots, n);
        restore_free(slots, n);
        return AG_ENOMEM;
    }
    pthread_rwlock_rdlock(&st->lock);
    for (size_t i = 0; i < n; i++) {
        ssize_t o = find_coll(st, items[i].name);
        if (o >= 0) {
            olds[i] = st->colls[o];
            ag_coll_ref(olds[i]);
        }
    }
    pthread_rwlock_unlock(&st->lock);
    memcpy(order, olds, n * sizeof(*order));
    qsort(order, n, sizeof(*order), cmp_ptr);
    for (size_t i = 0; i < n; i++)
        if (order[i])
            pthread_mutex_lock(&order[i]->write_mutex);
    pthread_rwlock_wrlock(&st->lock);
    /* Room in the registries is made first, so nothing can fail after the commit. */
    size_t added = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (find_alias(st->aliases, st->naliases, items[i].name) >= 0)
            rc =
                ag_fail(diag, AG_ECONFLICT,
                        "cannot restore collection '%.64s': an alias has that name", items[i].name);
        slots[i].old = find_coll(st, items[i].name);
        added += slots[i].old < 0;
        if (rc == 0 && (slots[i].old >= 0 ? st->colls[slots[i].old] : NULL) != olds[i])
            rc = ag_fail(diag, AG_ECONFLICT,
                         "collection '%.64s' was created or deleted during the restore; nothing "
                         "was restored",
                         items[i].name);
    }
    if (rc == 0 && AG_GROW(st->colls, st->cap_colls, st->ncolls + added, 16, MAX_ENTRIES) != 0)
        rc = AG_ENOMEM;
    size_t nal = aliases ? json_object_size(aliases) : 0;
    if (rc == 0 && AG_GROW(st->aliases, st->cap_aliases, st->naliases + nal, 16, MAX_ENTRIES) != 0)
        rc = AG_ENOMEM;
    if (rc == 0 && txn_begin(st, &txn) != 0) {
        txn = NULL;
        rc = ag_fail(diag, AG_ESTORAGE, "cannot begin a transaction");
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        restore_slot_t *s = &slots[i];
        json_t *rec = coll_record(s->fresh, NULL);
        key_for(key, sizeof(key), 'c', items[i].name);
        rc = rec ? meta_put_json(txn, st->meta, key, rec) : AG_ENOMEM;
        json_decref(rec);
        if (rc == 0) {
            key_for(key, sizeof(key), 't', items[i].name);
            rc = json_object_size(s->tenants) ? meta_put_json(txn, st->meta, key, s->tenants)
                                              : meta_del(txn, st->meta, key);
        }
        snprintf(key, sizeof(key), "r/%u", (unsigned)s->fresh->cid);
        if (rc == 0)
            rc = meta_del(txn, st->meta, key);
    }
    const char *alias;
    json_t *target;
    if (aliases) {
        json_object_foreach((json_t *)aliases, alias, target)
        {
            if (rc)
                break;
            const char *t = json_string_value(target);
            bool known = false;
            for (size_t i = 0; t && i < n; i++)
                known = known || strcmp(items[i].name, t) == 0;
            if (!t || !known || ag_name_check(alias, strlen(alias), "alias", diag) != 0 ||
                find_coll(st, alias) >= 0) {
                rc = ag_fail(diag, AG_EINVAL, "snapshot: alias '%.64s' cannot be restored", alias);
                break;
            }
            for (size_t i = 0; i < n; i++)
                if (strcmp(items[i].name, alias) == 0)
                    rc = ag_fail(diag, AG_EINVAL, "snapshot: alias '%.64s' names a collection",
                                 alias);
            key_for(key, sizeof(key), 'a', alias);
            if (rc == 0)
                rc = meta_put_str(txn, st->meta, key, t);
        }
    }
    /* Last, because dropping closes the old handles even if the transaction were aborted. */
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (slots[i].old >= 0)
            rc = ag_coll_drop_dbs(st->colls[slots[i].old], txn);
    if (txn) {
        if (rc == 0 && txn_commit(st, txn) != 0)
            rc = ag_fail(diag, AG_ESTORAGE, "cannot commit the restore");
        else if (rc)
            txn_abort(st, txn);
    }
    if (rc && !diag->msg[0])
        ag_fail(diag, rc, "cannot restore the snapshot");
    if (rc == 0) {
        for (size_t i = 0; i < n; i++) {
            restore_slot_t *s = &slots[i];
            if (items[i].manifest) /* after the commit counted as a catalog change */
                ag_coll_adopt_manifest(s->fresh, items[i].manifest);
            if (s->old >= 0) {
                ag_collection_t *old = st->colls[s->old];
                ag_coll_drop_index_files(old);     /* its databases went with the commit */
                pthread_rwlock_wrlock(&old->lock); /* the indexer reads it under this lock */
                old->dropped = true;
                pthread_rwlock_unlock(&old->lock);
                st->colls[s->old] = s->fresh;
                ag_coll_unref(old); /* the registry's reference; olds[i] still holds one */
            } else {
                st->colls[st->ncolls++] = s->fresh;
            }
            tenancy_drop(st, items[i].name);
            tenancy_put(st, items[i].name, true, schema_tenant_key(s->fresh->schema), s->tenants);
            s->fresh = NULL;
        }
        if (aliases) {
            json_object_foreach((json_t *)aliases, alias, target)
            {
                if (alias_set(&st->aliases, &st->naliases, &st->cap_aliases, alias,
                              json_string_value(target)) != 0)
                    ag_log(AG_LOG_ERROR, "out of memory restoring alias '%s' (it is stored)",
                           alias);
            }
        }
        mdb_env_sync(st->env, 1);
    } else {
        discard_staged(st, slots, n);
    }
    pthread_rwlock_unlock(&st->lock);
    for (size_t i = 0; i < n; i++) {
        if (olds[i]) {
            pthread_mutex_unlock(&olds[i]->write_mutex);
            ag_coll_unref(olds[i]);
        }
    }
    free(olds);
    free(order);
    restore_free(slots, n);
    return rc;
}

void ag_store_map_info(ag_store_t *st, uint64_t *map_size, uint64_t *used)
{
    MDB_envinfo info;
    MDB_stat stat;
    *map_size = *used = 0;
    ag_env_enter(&st->gate); /* not while the map is being resized (store/ag_env.h) */
    int rc = mdb_env_info(st->env, &info) != 0 || mdb_env_stat(st->env, &stat) != 0;
    ag_env_leave(&st->gate);
    if (rc)
        return;
    *map_size = (uint64_t)info.me_mapsize;
    *used = ((uint64_t)info.me_last_pgno + 1) * (uint64_t)stat.ms_psize;
}
