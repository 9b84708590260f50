/*
 * Access-management API (docs/API.md, docs/PERMISSIONS.md): roles and database users (/auth/me,
 * /auth/check and /auth/token are in api_identity.c). Every change goes through the security store
 * (durable before the answer, applied on the next request everywhere); every grant passes the
 * anti-escalation rule: the caller must hold each permission it hands out (ag_principal_holds), so
 * only root grants everything.
 */
#include <pthread.h>
#include <stdio.h>

#include <sodium.h>

#include "ag_clock.h"

#include "api/ag_access.h"
#include "api/ag_api.h"
#include "api/ag_guard.h"
#include "auth/ag_auth.h"
#include "auth/ag_decide.h"
#include "auth/ag_jwt.h"
#include "auth/ag_perm.h"
#include "auth/ag_principal.h"
#include "auth/ag_secstore.h"
#include "json/ag_json.h"

static ag_secstore_t *sec_of(ag_call_t *call)
{
    return ag_guard_secstore(call->api->guard);
}

int ag_api_store_missing(ag_call_t *call)
{
    return ag_fail(&call->diag, AG_EINTERNAL, "the security store is not available");
}

/* ---- anti-escalation ----------------------------------------------------------------------- */

/* One permission as compact JSON text for a message. */
void ag_api_perm_text(const ag_perm_t *p, char *buf, size_t len)
{
    json_t *arr = json_array();
    char *text = NULL;
    if (arr && ag_perm_to_json(p, arr) == 0 && json_array_size(arr) > 0)
        text = ag_json_dump(json_array_get(arr, 0));
    snprintf(buf, len, "%s", text ? text : "(permission)");
    free(text);
    json_decref(arr);
}

int ag_api_check_grant(ag_call_t *call, const ag_perm_list_t *wanted, const char *what,
                       bool indexed)
{
    size_t idx = 0;
    if (ag_principal_holds(call->principal, wanted, &idx))
        return 0;
    char text[300];
    ag_api_perm_text(&wanted->items[idx], text, sizeof(text));
    if (indexed)
        return ag_fail(&call->diag, AG_EFORBIDDEN,
                       "Forbidden: %s[%zu]: cannot grant %.300s: the caller does not hold it", what,
                       idx, text);
    return ag_fail(&call->diag, AG_EFORBIDDEN,
                   "Forbidden: %s: cannot grant %.300s: the caller does not hold it", what, text);
}

/* 403 unless the caller holds every permission of every role in names (a JSON array of
 * existing role names; unknown ones are left to the store to refuse). */
static int check_roles_grant(ag_call_t *call, const json_t *names)
{
    if (!json_is_array(names))
        return 0;
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v)
    {
        if (!json_is_string(v))
            continue;
        ag_perm_list_t perms = {0};
        int rc = ag_secstore_resolve_role(sec_of(call), json_string_value(v), &perms);
        if (rc == AG_ENOTFOUND)
            continue;
        if (rc == 0) {
            char what[100];
            snprintf(what, sizeof(what), "role '%.64s'", json_string_value(v));
            rc = ag_api_check_grant(call, &perms, what, false);
        }
        ag_perm_list_release(&perms);
        if (rc)
            return rc;
    }
    return 0;
}

int ag_api_roles_perms(ag_call_t *call, const json_t *roles, const char *path, ag_perm_list_t *out,
                       ag_diag_t *diag)
{
    if (!json_is_array(roles) || json_array_size(roles) > AG_SECSTORE_MAX_ROLES_PER_USER)
        return ag_fail(diag, AG_EINVAL, "%s: expected an array of at most %d role names", path,
                       AG_SECSTORE_MAX_ROLES_PER_USER);
    size_t i;
    json_t *v;
    json_array_foreach(roles, i, v)
    {
        const char *name = json_string_value(v);
        if (!name || !ag_role_name_valid(name, json_string_length(v)))
            return ag_fail(diag, AG_EINVAL, "%s[%zu]: not a role name", path, i);
        int rc = ag_secstore_resolve_role(sec_of(call), name, out);
        if (rc == AG_ENOTFOUND)
            return ag_fail(diag, AG_EINVAL, "%s[%zu]: role '%s' does not exist", path, i, name);
        if (rc)
            return rc;
    }
    return 0;
}

