/*
 * ag_access.h — helpers shared by the access-management handlers (api_auth.c, api_identity.c):
 * the anti-escalation rule (a caller may hand out only permissions it holds,
 * docs/PERMISSIONS.md) and common input checks.
 */
#ifndef AG_ACCESS_H
#define AG_ACCESS_H

#include "api/ag_api.h"
#include "auth/ag_perm.h"

/* 403 unless the caller holds every permission of wanted. what names the list in the message
 * ("permissions" → "permissions[2]", or "role 'x'"). */
int ag_api_check_grant(ag_call_t *call, const ag_perm_list_t *wanted, const char *what,
                       bool indexed);

/* 400 unless id is a valid user id (the role-name alphabet, 1 to 64 characters). */
int ag_api_check_user_id(ag_call_t *call, const char *id);
/* 500: the security store is not available. */
int ag_api_store_missing(ag_call_t *call);

#endif
