#include "api/ag_guard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "ag_clock.h"
#include "ag_log.h"
#include "ag_metrics.h"
#include "auth/ag_audit.h"
#include "auth/ag_auth.h"
#include "auth/ag_decide.h"
#include "auth/ag_keyfmt.h"
#include "auth/ag_keystore.h"
#include "auth/ag_perm.h"
#include "auth/ag_root_key.h"
#include "auth/ag_secstore.h"
#include "auth/ag_throttle.h"
#include "cluster/ag_cluster.h"
#include "store/ag_payload_index.h"

struct ag_guard {
    bool insecure;
    ag_auth_t *auth;
    ag_throttle_t *throttle;
    ag_store_t *store;
    ag_secstore_t *sec;          /* roles, database users and their keys */
    ag_keystore_t *keys;         /* API keys, management keys, invites, account settings */
    ag_audit_t *audit;           /* borrowed (ag_guard_set_audit); NULL = not recorded */
    _Atomic int64_t next_report; /* when aggregated throttle records may next fall due */
    ag_action_decl_t decls[AG_MAX_ROUTES];
    ag_root_key_t root;    /* the generated root key's salted hash, when there is one */
    ag_cluster_t *cluster; /* borrowed; NULL = a single node */
};

static int lookup_hook(void *ctx, const char *credential, size_t len, int64_t now,
                       ag_principal_t **out)
{
    ag_guard_t *g = ctx;
    if (!ag_root_key_matches(&g->root, credential, len)) {
        /* API and management keys (ids 'k…'/'m…') first: AG_ENOTFOUND for anything else. */
        int krc = g->keys ? ag_keystore_lookup(g->keys, credential, len, now, out) : AG_ENOTFOUND;
        if (krc != AG_ENOTFOUND)
            return krc;
        return g->sec ? ag_secstore_lookup(g->sec, credential, len, now, out) : AG_ENOTFOUND;
    }
    int rc = ag_principal_new(AG_PRINCIPAL_ROOT, "root", out);
    if (rc == 0)
        rc = ag_principal_add_perms(*out, ag_role_root());
    if (rc && *out) {
        ag_principal_unref(*out);
        *out = NULL;
    }
    return rc;
}

/* A key's principal came from the authenticator's cache: an API or management key's last_used
 * still moves. */
static void used_hook(void *ctx, const ag_principal_t *p, int64_t now)
{
    ag_guard_t *g = ctx;
    if (g->keys && ag_principal_kind(p) == AG_PRINCIPAL_API_KEY)
        ag_keystore_key_used(g->keys, ag_principal_id(p), now);
}

/* value_exists claim: does any point of the collection satisfy the filter right now? */
static int value_exists_hook(void *ctx, const ag_value_exists_t *ve)
{
    ag_guard_t *g = ctx;
    ag_collection_t *c;
    if (ag_store_get(g->store, ve->collection, &c, NULL) != 0)
        return AG_ENOTFOUND;
    /* With a payload index on one of the keys, only its candidates need checking. */
    json_t *must = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(ve->matches, i, m)
    {
        json_array_append_new(must, json_pack("{s:O,s:{s:O}}", "key", json_object_get(m, "key"),
                                              "match", "value", json_object_get(m, "value")));
    }
    json_t *fj = json_pack("{s:o}", "must", must);
    bool found = ag_coll_any_match(c, ve->filter, fj);
    json_decref(fj);
    ag_coll_unref(c);
    return found ? 0 : AG_ENOTFOUND;
}

/* Security-state changes (users, roles, API and management keys): cached principals were built
 * from the old state (docs/SECURITY.md "Resolving a credential fast"). */
static void security_changed(void *ctx)
{
    ag_guard_t *g = ctx;
    if (g->auth)
        ag_auth_invalidate(g->auth);
}

static void report_throttled(void *ctx, const char *addr, uint64_t count);

static int open_security(ag_guard_t *g, const char *storage, ag_diag_t *diag)
{
    char dir[4096];
    int n = snprintf(dir, sizeof(dir), "%s/security", storage ? storage : ".");
    if (n < 0 || (size_t)n >= sizeof(dir))
        return ag_fail(diag, AG_ECONFIG, "storage path is too long");
    int rc = ag_secstore_open(dir, &g->sec, diag);
    if (rc)
        return rc;
    ag_secstore_set_on_change(g->sec, security_changed, g);
    n = snprintf(dir, sizeof(dir), "%s/security/mgmt", storage ? storage : ".");
    if (n < 0 || (size_t)n >= sizeof(dir))
        return ag_fail(diag, AG_ECONFIG, "storage path is too long");
    if ((rc = ag_keystore_open(dir, &g->keys, diag)) != 0)
        return rc;
    ag_keystore_hooks_t kh = {ag_secstore_resolve_role, g->sec, ag_secstore_minter, g->sec};
    ag_keystore_set_hooks(g->keys, &kh);
    ag_keystore_set_on_change(g->keys, security_changed, g);
    return 0;
}

