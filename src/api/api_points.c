/* Point write endpoints (docs/API.md): upsert (with a fast path for the common record and column
 * forms),
 * delete, vectors, payload edits and batch updates; the operations are in ag_point_ops.c. */
#include <stdio.h>

#include "api/ag_guard.h"
#include "api/ag_point_ops.h"
#include "json/ag_fastpoints.h"
#include "json/ag_json.h"

/* ---- endpoint wrappers --------------------------------------------------------------------- */

typedef int (*op_fn)(ag_call_t *, ag_collection_t *, const json_t *);

typedef struct write_op {
    ag_call_t *call;
    op_fn fn; /* NULL: a payload edit */
    ag_pl_op_t pl;
    ag_batch_t *batch;         /* upsert_fast: built already */
    const ag_fastcols_t *cols; /* ... against these vectors of the collection */
} write_op_t;

/* Are c's dense vectors still those the fast upsert parsed against? A named vector added or
 * removed meanwhile (ag_coll_vectors) renumbers them. Caller holds the write session. */
static bool same_vectors(const ag_collection_t *c, const ag_fastcols_t *cols)
{
    if ((size_t)ag_coll_nvec(c) != cols->n || ag_coll_nsparse(c) != 0)
        return false;
    for (size_t v = 0; v < cols->n; v++) {
        ag_dense_info_t d;
        ag_coll_dense_info(c, (int)v, &d);
        if (strcmp(d.name, cols->names[v]) != 0 || d.dim != cols->dims[v] || d.multi ||
            d.dtype != AG_DTYPE_FLOAT32)
            return false;
    }
    return true;
}

static int run_op(void *ud, ag_collection_t *c)
{
    write_op_t *w = ud;
    if (w->batch && same_vectors(c, w->cols))
        return ag_op_commit(w->call, c, w->batch);
    if (w->batch) { /* the vectors changed since the fast parse: the strict path, in the session */
        int rc = ag_call_body(w->call);
        return rc ? rc : ag_op_upsert(w->call, c, w->call->body);
    }
    return w->fn ? w->fn(w->call, c, w->call->body)
                 : ag_op_payload(w->call, c, w->call->body, w->pl);
}

static int run_write(ag_call_t *call, op_fn fn, ag_pl_op_t pl, bool is_payload)
{
    write_op_t w = {call, is_payload ? NULL : fn, pl, NULL, NULL};
    int rc = ag_call_write(call, run_op, &w);
    if (rc == 0)
        call->result = ag_update_result(call);
    return rc;
}

/* The common upserts (records or columns, plain float32 dense vectors, unnamed or named) skip the
 * generic JSON tree; anything else, including every malformed body, takes the strict path, which
 * explains what is wrong. */
static int upsert_fast(ag_call_t *call, bool *handled)
{
    *handled = false;
    ag_collection_t *c;
    if (ag_call_collection(call, &c) != 0)
        return 0;
    int rc = 0;
    ag_fastpoint_t *pts = NULL;
    size_t n = 0;
    ag_fastcols_t cols = {0};
    ag_dense_info_t info[AG_FP_MAX_VECS];
    /* Plain float32 only: multivectors, other datatypes and sparse vectors take the strict path. */
    bool plain = ag_coll_nsparse(c) == 0 && ag_coll_nvec(c) >= 1 &&
                 (size_t)ag_coll_nvec(c) <= AG_FP_MAX_VECS &&
                 (ag_coll_unnamed(c) ? ag_coll_nvec(c) == 1 : true);
    for (int v = 0; plain && v < ag_coll_nvec(c); v++) {
        ag_coll_dense_info(c, v, &info[v]);
        plain = !info[v].multi && info[v].dtype == AG_DTYPE_FLOAT32 &&
                (info[v].name[0] != '\0') == !ag_coll_unnamed(c);
        size_t nl = strlen(info[v].name) + 1;
        char *name = ag_arena_alloc(&call->arena, nl); /* the layout may change meanwhile */
        if (name)
            memcpy(name, info[v].name, nl);
        cols.names[v] = name;
        plain = plain && name;
        cols.dims[v] = info[v].dim;
        cols.n = (size_t)v + 1;
    }
    if (plain && ag_fastpoints_parse_cols(call->req->body, call->req->body_len, &cols, &call->arena,
                                          &pts, &n)) {
        *handled = true;
        ag_batch_t ms = {0};
        for (size_t i = 0; i < n && rc == 0; i++) {
            ag_mutation_t *m = ag_batch_add(&ms, &call->arena);
            if (!m) {
                rc = AG_ENOMEM;
                break;
            }
            m->id = pts[i].id;
            m->payload = pts[i].payload; /* ownership moves to the mutation */
            pts[i].payload = NULL;
            m->replace_vectors = true;
            for (size_t v = 0; v < cols.n; v++) {
                if (!pts[i].vecs[v])
                    continue;
                if (info[v].dist == AG_DIST_COSINE)
                    ag_vector_normalize(pts[i].vecs[v], info[v].dim);
                m->dense_op[v] = AG_VEC_SET;
                m->dense[v] = pts[i].vecs[v];
                m->dense_rows[v] = 1;
            }
        }
        ag_fastpoints_release(pts, n);
        write_op_t w = {call, NULL, AG_PL_SET, &ms, &cols};
        if (rc == 0) /* else out of memory building the batch: nothing was written */
            rc = ag_call_write(call, run_op, &w);
        ag_batch_release(&ms);
        if (rc == 0)
            call->result = ag_update_result(call);
    }
    ag_coll_unref(c);
    return rc;
}

