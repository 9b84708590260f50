/*
 * api_shard.c — sharded collections in cluster mode (docs/CLUSTER.md "Collections", "Shards",
 * "Node-to-node calls"): the collection records from etcd applied to the local catalog, and the
 * router that sends a request on a sharded collection to the nodes that hold its shards.
 *
 * Every node of the cluster has every collection locally; a node's local collection holds the
 * points of the shards placed on it. A point belongs to shard shard_of(id) % shard_number.
 * Writes go to every node with a part of them (each node keeps only its own points); reads go to
 * every node holding a shard and the answers are merged. The calls carry the caller's own
 * credential and a shard-local header signed with the cluster secret: the receiving node
 * authorizes the caller itself, runs the request on its local collection, and fans out no further.
 */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "ag_api.h"
#include "ag_clock.h"
#include "ag_file.h"
#include "ag_guard.h"
#include "ag_id.h"
#include "ag_log.h"
#include "cluster/ag_cluster.h"
#include "index/ag_distance.h"
#include "store/ag_write.h"
#include "json/ag_json.h"

#define MAX_NODES 64

static ag_api_t *g_api; /* the api the metadata watch applies to (one per process) */

/* ---- the catalog follows etcd ------------------------------------------------------------- */

/* Bringing a local collection to its record (docs/CLUSTER.md "Collections"): sync_mu serialises
 * it, whether the watch or a request of this node does it, and it always works from the newest
 * record in the cache (never from the event that triggered it), so a late event cannot take a
 * collection back. g_patched remembers, per collection, the folded PATCH last applied here (a
 * PATCH is applied again only when it changed). */
static pthread_mutex_t sync_mu = PTHREAD_MUTEX_INITIALIZER;
static json_t *g_patched;

/* The local collections bound to a cluster record (docs/CLUSTER.md "Collections"): names in
 * <storage>/cluster-collections.json, a JSON array replaced whole (base/ag_file.h) whenever it
 * changes, under sync_mu. At start a node drops those of them etcd no longer has (deleted while
 * it was down); a collection never bound to a record (from before cluster mode) is never listed,
 * so it survives. */
static json_t *g_bound; /* name -> true */
static char g_bound_path[4200];

static void bound_note(const char *name, bool on)
{
    if (!g_bound || (json_object_get(g_bound, name) != NULL) == on)
        return;
    if (on)
        json_object_set_new(g_bound, name, json_true());
    else
        json_object_del(g_bound, name);
    json_t *arr = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(g_bound, k, v) json_array_append_new(arr, json_string(k));
    char *text = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    if (!text || ag_file_replace(g_bound_path, text, strlen(text), 0600) != 0)
        ag_log(AG_LOG_WARN, "cluster: cannot write %s (collections bound to etcd)", g_bound_path);
    free(text);
}

static int bound_load(ag_api_t *api, ag_diag_t *diag)
{
    snprintf(g_bound_path, sizeof(g_bound_path), "%s/cluster-collections.json",
             api->cfg->storage_path);
    g_bound = json_object();
    if (!g_bound)
        return AG_ENOMEM;
    if (access(g_bound_path, F_OK) != 0)
        return 0;
    json_error_t jerr;
    json_t *arr = json_load_file(g_bound_path, 0, &jerr);
    if (!json_is_array(arr)) {
        json_decref(arr);
        return ag_fail(diag, AG_ESTORAGE, "cluster: %s is corrupt (%s)", g_bound_path, jerr.text);
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (json_is_string(v))
            json_object_set_new(g_bound, json_string_value(v), json_true());
    }
    json_decref(arr);
    return 0;
}

/* What a sync did that a request reports. */
typedef struct sync_out {
    size_t deleted_points; /* points of tenants dropped */
} sync_out_t;

/* The collection's payload schema as index definitions (a new object: field -> {data_type,
 * params?}, without the counts GET /collections adds), or NULL without memory. */
static json_t *local_schema(ag_collection_t *c)
{
    ag_coll_stats_t stats;
    if (ag_coll_stats(c, NULL, &stats) != 0)
        return NULL;
    json_decref(stats.params);
    const char *f;
    json_t *def;
    json_object_foreach(stats.schema, f, def) json_object_del(def, "points");
    return stats.schema;
}

/* The collection's declared tenants as the store holds them (a new object: name -> {active}). */
static json_t *local_tenants(ag_api_t *api, const char *name, const char **key_out, char *key,
                             size_t cap)
{
    ag_tenancy_t *snap = NULL;
    json_t *out = NULL;
    key[0] = '\0';
    if (ag_store_tenancy(api->store, name, &snap) == 0) {
        const json_t *t = ag_tenancy_json(snap);
        out = json_deep_copy(json_object_get(t, "tenants"));
        const char *k = json_string_value(json_object_get(t, "key"));
        if (k)
            snprintf(key, cap, "%s", k);
    }
    ag_tenancy_release(snap);
    if (key_out)
        *key_out = key[0] ? key : NULL;
    if (!json_is_object(out)) {
        json_decref(out);
        out = json_object();
    }
    return out;
}

/* Does the collection have exactly the indexes `want` defines? Cheap (no count of points), under
 * the read lock: a sync whose record did not change the indexes costs no scan. */
typedef struct schema_cmp {
    const json_t *want;
    bool same;
} schema_cmp_t;

static int same_schema(void *ud, ag_collection_t *c)
{
    schema_cmp_t *s = ud;
    s->same = ag_coll_index_count(c) == json_object_size(s->want);
    const char *f;
    json_t *def;
    json_object_foreach((json_t *)s->want, f, def)
    {
        if (!s->same)
            break;
        json_t *have = ag_coll_index_def(c, f); /* a copy: ours */
        s->same = json_equal(have, def);
        json_decref(have);
    }
    return 0;
}

/* One metadata step on a local collection, in its write session. */
typedef enum { S_INDEX, S_TENANT_SET, S_TENANT_DROP } step_op_t;
typedef struct step {
    ag_api_t *api;
    step_op_t op;
    const char *field; /* S_INDEX: the field; S_TENANT_*: the tenant */
    json_t *def;       /* S_INDEX: new definition (taken), NULL = remove */
    bool create, active;
    const char *key; /* S_TENANT_DROP: the tenant key */
    size_t deleted;
    ag_diag_t *diag;
} step_t;

static int run_step(void *ud, ag_collection_t *c)
{
    step_t *s = ud;
    switch (s->op) {
    case S_INDEX: {
        json_t *def = s->def;
        s->def = NULL;
        return ag_store_set_index(s->api->store, c, s->field, def, NULL, s->diag);
    }
    case S_TENANT_SET:
        return ag_store_tenant_set(s->api->store, c, s->field, s->create, s->active, s->diag);
    case S_TENANT_DROP:
        return ag_store_tenant_delete(s->api->store, c, s->key, s->field, &s->deleted, s->diag);
    }
    return AG_EINTERNAL;
}

static int step_on(ag_api_t *api, ag_collection_t *c, step_t *s, ag_diag_t *diag)
{
    s->api = api;
    s->diag = diag;
    int rc = ag_coll_write(c, run_step, s);
    json_decref(s->def);
    s->def = NULL;
    return rc;
}

/* Does the local collection have vector vname (dense or sparse)? */
static bool has_vector(ag_collection_t *c, const char *vname)
{
    return ag_coll_vector(c, vname) >= 0 || ag_coll_sparse(c, vname) >= 0;
}

/* Brings local collection `name` to rec (sync_mu held): created if missing, then named vectors,
 * the folded PATCH, payload indexes and tenants made equal to the record (sections the record
 * lacks — records written before they existed — are left alone). Returns the first failure (with
 * diag), having tried every step. */
