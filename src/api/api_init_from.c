/*
 * init_from (docs/COMPATIBILITY.md "init_from"): a collection created with
 * {"init_from": {"collection": "src"}} starts with src's points — payloads and every vector the
 * two collections share by name and size. Reading src needs read:data on it, and a caller with a
 * row restriction there copies only its own rows. The copy runs in chunks, each read under src's
 * read lock and written as one transaction; points written to src meanwhile may or may not be
 * included. If anything fails the new collection is deleted again.
 */
#include <stdio.h>

#include "api/ag_api.h"
#include "api/ag_guard.h"
#include "store/ag_write.h"
#include "json/ag_json.h"

#define CHUNK 256u

typedef struct copy_ctx {
    ag_collection_t *dst;
    const ag_filter_t *rows;
    int dmap[AG_MAX_VECTORS]; /* dst dense vector -> src dense vector, -1 none */
    int smap[AG_MAX_VECTORS]; /* dst sparse vector -> src sparse vector, -1 none */
    uint32_t next;            /* src slot to look at next */
    ag_mutation_t muts[CHUNK];
    size_t n;
    float *floats; /* one block for the chunk's dense copies (owned) */
    uint32_t *ints;
    float *svals;
    bool oom;
} copy_ctx_t;

static void chunk_release(copy_ctx_t *x)
{
    for (size_t i = 0; i < x->n; i++)
        json_decref(x->muts[i].payload);
    free(x->floats);
    free(x->ints);
    free(x->svals);
    x->floats = NULL;
    x->ints = NULL;
    x->svals = NULL;
    x->n = 0;
}

/* The dimension of dense vector vi of c. */
static uint32_t dense_dim(const ag_collection_t *c, int vi)
{
    ag_dense_info_t d;
    ag_coll_dense_info(c, vi, &d);
    return d.dim;
}

/* Collects up to CHUNK points of src from x->next on (src's read lock held). */
static int collect(void *ud, ag_collection_t *src)
{
    copy_ctx_t *x = ud;
    size_t ftotal = 0, stotal = 0;
    uint32_t nslots = ag_coll_nslots(src);
    uint32_t s = x->next;
    size_t picked = 0;
    uint32_t slots[CHUNK];
    for (; s < nslots && picked < CHUNK; s++)
        if (ag_coll_match(src, s, x->rows))
            slots[picked++] = s;
    x->next = s;
    for (size_t i = 0; i < picked; i++) {
        for (int v = 0; v < ag_coll_nvec(x->dst); v++) {
            uint32_t rows = 0;
            if (x->dmap[v] >= 0 && ag_coll_dense_rows(src, x->dmap[v], slots[i], &rows))
                ftotal += (size_t)rows * dense_dim(src, x->dmap[v]);
        }
        for (int v = 0; v < ag_coll_nsparse(x->dst); v++) {
            const uint32_t *ix;
            const float *vals;
            uint32_t n = 0;
            if (x->smap[v] >= 0 &&
                ag_sparse_get(ag_coll_sparse_index(src, x->smap[v]), slots[i], &ix, &vals, &n))
                stotal += n;
        }
    }
    x->floats = malloc(sizeof(float) * (ftotal + 1));
    x->ints = malloc(sizeof(uint32_t) * (stotal + 1));
    x->svals = malloc(sizeof(float) * (stotal + 1));
    if (!x->floats || !x->ints || !x->svals)
        return AG_ENOMEM;
    size_t fo = 0, so = 0;
    for (size_t i = 0; i < picked; i++) {
        ag_mutation_t *m = &x->muts[x->n];
        memset(m, 0, sizeof(*m));
        m->id = *ag_coll_id(src, slots[i]);
        if (!(m->payload = ag_coll_payload_json(src, slots[i])))
            return AG_ENOMEM;
        x->n++;
        m->replace_vectors = true;
        for (int v = 0; v < ag_coll_nvec(x->dst); v++) {
            uint32_t rows = 1;
            const float *f =
                x->dmap[v] >= 0 ? ag_coll_dense_rows(src, x->dmap[v], slots[i], &rows) : NULL;
            if (!f)
                continue;
            ag_dense_info_t d;
            ag_coll_dense_info(x->dst, v, &d);
            memcpy(x->floats + fo, f, sizeof(float) * d.dim * rows);
            for (uint32_t r = 0; r < rows; r++) {
                size_t bad;
                if (d.dist == AG_DIST_COSINE)
                    ag_vector_normalize(x->floats + fo + (size_t)r * d.dim, d.dim);
                /* Same datatype, or into float32 (map_vectors): nothing can overflow. */
                (void)ag_dtype_convert(d.dtype, x->floats + fo + (size_t)r * d.dim, d.dim, &bad);
            }
            m->dense_op[v] = AG_VEC_SET;
            m->dense[v] = x->floats + fo;
            m->dense_rows[v] = rows;
            fo += (size_t)d.dim * rows;
        }
        for (int v = 0; v < ag_coll_nsparse(x->dst); v++) {
            const uint32_t *ix;
            const float *vals;
            uint32_t n = 0;
            if (x->smap[v] < 0 ||
                !ag_sparse_get(ag_coll_sparse_index(src, x->smap[v]), slots[i], &ix, &vals, &n))
                continue;
            if (n) {
                memcpy(x->ints + so, ix, sizeof(uint32_t) * n);
                memcpy(x->svals + so, vals, sizeof(float) * n);
            }
            m->sparse_op[v] = AG_VEC_SET;
            m->sparse[v] = (ag_sparse_vec_t){x->ints + so, x->svals + so, n};
            so += n;
        }
    }
    return 0;
}

