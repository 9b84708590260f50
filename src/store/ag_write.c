#include "ag_write.h"

#include "ag_grow.h"
#include "index/ag_filter.h"

/* Points deleted per transaction when a tenant goes. */
#define TENANT_DELETE_CHUNK 1024

int ag_coll_write(ag_collection_t *c, ag_coll_write_fn fn, void *ud)
{
    int rc = ag_coll_write_begin(c);
    if (rc)
        return rc;
    rc = fn(ud, c);
    ag_coll_write_end(c);
    return rc;
}

/* ---- batches ------------------------------------------------------------------------------- */

/* Memory: the array is arena-allocated (each growth copies into a new block of the arena). */
ag_mutation_t *ag_batch_add(ag_batch_t *b, ag_arena_t *arena)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        ag_mutation_t *g = ag_arena_alloc(arena, cap * sizeof(*g));
        if (!g)
            return NULL;
        if (b->n)
            memcpy(g, b->m, b->n * sizeof(*g));
        b->m = g;
        b->cap = cap;
    }
    ag_mutation_t *m = &b->m[b->n++];
    memset(m, 0, sizeof(*m));
    return m;
}

void ag_batch_release(ag_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        json_decref(b->m[i].payload);
    b->n = 0;
}

int ag_batch_apply(ag_collection_t *c, ag_batch_t *b, bool sync, ag_diag_t *diag)
{
    return ag_coll_apply(c, b->m, b->n, sync, diag);
}

json_t *ag_coll_next_payload(const ag_collection_t *c, const ag_mutation_t *m)
{
    if (m->payload)
        return json_incref(m->payload);
    uint32_t s = ag_coll_find(c, &m->id);
    return s == UINT32_MAX ? json_object() : ag_coll_payload_json(c, s);
}

/* ---- payload edits ------------------------------------------------------------------------- */

void ag_payload_delete_path(json_t *obj, const char *path)
{
    if (json_object_get(obj, path)) {
        json_object_del(obj, path);
        return;
    }
    char head[256];
    const char *rest = ag_payload_path_split(path, head, sizeof(head));
    json_t *sub = rest ? json_object_get(obj, head) : NULL;
    if (json_is_object(sub))
        ag_payload_delete_path(sub, rest);
}

/* Memory: returns a new object owned by the caller. */
json_t *ag_payload_edit(const json_t *cur, const ag_payload_edit_t *e)
{
    json_t *next = NULL;
    switch (e->op) {
    case AG_PL_SET:
        next = json_deep_copy(cur);
        if (next) {
            /* `key` may step into arrays ("a[].b", "a[0].b"): index/ag_filter.h. */
            if ((e->key ? ag_payload_set_at(next, e->key, e->payload)
                        : json_object_update(next, (json_t *)e->payload)) != 0) {
                json_decref(next);
                next = NULL;
            }
        }
        break;
    case AG_PL_OVERWRITE:
        next = json_deep_copy(e->payload);
        break;
    case AG_PL_DELETE_KEYS: {
        next = json_deep_copy(cur);
        size_t k;
        json_t *kv;
        json_array_foreach(e->keys, k, kv) if (next)
            ag_payload_delete_path(next, json_string_value(kv));
        break;
    }
    case AG_PL_CLEAR:
        next = json_object();
        break;
    }
    return next;
}

/* ---- tenants ------------------------------------------------------------------------------- */

typedef struct tenant_ids {
    const ag_collection_t *c;
    const ag_filter_t *f;
    ag_point_id_t *ids;
    size_t cap, n;
} tenant_ids_t;

static bool take_tenant_point(void *ud, uint32_t slot, const ag_point_id_t *id,
                              const json_t *payload)
{
    AG_UNUSED(payload);
    tenant_ids_t *ti = ud;
    if (ag_coll_match(ti->c, slot, ti->f))
        ti->ids[ti->n++] = *id;
    return ti->n < ti->cap;
}

/* Deletes every point whose key names tenant, in synced chunks; *deleted counts them. */
static int delete_tenant_points(ag_collection_t *c, const char *key, const char *tenant,
                                size_t *deleted, ag_diag_t *diag)
{
    json_t *v = json_string(tenant);
    ag_filter_t *f = NULL;
    int rc = v ? ag_filter_match_value(key, v, &f) : AG_ENOMEM;
    json_decref(v);
    if (rc)
        return rc;
    size_t cap = ag_coll_live(c) ? ag_coll_live(c) : 1;
    ag_point_id_t *ids = malloc(cap * sizeof(*ids));
    if (!ids) {
        ag_filter_free(f);
        return AG_ENOMEM;
    }
    tenant_ids_t ti = {c, f, ids, cap, 0};
    ag_coll_scan(c, take_tenant_point, &ti);
    size_t n = ti.n;
    ag_filter_free(f);
    ag_mutation_t *muts = calloc(TENANT_DELETE_CHUNK, sizeof(*muts));
    rc = muts ? 0 : AG_ENOMEM;
    for (size_t off = 0; rc == 0 && off < n; off += TENANT_DELETE_CHUNK) {
        size_t k = AG_MIN((size_t)TENANT_DELETE_CHUNK, n - off);
        memset(muts, 0, k * sizeof(*muts));
        for (size_t i = 0; i < k; i++) {
            muts[i].id = ids[off + i];
            muts[i].delete_point = true;
        }
        rc = ag_coll_apply(c, muts, k, true, diag);
        if (rc == 0)
            *deleted += k;
    }
    free(muts);
    free(ids);
    return rc;
}

int ag_store_tenant_delete(ag_store_t *st, ag_collection_t *c, const char *key, const char *tenant,
                           size_t *deleted, ag_diag_t *diag)
{
    *deleted = 0;
    int rc = ag_store_tenant_set(st, c, tenant, false, false, diag);
    if (rc == 0)
        rc = delete_tenant_points(c, key, tenant, deleted, diag);
    if (rc == 0)
        rc = ag_store_tenant_remove(st, c, tenant, diag);
    return rc;
}
