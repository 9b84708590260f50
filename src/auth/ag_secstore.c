#include "ag_secstore.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include "ag_cmp.h"
#include "ag_jwt.h"
#include "ag_keyfmt.h"
#include "ag_log.h"
#include "store/ag_kv.h"
#include "json/ag_json.h"

#define HASH_LEN 32
#define MAP_SIZE ((size_t)1 << 30)

/* ---- a small string-keyed hash table (keys borrowed from the values) ------------------------ */

static const char tomb_mark;
#define TOMB (&tomb_mark)

typedef struct map_slot {
    const char *key; /* NULL = empty, TOMB = deleted */
    void *val;
} map_slot_t;

typedef struct map {
    map_slot_t *slots;
    size_t cap, used, tombs;
    unsigned char seed[crypto_shorthash_KEYBYTES];
} map_t;

static size_t map_hash(const map_t *m, const char *key)
{
    unsigned char h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const unsigned char *)key, strlen(key), m->seed);
    uint64_t v;
    memcpy(&v, h, sizeof(v));
    return (size_t)v;
}

static void *map_get(const map_t *m, const char *key)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = map_hash(m, key) & mask;; i = (i + 1) & mask) {
        const char *k = m->slots[i].key;
        if (!k)
            return NULL;
        if (k != TOMB && strcmp(k, key) == 0)
            return m->slots[i].val;
    }
}