int ag_guard_new(const ag_guard_config_t *cfg, ag_store_t *store, ag_guard_t **out, ag_diag_t *diag)
{
    ag_guard_t *g = calloc(1, sizeof(*g));
    if (!g)
        return AG_ENOMEM;
    g->insecure = cfg->insecure;
    g->store = store;
    g->cluster = cfg->cluster;
    int rc = open_security(g, cfg->storage_path, diag);
    if (rc)
        goto fail;
    if (!g->insecure) {
        ag_auth_config_t ac;
        ag_auth_config_init(&ac);
        ac.api_key = cfg->api_key;
        ac.alt_api_key = cfg->alt_api_key;
        ac.read_only_api_key = cfg->read_only_api_key;
        ac.jwt_rbac = cfg->jwt_rbac;
        ac.jwt_leeway_s = cfg->jwt_leeway_s;
        if ((rc = ag_auth_new(&ac, &g->auth, diag)) != 0)
            goto fail;
        if (!(cfg->api_key && *cfg->api_key) &&
            (rc = ag_root_key_setup(cfg->storage_path, &g->root, diag)))
            goto fail;
        /* Node-to-node calls are signed with a secret every node derives from the shared root
         * key (docs/CLUSTER.md "Node-to-node calls"). */
        if (g->cluster) {
            if (cfg->api_key && *cfg->api_key)
                rc = ag_cluster_set_secret(g->cluster, cfg->api_key, strlen(cfg->api_key));
            else
                rc = ag_cluster_set_secret(g->cluster, g->root.hash, sizeof(g->root.hash));
            if (rc) {
                rc = ag_fail(diag, rc, "cluster: cannot set up node-to-node signing (%s)",
                             ag_strerror(rc));
                goto fail;
            }
        }
        ag_auth_hooks_t hooks = {0};
        hooks.lookup = lookup_hook;
        hooks.lookup_ctx = g;
        hooks.used = used_hook;
        hooks.used_ctx = g;
        hooks.value_exists = value_exists_hook;
        hooks.value_exists_ctx = g;
        hooks.resolve_role = ag_secstore_resolve_role;
        hooks.resolve_ctx = g->sec;
        hooks.minter_user = ag_secstore_minter;
        hooks.minter_ctx = g->sec;
        ag_auth_set_hooks(g->auth, &hooks);
        ag_throttle_config_t tc = {cfg->auth_max_failures, cfg->auth_failure_window_s,
                                   cfg->auth_lockout_s, 0};
        if ((rc = ag_throttle_new(&tc, &g->throttle)) != 0)
            goto fail;
        ag_throttle_set_evict_report(g->throttle, report_throttled, g);
        /* Which credentials this server accepts, never their values. */
        bool has = cfg->api_key && *cfg->api_key;
        ag_log(AG_LOG_INFO,
               "authentication: root key %s%s; read-only key %s; JWTs (HS256) %s; database users "
               "and roles from %s/security; failed authentications lock an address after %u in "
               "%u s",
               has ? "from service.api_key" : "generated (only its hash is kept)",
               cfg->alt_api_key && *cfg->alt_api_key ? " (+ service.alt_api_key)" : "",
               cfg->read_only_api_key && *cfg->read_only_api_key ? "on" : "off",
               cfg->jwt_rbac ? "on" : "off (service.jwt_rbac)",
               cfg->storage_path ? cfg->storage_path : ".", tc.max_failures ? tc.max_failures : 10,
               tc.window_s ? tc.window_s : 60);
    }
    *out = g;
    return 0;
fail:
    ag_guard_free(g);
    return rc;
}

void ag_guard_free(ag_guard_t *g)
{
    if (!g)
        return;
    if (g->throttle)
        (void)ag_throttle_drain(g->throttle, ag_now_unix(), true, report_throttled, g);
    ag_auth_free(g->auth);
    ag_keystore_close(g->keys);
    ag_secstore_close(g->sec);
    ag_throttle_free(g->throttle);
    ag_root_key_wipe(&g->root);
    free(g);
}

int ag_guard_check_route(ag_guard_t *g, const ag_route_t *r, size_t i, ag_diag_t *diag)
{
    if (i >= AG_MAX_ROUTES)
        return ag_fail(diag, AG_ECONFIG, "too many routes");
    if (!r->action)
        return ag_fail(diag, AG_ECONFIG, "route %s declares no action", r->pattern);
    int rc = ag_action_decl_parse(r->action, r->pattern, &g->decls[i], diag);
    if (rc)
        return rc;
    bool is_public = (g->decls[i].flags & AG_ACTF_PUBLIC) != 0;
    if (is_public != r->public_route)
        return ag_fail(diag, AG_ECONFIG, "route %s: only public routes use read:public",
                       r->pattern);
    if (r->list_route)
        g->decls[i].flags |= AG_ACTF_LIST;
    return 0;
}