static int parse_perms(ag_call_t *call, const json_t *arr, ag_perm_list_t *out)
{
    if (!arr)
        return ag_fail(&call->diag, AG_EINVAL, "permissions: missing");
    return ag_perm_list_parse(arr, "permissions", out, &call->diag);
}

static int check_role_name(ag_call_t *call, const char *name)
{
    if (!name || !ag_role_name_valid(name, strlen(name)))
        return ag_fail(&call->diag, AG_EINVAL,
                       "role name must be 1 to 64 characters of [A-Za-z0-9_.@-]");
    return 0;
}

int ag_api_check_user_id(ag_call_t *call, const char *id)
{
    if (!id || !ag_role_name_valid(id, strlen(id)))
        return ag_fail(&call->diag, AG_EINVAL,
                       "user id must be 1 to 64 characters of [A-Za-z0-9_.@-]");
    return 0;
}

/* ---- roles --------------------------------------------------------------------------------- */

static void filter_role_users(ag_call_t *call, json_t *role);

static int role_answer(ag_call_t *call, const char *name)
{
    int rc = ag_secstore_role_json(sec_of(call), name, &call->result);
    if (rc == AG_ENOTFOUND)
        return ag_fail(&call->diag, rc, "Not found: role '%s' does not exist", name);
    if (rc == 0)
        filter_role_users(call, call->result);
    return rc;
}

/* A listing of names, each shown only if the caller may read it (role- or user-scoped). */
typedef int (*item_json_fn)(ag_secstore_t *sec, const char *name, json_t **out);

static int filtered_list(ag_call_t *call, json_t *names, const char *action, bool by_role,
                         item_json_fn item, const char *field)
{
    json_t *arr = json_array();
    if (!names || !arr) {
        json_decref(names);
        json_decref(arr);
        return AG_ENOMEM;
    }
    size_t i;
    json_t *n;
    json_array_foreach(names, i, n)
    {
        ag_diag_t d;
        const char *name = json_string_value(n);
        if (ag_guard_authorize_name(call, action, by_role ? name : NULL, by_role ? NULL : name,
                                    &d) != 0)
            continue;
        json_t *one = NULL;
        if (item(sec_of(call), name, &one) == 0) {
            if (by_role)
                filter_role_users(call, one);
            json_array_append_new(arr, one);
        }
    }
    json_decref(names);
    call->result = json_pack("{s:o}", field, arr);
    return call->result ? 0 : AG_ENOMEM;
}

static int h_roles_list(ag_call_t *call)
{
    if (!sec_of(call))
        return ag_api_store_missing(call);
    return filtered_list(call, ag_secstore_role_names(sec_of(call)), "read:roles", true,
                         ag_secstore_role_json, "roles");
}

static int h_role_get(ag_call_t *call)
{
    int rc = check_role_name(call, call->params[0]);
    if (rc)
        return rc;
    return sec_of(call) ? role_answer(call, call->params[0]) : ag_api_store_missing(call);
}

/* A role's `users` lists only the holders the caller may read (read:users on each): who holds a
 * role is user information, not role information. */
static void filter_role_users(ag_call_t *call, json_t *role)
{
    json_t *users = json_object_get(role, "users");
    if (!json_is_array(users))
        return;
    for (size_t i = json_array_size(users); i-- > 0;) {
        ag_diag_t d;
        if (ag_guard_authorize_name(call, "read:users", NULL,
                                    json_string_value(json_array_get(users, i)), &d) != 0)
            json_array_remove(users, i);
    }
}

static bool perm_equal(const ag_perm_t *a, const ag_perm_t *b)
{
    if (a->verbs != b->verbs || a->resource != b->resource)
        return false;
    for (int s = 0; s < AG_PSCOPE_COUNT; s++)
        if (strcmp(ag_glob_text(&a->scope[s]), ag_glob_text(&b->scope[s])) != 0)
            return false;
    if (!a->filter || !b->filter)
        return a->filter == b->filter;
    return json_equal(a->filter, b->filter);
}

