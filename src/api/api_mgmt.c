/*
 * The management plane (docs/API.md "Management plane", docs/SECURITY.md "Keys, management keys
 * and invites"): database API keys, management keys, invites, account settings and the cluster
 * status. Every grant passes anti-escalation (the caller must hold each permission a key or an
 * invite hands out); every key stays bound to its creator as the creator is at each use; every
 * change names its object in the audit record (call->audit_detail), never a secret.
 */
#include <stdio.h>

#include <sodium.h>

#include "ag_clock.h"

#include "api/ag_access.h"
#include "api/ag_api.h"
#include "api/ag_guard.h"
#include "auth/ag_decide.h"
#include "auth/ag_jwt.h"
#include "auth/ag_keystore.h"
#include "auth/ag_perm.h"
#include "auth/ag_principal.h"
#include "auth/ag_secstore.h"
#include "cluster/ag_cluster.h"
#include "json/ag_json.h"

/* An invite lives at most a week unless the account says otherwise. */
#define DEFAULT_MAX_INVITE_TTL (7 * 86400)

static ag_keystore_t *ks_of(ag_call_t *call)
{
    return ag_guard_keystore(call->api->guard);
}

static ag_secstore_t *sec_of(ag_call_t *call)
{
    return ag_guard_secstore(call->api->guard);
}

static int stores_ready(ag_call_t *call)
{
    if (!ks_of(call) || !sec_of(call))
        return ag_fail(&call->diag, AG_EINTERNAL, "the security store is not available");
    return 0;
}

static const char *kind_word(int kind)
{
    return kind == AG_KEYKIND_MANAGEMENT ? "management key" : "API key";
}

/* ---- anti-escalation and creators ------------------------------------------------------------ */

static int creator_record(ag_call_t *call, json_t **out);

/* The caller as a creator record (ag_keystore.h), checked the way every use of the key will
 * check it, so that nothing is made that would be refused at once (a chain of keys deeper than
 * AG_KEYSTORE_MAX_DEPTH). Memory: *out is a new reference. */
static int creator_of(ag_call_t *call, json_t **out)
{
    int rc = creator_record(call, out);
    if (rc)
        return rc;
    ag_principal_t *now = NULL;
    rc = ag_keystore_creator_principal(ks_of(call), *out, &now);
    ag_principal_unref(now);
    if (rc == 0)
        return 0;
    json_decref(*out);
    *out = NULL;
    if (rc == AG_ENOMEM)
        return rc;
    return ag_fail(&call->diag, AG_EFORBIDDEN,
                   "Forbidden: a key made by this caller could not be used: the chain of keys "
                   "creating keys is too deep (at most %d)",
                   AG_KEYSTORE_MAX_DEPTH);
}

/* A JWT cannot create keys or invites: it has no identity that could be checked again at every
 * use. */
static int creator_record(ag_call_t *call, json_t **out)
{
    *out = NULL;
    const ag_principal_t *p = call->principal;
    int kind = ag_principal_kind(p);
    if (kind == AG_PRINCIPAL_ROOT || kind == AG_PRINCIPAL_ANONYMOUS) {
        *out = json_pack("{s:s}", "kind", "root");
    } else if (kind == AG_PRINCIPAL_USER) {
        char key_id[AG_KEY_ID_LEN + 1];
        if (ag_guard_key_id(call, key_id) != 0 &&
            ag_secstore_user_key_id(sec_of(call), ag_principal_id(p), key_id) != 0)
            return ag_fail(&call->diag, AG_EFORBIDDEN,
                           "Forbidden: the caller's key cannot be identified");
        *out =
            json_pack("{s:s,s:s,s:s}", "kind", "user", "id", ag_principal_id(p), "key_id", key_id);
    } else if (kind == AG_PRINCIPAL_API_KEY) {
        *out = json_pack("{s:s,s:s}", "kind", "api_key", "id", ag_principal_id(p));
    } else {
        return ag_fail(&call->diag, AG_EFORBIDDEN,
                       "Forbidden: a %s credential cannot create keys or invites",
                       ag_principal_kind_name(kind));
    }
    return *out ? 0 : AG_ENOMEM;
}