/* ---- admission ----------------------------------------------------------------------------- */

static void label(ag_call_t *call, const ag_principal_t *p)
{
    const char *id = ag_principal_id(p);
    const char *sub = ag_principal_sub(p);
    snprintf(call->req->principal_label, sizeof(call->req->principal_label), "%s:%.40s%s%.32s",
             ag_principal_kind_name(ag_principal_kind(p)), id ? id : "-", sub ? "/sub=" : "",
             sub ? sub : "");
}

/* The name a request used for a collection, for messages: an alias is not resolved in a denial,
 * so a 403 never tells what an alias points to. */
static const char *shown_name(const ag_call_t *call, const char *collection)
{
    if (call->coll && collection && call->route->scope == AG_SCOPE_COLLECTION &&
        strcmp(collection, ag_coll_name(call->coll)) == 0)
        return call->params[0];
    return collection;
}

static int decide(ag_call_t *call, const ag_action_decl_t *decl, const char *collection,
                  ag_filter_t **restriction, bool quiet, ag_diag_t *diag)
{
    ag_request_action_t a;
    ag_request_action_init(&a, decl);
    a.collection = collection;
    if (call->route->scope == AG_SCOPE_ROLE && call->nparams > 0)
        a.role = call->params[0];
    if (call->route->scope == AG_SCOPE_USER && call->nparams > 0)
        a.user = call->params[0];
    /* Multi-tenant collections: the tenant key turns tenant scopes into row restrictions. */
    ag_tenancy_t *tenancy = NULL;
    const json_t *tenants = NULL;
    bool data = ag_resource_is_data(decl->resource);
    if (collection && (data || decl->resource == AG_RES_TENANTS) &&
        ag_store_tenancy(call->api->store, collection, &tenancy) == 0) {
        a.tenant_key = json_string_value(json_object_get(ag_tenancy_json(tenancy), "key"));
        tenants = json_object_get(ag_tenancy_json(tenancy), "tenants");
    }
    if (call->tenant && (data || decl->resource == AG_RES_TENANTS))
        a.tenant = call->tenant;
    ag_decision_t d;
    int rc = ag_decide_request(call->principal, &a, data, tenants, &d);
    ag_tenancy_release(tenancy);
    if (rc) {
        ag_log(AG_LOG_WARN, "authorization error (%s) for %s %s: denied", ag_strerror(rc),
               call->req->method_name, call->route->pattern);
        ag_decision_release(&d);
        return ag_fail(diag, AG_EFORBIDDEN, "Forbidden: the permission check failed");
    }
    if (!d.allowed) {
        const char *shown = shown_name(call, collection);
        if (shown && collection && strcmp(shown, collection) != 0 && d.missing == d.buf) {
            a.collection = shown;
            ag_action_describe(&a, d.buf, sizeof(d.buf));
        }
        rc = ag_fail(diag, AG_EFORBIDDEN, "Forbidden: missing permission %s",
                     d.missing ? d.missing : "(unknown)");
        if (!quiet)
            ag_log(AG_LOG_INFO, "denied %s %s for %s: missing %s", call->req->method_name,
                   call->route->pattern, call->req->principal_label,
                   d.missing ? d.missing : "(unknown)");
        ag_decision_release(&d);
        return rc;
    }
    if (restriction) {
        *restriction = d.restriction;
        d.restriction = NULL;
    }
    ag_decision_release(&d);
    return 0;
}

/* Could deciding create and update apart give more than deciding the write whole? Only when some
 * permission (of the caller or of what bounds it) grants one of the two verbs without the other;
 * otherwise the split would repeat the same decision twice on every upsert. */
static bool verbs_split(const ag_principal_t *p)
{
    for (const ag_principal_t *q = p; q; q = ag_principal_bound(q)) {
        const ag_perm_list_t *perms = ag_principal_perms(q);
        for (size_t i = 0; i < perms->n; i++) {
            unsigned v = perms->items[i].verbs & AG_VERB_WRITE;
            if (v == AG_VERB_CREATE || v == AG_VERB_UPDATE)
                return true;
        }
    }
    return false;
}

/*
 * An upsert that the caller may not do as a whole: create and update decided on their own, so a
 * create-only role can add points and an update-only one change existing points (docs/
 * PERMISSIONS.md "Verbs"). 0 when at least one is allowed (*out filled; its rows owned by it).
 */
static int split_write(ag_call_t *call, const ag_action_decl_t *decl, const char *collection,
                       ag_upsert_grant_t *out)
{
    ag_upsert_grant_release(out);
    ag_diag_t ignored;
    ag_action_decl_t one = *decl;
    one.verbs = AG_VERB_CREATE;
    out->create = decide(call, &one, collection, &out->create_rows, true, &ignored) == 0;
    one.verbs = AG_VERB_UPDATE;
    out->update = decide(call, &one, collection, &out->update_rows, true, &ignored) == 0;
    out->split = out->create || out->update;
    if (!out->split)
        ag_upsert_grant_release(out);
    return out->split ? 0 : AG_EFORBIDDEN;
}

