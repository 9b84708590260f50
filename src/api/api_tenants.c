/*
 * Tenants of multi-tenant collections (docs/SECURITY.md "Tenants") and the audit log query
 * (docs/SECURITY.md "Audit log").
 *
 * A collection is multi-tenant when it has a keyword/uuid payload index with is_tenant: true;
 * the indexed key holds the tenant name. Tenants are declared here; writes naming an undeclared
 * or inactive tenant are refused (api_points.c), an inactive tenant's points are hidden from
 * every read (the guard ANDs that into the row restriction), and deleting a tenant deletes its
 * points. Every change holds the collection's write mutex, so it is ordered against point writes.
 */
#include <stdio.h>

#include "api/ag_api.h"
#include "api/ag_guard.h"
#include "auth/ag_audit.h"
#include "json/ag_json.h"

static int not_multi_tenant(ag_call_t *call)
{
    return ag_fail(&call->diag, AG_EINVAL,
                   "collection `%s` is not multi-tenant: create a keyword payload index with "
                   "\"is_tenant\": true first",
                   call->params[0]);
}

/* The collection and a private copy of its tenancy snapshot (*tenancy, the caller's); fails
 * unless the collection is multi-tenant. */
static int open_tenancy(ag_call_t *call, ag_collection_t **c, json_t **tenancy)
{
    *tenancy = NULL;
    int rc = ag_call_collection(call, c);
    if (rc)
        return rc;
    ag_tenancy_t *snap = NULL;
    if (ag_store_tenancy(call->api->store, ag_coll_name(*c), &snap) == 0)
        *tenancy = json_deep_copy(ag_tenancy_json(snap));
    ag_tenancy_release(snap);
    if (!json_is_string(json_object_get(*tenancy, "key"))) {
        json_decref(*tenancy);
        *tenancy = NULL;
        ag_coll_unref(*c);
        *c = NULL;
        return not_multi_tenant(call);
    }
    return 0;
}

/* A tenant change, run in the collection's write session (tenant_change), which every tenant
 * change holds. */
typedef enum { T_CREATE, T_SET_ACTIVE, T_DELETE } tenant_op_t;
typedef struct tenant_change {
    ag_call_t *call;
    tenant_op_t op;
    const char *tenant;
    bool active;     /* T_SET_ACTIVE */
    const char *key; /* T_DELETE: the tenant key */
    bool first;      /* T_CREATE: out: the first declaration */
    size_t deleted;  /* T_DELETE: out: points deleted */
} tenant_change_t;

static int tenant_change(void *ud, ag_collection_t *c)
{
    tenant_change_t *t = ud;
    ag_store_t *st = t->call->api->store;
    ag_diag_t *diag = &t->call->diag;
    switch (t->op) {
    case T_CREATE: {
        ag_tenancy_t *now = NULL;
        t->first = ag_store_tenancy_locked(st, c, &now) == 0 &&
                   json_object_size(json_object_get(ag_tenancy_json(now), "tenants")) == 0;
        ag_tenancy_release(now);
        return ag_store_tenant_set(st, c, t->tenant, true, true, diag);
    }
    case T_SET_ACTIVE:
        return ag_store_tenant_set(st, c, t->tenant, false, t->active, diag);
    case T_DELETE:
        return ag_store_tenant_delete(st, c, t->key, t->tenant, &t->deleted, diag);
    }
    return AG_EINTERNAL;
}

/* ---- GET /collections/{name}/tenants ------------------------------------------------------- */

typedef struct counter {
    json_t *counts; /* {tenant: points} */
    const char *key;
} counter_t;

static void count_value(const json_t *v, void *ud)
{
    counter_t *ct = ud;
    const char *t = json_string_value(v);
    if (!t)
        return;
    json_t *n = json_object_get(ct->counts, t);
    if (n)
        json_integer_set(n, json_integer_value(n) + 1);
}

static bool count_point(void *ud, uint32_t slot, const ag_point_id_t *id, const json_t *payload)
{
    AG_UNUSED(slot);
    AG_UNUSED(id);
    counter_t *ct = ud;
    ag_payload_path_each(payload, ct->key, count_value, ct);
    return true;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "name")),
                  json_string_value(json_object_get(*(json_t *const *)b, "name")));
}

