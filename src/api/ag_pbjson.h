/*
 * ag_pbjson.h — Qdrant's protobuf messages ↔ the JSON bodies and results of the REST handlers.
 * The one place where gRPC messages are converted (docs/API.md "gRPC"): a request message becomes
 * the collection name, the JSON body the REST handler takes and its `wait` flag, so the handlers'
 * validation, row restrictions and limits apply unchanged; a handler's JSON result becomes the
 * response message. Nothing here knows HTTP or credentials.
 *
 * A field the conversion does not support is refused (AG_EINVAL naming it), never dropped.
 */
#ifndef AG_PBJSON_H
#define AG_PBJSON_H

#include "ag_base.h"

#include <jansson.h>

typedef struct ag_pb_req {
    char *collection; /* owned; NULL for calls without one */
    char *param;      /* owned: the route's second path parameter (field, snapshot), or NULL */
    json_t *body;     /* owned; NULL for calls without a body */
    bool wait;
    uint64_t timeout_s; /* from the message's `timeout` field; 0 = none */
} ag_pb_req_t;

void ag_pb_req_release(ag_pb_req_t *r);

/* Decodes a request message into r. 0, or AG_EINVAL with diag naming the bad field (a message
 * that is not valid protobuf included). */
typedef int (*ag_pb_decode_fn)(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag);
/* Encodes the REST handler's result (borrowed; NULL for none) as the response message, in a new
 * buffer (*out, malloc'd, caller frees). time = seconds the call took. */
typedef int (*ag_pb_encode_fn)(const json_t *result, double time, uint8_t **out, size_t *len,
                               ag_diag_t *diag);

#define AG_PB_RPCS(X)                                                                              \
    X(health)                                                                                      \
    X(grpc_health)                                                                                 \
    X(list_collections)                                                                            \
    X(get_collection)                                                                              \
    X(create_collection)                                                                           \
    X(delete_collection)                                                                           \
    X(collection_exists)                                                                           \
    X(upsert)                                                                                      \
    X(search)                                                                                      \
    X(query)                                                                                       \
    X(scroll)                                                                                      \
    X(get_points)                                                                                  \
    X(delete_points)                                                                               \
    X(count)                                                                                       \
    X(set_payload)                                                                                 \
    X(overwrite_payload)                                                                           \
    X(delete_payload)                                                                              \
    X(clear_payload)                                                                               \
    X(create_field_index)                                                                          \
    X(update_aliases)                                                                              \
    X(list_aliases)                                                                                \
    X(list_collection_aliases)                                                                     \
    X(update_batch)                                                                                \
    X(search_batch)                                                                                \
    X(query_batch)                                                                                 \
    X(recommend)                                                                                   \
    X(recommend_batch)                                                                             \
    X(recommend_groups)                                                                            \
    X(discover)                                                                                    \
    X(discover_batch)                                                                              \
    X(search_groups)                                                                               \
    X(query_groups)                                                                                \
    X(facet)                                                                                       \
    X(matrix_pairs)                                                                                \
    X(matrix_offsets)                                                                              \
    X(update_vectors)                                                                              \
    X(delete_vectors)                                                                              \
    X(delete_field_index)                                                                          \
    X(update_collection)                                                                           \
    X(cluster_info)                                                                                \
    X(create_snapshot)                                                                             \
    X(list_snapshots)                                                                              \
    X(delete_snapshot)                                                                             \
    X(create_full_snapshot)                                                                        \
    X(list_full_snapshots)                                                                         \
    X(delete_full_snapshot)

#define AG_PB_DECL(name)                                                                           \
    int ag_pb_decode_##name(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag);      \
    int ag_pb_encode_##name(const json_t *result, double time, uint8_t **out, size_t *len,         \
                            ag_diag_t *diag);
AG_PB_RPCS(AG_PB_DECL)
#undef AG_PB_DECL

#endif
