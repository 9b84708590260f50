/*
 * ag_grpc_api.h — Qdrant's gRPC services on top of the REST request path (docs/API.md "gRPC").
 * One table lists every RPC with its declared action and the REST route it runs as; a call is
 * converted to that route's JSON body (api/ag_pbjson.h) and goes through the same route →
 * authenticate → authorize (→ row restriction) → execute → audit path as a REST request
 * (api/ag_api.c, api/ag_guard.c), so no policy is duplicated here.
 */
#ifndef AG_GRPC_API_H
#define AG_GRPC_API_H

#include "api/ag_api.h"
#include "grpc/ag_grpc.h"

/* Checks the RPC table against the route table: every RPC names an action, and it is the action
 * of the REST route it runs as. Call after ag_api_init; refuse to start on failure. */
int ag_grpc_api_init(const ag_api_t *api, ag_diag_t *diag);
/* ag_grpc_lookup_fn: the RPC for a path ("/qdrant.Points/Search") or NULL. ud = the ag_api_t. */
const void *ag_grpc_api_lookup(void *ud, const char *path);
/* ag_grpc_handle_fn: runs one call (on a gRPC worker). ud = the ag_api_t. */
void ag_grpc_api_handle(void *ud, ag_grpc_call_t *call);

/* For fuzz/fuzz_grpc.c only, an ag_grpc_handle_fn with no server behind it: the path parameters
 * scanned and the message decoded as a call would be, then the JSON body encoded as the RPC's
 * response (the encoders meet arbitrary shapes). ud unused. */
void ag_grpc_api_convert(void *ud, ag_grpc_call_t *call);
/* The path of the i-th RPC of the table, NULL past its end (fuzzing). */
const char *ag_grpc_api_path(size_t i);

#endif