static int sync_one(ag_api_t *api, const char *name, const json_t *rec, sync_out_t *out,
                    ag_diag_t *diag)
{
    ag_collection_t *c = NULL;
    int first = 0;
    ag_diag_t d = {{0}};
    int r;
    if (ag_store_get(api->store, name, &c, NULL) != 0) {
        if ((r = ag_store_create(api->store, name, json_object_get(rec, "config"), &d)) != 0 &&
            ag_store_get(api->store, name, &c, NULL) != 0) {
            ag_log(AG_LOG_WARN, "cluster: cannot create collection %s from etcd: %s", name, d.msg);
            return ag_fail(diag, r, "%s", d.msg);
        }
        if (!c && ag_store_get(api->store, name, &c, NULL) != 0)
            return ag_fail(diag, AG_EINTERNAL, "cluster: collection %s vanished", name);
    }
    bound_note(name, true);
#define NOTE_FAIL(what)                                                                            \
    do {                                                                                           \
        ag_log(AG_LOG_WARN, "cluster: collection %s: cannot apply %s from etcd: %s", name, what,   \
               d.msg);                                                                             \
        if (!first)                                                                                \
            first = ag_fail(diag, r, "%s", d.msg);                                                 \
        d = (ag_diag_t){{0}};                                                                      \
    } while (0)
    /* Named vectors added or removed after creation. */
    const char *vname;
    json_t *vcfg;
    bool reopened = false;
    json_object_foreach((json_t *)json_object_get(rec, "vectors"), vname, vcfg)
    {
        bool want = !json_is_null(vcfg), have = has_vector(c, vname);
        if (want == have)
            continue;
        if ((r = ag_store_vector_change(api->store, name, vname, want ? vcfg : NULL, &d)) != 0)
            NOTE_FAIL("a named vector");
        reopened = true;
    }
    if (reopened) { /* the catalog serves a freshly loaded collection */
        ag_coll_unref(c);
        c = NULL;
        if (ag_store_get(api->store, name, &c, NULL) != 0)
            return first ? first : ag_fail(diag, AG_ENOTFOUND, "collection %s vanished", name);
    }
    /* PATCH: the whole folded patch, applied again only when it changed. */
    const json_t *patch = json_object_get(rec, "patch");
    bool changes = false;
    if (json_object_size(patch) && !json_equal(json_object_get(g_patched, name), patch)) {
        /* Applied only when it changes something (a node starting has applied it before). */
        if ((r = ag_store_update_check(api->store, name, patch, &changes, &d)) != 0 ||
            (changes && (r = ag_store_update_params(api->store, name, patch, &d)) != 0))
            NOTE_FAIL("the collection's parameters");
        else
            json_object_set_new(g_patched, name, json_deep_copy(patch));
    }
    /* Tenants the record no longer declares go first (with their points): while tenants are
     * declared their key index cannot change, and the record may have changed both. */
    const json_t *tenants = json_object_get(rec, "tenants");
    if (json_is_object(tenants)) {
        char keybuf[1024];
        const char *key = NULL;
        json_t *have = local_tenants(api, name, &key, keybuf, sizeof(keybuf));
        const char *t;
        json_t *info;
        json_object_foreach(have, t, info)
        {
            if (json_object_get(tenants, t) || !key)
                continue;
            step_t s = {.op = S_TENANT_DROP, .field = t, .key = key};
            if ((r = step_on(api, c, &s, &d)) != 0)
                NOTE_FAIL("a tenant's deletion");
            else if (out)
                out->deleted_points += s.deleted;
        }
        json_decref(have);
    }
    /* Payload indexes. */
    const json_t *schema = json_object_get(rec, "schema");
    schema_cmp_t cmp = {schema, false};
    if (json_is_object(schema))
        (void)ag_coll_read(c, same_schema, &cmp);
    if (json_is_object(schema) && !cmp.same) {
        json_t *have = local_schema(c);
        const char *f;
        json_t *def;
        json_object_foreach((json_t *)schema, f, def)
        {
            if (json_equal(json_object_get(have, f), def))
                continue;
            step_t s = {.op = S_INDEX, .field = f, .def = json_deep_copy(def)};
            if ((r = step_on(api, c, &s, &d)) != 0)
                NOTE_FAIL("a payload index");
        }
        json_object_foreach(have, f, def)
        {
            if (json_object_get(schema, f))
                continue;
            step_t s = {.op = S_INDEX, .field = f, .def = NULL};
            if ((r = step_on(api, c, &s, &d)) != 0)
                NOTE_FAIL("a payload index removal");
        }
        json_decref(have);
    }
    /* Tenants declared or (de)activated (after the indexes: the tenant key is an index). */
    if (json_is_object(tenants)) {
        char keybuf[1024];
        json_t *have = local_tenants(api, name, NULL, keybuf, sizeof(keybuf));
        const char *t;
        json_t *info;
        json_object_foreach((json_t *)tenants, t, info)
        {
            bool active = json_is_true(json_object_get(info, "active"));
            json_t *cur = json_object_get(have, t);
            if (cur && json_is_true(json_object_get(cur, "active")) == active)
                continue;
            step_t s = {.op = S_TENANT_SET, .field = t, .create = cur == NULL, .active = active};
            if ((r = step_on(api, c, &s, &d)) != 0)
                NOTE_FAIL("a tenant");
        }
        json_decref(have);
    }
#undef NOTE_FAIL
    ag_coll_unref(c);
    return first;
}

/* Brings local collection `name` to what the cache holds now: dropped when etcd no longer has
 * it, else sync_one. */
static int sync_name(ag_api_t *api, const char *name, sync_out_t *out, ag_diag_t *diag)
{
    ag_cluster_t *cl = ag_guard_cluster(api->guard);
    pthread_mutex_lock(&sync_mu);
    json_t *rec = ag_cluster_meta_get_full(cl, name);
    int rc = 0;
    if (rec) {
        rc = sync_one(api, name, rec, out, diag);
    } else {
        ag_collection_t *c = NULL;
        bool exists = ag_store_get(api->store, name, &c, NULL) == 0;
        if (c)
            ag_coll_unref(c);
        bool existed = false;
        ag_diag_t d = {{0}};
        if (exists && ag_store_delete(api->store, name, &existed, &d) != 0)
            ag_log(AG_LOG_WARN, "cluster: cannot drop collection %s deleted in etcd: %s", name,
                   d.msg);
        json_object_del(g_patched, name);
        if (!exists || existed)
            bound_note(name, false);
    }
    pthread_mutex_unlock(&sync_mu);
    json_decref(rec);
    return rc;
}

static void meta_changed(void *ud, const char *name, const json_t *rec)
{
    AG_UNUSED(rec); /* the cache's newest record is what counts */
    ag_diag_t d = {{0}};
    (void)sync_name(ud, name, NULL, &d);
}

/* Records a change of the call's collection in etcd (edit, on the record), then brings this node's
 * collection to the new record. *recorded false when there is nothing to record (a single node,
 * a shard-local call, a collection without a record): the caller changes its collection itself. */
static int ag_shard_meta_change(ag_call_t *call, ag_cluster_edit_fn edit, void *ud, bool *recorded,
                                size_t *deleted_points)
{
    ag_cluster_t *cl = ag_guard_cluster(call->api->guard);
    *recorded = false;
    if (!cl || call->shard_local || !call->coll)
        return 0;
    const char *name = ag_coll_name(call->coll);
    call->diag.msg[0] = '\0';
    int rc = ag_cluster_meta_update(cl, name, edit, ud, &call->diag);
    if (rc == AG_ENOTFOUND && !call->diag.msg[0])
        return 0; /* no record: a collection of this node only */
    if (rc)
        return rc;
    *recorded = true;
    sync_out_t out = {0};
    rc = sync_name(call->api, name, &out, &call->diag);
    if (deleted_points)
        *deleted_points = out.deleted_points;
    return rc;
}

/* ---- metadata changes: etcd first, then this node ------------------------------------------ */

/* The tenant key a schema names: its keyword / uuid index with params.is_tenant, or NULL. */
static const char *tenant_key_of(const json_t *schema)
{
    const char *f;
    json_t *def;
    json_object_foreach((json_t *)schema, f, def)
    {
        if (json_is_true(json_object_get(json_object_get(def, "params"), "is_tenant")))
            return f;
    }
    return NULL;
}

/* The record's section `key` (schema or tenants), taken from this node's collection when the
 * record was written before the section existed. Borrowed from rec; NULL without memory. */
static json_t *section(ag_call_t *call, json_t *rec, const char *key)
{
    json_t *sec = json_object_get(rec, key);
    if (json_is_object(sec))
        return sec;
    char buf[1024];
    sec = strcmp(key, "schema") == 0
              ? local_schema(call->coll)
              : local_tenants(call->api, ag_coll_name(call->coll), NULL, buf, sizeof(buf));
    if (!sec || json_object_set_new(rec, key, sec) != 0)
        return NULL;
    return sec;
}