static int h_list(ag_call_t *call)
{
    ag_collection_t *c;
    json_t *tenancy;
    int rc = open_tenancy(call, &c, &tenancy);
    if (rc)
        return rc;
    const char *key = json_string_value(json_object_get(tenancy, "key"));
    json_t *tenants = json_object_get(tenancy, "tenants");
    counter_t ct = {json_object()};
    const char *t;
    json_t *info;
    json_object_foreach(tenants, t, info) json_object_set_new(ct.counts, t, json_integer(0));
    ct.key = key;
    ag_coll_scan(c, count_point, &ct);
    size_t n = json_object_size(tenants), k = 0;
    json_t **items = calloc(n + 1, sizeof(*items));
    rc = items && ct.counts ? 0 : AG_ENOMEM;
    json_object_foreach(tenants, t, info)
    {
        if (rc)
            break;
        ag_diag_t d;
        if (ag_guard_authorize_tenant(call, "read:tenants", t, &d) != 0)
            continue; /* only the tenants the caller may see */
        items[k++] = json_pack("{s:s,s:b,s:O}", "name", t, "active",
                               json_is_true(json_object_get(info, "active")), "points",
                               json_object_get(ct.counts, t));
    }
    json_t *arr = json_array();
    if (rc == 0 && arr) {
        qsort(items, k, sizeof(*items), cmp_name);
        for (size_t i = 0; i < k; i++)
            json_array_append_new(arr, items[i]);
        call->result = json_pack("{s:s,s:o}", "tenant_key", key, "tenants", arr);
        arr = NULL;
    } else {
        for (size_t i = 0; i < k; i++)
            json_decref(items[i]);
    }
    json_decref(arr);
    free(items);
    json_decref(ct.counts);
    json_decref(tenancy);
    ag_coll_unref(c);
    if (rc)
        return rc;
    return call->result ? 0 : AG_ENOMEM;
}

/* ---- POST /collections/{name}/tenants ------------------------------------------------------ */

static int h_create(ag_call_t *call)
{
    int rc = AG_JSON_ONLY(call->body, "", &call->diag, "name");
    if (rc)
        return rc;
    json_t *nv = json_object_get(call->body, "name");
    if (!json_is_string(nv))
        return ag_fail(&call->diag, AG_EINVAL, "name: required, a string");
    const char *name = json_string_value(nv);
    if ((rc = ag_name_check(name, json_string_length(nv), "name", &call->diag)) != 0)
        return rc;
    /* The tenant comes from the body: the route admitted the call as a listing, and the named
     * tenant is checked here, before anything changes. */
    call->tenant = name; /* for the audit record (borrowed from the body, which outlives it) */
    if ((rc = ag_guard_authorize_tenant(call, "create:tenants", name, &call->diag)) != 0)
        return rc;
    ag_collection_t *c;
    json_t *tenancy;
    if ((rc = open_tenancy(call, &c, &tenancy)) != 0)
        return rc;
    json_decref(tenancy);
    ag_coll_unref(c);
    /* Cluster mode: recorded in etcd first, then applied on every node (docs/CLUSTER.md). */
    bool recorded = false, first = false;
    if ((rc = ag_shard_tenant_change(call, AG_SHARD_TENANT_CREATE, name, true, &recorded, &first,
                                     NULL)) != 0)
        return rc;
    tenant_change_t t = {.call = call, .op = T_CREATE, .tenant = name};
    if (!recorded && (rc = ag_call_write(call, tenant_change, &t)) != 0)
        return rc;
    if (!recorded)
        first = t.first;
    /* The first declaration starts lifecycle enforcement (docs/SECURITY.md "Tenants"): say so. */
    call->result =
        json_pack("{s:s,s:b,s:i,s:s}", "name", name, "active", 1, "points", 0, "enforcement",
                  first ? "started: from now on every write must name a declared, "
                          "active tenant"
                        : "on");
    return call->result ? 0 : AG_ENOMEM;
}

/* ---- POST /collections/{name}/tenants/{tenant}/activate|deactivate ------------------------- */

static int set_active(ag_call_t *call, bool active)
{
    ag_collection_t *c;
    json_t *tenancy;
    int rc = open_tenancy(call, &c, &tenancy);
    if (rc)
        return rc;
    json_decref(tenancy);
    ag_coll_unref(c);
    bool recorded = false;
    if ((rc = ag_shard_tenant_change(call, AG_SHARD_TENANT_ACTIVE, call->params[1], active,
                                     &recorded, NULL, NULL)) != 0)
        return rc;
    tenant_change_t t = {
        .call = call, .op = T_SET_ACTIVE, .tenant = call->params[1], .active = active};
    if (!recorded && (rc = ag_call_write(call, tenant_change, &t)) != 0)
        return rc;
    call->result = json_pack("{s:s,s:b}", "name", call->params[1], "active", active);
    return call->result ? 0 : AG_ENOMEM;
}

static int h_activate(ag_call_t *call)
{
    return set_active(call, true);
}

static int h_deactivate(ag_call_t *call)
{
    return set_active(call, false);
}

/* ---- DELETE /collections/{name}/tenants/{tenant} ------------------------------------------- */