static bool list_has(const ag_perm_list_t *l, const ag_perm_t *p)
{
    for (size_t i = 0; i < l->n; i++)
        if (perm_equal(&l->items[i], p))
            return true;
    return false;
}

/* The permissions (as JSON) of one list that the other lacks: what a change granted or removed.
 * Memory: a new array (NULL on allocation failure). */
static json_t *perms_missing(const json_t *from_json, const ag_perm_list_t *from,
                             const ag_perm_list_t *other)
{
    json_t *out = json_array();
    for (size_t i = 0; out && i < from->n; i++)
        if (!list_has(other, &from->items[i]))
            json_array_append(out, json_array_get(from_json, i));
    return out;
}

/* Serialises the read-modify-write of a role's permissions (add, remove, replace). */
static pthread_mutex_t role_edit_lock = PTHREAD_MUTEX_INITIALIZER;

static int h_role_create(ag_call_t *call)
{
    if (!sec_of(call))
        return ag_api_store_missing(call);
    int rc = AG_JSON_ONLY(call->body, "", &call->diag, "name", "permissions");
    if (rc)
        return rc;
    json_t *jn = json_object_get(call->body, "name");
    if (!json_is_string(jn))
        return ag_fail(&call->diag, AG_EINVAL, "name: expected a role name");
    const char *name = json_string_value(jn);
    if ((rc = check_role_name(call, name)) != 0)
        return rc;
    /* The route admits any role scope; the name comes from the body. */
    if ((rc = ag_guard_authorize_name(call, "create:roles", name, NULL, &call->diag)) != 0)
        return rc;
    if (ag_secstore_role_builtin(name))
        return ag_fail(&call->diag, AG_EEXIST, "role '%s' already exists (predefined)", name);
    json_t *arr = json_object_get(call->body, "permissions");
    ag_perm_list_t perms = {0};
    if ((rc = parse_perms(call, arr, &perms)) == 0 &&
        (rc = ag_api_check_grant(call, &perms, "permissions", true)) == 0 &&
        (rc = ag_secstore_role_put(sec_of(call), name, arr, &perms, true, &call->diag)) == 0)
        rc = role_answer(call, name);
    ag_perm_list_release(&perms);
    call->audit_detail = json_pack("{s:s,s:O}", "role", name, "granted", arr);
    return rc;
}

static int predefined_refusal(ag_call_t *call, const char *name, const char *what)
{
    return ag_fail(&call->diag, AG_EFORBIDDEN, "Forbidden: the predefined role '%s' cannot be %s",
                   name, what);
}

static int h_role_replace(ag_call_t *call)
{
    const char *name = call->params[0];
    int rc = check_role_name(call, name);
    if (rc)
        return rc;
    if (!sec_of(call))
        return ag_api_store_missing(call);
    if (ag_secstore_role_builtin(name))
        return predefined_refusal(call, name, "changed");
    if ((rc = AG_JSON_ONLY(call->body, "", &call->diag, "permissions")) != 0)
        return rc;
    json_t *arr = json_object_get(call->body, "permissions");
    ag_perm_list_t perms = {0}, before = {0};
    json_t *before_json = NULL;
    if ((rc = parse_perms(call, arr, &perms)) == 0 &&
        (rc = ag_api_check_grant(call, &perms, "permissions", true)) == 0) {
        pthread_mutex_lock(&role_edit_lock);
        /* What the role held before, for the audit record's granted/removed. */
        if (ag_secstore_role_perms_json(sec_of(call), name, &before_json) != 0 ||
            ag_perm_list_parse(before_json, "permissions", &before, NULL) != 0) {
            json_decref(before_json);
            before_json = NULL;
        }
        rc = ag_secstore_role_put(sec_of(call), name, arr, &perms, false, &call->diag);
        pthread_mutex_unlock(&role_edit_lock);
        if (rc == 0)
            rc = role_answer(call, name);
        if (before_json)
            call->audit_detail = json_pack("{s:s,s:o,s:o}", "role", name, "granted",
                                           perms_missing(arr, &perms, &before), "removed",
                                           perms_missing(before_json, &before, &perms));
    }
    ag_perm_list_release(&perms);
    ag_perm_list_release(&before);
    json_decref(before_json);
    return rc;
}

