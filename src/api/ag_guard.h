/*
 * ag_guard.h — the authenticate → authorize step of the request path, run in begin() before any
 * byte of the body is read. Today every caller is the anonymous principal and every request is
 * allowed (the server only runs with --insecure); the credentials issue replaces the body of
 * these functions, not their place in the path.
 */
#ifndef AG_GUARD_H
#define AG_GUARD_H

#include "api/ag_api.h"

/* Refuses a route whose action is missing or malformed (the server then refuses to start). */
int ag_guard_check_route(const ag_route_t *r, ag_diag_t *diag);
/* Authenticates the caller and authorizes call->route for it; on success may set
 * call->restriction. Fails closed: any error denies. */
int ag_guard_admit(ag_call_t *call, ag_diag_t *diag);
/* Records the outcome of a request that the audit log must see. */
void ag_guard_audit(ag_call_t *call, int http_status);

#endif
