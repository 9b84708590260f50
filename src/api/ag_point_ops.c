/*
 * Point write operations (docs/API.md), each run with the collection's write mutex held: upsert,
 * delete, payload edits, vector updates. Shared by the single-operation endpoints and the batch
 * endpoint (api_points.c). Every point written must stay inside the caller's row restriction.
 */
#include <stdio.h>

#include "api/ag_guard.h"
#include "api/ag_point_ops.h"
#include "json/ag_json.h"

/* ---- the checks of a write ------------------------------------------------------------- */

/* Row-level check for a write (docs/PERMISSIONS.md "Row filters"): the point must not exist outside
 * the caller's scope and must not end up outside it. */
static int check_write_scope(ag_call_t *call, ag_collection_t *c, const ag_point_id_t *id,
                             const json_t *new_payload, const ag_filter_t *rows)
{
    if (!rows)
        return 0;
    uint32_t s = ag_coll_find(c, id);
    char buf[40];
    ag_id_format(id, buf, sizeof(buf));
    if (s != UINT32_MAX && !ag_coll_match(c, s, rows))
        return ag_fail(&call->diag, AG_EFORBIDDEN,
                       "Forbidden: point %s is outside the rows this credential may write", buf);
    if (new_payload) {
        ag_filter_subject_t subj = {id, new_payload, NULL, NULL};
        if (!ag_filter_match_all(rows, &subj))
            return ag_fail(&call->diag, AG_EFORBIDDEN, AG_OUT_OF_SCOPE_WRITE, buf);
    }
    return 0;
}

/* An upsert granted verb by verb (call->upsert): a new id needs create and must land in its rows,
 * an existing one needs update and must stay in its rows (checked under the write mutex, so the
 * point's existence cannot change meanwhile). */
static int check_upsert_grant(ag_call_t *call, ag_collection_t *c, const ag_point_id_t *id,
                              const json_t *new_payload)
{
    bool exists = ag_coll_find(c, id) != UINT32_MAX;
    char buf[40];
    ag_id_format(id, buf, sizeof(buf));
    if (exists && !call->upsert.update)
        return ag_fail(&call->diag, AG_EFORBIDDEN,
                       "Forbidden: point %s exists, and changing it needs update:data (this "
                       "credential may only add points)",
                       buf);
    if (!exists && !call->upsert.create)
        return ag_fail(&call->diag, AG_EFORBIDDEN,
                       "Forbidden: point %s does not exist, and adding it needs create:data (this "
                       "credential may only change existing points)",
                       buf);
    return check_write_scope(call, c, id, new_payload,
                             exists ? call->upsert.update_rows : call->upsert.create_rows);
}

int ag_op_commit(ag_call_t *call, ag_collection_t *c, ag_batch_t *ms)
{
    /* Read under the write mutex, which tenant changes also hold: a tenant deactivated or
     * deleted meanwhile is seen here. */
    ag_tenancy_t *tenancy = NULL;
    if (ag_store_tenancy_locked(call->api->store, c, &tenancy) != 0)
        return ag_fail(&call->diag, AG_ENOTFOUND, "Not found: Collection `%s` doesn't exist!",
                       ag_coll_name(c));
    int trc = 0;
    for (size_t i = 0; i < ms->n && trc == 0; i++)
        if (!ms->m[i].delete_point && ms->m[i].payload)
            trc = ag_tenant_check_payload(call, ag_tenancy_json(tenancy), &ms->m[i].id,
                                          ms->m[i].payload);
    ag_tenancy_release(tenancy);
    if (trc)
        return trc;
    for (size_t i = 0; i < ms->n; i++) {
        const ag_mutation_t *m = &ms->m[i];
        if (m->delete_point)
            continue;
        json_t *np = ag_coll_next_payload(c, m);
        if (!np)
            return ag_fail(&call->diag, AG_ENOMEM, "out of memory");
        int rc = call->upsert.split ? check_upsert_grant(call, c, &m->id, np)
                                    : check_write_scope(call, c, &m->id, np, call->restriction);
        json_decref(np);
        if (rc)
            return rc;
    }
    if (call->dry_run)
        return 0;
    return ag_batch_apply(c, ms, call->wait, &call->diag);
}