typedef struct meta_edit {
    ag_call_t *call;
    const char *name; /* field, tenant or vector */
    const json_t *def;
    int op;
    bool active;
    bool first; /* out: a tenant created as the first one */
} meta_edit_t;

static int edit_index(void *ud, json_t *rec, ag_diag_t *diag)
{
    meta_edit_t *e = ud;
    json_t *schema = section(e->call, rec, "schema");
    json_t *tenants = section(e->call, rec, "tenants");
    if (!schema || !tenants)
        return AG_ENOMEM;
    char was[AG_MAX_NAME_LEN + 1];
    const char *cur = tenant_key_of(schema);
    snprintf(was, sizeof(was), "%s", cur ? cur : "");
    if (!e->def)
        json_object_del(schema, e->name); /* removing a field without an index changes nothing */
    else if (json_object_set_new(schema, e->name, json_deep_copy(e->def)) != 0)
        return AG_ENOMEM;
    /* The store's own rule (store/ag_store.c ag_store_save_schema), checked on the record so
     * that no node is asked to apply what it would refuse. */
    const char *next = tenant_key_of(schema);
    size_t declared = json_object_size(tenants);
    if (declared && (!next || !cur || strcmp(next, was) != 0))
        return ag_fail(diag, AG_ECONFLICT,
                       "the payload index on `%.200s` is the tenant key of %zu declared tenant(s); "
                       "it cannot be dropped, replaced or joined by another is_tenant index while "
                       "tenants are declared (delete them first)",
                       was, declared);
    return 0;
}

int ag_shard_index_change(ag_call_t *call, const char *field, const json_t *def, bool *recorded)
{
    meta_edit_t e = {.call = call, .name = field, .def = def};
    return ag_shard_meta_change(call, edit_index, &e, recorded, NULL);
}

static int edit_tenant(void *ud, json_t *rec, ag_diag_t *diag)
{
    meta_edit_t *e = ud;
    json_t *tenants = section(e->call, rec, "tenants");
    if (!tenants || !section(e->call, rec, "schema"))
        return AG_ENOMEM;
    const char *coll = ag_coll_name(e->call->coll);
    json_t *cur = json_object_get(tenants, e->name);
    if (e->op == AG_SHARD_TENANT_CREATE && cur)
        return ag_fail(diag, AG_EEXIST, "tenant `%s` already exists in collection `%s`", e->name,
                       coll);
    if (e->op != AG_SHARD_TENANT_CREATE && !cur)
        return ag_fail(diag, AG_ENOTFOUND, "tenant `%s` doesn't exist in collection `%s`", e->name,
                       coll);
    e->first = e->op == AG_SHARD_TENANT_CREATE && json_object_size(tenants) == 0;
    if (e->op == AG_SHARD_TENANT_DELETE)
        return json_object_del(tenants, e->name) ? AG_EINTERNAL : 0;
    return json_object_set_new(tenants, e->name, json_pack("{s:b}", "active", e->active))
               ? AG_ENOMEM
               : 0;
}

int ag_shard_tenant_change(ag_call_t *call, int op, const char *tenant, bool active, bool *recorded,
                           bool *first, size_t *deleted)
{
    meta_edit_t e = {
        .call = call, .name = tenant, .op = op, .active = op == AG_SHARD_TENANT_CREATE || active};
    int rc = ag_shard_meta_change(call, edit_tenant, &e, recorded, deleted);
    if (first)
        *first = e.first;
    return rc;
}

/* Folds a PATCH into the record's folded patch, so that applying the fold once does what
 * applying each PATCH in turn did (store/ag_store.c merge_into): null leaves a setting as it is
 * (kept out of the fold), objects merge, a quantization_config replaces the one before, and in
 * `metadata` a null removes its key (so the fold keeps that null). */
static int fold_patch(json_t *dst, const json_t *src, bool metadata)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)src, k, v)
    {
        json_t *cur = json_object_get(dst, k);
        if (json_is_null(v) && !metadata)
            continue;
        if (!metadata && strcmp(k, "metadata") == 0 && json_is_object(v)) {
            if (!json_is_object(cur)) {
                if (json_object_set_new(dst, k, json_object()) != 0)
                    return AG_ENOMEM;
                cur = json_object_get(dst, k);
            }
            if (fold_patch(cur, v, true) != 0)
                return AG_ENOMEM;
            continue;
        }
        if (!metadata && strcmp(k, "quantization_config") != 0 && json_is_object(cur) &&
            json_is_object(v)) {
            if (fold_patch(cur, v, false) != 0)
                return AG_ENOMEM;
        } else if (json_object_set_new(dst, k, json_deep_copy(v)) != 0) {
            return AG_ENOMEM;
        }
    }
    return 0;
}

static int edit_patch(void *ud, json_t *rec, ag_diag_t *diag)
{
    AG_UNUSED(diag);
    meta_edit_t *e = ud;
    json_t *patch = json_object_get(rec, "patch");
    if (!json_is_object(patch)) {
        if (json_object_set_new(rec, "patch", json_object()) != 0)
            return AG_ENOMEM;
        patch = json_object_get(rec, "patch");
    }
    return fold_patch(patch, e->def, false);
}

int ag_shard_patch(ag_call_t *call, const json_t *patch, bool *recorded)
{
    meta_edit_t e = {.call = call, .def = patch};
    return ag_shard_meta_change(call, edit_patch, &e, recorded, NULL);
}

static int edit_vector(void *ud, json_t *rec, ag_diag_t *diag)
{
    AG_UNUSED(diag);
    meta_edit_t *e = ud;
    json_t *vecs = json_object_get(rec, "vectors");
    if (!json_is_object(vecs)) {
        if (json_object_set_new(rec, "vectors", json_object()) != 0)
            return AG_ENOMEM;
        vecs = json_object_get(rec, "vectors");
    }
    return json_object_set_new(vecs, e->name, e->def ? json_deep_copy(e->def) : json_null())
               ? AG_ENOMEM
               : 0;
}

int ag_shard_vector_change(ag_call_t *call, const char *vname, const json_t *cfg, bool *recorded)
{
    meta_edit_t e = {.call = call, .name = vname, .def = cfg};
    return ag_shard_meta_change(call, edit_vector, &e, recorded, NULL);
}

/* Aliases (docs/CLUSTER.md "Collections"): the whole list lives in etcd; a change is applied
 * locally (checked and authorized as on a single node), then the resulting list is written with
 * a compare-and-swap; the other nodes make their local aliases equal to the list. alias_mu
 * serialises this node's alias changes and the watch's. */
static pthread_mutex_t alias_mu = PTHREAD_MUTEX_INITIALIZER;

static json_t *alias_map(const json_t *list)
{
    json_t *m = json_object();
    size_t i;
    const json_t *a;
    json_array_foreach(list, i, a)
    {
        const char *name = json_string_value(json_object_get(a, "alias_name"));
        const char *coll = json_string_value(json_object_get(a, "collection_name"));
        if (m && name && coll)
            json_object_set_new(m, name, json_string(coll));
    }
    return m;
}

/* Makes this node's aliases what list says (alias_mu held). An alias whose collection this node
 * does not have is skipped. */
static void aliases_sync(ag_api_t *api, const json_t *list)
{
    json_t *local = ag_store_aliases(api->store, NULL);
    json_t *want = alias_map(list), *have = alias_map(local);
    json_t *actions = json_array();
    const char *name;
    json_t *v;
    json_object_foreach(have, name, v)
    {
        if (!json_equal(json_object_get(want, name), v))
            json_array_append_new(actions,
                                  json_pack("{s:{s:s}}", "delete_alias", "alias_name", name));
    }
    json_object_foreach(want, name, v)
    {
        ag_collection_t *c = NULL;
        if (json_equal(json_object_get(have, name), v) ||
            ag_store_get(api->store, json_string_value(v), &c, NULL) != 0)
            continue;
        ag_coll_unref(c);
        json_array_append_new(actions, json_pack("{s:{s:s,s:O}}", "create_alias", "alias_name",
                                                 name, "collection_name", v));
    }
    ag_diag_t d = {{0}};
    if (json_array_size(actions) &&
        ag_store_alias_actions(api->store, actions, NULL, NULL, &d) != 0)
        ag_log(AG_LOG_WARN, "cluster: cannot apply the aliases from etcd: %s", d.msg);
    json_decref(actions);
    json_decref(want);
    json_decref(have);
    json_decref(local);
}

