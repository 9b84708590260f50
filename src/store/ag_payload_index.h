/*
 * ag_payload_index.h — candidate sets from keyword / integer / uuid / bool payload indexes.
 *
 * For an indexed field, a hash table from the hash of a value to the sorted slots holding it
 * answers "which slots hold value v" with one lookup, and "how many" (the cardinality estimate
 * the planner uses) without reading a slot. An index is built on first use (under the read lock,
 * writers excluded, and a mutex of its own so concurrent searches build it once) and from then
 * on maintained by every applied write (ag_payload_index_update, under the write lock): no write
 * makes a search rebuild it. An index the maintenance could not keep (out of memory) is marked
 * stale and rebuilt, or not used, by the next search — never used stale. A hash collision only
 * adds slots, and every candidate still passes the full filter and the row restriction, so a
 * candidate set is always a superset of the matches and never changes an answer, only how fast it
 * is found (docs/ARCHITECTURE.md "Filtered search").
 */
#ifndef AG_PAYLOAD_INDEX_H
#define AG_PAYLOAD_INDEX_H

#include "ag_arena.h"
#include "ag_base.h"
#include "store/ag_collection.h"

/* Up to this many candidates, scoring them exactly beats a filtered traversal (the paths that
 * have no full_scan_threshold of their own: multivectors, writes selecting by filter). */
#define AG_PAYLOAD_CANDIDATES_MAX 8192u

/* Candidate slots (ascending, arena-allocated, possibly with adjacent repeats) for a filter's
 * most selective top-level `must` condition {"key": k, "match": {"value": v} | {"any": [...]}}
 * on an indexed keyword, integer, uuid or bool field. Returns true and sets out and n when an
 * index applies (the set may be empty), false when none does or on allocation failure (then the
 * caller scans as usual). Caller holds the read lock. */
bool ag_payload_candidates(ag_collection_t *c, ag_arena_t *arena, const json_t *filter,
                           uint32_t **out, size_t *n);

/* How many candidates ag_payload_candidates would return for filter (repeats included), without
 * building the list: a few hash lookups. False when no index applies. Caller holds the read
 * lock. */
bool ag_payload_candidates_count(ag_collection_t *c, const json_t *filter, size_t *n);

/* The maintenance hook: the payload of slot changes from old (NULL: the point is new) to new_
 * (NULL: the point is deleted); both packed (json/ag_pack.h) and borrowed. Called by the
 * collection's apply for every mutation, under the write lock, before the write's version bump;
 * then ag_payload_index_advance(c) once per applied write. Cannot fail: an index it cannot update
 * is marked stale. */
void ag_payload_index_update(ag_collection_t *c, uint32_t slot, const uint8_t *old,
                             const uint8_t *new_);
/* After the hook calls of one applied write (write lock held, c->version not yet bumped): the
 * indexes kept current are current at the next version. */
void ag_payload_index_advance(ag_collection_t *c);

/* Tests and benchmarks: is field's maintained index (if built and current) identical to one
 * built from scratch now? True when there is nothing to compare. Caller holds the read lock. */
bool ag_payload_index_verify(ag_collection_t *c, const char *field);
/* Tests and benchmarks: marks every index of c stale (the next search rebuilds it), as a write
 * did before indexes were maintained. Caller holds the read lock. */
void ag_payload_index_invalidate(ag_collection_t *c);
/* How many times a search built an index in this process (tests, benchmarks; the builds of
 * ag_payload_index_verify not counted). */
uint64_t ag_payload_index_builds(void);

/* Frees the collection's cached indexes (collection teardown). */
void ag_payload_index_free(ag_collection_t *c);

#endif
