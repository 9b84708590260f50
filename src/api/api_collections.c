/* Collections, aliases and payload indexes. */
#include <stdio.h>

#include "api/ag_api.h"
#include "api/ag_guard.h"
#include "index/ag_hnsw.h"
#include "json/ag_json.h"

static int h_list(ag_call_t *call)
{
    json_t *names = ag_store_list(call->api->store);
    json_t *arr = json_array();
    size_t i;
    json_t *n;
    json_array_foreach(names, i, n)
    {
        if (ag_guard_visible(call, json_string_value(n)))
            json_array_append_new(arr, json_pack("{s:O}", "name", n));
    }
    json_decref(names);
    call->result = json_pack("{s:o}", "collections", arr);
    return call->result ? 0 : AG_ENOMEM;
}

static int h_info(ag_call_t *call)
{
    ag_collection_t *c;
    int rc = ag_call_collection(call, &c);
    if (rc)
        return rc;
    /* Counts follow the caller's data rows: a payload-restricted reader must not learn how many
     * points other rows hold. (Without read:data at all, the schema reader sees the totals.) */
    ag_diag_t ignored;
    ag_filter_t *rows = NULL;
    if (!call->restriction &&
        ag_guard_authorize(call, "read:data", ag_coll_name(c), &rows, &ignored) == 0)
        call->restriction = rows;
    /* A caller with a row restriction sees counts of its own rows only. */
    ag_coll_stats_t stats;
    if ((rc = ag_coll_stats(c, call->restriction, &stats)) != 0) {
        ag_coll_unref(c);
        return rc;
    }
    json_t *params = stats.params;
    json_t *hnsw = json_pack("{s:i,s:i,s:i,s:i,s:b}", "m", 16, "ef_construct", 100,
                             "full_scan_threshold", 10000, "max_indexing_threads", 0, "on_disk", 0);
    json_t *user_hnsw = json_object_get(params, "hnsw_config");
    if (json_is_object(user_hnsw))
        json_object_update(hnsw, user_hnsw);
    json_t *optim = json_pack("{s:f,s:i,s:i,s:n,s:n,s:i,s:i,s:n}", "deleted_threshold", 0.2,
                              "vacuum_min_vector_number", 1000, "default_segment_number", 0,
                              "max_segment_size", "memmap_threshold", "indexing_threshold", 20000,
                              "flush_interval_sec", 5, "max_optimization_threads");
    json_t *user_opt = json_object_get(params, "optimizers_config");
    if (json_is_object(user_opt))
        json_object_update(optim, user_opt);
    json_t *wal = json_pack("{s:i,s:i}", "wal_capacity_mb", 32, "wal_segments_ahead", 0);
    json_t *user_wal = json_object_get(params, "wal_config");
    if (json_is_object(user_wal))
        json_object_update(wal, user_wal);
    json_t *quant = json_incref(json_object_get(params, "quantization_config"));
    json_t *strict = json_incref(json_object_get(params, "strict_mode_config"));
    json_t *metadata = json_incref(json_object_get(params, "metadata"));
    static const char *moved[] = {"hnsw_config",         "optimizers_config",  "wal_config",
                                  "quantization_config", "strict_mode_config", "metadata"};
    for (size_t i = 0; i < AG_ARRAY_LEN(moved); i++)
        json_object_del(params, moved[i]);
    if (!json_object_get(params, "shard_number"))
        json_object_set_new(params, "shard_number", json_integer(1));
    if (!json_object_get(params, "replication_factor"))
        json_object_set_new(params, "replication_factor", json_integer(1));
    if (!json_object_get(params, "write_consistency_factor"))
        json_object_set_new(params, "write_consistency_factor", json_integer(1));
    if (!json_object_get(params, "on_disk_payload"))
        json_object_set_new(params, "on_disk_payload", json_true());
    json_int_t vectors = (json_int_t)stats.vectors, points = (json_int_t)stats.points;
    json_t *config = json_pack("{s:o,s:o,s:o,s:o,s:o*}", "params", params, "hnsw_config", hnsw,
                               "optimizer_config", optim, "wal_config", wal, "quantization_config",
                               quant ? quant : json_null());
    if (strict)
        json_object_set_new(config, "strict_mode_config", strict);
    if (metadata)
        json_object_set_new(config, "metadata", metadata);
    /* Points still queued for the background linker are served exactly meanwhile; like Qdrant
     * the collection is yellow until they are in the graph, and until the graph's checkpoint is
     * on disk (docs/RELIABILITY.md, "Crash recovery"). */
    json_int_t queued = (json_int_t)stats.queued;
    json_int_t indexed = vectors > queued ? vectors - queued : 0;
    call->result =
        json_pack("{s:s,s:s,s:I,s:I,s:I,s:i,s:o,s:o}", "status",
                  queued || stats.unsaved ? "yellow" : "green", "optimizer_status", "ok",
                  "vectors_count", vectors, "indexed_vectors_count", indexed, "points_count",
                  points, "segments_count", 1, "config", config, "payload_schema", stats.schema);
    ag_coll_unref(c);
    if (!call->result)
        return AG_ENOMEM;
    /* Cluster mode: a collection with shards on other nodes counts them all (api_shard.c). */
    return ag_shard_info_sum(call, call->result);
}