static void aliases_changed(void *ud, const json_t *list)
{
    pthread_mutex_lock(&alias_mu);
    aliases_sync(ud, list);
    pthread_mutex_unlock(&alias_mu);
}

int ag_shard_alias_actions(ag_call_t *call, const json_t *actions, ag_alias_check_fn check,
                           bool *handled)
{
    ag_cluster_t *cl = ag_guard_cluster(call->api->guard);
    *handled = cl != NULL;
    if (!cl)
        return 0;
    pthread_mutex_lock(&alias_mu);
    json_t *cur = NULL;
    uint64_t rev = 0;
    int rc = ag_cluster_aliases_get(cl, &cur, &rev, &call->diag);
    if (rc == 0) {
        aliases_sync(call->api, cur); /* start from what etcd holds */
        rc = ag_store_alias_actions(call->api->store, actions, check, call, &call->diag);
    }
    if (rc == 0) {
        json_t *now = ag_store_aliases(call->api->store, NULL);
        rc = now ? ag_cluster_aliases_put(cl, now, rev, &call->diag) : AG_ENOMEM;
        json_decref(now);
        if (rc)
            aliases_sync(call->api, cur); /* not recorded: undone here too */
    }
    pthread_mutex_unlock(&alias_mu);
    json_decref(cur);
    return rc;
}

int ag_shard_start(ag_api_t *api, ag_diag_t *diag)
{
    ag_cluster_t *cl = ag_guard_cluster(api->guard);
    if (!cl)
        return 0;
    g_api = api;
    if (!g_patched && !(g_patched = json_object()))
        return AG_ENOMEM;
    int rc = bound_load(api, diag);
    if (rc == 0)
        rc = ag_cluster_meta_start(cl, meta_changed, aliases_changed, api, diag);
    if (rc)
        return rc;
    /* Collections bound to a record that etcd no longer holds were deleted while this node was
     * down: dropped now (the watch would have dropped them). */
    pthread_mutex_lock(&sync_mu);
    json_t *gone = json_array();
    const char *name;
    json_t *v;
    json_object_foreach(g_bound, name, v)
    {
        json_t *rec = ag_cluster_meta_get(cl, name);
        if (!rec)
            json_array_append_new(gone, json_string(name));
        json_decref(rec);
    }
    pthread_mutex_unlock(&sync_mu);
    size_t i;
    json_array_foreach(gone, i, v)
    {
        ag_diag_t d = {{0}};
        ag_log(AG_LOG_INFO, "cluster: collection %s was deleted while this node was down: dropped",
               json_string_value(v));
        (void)sync_name(api, json_string_value(v), NULL, &d);
    }
    json_decref(gone);
    return 0;
}

int ag_shard_create(ag_call_t *call, const json_t *params, bool init_from)
{
    ag_cluster_t *cl = ag_guard_cluster(call->api->guard);
    if (!cl || call->shard_local)
        return 0;
    if (call->coll) /* a collection of this node only, from before: the local answer */
        return 0;
    json_int_t n = json_integer_value(json_object_get(params, "shard_number"));
    if (n < 1)
        n = 1;
    if (init_from && n > 1)
        return ag_fail(&call->diag, AG_EINVAL,
                       "init_from: not supported for a collection with shard_number > 1 in "
                       "cluster mode (docs/CLUSTER.md)");
    int rc = ag_cluster_meta_create(cl, call->params[0], params, (uint32_t)n, NULL, &call->diag);
    if (rc == 0) {
        pthread_mutex_lock(&sync_mu);
        bound_note(call->params[0], true);
        pthread_mutex_unlock(&sync_mu);
    }
    return rc;
}

/* The aliases of a deleted collection leave etcd's list too (best effort: a concurrent alias
 * change wins, and the other nodes skip aliases to collections they lack anyway). */
static void drop_aliases_of(ag_cluster_t *cl, const char *name)
{
    json_t *cur = NULL;
    uint64_t rev = 0;
    ag_diag_t d = {{0}};
    if (ag_cluster_aliases_get(cl, &cur, &rev, &d) != 0)
        return;
    json_t *kept = json_array();
    size_t i;
    json_t *a;
    json_array_foreach(cur, i, a)
    {
        const char *c = json_string_value(json_object_get(a, "collection_name"));
        if (!c || strcmp(c, name) != 0)
            json_array_append(kept, a);
    }
    if (kept && json_array_size(kept) != json_array_size(cur))
        (void)ag_cluster_aliases_put(cl, kept, rev, &d);
    json_decref(kept);
    json_decref(cur);
}

int ag_shard_delete(ag_call_t *call)
{
    ag_cluster_t *cl = ag_guard_cluster(call->api->guard);
    if (!cl || call->shard_local)
        return 0;
    bool existed = false;
    const char *name = call->params[0]; /* as the local delete: an alias names no record */
    int rc = ag_cluster_meta_delete(cl, name, &existed, &call->diag);
    if (rc == 0 && existed)
        drop_aliases_of(cl, name);
    return rc;
}

/* ---- placement ---------------------------------------------------------------------------- */

typedef struct layout {
    uint32_t nshards;
    const char *shard_node[1024]; /* borrowed from rec */
    size_t nnodes;                /* distinct nodes, in shard order of first appearance */
    const char *node[MAX_NODES];
    const char *url[MAX_NODES];
    char shards_of[MAX_NODES][128]; /* "0, 3" for messages */
    int me;                         /* index of this node in node[], or -1 */
} layout_t;

static int layout_parse(const json_t *rec, const char *me, layout_t *l)
{
    memset(l, 0, sizeof(*l));
    l->me = -1;
    const json_t *shards = json_object_get(rec, "shards");
    size_t n = json_array_size(shards);
    if (n == 0 || n > AG_ARRAY_LEN(l->shard_node))
        return AG_EINTERNAL;
    l->nshards = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_array_get(shards, i);
        const char *node = json_string_value(json_object_get(s, "node"));
        const char *url = json_string_value(json_object_get(s, "url"));
        if (!node || !url)
            return AG_EINTERNAL;
        l->shard_node[i] = node;
        size_t k = 0;
        while (k < l->nnodes && strcmp(l->node[k], node) != 0)
            k++;
        if (k == l->nnodes) {
            if (k == MAX_NODES)
                return AG_EINTERNAL;
            l->node[k] = node;
            l->url[k] = url;
            l->nnodes++;
            if (strcmp(node, me) == 0)
                l->me = (int)k;
        }
        size_t used = strlen(l->shards_of[k]);
        snprintf(l->shards_of[k] + used, sizeof(l->shards_of[k]) - used, "%s%zu", used ? ", " : "",
                 i);
    }
    return 0;
}

static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* The shard of a point (docs/CLUSTER.md "Shards"): an integer id n → mix64(n); a UUID (its 16
 * bytes, the canonical big-endian form whatever way it was written) → mix64(hi ^ mix64(lo));
 * then modulo shard_number. mix64 is the SplitMix64 finaliser: fixed, so every node and every
 * version agrees. */
static uint32_t shard_of(const ag_point_id_t *id, uint32_t n)
{
    uint64_t h =
        id->kind == AG_ID_NUM ? mix64(id->num) : mix64(be64(id->uuid) ^ mix64(be64(id->uuid + 8)));
    return (uint32_t)(h % n);
}

/* The node index owning the point given as JSON id, or -1 when it is no valid id (the handler
 * then explains what is wrong). */
static int owner_of(const layout_t *l, const json_t *idv)
{
    ag_point_id_t id;
    ag_diag_t d;
    if (ag_id_parse(idv, &id, "id", &d) != 0)
        return -1;
    const char *node = l->shard_node[shard_of(&id, l->nshards)];
    for (size_t k = 0; k < l->nnodes; k++)
        if (strcmp(l->node[k], node) == 0)
            return (int)k;
    return -1;
}

/* ---- writes: each node keeps its own points ------------------------------------------------ */