/* ---- point selection ----------------------------------------------------------------------- */

/* Ids of existing points matching a filter, within the caller's scope (query layer). */
static int select_filter(ag_call_t *call, ag_collection_t *c, const json_t *filter,
                         const char *path, ag_point_id_t **out, size_t *n)
{
    ag_scope_t sc;
    int rc = ag_scope_init(&sc, c, call->restriction, filter, path, &call->diag);
    if (rc)
        return rc;
    ag_qctx_t ctx = {.arena = &call->arena,
                     .diag = &call->diag,
                     .deadline = call->deadline,
                     .timeout_s = call->timeout_s,
                     .restriction = call->restriction};
    rc = ag_query_select_ids(&ctx, &sc, filter, out, n);
    ag_scope_release(&sc);
    return rc;
}

/* Qdrant's PointsSelector: {"points": [ids]} or {"filter": {...}} (keys taken from body). */
static int select_points(ag_call_t *call, ag_collection_t *c, const json_t *body,
                         ag_point_id_t **ids, size_t *n, bool *by_filter)
{
    json_t *pts = json_object_get(body, "points");
    json_t *flt = json_object_get(body, "filter");
    *by_filter = false;
    if (pts && !json_is_null(pts) && flt && !json_is_null(flt))
        return ag_fail(&call->diag, AG_EINVAL, "give either points or filter, not both");
    if (pts && !json_is_null(pts))
        return ag_parse_ids(call, pts, "points", ids, n);
    if (flt && !json_is_null(flt)) {
        *by_filter = true;
        return select_filter(call, c, flt, "filter", ids, n);
    }
    return ag_fail(&call->diag, AG_EINVAL, "points or filter: one of them is required");
}

/* A listed id that does not exist, or is outside the caller's read scope, is not found. */
static int require_point(ag_call_t *call, ag_collection_t *c, const ag_point_id_t *id,
                         uint32_t *slot)
{
    uint32_t s = ag_coll_find(c, id);
    *slot = s;
    if (s == UINT32_MAX && call->dry_run)
        return 0; /* an earlier operation of the same batch may create it */
    if (s == UINT32_MAX || !ag_coll_match(c, s, call->restriction)) {
        char buf[40];
        ag_id_format(id, buf, sizeof(buf));
        return ag_fail(&call->diag, AG_ENOTFOUND, "Not found: No point with id %s found", buf);
    }
    *slot = s;
    return 0;
}

/* ---- operations (caller holds the collection's write mutex) -------------------------------- */

static int payload_of(ag_call_t *call, const json_t *p, const char *path, json_t **out)
{
    *out = NULL;
    if (!p || json_is_null(p))
        return 0;
    if (!json_is_object(p))
        return ag_fail(&call->diag, AG_EINVAL, "%s: payload must be a JSON object", path);
    *out = json_deep_copy(p);
    return *out ? 0 : AG_ENOMEM;
}

/* Qdrant requires `vector` on every upserted point, but a point may carry any subset of the
 * collection's vectors, the unnamed one included ("vector": {} or only a sparse vector): it is
 * then found only by searches on the vectors it has (docs/COMPATIBILITY.md "Optional vectors"). */
static int require_vector(ag_call_t *call, const json_t *v, const char *path)
{
    if (!v || json_is_null(v))
        return ag_fail(&call->diag, AG_EUNPROCESSABLE, "%s: required", path);
    return 0;
}

/* points[i] of an upsert (with_payload) or a vector update: an object of the keys those take,
 * whose id becomes a new mutation's (*out). */
static int point_record(ag_call_t *call, const json_t *p, size_t i, bool with_payload,
                        ag_batch_t *ms, ag_mutation_t **out)
{
    char path[96];
    snprintf(path, sizeof(path), "points[%zu]", i);
    if (!json_is_object(p))
        return ag_fail(&call->diag, AG_EINVAL, "%s: expected an object", path);
    int rc = with_payload ? AG_JSON_ONLY(p, path, &call->diag, "id", "vector", "payload")
                          : AG_JSON_ONLY(p, path, &call->diag, "id", "vector");
    if (rc)
        return rc;
    ag_mutation_t *m = ag_batch_add(ms, &call->arena);
    if (!m)
        return AG_ENOMEM;
    snprintf(path, sizeof(path), "points[%zu].id", i);
    if ((rc = ag_id_parse(json_object_get(p, "id"), &m->id, path, &call->diag)) != 0)
        return rc;
    *out = m;
    return 0;
}