static int h_delete(ag_call_t *call)
{
    ag_collection_t *c;
    json_t *tenancy;
    int rc = open_tenancy(call, &c, &tenancy);
    if (rc)
        return rc;
    char key[1024];
    snprintf(key, sizeof(key), "%s", json_string_value(json_object_get(tenancy, "key")));
    json_decref(tenancy);
    const char *tenant = call->params[1];
    ag_coll_unref(c);
    /* Deactivated first, durably (ag_store_tenant_delete): a crash part-way leaves an inactive
     * tenant whose remaining points stay invisible, and the delete can simply be repeated. */
    bool recorded = false;
    size_t deleted = 0;
    if ((rc = ag_shard_tenant_change(call, AG_SHARD_TENANT_DELETE, tenant, false, &recorded, NULL,
                                     &deleted)) != 0)
        return rc;
    tenant_change_t t = {.call = call, .op = T_DELETE, .tenant = tenant, .key = key};
    if (!recorded && (rc = ag_call_write(call, tenant_change, &t)) != 0)
        return rc;
    if (!recorded)
        deleted = t.deleted;
    call->result = json_pack("{s:s,s:I}", "name", tenant, "deleted_points", (json_int_t)deleted);
    return call->result ? 0 : AG_ENOMEM;
}

/* ---- GET /auth/audit ----------------------------------------------------------------------- */

/* RFC 3339 (or integer seconds since the epoch) to microseconds. */
static int parse_time(ag_call_t *call, const char *name, int64_t *out)
{
    const char *v = ag_request_query(call->req, name);
    *out = 0;
    if (!v || !*v)
        return 0;
    char *end = NULL;
    long long secs = strtoll(v, &end, 10);
    if (end && *end == '\0' && secs > 0 && secs < 100000000000LL) {
        *out = (int64_t)secs * 1000000;
        return 0;
    }
    if (ag_datetime_parse(v, strlen(v), out) != 0)
        return ag_fail(&call->diag, AG_EINVAL,
                       "%s: expected an RFC 3339 time (2026-01-31T12:00:00Z) or Unix seconds",
                       name);
    return 0;
}

static int h_audit(ag_call_t *call)
{
    ag_audit_t *log = ag_guard_audit_log(call->api->guard);
    if (!log)
        return ag_fail(&call->diag, AG_EUNAVAILABLE, "the audit log is not open");
    ag_audit_query_t q = {.limit = 100};
    int rc;
    if ((rc = parse_time(call, "from", &q.from_us)) != 0 ||
        (rc = parse_time(call, "to", &q.to_us)) != 0)
        return rc;
    q.principal = ag_request_query(call->req, "principal");
    q.decision = ag_request_query(call->req, "decision");
    q.action = ag_request_query(call->req, "action");
    if (q.principal && !*q.principal)
        q.principal = NULL;
    if (q.action && !*q.action)
        q.action = NULL;
    if (q.decision && !*q.decision)
        q.decision = NULL;
    if (q.decision && strcmp(q.decision, "allow") != 0 && strcmp(q.decision, "deny") != 0)
        return ag_fail(&call->diag, AG_EINVAL, "decision: expected allow or deny");
    const char *lim = ag_request_query(call->req, "limit");
    if (lim && *lim) {
        char *end = NULL;
        long long l = strtoll(lim, &end, 10);
        if (!end || *end || l < 1 || l > 1000)
            return ag_fail(&call->diag, AG_EINVAL, "limit: expected an integer from 1 to 1000");
        q.limit = (size_t)l;
    }
    json_t *arr = NULL;
    if ((rc = ag_audit_query(log, &q, &arr, &call->diag)) != 0)
        return rc;
    call->result = arr;
    return 0;
}

const ag_route_t ag_routes_tenants[] = {
    {AG_HTTP_GET, "/collections/{name}/tenants", "read:tenants", AG_SCOPE_COLLECTION, h_list, false,
     false, true},
    {AG_HTTP_POST, "/collections/{name}/tenants", "create:tenants", AG_SCOPE_COLLECTION, h_create,
     true, false, true},
    {AG_HTTP_DELETE, "/collections/{name}/tenants/{tenant}", "delete:tenants", AG_SCOPE_COLLECTION,
     h_delete, false, false},
    {AG_HTTP_POST, "/collections/{name}/tenants/{tenant}/activate", "update:tenants",
     AG_SCOPE_COLLECTION, h_activate, false, false},
    {AG_HTTP_POST, "/collections/{name}/tenants/{tenant}/deactivate", "update:tenants",
     AG_SCOPE_COLLECTION, h_deactivate, false, false},
    {AG_HTTP_GET, "/auth/audit", "read:audit", AG_SCOPE_NONE, h_audit, false, false},
};
const size_t ag_routes_tenants_len = AG_ARRAY_LEN(ag_routes_tenants);
