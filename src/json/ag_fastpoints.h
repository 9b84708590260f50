/*
 * ag_fastpoints.h — a fast path for the most common write: an upsert body of the record form
 *   {"points": [{"id": ..., "vector": [numbers], "payload": {...}}, ...]}
 * into a collection with one unnamed dense vector. It reads the vectors straight into floats
 * (jansson would allocate one node per number, which dominates ingestion) and hands only each
 * payload object to the strict JSON parser.
 *
 * It never reports an error: anything outside the happy path — another key, a named vector, a
 * wrong dimension, a duplicate key, a number it cannot convert exactly as the slow path would, bad
 * UTF-8 or escapes in an id, trailing bytes — makes it decline, and the caller parses the body the
 * normal way, which produces the precise 4xx. Numbers convert exactly as strtod (what jansson
 * uses) followed by a cast to float would, so both paths store the same bits.
 */
#ifndef AG_FASTPOINTS_H
#define AG_FASTPOINTS_H

#include "ag_arena.h"
#include "ag_base.h"
#include "ag_id.h"

#include <jansson.h>

typedef struct ag_fastpoint {
    ag_point_id_t id;
    float *vector;   /* dim floats in the arena */
    json_t *payload; /* new reference (an object; {} when absent) */
} ag_fastpoint_t;

/* true: *out (arena) holds *n points, the caller owns each payload reference. false: declined
 * (nothing to release). */
bool ag_fastpoints_parse(const char *buf, size_t len, uint32_t dim, ag_arena_t *arena,
                         ag_fastpoint_t **out, size_t *n);
void ag_fastpoints_release(ag_fastpoint_t *pts, size_t n);

#endif
