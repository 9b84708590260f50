#include "ag_keystore.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include "ag_decide.h"
#include "ag_grow.h"
#include "ag_jwt.h"
#include "ag_keyfmt.h"
#include "ag_log.h"
#include "ag_net.h"
#include "store/ag_kv.h"
#include "json/ag_json.h"

#define HASH_LEN 32
#define MAP_SIZE ((size_t)1 << 28)
#define MAX_NAME 128

typedef struct key {
    char id[AG_MKEY_ID_LEN + 1];
    int kind;
    json_t *rec; /* the stored record (owned) */
    uint8_t hash[HASH_LEN];
    int64_t expires_at;
    ag_net_t *nets; /* owned; NULL = any address */
    size_t nnets;
    _Atomic int64_t last_used;
    _Atomic int64_t last_written;
} cred_t;

struct ag_keystore {
    ag_kv_t *kv;
    ag_kv_table_t meta, keys_db, invites_db, account_db;
    uint8_t hash_key[crypto_generichash_KEYBYTES];
    /* Readers (lookups, listings) take lock shared. A change holds wmu for its whole course —
     * writers are serialised, so a writer may read the table without lock — and takes lock
     * exclusively only to swap the in-memory state after its durable commit: a lookup never
     * waits for an fsync. */
    pthread_rwlock_t lock;
    pthread_mutex_t wmu;
    cred_t **keys; /* sorted by id */
    size_t nkeys, cap;
    json_t *account; /* settings (owned) */
    ag_keystore_hooks_t hooks;
    ag_keystore_change_fn on_change; /* set before serving; called outside the locks */
    void *on_change_ctx;
};

/* After a change to the keys in memory (made here or replicated), outside the locks: whoever
 * caches principals built from them drops those (ag_auth_invalidate). */
static void notify(ag_keystore_t *ks)
{
    if (ks->on_change)
        ks->on_change(ks->on_change_ctx);
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* ---- credentials ---------------------------------------------------------------------------- */

int ag_mkey_parse(const char *cred, size_t len, char want, char id[AG_MKEY_ID_LEN + 1])
{
    /* The id's first character names the kind: k (API key), m (management key), i (invite). */
    if (!cred || len != AG_MKEY_LEN)
        return AG_ENOTFOUND;
    char c = cred[3];
    if (want ? c != want : (c != 'k' && c != 'm'))
        return AG_ENOTFOUND;
    return ag_cred_parse(cred, len, id);
}

/* Hash of the secret of a parsed credential; AG_EUNAUTH for a bad encoding. */
static int cred_hash(const ag_keystore_t *ks, const char *cred, const char *id,
                     uint8_t out[HASH_LEN])
{
    uint8_t secret[AG_CRED_SECRET_BYTES];
    int rc = ag_cred_secret(cred, secret);
    if (rc == 0)
        ag_cred_hash(ks->hash_key, sizeof(ks->hash_key), id, secret, out);
    sodium_memzero(secret, sizeof(secret));
    return rc;
}

void ag_keystore_secret_free(char *secret)
{
    sodium_free(secret);
}

/* A fresh credential for id. Memory: *out is sodium_malloc'd (ag_keystore_secret_free). */
static int new_secret(const ag_keystore_t *ks, const char *id, uint8_t hash[HASH_LEN], char **out)
{
    uint8_t secret[AG_CRED_SECRET_BYTES];
    *out = ag_cred_new(id, secret);
    if (*out)
        ag_cred_hash(ks->hash_key, sizeof(ks->hash_key), id, secret, hash);
    sodium_memzero(secret, sizeof(secret));
    return *out ? 0 : AG_ENOMEM;
}

static void new_id(char prefix, char id[AG_MKEY_ID_LEN + 1])
{
    uint8_t raw[6];
    char hex[13];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(hex, sizeof(hex), raw, sizeof(raw));
    id[0] = prefix;
    memcpy(id + 1, hex, AG_MKEY_ID_LEN - 1);
    id[AG_MKEY_ID_LEN] = '\0';
}

static bool hash_from_hex(const char *hex, uint8_t out[HASH_LEN])
{
    size_t n = 0;
    return hex && strlen(hex) == HASH_LEN * 2 &&
           sodium_hex2bin(out, HASH_LEN, hex, HASH_LEN * 2, NULL, &n, NULL) == 0 && n == HASH_LEN;
}

/* ---- addresses ------------------------------------------------------------------------------ */

int ag_keystore_check_ips(const json_t *arr, ag_diag_t *diag)
{
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr) || json_array_size(arr) > AG_KEYSTORE_MAX_IPS)
        return ag_fail(diag, AG_EINVAL,
                       "allowed_ips: expected an array of at most %d addresses or CIDRs",
                       AG_KEYSTORE_MAX_IPS);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        ag_net_t n;
        if (!json_is_string(v) || !ag_net_parse(json_string_value(v), &n))
            return ag_fail(diag, AG_EINVAL,
                           "allowed_ips[%zu]: expected an IPv4/IPv6 address or CIDR "
                           "(e.g. \"10.0.0.0/8\")",
                           i);
    }
    return 0;
}

/* ---- records -------------------------------------------------------------------------------- */

static void key_free(cred_t *k)
{
    if (!k)
        return;
    json_decref(k->rec);
    free(k->nets);
    sodium_memzero(k->hash, sizeof(k->hash));
    free(k);
}

static int64_t rec_int(const json_t *rec, const char *field)
{
    return (int64_t)json_integer_value(json_object_get(rec, field));
}

/* Memory: a new cred_t taking a new reference to rec. NULL for a malformed record. */
static cred_t *key_from_record(const char *id, json_t *rec)
{
    const char *kind = json_string_value(json_object_get(rec, "kind"));
    cred_t *k = calloc(1, sizeof(*k));
    if (!k || !kind || strlen(id) != AG_MKEY_ID_LEN)
        goto fail;
    snprintf(k->id, sizeof(k->id), "%s", id);
    k->kind = strcmp(kind, "management") == 0 ? AG_KEYKIND_MANAGEMENT : AG_KEYKIND_API;
    if (!hash_from_hex(json_string_value(json_object_get(rec, "key_hash")), k->hash))
        goto fail;
    k->expires_at = rec_int(rec, "expires_at");
    atomic_init(&k->last_used, rec_int(rec, "last_used"));
    atomic_init(&k->last_written, rec_int(rec, "last_used"));
    json_t *ips = json_object_get(rec, "allowed_ips");
    if (json_array_size(ips) > 0) {
        k->nets = calloc(json_array_size(ips), sizeof(ag_net_t));
        if (!k->nets)
            goto fail;
        size_t i;
        json_t *v;
        json_array_foreach(ips, i, v)
        {
            if (!ag_net_parse(json_string_value(v), &k->nets[i]))
                goto fail;
        }
        k->nnets = json_array_size(ips);
    }
    k->rec = json_incref(rec);
    return k;
fail:
    key_free(k);
    return NULL;
}