/* Keeps, in a write's selector object o (upsert, delete, payload and vector operations), only the
 * points node k owns. Returns 1 when the operation still concerns node k (points left, or a
 * selector by filter, which every node applies to its own points), 0 when nothing is left. */
static int filter_selector(json_t *o, const layout_t *l, int k)
{
    if (!json_is_object(o))
        return 1; /* malformed: let the handler say so */
    json_t *points = json_object_get(o, "points");
    json_t *batch = json_object_get(o, "batch");
    if (json_is_array(points)) {
        json_t *kept = json_array();
        size_t i;
        json_t *p;
        json_array_foreach(points, i, p)
        {
            const json_t *idv = json_is_object(p) ? json_object_get(p, "id") : p;
            int own = owner_of(l, idv);
            if (own < 0 || own == k)
                json_array_append(kept, p);
        }
        size_t left = json_array_size(kept);
        json_object_set_new(o, "points", kept);
        return left > 0;
    }
    if (json_is_object(batch) && json_is_array(json_object_get(batch, "ids"))) {
        json_t *ids = json_object_get(batch, "ids");
        size_t n = json_array_size(ids);
        bool *keep = calloc(n ? n : 1, sizeof(bool));
        if (!keep)
            return 1;
        size_t left = 0;
        for (size_t i = 0; i < n; i++) {
            int own = owner_of(l, json_array_get(ids, i));
            keep[i] = own < 0 || own == k;
            left += keep[i];
        }
        /* ids, payloads and every vectors array are parallel. */
        json_t *arrays[2 + AG_MAX_VECTORS];
        size_t na = 0;
        arrays[na++] = ids;
        if (json_is_array(json_object_get(batch, "payloads")))
            arrays[na++] = json_object_get(batch, "payloads");
        json_t *vecs = json_object_get(batch, "vectors");
        if (json_is_array(vecs)) {
            arrays[na++] = vecs;
        } else if (json_is_object(vecs)) {
            const char *name;
            json_t *v;
            json_object_foreach(vecs, name, v)
            {
                if (json_is_array(v) && na < AG_ARRAY_LEN(arrays))
                    arrays[na++] = v;
            }
        }
        for (size_t a = 0; a < na; a++) {
            if (json_array_size(arrays[a]) != n)
                continue; /* malformed: the handler explains */
            for (size_t i = n; i-- > 0;)
                if (!keep[i])
                    json_array_remove(arrays[a], i);
        }
        free(keep);
        return left > 0;
    }
    return 1;
}

/* Filters a whole write body for node k; returns whether node k has anything to do. */
static int filter_write(json_t *body, bool is_batch, const layout_t *l, int k)
{
    if (!is_batch)
        return filter_selector(body, l, k);
    json_t *ops = json_object_get(body, "operations");
    if (!json_is_array(ops))
        return 1;
    for (size_t i = json_array_size(ops); i-- > 0;) {
        json_t *op = json_array_get(ops, i);
        if (!json_is_object(op) || json_object_size(op) != 1)
            continue;
        json_t *inner = json_object_iter_value(json_object_iter(op));
        if (!filter_selector(inner, l, k))
            json_array_remove(ops, i);
    }
    return json_array_size(ops) > 0;
}

/* ---- the router ----------------------------------------------------------------------------- */

typedef enum {
    R_LOCAL = 0, /* not a point route: this node's collection answers */
    R_WRITE,
    R_BATCH,
    R_SEARCH,
    R_QUERY,
    R_SEARCH_BATCH,
    R_QUERY_BATCH,
    R_COUNT,
    R_SCROLL,
    R_RETRIEVE,
    R_GET_POINT,
    R_UNSUPPORTED,
} rkind_t;

static rkind_t classify(const ag_call_t *call)
{
    const char *p = call->route->pattern;
    const char *base = "/collections/{name}";
    size_t bl = strlen(base);
    if (strncmp(p, base, bl) != 0)
        return R_LOCAL;
    const char *rest = p + bl;
    if (strcmp(rest, "/facet") == 0)
        return R_UNSUPPORTED;
    if (strncmp(rest, "/points", 7) != 0)
        return R_LOCAL;
    rest += 7;
    int m = call->route->method;
    if (*rest == '\0')
        return m == AG_HTTP_PUT ? R_WRITE : R_RETRIEVE;
    if (strcmp(rest, "/batch") == 0)
        return R_BATCH;
    if (strcmp(rest, "/delete") == 0 || strcmp(rest, "/vectors") == 0 ||
        strcmp(rest, "/vectors/delete") == 0 || strcmp(rest, "/payload") == 0 ||
        strcmp(rest, "/payload/delete") == 0 || strcmp(rest, "/payload/clear") == 0)
        return R_WRITE;
    if (strcmp(rest, "/search") == 0)
        return R_SEARCH;
    if (strcmp(rest, "/search/batch") == 0)
        return R_SEARCH_BATCH;
    if (strcmp(rest, "/query/batch") == 0)
        return R_QUERY_BATCH;
    if (strcmp(rest, "/query") == 0)
        return R_QUERY;
    if (strcmp(rest, "/count") == 0)
        return R_COUNT;
    if (strcmp(rest, "/scroll") == 0)
        return R_SCROLL;
    if (strcmp(rest, "/{id}") == 0)
        return R_GET_POINT;
    return R_UNSUPPORTED;
}

static void put_encoded(char *buf, size_t cap, size_t *o, const char *text)
{
    for (const unsigned char *s = (const unsigned char *)(text ? text : ""); *s && *o + 4 < cap;
         s++) {
        if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
            strchr("-._~", *s))
            buf[(*o)++] = (char)*s;
        else
            *o += (size_t)snprintf(buf + *o, cap - *o, "%%%02X", *s);
    }
    buf[AG_MIN(*o, cap - 1)] = '\0';
}

/* The REST path of the call (its route's pattern with the path parameters, percent-encoded) and
 * its query, into buf: the same for a REST request and a gRPC call run as that route. */
static void rest_path(const ag_call_t *call, char *buf, size_t cap)
{
    size_t o = 0;
    int pi = 0;
    buf[0] = '\0';
    for (const char *p = call->route->pattern; *p && o + 4 < cap;) {
        if (*p == '{') {
            const char *end = strchr(p, '}');
            put_encoded(buf, cap, &o, pi < call->nparams ? call->params[pi] : "");
            pi++;
            p = end ? end + 1 : p + strlen(p);
        } else {
            buf[o++] = *p++;
            buf[o] = '\0';
        }
    }
    const ag_request_t *req = call->req;
    for (int i = 0; i < req->nquery && o + 4 < cap; i++) {
        buf[o++] = i ? '&' : '?';
        put_encoded(buf, cap, &o, req->query[i].key);
        if (o + 4 < cap)
            buf[o++] = '=';
        put_encoded(buf, cap, &o, req->query[i].val);
    }
}

/* An error code for a status another node answered (its message is kept). */
static int status_code(int status)
{
    switch (status) {
    case 400:
        return AG_EINVAL;
    case 401:
        return AG_EUNAUTH;
    case 403:
        return AG_EFORBIDDEN;
    case 404:
        return AG_ENOTFOUND;
    case 408:
        return AG_ETIMEOUT;
    case 409:
        return AG_ECONFLICT;
    case 413:
        return AG_ETOOBIG;
    case 422:
        return AG_EUNPROCESSABLE;
    case 429:
        return AG_ETHROTTLED;
    case 503:
        return AG_EUNAVAILABLE;
    default:
        return AG_EINTERNAL;
    }
}

typedef struct fanout {
    ag_cluster_t *cl;
    ag_peer_call_t calls[MAX_NODES];
    int node_of[MAX_NODES]; /* layout node index of each call */
    char *bodies[MAX_NODES];
    size_t n;
    long timeout_ms;
    pthread_t thread;
    bool started;
} fanout_t;

static void *fanout_main(void *arg)
{
    fanout_t *f = arg;
    (void)ag_cluster_peer_calls(f->cl, f->calls, f->n, f->timeout_ms);
    return NULL;
}

