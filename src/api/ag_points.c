#include "api/ag_points.h"

#include <stdatomic.h>
#include <stdio.h>

#include "api/ag_guard.h"
#include "store/ag_payload_index.h"
#include "json/ag_json.h"

int ag_scope_init(ag_scope_t *sc, ag_call_t *call, ag_collection_t *c, const json_t *filter_json,
                  const char *path)
{
    sc->c = c;
    sc->user = NULL;
    sc->restriction = call->restriction;
    if (!filter_json || json_is_null(filter_json))
        return 0;
    ag_diag_t d = {{0}};
    int rc = ag_filter_compile_budgeted(filter_json, &sc->user, &d);
    if (rc) {
        /* Filter diagnostics start at "filter"; prefix with where the filter sits. */
        if (path && *path)
            return ag_fail(&call->diag, rc, "%s: %s", path, d.msg);
        return ag_fail(&call->diag, rc, "%s", d.msg);
    }
    return 0;
}

void ag_scope_release(ag_scope_t *sc)
{
    ag_filter_free(sc->user);
    sc->user = NULL;
}

bool ag_scope_match(const ag_scope_t *sc, uint32_t slot)
{
    return ag_coll_match(sc->c, slot, sc->restriction) && ag_coll_match(sc->c, slot, sc->user);
}

bool ag_scope_accept(const void *ud, uint32_t slot)
{
    return ag_scope_match(ud, slot);
}

static atomic_uint_fast64_t examined_total;

void ag_scope_note_examined(uint64_t n)
{
    atomic_fetch_add_explicit(&examined_total, n, memory_order_relaxed);
}

uint64_t ag_scope_examined_total(void)
{
    return atomic_load(&examined_total);
}

bool ag_scope_candidates(const ag_scope_t *sc, ag_arena_t *arena, const json_t *filter_json,
                         uint32_t **out, size_t *n)
{
    /* Count both sides first and build only the smaller list: every candidate passes the whole
     * scope anyway, so either is a correct superset. With an indexed restriction the work is
     * bounded by the points in scope, however many points elsewhere match the filter. */
    json_t *eq = sc->restriction ? ag_filter_required_equalities(sc->restriction) : NULL;
    const json_t *user = filter_json && !json_is_null(filter_json) ? filter_json : NULL;
    size_t nu = 0, nr = 0;
    bool have_u = user && ag_payload_candidates_count(sc->c, user, &nu);
    bool have_r = eq && ag_payload_candidates_count(sc->c, eq, &nr);
    bool ok = false;
    if (have_r && (!have_u || nr <= nu))
        ok = ag_payload_candidates(sc->c, arena, eq, out, n);
    else if (have_u)
        ok = ag_payload_candidates(sc->c, arena, user, out, n);
    json_decref(eq);
    return ok;
}

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

int ag_parse_with_payload(const json_t *v, bool dflt, ag_payload_sel_t *out, ag_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    out->enabled = dflt;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_boolean(v)) {
        out->enabled = json_is_true(v);
        return 0;
    }
    if (json_is_array(v)) {
        out->enabled = true;
        out->include = v;
    } else if (json_is_object(v)) {
        int rc = AG_JSON_ONLY(v, "with_payload", diag, "include", "exclude");
        if (rc)
            return rc;
        out->enabled = true;
        out->include = json_object_get(v, "include");
        out->exclude = json_object_get(v, "exclude");
        if (!out->include && !out->exclude)
            return ag_fail(diag, AG_EINVAL, "with_payload: expected include or exclude");
        if ((out->include && !json_is_array(out->include)) ||
            (out->exclude && !json_is_array(out->exclude)))
            return ag_fail(diag, AG_EINVAL, "with_payload: include/exclude must be arrays");
    } else {
        return ag_fail(diag, AG_EINVAL,
                       "with_payload: expected a boolean, a list of keys or include/exclude");
    }
    size_t i;
    json_t *k;
    const json_t *lists[2] = {out->include, out->exclude};
    for (int l = 0; l < 2; l++) {
        json_array_foreach(lists[l], i, k)
        {
            if (!json_is_string(k) || ag_payload_path_check(json_string_value(k), NULL) != 0)
                return ag_fail(diag, AG_EINVAL, "with_payload[%zu]: expected a payload key", i);
        }
    }
    return 0;
}

