#include "ag_snapshot.h"

#include <errno.h>
#include <sys/statvfs.h>

#include "ag_id.h"
#include "ag_tar.h"
#include "store/ag_collection_int.h"
#include "store/ag_store_int.h"
#include "json/ag_json.h"

/* The vector key is the point's id key and a 2-byte vector number (ag_collection.c). */
#define VKEY_LEN (AG_ID_KEY_LEN + 2)
/* A record's value is at most this long (LMDB's own limit is far above any payload we accept). */
#define MAX_VALUE_LEN (256u << 20)
#define MAX_KEY_LEN 64u

/* ---- writing ------------------------------------------------------------------------------- */

static int put_u32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    return fwrite(b, 1, 4, f) == 4 ? 0 : AG_EIO;
}

/* Streams every record of dbi into a tar entry named name. */
static int dump_dbi(MDB_txn *txn, MDB_dbi dbi, FILE *f, const char *name, int64_t now)
{
    ag_tar_entry_w_t e;
    int rc = ag_tar_begin_entry(f, &e, name, now);
    if (rc)
        return rc;
    MDB_cursor *cur;
    if (mdb_cursor_open(txn, dbi, &cur) != 0)
        return AG_ESTORAGE;
    MDB_val k, v;
    int mrc;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if ((rc = put_u32(f, (uint32_t)k.mv_size)) == 0 &&
            (rc = put_u32(f, (uint32_t)v.mv_size)) == 0 &&
            (fwrite(k.mv_data, 1, k.mv_size, f) != k.mv_size ||
             fwrite(v.mv_data, 1, v.mv_size, f) != v.mv_size))
            rc = AG_EIO;
    }
    mdb_cursor_close(cur);
    if (rc == 0 && mrc != MDB_NOTFOUND)
        rc = AG_ESTORAGE;
    return rc ? rc : ag_tar_end_entry(f, &e);
}

static json_t *meta_json(MDB_txn *txn, MDB_dbi meta, char kind, const char *name)
{
    char key[AG_MAX_NAME_LEN + 8];
    snprintf(key, sizeof(key), "%c/%s", kind, name);
    MDB_val k = {strlen(key), key}, v;
    if (mdb_get(txn, meta, &k, &v) != 0)
        return NULL;
    json_error_t jerr;
    return json_loadb(v.mv_data, v.mv_size, 0, &jerr);
}

static uint64_t dbi_bytes(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_stat s;
    if (mdb_stat(txn, dbi, &s) != 0)
        return 0;
    return (uint64_t)s.ms_psize * (s.ms_branch_pages + s.ms_leaf_pages + s.ms_overflow_pages);
}

static int write_one(MDB_txn *txn, MDB_dbi meta, ag_collection_t *c, FILE *f, const char *prefix,
                     int64_t now)
{
    json_t *rec = meta_json(txn, meta, 'c', c->name);
    json_t *tenants = meta_json(txn, meta, 't', c->name);
    json_t *cj = NULL;
    int rc = AG_ESTORAGE;
    if (rec)
        cj = json_pack("{s:O,s:O,s:o}", "params", json_object_get(rec, "params"), "schema",
                       json_object_get(rec, "schema"), "tenants",
                       tenants ? json_incref(tenants) : json_object());
    /* Not key-sorted: a vector's record number is its place in params.vectors (and
     * sparse_vectors), so the restored params must keep the order the collection was made with
     * (sorting swapped the vectors of collections whose names were not created in order). */
    char *text = cj ? json_dumps(cj, JSON_COMPACT) : NULL;
    char name[AG_TAR_NAME_MAX + 1];
    if (text) {
        snprintf(name, sizeof(name), "%scollection.json", prefix);
        rc = ag_tar_put_file(f, name, text, strlen(text), now);
    }
    if (rc == 0) {
        snprintf(name, sizeof(name), "%spoints.bin", prefix);
        rc = dump_dbi(txn, c->dbi_points, f, name, now);
    }
    if (rc == 0) {
        snprintf(name, sizeof(name), "%svectors.bin", prefix);
        rc = dump_dbi(txn, c->dbi_vectors, f, name, now);
    }
    free(text);
    json_decref(cj);
    json_decref(rec);
    json_decref(tenants);
    return rc;
}