int ag_guard_authorize_upsert(ag_call_t *call, const char *collection, ag_filter_t **restriction,
                              ag_upsert_grant_t *out, ag_diag_t *diag)
{
    *restriction = NULL;
    ag_upsert_grant_release(out);
    ag_action_decl_t decl;
    if (!call->principal ||
        ag_action_decl_parse("write:points", call->route->pattern, &decl, diag) != 0)
        return ag_fail(diag, AG_EFORBIDDEN, "Forbidden: the permission check failed");
    int rc = decide(call, &decl, collection, restriction, true, diag);
    if ((rc == 0 && !*restriction) || !verbs_split(call->principal))
        return rc; /* granted whole (within *restriction), or denied */
    if (split_write(call, &decl, collection, out) == 0) {
        ag_filter_free(*restriction);
        *restriction = NULL;
        return 0;
    }
    return rc; /* granted whole within *restriction, or denied */
}

void ag_upsert_grant_release(ag_upsert_grant_t *g)
{
    ag_filter_free(g->create_rows);
    ag_filter_free(g->update_rows);
    memset(g, 0, sizeof(*g));
}

/* ---- audit (docs/SECURITY.md) -------------------------------------------------------------------
 */

/* The path parameters as {"collection": c, "tenant": t, "role": r, ...}, named after the
 * pattern's {placeholders}; the scope parameter under its resource name. */
static json_t *audit_resource(const ag_call_t *call)
{
    json_t *res = json_object();
    const char *p = call->route->pattern;
    for (int i = 0; res && i < call->nparams && p && (p = strchr(p, '{')) != NULL; i++) {
        const char *end = strchr(p, '}');
        if (!end)
            break;
        char name[32];
        snprintf(name, sizeof(name), "%.*s", (int)AG_MIN((size_t)(end - p - 1), 31), p + 1);
        if (i == 0 && call->route->scope == AG_SCOPE_COLLECTION)
            snprintf(name, sizeof(name), "collection");
        else if (i == 0 && call->route->scope == AG_SCOPE_ROLE)
            snprintf(name, sizeof(name), "role");
        else if (i == 0 && call->route->scope == AG_SCOPE_USER)
            snprintf(name, sizeof(name), "user");
        json_object_set_new(res, name, json_string(call->params[i]));
        p = end + 1;
    }
    /* A tenant named in the body (POST /collections/{c}/tenants) once the handler checked it. */
    if (res && call->tenant && !json_object_get(res, "tenant"))
        json_object_set_new(res, "tenant", json_string(call->tenant));
    /* An object named in the body (POST /auth/roles {name}) as the handler recorded it. */
    for (int k = 0; res && k < 2; k++) {
        const char *field = k == 0 ? "role" : "user";
        json_t *v = json_object_get(call->audit_detail, field);
        if (json_is_string(v) && !json_object_get(res, field))
            json_object_set(res, field, v);
    }
    return res;
}

int ag_guard_key_id(const ag_call_t *call, char *out)
{
    const char *cred = call->req->api_key;
    if (!cred && call->req->authorization &&
        strncasecmp(call->req->authorization, "bearer ", 7) == 0) {
        cred = call->req->authorization + 7;
        while (*cred == ' ')
            cred++;
    }
    if (!cred)
        return AG_ENOTFOUND;
    /* Every key Aegis issues has the one format (auth/ag_keyfmt.h): users', API and management
     * keys alike. */
    return ag_cred_parse(cred, strlen(cred), out) == 0 ? 0 : AG_ENOTFOUND;
}

static void audit_write(ag_guard_t *g, ag_call_t *call, bool allowed, int status,
                        const char *reason)
{
    if (!g || !g->audit)
        return;
    const ag_principal_t *p = call->principal;
    int kind = p ? ag_principal_kind(p) : -1;
    json_t *res = audit_resource(call);
    /* The key id of a presented database-user key (its public part; also for a failed
     * authentication, which shows which key someone tried). Never the secret. */
    char key_id[AG_KEY_ID_LEN + 1] = {0};
    bool has_key_id = ag_guard_key_id(call, key_id) == 0;
    ag_audit_record_t r = {
        .request_id = call->req->request_id,
        .principal_kind = p ? ag_principal_kind_name(kind) : "none",
        .principal_id = p ? ag_principal_id(p) : NULL,
        .key_id = has_key_id                          ? key_id
                  : p && kind == AG_PRINCIPAL_API_KEY ? ag_principal_id(p)
                                                      : NULL,
        .sub = p ? ag_principal_sub(p) : NULL,
        .remote = call->req->remote_addr,
        /* A node-to-node call: the node that sent it, and from where (remote is the client). */
        .via_node = call->shard_local && call->via_addr[0] ? call->peer.node : NULL,
        .via_addr = call->shard_local && call->via_addr[0] ? call->via_addr : NULL,
        .method = call->req->method_name,
        .route = call->route->pattern,
        .action = call->route->action,
        .resource = res,
        .allowed = allowed,
        .status = status,
        .reason = reason && *reason ? reason : NULL,
        .detail = call->audit_detail,
        /* A change is durable in the log before its response; a flood of denials is synced at
         * most a second later, so it cannot turn into an fsync storm. */
        .sync = allowed,
    };
    if (ag_audit_append(g->audit, &r) != 0)
        ag_log(AG_LOG_ERROR, "audit log: cannot record %s %s (request %s)", r.method, r.route,
               r.request_id);
    json_decref(res);
}

