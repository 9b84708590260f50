/*
 * Named vectors added to or removed from an existing collection (PUT / DELETE
 * /collections/{c}/vectors/{name}; docs/API.md "Named vectors").
 *
 * A collection's vectors are numbered by their place in params (dense and sparse apart), and the
 * stored rows carry that number ("v:N" keys, store/ag_collection.h). Adding a vector appends it,
 * so no row moves. Removing one deletes its rows and renumbers the rows of the vectors after it,
 * inside the same transaction as the new catalog record; the graph files of the renumbered
 * vectors are removed (they are rebuilt when the collection is reloaded). The store then swaps in
 * a collection loaded from that transaction (ag_store_vector_change).
 */
#include <stdio.h>
#include <unistd.h>

#include "ag_grow.h"
#include "store/ag_collection_int.h"
#include "json/ag_json.h"

int ag_coll_vector_params(const ag_collection_t *c, const char *vname, const json_t *cfg,
                          json_t **out, ag_diag_t *diag)
{
    *out = NULL;
    int rc = ag_name_check(vname, strlen(vname), "vector", diag);
    if (rc)
        return rc;
    bool exists = ag_coll_vector(c, vname) >= 0 || ag_coll_sparse(c, vname) >= 0;
    json_t *body = json_object();
    json_t *dense = json_deep_copy(json_object_get(c->params, "vectors"));
    json_t *sparse = json_deep_copy(json_object_get(c->params, "sparse_vectors"));
    if (!sparse)
        sparse = json_object();
    if (!body || !dense || !sparse) {
        rc = AG_ENOMEM;
        goto out;
    }
    if (cfg) {
        if (exists) {
            rc = ag_fail(diag, AG_EEXIST, "Wrong input: Vector with name `%.200s` already exists",
                         vname);
            goto out;
        }
        if (!json_is_object(cfg) || json_object_size(cfg) != 1 ||
            (!json_object_get(cfg, "dense") && !json_object_get(cfg, "sparse"))) {
            rc = ag_fail(diag, AG_EINVAL, "expected {\"dense\": {...}} or {\"sparse\": {...}}");
            goto out;
        }
        if (c->unnamed && json_object_get(cfg, "dense")) {
            rc = ag_fail(diag, AG_EINVAL,
                         "Bad request: collection `%s` uses the single unnamed vector form; named "
                         "dense vectors cannot be added to it (sparse vectors can)",
                         c->name);
            goto out;
        }
        json_t *d = json_object_get(cfg, "dense");
        json_t *s = json_object_get(cfg, "sparse");
        rc = json_object_set(d ? dense : sparse, vname, d ? d : s) ? AG_ENOMEM : 0;
    } else if (!exists) {
        rc = ag_fail(diag, AG_ENOTFOUND, "Not found: Vector with name `%.200s` does not exist",
                     vname);
    } else if (c->unnamed && vname[0] == '\0') {
        rc = ag_fail(diag, AG_EINVAL,
                     "Bad request: the unnamed vector of collection `%s` cannot be removed",
                     c->name);
    } else {
        json_object_del(ag_coll_vector(c, vname) >= 0 ? dense : sparse, vname);
    }
    if (rc)
        goto out;
    /* Validated as a creation body would be (sizes, distances, names, the vector count). */
    json_object_set(body, "vectors", dense);
    json_object_set(body, "sparse_vectors", sparse);
    json_t *checked = NULL;
    if ((rc = ag_coll_parse_params(body, &checked, diag)) != 0)
        goto out;
    json_decref(checked);
    json_t *next = json_deep_copy(c->params);
    if (!next || json_object_set(next, "vectors", dense) != 0 ||
        json_object_set(next, "sparse_vectors", sparse) != 0) {
        json_decref(next);
        rc = AG_ENOMEM;
        goto out;
    }
    *out = next;
out:
    json_decref(body);
    json_decref(dense);
    json_decref(sparse);
    return rc;
}

typedef struct moved_row {
    uint8_t key[AG_ID_KEY_LEN + 2];
    void *val; /* owned copy */
    size_t len;
} moved_row_t;

int ag_coll_vector_rows(ag_collection_t *c, MDB_txn *txn, const char *vname, ag_diag_t *diag)
{
    int vi = ag_coll_vector(c, vname), si = ag_coll_sparse(c, vname);
    if (vi < 0 && si < 0)
        return 0; /* an added vector: nothing stored moves */
    unsigned gone = vi >= 0 ? (unsigned)vi : 0x8000u | (unsigned)si;
    /* Graph files are numbered like the rows: those of the vectors after the removed one (and
     * its own) no longer match; they are rebuilt at the reload. */
    if (vi >= 0 && c->index_dir) {
        char path[4096];
        for (int v = vi; v < c->nvec; v++) {
            snprintf(path, sizeof(path), "%s/%u.%d.hnsw", c->index_dir, c->cid, v);
            unlink(path);
        }
    }
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    moved_row_t *moved = NULL;
    size_t nmoved = 0, cap = 0;
    int rc = mdb_cursor_open(txn, c->dbi_vectors, &cur);
    if (rc)
        return ag_fail(diag, AG_ESTORAGE, "cannot read the vectors of '%s'", c->name);
    int mrc;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != AG_ID_KEY_LEN + 2)
            continue;
        const uint8_t *kb = k.mv_data;
        unsigned num = ((unsigned)kb[AG_ID_KEY_LEN] << 8) | kb[AG_ID_KEY_LEN + 1];
        bool same_kind = (num & 0x8000u) == (gone & 0x8000u);
        if (num == gone) {
            rc = mdb_cursor_del(cur, 0) ? AG_ESTORAGE : 0;
        } else if (same_kind && num > gone) {
            if (AG_GROW(moved, cap, nmoved + 1, 256, SIZE_MAX / sizeof(*moved)) != 0) {
                rc = AG_ENOMEM;
                break;
            }
            moved_row_t *m = &moved[nmoved];
            m->val = malloc(v.mv_size ? v.mv_size : 1);
            if (!m->val) {
                rc = AG_ENOMEM;
                break;
            }
            nmoved++;
            memcpy(m->key, kb, AG_ID_KEY_LEN);
            m->key[AG_ID_KEY_LEN] = (uint8_t)((num - 1) >> 8);
            m->key[AG_ID_KEY_LEN + 1] = (uint8_t)(num - 1);
            memcpy(m->val, v.mv_data, v.mv_size);
            m->len = v.mv_size;
            rc = mdb_cursor_del(cur, 0) ? AG_ESTORAGE : 0;
        }
        /* After mdb_cursor_del, LMDB's MDB_NEXT yields the row that followed the deleted one
         * (it does not skip it). Renumbered rows are written after the walk. */
    }
    mdb_cursor_close(cur);
    for (size_t i = 0; i < nmoved; i++) {
        if (rc == 0) {
            MDB_val nk = {sizeof(moved[i].key), moved[i].key}, nv = {moved[i].len, moved[i].val};
            rc = mdb_put(txn, c->dbi_vectors, &nk, &nv, 0) ? AG_ESTORAGE : 0;
        }
        free(moved[i].val);
    }
    free(moved);
    return rc ? ag_fail(diag, rc, "cannot rewrite the vectors of '%s'", c->name) : 0;
}