int ag_parse_with_vector(const json_t *v, bool *enabled, const json_t **which, ag_diag_t *diag)
{
    *which = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_boolean(v)) {
        *enabled = json_is_true(v);
        return 0;
    }
    if (!json_is_array(v))
        return ag_fail(diag, AG_EINVAL, "with_vector: expected a boolean or a list of names");
    size_t i;
    json_t *k;
    json_array_foreach(v, i, k)
    {
        if (!json_is_string(k))
            return ag_fail(diag, AG_EINVAL, "with_vector[%zu]: expected a vector name", i);
    }
    *enabled = true;
    *which = v;
    return 0;
}

int ag_parse_output(const json_t *obj, const char *vector_key, bool payload_default,
                    ag_payload_sel_t *ps, bool *with_vector, const json_t **which, ag_diag_t *diag)
{
    int rc = ag_parse_with_payload(json_object_get(obj, "with_payload"), payload_default, ps, diag);
    if (rc == 0)
        rc = ag_parse_with_vector(json_object_get(obj, vector_key), with_vector, which, diag);
    return rc;
}

/* Copies the value at a dotted path (objects only) from src into dst, creating parents. */
static void copy_path(json_t *dst, const json_t *src, const char *path)
{
    const char *dot = strchr(path, '.');
    if (!dot) {
        json_t *v = json_object_get(src, path);
        if (v)
            json_object_set(dst, path, v);
        return;
    }
    char head[256];
    size_t len = (size_t)(dot - path);
    if (len >= sizeof(head))
        return;
    memcpy(head, path, len);
    head[len] = '\0';
    json_t *sv = json_object_get(src, head);
    if (!json_is_object(sv))
        return;
    json_t *dv = json_object_get(dst, head);
    if (!json_is_object(dv)) {
        dv = json_object();
        json_object_set_new(dst, head, dv);
    }
    copy_path(dv, sv, dot + 1);
    if (json_object_size(dv) == 0)
        json_object_del(dst, head);
}

void ag_payload_delete_path(json_t *obj, const char *path)
{
    if (json_object_get(obj, path)) {
        json_object_del(obj, path);
        return;
    }
    const char *dot = strchr(path, '.');
    if (!dot)
        return;
    char head[256];
    size_t len = (size_t)(dot - path);
    if (len >= sizeof(head))
        return;
    memcpy(head, path, len);
    head[len] = '\0';
    json_t *sub = json_object_get(obj, head);
    if (json_is_object(sub))
        ag_payload_delete_path(sub, dot + 1);
}

static json_t *render_payload(const json_t *payload, const ag_payload_sel_t *ps)
{
    if (!ps->include && !ps->exclude)
        return json_deep_copy(payload);
    json_t *out;
    size_t i;
    json_t *k;
    if (ps->include) {
        out = json_object();
        json_array_foreach(ps->include, i, k) copy_path(out, payload, json_string_value(k));
        json_t *copy = json_deep_copy(out);
        json_decref(out);
        out = copy;
    } else {
        out = json_deep_copy(payload);
    }
    json_array_foreach(ps->exclude, i, k) ag_payload_delete_path(out, json_string_value(k));
    return out;
}

