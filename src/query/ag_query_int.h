/*
 * ag_query_int.h — shared between the query layer's own files; not for
 * anyone else (the ag_q__ tier, as libuv's uv__).
 */
#ifndef AG_QUERY_INT_H
#define AG_QUERY_INT_H

#include "query/ag_query.h"

#define AG_Q_MAX_DEPTH 64    /* prefetch nesting (Qdrant's MAX_PREFETCH_DEPTH) */
#define AG_Q_MAX_STAGES 1024 /* stages of one request, every level together */
/* Budgets for work that multiplies (docs/SECURITY.md, "Request cost"), refused before any of it
 * is done. Far above what Qdrant clients send in normal use. */
#define AG_Q_MAX_EXAMPLES 1000        /* positive + negative examples of one recommendation */
#define AG_Q_MAX_REQ_EXAMPLES 10000   /* examples of every query of a request (a batch) together */
#define AG_Q_MAX_REQ_STAGES 10000     /* queries and prefetches of a request (a batch) together */
#define AG_Q_MAX_REQ_RESULTS 1100000u /* limit + offset of every query and prefetch, added up */
#define AG_Q_MAX_OFFSET 1000000
#define AG_Q_MAX_GROUP_VALUES 256 /* group_by values taken from one point */
#define AG_Q_DEFAULT_LIMIT 10
#define AG_Q_DEFAULT_GROUP_SIZE 3 /* Qdrant's CollectionQueryRequest::DEFAULT_GROUP_SIZE */
#define AG_Q_DEFAULT_RRF_K 2      /* Qdrant's DEFAULT_RRF_K: score = 1 / (k + rank), rank from 0 */

void ag_q__pathf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "<path>.<key>", or "<key>" at the top level. */
void ag_q__field(char *buf, size_t len, const char *path, const char *key);
/* n zeroed elements of size bytes from the request's arena (at least one), NULL on overflow or
 * when out of memory. */
void *ag_q__alloc(ag_query_t *rq, size_t n, size_t size);
/* Prefixes a diagnostic written by a shared parser with where its input sits in a batch. */
int ag_q__prefixed(ag_query_t *rq, const char *path, int rc);
int ag_q__cmp_u32(const void *a, const void *b);
int ag_q__cmp_hit_slot(const void *a, const void *b);
/* Best first: higher score, then smaller slot (the order ag_index.h promises). */
int ag_q__cmp_hit_score(const void *a, const void *b);
const char *ag_q__vector_label(const char *name);

/* Visits every slot in sc once (payload-index candidates when an index applies, else every
 * slot), checking the deadline; stops early when visit returns false. Notes the examined count.
 * Caller holds the read lock or the write session. */
int ag_q__each_in_scope(const ag_qctx_t *ctx, const ag_scope_t *sc, const json_t *filter_json,
                        bool (*visit)(void *ud, uint32_t slot), void *ud);

/* Executor pieces shared by ag_qexec.c and ag_qgroups.c. */
/* Another collection through the caller's authorization (ctx->open_other): a new reference in
 * *out and the caller's restriction there in *restriction (owned, NULL = none). */
int ag_q__open_other(ag_query_t *rq, const char *name, const char *where, ag_collection_t **out,
                     ag_filter_t **restriction);
/* The best k of a stage (read lock held); prefetches run once per request. */
int ag_q__run_stage(ag_query_t *rq, ag_stage_t *st, size_t k, ag_ranked_t *out);
/* Hit i of r as a point object (new reference; read lock held). */
json_t *ag_q__render_hit(const ag_query_t *rq, const ag_ranked_t *r, size_t i);
/* The groups of the request (read lock held): *out a new JSON array. */
int ag_q__run_groups(ag_query_t *rq, json_t **out);
/* with_lookup, after this collection's lock is released. */
int ag_q__fill_lookups(ag_query_t *rq, json_t *groups);

#endif
