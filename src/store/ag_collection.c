#include "ag_collection.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "ag_clock.h"
#include "ag_grow.h"
#include "ag_log.h"
#include "index/ag_hnsw.h"
#include "store/ag_coll_disk.h"
#include "store/ag_collection_int.h"
#include "store/ag_env.h"
#include "store/ag_payload_index.h"
#include "json/ag_json.h"

/* ---- params -------------------------------------------------------------------------------- */

static int parse_vector_params(const json_t *v, const char *path, ag_diag_t *diag)
{
    if (!json_is_object(v))
        return ag_fail(diag, AG_EINVAL, "%s: expected an object with size and distance", path);
    int rc = AG_JSON_ONLY(v, path, diag, "size", "distance", "hnsw_config", "quantization_config",
                          "on_disk", "datatype", "multivector_config");
    if (rc)
        return rc;
    json_t *size = json_object_get(v, "size");
    if (!json_is_integer(size) || json_integer_value(size) < 1 ||
        json_integer_value(size) > AG_MAX_DIM)
        return ag_fail(diag, AG_EUNPROCESSABLE, "%s.size: expected an integer from 1 to %d", path,
                       AG_MAX_DIM);
    json_t *dist = json_object_get(v, "distance");
    ag_distance_t d;
    if (!json_is_string(dist) || ag_distance_parse(json_string_value(dist), &d) != 0)
        return ag_fail(diag, AG_EINVAL,
                       "%s.distance: expected one of Cosine, Dot, Euclid, Manhattan", path);
    json_t *dt = json_object_get(v, "datatype");
    ag_dtype_t t = AG_DTYPE_FLOAT32;
    if (dt && !json_is_null(dt) &&
        (!json_is_string(dt) || ag_dtype_parse(json_string_value(dt), &t) != 0))
        return ag_fail(diag, AG_EINVAL, "%s.datatype: expected one of float32, float16, uint8",
                       path);
    /* uint8 vectors are scored as stored (Qdrant does not normalize them); Aegis's Cosine relies
     * on vectors normalized at input, so the pair is refused (docs/COMPATIBILITY.md). */
    if (t == AG_DTYPE_UINT8 && d == AG_DIST_COSINE)
        return ag_fail(diag, AG_EINVAL,
                       "%s.datatype: uint8 with Cosine distance is not supported (use Dot, "
                       "Euclid or Manhattan, or float32/float16)",
                       path);
    json_t *mv = json_object_get(v, "multivector_config");
    if (mv && !json_is_null(mv)) {
        char p[320];
        snprintf(p, sizeof(p), "%s.multivector_config", path);
        if (!json_is_object(mv))
            return ag_fail(diag, AG_EINVAL, "%s: expected {\"comparator\": \"max_sim\"}", p);
        if ((rc = AG_JSON_ONLY(mv, p, diag, "comparator")) != 0)
            return rc;
        json_t *cmp = json_object_get(mv, "comparator");
        if (!json_is_string(cmp) || strcmp(json_string_value(cmp), "max_sim") != 0)
            return ag_fail(diag, AG_EINVAL, "%s.comparator: expected max_sim", p);
    }
    return 0;
}

int ag_coll_parse_params(const json_t *body, json_t **out, ag_diag_t *diag)
{
    char path[300];
    *out = NULL;
    if (!json_is_object(body))
        return ag_fail(diag, AG_EINVAL, "request body must be a JSON object");
    int rc = AG_JSON_ONLY(body, "", diag, "vectors", "sparse_vectors", "shard_number",
                          "sharding_method", "replication_factor", "write_consistency_factor",
                          "on_disk_payload", "hnsw_config", "wal_config", "optimizers_config",
                          "init_from", "quantization_config", "strict_mode_config", "metadata");
    if (rc == 0)
        rc = ag_coll_check_settings(body, false, diag);
    if (rc)
        return rc;
    json_t *vectors = json_object_get(body, "vectors");
    int count = 0;
    if (vectors && !json_is_null(vectors)) {
        if (!json_is_object(vectors))
            return ag_fail(diag, AG_EINVAL, "vectors: expected an object");
        if (json_object_get(vectors, "size") || json_object_get(vectors, "distance")) {
            rc = parse_vector_params(vectors, "vectors", diag);
            if (rc)
                return rc;
            count = 1;
        } else {
            const char *name;
            json_t *vp;
            json_object_foreach(vectors, name, vp)
            {
                snprintf(path, sizeof(path), "vectors.%.200s", name);
                rc = ag_name_check(name, strlen(name), "vector", diag);
                if (rc)
                    return rc;
                rc = parse_vector_params(vp, path, diag);
                if (rc)
                    return rc;
                count++;
            }
        }
    }
    json_t *sparse = json_object_get(body, "sparse_vectors");
    if (sparse && !json_is_null(sparse)) {
        if (!json_is_object(sparse))
            return ag_fail(diag, AG_EINVAL, "sparse_vectors: expected an object");
        const char *name;
        json_t *sp;
        json_object_foreach(sparse, name, sp)
        {
            snprintf(path, sizeof(path), "sparse_vectors.%.200s", name);
            rc = ag_name_check(name, strlen(name), "sparse vector", diag);
            if (rc)
                return rc;
            if (json_is_object(vectors) && !json_object_get(vectors, "size") &&
                json_object_get(vectors, name))
                return ag_fail(diag, AG_EINVAL, "%s: name is already used by a dense vector", path);
            if (!json_is_object(sp))
                return ag_fail(diag, AG_EINVAL, "%s: expected an object", path);
            rc = AG_JSON_ONLY(sp, path, diag, "index", "modifier");
            if (rc)
                return rc;
            json_t *mod = json_object_get(sp, "modifier");
            if (mod && !json_is_null(mod) &&
                !(json_is_string(mod) && (strcmp(json_string_value(mod), "none") == 0 ||
                                          strcmp(json_string_value(mod), "idf") == 0)))
                return ag_fail(diag, AG_EINVAL, "%s.modifier: expected none or idf", path);
            count++;
        }
    }
    if (count > AG_MAX_VECTORS)
        return ag_fail(diag, AG_EINVAL, "vectors: at most %d vectors per collection",
                       AG_MAX_VECTORS);
    static const char *uint_keys[] = {"shard_number", "replication_factor",
                                      "write_consistency_factor"};
    for (size_t i = 0; i < AG_ARRAY_LEN(uint_keys); i++) {
        uint64_t v = 1;
        rc = ag_json_get_uint(body, uint_keys[i], "", 1024, &v, diag);
        if (rc)
            return rc;
        if (v == 0)
            return ag_fail(diag, AG_EUNPROCESSABLE, "%s: must be at least 1", uint_keys[i]);
    }
    bool odp = true;
    rc = ag_json_get_bool(body, "on_disk_payload", "", &odp, diag);
    if (rc)
        return rc;
    json_t *p = json_deep_copy(body);
    if (!p)
        return AG_ENOMEM;
    json_object_del(p, "init_from");
    if (!json_object_get(p, "vectors") || json_is_null(json_object_get(p, "vectors")))
        json_object_set_new(p, "vectors", json_object());
    *out = p;
    return 0;
}

/* ---- lifetime ------------------------------------------------------------------------------ */

void ag_coll_ref(ag_collection_t *c)
{
    atomic_fetch_add(&c->refs, 1);
}

/* ---- HNSW graph files ---------------------------------------------------------------------- */

static bool index_path(const ag_collection_t *c, int v, char *buf, size_t len)
{
    if (!c->index_dir || !ag_index_is_hnsw(c->vec[v].index))
        return false;
    int n = snprintf(buf, len, "%s/%u.%d.hnsw", c->index_dir, c->cid, v);
    return n > 0 && (size_t)n < len;
}

/* The key a checkpoint records for a graph node: the point's 17-byte id key. */
static void slot_key(void *ud, uint32_t slot, uint8_t *key)
{
    const ag_collection_t *c = ud;
    ag_id_to_key(&c->slots[slot].id, key);
}

/* The slot a checkpoint's key names now, UINT32_MAX if that point is gone. */
static uint32_t key_slot(void *ud, const uint8_t *key)
{
    ag_point_id_t id;
    if (ag_id_from_key(key, AG_ID_KEY_LEN, &id) != 0)
        return UINT32_MAX;
    return ag_coll_find(ud, &id);
}

/* Writes the checkpoint of each graph that changed since its last one: taken under the read
 * lock (a copy in memory), written with no lock held, so writers and searches wait only for the
 * copy. Paced unless force: a graph with points still queued at most every
 * AG_COLL_CHECKPOINT_S; a caught-up one once the last checkpoint is AG_COLL_CHECKPOINT_GAP_S old
 * and ten times its cost (writing stays a small share of the time). Returns how many files were
 * written, or an AG_E* code. */
static int checkpoint(ag_collection_t *c, bool force)
{
    char path[4096];
    int written = 0, err = 0;
    pthread_mutex_lock(&c->ckpt_mutex);
    /* One pace for all the collection's graphs, measured before any of them is written. */
    double since = ag_now_mono() - c->ckpt_at, cost = 0;
    for (int v = 0; v < c->nvec; v++) {
        if (!c->index_ready || !index_path(c, v, path, sizeof(path)))
            continue;
        ag_index_t *ix = c->vec[v].index;
        ag_hnsw_ckpt_t *ck = NULL;
        int rc = 0;
        double now = ag_now_mono();
        pthread_rwlock_rdlock(&c->lock);
        bool due = force || (ag_hnsw_pending(ix) == 0
                                 ? since >= AG_MAX(AG_COLL_CHECKPOINT_GAP_S, 10.0 * c->ckpt_cost)
                                 : since >= AG_COLL_CHECKPOINT_S);
        ag_coll__disk_begin(c); /* the checkpoint hashes every row */
        if (due && ag_hnsw_dirty(ix))
            rc = ag_hnsw_checkpoint(ix, slot_key, c, AG_ID_KEY_LEN, &ck);
        ag_coll__disk_end(c);
        pthread_rwlock_unlock(&c->lock);
        if (rc == 0 && ck) {
            if (mkdir(c->index_dir, 0700) != 0 && errno != EEXIST)
                rc = AG_EIO;
            else
                rc = ag_hnsw_checkpoint_write(ck, path);
        }
        if (ck && rc == 0) {
            ag_hnsw_checkpoint_done(ix, ck);
            double end = ag_now_mono();
            cost += end - now;
            written++;
            ag_log(AG_LOG_DEBUG, "collection '%s': checkpoint %s (%.1f MB) in %.3f s", c->name,
                   path, (double)ag_hnsw_checkpoint_size(ck) / 1048576.0, end - now);
        } else if (rc) {
            c->ckpt_at = ag_now_mono(); /* retried after a pause of at least 10 s */
            c->ckpt_cost = AG_MAX(c->ckpt_cost, 1.0);
            ag_log(AG_LOG_WARN,
                   "collection '%s': cannot write the checkpoint %s (%s); it stays yellow and "
                   "the points since the last one are linked again at start",
                   c->name, path, ag_strerror(rc));
            err = rc;
        }
        ag_hnsw_checkpoint_free(ck);
    }
    if (written && !err) {
        c->ckpt_cost = cost;
        c->ckpt_at = ag_now_mono();
    }
    pthread_mutex_unlock(&c->ckpt_mutex);
    return err ? err : written;
}

