/*
 * Access-management API (docs/API.md, docs/PERMISSIONS.md): roles, database users, /auth/me,
 * /auth/check and /auth/token. Every change goes through the security store (durable before the
 * answer, applied on the next request everywhere); every grant passes the anti-escalation rule: the
 * caller must hold each permission it hands out (ag_principal_holds), so only root grants
 * everything.
 */
#include <pthread.h>
#include <stdio.h>

#include <sodium.h>

#include "ag_clock.h"

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

static int store_missing(ag_call_t *call)
{
    return ag_fail(&call->diag, AG_EINTERNAL, "the security store is not available");
}

/* ---- anti-escalation ----------------------------------------------------------------------- */

/* One permission as compact JSON text for a message. */
static void perm_text(const ag_perm_t *p, char *buf, size_t len)
{
    json_t *arr = json_array();
    char *text = NULL;
    if (arr && ag_perm_to_json(p, arr) == 0 && json_array_size(arr) > 0)
        text = ag_json_dump(json_array_get(arr, 0));
    snprintf(buf, len, "%s", text ? text : "(permission)");
    free(text);
    json_decref(arr);
}

/* 403 unless the caller holds every permission of wanted. what names the list in the message
 * ("permissions" → "permissions[2]", or "role 'x'"). */
static int check_grant(ag_call_t *call, const ag_perm_list_t *wanted, const char *what,
                       bool indexed)
{
    size_t idx = 0;
    if (ag_principal_holds(call->principal, wanted, &idx))
        return 0;
    char text[300];
    perm_text(&wanted->items[idx], text, sizeof(text));
    if (indexed)
        return ag_fail(&call->diag, AG_EFORBIDDEN,
                       "Forbidden: cannot grant %s[%zu] %.300s: the caller does not hold it", what,
                       idx, text);
    return ag_fail(&call->diag, AG_EFORBIDDEN,
                   "Forbidden: cannot grant %s: the caller does not hold its permission %.300s",
                   what, text);
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
            rc = check_grant(call, &perms, what, false);
        }
        ag_perm_list_release(&perms);
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

static int check_user_id(ag_call_t *call, const char *id)
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
        return store_missing(call);
    return filtered_list(call, ag_secstore_role_names(sec_of(call)), "read:roles", true,
                         ag_secstore_role_json, "roles");
}

