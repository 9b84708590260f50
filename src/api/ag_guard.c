#include "ag_guard.h"

#include <stdio.h>

#include "ag_log.h"

static const char *const verbs[] = {"read", "create", "update", "delete", "write", "manage"};
static const char *const resources[] = {
    "collections", "data",    "tenants", "snapshots", "backups",  "backup_schedules",
    "cluster",     "nodes",   "cluster_data", "roles", "users",   "api_keys",
    "management_keys", "invites", "account", "profile", "audit", "public"};

static bool in_list(const char *s, size_t len, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(list[i]) == len && memcmp(list[i], s, len) == 0)
            return true;
    return false;
}

int ag_guard_check_route(const ag_route_t *r, ag_diag_t *diag)
{
    if (!r->action)
        return ag_fail(diag, AG_ECONFIG, "route %s declares no action", r->pattern);
    const char *colon = strchr(r->action, ':');
    if (!colon || !in_list(r->action, (size_t)(colon - r->action), verbs, AG_ARRAY_LEN(verbs)) ||
        !in_list(colon + 1, strlen(colon + 1), resources, AG_ARRAY_LEN(resources)))
        return ag_fail(diag, AG_ECONFIG, "route %s declares a malformed action '%s'", r->pattern,
                       r->action);
    if (r->public_route != (strcmp(colon + 1, "public") == 0))
        return ag_fail(diag, AG_ECONFIG, "route %s: only public routes use the public action",
                       r->pattern);
    return 0;
}

int ag_guard_admit(ag_call_t *call, ag_diag_t *diag)
{
    AG_UNUSED(diag);
    snprintf(call->req->principal_label, sizeof(call->req->principal_label), "anonymous");
    return 0;
}

void ag_guard_audit(ag_call_t *call, int http_status)
{
    AG_UNUSED(call);
    AG_UNUSED(http_status);
}
