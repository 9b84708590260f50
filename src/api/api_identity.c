/*
 * Who am I and what may I do (docs/API.md, docs/PERMISSIONS.md): /auth/me describes the caller,
 * /auth/check evaluates a permission for the caller, a user or a set of roles, /auth/token mints
 * a JWT bounded by the caller (the anti-escalation rule of api_auth.c applies to what it grants).
 */
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
    if (!ag_guard_secstore(call->api->guard))
        return ag_api_store_missing(call);
    if (user) {
        const char *id = json_string_value(user);
        if ((rc = ag_api_check_user_id(call, id)) != 0)
            return rc;
        /* Whose permissions may be inspected follows read:users. */
        if ((rc = ag_guard_authorize_name(call, "read:users", NULL, id, &call->diag)) != 0)
            return rc;
        rc = ag_secstore_user_principal(ag_guard_secstore(call->api->guard), id, out, active);
        if (rc == AG_ENOTFOUND)
            return ag_fail(&call->diag, rc, "principal.user: user '%s' does not exist", id);
        return rc;
    }
    ag_perm_list_t perms = {0};
    ag_principal_t *p = NULL;
    if ((rc = ag_api_roles_perms(call, roles, "principal.roles", &perms, &call->diag)) == 0 &&
        (rc = ag_principal_new(AG_PRINCIPAL_TOKEN, NULL, &p)) == 0)
        rc = ag_principal_add_perms(p, &perms);
    size_t i;
    json_t *v;
    json_array_foreach(roles, i, v)
    {
        if (rc)
            break;
        rc = ag_principal_add_role(p, json_string_value(v));
    }
    ag_perm_list_release(&perms);
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
    ag_tenancy_t *tenancy = NULL;
    const json_t *tenants = NULL;
    bool data = ag_resource_is_data(decl.resource);
    if (a.collection && (data || decl.resource == AG_RES_TENANTS) &&
        ag_store_tenancy(call->api->store, a.collection, &tenancy) == 0) {
        a.tenant_key = json_string_value(json_object_get(ag_tenancy_json(tenancy), "key"));
        tenants = json_object_get(ag_tenancy_json(tenancy), "tenants");
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
    ag_tenancy_release(tenancy);
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
            ag_secstore_user_key_id(ag_guard_secstore(call->api->guard), ag_principal_id(p),
                                    key_id) != 0)
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
    rc = ag_jwt_principal(given, ag_secstore_resolve_role, ag_guard_secstore(call->api->guard), &tp,
                          &jd);
    if (rc == AG_ENOMEM)
        return rc;
    if (rc)
        return ag_fail(&call->diag, AG_EINVAL, "claims: %s", jd.msg);
    json_t *roles = json_object_get(given, "roles");
    size_t i;
    json_t *v;
    json_array_foreach(roles, i, v)
    {
        if (!ag_secstore_role_exists(ag_guard_secstore(call->api->guard), json_string_value(v))) {
            ag_principal_unref(tp);
            return ag_fail(&call->diag, AG_EINVAL, "claims.roles[%zu]: role '%s' does not exist", i,
                           json_string_value(v));
        }
    }
    rc = ag_api_check_grant(call, ag_principal_perms(tp), "the token's permission", false);
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

/* Literal paths: appended before ag_routes_auth (the router takes the first match). */
const ag_route_t ag_routes_identity[] = {
    {AG_HTTP_GET, "/auth/me", "read:profile", AG_SCOPE_NONE, h_me, false, false},
    {AG_HTTP_POST, "/auth/check", "read:roles", AG_SCOPE_NONE, h_check, true, false},
    {AG_HTTP_POST, "/auth/token", "manage:roles", AG_SCOPE_NONE, h_token, true, false},
};
const size_t ag_routes_identity_len = AG_ARRAY_LEN(ag_routes_identity);
