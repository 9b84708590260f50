/*
 * ag_meta.c — collection metadata in etcd (docs/CLUSTER.md "Collections"): one record per
 * collection under /aegis/meta/collections/<name> holding its creation parameters and its shard
 * placement, created and deleted with compare-and-swap transactions, cached on every node and
 * kept current by a watch that tells the api layer (which creates or drops the local collection).
 */
#include <stdio.h>

#include "ag_cluster_int.h"
#include "ag_log.h"

#define META_PREFIX "/aegis/meta/"
#define COLL_PREFIX META_PREFIX "collections/"
#define NODES_PREFIX "/aegis/nodes/"
#define ALIASES_KEY META_PREFIX "aliases"

static bool is_aliases_key(const unsigned char *k, size_t klen)
{
    return klen == strlen(ALIASES_KEY) && memcmp(k, ALIASES_KEY, klen) == 0;
}

/* Tells the api layer the aliases etcd holds (an empty list when the key is gone). */
static void apply_aliases(ag_cluster_t *cl, const unsigned char *val, size_t vlen)
{
    json_t *list = val ? json_loadb((const char *)val, vlen, 0, NULL) : json_array();
    if (!json_is_array(list)) {
        ag_log(AG_LOG_WARN, "cluster: the aliases in etcd are not a JSON array; ignored");
        json_decref(list);
        return;
    }
    if (cl->alias_fn)
        cl->alias_fn(cl->meta_ud, list);
    json_decref(list);
}

/* The name in a collection key, copied into buf; false for a key of another shape. */
static bool coll_name(const unsigned char *k, size_t klen, char *buf, size_t cap)
{
    size_t plen = strlen(COLL_PREFIX);
    if (klen <= plen || memcmp(k, COLL_PREFIX, plen) != 0 || klen - plen >= cap)
        return false;
    memcpy(buf, k + plen, klen - plen);
    buf[klen - plen] = '\0';
    return strlen(buf) == klen - plen;
}

/* Puts rec (NULL = deleted) into the cache as the state at revision rev, unless the cache holds a
 * later one already (a write of this node, cached at commit, then its own event arriving late;
 * or a reload racing the watch). Returns whether it did. meta_mu held. */
static bool cache_put(ag_cluster_t *cl, const char *name, json_t *rec, uint64_t rev)
{
    json_int_t have = json_integer_value(json_object_get(cl->meta_rev, name));
    if (rev && (uint64_t)have > rev)
        return false;
    /* The cache owns private copies, read and copied only under meta_mu: jansson's reference
     * counts are never shared between threads (its incref reads the count unguarded). */
    if (rec)
        json_object_set_new(cl->meta, name, json_deep_copy(rec));
    else
        json_object_del(cl->meta, name);
    if (rev)
        json_object_set_new(cl->meta_rev, name, json_integer((json_int_t)rev));
    return true;
}

/* Applies one record (val NULL = deleted) at revision rev to the cache, then tells the api layer
 * (which brings the local collection to what the cache holds now). */
static void apply_one(ag_cluster_t *cl, const char *name, const unsigned char *val, size_t vlen,
                      uint64_t rev)
{
    json_t *rec = NULL;
    if (val) {
        rec = json_loadb((const char *)val, vlen, 0, NULL);
        if (!json_is_object(rec)) {
            ag_log(AG_LOG_WARN,
                   "cluster: the metadata of collection %s in etcd is not JSON; "
                   "ignored",
                   name);
            json_decref(rec);
            return;
        }
    }
    pthread_mutex_lock(&cl->meta_mu);
    bool put = cache_put(cl, name, rec, rev);
    pthread_mutex_unlock(&cl->meta_mu);
    if (put && cl->meta_fn)
        cl->meta_fn(cl->meta_ud, name, rec);
    json_decref(rec);
}

/* Reads every record and applies it; names in the cache that etcd no longer holds are deleted. */
static int meta_reload(ag_cluster_t *cl, ag_etcd_t *e, ag_diag_t *diag)
{
    ag_etcd_range_t r;
    int rc = ag_etcd_range(e, META_PREFIX, strlen(META_PREFIX), true, &r, diag);
    if (rc)
        return rc;
    json_t *seen = json_object();
    bool aliases = false;
    for (size_t i = 0; i < r.n; i++) {
        char name[300];
        if (is_aliases_key(r.kvs[i].key, r.kvs[i].klen)) {
            aliases = true;
            continue; /* after the collections they name */
        }
        if (!coll_name(r.kvs[i].key, r.kvs[i].klen, name, sizeof(name)))
            continue;
        json_object_set_new(seen, name, json_true());
        apply_one(cl, name, r.kvs[i].val, r.kvs[i].vlen, r.kvs[i].mod_rev);
    }
    json_t *gone = json_array();
    pthread_mutex_lock(&cl->meta_mu);
    const char *k;
    json_t *v;
    json_object_foreach(cl->meta, k, v)
    {
        if (!json_object_get(seen, k))
            json_array_append_new(gone, json_string(k));
    }
    pthread_mutex_unlock(&cl->meta_mu);
    size_t i;
    json_array_foreach(gone, i, v)
    {
        apply_one(cl, json_string_value(v), NULL, 0, r.rev);
    }
    json_decref(gone);
    json_decref(seen);
    for (size_t j = 0; aliases && j < r.n; j++)
        if (is_aliases_key(r.kvs[j].key, r.kvs[j].klen))
            apply_aliases(cl, r.kvs[j].val, r.kvs[j].vlen);
    atomic_store(&cl->meta_from, r.rev + 1);
    ag_etcd_range_free(&r);
    return 0;
}