/* Which points of an upsert or a vector update are written (Qdrant): update_mode "upsert" (the
 * default) writes every point, "insert_only" only those that do not exist yet, "update_only"
 * only those that do; update_filter (compiled, or NULL) keeps an existing point only when it
 * matches the filter now (new points are inserted regardless). The others are left out of the
 * batch, unchanged and unreported, as in Qdrant. In the write session, so existence is what it
 * is when the batch is applied; a repeated id counts as existing after its first appearance. */
static void keep_points(ag_collection_t *c, ag_batch_t *ms, const char *mode,
                        const ag_filter_t *update_filter)
{
    bool insert_only = mode && strcmp(mode, "insert_only") == 0;
    bool update_only = mode && strcmp(mode, "update_only") == 0;
    size_t k = 0;
    for (size_t i = 0; i < ms->n; i++) {
        uint32_t slot = ag_coll_find(c, &ms->m[i].id);
        bool exists = slot != UINT32_MAX, earlier = false;
        for (size_t j = 0; j < k && !exists && !earlier; j++)
            earlier = ag_id_equal(&ms->m[j].id, &ms->m[i].id);
        bool keep = insert_only ? !exists && !earlier : update_only ? exists || earlier : true;
        if (keep && exists && update_filter && !ag_coll_match(c, slot, update_filter))
            keep = false;
        if (!keep) {
            json_decref(ms->m[i].payload);
            continue;
        }
        ms->m[k++] = ms->m[i];
    }
    ms->n = k;
}

/* The update_filter of a body, compiled (*out NULL when absent). */
static int parse_update_filter(ag_call_t *call, const json_t *body, ag_filter_t **out)
{
    *out = NULL;
    const json_t *f = json_object_get(body, "update_filter");
    if (!f || json_is_null(f))
        return 0;
    ag_diag_t d = {{0}};
    int rc = ag_filter_compile_budgeted(f, out, &d);
    return rc ? ag_fail(&call->diag, rc, "update_filter: %s", d.msg) : 0;
}

