/*
 * ag_payload_index.h — candidate sets from keyword / integer / uuid / bool payload indexes.
 *
 * For an indexed field, a sorted array of (hash of value, slot) pairs answers "which slots hold
 * value v" with a binary search. It is built lazily on first use and rebuilt when the
 * collection's write version has moved, under the collection's read lock (writers excluded) and
 * a mutex of its own (concurrent searches build it once). A hash collision only adds slots, and
 * every candidate still passes the full filter, so a candidate set is always a superset of the
 * matches and never changes an answer — only how fast it is found.
 */
#ifndef AG_PAYLOAD_INDEX_H
#define AG_PAYLOAD_INDEX_H

#include "ag_arena.h"
#include "ag_base.h"
#include "store/ag_collection.h"

/* Up to this many candidates, scoring them exactly beats a filtered graph traversal. */
#define AG_PAYLOAD_CANDIDATES_MAX 8192u

/* Candidate slots (ascending, arena-allocated) for a filter's first top-level `must` condition
 * {"key": k, "match": {"value": v} | {"any": [...]}} on an indexed keyword, integer, uuid or bool
 * field. Returns true and sets out and n when an index applies (the set may be empty), false when
 * none does or on allocation failure (then the caller scans as usual). Caller holds the read
 * lock. */
bool ag_payload_candidates(ag_collection_t *c, ag_arena_t *arena, const json_t *filter,
                           uint32_t **out, size_t *n);

/* How many candidates ag_payload_candidates would return for filter (repeats included), without
 * building the list: a few binary searches. False when no index applies. Caller holds the read
 * lock. */
bool ag_payload_candidates_count(ag_collection_t *c, const json_t *filter, size_t *n);

/* Frees the collection's cached indexes (collection teardown). */
void ag_payload_index_free(ag_collection_t *c);

#endif