static size_t key_pos(const ag_keystore_t *ks, const char *id, bool *found)
{
    size_t lo = 0, hi = ks->nkeys;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ks->keys[mid]->id, id);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static cred_t *key_find(const ag_keystore_t *ks, const char *id)
{
    bool found;
    size_t i = key_pos(ks, id, &found);
    return found ? ks->keys[i] : NULL;
}

/* Write lock held. Takes ownership of k (freed on failure). Replaces a key with the same id. */
static int key_insert(ag_keystore_t *ks, cred_t *k)
{
    bool found;
    size_t i = key_pos(ks, k->id, &found);
    if (found) {
        key_free(ks->keys[i]);
        ks->keys[i] = k;
        return 0;
    }
    if (AG_GROW(ks->keys, ks->cap, ks->nkeys + 1, 64, AG_KEYSTORE_MAX_KEYS) != 0) {
        key_free(k);
        return AG_ETOOBIG;
    }
    memmove(&ks->keys[i + 1], &ks->keys[i], (ks->nkeys - i) * sizeof(*ks->keys));
    ks->keys[i] = k;
    ks->nkeys++;
    return 0;
}

static void key_remove(ag_keystore_t *ks, const char *id)
{
    bool found;
    size_t i = key_pos(ks, id, &found);
    if (!found)
        return;
    key_free(ks->keys[i]);
    memmove(&ks->keys[i], &ks->keys[i + 1], (ks->nkeys - i - 1) * sizeof(*ks->keys));
    ks->nkeys--;
}

/* ---- record store (store/ag_kv.h) ---------------------------------------------------------- */

static int put_json(ag_kv_txn_t *txn, ag_kv_table_t t, const char *key, const json_t *val)
{
    char *text = val ? ag_json_dump(val) : NULL;
    if (!text)
        return AG_ENOMEM;
    int rc = ag_kv_put(txn, t, key, strlen(key), text, strlen(text));
    free(text);
    return rc;
}

static json_t *get_json(ag_kv_txn_t *txn, ag_kv_table_t t, const char *key)
{
    ag_kv_val_t v;
    if (ag_kv_get(txn, t, key, strlen(key), &v) != 0)
        return NULL;
    return json_loadb(v.data, v.len, 0, NULL);
}

static int begin(ag_keystore_t *ks, bool write, ag_kv_txn_t **txn, ag_diag_t *diag)
{
    return ag_kv_begin(ks->kv, write, txn, diag);
}

static int commit(ag_kv_txn_t *txn, ag_diag_t *diag)
{
    return ag_kv_commit(txn, diag);
}

static int load_hash_key(ag_keystore_t *ks, ag_kv_txn_t *txn)
{
    ag_kv_val_t v;
    int rc = ag_kv_get(txn, ks->meta, "hash_key", 8, &v);
    if (rc == 0) {
        if (v.len != sizeof(ks->hash_key))
            return AG_ESTORAGE;
        memcpy(ks->hash_key, v.data, sizeof(ks->hash_key));
        return 0;
    }
    if (rc != AG_ENOTFOUND)
        return AG_ESTORAGE;
    randombytes_buf(ks->hash_key, sizeof(ks->hash_key));
    return ag_kv_put(txn, ks->meta, "hash_key", 8, ks->hash_key, sizeof(ks->hash_key));
}

typedef struct load_ctx {
    ag_keystore_t *ks;
    ag_diag_t *diag;
    int rc; /* what the last record's loader returned */
} load_ctx_t;

static int load_key(void *ud, ag_kv_val_t k, ag_kv_val_t v, bool *drop)
{
    AG_UNUSED(drop);
    load_ctx_t *ctx = ud;
    char id[AG_MKEY_ID_LEN + 1];
    json_t *rec = json_loadb(v.data, v.len, 0, NULL);
    cred_t *key = NULL;
    if (k.len == AG_MKEY_ID_LEN) {
        memcpy(id, k.data, AG_MKEY_ID_LEN);
        id[AG_MKEY_ID_LEN] = '\0';
        key = key_from_record(id, rec);
    }
    json_decref(rec);
    if (!key)
        return ctx->rc = ag_fail(ctx->diag, AG_ESTORAGE, "key store: a key record is unreadable");
    return ctx->rc = key_insert(ctx->ks, key);
}

static int load_keys(ag_keystore_t *ks, ag_kv_txn_t *txn, ag_diag_t *diag)
{
    load_ctx_t ctx = {ks, diag, 0};
    int rc = ag_kv_each(txn, ks->keys_db, load_key, &ctx);
    if (rc && ctx.rc == 0)
        return ag_fail(diag, rc, "key store: cannot read keys");
    return rc;
}

/* Changes made on another node reached the local copy (cluster mode, docs/CLUSTER.md): the keys
 * and settings in memory are rebuilt from it and swapped in whole. Runs on the replicator's
 * thread; a change of this node's own is never half-seen (wmu serialises with writers). */