int ag_op_upsert(ag_call_t *call, ag_collection_t *c, const json_t *body)
{
    int rc = AG_JSON_ONLY(body, "", &call->diag, "points", "batch", "shard_key", "update_filter",
                          "update_mode");
    if (rc)
        return rc;
    const char *mode = NULL;
    if ((rc = ag_json_get_str(body, "update_mode", "", &mode, &call->diag)) != 0)
        return rc;
    if (mode && strcmp(mode, "upsert") != 0 && strcmp(mode, "insert_only") != 0 &&
        strcmp(mode, "update_only") != 0)
        return ag_fail(&call->diag, AG_EINVAL,
                       "update_mode: expected upsert, insert_only or update_only");
    ag_batch_t ms = {0};
    json_t *points = json_object_get(body, "points");
    json_t *batch = json_object_get(body, "batch");
    char path[96];
    if (points && batch)
        return ag_fail(&call->diag, AG_EINVAL, "give either points or batch, not both");
    if (points) {
        if (!json_is_array(points))
            return ag_fail(&call->diag, AG_EINVAL, "points: expected an array");
        if (json_array_size(points) > AG_MAX_BATCH)
            return ag_fail(&call->diag, AG_EINVAL, "points: at most %d per request", AG_MAX_BATCH);
        size_t i;
        json_t *p;
        json_array_foreach(points, i, p)
        {
            ag_mutation_t *m;
            if ((rc = point_record(call, p, i, true, &ms, &m)) != 0)
                break;
            m->replace_vectors = true;
            snprintf(path, sizeof(path), "points[%zu].vector", i);
            if ((rc = require_vector(call, json_object_get(p, "vector"), path)) != 0 ||
                (rc = ag_parse_point_vector(call, c, json_object_get(p, "vector"), path, m)) != 0)
                break;
            snprintf(path, sizeof(path), "points[%zu].payload", i);
            if ((rc = payload_of(call, json_object_get(p, "payload"), path, &m->payload)) != 0)
                break;
            if (!m->payload && !(m->payload = json_object())) {
                rc = AG_ENOMEM;
                break;
            }
        }
    } else if (batch) {
        if (!json_is_object(batch))
            return ag_fail(&call->diag, AG_EINVAL, "batch: expected an object");
        if ((rc = AG_JSON_ONLY(batch, "batch", &call->diag, "ids", "vectors", "payloads")) != 0)
            return rc;
        json_t *ids = json_object_get(batch, "ids");
        json_t *vectors = json_object_get(batch, "vectors");
        json_t *payloads = json_object_get(batch, "payloads");
        if (!json_is_array(ids))
            return ag_fail(&call->diag, AG_EINVAL, "batch.ids: expected an array");
        size_t n = json_array_size(ids);
        if (n > AG_MAX_BATCH)
            return ag_fail(&call->diag, AG_EINVAL, "batch.ids: at most %d per request",
                           AG_MAX_BATCH);
        if (payloads && !json_is_null(payloads) &&
            (!json_is_array(payloads) || json_array_size(payloads) != n))
            return ag_fail(&call->diag, AG_EINVAL,
                           "batch.payloads: expected an array as long as batch.ids");
        if (vectors && !json_is_array(vectors) && !json_is_object(vectors))
            return ag_fail(&call->diag, AG_EINVAL,
                           "batch.vectors: expected an array or an object of named columns");
        if (!vectors || json_is_null(vectors))
            return ag_fail(&call->diag, AG_EUNPROCESSABLE, "batch.vectors: required");
        if (json_is_array(vectors) && json_array_size(vectors) != n)
            return ag_fail(&call->diag, AG_EINVAL,
                           "batch.vectors: expected as many vectors as ids");
        const char *vn;
        json_t *col;
        json_object_foreach(json_is_object(vectors) ? vectors : NULL, vn, col)
        {
            if (!json_is_array(col) || json_array_size(col) != n)
                return ag_fail(&call->diag, AG_EINVAL,
                               "batch.vectors.%.200s: expected as many vectors as ids", vn);
            if (ag_coll_vector(c, vn) < 0 && ag_coll_sparse(c, vn) < 0)
                return ag_fail(&call->diag, AG_EINVAL,
                               "Wrong input: Not existing vector name error: %.200s", vn);
        }
        for (size_t i = 0; i < n && rc == 0; i++) {
            ag_mutation_t *m = ag_batch_add(&ms, &call->arena);
            if (!m) {
                rc = AG_ENOMEM;
                break;
            }
            m->replace_vectors = true;
            snprintf(path, sizeof(path), "batch.ids[%zu]", i);
            if ((rc = ag_id_parse(json_array_get(ids, i), &m->id, path, &call->diag)) != 0)
                break;
            if (json_is_array(vectors)) {
                snprintf(path, sizeof(path), "batch.vectors[%zu]", i);
                rc = ag_parse_point_vector(call, c, json_array_get(vectors, i), path, m);
            } else {
                json_object_foreach(json_is_object(vectors) ? vectors : NULL, vn, col)
                {
                    json_t *one = json_pack("{s:O}", vn, json_array_get(col, i));
                    snprintf(path, sizeof(path), "batch.vectors.%.40s[%zu]", vn, i);
                    rc = one ? ag_parse_point_vector(call, c, one, "batch.vectors", m) : AG_ENOMEM;
                    json_decref(one);
                    if (rc)
                        break;
                }
            }
            if (rc)
                break;
            snprintf(path, sizeof(path), "batch.payloads[%zu]", i);
            if (json_is_array(payloads) &&
                (rc = payload_of(call, json_array_get(payloads, i), path, &m->payload)) != 0)
                break;
            if (!m->payload && !(m->payload = json_object()))
                rc = AG_ENOMEM;
        }
    } else {
        return ag_fail(&call->diag, AG_EINVAL, "points or batch: one of them is required");
    }
    ag_filter_t *uf = NULL;
    if (rc == 0 && (rc = parse_update_filter(call, body, &uf)) == 0)
        keep_points(c, &ms, mode, uf);
    ag_filter_free(uf);
    if (rc == 0)
        rc = ag_op_commit(call, c, &ms);
    ag_batch_release(&ms);
    return rc;
}

