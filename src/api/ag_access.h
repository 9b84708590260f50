/*
 * ag_access.h — helpers shared by the access-management handlers (api_auth.c, api_identity.c):
 * the anti-escalation rule (a caller may hand out only permissions it holds,
 * docs/PERMISSIONS.md) and common input checks.
 */
#ifndef AG_ACCESS_H
#define AG_ACCESS_H

#include "api/ag_api.h"
#include "auth/ag_perm.h"

/* One permission as compact JSON text for a message, into buf (truncated to len). */
void ag_api_perm_text(const ag_perm_t *p, char *buf, size_t len);

/* 403 unless the caller (and every minter or creator bounding it) holds every permission of
 * wanted: "Forbidden: <what>[i]: cannot grant <permission>: …". what names the list in the
 * request ("permissions" → "permissions[2]" when indexed, "roles", "role 'x'"). */
int ag_api_check_grant(ag_call_t *call, const ag_perm_list_t *wanted, const char *what,
                       bool indexed);

/* Every permission of the roles named in the JSON array roles, appended to out (the caller
 * releases it). AG_EINVAL naming path[i] for a bad or unknown name or a list longer than a user
 * may hold; diag receives the message. */
int ag_api_roles_perms(ag_call_t *call, const json_t *roles, const char *path, ag_perm_list_t *out,
                       ag_diag_t *diag);

/* 400 unless id is a valid user id (the role-name alphabet, 1 to 64 characters). */
int ag_api_check_user_id(ag_call_t *call, const char *id);
/* 500: the security store is not available. */
int ag_api_store_missing(ag_call_t *call);

#endif