/* ---- lifetimes ------------------------------------------------------------------------------- */

static int64_t max_key_ttl(ag_call_t *call, int64_t *def)
{
    ag_account_limits_t lim;
    ag_keystore_account_limits(ks_of(call), &lim);
    int64_t max = lim.max_key_ttl_s ? lim.max_key_ttl_s : (int64_t)call->api->cfg->max_token_ttl_s;
    if (max <= 0)
        max = 86400;
    *def = lim.default_key_ttl_s && lim.default_key_ttl_s < max ? lim.default_key_ttl_s : max;
    return max;
}

/* expires_at: optional unix seconds in the future; capped by the maximum key lifetime (a longer
 * request is shortened and the answer says so); left out = the default lifetime. */
static int key_expiry(ag_call_t *call, const json_t *v, int64_t *out, bool *shortened)
{
    int64_t now = ag_now_unix(), def;
    int64_t max = max_key_ttl(call, &def);
    *shortened = false;
    if (!v || json_is_null(v)) {
        *out = now + def;
        return 0;
    }
    if (!json_is_integer(v))
        return ag_fail(&call->diag, AG_EINVAL, "expires_at: expected seconds since the epoch");
    int64_t want = (int64_t)json_integer_value(v);
    if (want <= now)
        return ag_fail(&call->diag, AG_EINVAL, "expires_at: already in the past");
    *shortened = want > now + max;
    *out = *shortened ? now + max : want;
    return 0;
}

/* A key never outlives the credentials it is bound to (it would be refused from then on). */
static void cap_by_caller(ag_call_t *call, int64_t *expires_at, bool *shortened)
{
    for (const ag_principal_t *q = call->principal; q; q = ag_principal_bound(q)) {
        int64_t e = ag_principal_expiry(q);
        if (e && e < *expires_at) {
            *expires_at = e;
            *shortened = true;
        }
    }
}

/* ---- keys ------------------------------------------------------------------------------------ */

/* The grant of a create request as stored: {"access"} | {"roles"} | {"permissions"}. */
static int grant_of(ag_call_t *call, int kind, json_t **out)
{
    *out = NULL;
    json_t *access = json_object_get(call->body, "access");
    json_t *roles = json_object_get(call->body, "roles");
    json_t *perms = json_object_get(call->body, "permissions");
    int given = !!access + !!roles + !!perms;
    if (given != 1)
        return ag_fail(&call->diag, AG_EINVAL,
                       kind == AG_KEYKIND_MANAGEMENT
                           ? "expected exactly one of permissions or roles"
                           : "expected exactly one of access or roles");
    if (access)
        *out = json_pack("{s:O}", "access", access);
    else if (roles)
        *out = json_pack("{s:O}", "roles", roles);
    else
        *out = json_pack("{s:O}", "permissions", perms);
    return *out ? 0 : AG_ENOMEM;
}

/* The principal a grant gives, checked: a management key names only management resources (and
 * cluster_data), and the caller must hold all of it. */
static int check_key_grant(ag_call_t *call, int kind, const json_t *grant)
{
    ag_principal_t *gp = NULL;
    const char *field = json_object_get(grant, "access")  ? "access"
                        : json_object_get(grant, "roles") ? "roles"
                                                          : "permissions";
    /* Built unfiltered, so nothing a management key could not hold passes unnoticed. */
    int rc =
        ag_keystore_grant_principal(ks_of(call), AG_KEYKIND_API, NULL, grant, &gp, &call->diag);
    if (rc)
        return rc;
    const ag_perm_list_t *pl = ag_principal_perms(gp);
    for (size_t i = 0; kind == AG_KEYKIND_MANAGEMENT && i < pl->n; i++) {
        const ag_perm_t *p = &pl->items[i];
        if (ag_resource_is_management(p->resource) || p->resource == AG_RES_CLUSTER_DATA)
            continue;
        char text[300];
        ag_api_perm_text(p, text, sizeof(text));
        ag_principal_unref(gp);
        return ag_fail(&call->diag, AG_EINVAL,
                       "%s: %.300s is not a management permission (a management key may hold "
                       "only roles, users, api_keys, management_keys, invites, backups, "
                       "backup_schedules, clusters, nodes, account, audit and, given explicitly, "
                       "cluster_data)",
                       field, text);
    }
    rc = ag_api_check_grant(call, pl, field, false);
    ag_principal_unref(gp);
    return rc;
}