int ag_coll_save_indexes(ag_collection_t *c)
{
    int rc = checkpoint(c, true);
    return rc < 0 ? rc : 0;
}

int ag_coll_index_checkpoint(ag_collection_t *c)
{
    return c->index_ready ? checkpoint(c, false) : 0;
}

/* Ends ag_coll_load for the graphs: each resumes from its checkpoint (relinking only what changed
 * since), or is rebuilt when the file is missing or unusable. */
static void finish_indexes(ag_collection_t *c)
{
    char path[4096];
    for (int v = 0; v < c->nvec; v++) {
        if (!ag_index_is_hnsw(c->vec[v].index))
            continue;
        bool have = index_path(c, v, path, sizeof(path));
        if (ag_hnsw_finish(c->vec[v].index, have ? path : NULL, key_slot, c, AG_ID_KEY_LEN) != 0)
            ag_log(AG_LOG_ERROR,
                   "collection '%s': out of memory building a vector index; "
                   "searches of it scan exactly",
                   c->name);
    }
    c->ckpt_at = ag_now_mono();
    c->index_ready = true;
}

void ag_coll_drop_index_files(ag_collection_t *c)
{
    char path[4096];
    pthread_mutex_lock(&c->ckpt_mutex); /* waits for a checkpoint being written */
    c->index_ready = false;
    for (int v = 0; v < c->nvec; v++)
        if (index_path(c, v, path, sizeof(path)))
            unlink(path);
    pthread_mutex_unlock(&c->ckpt_mutex);
}

static void new_segment_id(ag_collection_t *c);
static void note_write(ag_collection_t *c);

static void coll_free(ag_collection_t *c)
{
    /* Memory only: the graphs of a live collection are saved by ag_store_close (and by the
     * periodic checkpoint), never from here. */
    ag_payload_index_free(c);
    free(c->index_dir);
    for (uint32_t i = 0; i < c->nslots; i++)
        ag_pack_free(c->slots[i].payload);
    free(c->slots);
    free(c->free_slots);
    free(c->map);
    for (int i = 0; i < c->nvec; i++) {
        if (c->vec[i].index)
            ag_index_free(c->vec[i].index);
        ag_vecstore_free(c->vec[i].vs);
        ag_multivec_free(c->vec[i].mv);
        free(c->vec[i].name);
    }
    for (int i = 0; i < c->nsparse; i++) {
        ag_sparse_free(c->sparse[i].sp);
        free(c->sparse[i].name);
    }
    json_decref(c->params);
    json_decref(c->schema);
    pthread_mutex_destroy(&c->schema_mu);
    pthread_mutex_destroy(&c->write_mutex);
    pthread_mutex_destroy(&c->ckpt_mutex);
    pthread_mutex_destroy(&c->seg_mutex);
    pthread_rwlock_destroy(&c->lock);
    free(c->name);
    free(c);
}

void ag_coll_unref(ag_collection_t *c)
{
    if (c && atomic_fetch_sub(&c->refs, 1) == 1)
        coll_free(c);
}

/* ---- HNSW parameters (hnsw_config: the collection's, then the vector's own override) -------- */

/* Qdrant's defaults: m 16, ef_construct 100, full_scan_threshold 10000 KB. */
#define HNSW_DEFAULT_FULL_SCAN_KB 10000u

static void hnsw_uint(const json_t *cfg, const char *key, uint64_t max, uint64_t *v)
{
    json_t *x = json_object_get(cfg, key);
    if (json_is_integer(x) && json_integer_value(x) >= 0 && (uint64_t)json_integer_value(x) <= max)
        *v = (uint64_t)json_integer_value(x);
}

/* Fills p from the two hnsw_config objects (either may be NULL). Returns false when m is 0,
 * which in Qdrant disables the graph: the vector then keeps the exact index. */
static bool hnsw_params(const json_t *coll_cfg, const json_t *vec_cfg, uint32_t dim,
                        ag_hnsw_params_t *p)
{
    uint64_t m = 16, efc = 100, fst_kb = HNSW_DEFAULT_FULL_SCAN_KB;
    const json_t *cfgs[2] = {coll_cfg, vec_cfg};
    for (int i = 0; i < 2; i++) {
        if (!json_is_object(cfgs[i]))
            continue;
        hnsw_uint(cfgs[i], "m", 128, &m);
        hnsw_uint(cfgs[i], "ef_construct", 10000, &efc);
        hnsw_uint(cfgs[i], "full_scan_threshold", UINT32_MAX, &fst_kb);
    }
    if (m < 2)
        return false;
    memset(p, 0, sizeof(*p));
    p->m = (uint32_t)m;
    p->ef_construct = (uint32_t)AG_MAX(efc, 4u);
    /* Qdrant counts the threshold in KB of vectors; the index counts points. */
    p->full_scan_threshold = (uint32_t)AG_MIN(fst_kb * 1024u / ((uint64_t)dim * 4u), UINT32_MAX);
    return true;
}

/* The quantile of the scalar quantization a vector has (its own quantization_config, else the
 * collection's; docs/COMPATIBILITY.md "Quantization"), or 0 for none. Settings were checked when
 * they were accepted (ag_coll_check_settings); an absent quantile is the whole range (1). */
static double quant_quantile(const json_t *coll_q, const json_t *vec_q)
{
    const json_t *q = json_is_object(vec_q) ? vec_q : coll_q;
    const json_t *sc = json_object_get(q, "scalar");
    if (!json_is_object(sc))
        return 0;
    const json_t *qu = json_object_get(sc, "quantile");
    double v = json_is_number(qu) ? json_number_value(qu) : 1.0;
    return v >= 0.5 && v <= 1.0 ? v : 1.0;
}

/* Gives the graph ix the quantization a vector has: binary (index/ag_quant.h), scalar int8 with
 * its quantile, or none. */
static int set_quant(ag_index_t *ix, const json_t *coll_q, const json_t *vec_q)
{
    const json_t *q = json_is_object(vec_q) ? vec_q : coll_q;
    if (json_is_object(json_object_get(q, "binary")))
        return ag_hnsw_set_quant_kind(ix, AG_QUANT_BINARY, 0);
    return ag_hnsw_set_quant(ix, quant_quantile(coll_q, vec_q));
}

int ag_coll__apply_quant(ag_collection_t *c)
{
    const json_t *vectors = json_object_get(c->params, "vectors");
    const json_t *coll_q = json_object_get(c->params, "quantization_config");
    int err = 0;
    ag_coll__disk_begin(c); /* training reads rows */
    for (int v = 0; v < c->nvec; v++) {
        if (!ag_index_is_hnsw(c->vec[v].index))
            continue;
        const json_t *vp = c->unnamed ? vectors : json_object_get(vectors, c->vec[v].name);
        int rc = set_quant(c->vec[v].index, coll_q, json_object_get(vp, "quantization_config"));
        if (rc)
            err = rc;
    }
    ag_coll__disk_end(c);
    return err;
}

static int add_dense(ag_collection_t *c, const char *name, const json_t *vp)
{
    ag_vector_cfg_t *v = &c->vec[c->nvec];
    v->name = strdup(name);
    if (!v->name)
        return AG_ENOMEM;
    c->nvec++;
    v->dim = (uint32_t)json_integer_value(json_object_get(vp, "size"));
    if (ag_distance_parse(json_string_value(json_object_get(vp, "distance")), &v->dist) != 0)
        return AG_EINVAL;
    const json_t *dt = json_object_get(vp, "datatype");
    v->dtype = AG_DTYPE_FLOAT32;
    if (json_is_string(dt) && ag_dtype_parse(json_string_value(dt), &v->dtype) != 0)
        return AG_EINVAL;
    const json_t *mv = json_object_get(vp, "multivector_config");
    if (mv && !json_is_null(mv)) {
        /* Multivectors are scored exactly (index/ag_multivec.h): no vector store, no graph. */
        v->multi = true;
        return ag_multivec_new(v->dim, &v->mv);
    }
    int rc = ag_vecstore_new(v->dim, &v->vs);
    if (rc)
        return rc;
    if (json_is_true(json_object_get(vp, "on_disk"))) {
        /* The rows stay in the LMDB map (store/ag_coll_disk.c). */
        v->on_disk = true;
        v->num = (unsigned)(c->nvec - 1);
        v->owner = c;
        if ((rc = ag_vecstore_set_external(v->vs, ag_coll__disk_fetch, v)) != 0)
            return rc;
        c->n_on_disk++;
    }
    ag_hnsw_params_t hp;
    if (hnsw_params(json_object_get(c->params, "hnsw_config"), json_object_get(vp, "hnsw_config"),
                    v->dim, &hp)) {
        hp.background = true; /* writes queue; the store's indexer thread links */
        int rc2 = ag_index_hnsw_new(v->vs, v->dist, &hp, &v->index);
        if (rc2)
            return rc2;
        return set_quant(v->index, json_object_get(c->params, "quantization_config"),
                         json_object_get(vp, "quantization_config"));
    }
    return ag_index_exact_new(v->vs, v->dist, &v->index);
}