/* POST (add) and DELETE (remove) /auth/roles/{role}/permissions. */
static int role_edit(ag_call_t *call, bool add)
{
    const char *name = call->params[0];
    int rc = check_role_name(call, name);
    if (rc)
        return rc;
    if (!sec_of(call))
        return ag_api_store_missing(call);
    if (ag_secstore_role_builtin(name))
        return predefined_refusal(call, name, "changed");
    if ((rc = AG_JSON_ONLY(call->body, "", &call->diag, "permissions")) != 0)
        return rc;
    json_t *arr = json_object_get(call->body, "permissions");
    ag_perm_list_t given = {0}, current = {0}, next = {0};
    json_t *cur_json = NULL, *next_json = json_array();
    if (!next_json)
        return AG_ENOMEM;
    if ((rc = parse_perms(call, arr, &given)) != 0)
        goto out;
    if (add && (rc = ag_api_check_grant(call, &given, "permissions", true)) != 0)
        goto out;
    /* Read, change, write as one step: two concurrent edits of a role must not lose one. */
    pthread_mutex_lock(&role_edit_lock);
    rc = ag_secstore_role_perms_json(sec_of(call), name, &cur_json);
    if (rc == AG_ENOTFOUND)
        rc = ag_fail(&call->diag, rc, "Not found: role '%s' does not exist", name);
    if (rc == 0)
        rc = ag_perm_list_parse(cur_json, "permissions", &current, &call->diag);
    json_t *changed = json_array();
    for (size_t i = 0; rc == 0 && i < current.n; i++) {
        if (add || !list_has(&given, &current.items[i]))
            json_array_append(next_json, json_array_get(cur_json, i));
        else if (changed)
            json_array_append(changed, json_array_get(cur_json, i));
    }
    for (size_t i = 0; rc == 0 && add && i < given.n; i++) {
        if (!list_has(&current, &given.items[i])) {
            json_array_append(next_json, json_array_get(arr, i));
            if (changed)
                json_array_append(changed, json_array_get(arr, i));
        }
    }
    if (rc == 0 && (rc = ag_perm_list_parse(next_json, "permissions", &next, &call->diag)) == 0 &&
        (rc = ag_secstore_role_put(sec_of(call), name, next_json, &next, false, &call->diag)) == 0)
        rc = role_answer(call, name);
    pthread_mutex_unlock(&role_edit_lock);
    /* The audit record names the role and what was granted or removed. */
    if (changed)
        call->audit_detail =
            json_pack("{s:s,s:o}", "role", name, add ? "granted" : "removed", changed);
out:
    ag_perm_list_release(&given);
    ag_perm_list_release(&current);
    ag_perm_list_release(&next);
    json_decref(cur_json);
    json_decref(next_json);
    return rc;
}

static int h_role_perms_add(ag_call_t *call)
{
    return role_edit(call, true);
}

static int h_role_perms_remove(ag_call_t *call)
{
    return role_edit(call, false);
}

static int h_role_delete(ag_call_t *call)
{
    const char *name = call->params[0];
    int rc = check_role_name(call, name);
    if (rc)
        return rc;
    if (!sec_of(call))
        return ag_api_store_missing(call);
    if (ag_secstore_role_builtin(name))
        return predefined_refusal(call, name, "deleted");
    size_t holders = 0;
    rc = ag_secstore_role_delete(sec_of(call), name, &holders, &call->diag);
    if (rc == AG_ENOTFOUND)
        return ag_fail(&call->diag, rc, "Not found: role '%s' does not exist", name);
    if (rc)
        return rc;
    call->result = json_pack("{s:s,s:b,s:I}", "name", name, "deleted", 1, "users_affected",
                             (json_int_t)holders);
    call->audit_detail = json_pack("{s:s,s:s,s:I}", "role", name, "change", "deleted",
                                   "users_affected", (json_int_t)holders);
    return call->result ? 0 : AG_ENOMEM;
}

/* ---- users --------------------------------------------------------------------------------- */

static int user_answer(ag_call_t *call, const char *id)
{
    int rc = ag_secstore_user_json(sec_of(call), id, &call->result);
    if (rc == AG_ENOTFOUND)
        return ag_fail(&call->diag, rc, "Not found: user '%s' does not exist", id);
    return rc;
}