static int key_create(ag_call_t *call, int kind)
{
    int rc = stores_ready(call);
    if (rc)
        return rc;
    if (kind == AG_KEYKIND_MANAGEMENT)
        rc = AG_JSON_ONLY(call->body, "", &call->diag, "name", "permissions", "roles", "expires_at",
                          "allowed_ips");
    else
        rc = AG_JSON_ONLY(call->body, "", &call->diag, "name", "access", "roles", "expires_at",
                          "allowed_ips");
    if (rc)
        return rc;
    json_t *jn = json_object_get(call->body, "name");
    if (!json_is_string(jn) || strlen(json_string_value(jn)) != json_string_length(jn))
        return ag_fail(&call->diag, AG_EINVAL, "name: expected a string");
    json_t *ips = json_object_get(call->body, "allowed_ips");
    if ((rc = ag_keystore_check_ips(ips, &call->diag)) != 0)
        return rc;
    int64_t expires_at = 0;
    bool shortened = false;
    if ((rc = key_expiry(call, json_object_get(call->body, "expires_at"), &expires_at,
                         &shortened)) != 0)
        return rc;
    cap_by_caller(call, &expires_at, &shortened);
    json_t *grant = NULL, *creator = NULL, *record = NULL;
    char *secret = NULL;
    if ((rc = grant_of(call, kind, &grant)) != 0 || (rc = check_key_grant(call, kind, grant)) ||
        (rc = creator_of(call, &creator)) != 0)
        goto out;
    rc = ag_keystore_key_create(ks_of(call), kind, json_string_value(jn), grant, expires_at, ips,
                                creator, &secret, &record, &call->diag);
    if (rc)
        goto out;
    call->audit_detail = json_pack("{s:s,s:O,s:O,s:O,s:O,s:O}", "object", kind_word(kind), "key_id",
                                   json_object_get(record, "id"), "name", jn, "grant", grant,
                                   "expires_at", json_object_get(record, "expires_at"),
                                   "allowed_ips", json_object_get(record, "allowed_ips"));
    json_object_set_new(record, "key", json_string(secret));
    json_object_set_new(record, "expires_at_shortened", json_boolean(shortened));
    call->result = record;
    record = NULL;
    call->http_status = 201;
out:
    json_decref(grant);
    json_decref(creator);
    json_decref(record);
    ag_keystore_secret_free(secret); /* wipes it; NULL-safe */
    return rc;
}

static int key_missing(ag_call_t *call, int kind)
{
    return ag_fail(&call->diag, AG_ENOTFOUND, "Not found: %s '%.64s' does not exist",
                   kind_word(kind), call->params[0]);
}

static int key_list(ag_call_t *call, int kind)
{
    int rc = stores_ready(call);
    if (rc)
        return rc;
    json_t *arr = ag_keystore_key_list(ks_of(call), kind);
    call->result = arr ? json_pack("{s:o}", "keys", arr) : NULL;
    return call->result ? 0 : AG_ENOMEM;
}

static int key_get(ag_call_t *call, int kind)
{
    int rc = stores_ready(call);
    if (rc)
        return rc;
    rc = ag_keystore_key_json(ks_of(call), kind, call->params[0], &call->result);
    return rc == AG_ENOTFOUND ? key_missing(call, kind) : rc;
}