static void remote_changed(void *ctx)
{
    ag_keystore_t *ks = ctx;
    bool ok = false;
    ag_keystore_t *tmp = calloc(1, sizeof(*tmp));
    if (!tmp)
        goto fail;
    tmp->kv = ks->kv;
    tmp->meta = ks->meta;
    tmp->keys_db = ks->keys_db;
    tmp->account_db = ks->account_db;
    ag_kv_txn_t *txn = NULL;
    ag_diag_t d = {{0}};
    ag_kv_val_t hk;
    if (begin(ks, false, &txn, &d) != 0)
        goto fail;
    int rc = load_keys(tmp, txn, &d);
    if (rc == 0 && ag_kv_get(txn, ks->meta, "hash_key", 8, &hk) == 0 &&
        hk.len == sizeof(tmp->hash_key))
        memcpy(tmp->hash_key, hk.data, hk.len);
    else
        rc = rc ? rc : AG_ESTORAGE;
    tmp->account = get_json(txn, ks->account_db, "settings");
    ag_kv_abort(txn);
    if (rc || (!tmp->account && !(tmp->account = json_object())))
        goto fail;
    pthread_mutex_lock(&ks->wmu);
    pthread_rwlock_wrlock(&ks->lock);
    cred_t **keys = ks->keys;
    size_t nkeys = ks->nkeys, cap = ks->cap;
    json_t *account = ks->account;
    ks->keys = tmp->keys;
    ks->nkeys = tmp->nkeys;
    ks->cap = tmp->cap;
    ks->account = tmp->account;
    memcpy(ks->hash_key, tmp->hash_key, sizeof(ks->hash_key));
    tmp->keys = keys;
    tmp->nkeys = nkeys;
    tmp->cap = cap;
    tmp->account = account;
    pthread_rwlock_unlock(&ks->lock);
    pthread_mutex_unlock(&ks->wmu);
    ok = true;
fail:
    notify(ks);
    if (!ok)
        ag_log(AG_LOG_ERROR, "key store: cannot reload after a change made on another node");
    if (tmp) {
        for (size_t i = 0; i < tmp->nkeys; i++)
            key_free(tmp->keys[i]);
        free(tmp->keys);
        json_decref(tmp->account);
        sodium_memzero(tmp->hash_key, sizeof(tmp->hash_key));
        free(tmp);
    }
}

/* Memory: *out owns the environment and the loaded keys (ag_keystore_close). */
static int open_once(const char *dir, ag_keystore_t **out, ag_diag_t *diag)
{
    *out = NULL;
    if (sodium_init() < 0)
        return ag_fail(diag, AG_EINTERNAL, "libsodium failed to initialise");
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return ag_fail(diag, AG_ESTORAGE, "cannot create %s: %s", dir, strerror(errno));
    chmod(dir, 0700);
    ag_keystore_t *ks = calloc(1, sizeof(*ks));
    if (!ks)
        return AG_ENOMEM;
    if (pthread_rwlock_init(&ks->lock, NULL) != 0) {
        free(ks);
        return AG_ENOMEM;
    }
    if (pthread_mutex_init(&ks->wmu, NULL) != 0) {
        pthread_rwlock_destroy(&ks->lock);
        free(ks);
        return AG_ENOMEM;
    }
    ag_kv_txn_t *txn = NULL;
    int rc = ag_kv_open(dir, "key store", MAP_SIZE, 8, &ks->kv, diag);
    if (rc)
        goto fail;
    if ((rc = begin(ks, true, &txn, diag)) != 0)
        goto fail;
    if (ag_kv_table(txn, "meta", &ks->meta) || ag_kv_table(txn, "keys", &ks->keys_db) ||
        ag_kv_table(txn, "invites", &ks->invites_db) ||
        ag_kv_table(txn, "account", &ks->account_db) || load_hash_key(ks, txn)) {
        ag_kv_abort(txn);
        rc = ag_fail(diag, AG_ESTORAGE, "key store in %s is unreadable", dir);
        goto fail;
    }
    if ((rc = load_keys(ks, txn, diag)) != 0) {
        ag_kv_abort(txn);
        goto fail;
    }
    ks->account = get_json(txn, ks->account_db, "settings");
    if (!ks->account)
        ks->account = json_object();
    if ((rc = commit(txn, diag)) != 0)
        goto fail;
    if (!ks->account) {
        rc = AG_ENOMEM;
        goto fail;
    }
    ag_kv_set_on_remote(ks->kv, remote_changed, ks);
    *out = ks;
    return 0;
fail:
    ag_keystore_close(ks);
    return rc;
}

int ag_keystore_open(const char *dir, ag_keystore_t **out, ag_diag_t *diag)
{
    /* Cluster mode: nodes starting together on an empty etcd each generate the store's hash key
     * and write it with a compare-and-swap on the security state's version; all but one get
     * AG_ECONFLICT. Opening again loads the winner's key from etcd (docs/CLUSTER.md "Joining"). */
    int rc = AG_ECONFLICT;
    for (int attempt = 0; rc == AG_ECONFLICT && attempt < 5; attempt++)
        rc = open_once(dir, out, diag);
    return rc;
}

void ag_keystore_close(ag_keystore_t *ks)
{
    if (!ks)
        return;
    ag_kv_close(ks->kv); /* first: no change from elsewhere arrives after this */
    for (size_t i = 0; i < ks->nkeys; i++)
        key_free(ks->keys[i]);
    free(ks->keys);
    json_decref(ks->account);
    sodium_memzero(ks->hash_key, sizeof(ks->hash_key));
    pthread_rwlock_destroy(&ks->lock);
    pthread_mutex_destroy(&ks->wmu);
    free(ks);
}

void ag_keystore_set_hooks(ag_keystore_t *ks, const ag_keystore_hooks_t *hooks)
{
    ks->hooks = *hooks;
}

void ag_keystore_set_on_change(ag_keystore_t *ks, ag_keystore_change_fn fn, void *ctx)
{
    ks->on_change = fn;
    ks->on_change_ctx = ctx;
}

/* ---- principals ----------------------------------------------------------------------------- */

static bool kept(int kind, const ag_perm_t *p)
{
    return kind != AG_KEYKIND_MANAGEMENT || ag_resource_is_management(p->resource) ||
           p->resource == AG_RES_CLUSTER_DATA;
}

static int add_kept(ag_principal_t *p, int kind, const ag_perm_list_t *perms)
{
    for (size_t i = 0; i < perms->n; i++) {
        if (!kept(kind, &perms->items[i]))
            continue;
        ag_perm_t copy;
        int rc = ag_perm_copy(&perms->items[i], &copy);
        if (rc == 0)
            rc = ag_principal_add_perm(p, &copy);
        if (rc)
            return rc;
    }
    return 0;
}