/* Which vectors the two collections share by name (dense ones also by size). */
static int map_vectors(ag_call_t *call, copy_ctx_t *x, ag_collection_t *src)
{
    for (int v = 0; v < ag_coll_nvec(x->dst); v++) {
        ag_dense_info_t d, s;
        ag_coll_dense_info(x->dst, v, &d);
        x->dmap[v] = ag_coll_vector(src, d.name);
        if (x->dmap[v] < 0)
            continue;
        ag_coll_dense_info(src, x->dmap[v], &s);
        if (s.dim != d.dim)
            return ag_fail(&call->diag, AG_EINVAL,
                           "init_from: vector `%s` has size %u in the source collection and %u in "
                           "the new one",
                           d.name, s.dim, d.dim);
        if (s.multi && !d.multi)
            return ag_fail(&call->diag, AG_EINVAL,
                           "init_from: vector `%s` is a multivector in the source collection and "
                           "a plain dense vector in the new one",
                           d.name);
        if (s.dtype != d.dtype && d.dtype != AG_DTYPE_FLOAT32)
            return ag_fail(&call->diag, AG_EINVAL,
                           "init_from: vector `%s` is %s in the source collection and %s in the "
                           "new one",
                           d.name, ag_dtype_name(s.dtype), ag_dtype_name(d.dtype));
    }
    const json_t *sv = json_object_get(ag_coll_params(x->dst), "sparse_vectors");
    const char *name;
    const json_t *cfg;
    json_object_foreach((json_t *)sv, name, cfg)
    {
        int di = ag_coll_sparse(x->dst, name);
        if (di >= 0)
            x->smap[di] = ag_coll_sparse(src, name);
    }
    return 0;
}

/* The source named, authorized for reading (its row restriction in *rows, owned) and present. */
static int source(ag_call_t *call, const json_t *init_from, const char **src_name,
                  ag_filter_t **rows, ag_collection_t **src)
{
    *rows = NULL;
    *src = NULL;
    *src_name = NULL;
    if (!json_is_object(init_from))
        return ag_fail(&call->diag, AG_EINVAL, "init_from: expected {\"collection\": name}");
    int rc = AG_JSON_ONLY(init_from, "init_from", &call->diag, "collection");
    if (rc == 0)
        rc = ag_json_get_str(init_from, "collection", "init_from", src_name, &call->diag);
    if (rc)
        return rc;
    if (!*src_name)
        return ag_fail(&call->diag, AG_EINVAL, "init_from.collection: required");
    if ((rc = ag_guard_authorize(call, "read:data", *src_name, rows, &call->diag)) != 0)
        return rc;
    if (ag_store_get(call->api->store, *src_name, src, NULL) != 0) {
        ag_filter_free(*rows);
        *rows = NULL;
        return ag_fail(&call->diag, AG_ENOTFOUND,
                       "Not found: init_from: Collection `%.200s` doesn't exist!", *src_name);
    }
    return 0;
}

int ag_init_from_check(ag_call_t *call, const json_t *init_from)
{
    const char *src_name;
    ag_filter_t *rows;
    ag_collection_t *src;
    int rc = source(call, init_from, &src_name, &rows, &src);
    if (rc == 0) {
        ag_filter_free(rows);
        ag_coll_unref(src);
    }
    return rc;
}

typedef struct chunk_write {
    copy_ctx_t *x;
    ag_diag_t *diag;
} chunk_write_t;

/* One chunk of copied points into the new collection, inside its write session. */
static int apply_chunk(void *ud, ag_collection_t *c)
{
    chunk_write_t *w = ud;
    ag_batch_t b = {w->x->muts, w->x->n, CHUNK}; /* a view: the payloads stay the chunk's */
    return ag_batch_apply(c, &b, false, w->diag);
}

int ag_init_from(ag_call_t *call, const char *name, const json_t *init_from)
{
    const char *src_name = NULL;
    ag_filter_t *rows = NULL;
    ag_collection_t *src = NULL, *dst = NULL;
    copy_ctx_t *x = NULL;
    int rc = source(call, init_from, &src_name, &rows, &src);
    if (rc)
        goto out;
    if (ag_store_get(call->api->store, name, &dst, NULL) != 0) {
        rc = ag_fail(&call->diag, AG_ENOTFOUND, "Not found: Collection `%s` doesn't exist!", name);
        goto out;
    }
    x = calloc(1, sizeof(*x));
    if (!x) {
        rc = AG_ENOMEM;
        goto out;
    }
    x->dst = dst;
    x->rows = rows;
    for (int i = 0; i < AG_MAX_VECTORS; i++)
        x->dmap[i] = x->smap[i] = -1;
    if ((rc = map_vectors(call, x, src)) != 0)
        goto out;
    uint64_t copied = 0;
    for (;;) {
        if ((rc = ag_call_deadline(call)) != 0)
            break;
        rc = ag_coll_read(src, collect, x);
        if (rc == 0 && x->n == 0)
            break;
        if (rc == 0) {
            chunk_write_t w = {x, &call->diag};
            rc = ag_coll_write(dst, apply_chunk, &w);
        }
        copied += x->n;
        chunk_release(x);
        if (rc)
            break;
    }
    if (rc == 0) {
        ag_store_sync(call->api->store);
        json_decref(call->audit_detail);
        call->audit_detail =
            json_pack("{s:s,s:I}", "init_from", src_name, "points", (json_int_t)copied);
    }
out:
    if (x)
        chunk_release(x);
    free(x);
    if (src)
        ag_coll_unref(src);
    if (dst)
        ag_coll_unref(dst);
    ag_filter_free(rows);
    if (rc) {
        ag_diag_t ignored;
        bool existed;
        ag_store_delete(call->api->store, name, &existed, &ignored);
        if (rc == AG_ENOMEM)
            rc = ag_fail(&call->diag, rc, "out of memory copying init_from");
    }
    return rc;
}