/* The graph parameters of vector v under params (false: no graph, the exact index). */
static bool vector_hnsw(const ag_collection_t *c, const json_t *params, int v, ag_hnsw_params_t *p)
{
    const json_t *vectors = json_object_get(params, "vectors");
    const json_t *vp = c->unnamed ? vectors : json_object_get(vectors, c->vec[v].name);
    return hnsw_params(json_object_get(params, "hnsw_config"), json_object_get(vp, "hnsw_config"),
                       c->vec[v].dim, p);
}

void ag_coll_hnsw_discard(ag_collection_t *c, ag_index_t **fresh)
{
    for (int v = 0; v < c->nvec; v++) {
        ag_index_free(fresh[v]);
        fresh[v] = NULL;
    }
}

int ag_coll_hnsw_prepare(ag_collection_t *c, const json_t *next, ag_index_t **fresh)
{
    for (int v = 0; v < c->nvec; v++)
        fresh[v] = NULL;
    for (int v = 0; v < c->nvec; v++) {
        if (c->vec[v].multi) /* scored exactly, never a graph (index/ag_multivec.h) */
            continue;
        ag_hnsw_params_t was, now;
        bool had = vector_hnsw(c, c->params, v, &was), has = vector_hnsw(c, next, v, &now);
        if (had == has && (!has || (was.m == now.m && was.ef_construct == now.ef_construct &&
                                    was.full_scan_threshold == now.full_scan_threshold)))
            continue;
        ag_vector_cfg_t *vc = &c->vec[v];
        int rc;
        if (has) {
            now.background = true;
            rc = ag_index_hnsw_new(vc->vs, vc->dist, &now, &fresh[v]);
            if (rc == 0) {
                /* the new graph keeps the vector's quantization (codes built as it links) */
                const json_t *vecs = json_object_get(next, "vectors");
                const json_t *vp = c->unnamed ? vecs : json_object_get(vecs, vc->name);
                rc = set_quant(fresh[v], json_object_get(next, "quantization_config"),
                               json_object_get(vp, "quantization_config"));
            }
            if (rc == 0) {
                ag_hnsw_defer(fresh[v]);
                rc = ag_hnsw_finish(fresh[v], NULL, key_slot, c, AG_ID_KEY_LEN);
            }
        } else {
            rc = ag_index_exact_new(vc->vs, vc->dist, &fresh[v]);
            for (uint32_t s = 0; rc == 0 && s < c->nslots; s++)
                if (c->slots[s].alive && ag_vecstore_has(vc->vs, s))
                    rc = ag_index_add(fresh[v], s);
        }
        if (rc) {
            ag_coll_hnsw_discard(c, fresh);
            return rc;
        }
        ag_log(AG_LOG_INFO,
               "collection '%s': vector '%s' gets a new index (hnsw_config changed: m %u, "
               "ef_construct %u); its points are linked in the background",
               c->name, vc->name, has ? now.m : 0, has ? now.ef_construct : 0);
    }
    return 0;
}

void ag_coll_hnsw_commit(ag_collection_t *c, ag_index_t **fresh)
{
    char path[4096];
    /* ckpt_mutex: the checkpoint writer holds an index pointer across its own lock release */
    pthread_mutex_lock(&c->ckpt_mutex);
    pthread_rwlock_wrlock(&c->lock);
    for (int v = 0; v < c->nvec; v++) {
        if (!fresh[v])
            continue;
        if (index_path(c, v, path, sizeof(path)))
            unlink(path);
        ag_index_t *old = c->vec[v].index;
        c->vec[v].index = fresh[v];
        fresh[v] = old;
    }
    pthread_rwlock_unlock(&c->lock);
    pthread_mutex_unlock(&c->ckpt_mutex);
    ag_coll_hnsw_discard(c, fresh); /* the old ones now */
}

int ag_coll_open(MDB_env *env, MDB_txn *txn, const char *name, uint32_t cid, const json_t *params,
                 const json_t *schema, bool create, ag_collection_t **out, ag_diag_t *diag)
{
    ag_collection_t *c = calloc(1, sizeof(*c));
    if (!c)
        return AG_ENOMEM;
    atomic_init(&c->refs, 1);
    atomic_init(&c->version, 0);
    atomic_init(&c->write_waiters, 0);
    pthread_mutex_init(&c->write_mutex, NULL);
    pthread_mutex_init(&c->schema_mu, NULL);
    pthread_mutex_init(&c->ckpt_mutex, NULL);
    pthread_mutex_init(&c->seg_mutex, NULL);
    new_segment_id(c);
    /* Writer-preferring: with glibc's default (readers first) a steady stream of searches would
     * starve writes and the background indexer indefinitely. */
    pthread_rwlockattr_t rwattr;
    pthread_rwlockattr_init(&rwattr);
    pthread_rwlockattr_setkind_np(&rwattr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&c->lock, &rwattr);
    pthread_rwlockattr_destroy(&rwattr);
    c->env = env;
    c->cid = cid;
    c->name = strdup(name);
    c->params = json_deep_copy(params);
    c->schema = schema ? json_deep_copy(schema) : json_object();
    int rc = AG_ENOMEM;
    if (!c->name || !c->params || !c->schema)
        goto fail;
    const char *env_path = NULL;
    if (env && mdb_env_get_path(env, &env_path) == 0 && env_path) {
        size_t len = strlen(env_path) + sizeof("/index");
        if (!(c->index_dir = malloc(len)))
            goto fail;
        snprintf(c->index_dir, len, "%s/index", env_path);
    }

    json_t *vectors = json_object_get(c->params, "vectors");
    if (json_object_get(vectors, "size")) {
        c->unnamed = true;
        if ((rc = add_dense(c, "", vectors)) != 0)
            goto fail;
    } else {
        const char *vname;
        json_t *vp;
        json_object_foreach(vectors, vname, vp)
        {
            if ((rc = add_dense(c, vname, vp)) != 0)
                goto fail;
        }
    }
    const char *sname;
    json_t *sp;
    json_object_foreach(json_object_get(c->params, "sparse_vectors"), sname, sp)
    {
        ag_sparse_cfg_t *s = &c->sparse[c->nsparse];
        s->name = strdup(sname);
        if (!s->name) {
            rc = AG_ENOMEM;
            goto fail;
        }
        c->nsparse++;
        if ((rc = ag_sparse_new(&s->sp)) != 0)
            goto fail;
    }

    char dbname[32];
    unsigned flags = create ? MDB_CREATE : 0;
    snprintf(dbname, sizeof(dbname), "p:%u", cid);
    if (mdb_dbi_open(txn, dbname, flags, &c->dbi_points) != 0) {
        rc = ag_fail(diag, AG_ESTORAGE, "cannot open the points database of '%s'", name);
        goto fail;
    }
    snprintf(dbname, sizeof(dbname), "v:%u", cid);
    if (mdb_dbi_open(txn, dbname, flags, &c->dbi_vectors) != 0) {
        rc = ag_fail(diag, AG_ESTORAGE, "cannot open the vectors database of '%s'", name);
        goto fail;
    }
    c->index_ready = create; /* an existing collection is ready once ag_coll_load is done */
    *out = c;
    return 0;
fail:
    coll_free(c);
    return rc;
}

int ag_coll_drop_dbs(ag_collection_t *c, MDB_txn *txn)
{
    if (mdb_drop(txn, c->dbi_points, 1) != 0 || mdb_drop(txn, c->dbi_vectors, 1) != 0)
        return AG_ESTORAGE;
    return 0;
}

bool ag_coll_dense_record_ok(const ag_collection_t *c, unsigned num, size_t size)
{
    if (num >= (unsigned)c->nvec)
        return false;
    size_t row = sizeof(float) * c->vec[num].dim;
    if (!c->vec[num].multi)
        return size == row;
    return size >= row && size % row == 0 && size / row <= AG_MV_MAX_ROWS;
}

/* Does slot hold dense vector v? */
static bool has_dense(const ag_collection_t *c, int v, uint32_t s)
{
    uint32_t rows;
    return c->vec[v].multi ? ag_multivec_get(c->vec[v].mv, s, &rows) != NULL
                           : ag_vecstore_has(c->vec[v].vs, s);
}

/* Removes dense vector v of slot s from memory (nothing when absent). */
static void drop_dense(ag_collection_t *c, int v, uint32_t s)
{
    if (c->vec[v].multi) {
        ag_multivec_clear(c->vec[v].mv, s);
    } else if (ag_vecstore_has(c->vec[v].vs, s)) {
        ag_index_remove(c->vec[v].index, s);
        ag_vecstore_clear(c->vec[v].vs, s);
    }
}

static uint32_t dense_count(const ag_collection_t *c, int v)
{
    return c->vec[v].multi ? ag_multivec_count(c->vec[v].mv) : ag_vecstore_count(c->vec[v].vs);
}

int ag_coll_vector(const ag_collection_t *c, const char *name)
{
    for (int i = 0; i < c->nvec; i++)
        if (strcmp(c->vec[i].name, name) == 0)
            return i;
    return -1;
}

int ag_coll_sparse(const ag_collection_t *c, const char *name)
{
    for (int i = 0; i < c->nsparse; i++)
        if (strcmp(c->sparse[i].name, name) == 0)
            return i;
    return -1;
}

/* ---- the id → slot map --------------------------------------------------------------------- */

#define MAP_TOMB UINT32_MAX

static int map_rehash(ag_collection_t *c, uint32_t new_cap)
{
    uint32_t *m = calloc(new_cap, sizeof(uint32_t));
    if (!m)
        return AG_ENOMEM;
    for (uint32_t i = 0; i < c->map_cap; i++) {
        uint32_t e = c->map[i];
        if (e == 0 || e == MAP_TOMB)
            continue;
        uint64_t h = ag_id_hash(&c->slots[e - 1].id) & (new_cap - 1);
        while (m[h])
            h = (h + 1) & (new_cap - 1);
        m[h] = e;
    }
    free(c->map);
    c->map = m;
    c->map_cap = new_cap;
    c->map_tombs = 0;
    return 0;
}