/* {"user": {...}, "api_key": key} — the only time the key is shown. */
static int key_answer(ag_call_t *call, const char *id, char *key)
{
    json_t *user = NULL;
    int rc = ag_secstore_user_json(sec_of(call), id, &user);
    if (rc == 0) {
        call->result = json_pack("{s:o,s:s}", "user", user, "api_key", key);
        rc = call->result ? 0 : AG_ENOMEM;
    }
    ag_secstore_key_free(key);
    return rc;
}

static int h_users_list(ag_call_t *call)
{
    if (!sec_of(call))
        return ag_api_store_missing(call);
    return filtered_list(call, ag_secstore_user_ids(sec_of(call)), "read:users", false,
                         ag_secstore_user_json, "users");
}

static int user_route_start(ag_call_t *call)
{
    int rc = ag_api_check_user_id(call, call->params[0]);
    if (rc == 0 && !sec_of(call))
        rc = ag_api_store_missing(call);
    return rc;
}

static int h_user_get(ag_call_t *call)
{
    int rc = user_route_start(call);
    return rc ? rc : user_answer(call, call->params[0]);
}

static int h_user_create(ag_call_t *call)
{
    int rc = user_route_start(call);
    if (rc || (rc = AG_JSON_ONLY(call->body, "", &call->diag, "roles")) != 0)
        return rc;
    json_t *roles = json_object_get(call->body, "roles");
    if (roles && !json_is_array(roles))
        return ag_fail(&call->diag, AG_EINVAL, "roles: expected an array of role names");
    /* Creating a user with roles assigns them: the same anti-escalation rule applies. */
    if ((rc = check_roles_grant(call, roles)) != 0)
        return rc;
    char *key = NULL;
    rc = ag_secstore_user_create(sec_of(call), call->params[0], roles, &key, &call->diag);
    call->audit_detail = json_pack("{s:s,s:s,s:O}", "user", call->params[0], "change", "created",
                                   "roles", roles ? roles : json_array());
    return rc ? rc : key_answer(call, call->params[0], key);
}

static int h_user_delete(ag_call_t *call)
{
    int rc = user_route_start(call);
    if (rc || (rc = ag_secstore_user_delete(sec_of(call), call->params[0], &call->diag)) != 0)
        return rc;
    call->result = json_pack("{s:s,s:b}", "id", call->params[0], "deleted", 1);
    call->audit_detail = json_pack("{s:s,s:s}", "user", call->params[0], "change", "deleted");
    return call->result ? 0 : AG_ENOMEM;
}

/* 403 unless the caller holds every permission user id has. Handing out a user's key, or
 * bringing a deactivated user back, gives someone those permissions: update:users alone must not
 * reach them (docs/SECURITY.md "Anti-escalation"). what: "the key of", "the activation of". */
static int check_user_grant(ag_call_t *call, const char *id, const char *what)
{
    ag_principal_t *target = NULL;
    int rc = ag_secstore_user_principal(sec_of(call), id, &target, NULL);
    if (rc == AG_ENOTFOUND)
        return ag_fail(&call->diag, rc, "Not found: user '%s' does not exist", id);
    if (rc)
        return rc;
    char text[100];
    snprintf(text, sizeof(text), "%s user '%.64s'", what, id);
    rc = ag_api_check_grant(call, ag_principal_perms(target), text, false);
    ag_principal_unref(target);
    return rc;
}

static int h_user_rotate(ag_call_t *call)
{
    int rc = user_route_start(call);
    if (rc || (rc = check_user_grant(call, call->params[0], "the key of")) != 0)
        return rc;
    char *key = NULL;
    if ((rc = ag_secstore_user_rotate(sec_of(call), call->params[0], &key, &call->diag)) != 0)
        return rc;
    call->audit_detail =
        json_pack("{s:s,s:s}", "user", call->params[0], "change", "key rotated (old key dead)");
    return key_answer(call, call->params[0], key);
}