json_t *ag_render_point(const ag_collection_t *c, uint32_t slot, const ag_payload_sel_t *ps,
                        bool with_vector, const json_t *which, bool has_score, float score)
{
    const ag_slot_t *s = &c->slots[slot];
    json_t *p = json_object();
    if (!p)
        return NULL;
    json_object_set_new(p, "id", ag_id_to_json(&s->id));
    if (has_score) {
        json_object_set_new(p, "version", json_integer(0));
        json_object_set_new(p, "score", json_real((double)score));
    }
    json_object_set_new(p, "payload", ps->enabled ? render_payload(s->payload, ps) : json_null());
    json_object_set_new(p, "vector",
                        with_vector ? ag_coll_vectors_json(c, slot, which) : json_null());
    return p;
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

int ag_parse_dense(ag_call_t *call, const ag_collection_t *c, int vi, const json_t *v,
                   const char *path, float **out)
{
    float *f;
    uint32_t n;
    int rc = ag_json_floats(v, path, &f, &n, &call->diag);
    if (rc)
        return rc;
    if (n != c->vec[vi].dim) {
        free(f);
        return ag_fail(&call->diag, AG_EINVAL,
                       "Wrong input: Vector dimension error: expected dim: %u, got %u (%s)",
                       c->vec[vi].dim, n, path);
    }
    float *a = ag_arena_alloc(&call->arena, sizeof(float) * n);
    if (!a) {
        free(f);
        return AG_ENOMEM;
    }
    memcpy(a, f, sizeof(float) * n);
    free(f);
    if (c->vec[vi].dist == AG_DIST_COSINE)
        ag_vector_normalize(a, n);
    *out = a;
    return 0;
}

static int cmp_pair(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int ag_parse_sparse(ag_call_t *call, const json_t *v, const char *path, ag_sparse_vec_t *out)
{
    if (!json_is_object(v))
        return ag_fail(&call->diag, AG_EINVAL, "%s: expected {indices, values}", path);
    int rc = AG_JSON_ONLY(v, path, &call->diag, "indices", "values");
    if (rc)
        return rc;
    json_t *ix = json_object_get(v, "indices"), *vals = json_object_get(v, "values");
    if (!json_is_array(ix) || !json_is_array(vals))
        return ag_fail(&call->diag, AG_EINVAL, "%s: indices and values must be arrays", path);
    size_t n = json_array_size(ix);
    if (n != json_array_size(vals))
        return ag_fail(&call->diag, AG_EUNPROCESSABLE,
                       "%s: indices and values must have the same length", path);
    if (n > AG_MAX_DIM)
        return ag_fail(&call->diag, AG_EINVAL, "%s: too many elements", path);
    /* pairs[2*i] = index, pairs[2*i+1] = bits of the value, sorted by index together. */
    uint32_t *pairs = ag_arena_alloc(&call->arena, sizeof(uint32_t) * 2 * (n ? n : 1));
    out->indices = ag_arena_alloc(&call->arena, sizeof(uint32_t) * (n ? n : 1));
    out->values = ag_arena_alloc(&call->arena, sizeof(float) * (n ? n : 1));
    if (!pairs || !out->indices || !out->values)
        return AG_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(ix, i), *b = json_array_get(vals, i);
        if (!json_is_integer(a) || json_integer_value(a) < 0 ||
            json_integer_value(a) > (json_int_t)UINT32_MAX)
            return ag_fail(&call->diag, AG_EINVAL,
                           "%s.indices[%zu]: expected an unsigned "
                           "32-bit integer",
                           path, i);
        if (!json_is_number(b))
            return ag_fail(&call->diag, AG_EINVAL, "%s.values[%zu]: expected a number", path, i);
        float f = (float)json_number_value(b);
        if (f != f || f - f != 0.0f)
            return ag_fail(&call->diag, AG_EINVAL, "%s.values[%zu]: not a finite float32", path, i);
        pairs[2 * i] = (uint32_t)json_integer_value(a);
        memcpy(&pairs[2 * i + 1], &f, sizeof(float));
    }
    qsort(pairs, n, 2 * sizeof(uint32_t), cmp_pair);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && pairs[2 * i] == pairs[2 * i - 2])
            return ag_fail(&call->diag, AG_EUNPROCESSABLE, "%s.indices: index %u is repeated", path,
                           pairs[2 * i]);
        out->indices[i] = pairs[2 * i];
        memcpy(&out->values[i], &pairs[2 * i + 1], sizeof(float));
    }
    out->n = (uint32_t)n;
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
        int rc = ag_parse_dense(call, c, vi, v, path, &f);
        if (rc)
            return rc;
        m->dense_op[vi] = AG_VEC_SET;
        m->dense[vi] = f;
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
            int rc = ag_parse_dense(call, c, vi, val, p, &f);
            if (rc)
                return rc;
            m->dense_op[vi] = AG_VEC_SET;
            m->dense[vi] = f;
            continue;
        }
        int si = ag_coll_sparse(c, name);
        if (si >= 0) {
            int rc = ag_parse_sparse(call, val, p, &m->sparse[si]);
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