static int grant_roles(ag_keystore_t *ks, ag_principal_t *p, int kind, const json_t *roles,
                       ag_diag_t *diag)
{
    if (!json_is_array(roles) || json_array_size(roles) > 64)
        return ag_fail(diag, AG_EINVAL, "roles: expected an array of at most 64 role names");
    size_t i;
    json_t *v;
    json_array_foreach(roles, i, v)
    {
        const char *name = json_string_value(v);
        if (!name || !ag_role_name_valid(name, json_string_length(v)))
            return ag_fail(diag, AG_EINVAL, "roles[%zu]: not a role name", i);
        int rc = ag_principal_add_role(p, name);
        if (rc)
            return rc;
        const ag_perm_list_t *builtin = ag_role_builtin(name);
        ag_perm_list_t perms = {0};
        if (builtin) {
            rc = add_kept(p, kind, builtin);
        } else {
            rc = ks->hooks.resolve_role
                     ? ks->hooks.resolve_role(ks->hooks.resolve_ctx, name, &perms)
                     : AG_ENOTFOUND;
            if (rc == AG_ENOTFOUND)
                rc = ag_fail(diag, AG_EINVAL, "roles[%zu]: role '%s' does not exist", i, name);
            else if (rc == 0)
                rc = add_kept(p, kind, &perms);
        }
        ag_perm_list_release(&perms);
        if (rc)
            return rc;
    }
    return 0;
}

/* Memory: *out is a new principal reference owned by the caller. */
int ag_keystore_grant_principal(ag_keystore_t *ks, int kind, const char *id, const json_t *grant,
                                ag_principal_t **out, ag_diag_t *diag)
{
    *out = NULL;
    ag_principal_t *p = NULL;
    int rc = ag_principal_new(AG_PRINCIPAL_API_KEY, id, &p);
    if (rc)
        return rc;
    const json_t *access = json_object_get(grant, "access");
    const json_t *roles = json_object_get(grant, "roles");
    const json_t *perms = json_object_get(grant, "permissions");
    if (access) {
        json_t *claims = json_pack("{s:O}", "access", access);
        ag_principal_t *tp = NULL;
        ag_diag_t jd = {{0}};
        rc = claims ? ag_jwt_principal(claims, NULL, NULL, &tp, &jd) : AG_ENOMEM;
        json_decref(claims);
        if (rc && rc != AG_ENOMEM) {
            /* "invalid token: access must be …" → the field, not a token */
            const char *m = strstr(jd.msg, "access");
            rc = ag_fail(diag, AG_EINVAL, "%s", m ? m : "access: not a valid access claim");
        }
        if (rc == 0)
            rc = add_kept(p, kind, ag_principal_perms(tp));
        ag_principal_unref(tp);
    }
    if (rc == 0 && roles)
        rc = grant_roles(ks, p, kind, roles, diag);
    if (rc == 0 && perms) {
        ag_perm_list_t list = {0};
        rc = ag_perm_list_parse(perms, "permissions", &list, diag);
        if (rc == 0)
            rc = add_kept(p, kind, &list);
        ag_perm_list_release(&list);
    }
    if (rc) {
        ag_principal_unref(p);
        return rc;
    }
    *out = p;
    return 0;
}

static int key_principal(ag_keystore_t *ks, const cred_t *k, int64_t now, int depth,
                         ag_principal_t **out);

/* Read lock held. */
static int creator_principal(ag_keystore_t *ks, const json_t *creator, int64_t now, int depth,
                             ag_principal_t **out)
{
    *out = NULL;
    const char *kind = json_string_value(json_object_get(creator, "kind"));
    const char *id = json_string_value(json_object_get(creator, "id"));
    if (!kind)
        return AG_EUNAUTH;
    if (strcmp(kind, "root") == 0)
        return 0;
    if (depth >= AG_KEYSTORE_MAX_DEPTH || !id)
        return AG_EUNAUTH;
    if (strcmp(kind, "user") == 0) {
        const char *key_id = json_string_value(json_object_get(creator, "key_id"));
        if (!key_id || !ks->hooks.minter_user)
            return AG_EUNAUTH;
        return ks->hooks.minter_user(ks->hooks.minter_ctx, id, key_id, out);
    }
    if (strcmp(kind, "api_key") == 0) {
        const cred_t *k = key_find(ks, id);
        return k ? key_principal(ks, k, now, depth + 1, out) : AG_EUNAUTH;
    }
    return AG_EUNAUTH;
}

/* Read lock held. The key's principal bound to its creator as it is now. */
static int key_principal(ag_keystore_t *ks, const cred_t *k, int64_t now, int depth,
                         ag_principal_t **out)
{
    *out = NULL;
    if (k->expires_at && now >= k->expires_at)
        return AG_EUNAUTH;
    ag_principal_t *bound = NULL;
    int rc = creator_principal(ks, json_object_get(k->rec, "creator"), now, depth, &bound);
    if (rc)
        return rc == AG_ENOMEM ? rc : AG_EUNAUTH;
    ag_principal_t *p = NULL;
    ag_diag_t d = {{0}};
    rc = ag_keystore_grant_principal(ks, k->kind, k->id, json_object_get(k->rec, "grant"), &p, &d);
    if (rc) {
        ag_principal_unref(bound);
        return rc == AG_ENOMEM ? rc : AG_EUNAUTH;
    }
    ag_principal_set_expiry(p, k->expires_at);
    ag_principal_set_bound(p, bound);
    *out = p;
    return 0;
}

int ag_keystore_creator_principal(ag_keystore_t *ks, const json_t *creator, ag_principal_t **out)
{
    pthread_rwlock_rdlock(&ks->lock);
    int rc = creator_principal(ks, creator, now_s(), 0, out);
    pthread_rwlock_unlock(&ks->lock);
    return rc;
}

/* ---- keys ----------------------------------------------------------------------------------- */

static const char *kind_name(int kind)
{
    return kind == AG_KEYKIND_MANAGEMENT ? "management" : "api";
}