static int key_delete(ag_call_t *call, int kind)
{
    int rc = stores_ready(call);
    if (rc)
        return rc;
    rc = ag_keystore_key_delete(ks_of(call), kind, call->params[0], &call->diag);
    if (rc == AG_ENOTFOUND)
        return key_missing(call, kind);
    if (rc)
        return rc;
    call->audit_detail = json_pack("{s:s,s:s,s:s}", "object", kind_word(kind), "key_id",
                                   call->params[0], "change", "revoked");
    call->result = json_pack("{s:s,s:b}", "id", call->params[0], "deleted", 1);
    return call->result ? 0 : AG_ENOMEM;
}

/* New secret; the rotating caller must hold everything the key holds, and the key is bound to
 * it from now on. */
static int key_rotate(ag_call_t *call, int kind)
{
    int rc = stores_ready(call);
    if (rc)
        return rc;
    json_t *grant = NULL, *creator = NULL, *record = NULL;
    char *secret = NULL;
    rc = ag_keystore_key_grant(ks_of(call), kind, call->params[0], &grant);
    if (rc == AG_ENOTFOUND)
        return key_missing(call, kind);
    if (rc || (rc = check_key_grant(call, kind, grant)) != 0 ||
        (rc = creator_of(call, &creator)) != 0)
        goto out;
    rc = ag_keystore_key_rotate(ks_of(call), kind, call->params[0], creator, &secret, &record,
                                &call->diag);
    if (rc == AG_ENOTFOUND) {
        rc = key_missing(call, kind);
        goto out;
    }
    if (rc)
        goto out;
    call->audit_detail = json_pack("{s:s,s:s,s:s,s:O}", "object", kind_word(kind), "key_id",
                                   call->params[0], "change", "rotated", "bound_to", creator);
    json_object_set_new(record, "key", json_string(secret));
    call->result = record;
    record = NULL;
out:
    json_decref(grant);
    json_decref(creator);
    json_decref(record);
    ag_keystore_secret_free(secret); /* wipes it; NULL-safe */
    return rc;
}

/* Both key kinds share their handlers; the route says which kind (the action's resource). */
static int kind_of(const ag_call_t *call)
{
    return strstr(call->route->action, "management_keys") ? AG_KEYKIND_MANAGEMENT : AG_KEYKIND_API;
}

static int h_keys_list(ag_call_t *call)
{
    return key_list(call, kind_of(call));
}
static int h_key_create(ag_call_t *call)
{
    return key_create(call, kind_of(call));
}
static int h_key_get(ag_call_t *call)
{
    return key_get(call, kind_of(call));
}
static int h_key_delete(ag_call_t *call)
{
    return key_delete(call, kind_of(call));
}
static int h_key_rotate(ag_call_t *call)
{
    return key_rotate(call, kind_of(call));
}

/* ---- invites --------------------------------------------------------------------------------- */

static int h_invites_list(ag_call_t *call)
{
    int rc = stores_ready(call);
    if (rc)
        return rc;
    json_t *arr = ag_keystore_invite_list(ks_of(call), ag_now_unix());
    call->result = arr ? json_pack("{s:o}", "invites", arr) : NULL;
    return call->result ? 0 : AG_ENOMEM;
}

