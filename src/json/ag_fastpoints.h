/*
 * ag_fastpoints.h — a fast path for the common writes: an upsert body of the record form
 *   {"points": [{"id": ..., "vector": [numbers] | {name: [numbers], ...}, "payload": {...}}, ...]}
 * or of the column form
 *   {"batch": {"ids": [...], "vectors": [[numbers], ...] | {name: [[numbers], ...]},
 *              "payloads": [{...} | null, ...] | null}}
 * into a collection of plain dense vectors (one unnamed, or named ones; docs/BENCHMARKS.md
 * "Ingestion"). It reads the vectors straight into floats
 * (jansson would allocate one node per number, which dominates ingestion) and hands only each
 * payload object to the strict JSON parser.
 *
 * It never reports an error: anything outside the happy path — another key, a named vector the
 * collection does not have, a wrong dimension, a duplicate key, a number it cannot convert exactly
 * as the slow path would, bad UTF-8 or escapes in an id or a key, a column shorter or longer than
 * the ids, an empty `vector: {}` or an empty batch, trailing bytes — makes it decline, and the
 * caller parses the body the normal way, which produces the precise 4xx. Numbers convert exactly
 * as strtod (what jansson uses) followed by a cast to float would, so both paths store the same
 * bits.
 */
#ifndef AG_FASTPOINTS_H
#define AG_FASTPOINTS_H

#include "ag_arena.h"
#include "ag_base.h"
#include "ag_id.h"

#include <jansson.h>

#define AG_FP_MAX_VECS 16 /* = AG_MAX_VECTORS of store/ (json/ may not include it) */

/* The collection's dense vectors, in its order: names[v] ("" for the single unnamed one) and
 * dims[v]. The caller admits only plain float32 vectors (no multivectors, no sparse ones). */
typedef struct ag_fastcols {
    size_t n;
    const char *names[AG_FP_MAX_VECS];
    uint32_t dims[AG_FP_MAX_VECS];
} ag_fastcols_t;

typedef struct ag_fastpoint {
    ag_point_id_t id;
    float *vecs[AG_FP_MAX_VECS]; /* dims[v] floats in the arena, NULL when not given */
    float *vector;               /* = vecs[0] */
    json_t *payload;             /* new reference (an object; {} when absent or null) */
} ag_fastpoint_t;

/* true: *out (arena) holds *n points, the caller owns each payload reference. false: declined
 * (nothing to release). */
bool ag_fastpoints_parse_cols(const char *buf, size_t len, const ag_fastcols_t *cols,
                              ag_arena_t *arena, ag_fastpoint_t **out, size_t *n);
/* The same for one unnamed vector of dim floats. */
bool ag_fastpoints_parse(const char *buf, size_t len, uint32_t dim, ag_arena_t *arena,
                         ag_fastpoint_t **out, size_t *n);
void ag_fastpoints_release(ag_fastpoint_t *pts, size_t n);

/*
 * The same idea for the common search body (api/api_search.c's fast path, docs/BENCHMARKS.md
 * "Server CPU per search request"):
 *   {"<vkey>": [dim numbers], "limit": n, "offset": n, "params": {"hnsw_ef": n, "exact": b},
 *    "with_payload": b, "with_vector": b, "score_threshold": x, "filter": {...}}
 * with vkey "vector" (search) or "query" (query), every key but vkey optional, in any order, each
 * once. Declines (false) on anything else: another key or form, a duplicate key, a number it
 * cannot convert exactly as the strict parser would, an integer of 19+ digits, hnsw_ef 0,
 * trailing bytes. The filter is only delimited (its text in filter/filter_len, inside buf); the
 * caller parses it strictly. out->vec is arena memory, not yet normalised.
 */
typedef struct ag_fastsearch {
    float *vec;
    bool has_limit, has_offset, has_threshold;
    uint64_t limit, offset, ef; /* ef 0: not given */
    bool exact, with_payload, with_vector;
    float threshold;
    const char *filter; /* NULL: none */
    size_t filter_len;
} ag_fastsearch_t;

bool ag_fastsearch_parse(const char *buf, size_t len, const char *vkey, uint32_t dim,
                         ag_arena_t *arena, ag_fastsearch_t *out);

#endif