uint32_t ag_coll_find(const ag_collection_t *c, const ag_point_id_t *id)
{
    if (c->map_cap == 0)
        return UINT32_MAX;
    uint64_t h = ag_id_hash(id) & (c->map_cap - 1);
    for (;;) {
        uint32_t e = c->map[h];
        if (e == 0)
            return UINT32_MAX;
        if (e != MAP_TOMB && ag_id_equal(&c->slots[e - 1].id, id))
            return e - 1;
        h = (h + 1) & (c->map_cap - 1);
    }
}

static int map_insert(ag_collection_t *c, uint32_t slot)
{
    if ((uint64_t)(c->map_used + c->map_tombs + 1) * 10 >= (uint64_t)c->map_cap * 7) {
        uint32_t cap = c->map_cap ? c->map_cap : 1024;
        while ((uint64_t)(c->map_used + 1) * 10 >= (uint64_t)cap * 5)
            cap *= 2;
        int rc = map_rehash(c, cap);
        if (rc)
            return rc;
    }
    uint64_t h = ag_id_hash(&c->slots[slot].id) & (c->map_cap - 1);
    while (c->map[h] != 0 && c->map[h] != MAP_TOMB)
        h = (h + 1) & (c->map_cap - 1);
    if (c->map[h] == MAP_TOMB)
        c->map_tombs--;
    c->map[h] = slot + 1;
    c->map_used++;
    return 0;
}

static void map_remove(ag_collection_t *c, const ag_point_id_t *id)
{
    uint64_t h = ag_id_hash(id) & (c->map_cap - 1);
    for (;;) {
        uint32_t e = c->map[h];
        if (e == 0)
            return;
        if (e != MAP_TOMB && ag_id_equal(&c->slots[e - 1].id, id)) {
            c->map[h] = MAP_TOMB;
            c->map_used--;
            c->map_tombs++;
            return;
        }
        h = (h + 1) & (c->map_cap - 1);
    }
}

/* Allocates a slot for a new point; memory-only. Returns UINT32_MAX on allocation failure. */
static uint32_t slot_alloc(ag_collection_t *c, const ag_point_id_t *id)
{
    uint32_t s;
    if (c->nfree > 0) {
        s = c->free_slots[--c->nfree];
    } else {
        if (AG_GROW(c->slots, c->cap_slots, (size_t)c->nslots + 1, 1024, AG_VECSTORE_MAX_SLOTS) !=
            0)
            return UINT32_MAX;
        s = c->nslots++;
    }
    memset(&c->slots[s], 0, sizeof(ag_slot_t));
    c->slots[s].id = *id;
    c->slots[s].alive = true;
    if (map_insert(c, s) != 0) {
        c->slots[s].alive = false;
        if (s == c->nslots - 1)
            c->nslots--;
        else
            c->free_slots[c->nfree++] = s; /* it was just popped, so there is room */
        return UINT32_MAX;
    }
    c->live++;
    return s;
}

static int slot_release(ag_collection_t *c, uint32_t s)
{
    if (AG_GROW(c->free_slots, c->cap_free, (size_t)c->nfree + 1, 256, AG_VECSTORE_MAX_SLOTS) != 0)
        return AG_ENOMEM;
    map_remove(c, &c->slots[s].id);
    ag_pack_free(c->slots[s].payload);
    c->slots[s].payload = NULL;
    c->slots[s].alive = false;
    c->free_slots[c->nfree++] = s;
    c->live--;
    return 0;
}

/* ---- readers ------------------------------------------------------------------------------- */

void ag_coll_read_begin(ag_collection_t *c)
{
    pthread_rwlock_rdlock(&c->lock);
    ag_coll__disk_begin(c);
}

void ag_coll_read_end(ag_collection_t *c)
{
    ag_coll__disk_end(c);
    pthread_rwlock_unlock(&c->lock);
}

typedef struct slot_ref {
    const ag_collection_t *c;
    uint32_t slot;
} slot_ref_t;

static bool subject_has_vector(const void *ud, const char *name)
{
    const slot_ref_t *r = ud;
    int vi = ag_coll_vector(r->c, name);
    if (vi >= 0)
        return has_dense(r->c, vi, r->slot);
    int si = ag_coll_sparse(r->c, name);
    if (si >= 0) {
        const uint32_t *ix;
        const float *vv;
        uint32_t n;
        return ag_sparse_get(r->c->sparse[si].sp, r->slot, &ix, &vv, &n);
    }
    return false;
}

bool ag_coll_match(const ag_collection_t *c, uint32_t slot, const ag_filter_t *f)
{
    if (slot >= c->nslots || !c->slots[slot].alive)
        return false;
    if (!f)
        return true;
    slot_ref_t ref = {c, slot};
    ag_filter_subject_t s = {.id = &c->slots[slot].id,
                             .has_vector = subject_has_vector,
                             .ud = &ref,
                             .packed = c->slots[slot].payload};
    return ag_filter_match(f, &s);
}

void ag_coll_subject(const ag_collection_t *c, uint32_t slot, ag_filter_subject_t *s)
{
    s->id = &c->slots[slot].id;
    s->payload = NULL;
    s->packed = c->slots[slot].payload;
    s->has_vector = NULL;
    s->ud = NULL;
}

/* ---- writers ------------------------------------------------------------------------------- */

int ag_coll_write_begin(ag_collection_t *c)
{
    pthread_mutex_lock(&c->write_mutex);
    if (c->dropped) {
        pthread_mutex_unlock(&c->write_mutex);
        return AG_ENOTFOUND;
    }
    return 0;
}

void ag_coll_write_end(ag_collection_t *c)
{
    pthread_mutex_unlock(&c->write_mutex);
}

#define VKEY_LEN (AG_ID_KEY_LEN + 2)

static void vec_key(const uint8_t idkey[AG_ID_KEY_LEN], unsigned num, uint8_t out[VKEY_LEN])
{
    memcpy(out, idkey, AG_ID_KEY_LEN);
    out[AG_ID_KEY_LEN] = (uint8_t)(num >> 8);
    out[AG_ID_KEY_LEN + 1] = (uint8_t)num;
}

