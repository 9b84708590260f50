/*
 * Collection settings Aegis honours, accepts as hints, or refuses (docs/COMPATIBILITY.md
 * "Collection settings"): checked on create (ag_coll_parse_params) and on update
 * (ag_store_update_params), so nothing is accepted and silently ignored.
 */
#include <stdio.h>

#include "store/ag_collection_int.h"
#include "json/ag_json.h"
#include "json/ag_strict.h"

static int refuse_quantization(const json_t *obj, const char *path, ag_diag_t *diag)
{
    const json_t *q = json_object_get(obj, "quantization_config");
    if (q && !json_is_null(q))
        return ag_fail(diag, AG_EINVAL,
                       "%s%squantization_config: quantization is not supported by this server "
                       "(vectors are kept as float32); leave it out or null",
                       path, *path ? "." : "");
    return 0;
}

static int uint_min(const json_t *obj, const char *path, const char *key, json_int_t min,
                    ag_diag_t *diag)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return ag_fail(diag, AG_EINVAL, "%s.%s: expected an integer", path, key);
    if (json_integer_value(v) < min)
        return ag_fail(diag, AG_EUNPROCESSABLE,
                       "Validation error in JSON body: [%s.%s: value %lld invalid, must be %lld "
                       "or larger]",
                       path, key, (long long)json_integer_value(v), (long long)min);
    return 0;
}

/* hnsw_config (the collection's or a vector's): m, ef_construct and full_scan_threshold are
 * honoured; the rest are storage and threading hints with no counterpart here, validated. */
static int check_hnsw(const json_t *obj, const char *path, ag_diag_t *diag)
{
    const json_t *h = json_object_get(obj, "hnsw_config");
    if (!h || json_is_null(h))
        return 0;
    char p[300];
    snprintf(p, sizeof(p), "%s%shnsw_config", path, *path ? "." : "");
    if (!json_is_object(h))
        return ag_fail(diag, AG_EINVAL, "%s: expected an object", p);
    int rc =
        AG_JSON_ONLY(h, p, diag, "m", "ef_construct", "full_scan_threshold", "max_indexing_threads",
                     "on_disk", "payload_m", "inline_storage", "memory");
    if (rc == 0)
        rc = uint_min(h, p, "m", 0, diag);
    if (rc == 0)
        rc = uint_min(h, p, "ef_construct", 4, diag);
    if (rc == 0)
        rc = uint_min(h, p, "full_scan_threshold", 0, diag); /* Qdrant: 10; smaller works here */
    if (rc == 0)
        rc = uint_min(h, p, "max_indexing_threads", 0, diag);
    if (rc == 0)
        rc = uint_min(h, p, "payload_m", 0, diag);
    static const char *const flags[] = {"on_disk", "inline_storage"};
    for (size_t i = 0; rc == 0 && i < AG_ARRAY_LEN(flags); i++) {
        const json_t *v = json_object_get(h, flags[i]);
        if (v && !json_is_null(v) && !json_is_boolean(v))
            rc = ag_fail(diag, AG_EINVAL, "%s.%s: expected a boolean", p, flags[i]);
    }
    return rc;
}

int ag_coll_check_settings(const json_t *body, bool update, ag_diag_t *diag)
{
    int rc = refuse_quantization(body, "", diag);
    if (rc == 0)
        rc = check_hnsw(body, "", diag);
    const json_t *vectors = json_object_get(body, "vectors");
    if (rc == 0 && json_is_object(vectors)) {
        if (!update && (json_object_get(vectors, "size") || json_object_get(vectors, "distance"))) {
            rc = refuse_quantization(vectors, "vectors", diag);
            if (rc == 0)
                rc = check_hnsw(vectors, "vectors", diag);
        } else {
            const char *name;
            const json_t *vp;
            json_object_foreach((json_t *)vectors, name, vp)
            {
                char p[300];
                snprintf(p, sizeof(p), "vectors.%.200s", name);
                if (rc == 0)
                    rc = refuse_quantization(vp, p, diag);
                if (rc == 0)
                    rc = check_hnsw(vp, p, diag);
            }
        }
    }
    if (rc == 0) {
        ag_strict_t st;
        rc = ag_strict_parse(json_object_get(body, "strict_mode_config"), "strict_mode_config", &st,
                             diag);
    }
    const json_t *sm = json_object_get(body, "sharding_method");
    if (rc == 0 && sm && !json_is_null(sm) &&
        !(json_is_string(sm) && strcmp(json_string_value(sm), "auto") == 0))
        rc = ag_fail(diag, AG_EINVAL,
                     "sharding_method: only \"auto\" is supported (custom sharding needs shard "
                     "keys, which this single-node server does not have)");
    return rc;
}
