/*
 * ag_decide.h — the authorization decision (docs/SECURITY.md "Authorization"): pure functions of
 * a principal, the action a request asks for and, for multi-tenant collections, the declared
 * tenants. No I/O, no HTTP, no store: the guard (api/ag_guard.c) gathers the inputs and connects
 * the answer to the request.
 *
 * Layers of one decision, each in its own function:
 *   ag_auth_decide_self     one principal's own permissions (scopes, verbs, row filters);
 *   ag_auth_decide          + every minter up the principal's bound chain (ANDed);
 *   ag_decide_request       + tenant scopes widened to the declared active tenants they match,
 *                           and inactive tenants hidden — what a request through the guard gets.
 */
#ifndef AG_DECIDE_H
#define AG_DECIDE_H

#include "ag_base.h"
#include "ag_perm.h"
#include "ag_principal.h"

#include <jansson.h>

typedef struct ag_decision {
    bool allowed;
    /* Row restriction to AND into every read and to check writes against (data actions only).
     * NULL = none (or not a data action). Owned by the caller: ag_decision_release. */
    ag_filter_t *restriction;
    /* When denied: the missing permission, e.g. "read:data on collection 'x'", for the 403
     * message (never a secret; contains names from the request). Points into buf or is static. */
    const char *missing;
    /* When allowed: the first permission that covers the action (borrowed from the principal;
     * NULL for the implicit read:profile), for POST /auth/check. */
    const ag_perm_t *granted_by;
    char buf[768];
} ag_decision_t;

/*
 * Decides a's action for p's own permissions only (ignoring its bound): deny unless some permission
 * covers the verbs and resource and its scope patterns match. For data and points the restriction
 * is the union (OR) of the row filters of every matching permission, or NULL when any matching one
 * is unrestricted. A tenant-scoped data permission contributes the restriction `tenant_key ==
 * tenant`; it matches only when the request names a tenant and a->tenant_key is set. read:profile
 * is always granted. Never allocates except to build a restriction. Returns 0 when a decision was
 * made (see out->allowed). On an internal error (out of memory, a NULL or malformed argument)
 * returns a negative code and out->allowed is false (fail closed).
 */
int ag_auth_decide_self(const ag_principal_t *p, const ag_request_action_t *a, ag_decision_t *out);
/* ag_auth_decide_self for p and every principal up its bound chain: allowed only when each one
 * allows; the restriction is the AND of theirs; granted_by is p's own permission. Same returns. */
int ag_auth_decide(const ag_principal_t *p, const ag_request_action_t *a, ag_decision_t *out);
/* Frees the restriction; out->allowed becomes false. */
void ag_decision_release(ag_decision_t *d);

/* Anti-escalation: true if p, and every principal up its bound chain, holds every permission of
 * wanted (ag_perm_list_covers). When false
 * and first_missing is not NULL, it receives the index of the first permission p lacks. */
bool ag_principal_holds(const ag_principal_t *p, const ag_perm_list_t *wanted,
                        size_t *first_missing);

/*
 * The decision for a request, as the guard makes it: ag_auth_decide_self for the principal and
 * each minter above it, where for a data action on a multi-tenant collection (a->tenant_key set)
 * and no tenant in the request, a tenant-scoped permission also grants `tenant_key in [the
 * declared, active tenants its pattern matches now]` (a glob is not a filter; with no matching
 * tenant it grants nothing), and the points of inactive tenants are hidden from every data action
 * (`must_not tenant_key in [inactive]` ANDed in). tenants is the collection's declarations
 * {"name": {"active": bool, ...}, ...} (borrowed; NULL = none). data tells whether a->resource is
 * data. Same returns and ownership as ag_auth_decide; on an internal error d denies.
 */
int ag_decide_request(const ag_principal_t *p, const ag_request_action_t *a, bool data,
                      const json_t *tenants, ag_decision_t *d);

#endif