/* One audit record (and one log line) for count failed authentications from addr that were
 * answered 429 while it was locked out. Called with the throttle's lock held. */
static void report_throttled(void *ctx, const char *addr, uint64_t count)
{
    ag_guard_t *g = ctx;
    ag_log(AG_LOG_WARN, "throttled %s: %llu more failed authentication(s) refused while locked out",
           addr, (unsigned long long)count);
    if (!g->audit)
        return;
    char reason[160];
    snprintf(reason, sizeof(reason),
             "%llu failed authentication(s) refused while the address was locked out",
             (unsigned long long)count);
    ag_audit_record_t r = {
        .principal_kind = "none",
        .remote = addr,
        .method = "-",
        .route = "-",
        .action = "authenticate",
        .allowed = false,
        .status = 429,
        .reason = reason,
        .count = count,
    };
    if (ag_audit_append(g->audit, &r) != 0)
        ag_log(AG_LOG_ERROR, "audit log: cannot record %llu throttled failures from %s",
               (unsigned long long)count, addr);
}

/* Aggregated throttle records fall due even when the address goes quiet: checked at most once a
 * second, from the request path. */
static void report_due(ag_guard_t *g, int64_t now)
{
    int64_t due = atomic_load(&g->next_report);
    if (now < due || !atomic_compare_exchange_strong(&g->next_report, &due, now + 1))
        return;
    (void)ag_throttle_drain(g->throttle, now, false, report_throttled, g);
}

/*
 * A failed authentication (a bad or missing credential, or no valid client certificate under
 * mutual TLS): counted by the throttle, answered 401 — or 429 with Retry-After once the address is
 * locked out — logged and audited one by one until the lockout, then in aggregate (see
 * ag_throttle.h). answer is the client's message.
 */
static int auth_failed_ex(ag_guard_t *g, ag_call_t *call, int64_t now, ag_metric_t reason,
                          const char *why, const char *answer, int *retry_after, bool audit,
                          ag_diag_t *diag)
{
    ag_request_t *req = call->req;
    ag_throttle_verdict_t v;
    ag_metrics_add(reason, 1);
    ag_throttle_fail(g->throttle, req->remote_addr, now, &v);
    if (v.locked)
        ag_metrics_add(AG_M_THROTTLED, 1);
    if (v.report)
        report_throttled(g, req->remote_addr, v.report);
    int rc, status;
    if (v.locked) {
        *retry_after = v.retry_after;
        rc = ag_fail(diag, AG_ETHROTTLED, "Too many failed authentication attempts; retry later");
        status = 429;
    } else {
        rc = ag_fail(diag, AG_EUNAUTH, "%s", answer);
        status = 401;
    }
    if (v.quiet)
        return rc;
    ag_log(AG_LOG_WARN, "authentication failed from %s for %s %s: %s", req->remote_addr,
           req->method_name, call->route->pattern, why);
    if (v.locked)
        ag_log(AG_LOG_WARN,
               "throttled %s: too many failed authentications; locked out for %d s (further "
               "failures are reported in aggregate)",
               req->remote_addr, v.retry_after);
    if (audit)
        audit_write(g, call, false, status, diag->msg);
    return rc;
}

static int auth_failed(ag_guard_t *g, ag_call_t *call, int64_t now, ag_metric_t reason,
                       const char *why, const char *answer, int *retry_after, ag_diag_t *diag)
{
    return auth_failed_ex(g, call, now, reason, why, answer, retry_after, true, diag);
}

/* The reason label of a refused credential in aegis_auth_failures_total (docs/API.md "Metrics"):
 * nothing presented, expired (or not yet valid), or anything else that does not check out. */
static ag_metric_t failure_reason(const ag_request_t *req, const char *why)
{
    if (!req->api_key && !req->authorization)
        return AG_M_AUTH_MISSING;
    if (strstr(why, "expired") || strstr(why, "not yet valid"))
        return AG_M_AUTH_EXPIRED;
    return AG_M_AUTH_INVALID;
}

static int admit(ag_guard_t *g, ag_call_t *call, size_t i, int *retry_after, ag_diag_t *diag);