static int aliases_entry(MDB_txn *txn, MDB_dbi meta, FILE *f, int64_t now)
{
    json_t *out = json_object();
    if (!out)
        return AG_ENOMEM;
    MDB_cursor *cur;
    if (mdb_cursor_open(txn, meta, &cur) != 0) {
        json_decref(out);
        return AG_ESTORAGE;
    }
    MDB_val k = {2, (void *)"a/"}, v;
    int rc = 0;
    for (int m = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); m == 0 && rc == 0;
         m = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < 3 || memcmp(k.mv_data, "a/", 2) != 0)
            break;
        char *alias = strndup((const char *)k.mv_data + 2, k.mv_size - 2);
        json_t *target = json_stringn(v.mv_data, v.mv_size);
        if (!alias || !target || json_object_set_new(out, alias, target) != 0)
            rc = AG_ENOMEM;
        free(alias);
    }
    mdb_cursor_close(cur);
    char *text = rc == 0 ? json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(out);
    if (rc == 0)
        rc = text ? ag_tar_put_file(f, "aliases.json", text, strlen(text), now) : AG_ENOMEM;
    free(text);
    return rc;
}

int ag_store_snapshot_write(ag_store_t *st, const char *collection, FILE *f, const char *space_dir,
                            json_t **names, ag_diag_t *diag)
{
    if (names)
        *names = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi meta;
    ag_collection_t **colls = NULL;
    size_t n = 0;
    int rc = ag_store__snapshot_begin(st, collection, &txn, &meta, &colls, &n);
    if (rc == AG_ENOTFOUND)
        return ag_fail(diag, rc, "Not found: Collection `%s` doesn't exist!", collection);
    if (rc)
        return ag_fail(diag, rc, "cannot start the snapshot");
    json_t *list = json_array();
    if (!list)
        rc = AG_ENOMEM;
    /* Room for the records (their LMDB pages bound them from above) plus a margin. */
    uint64_t need = 1u << 20;
    for (size_t i = 0; i < n; i++)
        need += dbi_bytes(txn, colls[i]->dbi_points) + dbi_bytes(txn, colls[i]->dbi_vectors);
    struct statvfs vfs;
    if (rc == 0 && space_dir && statvfs(space_dir, &vfs) == 0 &&
        (uint64_t)vfs.f_bavail * vfs.f_frsize < need)
        rc = ag_fail(diag, AG_ENOSPACE,
                     "Insufficient storage: the snapshot needs about %llu MB and the snapshots "
                     "directory has %llu MB free",
                     (unsigned long long)(need >> 20),
                     (unsigned long long)(((uint64_t)vfs.f_bavail * vfs.f_frsize) >> 20));
    int64_t now = (int64_t)time(NULL);
    if (rc == 0 && !collection)
        rc = aliases_entry(txn, meta, f, now);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char prefix[AG_TAR_NAME_MAX + 1];
        prefix[0] = '\0';
        if (!collection) {
            /* Names are validated at creation (no '/', no ".."); a name too long for a ustar
             * entry cannot be put in a full snapshot. */
            if (strlen(colls[i]->name) + sizeof("collections//collection.json") >
                AG_TAR_NAME_MAX + 1) {
                rc = ag_fail(diag, AG_EINVAL,
                             "collection name '%.64s…' is too long for a full snapshot",
                             colls[i]->name);
                break;
            }
            snprintf(prefix, sizeof(prefix), "collections/%s/", colls[i]->name);
        }
        rc = write_one(txn, meta, colls[i], f, prefix, now);
        if (rc == 0 && json_array_append_new(list, json_string(colls[i]->name)) != 0)
            rc = AG_ENOMEM;
    }
    ag_store__snapshot_end(st, txn, colls, n);
    if (rc == AG_EIO && errno == ENOSPC)
        rc = ag_fail(diag, AG_ENOSPACE, "Insufficient storage: the snapshots directory is full");
    if (rc && !diag->msg[0])
        ag_fail(diag, rc, "cannot write the snapshot");
    if (rc == 0 && names)
        *names = json_incref(list);
    json_decref(list);
    return rc;
}

/* ---- restoring ----------------------------------------------------------------------------- */

static int get_u32(FILE *f, uint32_t *out)
{
    unsigned char b[4];
    if (fread(b, 1, 4, f) != 4)
        return AG_EIO;
    *out = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 0;
}