static int h_create(ag_call_t *call)
{
    json_t *params = NULL;
    int rc = ag_coll_parse_params(call->body, &params, &call->diag);
    if (rc)
        return rc;
    const json_t *init = json_object_get(call->body, "init_from");
    if (init && json_is_null(init))
        init = NULL;
    if (init && (rc = ag_init_from_check(call, init)) != 0) {
        json_decref(params);
        return rc;
    }
    /* Cluster mode: recorded in etcd first; the other nodes create it from the watch. */
    if ((rc = ag_shard_create(call, params, init != NULL)) != 0) {
        json_decref(params);
        return rc;
    }
    rc = ag_store_create(call->api->store, call->params[0], params, &call->diag);
    json_decref(params);
    if (rc && ag_guard_cluster(call->api->guard) && !call->coll) {
        /* The watch may have created it here from this very record first. */
        ag_collection_t *made = NULL;
        if (ag_store_get(call->api->store, call->params[0], &made, NULL) == 0) {
            ag_coll_unref(made);
            rc = 0;
        }
    }
    if (rc == 0 && init)
        rc = ag_init_from(call, call->params[0], init);
    if (rc)
        return rc;
    call->result = json_true();
    return 0;
}

static int h_update(ag_call_t *call)
{
    int rc = AG_JSON_ONLY(call->body, "", &call->diag, "vectors", "optimizers_config", "params",
                          "hnsw_config", "quantization_config", "sparse_vectors",
                          "strict_mode_config", "metadata");
    if (rc)
        return rc;
    const json_t *p = NULL;
    if ((rc = ag_json_get_obj(call->body, "params", "", &p, &call->diag)) != 0)
        return rc;
    if (p && (rc = AG_JSON_ONLY(p, "params", &call->diag, "replication_factor",
                                "write_consistency_factor", "read_fan_out_factor",
                                "on_disk_payload")) != 0)
        return rc;
    static const char *objs[] = {"vectors",        "optimizers_config",  "hnsw_config",
                                 "sparse_vectors", "strict_mode_config", "metadata"};
    for (size_t i = 0; i < AG_ARRAY_LEN(objs); i++) {
        const json_t *o;
        if ((rc = ag_json_get_obj(call->body, objs[i], "", &o, &call->diag)) != 0)
            return rc;
    }
    if (!call->coll)
        return ag_fail(&call->diag, AG_ENOTFOUND, "Not found: Collection `%s` doesn't exist!",
                       call->params[0]);
    /* Cluster mode: refused here before etcd is written, then recorded and applied everywhere. */
    bool recorded = false;
    if (ag_guard_cluster(call->api->guard) &&
        ((rc = ag_store_update_check(call->api->store, ag_coll_name(call->coll), call->body, NULL,
                                     &call->diag)) != 0 ||
         (rc = ag_shard_patch(call, call->body, &recorded)) != 0))
        return rc;
    if (!recorded)
        rc = ag_store_update_params(call->api->store, ag_coll_name(call->coll), call->body,
                                    &call->diag);
    if (rc)
        return rc;
    call->result = json_true();
    return 0;
}