static int h_upsert(ag_call_t *call)
{
    bool handled = false;
    int rc = 0;
    /* A body already parsed (a sharded collection's router kept this node's points) is used. */
    if (!call->body)
        rc = upsert_fast(call, &handled);
    if (handled)
        return rc;
    if ((rc = ag_call_body(call)) != 0)
        return rc;
    return run_write(call, ag_op_upsert, AG_PL_SET, false);
}
static int h_delete(ag_call_t *call)
{
    return run_write(call, ag_op_delete, AG_PL_SET, false);
}
static int h_set_payload(ag_call_t *call)
{
    return run_write(call, NULL, AG_PL_SET, true);
}
static int h_overwrite_payload(ag_call_t *call)
{
    return run_write(call, NULL, AG_PL_OVERWRITE, true);
}
static int h_delete_payload(ag_call_t *call)
{
    return run_write(call, NULL, AG_PL_DELETE_KEYS, true);
}
static int h_clear_payload(ag_call_t *call)
{
    return run_write(call, NULL, AG_PL_CLEAR, true);
}
static int h_update_vectors(ag_call_t *call)
{
    return run_write(call, ag_op_update_vectors, AG_PL_SET, false);
}
static int h_delete_vectors(ag_call_t *call)
{
    return run_write(call, ag_op_delete_vectors, AG_PL_SET, false);
}

/* The operations of a batch, authorized one by one (run_batch). */
typedef struct batch_run {
    ag_call_t *call;
    const json_t *ops;
    ag_filter_t **restr;
    ag_upsert_grant_t *grants;
} batch_run_t;

/* In the write session: pass 1 validates every operation without applying any (a bad one writes
 * nothing); pass 2 applies them in order. Only a point that vanishes between the passes, or a
 * storage failure, can still stop pass 2 part-way. */
static int run_batch(void *ud, ag_collection_t *c)
{
    batch_run_t *br = ud;
    ag_call_t *call = br->call;
    ag_filter_t **restr = br->restr;
    ag_upsert_grant_t *grants = br->grants;
    int rc = 0;
    size_t i;
    json_t *op;
    ag_upsert_grant_t route_grant = call->upsert; /* lent out per operation below */
    ag_filter_t *route_restriction = call->restriction;
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        call->dry_run = pass == 0;
        json_array_foreach(br->ops, i, op)
        {
            const char *name = json_object_iter_key(json_object_iter(op));
            json_t *b = json_object_get(op, name);
            if (!json_is_object(b)) {
                rc = ag_fail(&call->diag, AG_EINVAL, "operations[%zu].%s: expected an object", i,
                             name);
                break;
            }
            call->restriction = restr[i];
            call->upsert = grants[i];
            json_t *wrapped = NULL;
            if (strcmp(name, "delete") == 0 || strcmp(name, "clear_payload") == 0) {
                /* These take a bare PointsSelector, possibly nested as {"points": ...}. */
                wrapped = json_incref(b);
            }
            if (strcmp(name, "upsert") == 0)
                rc = ag_op_upsert(call, c, b);
            else if (strcmp(name, "delete") == 0)
                rc = ag_op_delete(call, c, wrapped);
            else if (strcmp(name, "set_payload") == 0)
                rc = ag_op_payload(call, c, b, AG_PL_SET);
            else if (strcmp(name, "overwrite_payload") == 0)
                rc = ag_op_payload(call, c, b, AG_PL_OVERWRITE);
            else if (strcmp(name, "delete_payload") == 0)
                rc = ag_op_payload(call, c, b, AG_PL_DELETE_KEYS);
            else if (strcmp(name, "clear_payload") == 0)
                rc = ag_op_payload(call, c, wrapped, AG_PL_CLEAR);
            else if (strcmp(name, "update_vectors") == 0)
                rc = ag_op_update_vectors(call, c, b);
            else
                rc = ag_op_delete_vectors(call, c, b);
            json_decref(wrapped);
            if (rc) {
                char msg[sizeof(call->diag.msg)];
                snprintf(msg, sizeof(msg), "%s", call->diag.msg);
                ag_fail(&call->diag, rc, "operations[%zu].%s: %s", i, name, msg);
                break;
            }
        }
    }
    call->dry_run = false;
    call->restriction = route_restriction;
    call->upsert = route_grant;
    return rc;
}