static void fanout_add(fanout_t *f, const ag_call_t *call, const layout_t *l, int k,
                       const char *path, char *body)
{
    ag_peer_call_t *pc = &f->calls[f->n];
    *pc = (ag_peer_call_t){0};
    pc->node = l->node[k];
    pc->url = l->url[k];
    pc->method = ag_http_method_str(call->route->method);
    pc->path = path;
    pc->api_key = call->req->api_key;
    pc->authorization = call->req->authorization;
    pc->client = call->req->remote_addr;
    pc->body = body;
    pc->len = body ? strlen(body) : 0;
    f->bodies[f->n] = body;
    f->node_of[f->n] = k;
    f->n++;
}

static void fanout_start(fanout_t *f)
{
    if (f->n && pthread_create(&f->thread, NULL, fanout_main, f) == 0)
        f->started = true;
    else if (f->n)
        fanout_main(f);
}

static void fanout_wait(fanout_t *f)
{
    if (f->started)
        pthread_join(f->thread, NULL);
    f->started = false;
}

static void fanout_free(fanout_t *f)
{
    fanout_wait(f);
    ag_cluster_peer_calls_free(f->calls, f->n);
    for (size_t i = 0; i < f->n; i++)
        free(f->bodies[i]);
}

/* The first remote call that did not succeed, answered to the caller: its own answer when the
 * node answered (a refusal or an error of the request), else 503 naming the shards and the node.
 * Returns 0 when all succeeded. */
static int fanout_check(ag_call_t *call, const fanout_t *f, const layout_t *l)
{
    for (size_t i = 0; i < f->n; i++) {
        const ag_peer_call_t *pc = &f->calls[i];
        int k = f->node_of[i];
        if (pc->status == 0 || pc->status == 502 || pc->status == 504)
            return ag_fail(&call->diag, AG_EUNAVAILABLE,
                           "Service unavailable: shard %s of collection `%s` on node %s (%s) "
                           "cannot be reached (%s); no partial answer is given",
                           l->shards_of[k], ag_coll_name(call->coll), l->node[k], l->url[k],
                           pc->err[0] ? pc->err : "bad gateway");
        if (pc->status != 200) {
            json_t *doc = pc->reply ? json_loads(pc->reply, 0, NULL) : NULL;
            const char *msg =
                json_string_value(json_object_get(json_object_get(doc, "status"), "error"));
            int rc = ag_fail(&call->diag, status_code(pc->status), "%s",
                             msg ? msg : "the node holding the shard refused the request");
            json_decref(doc);
            return rc;
        }
    }
    return 0;
}

/* The "result" of a remote call's answer (new reference) or NULL. */
static json_t *remote_result(const ag_peer_call_t *pc)
{
    json_t *doc = pc->reply ? json_loads(pc->reply, 0, NULL) : NULL;
    json_t *r = json_incref(json_object_get(doc, "result"));
    json_decref(doc);
    return r;
}

typedef struct scored {
    json_t *pt;
    double score;
    ag_point_id_t id;
} scored_t;

static int by_score(const void *a, const void *b, void *ctx)
{
    const scored_t *x = a, *y = b;
    int desc = *(const int *)ctx;
    if (x->score != y->score)
        return (x->score > y->score) == (desc > 0) ? -1 : 1;
    return ag_id_cmp(&x->id, &y->id);
}

/* Merges point lists: sorted by score (desc: higher first; 0: by id only), ties by id; offset
 * skipped, at most limit kept. Returns a new array. */
static json_t *merge_points(json_t **lists, size_t nl, int desc, size_t offset, size_t limit)
{
    size_t total = 0;
    for (size_t i = 0; i < nl; i++)
        total += json_array_size(lists[i]);
    scored_t *s = calloc(total ? total : 1, sizeof(*s));
    json_t *out = json_array();
    if (!s || !out) {
        free(s);
        json_decref(out);
        return NULL;
    }
    size_t m = 0;
    for (size_t i = 0; i < nl; i++) {
        size_t j;
        json_t *p;
        json_array_foreach(lists[i], j, p)
        {
            ag_diag_t d;
            s[m].pt = p;
            s[m].score = json_number_value(json_object_get(p, "score"));
            if (ag_id_parse(json_object_get(p, "id"), &s[m].id, "id", &d) != 0)
                continue;
            if (desc == 0)
                s[m].score = 0;
            m++;
        }
    }
    qsort_r(s, m, sizeof(*s), by_score, &desc);
    for (size_t i = offset; i < m && i < offset + limit; i++)
        json_array_append(out, s[i].pt);
    free(s);
    return out;
}

typedef struct dist_ud {
    const char *name;
    int desc;
} dist_ud_t;

static int read_dist(void *ud, ag_collection_t *c)
{
    dist_ud_t *d = ud;
    int vi = ag_coll_vector(c, d->name);
    if (vi < 0 && d->name[0] == '\0' && ag_coll_nvec(c) > 0)
        vi = 0;
    if (vi >= 0) {
        ag_dense_info_t info;
        ag_coll_dense_info(c, vi, &info);
        d->desc = info.dist == AG_DIST_EUCLID || info.dist == AG_DIST_MANHATTAN ? -1 : 1;
    }
    return 0;
}

/* Is a higher score better (1) or a lower (-1) for the vector named by the body? */
static int score_order(ag_call_t *call, const json_t *body, rkind_t kind)
{
    dist_ud_t d = {"", 1};
    if (kind == R_SEARCH) {
        const json_t *v = json_object_get(body, "vector");
        if (json_is_object(v) && json_is_string(json_object_get(v, "name")))
            d.name = json_string_value(json_object_get(v, "name"));
    } else if (json_is_string(json_object_get(body, "using"))) {
        d.name = json_string_value(json_object_get(body, "using"));
    }
    (void)ag_coll_read(call->coll, read_dist, &d);
    return d.desc;
}

/* A query the merge can do exactly: nearest by a vector given in the request, or none. */
static int query_supported(ag_call_t *call, const json_t *body)
{
    static const char *const refused[] = {"prefetch", "group_by", "lookup_from"};
    for (size_t i = 0; i < AG_ARRAY_LEN(refused); i++)
        if (json_object_get(body, refused[i]) && !json_is_null(json_object_get(body, refused[i])))
            return ag_fail(&call->diag, AG_EINVAL,
                           "%s: not supported yet on a collection with several shards "
                           "(docs/CLUSTER.md \"Not yet\")",
                           refused[i]);
    const json_t *q = json_object_get(body, "query");
    if (!q || json_is_null(q) || json_is_array(q))
        return 0;
    if (json_is_object(q)) {
        const json_t *near = json_object_get(q, "nearest");
        if (json_object_size(q) == 1 && json_is_array(near))
            return 0;
        if (json_object_get(q, "indices") && json_object_get(q, "values"))
            return 0;
    }
    return ag_fail(&call->diag, AG_EINVAL,
                   "query: only a nearest query by a vector given in the request is supported "
                   "yet on a collection with several shards (docs/CLUSTER.md \"Not yet\")");
}

static size_t uint_or(const json_t *o, const char *key, size_t dflt)
{
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (size_t)json_integer_value(v) : dflt;
}

/* Runs the local handler on body (taken), the remote calls meanwhile. */
static int run_local(ag_call_t *call, json_t *body)
{
    json_decref(call->body);
    call->body = body;
    return call->route->handler(call);
}

/* What one search of a request asks for: offset and limit as the caller gave them, and the
 * score order. */
typedef struct prep {
    size_t offset, limit;
    int desc;
} prep_t;

/* Rewrites one search or query (body) for the shards: every shard's best offset + limit, merged,
 * then the offset skipped once. */
static int prep_one(ag_call_t *call, rkind_t kind, json_t *body, prep_t *p)
{
    int rc;
    if (!json_is_object(body))
        return 0; /* malformed: the handler explains */
    if (kind == R_QUERY && (rc = query_supported(call, body)) != 0)
        return rc;
    p->offset = uint_or(body, "offset", 0);
    p->limit =
        uint_or(body, "limit",
                kind == R_QUERY && json_object_get(body, "top") ? uint_or(body, "top", 10) : 10);
    json_object_set_new(body, "limit", json_integer((json_int_t)(p->offset + p->limit)));
    json_object_del(body, "top");
    json_object_set_new(body, "offset", json_integer(0));
    const json_t *q = json_object_get(body, "query");
    p->desc = kind == R_QUERY && (!q || json_is_null(q)) ? 0 : score_order(call, body, kind);
    return 0;
}

