/*
 * ag_point_ops.h — the point write operations of api/ (ag_point_ops.c), shared by the
 * single-operation endpoints and the batch endpoint. Every ag_op_* runs in a write session on c
 * (ag_call_write); with call->dry_run set it validates without writing. They authorize and parse;
 * the batch, payload edits and the write itself are store's (store/ag_write.h).
 */
#ifndef AG_POINT_OPS_H
#define AG_POINT_OPS_H

#include "api/ag_points.h"

/* Checks the mutations against the caller's rows and the tenant rules, then applies them (one
 * LMDB transaction; nothing when call->dry_run). */
int ag_op_commit(ag_call_t *call, ag_collection_t *c, ag_batch_t *ms);

int ag_op_upsert(ag_call_t *call, ag_collection_t *c, const json_t *body);
int ag_op_delete(ag_call_t *call, ag_collection_t *c, const json_t *body);
int ag_op_payload(ag_call_t *call, ag_collection_t *c, const json_t *body, ag_pl_op_t op);
int ag_op_update_vectors(ag_call_t *call, ag_collection_t *c, const json_t *body);
int ag_op_delete_vectors(ag_call_t *call, ag_collection_t *c, const json_t *body);

#endif
