/*
 * ag_strict.h — a collection's strict mode settings (Qdrant's `strict_mode_config`), parsed and
 * validated. What each setting does and which ones Aegis refuses: docs/COMPATIBILITY.md
 * "Strict mode". Enforcement is in api/ag_strict_mode.c.
 */
#ifndef AG_STRICT_H
#define AG_STRICT_H

#include "ag_base.h"

#include <jansson.h>

#define AG_STRICT_UNSET UINT64_MAX

typedef struct ag_strict {
    bool enabled;
    /* AG_STRICT_UNSET = no limit */
    uint64_t max_query_limit, max_timeout, search_max_hnsw_ef, upsert_max_batchsize,
        search_max_batchsize, max_points_count, filter_max_conditions, condition_max_size,
        max_payload_index_count, read_rate_limit, write_rate_limit;
    double search_max_oversampling; /* < 0 = no limit */
    bool unindexed_filtering_retrieve, unindexed_filtering_update, search_allow_exact;
    const json_t *sparse_config;      /* {vector: {"max_length": n}} or NULL; borrowed from cfg */
    const json_t *multivector_config; /* {vector: {"max_vectors": n}} or NULL; borrowed */
} ag_strict_t;

/* Parses cfg (an object, or NULL / null for "not configured": disabled) into out. Unknown keys
 * and settings Aegis does not implement are refused with AG_EINVAL naming them; values below
 * Qdrant's minimum with AG_EUNPROCESSABLE. path prefixes messages ("strict_mode_config"). */
int ag_strict_parse(const json_t *cfg, const char *path, ag_strict_t *out, ag_diag_t *diag);

#endif