static int lmdb_del_ignore(MDB_txn *txn, MDB_dbi dbi, void *key, size_t len)
{
    MDB_val k = {len, key};
    int rc = mdb_del(txn, dbi, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int put_sparse(MDB_txn *txn, MDB_dbi dbi, uint8_t *key, const ag_sparse_vec_t *sv)
{
    MDB_val k = {VKEY_LEN, key};
    MDB_val v = {sizeof(uint32_t) * (1 + (size_t)sv->n) + sizeof(float) * sv->n, NULL};
    int rc = mdb_put(txn, dbi, &k, &v, MDB_RESERVE);
    if (rc)
        return rc;
    uint8_t *p = v.mv_data;
    memcpy(p, &sv->n, sizeof(uint32_t));
    memcpy(p + 4, sv->indices, sizeof(uint32_t) * sv->n);
    memcpy(p + 4 + 4 * (size_t)sv->n, sv->values, sizeof(float) * sv->n);
    return 0;
}

/* Writes the mutations into txn, using only the transaction's own view (so several mutations of
 * one id in a batch compose correctly). */
static int apply_disk(ag_collection_t *c, MDB_txn *txn, const ag_mutation_t *muts, size_t n)
{
    uint8_t key[AG_ID_KEY_LEN], vkey[VKEY_LEN];
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const ag_mutation_t *m = &muts[i];
        ag_id_to_key(&m->id, key);
        MDB_val k = {AG_ID_KEY_LEN, key};
        if (m->delete_point) {
            rc = lmdb_del_ignore(txn, c->dbi_points, key, AG_ID_KEY_LEN);
            for (int v = 0; v < c->nvec && rc == 0; v++) {
                vec_key(key, (unsigned)v, vkey);
                rc = lmdb_del_ignore(txn, c->dbi_vectors, vkey, VKEY_LEN);
            }
            for (int v = 0; v < c->nsparse && rc == 0; v++) {
                vec_key(key, 0x8000u | (unsigned)v, vkey);
                rc = lmdb_del_ignore(txn, c->dbi_vectors, vkey, VKEY_LEN);
            }
            continue;
        }
        if (m->payload) {
            char *text = ag_json_dump(m->payload);
            if (!text)
                return AG_ENOMEM;
            MDB_val v = {strlen(text), text};
            rc = mdb_put(txn, c->dbi_points, &k, &v, 0);
            free(text);
        } else {
            MDB_val cur;
            rc = mdb_get(txn, c->dbi_points, &k, &cur);
            if (rc == MDB_NOTFOUND) {
                MDB_val v = {2, (void *)"{}"};
                rc = mdb_put(txn, c->dbi_points, &k, &v, 0);
            }
        }
        for (int v = 0; v < c->nvec && rc == 0; v++) {
            vec_key(key, (unsigned)v, vkey);
            if (m->dense_op[v] == AG_VEC_SET) {
                MDB_val kk = {VKEY_LEN, vkey};
                size_t rows = c->vec[v].multi && m->dense_rows[v] ? m->dense_rows[v] : 1;
                MDB_val vv = {sizeof(float) * c->vec[v].dim * rows, (void *)m->dense[v]};
                rc = mdb_put(txn, c->dbi_vectors, &kk, &vv, 0);
            } else if (m->dense_op[v] == AG_VEC_CLEAR || m->replace_vectors) {
                rc = lmdb_del_ignore(txn, c->dbi_vectors, vkey, VKEY_LEN);
            }
        }
        for (int v = 0; v < c->nsparse && rc == 0; v++) {
            vec_key(key, 0x8000u | (unsigned)v, vkey);
            if (m->sparse_op[v] == AG_VEC_SET)
                rc = put_sparse(txn, c->dbi_vectors, vkey, &m->sparse[v]);
            else if (m->sparse_op[v] == AG_VEC_CLEAR || m->replace_vectors)
                rc = lmdb_del_ignore(txn, c->dbi_vectors, vkey, VKEY_LEN);
        }
    }
    /* LMDB's own code (or an errno): MDB_MAP_FULL makes ag_coll_apply grow the map. */
    return rc;
}

static void clear_vectors(ag_collection_t *c, uint32_t s)
{
    for (int v = 0; v < c->nvec; v++)
        drop_dense(c, v, s);
    for (int v = 0; v < c->nsparse; v++)
        ag_sparse_clear(c->sparse[v].sp, s);
}

/* What reserve_memory set aside for one write (muts[i] ↔ packs[i], sparse[i * nsparse + v]). */
typedef struct reservation {
    const uint8_t **packs;     /* each payload given, packed (json/ag_pack.h); NULL for none
                                  (a new point without one gets the shared ag_pack_empty) */
    ag_sparse_prep_t *sparse;  /* each sparse vector set, copied and sorted */
    ag_mv_block_t **blocks;    /* each multivector set, copied (blocks[i * nvec + v]) */
    size_t n, nsparse, n_held; /* sparse[0 .. n_held) hold a reservation in their index */
    size_t nvec;
} reservation_t;

/* Gives back the sparse reservations not used (write lock held). */
static void unreserve_sparse(ag_collection_t *c, reservation_t *r)
{
    for (size_t k = 0; k < r->n_held; k++)
        ag_sparse_unreserve(c->sparse[k % r->nsparse].sp, &r->sparse[k]);
    r->n_held = 0;
}

/* Frees what was not used; the sparse reservations must have been given back or used. */
static void release_reservation(reservation_t *r)
{
    for (size_t i = 0; r->packs && i < r->n; i++)
        ag_pack_free(r->packs[i]);
    for (size_t k = 0; r->sparse && k < r->n * r->nsparse; k++)
        ag_sparse_prep_release(&r->sparse[k]);
    for (size_t k = 0; r->blocks && k < r->n * r->nvec; k++)
        ag_mv_block_free(r->blocks[k]);
    free(r->blocks);
    free(r->packs);
    free(r->sparse);
    *r = (reservation_t){0};
}

/* A write whose reservation is not going to be used (it was not committed). */
static void abandon_reservation(ag_collection_t *c, reservation_t *r)
{
    if (r->n_held) {
        atomic_fetch_add(&c->write_waiters, 1);
        pthread_rwlock_wrlock(&c->lock);
        atomic_fetch_sub(&c->write_waiters, 1);
        unreserve_sparse(c, r);
        pthread_rwlock_unlock(&c->lock);
    }
    release_reservation(r);
}

/*
 * Before a write commits: everything applying it to memory will need, so that once it is on disk
 * the in-memory apply cannot fail for want of memory (a write is then either refused with nothing
 * written, or applied whole): slot and free-list capacity, the id map (rehashed now if the batch
 * would make it rehash), vector-store rows, what the indexes need to add (graph queues, or nodes,
 * levels and buffers of a graph that links at once), sparse vectors copied and their posting
 * lists grown, and an empty payload object for each new point that brings none. *r is the
 * caller's (abandon_reservation unless apply_memory used it). Caller holds the write mutex; this
 * takes the write lock to move arrays.
 */
static int reserve_memory(ag_collection_t *c, const ag_mutation_t *muts, size_t n, reservation_t *r)
{
    *r = (reservation_t){.n = n, .nsparse = (size_t)c->nsparse, .nvec = (size_t)c->nvec};
    r->packs = calloc(n, sizeof(*r->packs));
    if (!r->packs)
        return AG_ENOMEM;
    bool any_multi = false;
    for (int v = 0; v < c->nvec; v++)
        any_multi |= c->vec[v].multi;
    if (any_multi && !(r->blocks = calloc(n * (size_t)c->nvec, sizeof(ag_mv_block_t *))))
        return AG_ENOMEM;
    if (c->nsparse && !(r->sparse = calloc(n * (size_t)c->nsparse, sizeof(ag_sparse_prep_t))))
        return AG_ENOMEM;
    size_t n_new = 0, n_del = 0, sets[AG_MAX_VECTORS] = {0};
    for (size_t i = 0; i < n; i++) {
        const ag_mutation_t *m = &muts[i];
        bool exists = ag_coll_find(c, &m->id) != UINT32_MAX;
        if (m->delete_point) {
            n_del += exists;
            continue;
        }
        if (!exists)
            n_new++;
        size_t plen;
        if (m->payload && ag_pack_encode(m->payload, &r->packs[i], &plen) != 0)
            return AG_ENOMEM;
        for (int v = 0; v < c->nvec; v++) {
            sets[v] += m->dense_op[v] == AG_VEC_SET;
            if (c->vec[v].multi && m->dense_op[v] == AG_VEC_SET &&
                !(r->blocks[i * r->nvec + (size_t)v] = ag_mv_block_new(
                      m->dense[v], m->dense_rows[v] ? m->dense_rows[v] : 1, c->vec[v].dim)))
                return AG_ENOMEM;
        }
        for (int v = 0; v < c->nsparse; v++)
            if (m->sparse_op[v] == AG_VEC_SET &&
                ag_sparse_prepare(m->sparse[v].indices, m->sparse[v].values, m->sparse[v].n,
                                  &r->sparse[i * r->nsparse + (size_t)v]) != 0)
                return AG_ENOMEM;
    }
    size_t slots = (size_t)c->nslots + n_new;
    if (slots > AG_VECSTORE_MAX_SLOTS)
        return AG_ENOMEM;
    int rc = 0;
    atomic_fetch_add(&c->write_waiters, 1);
    pthread_rwlock_wrlock(&c->lock);
    atomic_fetch_sub(&c->write_waiters, 1);
    if (AG_GROW(c->slots, c->cap_slots, slots, 1024, AG_VECSTORE_MAX_SLOTS) != 0 ||
        AG_GROW(c->free_slots, c->cap_free, (size_t)c->nfree + n_del, 256, AG_VECSTORE_MAX_SLOTS) !=
            0)
        rc = AG_ENOMEM;
    /* The id map: no rehash may fall inside the apply (inserts, and the tombstones deletes
     * leave, all counted). */
    uint64_t used = c->map_used, grown = used + n_new;
    if (rc == 0 && (c->map_cap == 0 ||
                    (used + c->map_tombs + n_new + n_del + 1) * 10 >= (uint64_t)c->map_cap * 7)) {
        uint64_t cap = c->map_cap ? c->map_cap : 1024;
        while ((grown + 1) * 10 >= cap * 5 || (grown + n_del + 1) * 10 >= cap * 7)
            cap *= 2;
        rc = cap > UINT32_MAX ? AG_ENOMEM : map_rehash(c, (uint32_t)cap);
    }
    for (int v = 0; rc == 0 && v < c->nvec; v++) {
        if (c->vec[v].multi)
            rc = ag_multivec_reserve(c->vec[v].mv, (uint32_t)slots);
        else if ((rc = ag_vecstore_reserve(c->vec[v].vs, (uint32_t)slots)) == 0 && c->vec[v].index)
            rc = ag_index_reserve(c->vec[v].index, (uint32_t)slots, sets[v]);
    }
    /* Sparse: every vector of the batch, in order (r->n_held counts the ones holding room). */
    for (size_t k = 0; rc == 0 && c->nsparse && k < n * r->nsparse; k++) {
        const ag_mutation_t *m = &muts[k / r->nsparse];
        int v = (int)(k % r->nsparse);
        if (!m->delete_point && m->sparse_op[v] == AG_VEC_SET &&
            (rc = ag_sparse_reserve(c->sparse[v].sp, (uint32_t)slots, &r->sparse[k])) != 0)
            break;
        r->n_held = k + 1;
    }
    if (rc)
        unreserve_sparse(c, r);
    pthread_rwlock_unlock(&c->lock);
    return rc;
}

/* Applies committed mutations to memory, with what reserve_memory set aside (r, used up here):
 * nothing in it can run out of memory. Should an index break that promise, it is reported and
 * the collection is reloaded from disk at the next start. */
static int apply_memory(ag_collection_t *c, const ag_mutation_t *muts, size_t n, reservation_t *r)
{
    int result = 0;
    for (size_t i = 0; i < n; i++) {
        const ag_mutation_t *m = &muts[i];
        uint32_t s = ag_coll_find(c, &m->id);
        if (m->delete_point) {
            if (s != UINT32_MAX) {
                clear_vectors(c, s);
                ag_payload_index_update(c, s, c->slots[s].payload, NULL);
                if (slot_release(c, s) != 0) {
                    ag_payload_index_invalidate(c); /* the point stays: rebuild, never miss it */
                    result = AG_ENOMEM;
                }
            }
            continue;
        }
        if (s == UINT32_MAX) {
            s = slot_alloc(c, &m->id);
            if (s == UINT32_MAX) {
                result = AG_ENOMEM;
                continue;
            }
            c->slots[s].payload = ag_pack_empty;
            if (!m->payload)
                ag_payload_index_update(c, s, NULL, ag_pack_empty);
        }
        if (m->payload) {
            /* The payload packed before the commit takes the slot (a pointer swap under the
             * write lock: no reader sees a half-written one); the payload indexes follow the
             * change (store/ag_payload_index.h). */
            const uint8_t *was = c->slots[s].payload;
            ag_payload_index_update(c, s, was, r->packs[i]);
            c->slots[s].payload = r->packs[i];
            r->packs[i] = NULL;
            ag_pack_free(was);
        }
        for (int v = 0; v < c->nvec; v++) {
            if (c->vec[v].multi) {
                if (m->dense_op[v] == AG_VEC_SET) {
                    ag_mv_block_t **b = &r->blocks[i * r->nvec + (size_t)v];
                    if (ag_multivec_put(c->vec[v].mv, s, *b) != 0)
                        result = AG_ENOMEM;
                    *b = NULL;
                } else if (m->dense_op[v] == AG_VEC_CLEAR || m->replace_vectors) {
                    drop_dense(c, v, s);
                }
                continue;
            }
            if (m->dense_op[v] == AG_VEC_SET) {
                bool had = ag_vecstore_has(c->vec[v].vs, s);
                if (had)
                    ag_index_remove(c->vec[v].index, s);
                if (ag_vecstore_set(c->vec[v].vs, s, m->dense[v]) != 0 ||
                    ag_index_add(c->vec[v].index, s) != 0)
                    result = AG_ENOMEM;
            } else if (m->dense_op[v] == AG_VEC_CLEAR || m->replace_vectors) {
                if (ag_vecstore_has(c->vec[v].vs, s)) {
                    ag_index_remove(c->vec[v].index, s);
                    ag_vecstore_clear(c->vec[v].vs, s);
                }
            }
        }
        for (int v = 0; v < c->nsparse; v++) {
            if (m->sparse_op[v] == AG_VEC_SET) {
                ag_sparse_put(c->sparse[v].sp, s, &r->sparse[i * r->nsparse + (size_t)v]);
            } else if (m->sparse_op[v] == AG_VEC_CLEAR || m->replace_vectors) {
                ag_sparse_clear(c->sparse[v].sp, s);
            }
        }
    }
    r->n_held = 0; /* every reserved sparse vector was put */
    ag_payload_index_advance(c);
    atomic_fetch_add(&c->version, 1);
    return result;
}

/* Bytes free for an unprivileged writer on the file system holding the collection's storage, or
 * UINT64_MAX when that cannot be told. */
static uint64_t free_bytes(const ag_collection_t *c)
{
    const char *path = NULL;
    struct statvfs st;
    if (mdb_env_get_path(c->env, &path) != 0 || !path || statvfs(path, &st) != 0)
        return UINT64_MAX;
    return (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
}

/* A write that did not reach the disk: 507 when the storage is full (the device, or LMDB's map),
 * naming the cause; otherwise a storage error. Nothing was written either way (LMDB aborts the
 * transaction), reads go on, and writes work again once there is room. err is an LMDB or errno
 * code, or an AG_E* code from apply_disk. */
static int storage_failure(const ag_collection_t *c, int err, const char *what, ag_diag_t *diag)
{
    if (err < 0 && err > -100) /* an AG_E* code (LMDB's own codes are below -30000) */
        return ag_fail(diag, err, "the write was not %s (storage failing)", what);
    uint64_t avail = free_bytes(c);
    if (err == MDB_MAP_FULL)
        return ag_fail(diag, AG_ENOSPACE,
                       "storage full: the write was not %s (the storage map reached its ceiling, "
                       "storage.map_size_gb = %zu GiB; raise it)",
                       what, c->gate ? c->gate->max >> 30 : 0);
    /* A device out of space shows up as ENOSPC, or as EIO from LMDB's page writes. */
    if (err == ENOSPC || err == EDQUOT || (avail < (4u << 20)))
        return ag_fail(diag, AG_ENOSPACE,
                       "storage full: the write was not %s (%llu KiB free on the storage "
                       "device); nothing was written — free space and retry",
                       what, (unsigned long long)(avail == UINT64_MAX ? 0 : avail >> 10));
    return ag_fail(diag, AG_ESTORAGE, "the write was not %s: %s", what, mdb_strerror(err));
}

int ag_coll_apply(ag_collection_t *c, ag_mutation_t *muts, size_t n, bool sync, ag_diag_t *diag)
{
    if (n == 0)
        return 0;
    /* Memory first (before the LMDB write transaction, which other writers of the environment
     * would wait for): once the write commits, applying it cannot run out of memory. */
    reservation_t r;
    int rc = reserve_memory(c, muts, n, &r);
    if (rc) {
        release_reservation(&r);
        return ag_fail(diag, AG_ENOMEM, "out of memory: the write was not stored");
    }
    /* The transaction runs inside the map-size gate; when it meets a full map it is aborted
     * whole, the map grown (up to storage.map_size_gb) and the same transaction run again
     * (store/ag_env.h, docs/RELIABILITY.md "LMDB map growth"). */
    int mrc = 0;
    for (int attempt = 0;; attempt++) {
        MDB_txn *txn = NULL;
        size_t seen = ag_env_enter(c->gate);
        if ((rc = mdb_txn_begin(c->env, NULL, 0, &txn)) != 0) {
            ag_env_leave(c->gate);
            abandon_reservation(c, &r);
            return ag_fail(diag, AG_ESTORAGE, "cannot begin a write transaction: %s",
                           mdb_strerror(rc));
        }
        rc = apply_disk(c, txn, muts, n);
        if (rc)
            mdb_txn_abort(txn);
        else
            mrc = mdb_txn_commit(txn);
        ag_env_leave(c->gate);
        int err = rc ? rc : mrc;
        if (err == MDB_MAP_FULL && attempt < 16 && ag_env_grow(c->gate, seen) == 0)
            continue;
        if (err) {
            abandon_reservation(c, &r);
            return storage_failure(c, err, rc ? "stored" : "committed", diag);
        }
        break;
    }
    if (sync && (mrc = mdb_env_sync(c->env, 1)) != 0)
        ag_log(AG_LOG_ERROR, "fsync of the storage failed: %s", mdb_strerror(mrc));
    note_write(c); /* after the commit: a manifest never claims more than the data holds */
    atomic_fetch_add(&c->write_waiters, 1);
    pthread_rwlock_wrlock(&c->lock);
    atomic_fetch_sub(&c->write_waiters, 1);
    ag_coll__disk_begin(c); /* codes of on_disk vectors are encoded from the map */
    rc = apply_memory(c, muts, n, &r);
    ag_coll__disk_end(c);
    release_reservation(&r);
    pthread_rwlock_unlock(&c->lock);
    if (rc)
        ag_log(AG_LOG_ERROR,
               "collection '%s': out of memory applying a committed write; it is "
               "on disk and will be served after a restart",
               c->name);
    if (sync && mrc)
        return ag_fail(diag, AG_EIO, "the write was committed but fsync failed");
    return 0;
}

/* ---- loading ------------------------------------------------------------------------------- */

static int load_records(ag_collection_t *c, MDB_txn *txn, ag_diag_t *diag)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, c->dbi_points, &cur);
    if (rc)
        return ag_fail(diag, AG_ESTORAGE, "cannot read collection '%s'", c->name);
    size_t bad = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        ag_point_id_t id;
        if (ag_id_from_key(k.mv_data, k.mv_size, &id) != 0) {
            bad++;
            continue;
        }
        /* Packed straight from the stored text; jansson only for what the direct encoder
         * declines (json/ag_pack.h). NUL is allowed as requests allow it (json/ag_json.c). */
        const uint8_t *packed;
        size_t plen;
        rc = ag_pack_from_text(v.mv_data, v.mv_size, &packed, &plen);
        if (rc == AG_PACK_DECLINED) {
            json_error_t jerr;
            json_t *payload = json_loadb(v.mv_data, v.mv_size, JSON_ALLOW_NUL, &jerr);
            if (!payload || !json_is_object(payload)) {
                json_decref(payload);
                bad++;
                continue;
            }
            rc = ag_pack_encode(payload, &packed, &plen);
            json_decref(payload);
        }
        uint32_t s = rc ? UINT32_MAX : slot_alloc(c, &id);
        if (s == UINT32_MAX) {
            ag_pack_free(packed);
            mdb_cursor_close(cur);
            return AG_ENOMEM;
        }
        c->slots[s].payload = packed;
    }
    mdb_cursor_close(cur);
    rc = mdb_cursor_open(txn, c->dbi_vectors, &cur);
    if (rc)
        return ag_fail(diag, AG_ESTORAGE, "cannot read vectors of '%s'", c->name);
    /* Graphs are loaded from their files (or rebuilt in one go) once all vectors are in. */
    for (int vi = 0; vi < c->nvec; vi++)
        if (ag_index_is_hnsw(c->vec[vi].index))
            ag_hnsw_defer(c->vec[vi].index);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        ag_point_id_t id;
        if (k.mv_size != VKEY_LEN || ag_id_from_key(k.mv_data, AG_ID_KEY_LEN, &id) != 0) {
            bad++;
            continue;
        }
        const uint8_t *kb = k.mv_data;
        unsigned num = ((unsigned)kb[AG_ID_KEY_LEN] << 8) | kb[AG_ID_KEY_LEN + 1];
        uint32_t s = ag_coll_find(c, &id);
        if (s == UINT32_MAX) {
            bad++;
            continue;
        }
        if (num & 0x8000u) {
            unsigned si = num & 0x7fffu;
            uint32_t cnt;
            if (si >= (unsigned)c->nsparse || v.mv_size < 4) {
                bad++;
                continue;
            }
            memcpy(&cnt, v.mv_data, 4);
            if (v.mv_size != 4 + 8 * (size_t)cnt) {
                bad++;
                continue;
            }
            uint32_t *ix = malloc(sizeof(uint32_t) * (cnt ? cnt : 1));
            float *vals = malloc(sizeof(float) * (cnt ? cnt : 1));
            if (!ix || !vals) {
                free(ix);
                free(vals);
                mdb_cursor_close(cur);
                return AG_ENOMEM;
            }
            memcpy(ix, (const uint8_t *)v.mv_data + 4, 4 * (size_t)cnt);
            memcpy(vals, (const uint8_t *)v.mv_data + 4 + 4 * (size_t)cnt, 4 * (size_t)cnt);
            rc = ag_sparse_set(c->sparse[si].sp, s, ix, vals, cnt);
            free(ix);
            free(vals);
            if (rc) {
                mdb_cursor_close(cur);
                return rc;
            }
        } else {
            if (!ag_coll_dense_record_ok(c, num, v.mv_size)) {
                bad++;
                continue;
            }
            if (c->vec[num].on_disk) { /* presence only: the row stays in the map */
                rc = ag_vecstore_set(c->vec[num].vs, s, NULL);
                if (rc == 0)
                    rc = ag_index_add(c->vec[num].index, s);
                if (rc) {
                    mdb_cursor_close(cur);
                    return rc;
                }
                continue;
            }
            float *tmp = malloc(v.mv_size);
            if (!tmp) {
                mdb_cursor_close(cur);
                return AG_ENOMEM;
            }
            memcpy(tmp, v.mv_data, v.mv_size); /* LMDB data need not be float-aligned */
            if (c->vec[num].multi) {
                uint32_t rows = (uint32_t)(v.mv_size / (sizeof(float) * c->vec[num].dim));
                rc = ag_multivec_set(c->vec[num].mv, s, tmp, rows);
                free(tmp);
            } else {
                rc = ag_vecstore_set(c->vec[num].vs, s, tmp);
                free(tmp);
                if (rc == 0)
                    rc = ag_index_add(c->vec[num].index, s);
            }
            if (rc) {
                mdb_cursor_close(cur);
                return rc;
            }
        }
    }
    mdb_cursor_close(cur);
    finish_indexes(c);
    if (bad)
        ag_log(AG_LOG_WARN, "collection '%s': skipped %zu unreadable records while loading",
               c->name, bad);
    return 0;
}