static int merge_reads(ag_call_t *call, rkind_t kind, const fanout_t *f, const layout_t *l,
                       const prep_t *pr, size_t npr)
{
    int desc = npr ? pr[0].desc : 0;
    size_t offset = npr ? pr[0].offset : 0, limit = npr ? pr[0].limit : 10;
    json_t *lists[MAX_NODES + 1];
    json_t *results[MAX_NODES + 1];
    size_t nl = 0, nr = 0;
    json_t *local = call->result;
    call->result = NULL;
    if (local)
        results[nr++] = local;
    for (size_t i = 0; i < f->n; i++) {
        json_t *r = remote_result(&f->calls[i]);
        if (!r) {
            for (size_t j = 0; j < nr; j++)
                json_decref(results[j]);
            int k = f->node_of[i];
            return ag_fail(&call->diag, AG_EUNAVAILABLE,
                           "Service unavailable: shard %s of collection `%s` on node %s gave "
                           "no result",
                           l->shards_of[k], ag_coll_name(call->coll), l->node[k]);
        }
        results[nr++] = r;
    }
    int rc = 0;
    if (kind == R_COUNT) {
        json_int_t sum = 0;
        for (size_t i = 0; i < nr; i++)
            sum += json_integer_value(json_object_get(results[i], "count"));
        call->result = json_pack("{s:I}", "count", sum);
    } else if (kind == R_SEARCH || kind == R_RETRIEVE) {
        for (size_t i = 0; i < nr; i++)
            lists[nl++] = results[i];
        if (kind == R_SEARCH) {
            call->result = merge_points(lists, nl, desc, offset, limit);
        } else {
            call->result = json_array();
            for (size_t i = 0; i < nl && call->result; i++)
                json_array_extend(call->result, lists[i]);
        }
    } else if (kind == R_QUERY) {
        for (size_t i = 0; i < nr; i++)
            lists[nl++] = json_object_get(results[i], "points");
        json_t *pts = merge_points(lists, nl, desc, offset, limit);
        call->result = pts ? json_pack("{s:o}", "points", pts) : NULL;
    } else if (kind == R_SEARCH_BATCH || kind == R_QUERY_BATCH) {
        /* One answer per search, each merged on its own. */
        call->result = json_array();
        for (size_t s = 0; s < npr && call->result; s++) {
            nl = 0;
            for (size_t i = 0; i < nr; i++) {
                json_t *one = json_array_get(results[i], s);
                lists[nl++] = kind == R_QUERY_BATCH ? json_object_get(one, "points") : one;
            }
            json_t *pts = merge_points(lists, nl, pr[s].desc, pr[s].offset, pr[s].limit);
            if (pts && kind == R_QUERY_BATCH)
                pts = json_pack("{s:o}", "points", pts);
            if (!pts || json_array_append_new(call->result, pts) != 0) {
                json_decref(call->result);
                call->result = NULL;
            }
        }
    } else if (kind == R_SCROLL) {
        json_t *next = NULL;
        for (size_t i = 0; i < nr; i++) {
            lists[nl++] = json_object_get(results[i], "points");
            json_t *np = json_object_get(results[i], "next_page_offset");
            ag_point_id_t a, b;
            ag_diag_t d;
            if (np && !json_is_null(np) &&
                (!next || (ag_id_parse(np, &a, "", &d) == 0 && ag_id_parse(next, &b, "", &d) == 0 &&
                           ag_id_cmp(&a, &b) < 0)))
                next = np;
        }
        json_t *all = merge_points(lists, nl, 0, 0, SIZE_MAX);
        json_t *pts = json_array();
        if (all && pts) {
            for (size_t i = 0; i < limit && i < json_array_size(all); i++)
                json_array_append(pts, json_array_get(all, i));
            json_t *np = json_array_size(all) > limit
                             ? json_object_get(json_array_get(all, limit), "id")
                             : next;
            call->result =
                json_pack("{s:O,s:O}", "points", pts, "next_page_offset", np ? np : json_null());
        }
        json_decref(all);
        json_decref(pts);
    }
    for (size_t i = 0; i < nr; i++)
        json_decref(results[i]);
    if (!call->result && rc == 0)
        rc = AG_ENOMEM;
    return rc;
}

/* Sends the whole request to node k and answers with what it answers. */
static int proxy(ag_call_t *call, const layout_t *l, int k, const char *path)
{
    fanout_t f = {.cl = ag_guard_cluster(call->api->guard)};
    f.timeout_ms = (long)AG_MAX((call->deadline - ag_now_mono()) * 1000.0, 100.0);
    char *body = NULL;
    if (call->body)
        body = json_dumps(call->body, JSON_COMPACT);
    else if (call->req->body_len)
        body = strndup(call->req->body, call->req->body_len);
    if ((call->body || call->req->body_len) && !body)
        return AG_ENOMEM;
    fanout_add(&f, call, l, k, path, body);
    fanout_main(&f);
    int rc = fanout_check(call, &f, l);
    if (rc == 0 && !(call->result = remote_result(&f.calls[0])))
        rc = ag_fail(&call->diag, AG_EUNAVAILABLE,
                     "Service unavailable: node %s gave no result for collection `%s`", l->node[k],
                     ag_coll_name(call->coll));
    fanout_free(&f);
    return rc;
}