/* The signed header of a node-to-node call, checked before the caller's credential: the MAC over
 * the method, path, query, credential, node, time, nonce, client address and body hash, then the
 * nonce (once only). A refusal counts as a failed authentication of the address the call came
 * from. Once it holds, the request is the client's: req->remote_addr becomes the signed client
 * address (for allowed_ips, the throttle and the audit record) and call->via_addr keeps the
 * sending node's. The body is checked against the signed hash once it is in (ag_guard_peer_body).
 */
static int peer_admit(ag_guard_t *g, ag_call_t *call, int64_t now, int *retry_after,
                      ag_diag_t *diag)
{
    ag_request_t *req = call->req;
    ag_peer_arg_t args[AG_HTTP_MAX_QUERY];
    for (int i = 0; i < req->nquery; i++)
        args[i] = (ag_peer_arg_t){req->query[i].key, req->query[i].val};
    ag_peer_req_t pr = {req->method_name,    req->path,    args,
                        (size_t)req->nquery, req->api_key, req->authorization};
    ag_diag_t pd = {{0}};
    int rc = ag_cluster_peer_verify(g->cluster, &pr, req->shard_local, &call->peer, &pd);
    if (rc == AG_EUNAVAILABLE) {
        /* The replay cache is full: fail closed, counted and audited like a refusal. */
        ag_metrics_add(AG_M_AUTH_PEER, 1);
        ag_log(AG_LOG_WARN, "shard-local call from %s refused: %s", req->remote_addr, pd.msg);
        rc = ag_fail(diag, AG_EUNAVAILABLE, "%s", pd.msg);
        audit_write(g, call, false, 503, diag->msg);
        return rc;
    }
    if (rc)
        return auth_failed(g, call, now, AG_M_AUTH_PEER, pd.msg, pd.msg, retry_after, diag);
    call->shard_local = true;
    snprintf(call->via_addr, sizeof(call->via_addr), "%s", req->remote_addr);
    snprintf(req->remote_addr, sizeof(req->remote_addr), "%s", call->peer.client);
    return 0;
}

int ag_guard_peer_body(ag_call_t *call, ag_diag_t *diag)
{
    ag_guard_t *g = call->api->guard;
    ag_request_t *req = call->req;
    if (!call->shard_local || !g)
        return 0;
    /* An upload's body is in a file, never signed: no shard-local call sends one. */
    if (req->spool_fd < 0 && ag_peer_body_ok(&call->peer, req->body, req->body_len))
        return 0;
    /* The signature does not hold: nothing it claimed is believed, the client's address
     * included. Audited by the caller's ag_guard_audit (401/429). */
    snprintf(req->remote_addr, sizeof(req->remote_addr), "%s", call->via_addr);
    call->via_addr[0] = '\0';
    int retry_after = 0;
    const char *msg = "Unauthorized: the shard-local call's body is not the one its header was "
                      "signed for";
    int rc =
        auth_failed_ex(g, call, ag_now_unix(), AG_M_AUTH_PEER, msg, msg, &retry_after, false, diag);
    if (rc == AG_ETHROTTLED)
        snprintf(req->retry_after, sizeof(req->retry_after), "%d", AG_MAX(retry_after, 1));
    return rc;
}

int ag_guard_admit(ag_guard_t *g, ag_call_t *call, size_t i, int *retry_after, ag_diag_t *diag)
{
    int rc = admit(g, call, i, retry_after, diag);
    /* Authorization decisions only: a failed authentication is counted by its reason. */
    if (call->principal)
        ag_metrics_decision((unsigned)i, rc == 0);
    return rc;
}