static int h_delete(ag_call_t *call)
{
    bool existed = false;
    int rc = ag_shard_delete(call);
    if (rc == 0)
        rc = ag_store_delete(call->api->store, call->params[0], &existed, &call->diag);
    if (rc)
        return rc;
    call->result = json_boolean(existed);
    return 0;
}

static int h_exists(ag_call_t *call)
{
    bool exists = call->coll != NULL;
    call->result = json_pack("{s:b}", "exists", exists);
    return call->result ? 0 : AG_ENOMEM;
}

/* An alias is only a name, but whoever points it decides what the name means: creating,
 * re-pointing, renaming or deleting one needs update:collections on the alias name and on the
 * collection behind it (docs/SECURITY.md "Aliases"). */
static int alias_check(void *ctx, const char *name, const char *target, ag_diag_t *diag)
{
    ag_call_t *call = ctx;
    int rc = ag_guard_authorize(call, "update:collections", name, NULL, diag);
    if (rc == 0)
        rc = ag_guard_authorize(call, "update:collections", target, NULL, diag);
    return rc;
}

static int h_alias_actions(ag_call_t *call)
{
    int rc = AG_JSON_ONLY(call->body, "", &call->diag, "actions");
    if (rc)
        return rc;
    bool handled = false;
    rc =
        ag_shard_alias_actions(call, json_object_get(call->body, "actions"), alias_check, &handled);
    if (!handled)
        rc = ag_store_alias_actions(call->api->store, json_object_get(call->body, "actions"),
                                    alias_check, call, &call->diag);
    if (rc)
        return rc;
    call->result = json_true();
    return 0;
}

static int h_aliases(ag_call_t *call)
{
    json_t *all = ag_store_aliases(call->api->store, NULL);
    json_t *seen = json_array();
    size_t i;
    json_t *a;
    json_array_foreach(all, i, a)
    {
        const char *coll = json_string_value(json_object_get(a, "collection_name"));
        /* An alias shows what its collection holds: listed to those who may see that. */
        if (ag_guard_visible(call, coll))
            json_array_append(seen, a);
    }
    json_decref(all);
    call->result = json_pack("{s:o}", "aliases", seen);
    return call->result ? 0 : AG_ENOMEM;
}

static int h_coll_aliases(ag_call_t *call)
{
    ag_collection_t *c;
    int rc = ag_call_collection(call, &c);
    if (rc)
        return rc;
    call->result =
        json_pack("{s:o}", "aliases", ag_store_aliases(call->api->store, ag_coll_name(c)));
    ag_coll_unref(c);
    return call->result ? 0 : AG_ENOMEM;
}

static const char *const index_types[] = {"keyword", "integer", "float",    "bool",
                                          "geo",     "text",    "datetime", "uuid"};