/* Memory: a new public view of a record. */
static json_t *public_json(const cred_t *k)
{
    char prefix[3 + AG_MKEY_ID_LEN + 2];
    snprintf(prefix, sizeof(prefix), "ag_%s_", k->id);
    const json_t *rec = k->rec;
    int64_t last = atomic_load(&k->last_used);
    json_t *out =
        json_pack("{s:s,s:s,s:O,s:s,s:O,s:O,s:o,s:O,s:O}", "id", k->id, "kind", kind_name(k->kind),
                  "name", json_object_get(rec, "name"), "prefix", prefix, "created",
                  json_object_get(rec, "created"), "expires_at", json_object_get(rec, "expires_at"),
                  "last_used", last ? json_integer((json_int_t)last) : json_null(), "allowed_ips",
                  json_object_get(rec, "allowed_ips"), "creator", json_object_get(rec, "creator"));
    if (out) {
        json_object_update(out, json_object_get(rec, "grant"));
        json_object_set_new(out, "expired",
                            json_boolean(k->expires_at && now_s() >= k->expires_at));
    }
    return out;
}

static bool name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return false;
    return true;
}

/* wmu held: stores rec under id durably, then mirrors it (under the write lock). rec borrowed. */
static int store_key(ag_keystore_t *ks, const char *id, json_t *rec, ag_diag_t *diag)
{
    cred_t *k = key_from_record(id, rec);
    if (!k)
        return AG_ENOMEM;
    /* Room in the table first: once committed, the key must be mirrored. */
    int rc = 0;
    if (!key_find(ks, id)) {
        pthread_rwlock_wrlock(&ks->lock);
        rc = AG_GROW(ks->keys, ks->cap, ks->nkeys + 1, 64, AG_KEYSTORE_MAX_KEYS);
        pthread_rwlock_unlock(&ks->lock);
    }
    if (rc) {
        key_free(k);
        return rc == AG_ENOMEM ? rc
                               : ag_fail(diag, AG_EINVAL,
                                         "too many keys (at most %d): delete unused ones first",
                                         AG_KEYSTORE_MAX_KEYS);
    }
    ag_kv_txn_t *txn;
    if ((rc = begin(ks, true, &txn, diag)) != 0) {
        key_free(k);
        return rc;
    }
    if ((rc = put_json(txn, ks->keys_db, id, rec)) != 0) {
        ag_kv_abort(txn);
        key_free(k);
        return ag_fail(diag, rc, "key store: cannot write key %s", id);
    }
    if ((rc = commit(txn, diag)) != 0) {
        key_free(k);
        return rc;
    }
    pthread_rwlock_wrlock(&ks->lock);
    rc = key_insert(ks, k);
    pthread_rwlock_unlock(&ks->lock);
    notify(ks); /* a rotation replaced the hash: the old secret's cached principal must go */
    return rc;
}

static json_t *cred_record(int kind, const char *name, const json_t *grant, int64_t expires_at,
                           const json_t *ips, const json_t *creator, const uint8_t hash[HASH_LEN],
                           int64_t created)
{
    char hex[HASH_LEN * 2 + 1];
    sodium_bin2hex(hex, sizeof(hex), hash, HASH_LEN);
    json_t *ip_copy = ips && json_is_array(ips) ? json_deep_copy(ips) : json_array();
    return json_pack("{s:s,s:s,s:O,s:O,s:I,s:I,s:o,s:s,s:I}", "kind", kind_name(kind), "name", name,
                     "grant", grant, "creator", creator, "created", (json_int_t)created,
                     "expires_at", (json_int_t)expires_at, "allowed_ips", ip_copy, "key_hash", hex,
                     "last_used", (json_int_t)0);
}

/* Memory: *key_out sodium_malloc'd, *record_out a new reference. */
/* The end of a create or rotate (writer mutex held, released here): on success the new secret
 * goes to *key_out and the stored key's public record to *record_out; either way rec and the
 * hash are dropped, and on failure the secret is wiped. rc is the outcome so far. */
static int stored(ag_keystore_t *ks, const char *id, int rc, json_t *rec, uint8_t hash[HASH_LEN],
                  char *cred, char **key_out, json_t **record_out)
{
    if (rc == 0) {
        const cred_t *k = key_find(ks, id);
        *record_out = k ? public_json(k) : NULL;
        if (!*record_out)
            rc = AG_ENOMEM;
    }
    pthread_mutex_unlock(&ks->wmu);
    json_decref(rec);
    sodium_memzero(hash, HASH_LEN);
    if (rc) {
        ag_keystore_secret_free(cred);
        return rc;
    }
    *key_out = cred;
    return 0;
}

int ag_keystore_key_create(ag_keystore_t *ks, int kind, const char *name, const json_t *grant,
                           int64_t expires_at, const json_t *allowed_ips, const json_t *creator,
                           char **key_out, json_t **record_out, ag_diag_t *diag)
{
    *key_out = NULL;
    *record_out = NULL;
    if (!name_ok(name))
        return ag_fail(diag, AG_EINVAL,
                       "name: expected 1 to %d characters without control characters", MAX_NAME);
    int rc = ag_keystore_check_ips(allowed_ips, diag);
    if (rc)
        return rc;
    char id[AG_MKEY_ID_LEN + 1];
    uint8_t hash[HASH_LEN];
    pthread_mutex_lock(&ks->wmu);
    do
        new_id(kind == AG_KEYKIND_MANAGEMENT ? 'm' : 'k', id);
    while (key_find(ks, id));
    char *cred = NULL;
    json_t *rec = NULL;
    if ((rc = new_secret(ks, id, hash, &cred)) == 0) {
        rec = cred_record(kind, name, grant, expires_at, allowed_ips, creator, hash, now_s());
        rc = rec ? store_key(ks, id, rec, diag) : AG_ENOMEM;
    }
    return stored(ks, id, rc, rec, hash, cred, key_out, record_out);
}

static cred_t *find_kind(ag_keystore_t *ks, int kind, const char *id)
{
    cred_t *k = id ? key_find(ks, id) : NULL;
    return k && k->kind == kind ? k : NULL;
}