static int admit(ag_guard_t *g, ag_call_t *call, size_t i, int *retry_after, ag_diag_t *diag)
{
    const ag_action_decl_t *decl = &g->decls[i];
    ag_request_t *req = call->req;
    /* Under mutual TLS every request needs the certificate, public routes included. */
    if ((decl->flags & AG_ACTF_PUBLIC) && !req->client_cert_refused) {
        snprintf(req->principal_label, sizeof(req->principal_label), "public");
        return 0;
    }
    int rc;
    /* Tenant API routes name the tenant in the path (/collections/{c}/tenants/{t}/...). */
    if (call->nparams > 1 && strstr(call->route->pattern, "/tenants/{"))
        call->tenant = call->params[1];
    /* An alias is resolved here, once: the request is authorized against the collection behind
     * it, and the handler works on that same collection (call->coll), never looking the name up
     * again. A name that resolves to nothing is authorized as given (a 403 must not tell whether
     * it exists). */
    const char *collection = NULL;
    if (call->route->scope == AG_SCOPE_COLLECTION) {
        collection = call->params[0];
        if (ag_store_get(g->store, collection, &call->coll, NULL) == 0)
            collection = ag_coll_name(call->coll);
        else
            call->coll = NULL;
    }
    if (g->insecure) {
        if ((rc = ag_auth_anonymous(&call->principal)) != 0)
            return ag_fail(diag, AG_EINTERNAL, "cannot create the anonymous principal");
        snprintf(req->principal_label, sizeof(req->principal_label), "anonymous");
        /* Anonymous holds root; the decision still hides inactive tenants' points. */
        return decide(call, decl, collection, &call->restriction, true, diag);
    }
    int64_t now = ag_now_unix();
    report_due(g, now);
    /* Cluster mode: a cache that cannot be confirmed fresh may still hold a revoked key or a
     * role since taken away, so nothing is decided on it (docs/CLUSTER.md "Reads"). */
    if (g->cluster) {
        uint64_t rev = 0;
        if (!ag_cluster_fresh(g->cluster, &rev)) {
            rc = ag_fail(diag, AG_EUNAVAILABLE,
                         "cluster: node %s cannot confirm that its security state is current "
                         "(last confirmed %lld ms ago; cluster.stale_after_ms); requests are "
                         "refused until etcd answers again",
                         ag_cluster_node_id(g->cluster),
                         (long long)ag_cluster_unconfirmed_ms(g->cluster));
            audit_write(g, call, false, ag_http_status(rc), diag->msg);
            return rc;
        }
        call->sec_rev = rev;
    }
    /* A shard-local call (docs/CLUSTER.md "Node-to-node calls") must come from a node of this
     * cluster, signed for this very request and credential, once; the caller's own credential
     * is still checked below, as for any request, from the client's own address. */
    if (req->shard_local && (rc = peer_admit(g, call, now, retry_after, diag)) != 0)
        return rc;
    if (req->client_cert_refused)
        return auth_failed(g, call, now, AG_M_AUTH_CLIENT_CERT, "no valid client certificate",
                           "Unauthorized: a valid client certificate is required", retry_after,
                           diag);
    /* The credential is checked first, whatever the throttle says: a valid one is never refused
     * because of where it comes from; only failures count, and only they are throttled. */
    ag_diag_t adiag = {{0}};
    rc = ag_auth_authenticate(g->auth, req->api_key, req->authorization, now, &call->principal,
                              &adiag);
    if (rc) {
        call->principal = NULL;
        const char *why = adiag.msg[0] ? adiag.msg : "refused";
        if (rc != AG_EUNAUTH)
            return auth_failed(g, call, now, AG_M_AUTH_ERROR, why,
                               "Unauthorized: the credential could not be checked", retry_after,
                               diag);
        return auth_failed(g, call, now, failure_reason(req, why), why,
                           adiag.msg[0] ? adiag.msg : "Unauthorized: missing or invalid credential",
                           retry_after, diag);
    }
    /* An API or management key may be bound to addresses (docs/SECURITY.md "Keys, management
     * keys and invites"): from anywhere else it is no credential at all. */
    if (ag_principal_kind(call->principal) == AG_PRINCIPAL_API_KEY &&
        !ag_keystore_addr_allowed(g->keys, ag_principal_id(call->principal), req->remote_addr)) {
        ag_guard_release_principal(call);
        return auth_failed(g, call, now, AG_M_AUTH_ADDRESS,
                           "the key's allowed_ips do not include this address",
                           "Unauthorized: missing or invalid credential", retry_after, diag);
    }
    label(call, call->principal);
    /* An upsert the caller may not do whole may still be granted verb by verb. */
    bool upsert =
        ag_resource_is_data(ag_resource_public(decl->resource)) && decl->verbs == AG_VERB_WRITE;
    rc = decide(call, decl, collection, &call->restriction, upsert, diag);
    /* Restricted, or denied as a whole: per verb is exact (each point is checked against the
     * rows of the verb it needs), and never narrower. */
    if (upsert && (rc || call->restriction) && verbs_split(call->principal) &&
        split_write(call, decl, collection, &call->upsert) == 0) {
        ag_filter_free(call->restriction);
        call->restriction = NULL;
        return 0;
    }
    if (rc && upsert) /* denied after all: decide again to log it */
        rc = decide(call, decl, collection, &call->restriction, false, diag);
    if (rc)
        audit_write(g, call, false, ag_http_status(rc), diag->msg);
    return rc;
}

static int authorize(ag_call_t *call, const char *action, const char *collection,
                     ag_filter_t **restriction, bool quiet, ag_diag_t *diag)
{
    if (restriction)
        *restriction = NULL;
    if (!call->principal)
        return ag_fail(diag, AG_EFORBIDDEN, "Forbidden: no principal");
    ag_action_decl_t decl;
    int rc = ag_action_decl_parse(action, call->route->pattern, &decl, diag);
    if (rc)
        return ag_fail(diag, AG_EFORBIDDEN, "Forbidden: unknown action");
    return decide(call, &decl, collection, restriction, quiet, diag);
}

int ag_guard_authorize(ag_call_t *call, const char *action, const char *collection,
                       ag_filter_t **restriction, ag_diag_t *diag)
{
    return authorize(call, action, collection, restriction, false, diag);
}