static int parse_field_schema(const json_t *fs, json_t **def, ag_diag_t *diag)
{
    const char *type = NULL;
    const json_t *params = NULL;
    if (json_is_string(fs)) {
        type = json_string_value(fs);
    } else if (json_is_object(fs)) {
        json_t *t = json_object_get(fs, "type");
        if (!json_is_string(t))
            return ag_fail(diag, AG_EINVAL, "field_schema.type: expected a string");
        type = json_string_value(t);
        params = fs;
    } else {
        return ag_fail(diag, AG_EINVAL, "field_schema: expected a type name or an object");
    }
    bool ok = false;
    for (size_t i = 0; i < AG_ARRAY_LEN(index_types); i++)
        ok = ok || strcmp(type, index_types[i]) == 0;
    if (!ok)
        return ag_fail(diag, AG_EINVAL,
                       "field_schema: unknown type '%.40s' (expected keyword, integer, float, "
                       "bool, geo, text, datetime or uuid)",
                       type);
    if (params) {
        int rc = AG_JSON_ONLY(params, "field_schema", diag, "type", "is_tenant", "on_disk",
                              "lookup", "range", "is_principal", "tokenizer", "min_token_len",
                              "max_token_len", "lowercase", "phrase_matching", "stopwords",
                              "stemmer", "ascii_folding", "enable_hnsw");
        if (rc)
            return rc;
        if (strcmp(type, "integer") == 0 && json_is_false(json_object_get(params, "lookup")) &&
            json_is_false(json_object_get(params, "range")))
            return ag_fail(diag, AG_EUNPROCESSABLE,
                           "Validation error: the 'lookup' and 'range' capabilities can't be both "
                           "disabled (field_schema)");
        json_t *tenant = json_object_get(params, "is_tenant");
        if (tenant && !json_is_boolean(tenant))
            return ag_fail(diag, AG_EINVAL, "field_schema.is_tenant: expected a boolean");
        if (json_is_true(tenant) && strcmp(type, "keyword") != 0 && strcmp(type, "uuid") != 0)
            return ag_fail(diag, AG_EINVAL,
                           "field_schema.is_tenant: only keyword and uuid indexes can be tenants");
    }
    *def = params ? json_pack("{s:s,s:O}", "data_type", type, "params", params)
                  : json_pack("{s:s}", "data_type", type);
    return *def ? 0 : AG_ENOMEM;
}

/* Sets (def) or removes (def NULL) a payload index, in the collection's write session. */
typedef struct set_index {
    ag_call_t *call;
    const char *field;
    json_t *def; /* taken by ag_store_set_index once it runs */
    bool def_taken;
} set_index_t;

static int set_index(void *ud, ag_collection_t *c)
{
    set_index_t *si = ud;
    si->def_taken = true;
    return ag_store_set_index(si->call->api->store, c, si->field, si->def, NULL, &si->call->diag);
}

static int h_index_create(ag_call_t *call)
{
    int rc = AG_JSON_ONLY(call->body, "", &call->diag, "field_name", "field_schema");
    if (rc)
        return rc;
    const char *field = NULL;
    if ((rc = ag_json_get_str(call->body, "field_name", "", &field, &call->diag)) != 0)
        return rc;
    if (!field)
        return ag_fail(&call->diag, AG_EINVAL, "field_name: required");
    if ((rc = ag_payload_path_check(field, &call->diag)) != 0)
        return rc;
    json_t *fs = json_object_get(call->body, "field_schema");
    if (!fs)
        return ag_fail(&call->diag, AG_EINVAL, "field_schema: required");
    json_t *def = NULL;
    if ((rc = parse_field_schema(fs, &def, &call->diag)) != 0)
        return rc;
    bool recorded = false; /* cluster mode: etcd first, then every node (docs/CLUSTER.md) */
    if ((rc = ag_shard_index_change(call, field, def, &recorded)) != 0 || recorded) {
        json_decref(def);
        if (rc == 0)
            call->result = ag_update_result(call);
        return rc;
    }
    set_index_t si = {call, field, def};
    rc = ag_call_write(call, set_index, &si);
    if (!si.def_taken)
        json_decref(def);
    if (rc)
        return rc;
    call->result = ag_update_result(call);
    return 0;
}

static int h_index_delete(ag_call_t *call)
{
    bool recorded = false;
    int rc = ag_shard_index_change(call, call->params[1], NULL, &recorded);
    if (rc || recorded) {
        if (rc == 0)
            call->result = ag_update_result(call);
        return rc;
    }
    set_index_t si = {call, call->params[1], NULL};
    rc = ag_call_write(call, set_index, &si);
    if (rc)
        return rc;
    call->result = ag_update_result(call);
    return 0;
}