static int map_grow(map_t *m, size_t extra)
{
    size_t cap = 16;
    while (cap < (m->used + extra) * 3)
        cap <<= 1;
    map_slot_t *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return AG_ENOMEM;
    for (size_t j = 0; j < m->cap; j++) {
        const char *k = m->slots[j].key;
        if (!k || k == TOMB)
            continue;
        size_t i = map_hash(m, k) & (cap - 1);
        while (slots[i].key)
            i = (i + 1) & (cap - 1);
        slots[i] = m->slots[j];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    m->tombs = 0;
    return 0;
}

/* Makes room so that the next `extra` map_put calls cannot fail. */
static int map_reserve(map_t *m, size_t extra)
{
    if ((m->used + m->tombs + extra) * 10 > m->cap * 7)
        return map_grow(m, extra);
    return 0;
}

/* key must not be present; it is borrowed and must live as long as the entry. */
static int map_put(map_t *m, const char *key, void *val)
{
    int rc = map_reserve(m, 1);
    if (rc)
        return rc;
    size_t mask = m->cap - 1;
    size_t i = map_hash(m, key) & mask;
    while (m->slots[i].key && m->slots[i].key != TOMB)
        i = (i + 1) & mask;
    if (m->slots[i].key == TOMB)
        m->tombs--;
    m->slots[i].key = key;
    m->slots[i].val = val;
    m->used++;
    return 0;
}

static void map_del(map_t *m, const char *key)
{
    if (!m->cap)
        return;
    size_t mask = m->cap - 1;
    for (size_t i = map_hash(m, key) & mask;; i = (i + 1) & mask) {
        const char *k = m->slots[i].key;
        if (!k)
            return;
        if (k != TOMB && strcmp(k, key) == 0) {
            m->slots[i].key = TOMB;
            m->slots[i].val = NULL;
            m->used--;
            m->tombs++;
            return;
        }
    }
}

static void map_release(map_t *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->used = m->tombs = 0;
}

/* ---- state ------------------------------------------------------------------------------- */

typedef struct role {
    char *name;
    json_t *perms_json;   /* array as accepted */
    ag_perm_list_t perms; /* compiled, index-aligned with perms_json */
    int64_t created;
} role_t;

typedef struct user {
    char *id;
    json_t *roles; /* array of role names */
    bool active;
    char key_id[AG_KEY_ID_LEN + 1];
    uint8_t key_hash[HASH_LEN];
    int64_t created;
    /* Principal built from the roles as they were at generation cached_gen (guarded by one of
     * the store's cache locks): rebuilt on first use after any change, so a change costs no walk
     * over the users. */
    ag_principal_t *cached;
    uint64_t cached_gen;
} user_t;

#define CACHE_LOCKS 64

struct ag_secstore {
    ag_kv_t *kv;
    ag_kv_table_t meta, roles_db, users_db, keys_db;
    uint8_t hash_key[crypto_generichash_KEYBYTES];
    pthread_rwlock_t lock;
    map_t roles;  /* name → role_t */
    map_t users;  /* id → user_t */
    map_t by_key; /* key id → user_t */
    _Atomic uint64_t gen;
    pthread_mutex_t cache_mu[CACHE_LOCKS]; /* striped by user: guard user_t.cached */
    ag_secstore_change_fn on_change;
    void *on_change_ctx;
};

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

static void role_free(role_t *r)
{
    if (!r)
        return;
    free(r->name);
    json_decref(r->perms_json);
    ag_perm_list_release(&r->perms);
    free(r);
}

static void user_free(user_t *u)
{
    if (!u)
        return;
    free(u->id);
    json_decref(u->roles);
    ag_principal_unref(u->cached);
    sodium_memzero(u->key_hash, sizeof(u->key_hash));
    free(u);
}

/* After a committed change: called with the write lock held; the callback runs after unlock.
 * Every cached user principal is older than the new generation, so each is rebuilt on its next
 * use (user_principal). */
static void changed(ag_secstore_t *s)
{
    atomic_fetch_add(&s->gen, 1);
}

static void unlock_changed(ag_secstore_t *s)
{
    pthread_rwlock_unlock(&s->lock);
    if (s->on_change)
        s->on_change(s->on_change_ctx);
}

/* ---- record store (store/ag_kv.h) -------------------------------------------------------- */

static int txn_begin(ag_secstore_t *s, ag_kv_txn_t **txn, ag_diag_t *diag)
{
    return ag_kv_begin(s->kv, true, txn, diag);
}

/* Commits with fsync (the record store's commits are synchronous). */
static int txn_commit(ag_kv_txn_t *txn, ag_diag_t *diag)
{
    return ag_kv_commit(txn, diag);
}

static int put_raw(ag_kv_txn_t *txn, ag_kv_table_t t, const char *key, const void *val, size_t len)
{
    return ag_kv_put(txn, t, key, strlen(key), val, len);
}

static int put_json(ag_kv_txn_t *txn, ag_kv_table_t t, const char *key, json_t *val)
{
    if (!val)
        return AG_ENOMEM;
    char *text = ag_json_dump(val);
    json_decref(val);
    if (!text)
        return AG_ENOMEM;
    int rc = put_raw(txn, t, key, text, strlen(text));
    free(text);
    return rc;
}

static int del_key(ag_kv_txn_t *txn, ag_kv_table_t t, const char *key)
{
    int rc = ag_kv_del(txn, t, key, strlen(key));
    return rc == AG_ENOTFOUND ? 0 : rc;
}

static json_t *role_record(const json_t *perms_json, int64_t created)
{
    return json_pack("{s:O,s:I}", "permissions", perms_json, "created", (json_int_t)created);
}

static json_t *user_record(const json_t *roles, bool active, const char *key_id,
                           const uint8_t hash[HASH_LEN], int64_t created)
{
    char hex[HASH_LEN * 2 + 1];
    sodium_bin2hex(hex, sizeof(hex), hash, HASH_LEN);
    return json_pack("{s:O,s:b,s:s,s:s,s:I}", "roles", roles, "active", active, "key_id", key_id,
                     "key_hash", hex, "created", (json_int_t)created);
}

/* ---- keys -------------------------------------------------------------------------------- */

int ag_user_key_parse(const char *key, size_t len, char key_id[AG_KEY_ID_LEN + 1])
{
    /* Users' key ids are all hex; a letter first names another kind of key (ag_keystore). */
    if (len != AG_USER_KEY_LEN || !key || !ag_cred_hex(key + 3, 1))
        return AG_ENOTFOUND;
    return ag_cred_parse(key, len, key_id);
}

/* Hashes the secret part of a well-formed key (checksum already verified). */
static int key_hash_of(const ag_secstore_t *s, const char *key, const char *key_id,
                       uint8_t out[HASH_LEN])
{
    uint8_t secret[AG_CRED_SECRET_BYTES];
    int rc = ag_cred_secret(key, secret);
    if (rc == 0)
        ag_cred_hash(s->hash_key, sizeof(s->hash_key), key_id, secret, out);
    sodium_memzero(secret, sizeof(secret));
    return rc;
}

void ag_secstore_key_free(char *key)
{
    sodium_free(key);
}

/* A fresh key with a key id unused in s (write lock held). *key_out sodium_malloc'd. */
static int new_key(ag_secstore_t *s, char key_id[AG_KEY_ID_LEN + 1], uint8_t hash[HASH_LEN],
                   char **key_out)
{
    *key_out = NULL;
    uint8_t kid[AG_KEY_ID_LEN / 2];
    do {
        randombytes_buf(kid, sizeof(kid));
        sodium_bin2hex(key_id, AG_KEY_ID_LEN + 1, kid, sizeof(kid));
    } while (map_get(&s->by_key, key_id));
    uint8_t secret[AG_CRED_SECRET_BYTES];
    char *key = ag_cred_new(key_id, secret);
    if (key)
        ag_cred_hash(s->hash_key, sizeof(s->hash_key), key_id, secret, hash);
    sodium_memzero(secret, sizeof(secret));
    if (!key)
        return AG_ENOMEM;
    *key_out = key;
    return 0;
}

/* ---- open / close ------------------------------------------------------------------------ */

typedef struct load_ctx {
    ag_secstore_t *s;
    ag_diag_t *diag;
    int rc; /* what the last record's loader returned */
} load_ctx_t;

static int load_role(void *ud, ag_kv_val_t k, ag_kv_val_t v, bool *drop)
{
    AG_UNUSED(drop);
    load_ctx_t *ctx = ud;
    role_t *r = calloc(1, sizeof(*r));
    json_t *rec = json_loadb(v.data, v.len, JSON_REJECT_DUPLICATES, NULL);
    if (!r || !(r->name = strndup(k.data, k.len))) {
        json_decref(rec);
        role_free(r);
        return ctx->rc = AG_ENOMEM;
    }
    int rc;
    json_t *perms = json_object_get(rec, "permissions");
    ag_diag_t pd = {{0}};
    if (!ag_role_name_valid(r->name, strlen(r->name)) || !json_is_array(perms) ||
        ag_perm_list_parse(perms, "permissions", &r->perms, &pd) != 0) {
        rc = ag_fail(ctx->diag, AG_ESTORAGE, "security store: role '%.64s' is corrupt %s", r->name,
                     pd.msg);
    } else {
        r->perms_json = json_incref(perms);
        r->created = json_integer_value(json_object_get(rec, "created"));
        rc = map_put(&ctx->s->roles, r->name, r);
    }
    json_decref(rec);
    if (rc)
        role_free(r);
    return ctx->rc = rc;
}

static int load_user(void *ud, ag_kv_val_t k, ag_kv_val_t v, bool *drop)
{
    AG_UNUSED(drop);
    load_ctx_t *ctx = ud;
    ag_secstore_t *s = ctx->s;
    user_t *u = calloc(1, sizeof(*u));
    json_t *rec = json_loadb(v.data, v.len, JSON_REJECT_DUPLICATES, NULL);
    if (!u || !(u->id = strndup(k.data, k.len))) {
        json_decref(rec);
        user_free(u);
        return ctx->rc = AG_ENOMEM;
    }
    int rc;
    json_t *roles = json_object_get(rec, "roles");
    const char *kid = json_string_value(json_object_get(rec, "key_id"));
    const char *hex = json_string_value(json_object_get(rec, "key_hash"));
    size_t bin = 0;
    if (!json_is_array(roles) || !kid || strlen(kid) != AG_KEY_ID_LEN || !hex ||
        sodium_hex2bin(u->key_hash, HASH_LEN, hex, strlen(hex), NULL, &bin, NULL) != 0 ||
        bin != HASH_LEN) {
        rc = ag_fail(ctx->diag, AG_ESTORAGE, "security store: user '%.64s' is corrupt", u->id);
    } else {
        u->roles = json_incref(roles);
        u->active = json_is_true(json_object_get(rec, "active"));
        memcpy(u->key_id, kid, AG_KEY_ID_LEN + 1);
        u->created = json_integer_value(json_object_get(rec, "created"));
        u->cached = NULL;
        rc = map_put(&s->users, u->id, u);
        if (rc == 0 && (rc = map_put(&s->by_key, u->key_id, u)) != 0)
            map_del(&s->users, u->id);
    }
    json_decref(rec);
    if (rc)
        user_free(u);
    return ctx->rc = rc;
}

/* A failure of the store itself (not of a record, which names itself) is reported as `what`. */
static int load_table(ag_secstore_t *s, ag_kv_txn_t *txn, ag_kv_table_t t, ag_kv_each_fn fn,
                      const char *what, ag_diag_t *diag)
{
    load_ctx_t ctx = {s, diag, 0};
    int rc = ag_kv_each(txn, t, fn, &ctx);
    if (rc && ctx.rc == 0)
        return ag_fail(diag, rc, "security store: cannot read %s", what);
    return rc;
}

static int load_hash_key(ag_secstore_t *s, ag_kv_txn_t *txn)
{
    ag_kv_val_t v;
    int rc = ag_kv_get(txn, s->meta, "hash_key", 8, &v);
    if (rc == 0) {
        if (v.len != sizeof(s->hash_key))
            return AG_ESTORAGE;
        memcpy(s->hash_key, v.data, sizeof(s->hash_key));
        return 0;
    }
    if (rc != AG_ENOTFOUND)
        return AG_ESTORAGE;
    randombytes_buf(s->hash_key, sizeof(s->hash_key));
    if (put_raw(txn, s->meta, "hash_key", s->hash_key, sizeof(s->hash_key)) ||
        put_raw(txn, s->meta, "version", "1", 1))
        return AG_ESTORAGE;
    return 0;
}

static void remote_changed(void *ctx);

/* Memory: *out owns the environment and the loaded state (ag_secstore_close). */
static int open_once(const char *dir, ag_secstore_t **out, ag_diag_t *diag)
{
    *out = NULL;
    if (sodium_init() < 0)
        return ag_fail(diag, AG_EINTERNAL, "libsodium failed to initialise");
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return ag_fail(diag, AG_ESTORAGE, "cannot create %s: %s", dir, strerror(errno));
    chmod(dir, 0700);
    ag_secstore_t *s = calloc(1, sizeof(*s));
    if (!s)
        return AG_ENOMEM;
    for (int i = 0; i < CACHE_LOCKS; i++)
        pthread_mutex_init(&s->cache_mu[i], NULL);
    if (pthread_rwlock_init(&s->lock, NULL) != 0) {
        free(s);
        return AG_ENOMEM;
    }
    atomic_init(&s->gen, 1);
    randombytes_buf(s->roles.seed, sizeof(s->roles.seed));
    randombytes_buf(s->users.seed, sizeof(s->users.seed));
    randombytes_buf(s->by_key.seed, sizeof(s->by_key.seed));
    int rc = ag_kv_open(dir, "security store", MAP_SIZE, 8, &s->kv, diag);
    if (rc)
        goto fail;
    ag_kv_txn_t *txn;
    if ((rc = txn_begin(s, &txn, diag)) != 0)
        goto fail;
    if (ag_kv_table(txn, "meta", &s->meta) || ag_kv_table(txn, "roles", &s->roles_db) ||
        ag_kv_table(txn, "users", &s->users_db) || ag_kv_table(txn, "keys", &s->keys_db) ||
        load_hash_key(s, txn) != 0) {
        ag_kv_abort(txn);
        rc = ag_fail(diag, AG_ESTORAGE, "security store in %s is unreadable", dir);
        goto fail;
    }
    if ((rc = load_table(s, txn, s->roles_db, load_role, "roles", diag)) != 0 ||
        (rc = load_table(s, txn, s->users_db, load_user, "users", diag)) != 0) {
        ag_kv_abort(txn);
        goto fail;
    }
    if ((rc = txn_commit(txn, diag)) != 0)
        goto fail;
    ag_log(AG_LOG_INFO, "security store %s: %zu custom roles, %zu users", dir, s->roles.used,
           s->users.used);
    ag_kv_set_on_remote(s->kv, remote_changed, s);
    *out = s;
    return 0;
fail:
    ag_secstore_close(s);
    return rc;
}

int ag_secstore_open(const char *dir, ag_secstore_t **out, ag_diag_t *diag)
{
    /* Cluster mode: nodes starting together on an empty etcd each generate the store's hash key
     * and write it with a compare-and-swap on the security state's version; all but one get
     * AG_ECONFLICT. Opening again loads the winner's key from etcd (docs/CLUSTER.md "Joining"). */
    int rc = AG_ECONFLICT;
    for (int attempt = 0; rc == AG_ECONFLICT && attempt < 5; attempt++)
        rc = open_once(dir, out, diag);
    return rc;
}

/* Frees the maps of s and what they hold. */
static void release_state(ag_secstore_t *s)
{
    for (size_t i = 0; i < s->roles.cap; i++)
        if (s->roles.slots[i].key && s->roles.slots[i].key != TOMB)
            role_free(s->roles.slots[i].val);
    for (size_t i = 0; i < s->users.cap; i++)
        if (s->users.slots[i].key && s->users.slots[i].key != TOMB)
            user_free(s->users.slots[i].val);
    map_release(&s->roles);
    map_release(&s->users);
    map_release(&s->by_key);
}

/* Changes made on another node reached the local copy (cluster mode, docs/CLUSTER.md): roles and
 * users are rebuilt from it and swapped in whole under the write lock, then the generation moves
 * on and the change callback runs, as after a change made here. Runs on the replicator's thread.
 * If the rebuild fails the old state stays and the failure is logged. */
static void remote_changed(void *ctx)
{
    ag_secstore_t *s = ctx;
    ag_secstore_t *tmp = calloc(1, sizeof(*tmp));
    ag_kv_txn_t *txn = NULL;
    ag_diag_t d = {{0}};
    int rc = tmp ? 0 : AG_ENOMEM;
    if (rc == 0) {
        tmp->kv = s->kv;
        randombytes_buf(tmp->roles.seed, sizeof(tmp->roles.seed));
        randombytes_buf(tmp->users.seed, sizeof(tmp->users.seed));
        randombytes_buf(tmp->by_key.seed, sizeof(tmp->by_key.seed));
        rc = ag_kv_begin(s->kv, false, &txn, &d);
    }
    ag_kv_val_t hk;
    if (rc == 0 && (rc = ag_kv_get(txn, s->meta, "hash_key", 8, &hk)) == 0) {
        if (hk.len == sizeof(tmp->hash_key))
            memcpy(tmp->hash_key, hk.data, hk.len);
        else
            rc = AG_ESTORAGE;
    }
    if (rc == 0)
        rc = load_table(tmp, txn, s->roles_db, load_role, "roles", &d);
    if (rc == 0)
        rc = load_table(tmp, txn, s->users_db, load_user, "users", &d);
    ag_kv_abort(txn);
    if (rc) {
        ag_log(AG_LOG_ERROR,
               "security store: cannot reload after a change made on another node: "
               "%s",
               d.msg[0] ? d.msg : ag_strerror(rc));
    } else {
        pthread_rwlock_wrlock(&s->lock);
        map_t roles = s->roles, users = s->users, by_key = s->by_key;
        s->roles = tmp->roles;
        s->users = tmp->users;
        s->by_key = tmp->by_key;
        memcpy(s->hash_key, tmp->hash_key, sizeof(s->hash_key));
        tmp->roles = roles;
        tmp->users = users;
        tmp->by_key = by_key;
        changed(s);
        unlock_changed(s);
    }
    if (tmp) {
        release_state(tmp);
        sodium_memzero(tmp->hash_key, sizeof(tmp->hash_key));
        free(tmp);
    }
}

void ag_secstore_close(ag_secstore_t *s)
{
    if (!s)
        return;
    ag_kv_close(s->kv); /* first: no change from elsewhere arrives after this */
    release_state(s);
    sodium_memzero(s->hash_key, sizeof(s->hash_key));
    pthread_rwlock_destroy(&s->lock);
    for (int i = 0; i < CACHE_LOCKS; i++)
        pthread_mutex_destroy(&s->cache_mu[i]);
    free(s);
}

void ag_secstore_set_on_change(ag_secstore_t *s, ag_secstore_change_fn fn, void *ctx)
{
    s->on_change = fn;
    s->on_change_ctx = ctx;
}

uint64_t ag_secstore_generation(const ag_secstore_t *s)
{
    return atomic_load(&((ag_secstore_t *)s)->gen);
}

/* ---- roles ------------------------------------------------------------------------------- */

bool ag_secstore_role_builtin(const char *name)
{
    return ag_role_builtin(name) != NULL;
}

bool ag_secstore_role_exists(ag_secstore_t *s, const char *name)
{
    if (ag_role_builtin(name))
        return true;
    pthread_rwlock_rdlock(&s->lock);
    bool found = map_get(&s->roles, name) != NULL;
    pthread_rwlock_unlock(&s->lock);
    return found;
}

int ag_secstore_resolve_role(void *ctx, const char *name, ag_perm_list_t *out)
{
    ag_secstore_t *s = ctx;
    const ag_perm_list_t *builtin = ag_role_builtin(name);
    if (builtin)
        return ag_perm_list_extend(out, builtin);
    if (!s)
        return AG_ENOTFOUND;
    pthread_rwlock_rdlock(&s->lock);
    role_t *r = map_get(&s->roles, name);
    int rc = r ? ag_perm_list_extend(out, &r->perms) : AG_ENOTFOUND;
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

/* A new sorted JSON array of the keys of m (lock held). */
static json_t *sorted_keys(const map_t *m)
{
    const char **names = malloc((m->used ? m->used : 1) * sizeof(*names));
    json_t *arr = json_array();
    if (!names || !arr) {
        free(names);
        json_decref(arr);
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key && m->slots[i].key != TOMB)
            names[n++] = m->slots[i].key;
    qsort(names, n, sizeof(*names), ag_cmp_cstr);
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(arr, json_string(names[i])) < 0) {
            json_decref(arr);
            arr = NULL;
            break;
        }
    free(names);
    return arr;
}

json_t *ag_secstore_role_names(ag_secstore_t *s)
{
    pthread_rwlock_rdlock(&s->lock);
    json_t *custom = sorted_keys(&s->roles);
    pthread_rwlock_unlock(&s->lock);
    json_t *arr = json_pack("[ss]", "root", "viewer");
    if (!custom || !arr || json_array_extend(arr, custom) < 0) {
        json_decref(arr);
        arr = NULL;
    }
    json_decref(custom);
    return arr;
}

static bool roles_has(const json_t *roles, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(roles, i, v)
    {
        if (strcmp(json_string_value(v), name) == 0)
            return true;
    }
    return false;
}

/* Ids of the users holding role name, sorted (lock held). */
static json_t *holders_of(const ag_secstore_t *s, const char *name)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < s->users.cap; i++) {
        const char *k = s->users.slots[i].key;
        if (k && k != TOMB && roles_has(((user_t *)s->users.slots[i].val)->roles, name))
            json_array_append_new(arr, json_string(k));
    }
    return arr;
}

