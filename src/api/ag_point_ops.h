/*
 * ag_point_ops.h — the point write operations of api/ (ag_point_ops.c), shared by the
 * single-operation endpoints and the batch endpoint. Every ag_op_* runs with c's write mutex held
 * (ag_call_collection_write); with call->dry_run set it validates without writing.
 */
#ifndef AG_POINT_OPS_H
#define AG_POINT_OPS_H

#include "api/ag_points.h"

/* Mutations of one operation, arena-allocated; the payloads are owned (released by ag_muts_free).
 */
typedef struct muts {
    ag_mutation_t *m;
    size_t n, cap;
} ag_muts_t;

/* A new zeroed mutation at the end of ms (arena-backed growth); NULL when out of memory. */
ag_mutation_t *ag_muts_add(ag_call_t *call, ag_muts_t *ms);
/* Releases the payloads the mutations own. */
void ag_muts_free(ag_muts_t *ms);
/* Checks the mutations against the caller's rows and the tenant rules, then applies them (one
 * LMDB transaction; nothing when call->dry_run). */
int ag_op_commit(ag_call_t *call, ag_collection_t *c, ag_muts_t *ms);

typedef enum { AG_PL_SET, AG_PL_OVERWRITE, AG_PL_DELETE_KEYS, AG_PL_CLEAR } ag_pl_op_t;

int ag_op_upsert(ag_call_t *call, ag_collection_t *c, const json_t *body);
int ag_op_delete(ag_call_t *call, ag_collection_t *c, const json_t *body);
int ag_op_payload(ag_call_t *call, ag_collection_t *c, const json_t *body, ag_pl_op_t op);
int ag_op_update_vectors(ag_call_t *call, ag_collection_t *c, const json_t *body);
int ag_op_delete_vectors(ag_call_t *call, ag_collection_t *c, const json_t *body);

#endif