int ag_op_delete(ag_call_t *call, ag_collection_t *c, const json_t *body)
{
    int rc = AG_JSON_ONLY(body, "", &call->diag, "points", "filter", "shard_key");
    if (rc)
        return rc;
    ag_point_id_t *ids;
    size_t n;
    bool by_filter;
    if ((rc = select_points(call, c, body, &ids, &n, &by_filter)) != 0)
        return rc;
    ag_batch_t ms = {0};
    for (size_t i = 0; i < n; i++) {
        uint32_t s = ag_coll_find(c, &ids[i]);
        /* Deletes touch only points inside the caller's scope; others are left alone. */
        if (s != UINT32_MAX && !ag_coll_match(c, s, call->restriction))
            continue;
        ag_mutation_t *m = ag_batch_add(&ms, &call->arena);
        if (!m)
            return AG_ENOMEM;
        m->id = ids[i];
        m->delete_point = true;
    }
    rc = call->dry_run ? 0 : ag_batch_apply(c, &ms, call->wait, &call->diag);
    ag_batch_release(&ms);
    return rc;
}

int ag_op_payload(ag_call_t *call, ag_collection_t *c, const json_t *body, ag_pl_op_t op)
{
    int rc;
    const json_t *payload = NULL;
    const json_t *keys = NULL;
    const char *key = NULL;
    switch (op) {
    case AG_PL_SET:
    case AG_PL_OVERWRITE:
        rc = AG_JSON_ONLY(body, "", &call->diag, "payload", "points", "filter", "key", "shard_key");
        if (rc)
            return rc;
        payload = json_object_get(body, "payload");
        if (!json_is_object(payload))
            return ag_fail(&call->diag, AG_EINVAL, "payload: expected a JSON object");
        if ((rc = ag_json_get_str(body, "key", "", &key, &call->diag)) != 0)
            return rc;
        if (key && (rc = ag_payload_path_check(key, &call->diag)) != 0)
            return rc;
        break;
    case AG_PL_DELETE_KEYS:
        rc = AG_JSON_ONLY(body, "", &call->diag, "keys", "points", "filter", "shard_key");
        if (rc)
            return rc;
        keys = json_object_get(body, "keys");
        if (!json_is_array(keys))
            return ag_fail(&call->diag, AG_EINVAL, "keys: expected an array of payload keys");
        size_t i;
        json_t *k;
        json_array_foreach(keys, i, k)
        {
            if (!json_is_string(k) || ag_payload_path_check(json_string_value(k), NULL) != 0)
                return ag_fail(&call->diag, AG_EINVAL, "keys[%zu]: expected a payload key", i);
        }
        break;
    case AG_PL_CLEAR:
        rc = AG_JSON_ONLY(body, "", &call->diag, "points", "filter", "shard_key");
        if (rc)
            return rc;
        break;
    }
    ag_point_id_t *ids;
    size_t n;
    bool by_filter;
    if ((rc = select_points(call, c, body, &ids, &n, &by_filter)) != 0)
        return rc;
    const ag_payload_edit_t edit = {op, payload, key, keys};
    ag_batch_t ms = {0};
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint32_t s = UINT32_MAX;
        if ((rc = require_point(call, c, &ids[i], &s)) != 0)
            break;
        json_t *cur = s == UINT32_MAX ? json_object() : ag_coll_payload_json(c, s);
        json_t *next = cur ? ag_payload_edit(cur, &edit) : NULL;
        json_decref(cur);
        if (!next) {
            rc = AG_ENOMEM;
            break;
        }
        ag_mutation_t *m = ag_batch_add(&ms, &call->arena);
        if (!m) {
            json_decref(next);
            rc = AG_ENOMEM;
            break;
        }
        m->id = ids[i];
        m->payload = next;
    }
    if (rc == 0)
        rc = ag_op_commit(call, c, &ms);
    ag_batch_release(&ms);
    return rc;
}

