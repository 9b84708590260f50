/*
 * Collection settings Aegis honours, accepts as hints, or refuses (docs/COMPATIBILITY.md
 * "Collection settings"): checked on create (ag_coll_parse_params) and on update
 * (ag_store_update_params), so nothing is accepted and silently ignored.
 */
#include <stdio.h>

#include "store/ag_collection_int.h"
#include "json/ag_json.h"
#include "json/ag_strict.h"

/* binary: {always_ram, memory, encoding, query_encoding}; one bit per coordinate with the query
 * encoded the same way is what is implemented, so the other encodings are refused by name. */
static int check_binary(const json_t *b, const char *p, ag_diag_t *diag)
{
    char bp[340];
    snprintf(bp, sizeof(bp), "%s.binary", p);
    if (!json_is_object(b))
        return ag_fail(diag, AG_EINVAL, "%s: expected an object", bp);
    int rc = AG_JSON_ONLY(b, bp, diag, "always_ram", "memory", "encoding", "query_encoding");
    if (rc)
        return rc;
    const json_t *ar = json_object_get(b, "always_ram");
    if (ar && !json_is_null(ar) && !json_is_boolean(ar))
        return ag_fail(diag, AG_EINVAL, "%s.always_ram: expected a boolean", bp);
    const json_t *mem = json_object_get(b, "memory");
    if (mem && !json_is_null(mem) &&
        !(json_is_string(mem) && strcmp(json_string_value(mem), "pinned") == 0))
        return ag_fail(diag, AG_EINVAL,
                       "%s.memory: only \"pinned\" is supported (quantized vectors are always "
                       "held in RAM)",
                       bp);
    const json_t *en = json_object_get(b, "encoding");
    if (en && !json_is_null(en) &&
        !(json_is_string(en) && strcmp(json_string_value(en), "one_bit") == 0))
        return ag_fail(diag, AG_EINVAL,
                       "%s.encoding: only \"one_bit\" is supported by this server (two_bits and "
                       "one_and_half_bits are not)",
                       bp);
    const json_t *qe = json_object_get(b, "query_encoding");
    if (qe && !json_is_null(qe) &&
        !(json_is_string(qe) && (strcmp(json_string_value(qe), "default") == 0 ||
                                 strcmp(json_string_value(qe), "binary") == 0)))
        return ag_fail(diag, AG_EINVAL,
                       "%s.query_encoding: only \"default\" or \"binary\" is supported by this "
                       "server (scalar4bits and scalar8bits are not)",
                       bp);
    return 0;
}

/* quantization_config (the collection's or a vector's; docs/COMPATIBILITY.md "Quantization"):
 * scalar int8 is honoured — quantile, always_ram and memory "pinned" (the codes are always held
 * in RAM) —, and binary one-bit (check_binary); product and turbo quantization are refused by
 * name. On update the string "Disabled" turns it off. */