static int h_invite_create(ag_call_t *call)
{
    int rc = stores_ready(call);
    if (rc || (rc = AG_JSON_ONLY(call->body, "", &call->diag, "user_id", "roles", "expires_in")))
        return rc;
    json_t *ju = json_object_get(call->body, "user_id");
    const char *user_id = json_string_value(ju);
    if (!user_id || !ag_role_name_valid(user_id, json_string_length(ju)))
        return ag_fail(&call->diag, AG_EINVAL,
                       "user_id: expected 1 to 64 characters of [A-Za-z0-9_.@-]");
    /* Accepting an invite creates a user: inviting needs what creating the user would. Checked
     * before the id is looked up, so the answer tells nothing about who exists. */
    if ((rc = ag_guard_authorize_name(call, "create:users", NULL, user_id, &call->diag)) != 0)
        return rc;
    json_t *existing = NULL;
    if (ag_secstore_user_json(sec_of(call), user_id, &existing) == 0) {
        json_decref(existing);
        return ag_fail(&call->diag, AG_EEXIST, "user_id: user '%s' already exists", user_id);
    }
    json_t *roles = json_object_get(call->body, "roles");
    ag_perm_list_t perms = {0};
    if ((rc = ag_api_roles_perms(call, roles, "roles", &perms, &call->diag)) == 0)
        rc = ag_api_check_grant(call, &perms, "roles", false);
    ag_perm_list_release(&perms);
    if (rc)
        return rc;
    ag_account_limits_t lim;
    ag_keystore_account_limits(ks_of(call), &lim);
    int64_t cap = lim.max_invite_ttl_s ? lim.max_invite_ttl_s : DEFAULT_MAX_INVITE_TTL;
    json_t *je = json_object_get(call->body, "expires_in");
    if (je && (!json_is_integer(je) || json_integer_value(je) < 1))
        return ag_fail(&call->diag, AG_EINVAL,
                       "expires_in: expected a whole number of seconds >= 1");
    int64_t ttl = je ? (int64_t)json_integer_value(je) : cap;
    bool shortened = ttl > cap;
    if (shortened)
        ttl = cap;
    json_t *inviter = NULL, *record = NULL;
    char *code = NULL;
    if ((rc = creator_of(call, &inviter)) != 0)
        return rc;
    rc = ag_keystore_invite_create(ks_of(call), user_id, roles, ag_now_unix() + ttl, inviter, &code,
                                   &record, &call->diag);
    json_decref(inviter);
    if (rc)
        return rc;
    call->audit_detail = json_pack("{s:s,s:O,s:s,s:O,s:O}", "object", "invite", "invite_id",
                                   json_object_get(record, "id"), "user_id", user_id, "roles",
                                   roles, "expires_at", json_object_get(record, "expires_at"));
    call->result = json_pack("{s:s,s:o,s:b}", "code", code, "invite", record,
                             "expires_in_shortened", shortened);
    sodium_memzero(code, strlen(code));
    ag_keystore_secret_free(code);
    call->http_status = 201;
    return call->result ? 0 : AG_ENOMEM;
}

static int h_invite_delete(ag_call_t *call)
{
    int rc = stores_ready(call);
    if (rc)
        return rc;
    rc = ag_keystore_invite_delete(ks_of(call), call->params[0], &call->diag);
    if (rc == AG_ENOTFOUND)
        return ag_fail(&call->diag, rc, "Not found: invite '%.64s' does not exist",
                       call->params[0]);
    if (rc)
        return rc;
    call->audit_detail = json_pack("{s:s,s:s,s:s}", "object", "invite", "invite_id",
                                   call->params[0], "change", "revoked");
    call->result = json_pack("{s:s,s:b}", "id", call->params[0], "deleted", 1);
    return call->result ? 0 : AG_ENOMEM;
}

/*
 * POST /auth/invites/accept {code} — a public route. Every refusal (unknown, expired, revoked,
 * used, an inviter who no longer holds what the invite gives) is the same 401 and counts as a
 * failed authentication from the caller's address.
 */