int ag_op_update_vectors(ag_call_t *call, ag_collection_t *c, const json_t *body)
{
    int rc = AG_JSON_ONLY(body, "", &call->diag, "points", "shard_key", "update_filter");
    if (rc)
        return rc;
    json_t *points = json_object_get(body, "points");
    if (!json_is_array(points))
        return ag_fail(&call->diag, AG_EINVAL, "points: expected an array");
    ag_batch_t ms = {0};
    char path[96];
    size_t i;
    json_t *p;
    json_array_foreach(points, i, p)
    {
        ag_mutation_t *m;
        if ((rc = point_record(call, p, i, false, &ms, &m)) != 0)
            break;
        uint32_t s = UINT32_MAX;
        if ((rc = require_point(call, c, &m->id, &s)) != 0)
            break;
        json_t *v = json_object_get(p, "vector");
        if (!v || json_is_null(v)) {
            rc = ag_fail(&call->diag, AG_EINVAL, "points[%zu].vector: required", i);
            break;
        }
        snprintf(path, sizeof(path), "points[%zu].vector", i);
        if (json_is_object(v) && json_object_size(v) == 0) {
            rc = ag_fail(&call->diag, AG_EUNPROCESSABLE,
                         "Validation error in JSON body: [%s: must specify vectors to update for "
                         "point]",
                         path);
            break;
        }
        if ((rc = ag_parse_point_vector(call, c, v, path, m)) != 0)
            break;
    }
    ag_filter_t *uf = NULL;
    if (rc == 0 && (rc = parse_update_filter(call, body, &uf)) == 0)
        keep_points(c, &ms, NULL, uf);
    ag_filter_free(uf);
    if (rc == 0)
        rc = ag_op_commit(call, c, &ms);
    ag_batch_release(&ms);
    return rc;
}

int ag_op_delete_vectors(ag_call_t *call, ag_collection_t *c, const json_t *body)
{
    int rc = AG_JSON_ONLY(body, "", &call->diag, "points", "filter", "vector", "shard_key");
    if (rc)
        return rc;
    json_t *names = json_object_get(body, "vector");
    if (!json_is_array(names))
        return ag_fail(&call->diag, AG_EINVAL, "vector: expected an array of vector names");
    int dense[AG_MAX_VECTORS], sparse[AG_MAX_VECTORS], nd = 0, ns = 0;
    size_t i;
    json_t *nm;
    json_array_foreach(names, i, nm)
    {
        const char *s = json_is_string(nm) ? json_string_value(nm) : NULL;
        int vi = s ? ag_coll_vector(c, s) : -1, si = s ? ag_coll_sparse(c, s) : -1;
        if (vi >= 0 && nd < AG_MAX_VECTORS)
            dense[nd++] = vi;
        else if (si >= 0 && ns < AG_MAX_VECTORS)
            sparse[ns++] = si;
        else
            return ag_fail(&call->diag, AG_EINVAL,
                           "Wrong input: Not existing vector name error: %.200s",
                           s ? s : "(not a string)");
    }
    ag_point_id_t *ids;
    size_t n;
    bool by_filter;
    if ((rc = select_points(call, c, body, &ids, &n, &by_filter)) != 0)
        return rc;
    ag_batch_t ms = {0};
    for (size_t k = 0; k < n && rc == 0; k++) {
        uint32_t s = UINT32_MAX;
        if ((rc = require_point(call, c, &ids[k], &s)) != 0)
            break;
        ag_mutation_t *m = ag_batch_add(&ms, &call->arena);
        if (!m) {
            rc = AG_ENOMEM;
            break;
        }
        m->id = ids[k];
        for (int d = 0; d < nd; d++)
            m->dense_op[dense[d]] = AG_VEC_CLEAR;
        for (int d = 0; d < ns; d++)
            m->sparse_op[sparse[d]] = AG_VEC_CLEAR;
    }
    if (rc == 0)
        rc = ag_op_commit(call, c, &ms);
    ag_batch_release(&ms);
    return rc;
}