int ag_shard_route(ag_call_t *call, bool *handled)
{
    *handled = false;
    ag_cluster_t *cl = ag_guard_cluster(call->api->guard);
    if (!cl || !call->coll)
        return 0;
    rkind_t kind = classify(call);
    if (kind == R_LOCAL)
        return 0;
    json_t *rec = ag_cluster_meta_get(cl, ag_coll_name(call->coll));
    if (!rec)
        return 0; /* a collection of this node only */
    layout_t l;
    int rc = layout_parse(rec, ag_cluster_node_id(cl), &l);
    if (rc) {
        json_decref(rec);
        return ag_fail(&call->diag, AG_EINTERNAL,
                       "cluster: the placement of collection `%s` in "
                       "etcd is malformed",
                       ag_coll_name(call->coll));
    }
    bool write = kind == R_WRITE || kind == R_BATCH;
    if (write && (rc = ag_call_body(call)) != 0)
        goto out;
    if (call->shard_local) {
        /* From another node: this node's points only, and no further fan-out. */
        if (write && l.me >= 0)
            (void)filter_write(call->body, kind == R_BATCH, &l, l.me);
        goto out;
    }
    if (l.nnodes == 1 && l.me == 0)
        goto out; /* every shard is here */
    *handled = true;
    char path[4096];
    rest_path(call, path, sizeof(path));
    fanout_t f = {.cl = cl};
    f.timeout_ms = (long)AG_MAX((call->deadline - ag_now_mono()) * 1000.0, 100.0);
    if (kind == R_UNSUPPORTED && l.nshards > 1) {
        rc = ag_fail(&call->diag, AG_EINVAL,
                     "%s is not supported yet on a collection with several shards "
                     "(docs/CLUSTER.md \"Not yet\")",
                     call->route->pattern);
        goto out;
    }
    if (l.nshards == 1 || kind == R_UNSUPPORTED || kind == R_GET_POINT) {
        int k = 0;
        if (kind == R_GET_POINT) {
            json_t *idv = NULL;
            ag_point_id_t id;
            ag_diag_t d;
            if (ag_id_parse_str(call->params[1], &id, &d) == 0 &&
                (idv = ag_id_to_json(&id)) != NULL)
                k = owner_of(&l, idv);
            json_decref(idv);
            if (k < 0)
                k = l.me >= 0 ? l.me : 0;
        }
        if (k == l.me)
            *handled = false;
        else
            rc = proxy(call, &l, k, path);
        goto out;
    }
    if (write) {
        bool local = false;
        json_t *mine = NULL;
        for (size_t k = 0; k < l.nnodes; k++) {
            json_t *b = json_deep_copy(call->body);
            if (!b) {
                rc = AG_ENOMEM;
                break;
            }
            if (!filter_write(b, kind == R_BATCH, &l, (int)k)) {
                json_decref(b);
                continue;
            }
            if ((int)k == l.me) {
                local = true;
                mine = b;
                continue;
            }
            char *text = json_dumps(b, JSON_COMPACT);
            json_decref(b);
            if (!text) {
                rc = AG_ENOMEM;
                break;
            }
            fanout_add(&f, call, &l, (int)k, path, text);
        }
        if (rc == 0) {
            fanout_start(&f);
            if (local) {
                rc = run_local(call, mine);
                mine = NULL;
            }
            fanout_wait(&f);
            if (rc == 0 && !local)
                call->result = ag_update_result(call);
            if (rc == 0)
                rc = fanout_check(call, &f, &l);
        }
        json_decref(mine);
        fanout_free(&f);
        goto out;
    }
    /* Reads: every node holding a shard, merged. */
    if ((rc = ag_call_body(call)) != 0)
        goto out;
    prep_t one = {0, 10, 0}, *pr = &one;
    size_t npr = 1;
    json_t *body = json_deep_copy(call->body);
    if (!body) {
        rc = AG_ENOMEM;
        goto out;
    }
    if (kind == R_SCROLL && json_object_get(body, "order_by") &&
        !json_is_null(json_object_get(body, "order_by"))) {
        json_decref(body);
        rc = ag_fail(&call->diag, AG_EINVAL,
                     "order_by: not supported yet on a collection with several shards "
                     "(docs/CLUSTER.md \"Not yet\")");
        goto out;
    }
    if (kind == R_SEARCH || kind == R_QUERY) {
        rc = prep_one(call, kind, body, &one);
    } else if (kind == R_SEARCH_BATCH || kind == R_QUERY_BATCH) {
        json_t *searches = json_object_get(body, "searches");
        npr = json_array_size(searches);
        pr = calloc(npr ? npr : 1, sizeof(*pr));
        if (!pr) {
            pr = &one;
            rc = AG_ENOMEM;
        }
        for (size_t s = 0; rc == 0 && s < npr; s++)
            rc = prep_one(call, kind == R_SEARCH_BATCH ? R_SEARCH : R_QUERY,
                          json_array_get(searches, s), &pr[s]);
    } else if (kind == R_SCROLL) {
        one.limit = uint_or(body, "limit", 10);
    }
    char *text = rc ? NULL : json_dumps(body, JSON_COMPACT);
    if (!text) {
        json_decref(body);
        if (pr != &one)
            free(pr);
        rc = rc ? rc : AG_ENOMEM;
        goto out;
    }
    for (size_t k = 0; k < l.nnodes; k++) {
        if ((int)k == l.me)
            continue;
        char *copy = strdup(text);
        if (!copy) {
            rc = AG_ENOMEM;
            break;
        }
        fanout_add(&f, call, &l, (int)k, path, copy);
    }
    free(text);
    if (rc == 0) {
        fanout_start(&f);
        if (l.me >= 0) {
            rc = run_local(call, body);
            body = NULL;
        }
        fanout_wait(&f);
        if (rc == 0)
            rc = fanout_check(call, &f, &l);
        if (rc == 0)
            rc = merge_reads(call, kind, &f, &l, pr, npr);
    }
    if (pr != &one)
        free(pr);
    json_decref(body);
    fanout_free(&f);
out:
    json_decref(rec);
    return rc;
}

static void add_count(json_t *to, const json_t *from, const char *key)
{
    json_t *v = json_object_get(to, key);
    if (json_is_integer(v))
        json_integer_set(v, json_integer_value(v) + json_integer_value(json_object_get(from, key)));
}

int ag_shard_info_sum(ag_call_t *call, json_t *result)
{
    ag_cluster_t *cl = ag_guard_cluster(call->api->guard);
    if (!cl || call->shard_local || !call->coll)
        return 0;
    json_t *rec = ag_cluster_meta_get(cl, ag_coll_name(call->coll));
    if (!rec)
        return 0;
    layout_t l;
    int rc = layout_parse(rec, ag_cluster_node_id(cl), &l);
    if (rc == 0 && !(l.nnodes == 1 && l.me == 0)) {
        /* Every other node holding a shard counts its own points (each authorizes the caller
         * and applies its row restriction itself); a node down fails the whole answer. */
        char path[4096];
        rest_path(call, path, sizeof(path));
        fanout_t f = {.cl = cl};
        f.timeout_ms = (long)AG_MAX((call->deadline - ag_now_mono()) * 1000.0, 100.0);
        for (size_t k = 0; k < l.nnodes; k++)
            if ((int)k != l.me)
                fanout_add(&f, call, &l, (int)k, path, NULL);
        fanout_main(&f);
        rc = fanout_check(call, &f, &l);
        for (size_t i = 0; rc == 0 && i < f.n; i++) {
            json_t *r = remote_result(&f.calls[i]);
            if (!json_is_object(r)) {
                int k = f.node_of[i];
                json_decref(r);
                rc = ag_fail(&call->diag, AG_EUNAVAILABLE,
                             "Service unavailable: shard %s of collection `%s` on node %s gave "
                             "no count",
                             l.shards_of[k], ag_coll_name(call->coll), l.node[k]);
                break;
            }
            static const char *const counts[] = {"points_count", "vectors_count",
                                                 "indexed_vectors_count"};
            for (size_t j = 0; j < AG_ARRAY_LEN(counts); j++)
                add_count(result, r, counts[j]);
            const char *field;
            json_t *def;
            json_object_foreach(json_object_get(result, "payload_schema"), field, def) add_count(
                def, json_object_get(json_object_get(r, "payload_schema"), field), "points");
            if (json_is_string(json_object_get(r, "status")) &&
                strcmp(json_string_value(json_object_get(r, "status")), "green") != 0)
                json_object_set(result, "status", json_object_get(r, "status"));
            json_decref(r);
        }
        fanout_free(&f);
    } else if (rc) {
        rc = ag_fail(&call->diag, AG_EINTERNAL,
                     "cluster: the placement of collection `%s` in etcd is malformed",
                     ag_coll_name(call->coll));
    }
    json_decref(rec);
    return rc;
}

typedef struct shard_count {
    uint32_t n;
    uint64_t *counts;
} shard_count_t;

static bool count_shard(void *ud, uint32_t slot, const ag_point_id_t *id, const json_t *payload)
{
    AG_UNUSED(slot);
    AG_UNUSED(payload);
    shard_count_t *sc = ud;
    if (id)
        sc->counts[shard_of(id, sc->n)]++;
    return true;
}

/* GET /collections/{c}/cluster in cluster mode: the placement from etcd (Qdrant's shape). NULL
 * when the collection has no record (a collection of this node only). */
json_t *ag_shard_cluster_info(ag_call_t *call)
{
    ag_cluster_t *cl = ag_guard_cluster(call->api->guard);
    json_t *rec = call->coll ? ag_cluster_meta_get(cl, ag_coll_name(call->coll)) : NULL;
    if (!rec)
        return NULL;
    const char *me = ag_cluster_node_id(cl);
    json_t *local = json_array(), *remote = json_array();
    /* Qdrant reports each local shard's points: the local points counted by shard (a scan). */
    shard_count_t sc = {(uint32_t)json_array_size(json_object_get(rec, "shards")), NULL};
    if (sc.n && sc.n <= 1024 && (sc.counts = calloc(sc.n, sizeof(*sc.counts))) != NULL)
        ag_coll_scan(call->coll, count_shard, &sc);
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(rec, "shards"), i, s)
    {
        const char *node = json_string_value(json_object_get(s, "node"));
        json_t *sh = json_pack("{s:O,s:s?,s:s}", "shard_id", json_object_get(s, "shard_id"),
                               "peer_id", node, "state", "Active");
        if (node && strcmp(node, me) == 0) {
            json_object_del(sh, "peer_id");
            if (sc.counts)
                json_object_set_new(sh, "points_count", json_integer((json_int_t)sc.counts[i]));
            json_array_append_new(local, sh);
        } else {
            json_array_append_new(remote, sh);
        }
    }
    json_t *out = json_pack("{s:s,s:O,s:o,s:o,s:[],s:[]}", "peer_id", me, "shard_count",
                            json_object_get(rec, "shard_number"), "local_shards", local,
                            "remote_shards", remote, "shard_transfers", "resharding_operations");
    free(sc.counts);
    json_decref(rec);
    return out;
}