static int on_meta(void *ud, const ag_etcd_kv_t *ev, size_t n, uint64_t rev, bool compacted)
{
    AG_UNUSED(rev);
    ag_cluster_t *cl = ud;
    if (compacted)
        return 1; /* the loop reloads */
    for (size_t i = 0; i < n; i++) {
        char name[300];
        if (coll_name(ev[i].key, ev[i].klen, name, sizeof(name)))
            apply_one(cl, name, ev[i].del ? NULL : ev[i].val, ev[i].vlen, ev[i].mod_rev);
        else if (is_aliases_key(ev[i].key, ev[i].klen))
            apply_aliases(cl, ev[i].del ? NULL : ev[i].val, ev[i].vlen);
        uint64_t next = ev[i].mod_rev + 1;
        uint64_t cur = atomic_load(&cl->meta_from);
        while (cur < next && !atomic_compare_exchange_weak(&cl->meta_from, &cur, next)) {
        }
    }
    return 0;
}

static void *meta_main(void *arg)
{
    ag_cluster_t *cl = arg;
    bool reload = false;
    while (!atomic_load(&cl->meta_stop)) {
        ag_diag_t d = {{0}};
        if (reload && meta_reload(cl, cl->meta_watcher, &d) != 0) {
            struct timespec ts = {0, 200000000};
            nanosleep(&ts, NULL);
            continue;
        }
        int rc = ag_etcd_watch(cl->meta_watcher, META_PREFIX, strlen(META_PREFIX), true,
                               atomic_load(&cl->meta_from), on_meta, cl, &cl->meta_stop, &d);
        if (atomic_load(&cl->meta_stop))
            break;
        /* A broken or compacted stream: read everything again (changes made meanwhile are in
         * it), then watch on from there. */
        AG_UNUSED(rc);
        reload = true;
        ag_etcd_next_endpoint(cl->meta_watcher);
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int ag_cluster_meta_start(ag_cluster_t *cl, ag_cluster_meta_fn fn, ag_cluster_alias_fn alias_fn,
                          void *ud, ag_diag_t *diag)
{
    cl->alias_fn = alias_fn;
    cl->meta_fn = fn;
    cl->meta_ud = ud;
    int rc = ag_etcd_new(cl->endpoints, 5000, &cl->meta_watcher, diag);
    if (rc)
        return rc;
    if ((rc = meta_reload(cl, cl->writer, diag)) != 0)
        return ag_fail(diag, rc, "cluster: cannot load the collections' metadata from etcd: %s",
                       diag->msg);
    if (pthread_create(&cl->meta_thread, NULL, meta_main, cl) != 0)
        return ag_fail(diag, AG_EINTERNAL, "cluster: cannot start the metadata watch");
    cl->meta_started = true;
    return 0;
}

void ag_cluster_meta_stop(ag_cluster_t *cl)
{
    if (!cl)
        return;
    atomic_store(&cl->meta_stop, true);
    if (cl->meta_started)
        pthread_join(cl->meta_thread, NULL);
    cl->meta_started = false;
    ag_etcd_free(cl->meta_watcher);
    cl->meta_watcher = NULL;
}

int ag_cluster_meta_create(ag_cluster_t *cl, const char *name, const json_t *config,
                           uint32_t shard_number, json_t **rec_out, ag_diag_t *diag)
{
    if (rec_out)
        *rec_out = NULL;
    ag_etcd_range_t r;
    ag_diag_t ed = {{0}};
    int rc = ag_etcd_range(cl->writer, NODES_PREFIX, strlen(NODES_PREFIX), true, &r, &ed);
    if (rc)
        return ag_fail(diag, AG_EUNAVAILABLE,
                       "cluster: collections cannot be created while etcd is unreachable (%s)",
                       ed.msg);
    /* The nodes registered now, in key (= node id) order. */
    json_t *nodes = json_array();
    for (size_t i = 0; i < r.n; i++) {
        json_t *nd = json_loadb((const char *)r.kvs[i].val, r.kvs[i].vlen, 0, NULL);
        if (json_is_string(json_object_get(nd, "node_id")) &&
            json_is_string(json_object_get(nd, "advertise_url")))
            json_array_append_new(nodes, nd);
        else
            json_decref(nd);
    }
    ag_etcd_range_free(&r);
    size_t nn = json_array_size(nodes);
    if (nn == 0) {
        json_decref(nodes);
        return ag_fail(diag, AG_EUNAVAILABLE, "cluster: no node is registered in etcd");
    }
    json_t *shards = json_array();
    for (uint32_t s = 0; s < shard_number; s++) {
        json_t *nd = json_array_get(nodes, s % nn);
        json_array_append_new(shards, json_pack("{s:i,s:O,s:O}", "shard_id", (int)s, "node",
                                                json_object_get(nd, "node_id"), "url",
                                                json_object_get(nd, "advertise_url")));
    }
    json_decref(nodes);
    json_t *rec = json_pack("{s:O,s:i,s:o}", "config", config, "shard_number", (int)shard_number,
                            "shards", shards);
    char *text = rec ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (!text) {
        json_decref(rec);
        return AG_ENOMEM;
    }
    char key[400];
    snprintf(key, sizeof(key), "%s%s", COLL_PREFIX, name);
    ag_etcd_op_t op = {key, text, strlen(key), strlen(text), false, 0};
    bool ok = false;
    uint64_t rev = 0;
    rc = ag_etcd_txn(cl->writer, key, strlen(key), 0, &op, 1, &ok, &rev, &ed);
    free(text);
    if (rc) {
        json_decref(rec);
        return ag_fail(diag, AG_EUNAVAILABLE,
                       "cluster: the collection could not be recorded in etcd (%s); retry", ed.msg);
    }
    if (!ok) {
        json_decref(rec);
        return ag_fail(diag, AG_ECONFLICT, "Wrong input: Collection `%s` already exists!", name);
    }
    pthread_mutex_lock(&cl->meta_mu);
    cache_put(cl, name, rec, rev);
    pthread_mutex_unlock(&cl->meta_mu);
    if (rec_out)
        *rec_out = rec;
    else
        json_decref(rec);
    return 0;
}

int ag_cluster_meta_delete(ag_cluster_t *cl, const char *name, bool *existed, ag_diag_t *diag)
{
    char key[400];
    snprintf(key, sizeof(key), "%s%s", COLL_PREFIX, name);
    ag_etcd_range_t r;
    ag_diag_t ed = {{0}};
    *existed = false;
    int rc = ag_etcd_range(cl->writer, key, strlen(key), false, &r, &ed);
    if (rc == 0) {
        uint64_t mod = r.n ? r.kvs[0].mod_rev : 0;
        ag_etcd_range_free(&r);
        if (mod == 0)
            return 0;
        ag_etcd_op_t op = {key, NULL, strlen(key), 0, true, 0};
        bool ok = false;
        uint64_t rev = 0;
        rc = ag_etcd_txn(cl->writer, key, strlen(key), mod, &op, 1, &ok, &rev, &ed);
        if (rc == 0 && !ok)
            return ag_fail(diag, AG_ECONFLICT,
                           "cluster: collection `%s` changed while it was being deleted; retry",
                           name);
        *existed = rc == 0;
        if (rc == 0) {
            pthread_mutex_lock(&cl->meta_mu);
            cache_put(cl, name, NULL, rev);
            pthread_mutex_unlock(&cl->meta_mu);
        }
    }
    if (rc)
        return ag_fail(diag, AG_EUNAVAILABLE,
                       "cluster: collections cannot be deleted while etcd is unreachable (%s)",
                       ed.msg);
    return 0;
}

int ag_cluster_meta_update(ag_cluster_t *cl, const char *name, ag_cluster_edit_fn edit, void *ud,
                           ag_diag_t *diag)
{
    char key[400];
    snprintf(key, sizeof(key), "%s%s", COLL_PREFIX, name);
    /* A conflict means another node changed the record meanwhile: the edit is made again on
     * what it wrote (edits are written against the record they read, never a stale copy). */
    for (int attempt = 0; attempt < 5; attempt++) {
        ag_etcd_range_t r;
        ag_diag_t ed = {{0}};
        if (ag_etcd_range(cl->writer, key, strlen(key), false, &r, &ed) != 0)
            return ag_fail(diag, AG_EUNAVAILABLE,
                           "cluster: collection `%s` cannot be changed while etcd is unreachable "
                           "(%s); nothing changed",
                           name, ed.msg);
        uint64_t mod = r.n ? r.kvs[0].mod_rev : 0;
        json_t *rec = r.n ? json_loadb((const char *)r.kvs[0].val, r.kvs[0].vlen, 0, NULL) : NULL;
        ag_etcd_range_free(&r);
        if (mod == 0) {
            json_decref(rec);
            return AG_ENOTFOUND; /* no record: a collection of this node only */
        }
        if (!json_is_object(rec)) {
            json_decref(rec);
            return ag_fail(diag, AG_EINTERNAL,
                           "cluster: the record of collection `%s` in etcd is malformed", name);
        }
        int rc = edit(ud, rec, diag);
        char *text = rc == 0 ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        if (rc == 0 && !text)
            rc = AG_ENOMEM;
        if (rc) {
            json_decref(rec);
            return rc;
        }
        ag_etcd_op_t op = {key, text, strlen(key), strlen(text), false, 0};
        bool ok = false;
        uint64_t rev = 0;
        rc = ag_etcd_txn(cl->writer, key, strlen(key), mod, &op, 1, &ok, &rev, &ed);
        free(text);
        if (rc) {
            json_decref(rec);
            return ag_fail(diag, AG_EUNAVAILABLE,
                           "cluster: the change of collection `%s` could not be recorded in etcd "
                           "(%s); it was not applied here: retry",
                           name, ed.msg);
        }
        if (ok) {
            pthread_mutex_lock(&cl->meta_mu);
            cache_put(cl, name, rec, rev);
            pthread_mutex_unlock(&cl->meta_mu);
            json_decref(rec);
            return 0;
        }
        json_decref(rec);
    }
    return ag_fail(diag, AG_ECONFLICT,
                   "cluster: collection `%s` kept changing on other nodes while this request ran; "
                   "nothing changed: retry",
                   name);
}

json_t *ag_cluster_meta_get(ag_cluster_t *cl, const char *name)
{
    if (!cl)
        return NULL;
    pthread_mutex_lock(&cl->meta_mu);
    const json_t *rec = json_object_get(cl->meta, name);
    /* The placement only (what routing reads): the tenants or schema may be large. */
    json_t *out = rec ? json_object() : NULL;
    static const char *const keys[] = {"config", "shard_number", "shards"};
    for (size_t i = 0; out && i < AG_ARRAY_LEN(keys); i++) {
        const json_t *v = json_object_get(rec, keys[i]);
        if (v && json_object_set_new(out, keys[i], json_deep_copy(v)) != 0) {
            json_decref(out);
            out = NULL;
        }
    }
    pthread_mutex_unlock(&cl->meta_mu);
    if (rec && !out)
        ag_log(AG_LOG_WARN, "cluster: out of memory copying the record of %s", name);
    return out;
}

json_t *ag_cluster_meta_get_full(ag_cluster_t *cl, const char *name)
{
    if (!cl)
        return NULL;
    pthread_mutex_lock(&cl->meta_mu);
    json_t *rec = json_deep_copy(json_object_get(cl->meta, name));
    pthread_mutex_unlock(&cl->meta_mu);
    return rec;
}

int ag_cluster_aliases_get(ag_cluster_t *cl, json_t **list, uint64_t *mod_rev, ag_diag_t *diag)
{
    *list = NULL;
    *mod_rev = 0;
    ag_etcd_range_t r;
    ag_diag_t ed = {{0}};
    if (ag_etcd_range(cl->writer, ALIASES_KEY, strlen(ALIASES_KEY), false, &r, &ed) != 0)
        return ag_fail(diag, AG_EUNAVAILABLE,
                       "cluster: aliases cannot be changed while etcd is unreachable (%s)", ed.msg);
    if (r.n) {
        *mod_rev = r.kvs[0].mod_rev;
        *list = json_loadb((const char *)r.kvs[0].val, r.kvs[0].vlen, 0, NULL);
    }
    ag_etcd_range_free(&r);
    if (!json_is_array(*list)) {
        json_decref(*list);
        *list = json_array();
    }
    return *list ? 0 : AG_ENOMEM;
}

int ag_cluster_aliases_put(ag_cluster_t *cl, const json_t *list, uint64_t base, ag_diag_t *diag)
{
    char *text = json_dumps(list, JSON_COMPACT);
    if (!text)
        return AG_ENOMEM;
    ag_etcd_op_t op = {ALIASES_KEY, text, strlen(ALIASES_KEY), strlen(text), false, 0};
    bool ok = false;
    uint64_t rev = 0;
    ag_diag_t ed = {{0}};
    int rc =
        ag_etcd_txn(cl->writer, ALIASES_KEY, strlen(ALIASES_KEY), base, &op, 1, &ok, &rev, &ed);
    free(text);
    if (rc)
        return ag_fail(diag, AG_EUNAVAILABLE,
                       "cluster: the aliases could not be recorded in etcd (%s); nothing changed",
                       ed.msg);
    if (!ok)
        return ag_fail(diag, AG_ECONFLICT,
                       "cluster: the aliases changed on another node while this request ran; "
                       "nothing changed: retry the request");
    return 0;
}