int ag_keystore_key_rotate(ag_keystore_t *ks, int kind, const char *id, const json_t *creator,
                           char **key_out, json_t **record_out, ag_diag_t *diag)
{
    *key_out = NULL;
    *record_out = NULL;
    uint8_t hash[HASH_LEN];
    char *cred = NULL;
    json_t *rec = NULL;
    int rc;
    char kid[AG_MKEY_ID_LEN + 1] = {0};
    pthread_mutex_lock(&ks->wmu);
    cred_t *k = find_kind(ks, kind, id);
    if (!k) {
        rc = AG_ENOTFOUND;
    } else if ((rc = new_secret(ks, k->id, hash, &cred)) == 0) {
        char hex[HASH_LEN * 2 + 1];
        sodium_bin2hex(hex, sizeof(hex), hash, HASH_LEN);
        rec = json_deep_copy(k->rec);
        if (!rec || json_object_set_new(rec, "key_hash", json_string(hex)) ||
            json_object_set(rec, "creator", (json_t *)creator) ||
            json_object_set_new(rec, "rotated", json_integer((json_int_t)now_s())))
            rc = AG_ENOMEM;
        snprintf(kid, sizeof(kid), "%s", k->id);
        if (rc == 0)
            rc = store_key(ks, kid, rec, diag);
    }
    return stored(ks, kid, rc, rec, hash, cred, key_out, record_out);
}

int ag_keystore_key_delete(ag_keystore_t *ks, int kind, const char *id, ag_diag_t *diag)
{
    int rc;
    pthread_mutex_lock(&ks->wmu);
    cred_t *k = find_kind(ks, kind, id);
    ag_kv_txn_t *txn;
    if (!k) {
        rc = AG_ENOTFOUND;
    } else if ((rc = begin(ks, true, &txn, diag)) == 0) {
        int drc = ag_kv_del(txn, ks->keys_db, k->id, AG_MKEY_ID_LEN);
        if (drc && drc != AG_ENOTFOUND) {
            ag_kv_abort(txn);
            rc = ag_fail(diag, AG_ESTORAGE, "key store: cannot delete key %s", id);
        } else if ((rc = commit(txn, diag)) == 0) {
            pthread_rwlock_wrlock(&ks->lock);
            key_remove(ks, id);
            pthread_rwlock_unlock(&ks->lock);
            notify(ks);
        }
    }
    pthread_mutex_unlock(&ks->wmu);
    return rc;
}

int ag_keystore_key_json(ag_keystore_t *ks, int kind, const char *id, json_t **out)
{
    pthread_rwlock_rdlock(&ks->lock);
    const cred_t *k = find_kind(ks, kind, id);
    *out = k ? public_json(k) : NULL;
    pthread_rwlock_unlock(&ks->lock);
    return k ? (*out ? 0 : AG_ENOMEM) : AG_ENOTFOUND;
}

int ag_keystore_key_grant(ag_keystore_t *ks, int kind, const char *id, json_t **out)
{
    pthread_rwlock_rdlock(&ks->lock);
    const cred_t *k = find_kind(ks, kind, id);
    *out = k ? json_deep_copy(json_object_get(k->rec, "grant")) : NULL;
    pthread_rwlock_unlock(&ks->lock);
    return k ? (*out ? 0 : AG_ENOMEM) : AG_ENOTFOUND;
}

json_t *ag_keystore_key_list(ag_keystore_t *ks, int kind)
{
    json_t *arr = json_array();
    pthread_rwlock_rdlock(&ks->lock);
    for (size_t i = 0; arr && i < ks->nkeys; i++)
        if (ks->keys[i]->kind == kind && json_array_append_new(arr, public_json(ks->keys[i])))
            break;
    pthread_rwlock_unlock(&ks->lock);
    return arr;
}

/* last_used: kept in memory on every use, written at most once a minute per key. */
static void touch(ag_keystore_t *ks, const char *id, int64_t now)
{
    pthread_rwlock_rdlock(&ks->lock);
    cred_t *k = key_find(ks, id);
    bool write = false;
    json_t *rec = NULL;
    if (k) {
        atomic_store(&k->last_used, now);
        int64_t w = atomic_load(&k->last_written);
        write = now - w >= AG_KEYSTORE_LAST_USED_EVERY &&
                atomic_compare_exchange_strong(&k->last_written, &w, now);
        if (write && (rec = json_deep_copy(k->rec)) != NULL)
            json_object_set_new(rec, "last_used", json_integer((json_int_t)now));
    }
    pthread_rwlock_unlock(&ks->lock);
    /* In cluster mode last_used stays in this node's memory: a replicated write on the request
     * path would cost an etcd round trip and invalidate every node's cache (docs/CLUSTER.md). */
    if (rec && ag_kv_replicated(ks->kv)) {
        json_decref(rec);
        return;
    }
    if (!rec)
        return;
    /* Never waits for another change's fsync: when one is under way, this minute's write is
     * skipped (memory still has the time). The record may have been rotated or deleted
     * meanwhile: written only if it is unchanged. */
    if (pthread_mutex_trylock(&ks->wmu) != 0) {
        json_decref(rec);
        return;
    }
    k = key_find(ks, id);
    ag_kv_txn_t *txn;
    ag_diag_t d = {{0}};
    if (k && json_equal(json_object_get(k->rec, "key_hash"), json_object_get(rec, "key_hash")) &&
        begin(ks, true, &txn, &d) == 0) {
        if (put_json(txn, ks->keys_db, id, rec) != 0) {
            ag_kv_abort(txn);
        } else if (commit(txn, &d) == 0) {
            pthread_rwlock_wrlock(&ks->lock);
            json_t *old = k->rec;
            k->rec = json_incref(rec);
            pthread_rwlock_unlock(&ks->lock);
            json_decref(old);
        }
    }
    pthread_mutex_unlock(&ks->wmu);
    json_decref(rec);
}

int ag_keystore_lookup(void *ctx, const char *credential, size_t len, int64_t now,
                       ag_principal_t **out)
{
    ag_keystore_t *ks = ctx;
    *out = NULL;
    char id[AG_MKEY_ID_LEN + 1];
    int rc = ag_mkey_parse(credential, len, 0, id);
    if (rc)
        return rc;
    uint8_t hash[HASH_LEN];
    if ((rc = cred_hash(ks, credential, id, hash)) != 0)
        return rc;
    pthread_rwlock_rdlock(&ks->lock);
    const cred_t *k = key_find(ks, id);
    if (!k || sodium_memcmp(k->hash, hash, HASH_LEN) != 0)
        rc = AG_EUNAUTH;
    else
        rc = key_principal(ks, k, now, 0, out);
    pthread_rwlock_unlock(&ks->lock);
    sodium_memzero(hash, sizeof(hash));
    if (rc == 0)
        touch(ks, id, now);
    return rc;
}