static int h_invite_accept(ag_call_t *call)
{
    int rc = stores_ready(call);
    if (rc || (rc = AG_JSON_ONLY(call->body, "", &call->diag, "code")) != 0)
        return rc;
    json_t *jc = json_object_get(call->body, "code");
    if (!json_is_string(jc))
        return ag_fail(&call->diag, AG_EINVAL, "code: expected the invite code");
    json_t *inv = NULL;
    rc = ag_keystore_invite_accept(ks_of(call), json_string_value(jc), json_string_length(jc),
                                   ag_now_unix(), &inv);
    if (rc == AG_EUNAUTH)
        return ag_guard_public_auth_failure(call, "invite code refused", &call->diag);
    if (rc)
        return rc;
    char invite_id[AG_MKEY_ID_LEN + 1];
    snprintf(invite_id, sizeof(invite_id), "%.12s", json_string_value(jc) + 3);
    const char *user_id = json_string_value(json_object_get(inv, "user_id"));
    json_t *roles = json_object_get(inv, "roles");
    /* Anti-escalation again, against the inviter as it is now. */
    ag_principal_t *inviter = NULL;
    ag_perm_list_t perms = {0};
    ag_diag_t d = {{0}};
    rc = ag_keystore_creator_principal(ks_of(call), json_object_get(inv, "inviter"), &inviter);
    if (rc == 0)
        rc = ag_api_roles_perms(call, roles, "roles", &perms, &d);
    if (rc == 0 && inviter && !ag_principal_holds(inviter, &perms, NULL))
        rc = AG_EFORBIDDEN;
    ag_perm_list_release(&perms);
    ag_principal_unref(inviter);
    char *key = NULL;
    json_t *user = NULL;
    if (rc == AG_ENOMEM)
        goto out;
    if (rc) {
        rc = ag_guard_public_auth_failure(call, "invite refused: its inviter no longer holds it",
                                          &call->diag);
        goto out;
    }
    /* From here the code is spent, whatever happens: the audit log says so either way. */
    call->audit_detail =
        json_pack("{s:s,s:s,s:s,s:O,s:O}", "object", "invite", "invite_id", invite_id, "change",
                  "accepted", "user_id", json_object_get(inv, "user_id"), "roles", roles);
    rc = ag_secstore_user_create(sec_of(call), user_id, roles, &key, &call->diag);
    if (rc == 0)
        rc = ag_secstore_user_json(sec_of(call), user_id, &user);
    if (rc) {
        json_object_set_new(call->audit_detail, "change", json_string("spent, user not created"));
        goto out;
    }
    call->result = json_pack("{s:O,s:s}", "user", user, "api_key", key);
    call->http_status = 201;
    rc = call->result ? 0 : AG_ENOMEM;
out:
    json_decref(user);
    json_decref(inv);
    ag_secstore_key_free(key);
    return rc;
}

/* ---- account and cluster --------------------------------------------------------------------- */

static int account_answer(ag_call_t *call)
{
    int64_t def;
    int64_t max = max_key_ttl(call, &def);
    ag_account_limits_t lim;
    ag_keystore_account_limits(ks_of(call), &lim);
    call->result = json_pack(
        "{s:o,s:{s:I,s:I,s:I}}", "settings", ag_keystore_account_json(ks_of(call)), "effective",
        "max_key_ttl_sec", (json_int_t)max, "default_key_ttl_sec", (json_int_t)def,
        "max_invite_ttl_sec",
        (json_int_t)(lim.max_invite_ttl_s ? lim.max_invite_ttl_s : DEFAULT_MAX_INVITE_TTL));
    return call->result ? 0 : AG_ENOMEM;
}

static int h_account_get(ag_call_t *call)
{
    int rc = stores_ready(call);
    return rc ? rc : account_answer(call);
}

static int h_account_patch(ag_call_t *call)
{
    int rc = stores_ready(call);
    if (rc || (rc = ag_keystore_account_patch(ks_of(call), call->body, &call->diag)) != 0)
        return rc;
    call->audit_detail = json_pack("{s:s,s:O}", "object", "account", "changed", call->body);
    return account_answer(call);
}

/* Qdrant's answer without distributed mode; in cluster mode (docs/CLUSTER.md) the nodes
 * registered in etcd as Qdrant's peers, and this node's view of the control plane. */