int ag_coll_load(ag_collection_t *c, MDB_txn *txn, ag_diag_t *diag)
{
    /* Rows of on_disk vectors (graph resume, codes) are read through the load's transaction. */
    ag_coll__disk_borrow(c->env, txn);
    int rc = load_records(c, txn, diag);
    ag_coll__disk_borrow(NULL, NULL);
    return rc;
}

/* ---- rendering ----------------------------------------------------------------------------- */

static json_t *floats_json(const float *f, uint32_t n)
{
    json_t *a = json_array();
    for (uint32_t i = 0; a && i < n; i++)
        json_array_append_new(a, ag_json_f32(f[i]));
    return a;
}

/* A multivector as a list of its rows. */
static json_t *rows_json(const float *f, uint32_t rows, uint32_t dim)
{
    json_t *a = json_array();
    for (uint32_t r = 0; a && r < rows; r++)
        json_array_append_new(a, floats_json(f + (size_t)r * dim, dim));
    return a;
}

static bool wanted(const json_t *which, const char *name)
{
    if (!which)
        return true;
    size_t i;
    json_t *w;
    json_array_foreach(which, i, w)
    {
        if (json_is_string(w) && strcmp(json_string_value(w), name) == 0)
            return true;
    }
    return false;
}

json_t *ag_coll_vectors_json(const ag_collection_t *c, uint32_t slot, const json_t *which)
{
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    bool any_sparse = false;
    for (int v = 0; v < c->nsparse; v++) {
        const uint32_t *ix;
        const float *vals;
        uint32_t n;
        if (!wanted(which, c->sparse[v].name) ||
            !ag_sparse_get(c->sparse[v].sp, slot, &ix, &vals, &n))
            continue;
        json_t *sv = json_object();
        json_t *ia = json_array();
        for (uint32_t i = 0; ia && i < n; i++)
            json_array_append_new(ia, json_integer(ix[i]));
        json_object_set_new(sv, "indices", ia);
        json_object_set_new(sv, "values", floats_json(vals, n));
        json_object_set_new(obj, c->sparse[v].name, sv);
        any_sparse = true;
    }
    for (int v = 0; v < c->nvec; v++) {
        uint32_t rows = 1;
        const float *f = c->vec[v].multi ? ag_multivec_get(c->vec[v].mv, slot, &rows)
                                         : ag_vecstore_get(c->vec[v].vs, slot);
        if (!f || !wanted(which, c->vec[v].name))
            continue;
        json_t *vj =
            c->vec[v].multi ? rows_json(f, rows, c->vec[v].dim) : floats_json(f, c->vec[v].dim);
        if (c->unnamed && !any_sparse) {
            json_decref(obj);
            return vj;
        }
        json_object_set_new(obj, c->vec[v].name, vj);
    }
    return obj;
}