void ag_keystore_key_used(ag_keystore_t *ks, const char *id, int64_t now)
{
    if (id && strlen(id) == AG_MKEY_ID_LEN)
        touch(ks, id, now);
}

bool ag_keystore_addr_allowed(ag_keystore_t *ks, const char *id, const char *addr)
{
    uint8_t a[16];
    bool ok = false;
    pthread_rwlock_rdlock(&ks->lock);
    const cred_t *k = id ? key_find(ks, id) : NULL;
    if (k && k->nnets == 0) {
        ok = true;
    } else if (k && addr && ag_net_parse_addr(addr, a)) {
        for (size_t i = 0; i < k->nnets && !ok; i++)
            ok = ag_net_contains(&k->nets[i], a);
    }
    pthread_rwlock_unlock(&ks->lock);
    return ok;
}

/* ---- invites -------------------------------------------------------------------------------- */

static json_t *invite_public(const char *id, const json_t *rec)
{
    return json_pack(
        "{s:s,s:O,s:O,s:O,s:O,s:O}", "id", id, "user_id", json_object_get(rec, "user_id"), "roles",
        json_object_get(rec, "roles"), "inviter", json_object_get(rec, "inviter"), "created",
        json_object_get(rec, "created"), "expires_at", json_object_get(rec, "expires_at"));
}

/* Expired invites are dead weight (they can never be accepted): dropped whenever one is made,
 * in the same write transaction. */
static int drop_expired(void *ud, ag_kv_val_t k, ag_kv_val_t v, bool *drop)
{
    AG_UNUSED(k);
    json_t *rec = json_loadb(v.data, v.len, 0, NULL);
    *drop = rec && rec_int(rec, "expires_at") <= *(const int64_t *)ud;
    json_decref(rec);
    return 0;
}

static int purge_expired_invites(ag_keystore_t *ks, ag_kv_txn_t *txn, int64_t now)
{
    return ag_kv_each(txn, ks->invites_db, drop_expired, &now);
}

/* Memory: *code_out sodium_malloc'd, *record_out a new reference. */
int ag_keystore_invite_create(ag_keystore_t *ks, const char *user_id, const json_t *roles,
                              int64_t expires_at, const json_t *inviter, char **code_out,
                              json_t **record_out, ag_diag_t *diag)
{
    *code_out = NULL;
    *record_out = NULL;
    char id[AG_MKEY_ID_LEN + 1];
    uint8_t hash[HASH_LEN];
    char *code = NULL;
    json_t *rec = NULL;
    ag_kv_txn_t *txn = NULL;
    int rc = begin(ks, true, &txn, diag);
    if (rc)
        return rc;
    size_t pending = 0;
    if (purge_expired_invites(ks, txn, now_s()) != 0 ||
        ag_kv_count(txn, ks->invites_db, &pending) != 0 || pending >= AG_KEYSTORE_MAX_INVITES) {
        ag_kv_abort(txn);
        return ag_fail(diag, AG_EINVAL,
                       "too many pending invites (at most %d): revoke unused ones first",
                       AG_KEYSTORE_MAX_INVITES);
    }
    json_t *taken;
    do {
        new_id('i', id);
        taken = get_json(txn, ks->invites_db, id);
        json_decref(taken);
    } while (taken);
    if ((rc = new_secret(ks, id, hash, &code)) != 0)
        goto fail;
    char hex[HASH_LEN * 2 + 1];
    sodium_bin2hex(hex, sizeof(hex), hash, HASH_LEN);
    rec = json_pack("{s:s,s:O,s:O,s:I,s:I,s:s}", "user_id", user_id, "roles", roles, "inviter",
                    inviter, "created", (json_int_t)now_s(), "expires_at", (json_int_t)expires_at,
                    "code_hash", hex);
    if (!rec) {
        rc = AG_ENOMEM;
        goto fail;
    }
    if ((rc = put_json(txn, ks->invites_db, id, rec)) != 0) {
        rc = ag_fail(diag, rc, "key store: cannot write the invite");
        goto fail;
    }
    rc = commit(txn, diag);
    txn = NULL;
    if (rc)
        goto fail;
    *record_out = invite_public(id, rec);
    if (!*record_out) {
        rc = AG_ENOMEM;
        goto fail;
    }
    json_decref(rec);
    sodium_memzero(hash, sizeof(hash));
    *code_out = code;
    return 0;
fail:
    if (txn)
        ag_kv_abort(txn);
    json_decref(rec);
    ag_keystore_secret_free(code);
    sodium_memzero(hash, sizeof(hash));
    return rc;
}

typedef struct list_ctx {
    json_t *arr;
    int64_t now;
} list_ctx_t;

static int list_invite(void *ud, ag_kv_val_t k, ag_kv_val_t v, bool *drop)
{
    AG_UNUSED(drop);
    list_ctx_t *ctx = ud;
    json_t *rec = json_loadb(v.data, v.len, 0, NULL);
    char id[AG_MKEY_ID_LEN + 1];
    if (rec && k.len == AG_MKEY_ID_LEN && rec_int(rec, "expires_at") > ctx->now) {
        memcpy(id, k.data, AG_MKEY_ID_LEN);
        id[AG_MKEY_ID_LEN] = '\0';
        json_array_append_new(ctx->arr, invite_public(id, rec));
    }
    json_decref(rec);
    return 0;
}

json_t *ag_keystore_invite_list(ag_keystore_t *ks, int64_t now)
{
    json_t *arr = json_array();
    ag_kv_txn_t *txn;
    ag_diag_t d = {{0}};
    if (!arr || begin(ks, false, &txn, &d) != 0)
        return arr;
    list_ctx_t ctx = {arr, now};
    ag_kv_each(txn, ks->invites_db, list_invite, &ctx);
    ag_kv_abort(txn);
    return arr;
}

int ag_keystore_invite_delete(ag_keystore_t *ks, const char *id, ag_diag_t *diag)
{
    ag_kv_txn_t *txn;
    int rc = begin(ks, true, &txn, diag);
    if (rc)
        return rc;
    int drc = ag_kv_del(txn, ks->invites_db, id, strlen(id));
    if (drc) {
        ag_kv_abort(txn);
        return drc == AG_ENOTFOUND ? AG_ENOTFOUND
                                   : ag_fail(diag, AG_ESTORAGE, "key store: cannot revoke");
    }
    return commit(txn, diag);
}