static void sort_strings(json_t *arr)
{
    size_t n = json_array_size(arr);
    if (n < 2)
        return;
    json_t **items = malloc(n * sizeof(*items));
    if (!items)
        return;
    for (size_t i = 0; i < n; i++)
        items[i] = json_incref(json_array_get(arr, i));
    qsort(items, n, sizeof(*items), ag_cmp_json_str);
    json_array_clear(arr);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, items[i]);
    free(items);
}

int ag_secstore_role_json(ag_secstore_t *s, const char *name, json_t **out)
{
    *out = NULL;
    const ag_perm_list_t *builtin = ag_role_builtin(name);
    json_t *perms = NULL;
    int rc = 0;
    pthread_rwlock_rdlock(&s->lock);
    if (builtin) {
        perms = json_array();
        for (size_t i = 0; perms && i < builtin->n && rc == 0; i++)
            rc = ag_perm_to_json(&builtin->items[i], perms);
    } else {
        role_t *r = map_get(&s->roles, name);
        if (!r)
            rc = AG_ENOTFOUND;
        else
            perms = json_deep_copy(r->perms_json);
    }
    json_t *users = rc == 0 ? holders_of(s, name) : NULL;
    pthread_rwlock_unlock(&s->lock);
    if (rc == 0 && (!perms || !users))
        rc = AG_ENOMEM;
    if (rc == 0) {
        sort_strings(users);
        *out = json_pack("{s:s,s:b,s:O,s:O}", "name", name, "builtin", builtin != NULL,
                         "permissions", perms, "users", users);
        if (!*out)
            rc = AG_ENOMEM;
    }
    json_decref(perms);
    json_decref(users);
    return rc;
}