bool ag_guard_may(ag_call_t *call, const char *action, const char *collection)
{
    ag_diag_t d;
    return authorize(call, action, collection, NULL, true, &d) == 0;
}

bool ag_guard_visible(ag_call_t *call, const char *collection)
{
    ag_diag_t d;
    return authorize(call, "read:collections", collection, NULL, true, &d) == 0;
}

void ag_guard_release_principal(ag_call_t *call)
{
    if (call->principal)
        ag_principal_unref(call->principal);
    call->principal = NULL;
}

/* Audited: every denial (401/403/429) and every non-read request on a resource other than data
 * (collections, payload indexes, aliases, tenants, roles, users, keys, invites, backups, ...),
 * whatever its outcome. Not audited: reads, and data reads/writes that were not denied. */
void ag_guard_audit(ag_call_t *call, int http_status)
{
    ag_guard_t *g = call->api->guard;
    if (!g || !g->audit || !call->route)
        return;
    size_t i = (size_t)(call->route - call->api->routes);
    if (i >= AG_MAX_ROUTES)
        return;
    const ag_action_decl_t *decl = &g->decls[i];
    /* A public route is audited only when its handler made a change (invite acceptance). */
    if ((decl->flags & AG_ACTF_PUBLIC) && !call->audit_detail)
        return;
    bool denied = http_status == 401 || http_status == 403 || http_status == 429;
    int res = ag_resource_public(decl->resource);
    bool change = ((decl->verbs & ~(unsigned)AG_VERB_READ) != 0 && !ag_resource_is_data(res) &&
                   res != AG_RES_PROFILE) ||
                  call->audit_detail;
    if (!denied && !change)
        return;
    audit_write(g, call, !denied, http_status, http_status >= 400 ? call->diag.msg : NULL);
}

void ag_guard_set_audit(ag_guard_t *g, ag_audit_t *audit)
{
    if (g)
        g->audit = audit;
}

ag_audit_t *ag_guard_audit_log(ag_guard_t *g)
{
    return g ? g->audit : NULL;
}

int ag_guard_authorize_tenant(ag_call_t *call, const char *action, const char *tenant,
                              ag_diag_t *diag)
{
    const char *saved = call->tenant;
    call->tenant = tenant;
    int rc = authorize(call, action, call->coll ? ag_coll_name(call->coll) : call->params[0], NULL,
                       true, diag);
    call->tenant = saved;
    return rc;
}

/* ---- helpers of the access-management API ----------------------------------------------- */

ag_cluster_t *ag_guard_cluster(ag_guard_t *g)
{
    return g ? g->cluster : NULL;
}

ag_secstore_t *ag_guard_secstore(ag_guard_t *g)
{
    return g ? g->sec : NULL;
}

ag_auth_t *ag_guard_auth(ag_guard_t *g)
{
    return g ? g->auth : NULL;
}

int ag_guard_authorize_name(ag_call_t *call, const char *action, const char *role, const char *user,
                            ag_diag_t *diag)
{
    if (!call->principal)
        return ag_fail(diag, AG_EFORBIDDEN, "Forbidden: no principal");
    ag_action_decl_t decl;
    if (ag_action_decl_parse(action, call->route->pattern, &decl, diag) != 0)
        return ag_fail(diag, AG_EFORBIDDEN, "Forbidden: unknown action");
    ag_request_action_t a;
    ag_request_action_init(&a, &decl);
    a.role = role;
    a.user = user;
    ag_decision_t d;
    int rc = ag_auth_decide(call->principal, &a, &d);
    if (rc == 0 && !d.allowed)
        rc = ag_fail(diag, AG_EFORBIDDEN, "Forbidden: missing permission %s",
                     d.missing ? d.missing : "(unknown)");
    else if (rc)
        rc = ag_fail(diag, AG_EFORBIDDEN, "Forbidden: the permission check failed");
    ag_decision_release(&d);
    return rc;
}

/* ---- management plane (docs/SECURITY.md "Keys, management keys and invites") ------------- */

ag_keystore_t *ag_guard_keystore(ag_guard_t *g)
{
    return g ? g->keys : NULL;
}

int ag_guard_public_auth_failure(ag_call_t *call, const char *why, ag_diag_t *diag)
{
    ag_guard_t *g = call->api->guard;
    const char *answer = "Unauthorized: the invite code is not valid";
    if (!g || !g->throttle)
        return ag_fail(diag, AG_EUNAUTH, "%s", answer);
    int retry_after = 0;
    int rc = auth_failed(g, call, ag_now_unix(), AG_M_AUTH_INVITE, why, answer, &retry_after, diag);
    if (rc == AG_ETHROTTLED)
        snprintf(call->req->retry_after, sizeof(call->req->retry_after), "%d",
                 AG_MAX(retry_after, 1));
    return rc;
}