/* Reads one record; 1 at a clean end of file, 0 with k/v filled (in buf), or an error. */
static int next_record(FILE *f, unsigned char **buf, size_t *cap, MDB_val *k, MDB_val *v)
{
    uint32_t kl, vl;
    int c = fgetc(f);
    if (c == EOF)
        return 1;
    ungetc(c, f);
    if (get_u32(f, &kl) != 0 || get_u32(f, &vl) != 0 || kl == 0 || kl > MAX_KEY_LEN ||
        vl > MAX_VALUE_LEN)
        return AG_EUNPROCESSABLE;
    size_t need = (size_t)kl + vl + 1;
    if (need > *cap) {
        unsigned char *grown = realloc(*buf, need);
        if (!grown)
            return AG_ENOMEM;
        *buf = grown;
        *cap = need;
    }
    if (fread(*buf, 1, (size_t)kl + vl, f) != (size_t)kl + vl)
        return AG_EUNPROCESSABLE;
    k->mv_size = kl;
    k->mv_data = *buf;
    v->mv_size = vl;
    v->mv_data = *buf + kl;
    return 0;
}

static int fill_points(ag_collection_t *c, MDB_txn *txn, FILE *f, ag_diag_t *diag)
{
    unsigned char *buf = NULL;
    size_t cap = 0, count = 0;
    MDB_val k, v;
    int rc;
    while ((rc = next_record(f, &buf, &cap, &k, &v)) == 0) {
        ag_point_id_t id;
        json_error_t jerr;
        json_t *payload = NULL;
        if (k.mv_size != AG_ID_KEY_LEN || ag_id_from_key(k.mv_data, k.mv_size, &id) != 0 ||
            !(payload = json_loadb(v.mv_data, v.mv_size, JSON_REJECT_DUPLICATES, &jerr)) ||
            !json_is_object(payload)) {
            json_decref(payload);
            rc = ag_fail(diag, AG_EINVAL, "snapshot: point record %zu is malformed", count);
            break;
        }
        json_decref(payload);
        int m = mdb_put(txn, c->dbi_points, &k, &v, MDB_APPEND);
        if (m) {
            rc = m == MDB_KEYEXIST
                     ? ag_fail(diag, AG_EINVAL, "snapshot: point records out of order or repeated")
                     : ag_fail(diag, AG_ESTORAGE, "snapshot: cannot store points: %s",
                               mdb_strerror(m));
            break;
        }
        count++;
    }
    free(buf);
    if (rc == 1)
        return 0;
    return rc < 0 && diag->msg[0] ? rc
                                  : ag_fail(diag, AG_EINVAL, "snapshot: points.bin is truncated");
}

static int fill_vectors(ag_collection_t *c, MDB_txn *txn, FILE *f, ag_diag_t *diag)
{
    unsigned char *buf = NULL;
    size_t cap = 0, count = 0;
    MDB_val k, v;
    int rc;
    while ((rc = next_record(f, &buf, &cap, &k, &v)) == 0) {
        ag_point_id_t id;
        bool ok = k.mv_size == VKEY_LEN && ag_id_from_key(k.mv_data, AG_ID_KEY_LEN, &id) == 0;
        if (ok) {
            MDB_val pk = {AG_ID_KEY_LEN, k.mv_data}, pv;
            ok = mdb_get(txn, c->dbi_points, &pk, &pv) == 0; /* every vector has its point */
        }
        if (ok) {
            const uint8_t *kb = k.mv_data;
            unsigned num = ((unsigned)kb[AG_ID_KEY_LEN] << 8) | kb[AG_ID_KEY_LEN + 1];
            if (num & 0x8000u) {
                uint32_t cnt = 0;
                if (v.mv_size >= 4)
                    memcpy(&cnt, v.mv_data, 4);
                ok = (num & 0x7fffu) < (unsigned)c->nsparse && v.mv_size >= 4 &&
                     v.mv_size == 4 + 8 * (size_t)cnt;
            } else {
                ok = ag_coll_dense_record_ok(c, num, v.mv_size);
            }
        }
        if (!ok) {
            rc =
                ag_fail(diag, AG_EINVAL,
                        "snapshot: vector record %zu does not fit the collection's vectors", count);
            break;
        }
        int m = mdb_put(txn, c->dbi_vectors, &k, &v, MDB_APPEND);
        if (m) {
            rc = m == MDB_KEYEXIST
                     ? ag_fail(diag, AG_EINVAL, "snapshot: vector records out of order or repeated")
                     : ag_fail(diag, AG_ESTORAGE, "snapshot: cannot store vectors: %s",
                               mdb_strerror(m));
            break;
        }
        count++;
    }
    free(buf);
    if (rc == 1)
        return 0;
    return rc < 0 && diag->msg[0] ? rc
                                  : ag_fail(diag, AG_EINVAL, "snapshot: vectors.bin is truncated");
}