static int check_quant(const json_t *obj, const char *path, bool update, ag_diag_t *diag)
{
    const json_t *q = json_object_get(obj, "quantization_config");
    if (!q || json_is_null(q))
        return 0;
    char p[300];
    snprintf(p, sizeof(p), "%s%squantization_config", path, *path ? "." : "");
    if (update && json_is_string(q) && strcmp(json_string_value(q), "Disabled") == 0)
        return 0;
    if (!json_is_object(q) || json_object_size(q) != 1)
        return ag_fail(diag, AG_EINVAL, "%s: expected an object with one key, scalar or binary%s",
                       p, update ? ", or \"Disabled\"" : "");
    if (json_object_get(q, "binary"))
        return check_binary(json_object_get(q, "binary"), p, diag);
    static const char *const other[] = {"product", "turbo"};
    for (size_t i = 0; i < AG_ARRAY_LEN(other); i++)
        if (json_object_get(q, other[i]))
            return ag_fail(diag, AG_EINVAL,
                           "%s.%s: %s quantization is not supported by this server; use "
                           "{\"scalar\": {\"type\": \"int8\"}} or {\"binary\": {}}",
                           p, other[i], other[i]);
    const json_t *sc = json_object_get(q, "scalar");
    if (!sc)
        return ag_fail(diag, AG_EINVAL, "%s.%s: unknown quantization (expected scalar or binary)",
                       p, json_object_iter_key(json_object_iter((json_t *)q)));
    char sp[340];
    snprintf(sp, sizeof(sp), "%s.scalar", p);
    if (!json_is_object(sc))
        return ag_fail(diag, AG_EINVAL, "%s: expected an object", sp);
    int rc = AG_JSON_ONLY(sc, sp, diag, "type", "quantile", "always_ram", "memory");
    if (rc)
        return rc;
    const json_t *t = json_object_get(sc, "type");
    if (!json_is_string(t) || strcmp(json_string_value(t), "int8") != 0)
        return ag_fail(diag, AG_EINVAL, "%s.type: expected \"int8\"", sp);
    const json_t *qu = json_object_get(sc, "quantile");
    if (qu && !json_is_null(qu) &&
        (!json_is_number(qu) || !(json_number_value(qu) >= 0.5 && json_number_value(qu) <= 1.0)))
        return ag_fail(diag, AG_EINVAL, "%s.quantile: expected a number from 0.5 to 1", sp);
    const json_t *ar = json_object_get(sc, "always_ram");
    if (ar && !json_is_null(ar) && !json_is_boolean(ar))
        return ag_fail(diag, AG_EINVAL, "%s.always_ram: expected a boolean", sp);
    const json_t *mem = json_object_get(sc, "memory");
    if (mem && !json_is_null(mem) &&
        !(json_is_string(mem) && strcmp(json_string_value(mem), "pinned") == 0))
        return ag_fail(diag, AG_EINVAL,
                       "%s.memory: only \"pinned\" is supported (quantized vectors are always "
                       "held in RAM)",
                       sp);
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

/* A dense vector's on_disk (docs/ARCHITECTURE.md "On-disk vectors"): a boolean; the rows of a
 * multivector are always in memory, so the pair is refused. */
static int check_on_disk(const json_t *vp, const char *path, ag_diag_t *diag)
{
    const json_t *v = json_object_get(vp, "on_disk");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return ag_fail(diag, AG_EINVAL, "%s.on_disk: expected a boolean", path);
    const json_t *mv = json_object_get(vp, "multivector_config");
    if (json_is_true(v) && mv && !json_is_null(mv))
        return ag_fail(diag, AG_EINVAL,
                       "%s.on_disk: not supported for a multivector (multivector_config); its "
                       "rows are kept in memory",
                       path);
    return 0;
}

int ag_coll_check_settings(const json_t *body, bool update, ag_diag_t *diag)
{
    int rc = check_quant(body, "", update, diag);
    if (rc == 0)
        rc = check_hnsw(body, "", diag);
    const json_t *vectors = json_object_get(body, "vectors");
    if (rc == 0 && json_is_object(vectors)) {
        if (!update && (json_object_get(vectors, "size") || json_object_get(vectors, "distance"))) {
            rc = check_quant(vectors, "vectors", update, diag);
            if (rc == 0)
                rc = check_hnsw(vectors, "vectors", diag);
            if (rc == 0)
                rc = check_on_disk(vectors, "vectors", diag);
        } else {
            const char *name;
            const json_t *vp;
            json_object_foreach((json_t *)vectors, name, vp)
            {
                char p[300];
                snprintf(p, sizeof(p), "vectors.%.200s", name);
                if (rc == 0)
                    rc = check_quant(vp, p, update, diag);
                if (rc == 0)
                    rc = check_hnsw(vp, p, diag);
                if (rc == 0 && json_is_object(vp))
                    rc = check_on_disk(vp, p, diag);
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