static bool invite_valid(const json_t *rec, const uint8_t hash[HASH_LEN], int64_t now)
{
    uint8_t stored[HASH_LEN];
    return rec && hash_from_hex(json_string_value(json_object_get(rec, "code_hash")), stored) &&
           sodium_memcmp(stored, hash, HASH_LEN) == 0 && rec_int(rec, "expires_at") > now;
}

/* Memory: *invite_out is a new reference owned by the caller. */
int ag_keystore_invite_accept(ag_keystore_t *ks, const char *code, size_t len, int64_t now,
                              json_t **invite_out)
{
    *invite_out = NULL;
    char id[AG_MKEY_ID_LEN + 1];
    uint8_t hash[HASH_LEN];
    if (ag_mkey_parse(code, len, 'i', id) != 0 || cred_hash(ks, code, id, hash) != 0)
        return AG_EUNAUTH;
    ag_kv_txn_t *txn;
    ag_diag_t d = {{0}};
    /* A wrong code (the common case for someone guessing) is refused from a read transaction,
     * without taking the store's writer lock. */
    int rc = begin(ks, false, &txn, &d);
    if (rc)
        return rc;
    json_t *rec = get_json(txn, ks->invites_db, id);
    bool ok = invite_valid(rec, hash, now);
    ag_kv_abort(txn);
    json_decref(rec);
    if (!ok) {
        sodium_memzero(hash, sizeof(hash));
        return AG_EUNAUTH;
    }
    if ((rc = begin(ks, true, &txn, &d)) != 0)
        return rc;
    /* The spending is one write transaction: the store serialises writers, so two accepts of one
     * code cannot both find it. */
    rec = get_json(txn, ks->invites_db, id);
    ok = invite_valid(rec, hash, now);
    if (!ok) {
        ag_kv_abort(txn);
        rc = AG_EUNAUTH;
    } else if (ag_kv_del(txn, ks->invites_db, id, AG_MKEY_ID_LEN) != 0) {
        ag_kv_abort(txn);
        rc = AG_ESTORAGE;
    } else if (commit(txn, &d) != 0) {
        rc = AG_ESTORAGE;
    } else {
        *invite_out = rec;
        rec = NULL;
        rc = 0;
    }
    json_decref(rec);
    sodium_memzero(hash, sizeof(hash));
    return rc;
}

/* ---- account -------------------------------------------------------------------------------- */

static const char *const int_settings[] = {"max_key_ttl_sec", "default_key_ttl_sec",
                                           "max_invite_ttl_sec"};

json_t *ag_keystore_account_json(ag_keystore_t *ks)
{
    pthread_rwlock_rdlock(&ks->lock);
    json_t *out = json_deep_copy(ks->account);
    pthread_rwlock_unlock(&ks->lock);
    return out;
}

static bool is_int_setting(const char *k)
{
    for (size_t i = 0; i < AG_ARRAY_LEN(int_settings); i++)
        if (strcmp(k, int_settings[i]) == 0)
            return true;
    return false;
}

int ag_keystore_account_patch(ag_keystore_t *ks, const json_t *patch, ag_diag_t *diag)
{
    if (!json_is_object(patch))
        return ag_fail(diag, AG_EINVAL, "expected an object of account settings");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)patch, k, v)
    {
        if (json_is_null(v))
            continue;
        if (strcmp(k, "name") == 0) {
            if (!json_is_string(v) || !name_ok(json_string_value(v)))
                return ag_fail(diag, AG_EINVAL,
                               "name: expected 1 to %d characters without control characters",
                               MAX_NAME);
        } else if (is_int_setting(k)) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                json_integer_value(v) > (json_int_t)10 * 365 * 86400)
                return ag_fail(diag, AG_EINVAL,
                               "%s: expected a whole number of seconds from 1 to 315360000", k);
        } else {
            return ag_fail(diag, AG_EINVAL,
                           "%.64s: unknown account setting (known: name, max_key_ttl_sec, "
                           "default_key_ttl_sec, max_invite_ttl_sec)",
                           k);
        }
    }
    pthread_mutex_lock(&ks->wmu);
    json_t *next = json_deep_copy(ks->account);
    int rc = next ? 0 : AG_ENOMEM;
    json_object_foreach((json_t *)patch, k, v)
    {
        if (rc == 0 && json_is_null(v))
            json_object_del(next, k);
        else if (rc == 0 && json_object_set(next, k, v) != 0)
            rc = AG_ENOMEM;
    }
    json_t *dk = next ? json_object_get(next, "default_key_ttl_sec") : NULL;
    json_t *mk = next ? json_object_get(next, "max_key_ttl_sec") : NULL;
    if (rc == 0 && dk && mk && json_integer_value(dk) > json_integer_value(mk))
        rc = ag_fail(diag, AG_EINVAL, "default_key_ttl_sec: longer than max_key_ttl_sec");
    ag_kv_txn_t *txn;
    if (rc == 0 && (rc = begin(ks, true, &txn, diag)) == 0) {
        if ((rc = put_json(txn, ks->account_db, "settings", next)) != 0)
            ag_kv_abort(txn);
        else if ((rc = commit(txn, diag)) == 0) {
            pthread_rwlock_wrlock(&ks->lock);
            json_t *old = ks->account;
            ks->account = next;
            next = old;
            pthread_rwlock_unlock(&ks->lock);
        }
    }
    pthread_mutex_unlock(&ks->wmu);
    json_decref(next);
    return rc;
}

void ag_keystore_account_limits(ag_keystore_t *ks, ag_account_limits_t *out)
{
    pthread_rwlock_rdlock(&ks->lock);
    out->max_key_ttl_s = rec_int(ks->account, "max_key_ttl_sec");
    out->default_key_ttl_s = rec_int(ks->account, "default_key_ttl_sec");
    out->max_invite_ttl_s = rec_int(ks->account, "max_invite_ttl_sec");
    pthread_rwlock_unlock(&ks->lock);
}

int ag_keystore_copy(ag_keystore_t *s, const char *dir)
{
    /* A consistent copy from one read transaction (a full snapshot's security state). */
    return ag_kv_copy(s->kv, dir);
}