/* Named vectors on an existing collection (docs/API.md "Named vectors"). */
static int h_vector_create(ag_call_t *call)
{
    if (!json_is_object(call->body))
        return ag_fail(&call->diag, AG_EINVAL,
                       "expected {\"dense\": {\"size\": ..., \"distance\": ...}} or "
                       "{\"sparse\": {...}}");
    int rc = AG_JSON_ONLY(call->body, "", &call->diag, "dense", "sparse");
    if (rc)
        return rc;
    bool recorded = false;
    if (ag_guard_cluster(call->api->guard) &&
        ((rc = ag_store_vector_check(call->api->store, call->params[0], call->params[1], call->body,
                                     &call->diag)) != 0 ||
         (rc = ag_shard_vector_change(call, call->params[1], call->body, &recorded)) != 0))
        return rc;
    if (!recorded && (rc = ag_store_vector_change(call->api->store, call->params[0],
                                                  call->params[1], call->body, &call->diag)) != 0)
        return rc;
    call->result = ag_update_result(call);
    return 0;
}

static int h_vector_delete(ag_call_t *call)
{
    bool recorded = false;
    int rc = 0;
    if (ag_guard_cluster(call->api->guard) &&
        ((rc = ag_store_vector_check(call->api->store, call->params[0], call->params[1], NULL,
                                     &call->diag)) != 0 ||
         (rc = ag_shard_vector_change(call, call->params[1], NULL, &recorded)) != 0))
        return rc;
    if (!recorded)
        rc = ag_store_vector_change(call->api->store, call->params[0], call->params[1], NULL,
                                    &call->diag);
    if (rc)
        return rc;
    call->result = ag_update_result(call);
    return 0;
}

const ag_route_t ag_routes_collections[] = {
    {AG_HTTP_GET, "/collections", "read:collections", AG_SCOPE_NONE, h_list, false, false, true},
    /* A listing-style admission (update:collections on some collection); each action is
     * authorized against the alias and its collection by the handler. */
    {AG_HTTP_POST, "/collections/aliases", "update:collections", AG_SCOPE_NONE, h_alias_actions,
     true, false, true},
    {AG_HTTP_GET, "/aliases", "read:collections", AG_SCOPE_NONE, h_aliases, false, false, true},
    {AG_HTTP_GET, "/collections/{name}", "read:collections", AG_SCOPE_COLLECTION, h_info, false,
     false},
    {AG_HTTP_PUT, "/collections/{name}", "create:collections", AG_SCOPE_COLLECTION, h_create, true,
     false},
    {AG_HTTP_PATCH, "/collections/{name}", "update:collections", AG_SCOPE_COLLECTION, h_update,
     true, false},
    {AG_HTTP_DELETE, "/collections/{name}", "delete:collections", AG_SCOPE_COLLECTION, h_delete,
     false, false},
    {AG_HTTP_GET, "/collections/{name}/exists", "read:collections", AG_SCOPE_COLLECTION, h_exists,
     false, false},
    {AG_HTTP_GET, "/collections/{name}/aliases", "read:collections", AG_SCOPE_COLLECTION,
     h_coll_aliases, false, false},
    {AG_HTTP_PUT, "/collections/{name}/index", "update:payload_indexes", AG_SCOPE_COLLECTION,
     h_index_create, true, false},
    {AG_HTTP_DELETE, "/collections/{name}/index/{field}", "update:payload_indexes",
     AG_SCOPE_COLLECTION, h_index_delete, false, false},
    /* Qdrant lets a collection rw token (not prw) change the collection's named vectors: the
     * same action as payload indexes. */
    {AG_HTTP_PUT, "/collections/{name}/vectors/{vector}", "update:payload_indexes",
     AG_SCOPE_COLLECTION, h_vector_create, true, false},
    {AG_HTTP_DELETE, "/collections/{name}/vectors/{vector}", "update:payload_indexes",
     AG_SCOPE_COLLECTION, h_vector_delete, false, false},
};
const size_t ag_routes_collections_len = AG_ARRAY_LEN(ag_routes_collections);
