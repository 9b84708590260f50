#include "ag_strict.h"

#include <math.h>
#include <stdio.h>

#include "json/ag_json.h"

static int get_limit(const json_t *cfg, const char *path, const char *key, uint64_t min,
                     uint64_t *out, ag_diag_t *diag)
{
    const json_t *v = json_object_get(cfg, key);
    *out = AG_STRICT_UNSET;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return ag_fail(diag, AG_EINVAL, "%s.%s: expected a non-negative integer", path, key);
    if ((uint64_t)json_integer_value(v) < min)
        return ag_fail(diag, AG_EUNPROCESSABLE,
                       "Validation error in JSON body: %s.%s: value %lld invalid, must be %llu or "
                       "larger",
                       path, key, (long long)json_integer_value(v), (unsigned long long)min);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_flag(const json_t *cfg, const char *path, const char *key, bool dflt, bool *out,
                    ag_diag_t *diag)
{
    const json_t *v = json_object_get(cfg, key);
    *out = dflt;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return ag_fail(diag, AG_EINVAL, "%s.%s: expected a boolean", path, key);
    *out = json_is_true(v);
    return 0;
}

int ag_strict_parse(const json_t *cfg, const char *path, ag_strict_t *out, ag_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    out->unindexed_filtering_retrieve = out->unindexed_filtering_update = true;
    out->search_allow_exact = true;
    out->search_max_oversampling = -1;
    uint64_t *limits[] = {
        &out->max_query_limit,       &out->max_timeout,          &out->search_max_hnsw_ef,
        &out->upsert_max_batchsize,  &out->search_max_batchsize, &out->max_points_count,
        &out->filter_max_conditions, &out->condition_max_size,   &out->max_payload_index_count,
        &out->read_rate_limit,       &out->write_rate_limit};
    static const char *const names[] = {
        "max_query_limit",       "max_timeout",          "search_max_hnsw_ef",
        "upsert_max_batchsize",  "search_max_batchsize", "max_points_count",
        "filter_max_conditions", "condition_max_size",   "max_payload_index_count",
        "read_rate_limit",       "write_rate_limit"};
    /* Qdrant's minimum for each (its openapi.json) */
    static const uint64_t mins[] = {1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1};
    for (size_t i = 0; i < AG_ARRAY_LEN(limits); i++)
        *limits[i] = AG_STRICT_UNSET;
    if (!cfg || json_is_null(cfg))
        return 0;
    if (!json_is_object(cfg))
        return ag_fail(diag, AG_EINVAL, "%s: expected an object", path);
    /* Settings Aegis does not implement are refused by name, never accepted and ignored. */
    static const char *const refused[] = {"max_collection_vector_size_bytes",
                                          "max_collection_payload_size_bytes",
                                          "max_resident_memory_percent"};
    for (size_t i = 0; i < AG_ARRAY_LEN(refused); i++) {
        const json_t *v = json_object_get(cfg, refused[i]);
        if (v && !json_is_null(v))
            return ag_fail(diag, AG_EINVAL,
                           "%s.%s: not supported by this server (docs/COMPATIBILITY.md "
                           "\"Strict mode\"); leave it out",
                           path, refused[i]);
    }
    int rc = AG_JSON_ONLY(
        cfg, path, diag, "enabled", "max_query_limit", "max_timeout",
        "unindexed_filtering_retrieve", "unindexed_filtering_update", "search_max_hnsw_ef",
        "search_allow_exact", "search_max_oversampling", "upsert_max_batchsize",
        "search_max_batchsize", "max_collection_vector_size_bytes", "read_rate_limit",
        "write_rate_limit", "max_collection_payload_size_bytes", "max_points_count",
        "filter_max_conditions", "condition_max_size", "multivector_config", "sparse_config",
        "max_payload_index_count", "max_resident_memory_percent");
    if (rc)
        return rc;
    if ((rc = get_flag(cfg, path, "enabled", false, &out->enabled, diag)) != 0 ||
        (rc = get_flag(cfg, path, "unindexed_filtering_retrieve", true,
                       &out->unindexed_filtering_retrieve, diag)) != 0 ||
        (rc = get_flag(cfg, path, "unindexed_filtering_update", true,
                       &out->unindexed_filtering_update, diag)) != 0 ||
        (rc = get_flag(cfg, path, "search_allow_exact", true, &out->search_allow_exact, diag)) != 0)
        return rc;
    for (size_t i = 0; i < AG_ARRAY_LEN(limits); i++)
        if ((rc = get_limit(cfg, path, names[i], mins[i], limits[i], diag)) != 0)
            return rc;
    const json_t *os = json_object_get(cfg, "search_max_oversampling");
    if (os && !json_is_null(os)) {
        if (!json_is_number(os) || !isfinite(json_number_value(os)) || json_number_value(os) < 0)
            return ag_fail(diag, AG_EINVAL,
                           "%s.search_max_oversampling: expected a non-negative number", path);
        out->search_max_oversampling = json_number_value(os);
    }
    /* Per-vector limits: sparse_config {name: {max_length}}, multivector_config {name:
     * {max_vectors}}. */
    static const char *const per_vector[][2] = {{"sparse_config", "max_length"},
                                                {"multivector_config", "max_vectors"}};
    const json_t **dst[] = {&out->sparse_config, &out->multivector_config};
    for (size_t k = 0; k < AG_ARRAY_LEN(per_vector); k++) {
        const json_t *sc = json_object_get(cfg, per_vector[k][0]);
        if (!sc || json_is_null(sc))
            continue;
        if (!json_is_object(sc))
            return ag_fail(diag, AG_EINVAL, "%s.%s: expected an object", path, per_vector[k][0]);
        const char *name;
        const json_t *one;
        json_object_foreach((json_t *)sc, name, one)
        {
            char p[320];
            snprintf(p, sizeof(p), "%s.%s.%.200s", path, per_vector[k][0], name);
            if (!json_is_object(one))
                return ag_fail(diag, AG_EINVAL, "%s: expected an object", p);
            if ((rc = ag_json_only(one, p, (const char *const[]){per_vector[k][1], NULL}, diag)) !=
                0)
                return rc;
            uint64_t ml;
            if ((rc = get_limit(one, p, per_vector[k][1], 1, &ml, diag)) != 0)
                return rc;
        }
        *dst[k] = sc;
    }
    return 0;
}
