#include "api/ag_points.h"

#include <stdatomic.h>
#include <stdio.h>

#include "api/ag_guard.h"
#include "store/ag_payload_index.h"
#include "json/ag_json.h"

typedef struct tenant_values {
    size_t n;
    const json_t *first;
} tenant_values_t;

static void take_tenant(const json_t *v, void *ud)
{
    tenant_values_t *tv = ud;
    if (tv->n++ == 0)
        tv->first = v;
}

int ag_tenant_check_payload(ag_call_t *call, const json_t *tenancy, const ag_point_id_t *id,
                            const json_t *payload)
{
    const char *key = json_string_value(json_object_get(tenancy, "key"));
    /* Lifecycle enforcement starts with the first declared tenant: before that, is_tenant is only
     * Qdrant's storage hint and any value goes (docs/SECURITY.md "Tenants"). */
    if (!key || json_object_size(json_object_get(tenancy, "tenants")) == 0)
        return 0;
    char buf[40];
    ag_id_format(id, buf, sizeof(buf));
    tenant_values_t tv = {0};
    /* Exactly one string: an array (even of one name) is refused, so a point never sits in two
     * tenants and the key's value is what every tenant filter compares. */
    ag_payload_path_each_raw(payload, key, take_tenant, &tv);
    if (tv.n == 0)
        return ag_fail(&call->diag, AG_EINVAL,
                       "point %s: the collection is multi-tenant; the payload must name its "
                       "tenant in `%s`",
                       buf, key);
    if (tv.n != 1 || !json_is_string(tv.first))
        return ag_fail(&call->diag, AG_EINVAL,
                       "point %s: `%s` must be one tenant name (a string, not an array)", buf, key);
    const char *t = json_string_value(tv.first);
    json_t *info = json_object_get(json_object_get(tenancy, "tenants"), t);
    bool active = info && json_is_true(json_object_get(info, "active"));
    if (active)
        return 0;
    /* A caller that may not read this tenant's declaration learns nothing about it: undeclared,
     * inactive and out-of-scope all get the answer an out-of-scope write gets. */
    ag_diag_t ignored;
    if (ag_guard_authorize_tenant(call, "read:tenants", t, &ignored) != 0)
        return ag_fail(&call->diag, AG_EFORBIDDEN, AG_OUT_OF_SCOPE_WRITE, buf);
    if (!info)
        return ag_fail(&call->diag, AG_EFORBIDDEN,
                       "Forbidden: point %s: tenant `%.200s` is not declared in this collection "
                       "(create it with POST /collections/{name}/tenants)",
                       buf, t);
    return ag_fail(&call->diag, AG_EFORBIDDEN,
                   "Forbidden: point %s: tenant `%.200s` is inactive; activate it before writing",
                   buf, t);
}

int ag_parse_ids(ag_call_t *call, const json_t *arr, const char *path, ag_point_id_t **out,
                 size_t *n)
{
    if (!json_is_array(arr))
        return ag_fail(&call->diag, AG_EINVAL, "%s: expected an array of point ids", path);
    size_t len = json_array_size(arr);
    if (len > AG_MAX_BATCH)
        return ag_fail(&call->diag, AG_EINVAL, "%s: at most %d ids per request", path,
                       AG_MAX_BATCH);
    ag_point_id_t *ids = ag_arena_calloc(&call->arena, len ? len : 1, sizeof(*ids));
    if (!ids)
        return AG_ENOMEM;
    char p[96];
    for (size_t i = 0; i < len; i++) {
        snprintf(p, sizeof(p), "%s[%zu]", path, i);
        int rc = ag_id_parse(json_array_get(arr, i), &ids[i], p, &call->diag);
        if (rc)
            return rc;
    }
    *out = ids;
    *n = len;
    return 0;
}

int ag_parse_point_vector(ag_call_t *call, const ag_collection_t *c, const json_t *v,
                          const char *path, ag_mutation_t *m)
{
    char p[320];
    if (!v || json_is_null(v))
        return 0;
    if (json_is_array(v)) {
        int vi = ag_coll_vector(c, "");
        if (vi < 0)
            return ag_fail(&call->diag, AG_EINVAL,
                           "Wrong input: %s: this collection has only named vectors; pass an "
                           "object {name: vector}",
                           path);
        float *f;
        uint32_t rows;
        int rc = ag_parse_dense_rows(&call->arena, c, vi, v, path, &f, &rows, &call->diag);
        if (rc)
            return rc;
        m->dense_op[vi] = AG_VEC_SET;
        m->dense[vi] = f;
        m->dense_rows[vi] = rows;
        return 0;
    }
    if (!json_is_object(v))
        return ag_fail(&call->diag, AG_EINVAL,
                       "%s: expected an array or an object of named "
                       "vectors",
                       path);
    const char *name;
    json_t *val;
    json_object_foreach((json_t *)v, name, val)
    {
        snprintf(p, sizeof(p), "%s.%.200s", path, name);
        int vi = ag_coll_vector(c, name);
        if (vi >= 0) {
            float *f;
            uint32_t rows;
            int rc = ag_parse_dense_rows(&call->arena, c, vi, val, p, &f, &rows, &call->diag);
            if (rc)
                return rc;
            m->dense_op[vi] = AG_VEC_SET;
            m->dense[vi] = f;
            m->dense_rows[vi] = rows;
            continue;
        }
        int si = ag_coll_sparse(c, name);
        if (si >= 0) {
            int rc = ag_parse_sparse(&call->arena, val, p, &m->sparse[si], &call->diag);
            if (rc)
                return rc;
            m->sparse_op[si] = AG_VEC_SET;
            continue;
        }
        return ag_fail(&call->diag, AG_EINVAL,
                       "Wrong input: Not existing vector name error: %.200s", name);
    }
    return 0;
}