static int h_batch(ag_call_t *call)
{
    int rc = AG_JSON_ONLY(call->body, "", &call->diag, "operations");
    if (rc)
        return rc;
    json_t *ops = json_object_get(call->body, "operations");
    if (!json_is_array(ops))
        return ag_fail(&call->diag, AG_EINVAL, "operations: expected an array");
    static const char *names[] = {
        "upsert",         "delete",        "set_payload",    "overwrite_payload",
        "delete_payload", "clear_payload", "update_vectors", "delete_vectors"};
    size_t i;
    json_t *op;
    json_array_foreach(ops, i, op)
    {
        if (!json_is_object(op) || json_object_size(op) != 1)
            return ag_fail(&call->diag, AG_EINVAL, "operations[%zu]: expected one operation", i);
        bool known = false;
        for (size_t k = 0; k < AG_ARRAY_LEN(names); k++)
            known = known || json_object_get(op, names[k]) != NULL;
        if (!known)
            return ag_fail(&call->diag, AG_EINVAL, "operations[%zu]: unknown operation", i);
    }
    /* The route admits any reader; each operation is authorized on its own, as if it had been
     * sent to its own endpoint, and runs under its own row restriction. */
    static const char *actions[] = {"write:points",  "delete:points", "update:data",
                                    "update:data",   "update:data",   "update:data",
                                    "update:points", "update:points"};
    size_t nops = json_array_size(ops);
    ag_filter_t **restr = ag_arena_calloc(&call->arena, nops ? nops : 1, sizeof(*restr));
    /* Upserts may be granted verb by verb (new ids: create, existing ones: update). */
    ag_upsert_grant_t *grants = ag_arena_calloc(&call->arena, nops ? nops : 1, sizeof(*grants));
    if (!restr || !grants)
        return AG_ENOMEM;
    json_array_foreach(ops, i, op)
    {
        const char *name = json_object_iter_key(json_object_iter(op));
        size_t k = 0;
        while (k < AG_ARRAY_LEN(names) && strcmp(names[k], name) != 0)
            k++;
        const char *coll = call->coll ? ag_coll_name(call->coll) : call->params[0];
        if (k == 0)
            rc = ag_guard_authorize_upsert(call, coll, &restr[i], &grants[i], &call->diag);
        else
            rc = ag_guard_authorize(call, actions[k], coll, &restr[i], &call->diag);
        if (rc) {
            char msg[sizeof(call->diag.msg)];
            snprintf(msg, sizeof(msg), "%s", call->diag.msg);
            ag_fail(&call->diag, rc, "operations[%zu].%s: %s", i, name, msg);
            break;
        }
    }
    batch_run_t br = {call, ops, restr, grants};
    if (rc == 0)
        rc = ag_call_write(call, run_batch, &br);
    for (size_t k = 0; k < nops; k++) {
        ag_filter_free(restr[k]);
        ag_upsert_grant_release(&grants[k]);
    }
    if (rc)
        return rc;
    json_t *arr = json_array();
    for (i = 0; arr && i < json_array_size(ops); i++)
        json_array_append_new(arr, ag_update_result(call));
    call->result = arr;
    return arr ? 0 : AG_ENOMEM;
}

const ag_route_t ag_routes_points[] = {
    {AG_HTTP_PUT, "/collections/{name}/points", "write:points", AG_SCOPE_COLLECTION, h_upsert, true,
     false, false, true},
    {AG_HTTP_POST, "/collections/{name}/points/delete", "delete:points", AG_SCOPE_COLLECTION,
     h_delete, true, false, false, false, true},
    {AG_HTTP_PUT, "/collections/{name}/points/vectors", "update:points", AG_SCOPE_COLLECTION,
     h_update_vectors, true, false},
    {AG_HTTP_POST, "/collections/{name}/points/vectors/delete", "update:points",
     AG_SCOPE_COLLECTION, h_delete_vectors, true, false},
    {AG_HTTP_POST, "/collections/{name}/points/payload", "update:data", AG_SCOPE_COLLECTION,
     h_set_payload, true, false},
    {AG_HTTP_PUT, "/collections/{name}/points/payload", "update:data", AG_SCOPE_COLLECTION,
     h_overwrite_payload, true, false},
    {AG_HTTP_POST, "/collections/{name}/points/payload/delete", "update:data", AG_SCOPE_COLLECTION,
     h_delete_payload, true, false},
    {AG_HTTP_POST, "/collections/{name}/points/payload/clear", "update:data", AG_SCOPE_COLLECTION,
     h_clear_payload, true, false},
    {AG_HTTP_POST, "/collections/{name}/points/batch", "read:data", AG_SCOPE_COLLECTION, h_batch,
     true, false},
};
const size_t ag_routes_points_len = AG_ARRAY_LEN(ag_routes_points);