static int h_cluster(ag_call_t *call)
{
    ag_cluster_t *cl = ag_guard_cluster(call->api->guard);
    if (!cl) {
        call->result = json_pack("{s:s}", "status", "disabled");
        return call->result ? 0 : AG_ENOMEM;
    }
    json_t *st = ag_cluster_status_json(cl);
    json_t *peers = json_object();
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(st, "nodes"), i, n)
    {
        const char *id = json_string_value(json_object_get(n, "node_id"));
        if (id && peers)
            json_object_set_new(peers, id,
                                json_pack("{s:O}", "uri", json_object_get(n, "advertise_url")));
    }
    if (!st || !peers) {
        json_decref(st);
        json_decref(peers);
        return AG_ENOMEM;
    }
    /* json_pack takes both references, also when it fails. */
    call->result = json_pack("{s:s,s:s,s:o,s:o}", "status", "enabled", "peer_id",
                             ag_cluster_node_id(cl), "peers", peers, "control_plane", st);
    return call->result ? 0 : AG_ENOMEM;
}

static int h_cluster_refused(ag_call_t *call)
{
    return ag_fail(&call->diag, AG_EMETHOD,
                   "Cluster is not enabled: this node runs in standalone mode, so there is no "
                   "cluster to change");
}

/* Literal paths before captures (the router takes the first match). */
const ag_route_t ag_routes_mgmt[] = {
    {AG_HTTP_GET, "/auth/api-keys", "read:api_keys", AG_SCOPE_NONE, h_keys_list, false, false},
    {AG_HTTP_POST, "/auth/api-keys", "create:api_keys", AG_SCOPE_NONE, h_key_create, true, false},
    {AG_HTTP_GET, "/auth/api-keys/{id}", "read:api_keys", AG_SCOPE_NONE, h_key_get, false, false},
    {AG_HTTP_DELETE, "/auth/api-keys/{id}", "delete:api_keys", AG_SCOPE_NONE, h_key_delete, false,
     false},
    {AG_HTTP_POST, "/auth/api-keys/{id}/rotate", "update:api_keys", AG_SCOPE_NONE, h_key_rotate,
     false, false},
    {AG_HTTP_GET, "/auth/management-keys", "read:management_keys", AG_SCOPE_NONE, h_keys_list,
     false, false},
    {AG_HTTP_POST, "/auth/management-keys", "create:management_keys", AG_SCOPE_NONE, h_key_create,
     true, false},
    {AG_HTTP_GET, "/auth/management-keys/{id}", "read:management_keys", AG_SCOPE_NONE, h_key_get,
     false, false},
    {AG_HTTP_DELETE, "/auth/management-keys/{id}", "delete:management_keys", AG_SCOPE_NONE,
     h_key_delete, false, false},
    {AG_HTTP_POST, "/auth/management-keys/{id}/rotate", "update:management_keys", AG_SCOPE_NONE,
     h_key_rotate, false, false},
    {AG_HTTP_GET, "/auth/invites", "read:invites", AG_SCOPE_NONE, h_invites_list, false, false},
    {AG_HTTP_POST, "/auth/invites", "create:invites", AG_SCOPE_NONE, h_invite_create, true, false},
    {AG_HTTP_POST, "/auth/invites/accept", "read:public", AG_SCOPE_NONE, h_invite_accept, true,
     true},
    {AG_HTTP_DELETE, "/auth/invites/{id}", "delete:invites", AG_SCOPE_NONE, h_invite_delete, false,
     false},
    {AG_HTTP_GET, "/account", "read:account", AG_SCOPE_NONE, h_account_get, false, false},
    {AG_HTTP_PATCH, "/account", "update:account", AG_SCOPE_NONE, h_account_patch, true, false},
    {AG_HTTP_GET, "/cluster", "read:clusters", AG_SCOPE_NONE, h_cluster, false, false},
    {AG_HTTP_POST, "/cluster/recover", "update:clusters", AG_SCOPE_NONE, h_cluster_refused, false,
     false},
    {AG_HTTP_DELETE, "/cluster/peer/{peer_id}", "delete:clusters", AG_SCOPE_NONE, h_cluster_refused,
     false, false},
};
const size_t ag_routes_mgmt_len = AG_ARRAY_LEN(ag_routes_mgmt);