int ag_secstore_role_perms_json(ag_secstore_t *s, const char *name, json_t **out)
{
    *out = NULL;
    if (ag_role_builtin(name))
        return AG_EFORBIDDEN;
    pthread_rwlock_rdlock(&s->lock);
    role_t *r = map_get(&s->roles, name);
    int rc = r ? 0 : AG_ENOTFOUND;
    if (r && !(*out = json_deep_copy(r->perms_json)))
        rc = AG_ENOMEM;
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

int ag_secstore_role_put(ag_secstore_t *s, const char *name, const json_t *perms_json,
                         const ag_perm_list_t *compiled, bool create, ag_diag_t *diag)
{
    if (!name || !ag_role_name_valid(name, strlen(name)))
        return ag_fail(diag, AG_EINVAL, "role name must be 1 to 64 characters of [A-Za-z0-9_.@-]");
    if (ag_role_builtin(name))
        return ag_fail(diag, create ? AG_EEXIST : AG_EFORBIDDEN,
                       "the predefined role '%s' cannot be %s", name,
                       create ? "created" : "changed");
    if (!json_is_array(perms_json) || json_array_size(perms_json) != compiled->n)
        return ag_fail(diag, AG_EINVAL, "permissions: expected an array of permissions");

    role_t *fresh = calloc(1, sizeof(*fresh));
    if (!fresh)
        return AG_ENOMEM;
    fresh->perms_json = json_deep_copy(perms_json);
    int rc = fresh->perms_json ? ag_perm_list_extend(&fresh->perms, compiled) : AG_ENOMEM;
    if (rc == 0 && !(fresh->name = strdup(name)))
        rc = AG_ENOMEM;
    if (rc) {
        role_free(fresh);
        return rc;
    }
    ag_kv_txn_t *txn = NULL;
    pthread_rwlock_wrlock(&s->lock);
    role_t *old = map_get(&s->roles, name);
    if (create && old) {
        rc = ag_fail(diag, AG_EEXIST, "role '%s' already exists", name);
        goto fail;
    }
    if (!create && !old) {
        rc = ag_fail(diag, AG_ENOTFOUND, "role '%s' does not exist", name);
        goto fail;
    }
    fresh->created = old ? old->created : now_s();
    if ((rc = map_reserve(&s->roles, 1)) != 0)
        goto fail;
    if ((rc = txn_begin(s, &txn, diag)) != 0)
        goto fail;
    if ((rc = put_json(txn, s->roles_db, name, role_record(perms_json, fresh->created))) != 0) {
        ag_kv_abort(txn);
        rc = ag_fail(diag, rc, "security store: cannot write role '%s'", name);
        goto fail;
    }
    if ((rc = txn_commit(txn, diag)) != 0)
        goto fail;
    if (old) {
        map_del(&s->roles, name);
        role_free(old);
    }
    /* Cannot fail for lack of memory after the commit: see the reservation above. */
    rc = map_put(&s->roles, fresh->name, fresh);
    ag_assert(rc == 0);
    changed(s);
    unlock_changed(s);
    return 0;
fail:
    pthread_rwlock_unlock(&s->lock);
    role_free(fresh);
    return rc;
}

/* A copy of roles without name. */
static json_t *roles_without(const json_t *roles, const char *name)
{
    json_t *out = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(roles, i, v)
    {
        if (out && strcmp(json_string_value(v), name) != 0 && json_array_append(out, v) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

int ag_secstore_role_delete(ag_secstore_t *s, const char *name, size_t *holders, ag_diag_t *diag)
{
    if (holders)
        *holders = 0;
    if (ag_role_builtin(name))
        return ag_fail(diag, AG_EFORBIDDEN, "the predefined role '%s' cannot be deleted", name);
    ag_kv_txn_t *txn = NULL;
    pthread_rwlock_wrlock(&s->lock);
    role_t *r = map_get(&s->roles, name);
    int rc = 0;
    size_t n_users = s->users.used, n = 0;
    /* New role lists of every holder, prepared before the transaction so nothing can fail
     * between the commit and the in-memory update. */
    user_t **who = calloc(n_users ? n_users : 1, sizeof(*who));
    json_t **lists = calloc(n_users ? n_users : 1, sizeof(*lists));
    if (!r) {
        rc = ag_fail(diag, AG_ENOTFOUND, "role '%s' does not exist", name);
        goto out;
    }
    if (!who || !lists) {
        rc = AG_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < s->users.cap; i++) {
        const char *k = s->users.slots[i].key;
        if (!k || k == TOMB)
            continue;
        user_t *u = s->users.slots[i].val;
        if (!roles_has(u->roles, name))
            continue;
        if (!(lists[n] = roles_without(u->roles, name))) {
            rc = AG_ENOMEM;
            goto out;
        }
        who[n++] = u;
    }
    if ((rc = txn_begin(s, &txn, diag)) != 0)
        goto out;
    rc = del_key(txn, s->roles_db, name);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = put_json(txn, s->users_db, who[i]->id,
                      user_record(lists[i], who[i]->active, who[i]->key_id, who[i]->key_hash,
                                  who[i]->created));
    if (rc) {
        ag_kv_abort(txn);
        rc = ag_fail(diag, rc, "security store: cannot delete role '%s'", name);
        goto out;
    }
    if ((rc = txn_commit(txn, diag)) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        json_decref(who[i]->roles);
        who[i]->roles = lists[i];
        lists[i] = NULL;
    }
    map_del(&s->roles, name);
    role_free(r);
    if (holders)
        *holders = n;
    changed(s);
out:
    for (size_t i = 0; lists && i < n; i++)
        json_decref(lists[i]);
    free(lists);
    free(who);
    if (rc == 0) {
        unlock_changed(s);
    } else {
        pthread_rwlock_unlock(&s->lock);
    }
    return rc;
}

/* ---- users ------------------------------------------------------------------------------- */

static int user_name_check(const char *id, ag_diag_t *diag)
{
    if (!id || !ag_role_name_valid(id, strlen(id)))
        return ag_fail(diag, AG_EINVAL, "user id must be 1 to 64 characters of [A-Za-z0-9_.@-]");
    return 0;
}

/* Validates a JSON array of role names (lock held): strings, valid, existing when must_exist,
 * no duplicates. */
static int roles_check(const ag_secstore_t *s, const json_t *roles, bool must_exist,
                       ag_diag_t *diag)
{
    if (!json_is_array(roles))
        return ag_fail(diag, AG_EINVAL, "roles: expected an array of role names");
    if (json_array_size(roles) > AG_SECSTORE_MAX_ROLES_PER_USER)
        return ag_fail(diag, AG_EINVAL, "roles: at most %d roles", AG_SECSTORE_MAX_ROLES_PER_USER);
    for (size_t i = 0; i < json_array_size(roles); i++) {
        json_t *v = json_array_get(roles, i);
        if (!json_is_string(v) || !ag_role_name_valid(json_string_value(v), json_string_length(v)))
            return ag_fail(diag, AG_EINVAL, "roles[%zu]: not a role name", i);
        const char *name = json_string_value(v);
        if (must_exist && !ag_role_builtin(name) && !map_get(&s->roles, name))
            return ag_fail(diag, AG_EINVAL, "roles[%zu]: role '%s' does not exist", i, name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(json_string_value(json_array_get(roles, j)), name) == 0)
                return ag_fail(diag, AG_EINVAL, "roles[%zu]: '%s' is listed twice", i, name);
    }
    return 0;
}

static int write_user(ag_secstore_t *s, ag_kv_txn_t *txn, const user_t *u, const json_t *roles,
                      bool active, const char *key_id, const uint8_t hash[HASH_LEN])
{
    return put_json(txn, s->users_db, u->id, user_record(roles, active, key_id, hash, u->created));
}

int ag_secstore_user_create(ag_secstore_t *s, const char *id, const json_t *roles, char **key_out,
                            ag_diag_t *diag)
{
    *key_out = NULL;
    int rc = user_name_check(id, diag);
    if (rc)
        return rc;
    user_t *u = calloc(1, sizeof(*u));
    if (!u || !(u->id = strdup(id))) {
        user_free(u);
        return AG_ENOMEM;
    }
    u->cached = NULL;
    u->active = true;
    u->created = now_s();
    u->roles = roles ? json_deep_copy(roles) : json_array();
    if (!u->roles) {
        user_free(u);
        return AG_ENOMEM;
    }
    char *key = NULL;
    ag_kv_txn_t *txn = NULL;
    pthread_rwlock_wrlock(&s->lock);
    if (map_get(&s->users, id)) {
        rc = ag_fail(diag, AG_EEXIST, "user '%s' already exists", id);
        goto fail;
    }
    if ((rc = roles_check(s, u->roles, true, diag)) != 0)
        goto fail;
    if ((rc = map_reserve(&s->users, 1)) != 0 || (rc = map_reserve(&s->by_key, 1)) != 0)
        goto fail;
    if ((rc = new_key(s, u->key_id, u->key_hash, &key)) != 0)
        goto fail;
    if ((rc = txn_begin(s, &txn, diag)) != 0)
        goto fail;
    if ((rc = write_user(s, txn, u, u->roles, true, u->key_id, u->key_hash)) != 0 ||
        (rc = put_raw(txn, s->keys_db, u->key_id, id, strlen(id))) != 0) {
        ag_kv_abort(txn);
        rc = ag_fail(diag, rc, "security store: cannot write user '%s'", id);
        goto fail;
    }
    if ((rc = txn_commit(txn, diag)) != 0)
        goto fail;
    rc = map_put(&s->users, u->id, u);
    ag_assert(rc == 0);
    rc = map_put(&s->by_key, u->key_id, u);
    ag_assert(rc == 0);
    changed(s);
    unlock_changed(s);
    *key_out = key;
    return 0;
fail:
    pthread_rwlock_unlock(&s->lock);
    ag_secstore_key_free(key);
    user_free(u);
    return rc;
}

static user_t *find_user(ag_secstore_t *s, const char *id, int *rc, ag_diag_t *diag)
{
    user_t *u = id ? map_get(&s->users, id) : NULL;
    if (!u)
        *rc = ag_fail(diag, AG_ENOTFOUND, "user '%.64s' does not exist", id ? id : "");
    return u;
}

int ag_secstore_user_rotate(ag_secstore_t *s, const char *id, char **key_out, ag_diag_t *diag)
{
    *key_out = NULL;
    int rc = 0;
    char *key = NULL;
    char kid[AG_KEY_ID_LEN + 1];
    uint8_t hash[HASH_LEN];
    ag_kv_txn_t *txn = NULL;
    pthread_rwlock_wrlock(&s->lock);
    user_t *u = find_user(s, id, &rc, diag);
    if (!u)
        goto fail;
    if ((rc = map_reserve(&s->by_key, 1)) != 0 || (rc = new_key(s, kid, hash, &key)) != 0)
        goto fail;
    if ((rc = txn_begin(s, &txn, diag)) != 0)
        goto fail;
    if ((rc = del_key(txn, s->keys_db, u->key_id)) != 0 ||
        (rc = write_user(s, txn, u, u->roles, u->active, kid, hash)) != 0 ||
        (rc = put_raw(txn, s->keys_db, kid, id, strlen(id))) != 0) {
        ag_kv_abort(txn);
        rc = ag_fail(diag, rc, "security store: cannot write user '%s'", id);
        goto fail;
    }
    if ((rc = txn_commit(txn, diag)) != 0)
        goto fail;
    map_del(&s->by_key, u->key_id);
    memcpy(u->key_id, kid, sizeof(kid));
    memcpy(u->key_hash, hash, HASH_LEN);
    rc = map_put(&s->by_key, u->key_id, u);
    ag_assert(rc == 0);
    changed(s);
    unlock_changed(s);
    sodium_memzero(hash, sizeof(hash));
    *key_out = key;
    return 0;
fail:
    pthread_rwlock_unlock(&s->lock);
    sodium_memzero(hash, sizeof(hash));
    ag_secstore_key_free(key);
    return rc;
}

int ag_secstore_user_set_active(ag_secstore_t *s, const char *id, bool active, ag_diag_t *diag)
{
    int rc = 0;
    ag_kv_txn_t *txn = NULL;
    pthread_rwlock_wrlock(&s->lock);
    user_t *u = find_user(s, id, &rc, diag);
    if (!u)
        goto fail;
    if ((rc = txn_begin(s, &txn, diag)) != 0)
        goto fail;
    if ((rc = write_user(s, txn, u, u->roles, active, u->key_id, u->key_hash)) != 0) {
        ag_kv_abort(txn);
        rc = ag_fail(diag, rc, "security store: cannot write user '%s'", id);
        goto fail;
    }
    if ((rc = txn_commit(txn, diag)) != 0)
        goto fail;
    u->active = active;
    changed(s);
    unlock_changed(s);
    return 0;
fail:
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

int ag_secstore_user_roles(ag_secstore_t *s, const char *id, const json_t *roles, bool add,
                           ag_diag_t *diag)
{
    int rc = 0;
    ag_kv_txn_t *txn = NULL;
    json_t *next = NULL;
    pthread_rwlock_wrlock(&s->lock);
    user_t *u = find_user(s, id, &rc, diag);
    if (!u)
        goto fail;
    if ((rc = roles_check(s, roles, add, diag)) != 0)
        goto fail;
    if (add) {
        if (!(next = json_deep_copy(u->roles))) {
            rc = AG_ENOMEM;
            goto fail;
        }
        size_t i;
        json_t *v;
        json_array_foreach(roles, i, v)
        {
            if (!roles_has(next, json_string_value(v)) && json_array_append(next, v) < 0) {
                rc = AG_ENOMEM;
                goto fail;
            }
        }
        if (json_array_size(next) > AG_SECSTORE_MAX_ROLES_PER_USER) {
            rc = ag_fail(diag, AG_EINVAL, "roles: a user holds at most %d roles",
                         AG_SECSTORE_MAX_ROLES_PER_USER);
            goto fail;
        }
    } else {
        next = json_incref(u->roles);
        size_t i;
        json_t *v;
        json_array_foreach(roles, i, v)
        {
            json_t *smaller = roles_without(next, json_string_value(v));
            json_decref(next);
            if (!(next = smaller)) {
                rc = AG_ENOMEM;
                goto fail;
            }
        }
    }
    if ((rc = txn_begin(s, &txn, diag)) != 0)
        goto fail;
    if ((rc = write_user(s, txn, u, next, u->active, u->key_id, u->key_hash)) != 0) {
        ag_kv_abort(txn);
        rc = ag_fail(diag, rc, "security store: cannot write user '%s'", id);
        goto fail;
    }
    if ((rc = txn_commit(txn, diag)) != 0)
        goto fail;
    json_decref(u->roles);
    u->roles = next;
    changed(s);
    unlock_changed(s);
    return 0;
fail:
    pthread_rwlock_unlock(&s->lock);
    json_decref(next);
    return rc;
}

int ag_secstore_user_delete(ag_secstore_t *s, const char *id, ag_diag_t *diag)
{
    int rc = 0;
    ag_kv_txn_t *txn = NULL;
    pthread_rwlock_wrlock(&s->lock);
    user_t *u = find_user(s, id, &rc, diag);
    if (!u)
        goto fail;
    if ((rc = txn_begin(s, &txn, diag)) != 0)
        goto fail;
    if ((rc = del_key(txn, s->users_db, u->id)) != 0 ||
        (rc = del_key(txn, s->keys_db, u->key_id)) != 0) {
        ag_kv_abort(txn);
        rc = ag_fail(diag, rc, "security store: cannot delete user '%s'", id);
        goto fail;
    }
    if ((rc = txn_commit(txn, diag)) != 0)
        goto fail;
    map_del(&s->by_key, u->key_id);
    map_del(&s->users, u->id);
    user_free(u);
    changed(s);
    unlock_changed(s);
    return 0;
fail:
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

static json_t *user_json(const user_t *u)
{
    char prefix[AG_KEY_ID_LEN + 8];
    snprintf(prefix, sizeof(prefix), "ag_%s_", u->key_id);
    return json_pack("{s:s,s:O,s:b,s:s,s:s,s:I}", "id", u->id, "roles", u->roles, "active",
                     u->active, "key_id", u->key_id, "key_prefix", prefix, "created",
                     (json_int_t)u->created);
}

int ag_secstore_user_json(ag_secstore_t *s, const char *id, json_t **out)
{
    *out = NULL;
    int rc = 0;
    pthread_rwlock_rdlock(&s->lock);
    user_t *u = find_user(s, id, &rc, NULL);
    if (u && !(*out = user_json(u)))
        rc = AG_ENOMEM;
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

json_t *ag_secstore_user_ids(ag_secstore_t *s)
{
    pthread_rwlock_rdlock(&s->lock);
    json_t *ids = sorted_keys(&s->users);
    pthread_rwlock_unlock(&s->lock);
    return ids;
}

/* A new principal for u from the current roles (read or write lock held). */
static int build_principal(ag_secstore_t *s, const user_t *u, ag_principal_t **out)
{
    ag_principal_t *p = NULL;
    int rc = ag_principal_new(AG_PRINCIPAL_USER, u->id, &p);
    size_t i;
    json_t *v;
    json_array_foreach(u->roles, i, v)
    {
        if (rc)
            break;
        const char *name = json_string_value(v);
        const ag_perm_list_t *builtin = ag_role_builtin(name);
        const role_t *r = builtin ? NULL : map_get(&s->roles, name);
        if (!builtin && !r)
            continue; /* cannot happen: deleting a role removes it from every user */
        rc = ag_principal_add_role(p, name);
        if (rc == 0)
            rc = ag_principal_add_perms(p, builtin ? builtin : &r->perms);
    }
    if (rc) {
        ag_principal_unref(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* A reference to u's principal, from the cache when it was built at the current generation
 * (read lock held, so the generation cannot move meanwhile). Memory: *out is a new reference. */
static int user_principal(ag_secstore_t *s, user_t *u, ag_principal_t **out)
{
    uint64_t gen = atomic_load(&s->gen);
    pthread_mutex_t *mu = &s->cache_mu[((uintptr_t)u >> 6) % CACHE_LOCKS];
    pthread_mutex_lock(mu);
    int rc = 0;
    if (!u->cached || u->cached_gen != gen) {
        ag_principal_t *fresh = NULL;
        if ((rc = build_principal(s, u, &fresh)) == 0) {
            ag_principal_unref(u->cached);
            u->cached = fresh;
            u->cached_gen = gen;
        }
    }
    if (rc == 0)
        *out = ag_principal_ref(u->cached);
    pthread_mutex_unlock(mu);
    return rc;
}

int ag_secstore_user_principal(ag_secstore_t *s, const char *id, ag_principal_t **out, bool *active)
{
    *out = NULL;
    int rc = 0;
    pthread_rwlock_rdlock(&s->lock);
    user_t *u = find_user(s, id, &rc, NULL);
    if (u) {
        if (active)
            *active = u->active;
        rc = user_principal(s, u, out);
    }
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

int ag_secstore_lookup(void *ctx, const char *credential, size_t len, int64_t now,
                       ag_principal_t **out)
{
    AG_UNUSED(now);
    ag_secstore_t *s = ctx;
    *out = NULL;
    char kid[AG_KEY_ID_LEN + 1];
    int rc = ag_user_key_parse(credential, len, kid);
    if (rc)
        return rc;
    uint8_t hash[HASH_LEN];
    if ((rc = key_hash_of(s, credential, kid, hash)) != 0)
        return rc;
    pthread_rwlock_rdlock(&s->lock);
    user_t *u = map_get(&s->by_key, kid);
    if (!u) {
        rc = AG_ENOTFOUND;
    } else if (sodium_memcmp(u->key_hash, hash, HASH_LEN) != 0 || !u->active) {
        rc = AG_EUNAUTH;
    } else {
        rc = user_principal(s, u, out);
    }
    pthread_rwlock_unlock(&s->lock);
    sodium_memzero(hash, sizeof(hash));
    return rc;
}

int ag_secstore_minter(void *ctx, const char *user_id, const char *key_id, ag_principal_t **out)
{
    ag_secstore_t *s = ctx;
    *out = NULL;
    int rc = 0;
    pthread_rwlock_rdlock(&s->lock);
    user_t *u = find_user(s, user_id, &rc, NULL);
    if (!u)
        rc = AG_EUNAUTH;
    else if (!u->active || strcmp(u->key_id, key_id) != 0)
        rc = AG_EUNAUTH;
    else
        rc = user_principal(s, u, out);
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

int ag_secstore_user_key_id(ag_secstore_t *s, const char *id, char key_id[AG_KEY_ID_LEN + 1])
{
    int rc = 0;
    pthread_rwlock_rdlock(&s->lock);
    user_t *u = find_user(s, id, &rc, NULL);
    if (u)
        memcpy(key_id, u->key_id, AG_KEY_ID_LEN + 1);
    pthread_rwlock_unlock(&s->lock);
    return u ? 0 : AG_ENOTFOUND;
}

int ag_secstore_copy(ag_secstore_t *s, const char *dir)
{
    /* A consistent copy from one read transaction (a full snapshot's security state). */
    return ag_kv_copy(s->kv, dir);
}
