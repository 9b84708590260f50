/*
 * ag_guard.h — the authenticate → authorize step of the request path, run in begin() before any
 * byte of the body is read:
 *   public route?  → admitted without a credential (/, /healthz, /livez, /readyz and
 *                    POST /auth/invites/accept, which checks its code itself)
 *   --insecure?    → the anonymous principal (root), loopback only
 *   authenticate   → 401 for a missing/invalid credential or client certificate
 *                    (auth/ag_auth.h); once an address has failed too often, its failures get
 *                    429 with Retry-After and are recorded in aggregate (auth/ag_throttle.h)
 *   authorize      → 403 naming the missing permission; the decision's row restriction goes to
 *                    call->restriction and is ANDed into every read and checked on every write
 * Anything unexpected denies (fail closed) and is logged with the reason, never the credential.
 */
#ifndef AG_GUARD_H
#define AG_GUARD_H

#include "api/ag_api.h"
#include "auth/ag_principal.h"

typedef struct ag_guard_config {
    bool insecure;
    const char *api_key;
    const char *alt_api_key;
    const char *read_only_api_key;
    bool jwt_rbac;
    int64_t jwt_leeway_s;
    const char *storage_path; /* where the generated root key's hash lives */
    /* Throttle of failed authentications (service.auth_*); 0 = the default. */
    unsigned auth_max_failures;
    unsigned auth_failure_window_s;
    unsigned auth_lockout_s;
    /* Cluster mode (docs/CLUSTER.md): borrowed; NULL = a single node. While it cannot confirm
     * the security state is fresh, every non-public request gets 503 (fail closed). */
    struct ag_cluster *cluster;
} ag_guard_config_t;

/* Builds the guard. On a first start without any configured key (and without --insecure) it
 * generates a root key, prints it once on stdout and stores only its hash. *out owned by the
 * caller (ag_guard_free). The store is borrowed (value_exists checks). */
int ag_guard_new(const ag_guard_config_t *cfg, ag_store_t *store, ag_guard_t **out,
                 ag_diag_t *diag);
void ag_guard_free(ag_guard_t *g);

/* Parses route i's action into the guard's table; refuses a missing or malformed one. */
int ag_guard_check_route(ag_guard_t *g, const ag_route_t *r, size_t i, ag_diag_t *diag);
/* Authenticates and authorizes the call for route index i. */
int ag_guard_admit(ag_guard_t *g, ag_call_t *call, size_t i, int *retry_after, ag_diag_t *diag);
/* Is the caller allowed `action` ("read:data", ...) on collection name? On success and when
 * restriction is not NULL, *restriction receives the row restriction to apply (caller owns). */
int ag_guard_authorize(ag_call_t *call, const char *action, const char *collection,
                       ag_filter_t **restriction, ag_diag_t *diag);
/* Would the caller be allowed action on collection (NULL = none)? Quiet (nothing logged), for
 * deciding what an answer includes. */
bool ag_guard_may(ag_call_t *call, const char *action, const char *collection);
/* Can the caller see this collection in a listing (read:collections on it)? */
bool ag_guard_visible(ag_call_t *call, const char *collection);
void ag_guard_release_principal(ag_call_t *call);
/* The security store (roles, users, keys) and the authenticator (NULL with --insecure), for the
 * access-management API. Borrowed for the guard's life. */
struct ag_secstore;
struct ag_auth;
struct ag_secstore *ag_guard_secstore(ag_guard_t *g);
/* The cluster (NULL on a single node). */
struct ag_cluster *ag_guard_cluster(ag_guard_t *g);
struct ag_auth *ag_guard_auth(ag_guard_t *g);
/* The key id (public part) of the database-user key the request presented, copied into out
 * (AG_KEY_ID_LEN + 1 bytes). AG_ENOTFOUND when it presented none. Never the secret. */
int ag_guard_key_id(const ag_call_t *call, char *out);
/* An upsert's grant on collection: 0 with *restriction (owned; NULL = all rows) when the caller
 * may write it as a whole; else, verb by verb (create for new ids, update for existing ones;
 * docs/PERMISSIONS.md "Verbs"), 0 with out->split set (owned: ag_upsert_grant_release) when at
 * least one verb is allowed; else AG_EFORBIDDEN naming what is missing. */
int ag_guard_authorize_upsert(ag_call_t *call, const char *collection, ag_filter_t **restriction,
                              ag_upsert_grant_t *out, ag_diag_t *diag);
void ag_upsert_grant_release(ag_upsert_grant_t *g);
/* Is the caller allowed action ("create:roles") on the role and/or user named (NULL = none)?
 * 0, or AG_EFORBIDDEN naming the missing permission (fail closed on any error). */
int ag_guard_authorize_name(ag_call_t *call, const char *action, const char *role, const char *user,
                            ag_diag_t *diag);
/* Records the outcome of a request that the audit log must see: every denial (401/403/429)
 * and every change (a non-read action on anything but data), allowed or failed. Reads and
 * undenied data reads/writes are not recorded. */
void ag_guard_audit(ag_call_t *call, int http_status);
/* The audit log (borrowed; may be NULL = nothing is recorded). main opens it at serve start. */
struct ag_audit;
void ag_guard_set_audit(ag_guard_t *g, struct ag_audit *audit);
struct ag_audit *ag_guard_audit_log(ag_guard_t *g);
/* Is the caller allowed action ("create:tenants") on tenant of the route's collection? For the
 * tenant API's list and create routes, whose tenant is not in the path. 0 or AG_EFORBIDDEN. */
int ag_guard_authorize_tenant(ag_call_t *call, const char *action, const char *tenant,
                              ag_diag_t *diag);

/* The management-plane store (API keys, management keys, invites, account settings). Borrowed
 * for the guard's life. */
struct ag_keystore;
struct ag_keystore *ag_guard_keystore(ag_guard_t *g);
/* For a public route that checks a secret of its own (POST /auth/invites/accept): counts a wrong
 * one as a failed authentication from the caller's address — logged, audited, throttled — and
 * returns the answer: AG_EUNAUTH (401) with a generic message, or AG_ETHROTTLED (429, with
 * Retry-After set) once the address is locked out. */
int ag_guard_public_auth_failure(ag_call_t *call, const char *why, ag_diag_t *diag);
/* A node-to-node call's body, once it is in, against the hash its signed header names
 * (docs/CLUSTER.md "Node-to-node calls"). 0 (also for any other call), or AG_EUNAUTH /
 * AG_ETHROTTLED counted as a failed authentication of the sending address, whose address the
 * request then carries again; the caller answers and audits it. */
int ag_guard_peer_body(ag_call_t *call, ag_diag_t *diag);

#endif