static FILE *open_in(const char *dir, const char *file)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, file) >= sizeof(path))
        return NULL;
    return fopen(path, "rbe");
}

int ag_snap__fill(ag_collection_t *c, MDB_txn *txn, const char *dir, ag_diag_t *diag)
{
    FILE *p = open_in(dir, "points.bin");
    FILE *v = open_in(dir, "vectors.bin");
    int rc =
        p && v ? 0 : ag_fail(diag, AG_EINVAL, "snapshot: points.bin or vectors.bin is missing");
    if (rc == 0)
        rc = fill_points(c, txn, p, diag);
    if (rc == 0)
        rc = fill_vectors(c, txn, v, diag);
    if (p)
        fclose(p);
    if (v)
        fclose(v);
    return rc;
}

static bool schema_ok(const json_t *schema)
{
    static const char *const types[] = {"keyword",  "integer", "float", "bool",
                                        "datetime", "uuid",    "text",  "geo"};
    if (!json_is_object(schema))
        return false;
    const char *field;
    json_t *def;
    json_object_foreach((json_t *)schema, field, def)
    {
        const char *t = json_string_value(json_object_get(def, "data_type"));
        json_t *params = json_object_get(def, "params");
        bool known = false;
        for (size_t i = 0; t && i < AG_ARRAY_LEN(types); i++)
            known = known || strcmp(t, types[i]) == 0;
        if (!json_is_object(def) || !known || (params && !json_is_object(params)) ||
            strlen(field) == 0 || strlen(field) > AG_MAX_NAME_LEN)
            return false;
    }
    return true;
}

static bool tenants_ok(const json_t *tenants)
{
    if (!json_is_object(tenants))
        return false;
    const char *name;
    json_t *t;
    json_object_foreach((json_t *)tenants, name, t)
    {
        if (!json_is_object(t) || !json_is_boolean(json_object_get(t, "active")) ||
            json_object_size(t) != 1 || strlen(name) == 0 || strlen(name) > AG_MAX_NAME_LEN)
            return false;
    }
    return true;
}

int ag_snap__read_config(const char *dir, json_t **params, json_t **schema, json_t **tenants,
                         ag_diag_t *diag)
{
    *params = *schema = *tenants = NULL;
    FILE *f = open_in(dir, "collection.json");
    if (!f)
        return ag_fail(diag, AG_EINVAL, "snapshot: collection.json is missing");
    json_error_t jerr;
    json_t *cj = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    fclose(f);
    int rc = 0;
    json_t *norm = NULL;
    if (!json_is_object(cj))
        rc = ag_fail(diag, AG_EINVAL, "snapshot: collection.json is not a JSON object");
    else if (ag_coll_parse_params(json_object_get(cj, "params"), &norm, diag) != 0) {
        char why[200];
        snprintf(why, sizeof(why), "%.199s", diag->msg);
        rc = ag_fail(diag, AG_EINVAL, "snapshot: collection.json params: %s", why);
    } else if (!schema_ok(json_object_get(cj, "schema")))
        rc = ag_fail(diag, AG_EINVAL, "snapshot: collection.json schema is malformed");
    else if (!tenants_ok(json_object_get(cj, "tenants")))
        rc = ag_fail(diag, AG_EINVAL, "snapshot: collection.json tenants are malformed");
    if (rc == 0) {
        *params = norm;
        norm = NULL;
        *schema = json_incref(json_object_get(cj, "schema"));
        *tenants = json_incref(json_object_get(cj, "tenants"));
    }
    json_decref(norm);
    json_decref(cj);
    return rc;
}