/* ---- background indexing ------------------------------------------------------------------- */

uint32_t ag_coll_index_step(ag_collection_t *c, uint32_t budget)
{
    uint32_t done = 0;
    for (int v = 0; v < c->nvec && done < budget; v++) {
        /* A writer waiting for the lock goes first; otherwise link a small step under the
         * exclusive lock, so searches and writes wait at most one step. The index is looked at
         * under the lock: a PATCH of hnsw_config may replace it (ag_coll_hnsw_commit). */
        if (atomic_load(&c->write_waiters) > 0)
            break;
        pthread_rwlock_wrlock(&c->lock);
        ag_coll__disk_begin(c);
        /* One link at a time: a writer that starts waiting meanwhile waits for one link, not
         * the whole step (a step of 32 links of 128-d points took milliseconds, a real share of
         * an upsert's time; docs/BENCHMARKS.md "Ingestion"). */
        while (!c->dropped && ag_index_is_hnsw(c->vec[v].index) && done < budget &&
               atomic_load(&c->write_waiters) == 0) {
            uint32_t k = ag_hnsw_link_pending(c->vec[v].index, 1);
            if (k == 0)
                break;
            done += k;
        }
        ag_coll__disk_end(c);
        pthread_rwlock_unlock(&c->lock);
    }
    return done;
}

const char *ag_coll_name(const ag_collection_t *c)
{
    return c->name;
}

/* ---- partial-snapshot identity (docs/SECURITY.md "Partial snapshots") ----------------------- */

static atomic_uint_fast64_t op_seq, meta_op;

uint64_t ag_op_next(void)
{
    return atomic_fetch_add(&op_seq, 1) + 1;
}

uint64_t ag_op_meta(void)
{
    return atomic_load(&meta_op);
}

void ag_op_meta_touch(void)
{
    atomic_store(&meta_op, ag_op_next());
}

/* A fresh random segment id (UUID form); seg_mutex held or c not yet shared. */
static void new_segment_id(ag_collection_t *c)
{
    unsigned char b[16];
    randombytes_buf(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(c->seg_id, sizeof(c->seg_id),
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    c->adopted = false;
}

/* An identity adopted from a partial snapshot's source holds only until anything changes here:
 * a point write, or any catalog change (counted store-wide, so conservatively). seg_mutex held. */
static void drop_stale_adoption(ag_collection_t *c)
{
    if (c->adopted && ag_op_meta() != c->adopt_mark)
        new_segment_id(c);
}

static void note_write(ag_collection_t *c)
{
    pthread_mutex_lock(&c->seg_mutex);
    if (c->adopted)
        new_segment_id(c);
    c->data_op = ag_op_next();
    pthread_mutex_unlock(&c->seg_mutex);
}

uint64_t ag_coll_last_op(ag_collection_t *c)
{
    pthread_mutex_lock(&c->seg_mutex);
    uint64_t v = c->data_op;
    pthread_mutex_unlock(&c->seg_mutex);
    return v;
}

json_t *ag_coll_manifest(ag_collection_t *c)
{
    pthread_mutex_lock(&c->seg_mutex);
    drop_stale_adoption(c);
    uint64_t data = c->data_op, meta = c->adopted ? c->meta_op : ag_op_meta();
    char id[sizeof(c->seg_id)];
    memcpy(id, c->seg_id, sizeof(id));
    pthread_mutex_unlock(&c->seg_mutex);
    /* The parts of Aegis's one segment, named after the Qdrant storage they correspond to. */
    json_t *files = json_pack("{s:I,s:I,s:I}", "collection.json", (json_int_t)meta,
                              "payload_storage/points.bin", (json_int_t)data,
                              "vector_storage/vectors.bin", (json_int_t)data);
    json_t *seg = files ? json_pack("{s:s,s:I,s:o}", "segment_id", id, "segment_version",
                                    (json_int_t)(data > meta ? data : meta), "file_versions", files)
                        : NULL;
    return seg ? json_pack("{s:o}", id, seg) : NULL;
}

bool ag_coll_adopt_manifest(ag_collection_t *c, const json_t *m)
{
    const char *id;
    json_t *seg;
    if (!json_is_object(m) || json_object_size(m) != 1)
        return false;
    json_object_foreach((json_t *)m, id, seg)
    {
        json_t *files = json_object_get(seg, "file_versions");
        json_t *meta = json_object_get(files, "collection.json");
        json_t *data = json_object_get(files, "vector_storage/vectors.bin");
        if (strlen(id) >= sizeof(c->seg_id) || !json_is_integer(meta) || !json_is_integer(data) ||
            json_integer_value(meta) < 0 || json_integer_value(data) < 0)
            return false;
        pthread_mutex_lock(&c->seg_mutex);
        snprintf(c->seg_id, sizeof(c->seg_id), "%s", id);
        c->meta_op = (uint64_t)json_integer_value(meta);
        c->data_op = (uint64_t)json_integer_value(data);
        c->adopt_mark = ag_op_meta();
        c->adopted = true;
        pthread_mutex_unlock(&c->seg_mutex);
    }
    return true;
}

uint32_t ag_coll_live(const ag_collection_t *c)
{
    return c->live;
}

uint32_t ag_coll_nslots(const ag_collection_t *c)
{
    return c->nslots;
}

const ag_point_id_t *ag_coll_id(const ag_collection_t *c, uint32_t slot)
{
    return &c->slots[slot].id;
}

json_t *ag_coll_payload_json(const ag_collection_t *c, uint32_t slot)
{
    const uint8_t *p = c->slots[slot].payload;
    return p ? ag_pack_decode(p) : json_object(); /* a dead slot holds none */
}

const uint8_t *ag_coll_payload_packed(const ag_collection_t *c, uint32_t slot)
{
    return c->slots[slot].payload;
}

typedef struct each_ud {
    void (*fn)(const json_t *v, void *ud);
    void *ud;
    bool oom;
} each_ud_t;

static void each_decoded(const uint8_t *v, void *ud)
{
    each_ud_t *e = ud;
    json_t *j = ag_pack_decode(v);
    if (!j) {
        e->oom = true;
        return;
    }
    e->fn(j, e->ud);
    json_decref(j);
}

size_t ag_coll_payload_each(const ag_collection_t *c, uint32_t slot, const char *path,
                            void (*fn)(const json_t *v, void *ud), void *ud)
{
    each_ud_t e = {fn, ud, false};
    size_t n = ag_payload_path_each_packed(c->slots[slot].payload, path, each_decoded, &e);
    return e.oom ? SIZE_MAX : n;
}

/* schema_mu guards the pointer only: it is a leaf lock (nothing else is taken under it), so
 * these may be called with or without the collection's other locks. */
static pthread_mutex_t *schema_mu(const ag_collection_t *c)
{
    return (pthread_mutex_t *)&c->schema_mu;
}

size_t ag_coll_index_count(const ag_collection_t *c)
{
    pthread_mutex_lock(schema_mu(c));
    size_t n = json_object_size(c->schema);
    pthread_mutex_unlock(schema_mu(c));
    return n;
}

json_t *ag_coll_index_def(const ag_collection_t *c, const char *field)
{
    pthread_mutex_lock(schema_mu(c));
    json_t *def = json_deep_copy(json_object_get(c->schema, field));
    pthread_mutex_unlock(schema_mu(c));
    return def;
}

const char *ag_coll_index_type(const ag_collection_t *c, const char *field,
                               char out[AG_INDEX_TYPE_MAX])
{
    pthread_mutex_lock(schema_mu(c));
    const char *type =
        json_string_value(json_object_get(json_object_get(c->schema, field), "data_type"));
    snprintf(out, AG_INDEX_TYPE_MAX, "%s", type ? type : "");
    pthread_mutex_unlock(schema_mu(c));
    return out[0] ? out : NULL;
}

json_t *ag_coll__schema_copy(const ag_collection_t *c)
{
    pthread_mutex_lock(schema_mu(c));
    json_t *copy = json_deep_copy(c->schema);
    pthread_mutex_unlock(schema_mu(c));
    return copy;
}

void ag_coll__set_schema(ag_collection_t *c, json_t *schema)
{
    if (!schema)
        return;
    pthread_mutex_lock(&c->schema_mu);
    json_t *old = c->schema;
    c->schema = schema;
    pthread_mutex_unlock(&c->schema_mu);
    json_decref(old);
}

int ag_coll_walk(ag_collection_t *c, const ag_point_id_t *from, ag_coll_walk_fn visit, void *ud)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = 0;
    ag_env_enter(c->gate); /* no map growth while the read transaction is open */
    if (mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn) != 0 ||
        mdb_cursor_open(txn, c->dbi_points, &cur) != 0) {
        rc = AG_ESTORAGE;
        goto done;
    }
    uint8_t key[AG_ID_KEY_LEN];
    MDB_val k = {AG_ID_KEY_LEN, key}, v;
    int mrc;
    if (from) {
        ag_id_to_key(from, key);
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    } else {
        mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        ag_point_id_t id;
        bool ok = ag_id_from_key(k.mv_data, k.mv_size, &id) == 0;
        int r = visit(ud, ok ? &id : NULL, ok ? ag_coll_find(c, &id) : UINT32_MAX);
        if (r != 0) {
            rc = r < 0 ? r : 0;
            break;
        }
    }
done:
    if (cur)
        mdb_cursor_close(cur);
    if (txn)
        mdb_txn_abort(txn);
    ag_env_leave(c->gate);
    return rc;
}