static int set_active(ag_call_t *call, bool active)
{
    int rc = user_route_start(call);
    if (rc == 0 && active)
        rc = check_user_grant(call, call->params[0], "the activation of");
    if (rc ||
        (rc = ag_secstore_user_set_active(sec_of(call), call->params[0], active, &call->diag)))
        return rc;
    call->audit_detail = json_pack("{s:s,s:s}", "user", call->params[0], "change",
                                   active ? "activated" : "deactivated");
    return user_answer(call, call->params[0]);
}

static int h_user_deactivate(ag_call_t *call)
{
    return set_active(call, false);
}

static int h_user_activate(ag_call_t *call)
{
    return set_active(call, true);
}

static int user_roles(ag_call_t *call, bool add)
{
    int rc = user_route_start(call);
    if (rc || (rc = AG_JSON_ONLY(call->body, "", &call->diag, "roles")) != 0)
        return rc;
    json_t *roles = json_object_get(call->body, "roles");
    if (!json_is_array(roles))
        return ag_fail(&call->diag, AG_EINVAL, "roles: expected an array of role names");
    if (add && (rc = check_roles_grant(call, roles)) != 0)
        return rc;
    rc = ag_secstore_user_roles(sec_of(call), call->params[0], roles, add, &call->diag);
    call->audit_detail = json_pack("{s:s,s:O}", "user", call->params[0],
                                   add ? "roles_granted" : "roles_revoked", roles);
    return rc ? rc : user_answer(call, call->params[0]);
}

static int h_user_roles_add(ag_call_t *call)
{
    return user_roles(call, true);
}

static int h_user_roles_remove(ag_call_t *call)
{
    return user_roles(call, false);
}

/* Literal paths before captures (the router takes the first match). */
const ag_route_t ag_routes_auth[] = {
    {AG_HTTP_GET, "/auth/roles", "read:roles", AG_SCOPE_NONE, h_roles_list, false, false, true},
    /* A listing-style admission (any role pattern); the handler checks the name in the body. */
    {AG_HTTP_POST, "/auth/roles", "create:roles", AG_SCOPE_NONE, h_role_create, true, false, true},
    {AG_HTTP_GET, "/auth/roles/{role}", "read:roles", AG_SCOPE_ROLE, h_role_get, false, false},
    {AG_HTTP_PUT, "/auth/roles/{role}", "update:roles", AG_SCOPE_ROLE, h_role_replace, true, false},
    {AG_HTTP_DELETE, "/auth/roles/{role}", "delete:roles", AG_SCOPE_ROLE, h_role_delete, false,
     false},
    {AG_HTTP_POST, "/auth/roles/{role}/permissions", "update:roles", AG_SCOPE_ROLE,
     h_role_perms_add, true, false},
    {AG_HTTP_DELETE, "/auth/roles/{role}/permissions", "update:roles", AG_SCOPE_ROLE,
     h_role_perms_remove, true, false},
    {AG_HTTP_GET, "/auth/users", "read:users", AG_SCOPE_NONE, h_users_list, false, false, true},
    {AG_HTTP_GET, "/auth/users/{id}", "read:users", AG_SCOPE_USER, h_user_get, false, false},
    {AG_HTTP_POST, "/auth/users/{id}", "create:users", AG_SCOPE_USER, h_user_create, true, false},
    {AG_HTTP_DELETE, "/auth/users/{id}", "delete:users", AG_SCOPE_USER, h_user_delete, false,
     false},
    {AG_HTTP_POST, "/auth/users/{id}/rotate-key", "update:users", AG_SCOPE_USER, h_user_rotate,
     false, false},
    {AG_HTTP_POST, "/auth/users/{id}/deactivate", "update:users", AG_SCOPE_USER, h_user_deactivate,
     false, false},
    {AG_HTTP_POST, "/auth/users/{id}/activate", "update:users", AG_SCOPE_USER, h_user_activate,
     false, false},
    {AG_HTTP_POST, "/auth/users/{id}/roles", "update:users", AG_SCOPE_USER, h_user_roles_add, true,
     false},
    {AG_HTTP_DELETE, "/auth/users/{id}/roles", "update:users", AG_SCOPE_USER, h_user_roles_remove,
     true, false},
};
const size_t ag_routes_auth_len = AG_ARRAY_LEN(ag_routes_auth);