static int h_role_get(ag_call_t *call)
{
    int rc = check_role_name(call, call->params[0]);
    if (rc)
        return rc;
    return sec_of(call) ? role_answer(call, call->params[0]) : store_missing(call);
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
        return store_missing(call);
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
        (rc = check_grant(call, &perms, "permissions", true)) == 0 &&
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
        return store_missing(call);
    if (ag_secstore_role_builtin(name))
        return predefined_refusal(call, name, "changed");
    if ((rc = AG_JSON_ONLY(call->body, "", &call->diag, "permissions")) != 0)
        return rc;
    json_t *arr = json_object_get(call->body, "permissions");
    ag_perm_list_t perms = {0}, before = {0};
    json_t *before_json = NULL;
    if ((rc = parse_perms(call, arr, &perms)) == 0 &&
        (rc = check_grant(call, &perms, "permissions", true)) == 0) {
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
        return store_missing(call);
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
    if (add && (rc = check_grant(call, &given, "permissions", true)) != 0)
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
        return store_missing(call);
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
        return store_missing(call);
    return filtered_list(call, ag_secstore_user_ids(sec_of(call)), "read:users", false,
                         ag_secstore_user_json, "users");
}

static int user_route_start(ag_call_t *call)
{
    int rc = check_user_id(call, call->params[0]);
    if (rc == 0 && !sec_of(call))
        rc = store_missing(call);
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
    rc = check_grant(call, ag_principal_perms(target), text, false);
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

/* ---- me, check, token ---------------------------------------------------------------------- */

/* The principal as JSON: kind, id, sub, roles, effective permissions, expiry. */
static json_t *principal_json(const ag_principal_t *p)
{
    json_t *roles = json_array(), *perms = json_array();
    if (!roles || !perms)
        goto fail;
    for (size_t i = 0; i < ag_principal_role_count(p); i++)
        if (json_array_append_new(roles, json_string(ag_principal_role(p, i))) < 0)
            goto fail;
    const ag_perm_list_t *pl = ag_principal_perms(p);
    for (size_t i = 0; i < pl->n; i++)
        if (ag_perm_to_json(&pl->items[i], perms) < 0)
            goto fail;
    if (json_array_append_new(perms, json_pack("{s:s}", "action", "read:profile")) < 0)
        goto fail;
    const char *id = ag_principal_id(p), *sub = ag_principal_sub(p);
    int64_t exp = ag_principal_expiry(p);
    json_t *out = json_pack("{s:s,s:s?,s:s?,s:o,s:o,s:o}", "kind",
                            ag_principal_kind_name(ag_principal_kind(p)), "id", id, "sub", sub,
                            "roles", roles, "permissions", perms, "expires_at",
                            exp ? json_integer((json_int_t)exp) : json_null());
    /* A minted token: what bounds it, as it stands now (its permissions only apply within). */
    const ag_principal_t *b = ag_principal_bound(p);
    const json_t *claims = ag_principal_claims(p);
    const json_t *m = claims ? json_object_get(claims, AG_JWT_MINTER_CLAIM) : NULL;
    if (out && m) {
        json_t *bound = b ? principal_json(b) : json_pack("{s:s}", "kind", "root");
        if (bound)
            json_object_set_new(out, "minted_by", bound);
    }
    return out;
fail:
    json_decref(roles);
    json_decref(perms);
    return NULL;
}

static int h_me(ag_call_t *call)
{
    if (!call->principal)
        return ag_fail(&call->diag, AG_EUNAUTH, "Unauthorized: no principal");
    call->result = principal_json(call->principal);
    return call->result ? 0 : AG_ENOMEM;
}

/* The principal /auth/check asks about: the caller, a user ({"user": id}) or a set of roles
 * ({"roles": [...]}, as a token naming them would carry). */
static int check_subject(ag_call_t *call, const json_t *spec, ag_principal_t **out, bool *active)
{
    *out = NULL;
    *active = true;
    if (!spec)
        return (*out = ag_principal_ref(call->principal)) ? 0 : AG_EINTERNAL;
    int rc = AG_JSON_ONLY(spec, "principal", &call->diag, "user", "roles");
    if (rc)
        return rc;
    json_t *user = json_object_get(spec, "user"), *roles = json_object_get(spec, "roles");
    if (!user == !roles)
        return ag_fail(&call->diag, AG_EINVAL,
                       "principal: expected {\"user\": id} or "
                       "{\"roles\": [names]}");
    if (!sec_of(call))
        return store_missing(call);
    if (user) {
        const char *id = json_string_value(user);
        if ((rc = check_user_id(call, id)) != 0)
            return rc;
        /* Whose permissions may be inspected follows read:users. */
        if ((rc = ag_guard_authorize_name(call, "read:users", NULL, id, &call->diag)) != 0)
            return rc;
        rc = ag_secstore_user_principal(sec_of(call), id, out, active);
        if (rc == AG_ENOTFOUND)
            return ag_fail(&call->diag, rc, "principal.user: user '%s' does not exist", id);
        return rc;
    }
    if (!json_is_array(roles) || json_array_size(roles) > 64)
        return ag_fail(&call->diag, AG_EINVAL, "principal.roles: expected an array of role names");
    ag_principal_t *p = NULL;
    if ((rc = ag_principal_new(AG_PRINCIPAL_TOKEN, NULL, &p)) != 0)
        return rc;
    size_t i;
    json_t *v;
    json_array_foreach(roles, i, v)
    {
        const char *name = json_string_value(v);
        if (!name || !ag_role_name_valid(name, strlen(name))) {
            rc = ag_fail(&call->diag, AG_EINVAL, "principal.roles[%zu]: not a role name", i);
            break;
        }
        ag_perm_list_t perms = {0};
        rc = ag_secstore_resolve_role(sec_of(call), name, &perms);
        if (rc == AG_ENOTFOUND)
            rc = ag_fail(&call->diag, AG_EINVAL, "principal.roles[%zu]: role '%s' does not exist",
                         i, name);
        if (rc == 0 && (rc = ag_principal_add_role(p, name)) == 0)
            rc = ag_principal_add_perms(p, &perms);
        ag_perm_list_release(&perms);
        if (rc)
            break;
    }
    if (rc) {
        ag_principal_unref(p);
        return rc;
    }
    *out = p;
    return 0;
}

static int opt_string(ag_call_t *call, const char *key, const char **out)
{
    json_t *v = json_object_get(call->body, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) > AG_MAX_NAME_LEN ||
        strlen(json_string_value(v)) != json_string_length(v))
        return ag_fail(&call->diag, AG_EINVAL, "%s: expected a name", key);
    *out = json_string_value(v);
    return 0;
}

static int h_check(ag_call_t *call)
{
    int rc = AG_JSON_ONLY(call->body, "", &call->diag, "principal", "action", "collection",
                          "tenant", "role", "user", "verbosity");
    if (rc)
        return rc;
    json_t *ja = json_object_get(call->body, "action");
    if (!json_is_string(ja))
        return ag_fail(&call->diag, AG_EINVAL, "action: expected \"<verb>:<resource>\"");
    ag_action_decl_t decl;
    ag_diag_t ad = {{0}};
    if (ag_action_decl_parse(json_string_value(ja), "action", &decl, &ad) != 0 ||
        (decl.flags & AG_ACTF_PUBLIC))
        return ag_fail(&call->diag, AG_EINVAL, "action: unknown action '%.64s'",
                       json_string_value(ja));
    ag_request_action_t a;
    ag_request_action_init(&a, &decl);
    if ((rc = opt_string(call, "collection", &a.collection)) != 0 ||
        (rc = opt_string(call, "tenant", &a.tenant)) != 0 ||
        (rc = opt_string(call, "role", &a.role)) != 0 ||
        (rc = opt_string(call, "user", &a.user)) != 0 ||
        (rc = opt_string(call, "verbosity", &a.verbosity)) != 0)
        return rc;
    /* Decided as a request would be: against the collection behind an alias. */
    char target[AG_MAX_NAME_LEN + 1];
    if (a.collection &&
        ag_store_alias_target(call->api->store, a.collection, target, sizeof(target)) == 0)
        a.collection = target;

    ag_principal_t *p = NULL;
    bool active = true;
    if ((rc = check_subject(call, json_object_get(call->body, "principal"), &p, &active)) != 0)
        return rc;
    /* As the guard decides a request: tenant scopes become rows of the tenant key. */
    json_t *tenancy = NULL;
    const json_t *tenants = NULL;
    bool data = ag_resource_is_data(decl.resource);
    if (a.collection && (data || decl.resource == AG_RES_TENANTS) &&
        ag_store_tenancy(call->api->store, a.collection, &tenancy) == 0) {
        a.tenant_key = json_string_value(json_object_get(tenancy, "key"));
        tenants = json_object_get(tenancy, "tenants");
    }
    ag_decision_t d;
    rc = ag_decide_request(p, &a, data, tenants, &d);
    char described[768];
    ag_action_describe(&a, described, sizeof(described));
    json_t *who = principal_json(p);
    bool allowed = rc == 0 && d.allowed && active;
    json_t *granted = NULL;
    if (allowed && d.granted_by) {
        json_t *arr = json_array();
        if (arr && ag_perm_to_json(d.granted_by, arr) == 0 && json_array_size(arr) > 0)
            granted = json_incref(json_array_get(arr, 0));
        json_decref(arr);
    } else if (allowed) {
        granted = json_pack("{s:s}", "action", "read:profile");
    }
    const char *reason = NULL;
    if (rc)
        reason = "the permission check failed (denied)";
    else if (!active && d.allowed)
        reason = "the user is deactivated";
    call->result = json_pack("{s:b,s:s,s:o,s:o,s:s?,s:b,s:s?}", "allowed", allowed, "action",
                             described, "principal", who ? who : json_null(), "granted_by",
                             granted ? granted : json_null(), "missing",
                             (rc == 0 && !d.allowed) ? d.missing : NULL, "restricted",
                             allowed && d.restriction != NULL, "reason", reason);
    ag_decision_release(&d);
    ag_principal_unref(p);
    json_decref(tenancy);
    return call->result ? 0 : AG_ENOMEM;
}

/* Claims the server writes into a minted token; a caller may not set them. */
static const char *const reserved_claims[] = {"sub", "subject", "iat", AG_JWT_MINTER_CLAIM};

/*
 * The minted_by claim naming the caller (a new object in *out) and the caller's identity for
 * `sub` (copied into sub). Only root, database users and tokens can mint; anything else is refused
 * (fail closed). A token caller is embedded with its own claims, so the new token is bound by
 * them — and by their minters — at every use.
 */
static int minter_claim(ag_call_t *call, json_t **out, char *sub, size_t sub_len)
{
    *out = NULL;
    const ag_principal_t *p = call->principal;
    int kind = ag_principal_kind(p);
    if (kind == AG_PRINCIPAL_ROOT) {
        snprintf(sub, sub_len, "root");
        *out = json_pack("{s:s}", "kind", "root");
    } else if (kind == AG_PRINCIPAL_USER) {
        char key_id[AG_KEY_ID_LEN + 1];
        if (ag_guard_key_id(call, key_id) != 0 &&
            ag_secstore_user_key_id(sec_of(call), ag_principal_id(p), key_id) != 0)
            return ag_fail(&call->diag, AG_EFORBIDDEN,
                           "Forbidden: the caller's key cannot be identified");
        snprintf(sub, sub_len, "user:%s", ag_principal_id(p));
        *out =
            json_pack("{s:s,s:s,s:s}", "kind", "user", "id", ag_principal_id(p), "key_id", key_id);
    } else if (kind == AG_PRINCIPAL_TOKEN && ag_principal_claims(p)) {
        int depth = 0;
        for (const ag_principal_t *q = p; q; q = ag_principal_bound(q))
            depth++;
        if (depth >= AG_JWT_MAX_MINT_DEPTH)
            return ag_fail(&call->diag, AG_EFORBIDDEN,
                           "Forbidden: a minted token may mint at most %d levels deep",
                           AG_JWT_MAX_MINT_DEPTH - 1);
        const char *psub = ag_principal_sub(p);
        snprintf(sub, sub_len, "%s", psub ? psub : "token");
        *out = json_pack("{s:s,s:O}", "kind", "token", "claims", ag_principal_claims(p));
    } else {
        return ag_fail(&call->diag, AG_EFORBIDDEN, "Forbidden: a %s credential cannot mint tokens",
                       ag_principal_kind_name(kind));
    }
    return *out ? 0 : AG_ENOMEM;
}

/*
 * POST /auth/token (docs/SECURITY.md "Minted tokens"): the token can never do more than its
 * minter can do at the moment of use. Checked here against the caller (anti-escalation); bound at
 * every use by the minted_by claim; expiry no later than the caller's and the server maximum (a
 * longer request is shortened, and the answer says so); sub is the caller's identity.
 */
static int h_token(ag_call_t *call)
{
    ag_auth_t *auth = ag_guard_auth(call->api->guard);
    int rc = AG_JSON_ONLY(call->body, "", &call->diag, "claims");
    if (rc)
        return rc;
    json_t *given = json_object_get(call->body, "claims");
    if (!json_is_object(given))
        return ag_fail(&call->diag, AG_EINVAL, "claims: expected an object");
    if (!auth)
        return ag_fail(&call->diag, AG_EINVAL,
                       "minting tokens needs service.api_key (the signing key)");
    for (size_t i = 0; i < AG_ARRAY_LEN(reserved_claims); i++)
        if (json_object_get(given, reserved_claims[i]))
            return ag_fail(&call->diag, AG_EINVAL,
                           "claims.%s: set by the server (the minter's identity and the time "
                           "of minting); leave it out",
                           reserved_claims[i]);
    json_t *exp = json_object_get(given, "exp");
    if (exp && !json_is_integer(exp))
        return ag_fail(&call->diag, AG_EINVAL, "claims.exp: expected seconds since the epoch");
    int64_t now = ag_now_unix();
    if (exp && json_integer_value(exp) <= now)
        return ag_fail(&call->diag, AG_EINVAL, "claims.exp: already in the past");

    /* What the token would carry, resolved exactly as verification will resolve it. */
    ag_principal_t *tp = NULL;
    ag_diag_t jd = {{0}};
    rc = ag_jwt_principal(given, ag_secstore_resolve_role, sec_of(call), &tp, &jd);
    if (rc == AG_ENOMEM)
        return rc;
    if (rc)
        return ag_fail(&call->diag, AG_EINVAL, "claims: %s", jd.msg);
    json_t *roles = json_object_get(given, "roles");
    size_t i;
    json_t *v;
    json_array_foreach(roles, i, v)
    {
        if (!ag_secstore_role_exists(sec_of(call), json_string_value(v))) {
            ag_principal_unref(tp);
            return ag_fail(&call->diag, AG_EINVAL, "claims.roles[%zu]: role '%s' does not exist", i,
                           json_string_value(v));
        }
    }
    rc = check_grant(call, ag_principal_perms(tp), "the token's permission", false);
    ag_principal_unref(tp);
    if (rc)
        return rc;

    char sub[AG_MAX_NAME_LEN + 1];
    json_t *minter = NULL;
    if ((rc = minter_claim(call, &minter, sub, sizeof(sub))) != 0)
        return rc;
    /* Expiry: the earliest of the request, the server maximum and the caller's own expiry. */
    int64_t limit = now + (int64_t)call->api->cfg->max_token_ttl_s;
    const char *limited_by = "service.max_token_ttl_sec";
    for (const ag_principal_t *q = call->principal; q; q = ag_principal_bound(q)) {
        int64_t e = ag_principal_expiry(q);
        if (e && e < limit) {
            limit = e;
            limited_by = "the caller's own expiry";
        }
    }
    int64_t want = exp ? (int64_t)json_integer_value(exp) : 0;
    bool shortened = !exp || want > limit;
    int64_t final_exp = shortened ? limit : want;

    json_t *claims = json_deep_copy(given);
    if (!claims || json_object_set_new(claims, "sub", json_string(sub)) ||
        json_object_set_new(claims, "iat", json_integer((json_int_t)now)) ||
        json_object_set_new(claims, "exp", json_integer((json_int_t)final_exp)) ||
        json_object_set_new(claims, AG_JWT_MINTER_CLAIM, minter)) {
        json_decref(claims);
        return AG_ENOMEM;
    }
    char *tok = NULL;
    if ((rc = ag_auth_mint(auth, claims, &tok)) != 0) {
        json_decref(claims);
        if (rc == AG_ETOOBIG)
            return ag_fail(&call->diag, AG_EINVAL,
                           "claims: the token would exceed %d bytes (a minted token embeds its "
                           "minter's claims)",
                           AG_JWT_MAX_LEN);
        return rc == AG_ECONFIG ? ag_fail(&call->diag, AG_EINVAL, "cannot mint: no signing key")
                                : rc;
    }
    /* The audit record carries the claims (never the token). */
    call->audit_detail = json_pack("{s:O}", "claims", claims);
    call->result =
        json_pack("{s:s,s:I,s:s,s:b,s:s?}", "token", tok, "exp", (json_int_t)final_exp, "sub", sub,
                  "exp_shortened", shortened, "exp_limited_by",
                  !exp ? "no exp requested: the limit applies" : (shortened ? limited_by : NULL));
    sodium_memzero(tok, strlen(tok));
    free(tok);
    json_decref(claims);
    return call->result ? 0 : AG_ENOMEM;
}

/* Literal paths before captures (the router takes the first match). */
const ag_route_t ag_routes_auth[] = {
    {AG_HTTP_GET, "/auth/me", "read:profile", AG_SCOPE_NONE, h_me, false, false},
    {AG_HTTP_POST, "/auth/check", "read:roles", AG_SCOPE_NONE, h_check, true, false},
    {AG_HTTP_POST, "/auth/token", "manage:roles", AG_SCOPE_NONE, h_token, true, false},
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