int ag_coll_read(ag_collection_t *c, ag_coll_read_fn fn, void *ud)
{
    ag_coll_read_begin(c);
    int rc = fn(ud, c);
    ag_coll_read_end(c);
    return rc;
}

const json_t *ag_coll_params(const ag_collection_t *c)
{
    return c->params;
}

bool ag_coll_unnamed(const ag_collection_t *c)
{
    return c->unnamed;
}

int ag_coll_nvec(const ag_collection_t *c)
{
    return c->nvec;
}

int ag_coll_nsparse(const ag_collection_t *c)
{
    return c->nsparse;
}

void ag_coll_dense_info(const ag_collection_t *c, int vi, ag_dense_info_t *out)
{
    const ag_vector_cfg_t *v = &c->vec[vi];
    *out = (ag_dense_info_t){v->name, v->dim, v->dist, v->dtype, v->multi, v->vs, v->index, v->mv};
}

uint32_t ag_coll_full_scan_points(const ag_collection_t *c, int vi)
{
    ag_hnsw_params_t p;
    if (c->vec[vi].multi || !vector_hnsw(c, c->params, vi, &p))
        return UINT32_MAX;
    return p.full_scan_threshold;
}

void ag_coll_search_shape(ag_collection_t *c, int vi, ag_coll_search_shape_t *out)
{
    memset(out, 0, sizeof(*out));
    ag_coll_read_begin(c);
    const ag_vector_cfg_t *v = &c->vec[vi];
    out->live = c->live;
    out->dim = v->dim;
    out->on_disk = v->on_disk;
    out->multi = v->multi;
    out->exact_points = c->live;
    ag_hnsw_params_t p;
    if (!v->multi && ag_index_is_hnsw(v->index) && vector_hnsw(c, c->params, vi, &p)) {
        out->m = p.m ? p.m : 16;
        out->ef_search = p.ef_search ? p.ef_search : p.ef_construct ? p.ef_construct : 100;
        /* Over the threshold the graph serves the search and only queued slots are scored
         * exactly (crossing it queues every vector, so a graph not yet built shows as queued). */
        if (c->live > p.full_scan_threshold) {
            out->graph = true;
            out->exact_points = ag_hnsw_pending(v->index);
        }
    }
    ag_coll_read_end(c);
}

const float *ag_coll_dense_get(const ag_collection_t *c, int vi, uint32_t slot)
{
    if (c->vec[vi].multi)
        return NULL;
    const float *f = ag_vecstore_get(c->vec[vi].vs, slot);
    /* an on_disk row is copied so it lasts as long as the lock, like an in-RAM one */
    return f && c->vec[vi].on_disk ? ag_coll__disk_keep(f, c->vec[vi].dim) : f;
}

const float *ag_coll_dense_rows(const ag_collection_t *c, int vi, uint32_t slot, uint32_t *rows)
{
    *rows = 1;
    return c->vec[vi].multi ? ag_multivec_get(c->vec[vi].mv, slot, rows)
                            : ag_coll_dense_get(c, vi, slot);
}

const ag_sparse_t *ag_coll_sparse_index(const ag_collection_t *c, int si)
{
    return c->sparse[si].sp;
}

int ag_coll_scan(ag_collection_t *c, ag_coll_visit_fn visit, void *ud)
{
    int rc = 0;
    ag_coll_read_begin(c);
    for (uint32_t s = 0; s < c->nslots; s++) {
        if (!c->slots[s].alive)
            continue;
        json_t *payload = ag_pack_decode(c->slots[s].payload);
        if (!payload) {
            rc = AG_ENOMEM;
            break;
        }
        bool more = visit(ud, s, &c->slots[s].id, payload);
        json_decref(payload);
        if (!more)
            break;
    }
    ag_coll_read_end(c);
    return rc;
}

bool ag_coll_any_match(ag_collection_t *c, const ag_filter_t *f, const json_t *hint)
{
    bool found = false;
    ag_coll_read_begin(c);
    ag_arena_t arena;
    ag_arena_init(&arena, 64u << 20);
    uint32_t *cand = NULL;
    size_t ncand = 0;
    if (hint && ag_payload_candidates(c, &arena, hint, &cand, &ncand)) {
        for (size_t k = 0; k < ncand && !found; k++)
            found = ag_coll_match(c, cand[k], f);
    } else {
        for (uint32_t s = 0; s < c->nslots && !found; s++)
            found = ag_coll_match(c, s, f);
    }
    ag_arena_release(&arena);
    ag_coll_read_end(c);
    return found;
}

static void note_present(const uint8_t *v, void *ud)
{
    AG_UNUSED(v);
    *(bool *)ud = true;
}

void ag_coll_counts(ag_collection_t *c, ag_coll_counts_t *out)
{
    memset(out, 0, sizeof(*out));
    ag_coll_read_begin(c);
    out->points = c->live;
    for (int i = 0; i < c->nvec; i++) {
        out->vectors += dense_count(c, i);
        if (ag_index_is_hnsw(c->vec[i].index))
            out->queued += ag_hnsw_pending(c->vec[i].index);
    }
    ag_coll_read_end(c);
}

int ag_coll_stats(ag_collection_t *c, const ag_filter_t *restriction, ag_coll_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    ag_coll_read_begin(c);
    out->params = json_deep_copy(c->params);
    out->schema = json_object();
    out->points = c->live;
    if (restriction) {
        out->points = 0;
        for (uint32_t s = 0; s < c->nslots; s++) {
            if (!ag_coll_match(c, s, restriction))
                continue;
            out->points++;
            for (int i = 0; i < c->nvec; i++)
                out->vectors += has_dense(c, i, s);
        }
    } else {
        for (int i = 0; i < c->nvec; i++)
            out->vectors += dense_count(c, i);
    }
    for (int i = 0; i < c->nvec; i++) {
        if (!ag_index_is_hnsw(c->vec[i].index))
            continue;
        out->queued += ag_hnsw_pending(c->vec[i].index);
        /* Green needs the checkpoint on disk too (docs/RELIABILITY.md, "Crash recovery"). */
        if (c->index_dir && c->index_ready && ag_hnsw_dirty(c->vec[i].index))
            out->unsaved = true;
    }
    const char *field;
    json_t *def, *schema = ag_coll__schema_copy(c);
    json_object_foreach(schema, field, def)
    {
        json_int_t points = 0;
        for (uint32_t s = 0; s < c->nslots; s++) {
            if (!ag_coll_match(c, s, restriction))
                continue;
            bool has = false;
            ag_payload_path_each_packed(c->slots[s].payload, field, note_present, &has);
            points += has;
        }
        json_t *d = json_deep_copy(def);
        json_object_set_new(d, "points", json_integer(points));
        json_object_set_new(out->schema, field, d);
    }
    json_decref(schema);
    ag_coll_read_end(c);
    if (!schema) {
        json_decref(out->schema);
        out->schema = NULL;
    }
    if (!out->params || !out->schema) {
        json_decref(out->params);
        json_decref(out->schema);
        memset(out, 0, sizeof(*out));
        return AG_ENOMEM;
    }
    return 0;
}
