#include "ag_auth.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <strings.h>

#include "index/ag_filter.h"

/* The credential's tag: SipHash-128 under a random per-process key (docs/SECURITY.md "Resolving
 * a credential fast"). */
#define TAG_LEN crypto_shorthash_siphashx24_BYTES
#define TAG_KEY_LEN crypto_shorthash_siphashx24_KEYBYTES
#define CACHE_LOCKS 16

typedef struct cache_entry {
    uint8_t tag[TAG_LEN];
    uint64_t gen;
    int64_t used_s;    /* looked-up entries: when the used hook last ran for it */
    bool looked_up;    /* resolved through the lookup hook (a key), not a verified token */
    bool recent;       /* the more recently used of its bucket's two entries */
    ag_principal_t *p; /* NULL = empty slot */
} cache_entry_t;

typedef struct key_slot {
    char *key; /* sodium_malloc'd copy, NULL when not configured */
    uint8_t tag[TAG_LEN];
} key_slot_t;

enum { KEY_API = 0, KEY_ALT, KEY_READ_ONLY, KEY_COUNT };

struct ag_auth {
    key_slot_t keys[KEY_COUNT];
    uint8_t tag_key[TAG_KEY_LEN];
    bool jwt_rbac;
    int64_t leeway;
    ag_auth_hooks_t hooks;
    ag_principal_t *root;   /* shared by every request authenticated with api_key */
    ag_principal_t *viewer; /* shared by every request authenticated with read_only_api_key */

    /* Two-way buckets: bucket b is entries 2b and 2b + 1, under cache_locks[b % CACHE_LOCKS]. */
    pthread_mutex_t cache_locks[CACHE_LOCKS];
    cache_entry_t *cache;
    size_t bucket_mask;
    _Atomic uint64_t gen;
};

static const char *const key_settings[KEY_COUNT] = {"service.api_key", "service.alt_api_key",
                                                    "service.read_only_api_key"};

void ag_auth_config_init(ag_auth_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->jwt_leeway_s = AG_AUTH_DEFAULT_LEEWAY;
    cfg->token_cache_size = AG_AUTH_DEFAULT_CACHE;
}

static void tag_of(const ag_auth_t *auth, const char *s, size_t len, uint8_t out[TAG_LEN])
{
    crypto_shorthash_siphashx24(out, (const unsigned char *)s, len, auth->tag_key);
}

static int builtin_principal(int kind, const char *id, const ag_perm_list_t *perms,
                             ag_principal_t **out)
{
    int rc = ag_principal_new(kind, id, out);
    if (rc == 0 && (rc = ag_principal_add_perms(*out, perms)) < 0) {
        ag_principal_unref(*out);
        *out = NULL;
    }
    return rc;
}

static int check_config(const ag_auth_config_t *cfg, const char *k[KEY_COUNT], ag_diag_t *diag)
{
    for (int i = 0; i < KEY_COUNT; i++) {
        if (k[i] && strlen(k[i]) < AG_AUTH_MIN_KEY_LEN)
            return ag_fail(diag, AG_ECONFIG,
                           "%s is shorter than %d characters (generate one with `aegis keygen`)",
                           key_settings[i], AG_AUTH_MIN_KEY_LEN);
    }
    if (k[KEY_ALT] && !k[KEY_API])
        return ag_fail(diag, AG_ECONFIG, "service.alt_api_key needs service.api_key");
    if (cfg->jwt_rbac && !k[KEY_API])
        return ag_fail(diag, AG_ECONFIG, "service.jwt_rbac needs service.api_key");
    if (k[KEY_READ_ONLY] && ((k[KEY_API] && strcmp(k[KEY_READ_ONLY], k[KEY_API]) == 0) ||
                             (k[KEY_ALT] && strcmp(k[KEY_READ_ONLY], k[KEY_ALT]) == 0)))
        return ag_fail(diag, AG_ECONFIG,
                       "service.read_only_api_key must differ from service.api_key and "
                       "service.alt_api_key");
    if (cfg->jwt_leeway_s < 0 || cfg->jwt_leeway_s > AG_JWT_MAX_LEEWAY)
        return ag_fail(diag, AG_ECONFIG, "service.jwt_leeway must be between 0 and %d seconds",
                       AG_JWT_MAX_LEEWAY);
    if (cfg->token_cache_size > (1u << 20))
        return ag_fail(diag, AG_ECONFIG, "token cache size must be at most %u", 1u << 20);
    return 0;
}

/* Memory: *out is a new authenticator owned by the caller (ag_auth_free). */
int ag_auth_new(const ag_auth_config_t *cfg, ag_auth_t **out, ag_diag_t *diag)
{
    *out = NULL;
    if (sodium_init() < 0)
        return ag_fail(diag, AG_EINTERNAL, "libsodium failed to initialise");
    const char *k[KEY_COUNT] = {cfg->api_key, cfg->alt_api_key, cfg->read_only_api_key};
    for (int i = 0; i < KEY_COUNT; i++)
        if (k[i] && !*k[i])
            k[i] = NULL;
    int rc = check_config(cfg, k, diag);
    if (rc < 0)
        return rc;

    ag_auth_t *auth = calloc(1, sizeof(*auth));
    if (!auth)
        return AG_ENOMEM;
    for (int i = 0; i < CACHE_LOCKS; i++) {
        if (pthread_mutex_init(&auth->cache_locks[i], NULL) != 0) {
            while (i-- > 0)
                pthread_mutex_destroy(&auth->cache_locks[i]);
            free(auth);
            return AG_ENOMEM;
        }
    }
    atomic_init(&auth->gen, 1);
    auth->jwt_rbac = cfg->jwt_rbac;
    auth->leeway = cfg->jwt_leeway_s;
    randombytes_buf(auth->tag_key, sizeof(auth->tag_key));
    rc = AG_ENOMEM;
    for (int i = 0; i < KEY_COUNT; i++) {
        if (!k[i])
            continue;
        size_t len = strlen(k[i]);
        if (!(auth->keys[i].key = sodium_malloc(len + 1)))
            goto fail;
        memcpy(auth->keys[i].key, k[i], len + 1);
        tag_of(auth, k[i], len, auth->keys[i].tag);
    }
    if (cfg->token_cache_size) {
        size_t n = 2;
        while (n < cfg->token_cache_size)
            n <<= 1;
        if (!(auth->cache = calloc(n, sizeof(*auth->cache))))
            goto fail;
        auth->bucket_mask = n / 2 - 1;
    }
    if ((rc = builtin_principal(AG_PRINCIPAL_ROOT, "root", ag_role_root(), &auth->root)) < 0 ||
        (rc = builtin_principal(AG_PRINCIPAL_VIEWER, "viewer", ag_role_viewer(), &auth->viewer)) <
            0)
        goto fail;
    *out = auth;
    return 0;
fail:
    ag_auth_free(auth);
    return rc;
}

static void cache_clear(ag_auth_t *auth)
{
    if (!auth->cache)
        return;
    for (size_t l = 0; l < CACHE_LOCKS; l++) {
        pthread_mutex_lock(&auth->cache_locks[l]);
        for (size_t b = l; b <= auth->bucket_mask; b += CACHE_LOCKS) {
            for (size_t i = 2 * b; i < 2 * b + 2; i++) {
                ag_principal_unref(auth->cache[i].p);
                auth->cache[i].p = NULL;
                sodium_memzero(auth->cache[i].tag, TAG_LEN);
            }
        }
        pthread_mutex_unlock(&auth->cache_locks[l]);
    }
}

void ag_auth_free(ag_auth_t *auth)
{
    if (!auth)
        return;
    cache_clear(auth);
    free(auth->cache);
    for (int i = 0; i < KEY_COUNT; i++)
        sodium_free(auth->keys[i].key); /* sodium_free wipes the memory first */
    sodium_memzero(auth->tag_key, sizeof(auth->tag_key));
    ag_principal_unref(auth->root);
    ag_principal_unref(auth->viewer);
    for (int i = 0; i < CACHE_LOCKS; i++)
        pthread_mutex_destroy(&auth->cache_locks[i]);
    free(auth);
}

void ag_auth_set_hooks(ag_auth_t *auth, const ag_auth_hooks_t *hooks)
{
    if (hooks)
        auth->hooks = *hooks;
    else
        memset(&auth->hooks, 0, sizeof(auth->hooks));
    ag_auth_invalidate(auth);
}

void ag_auth_invalidate(ag_auth_t *auth)
{
    atomic_fetch_add(&auth->gen, 1);
    cache_clear(auth);
}

/* --- credential extraction ---------------------------------------------------------------- */

static int credential_of(const char *api_key, const char *authorization, const char **cred,
                         size_t *len, ag_diag_t *diag)
{
    const char *c = NULL;
    if (api_key && *api_key) {
        c = api_key;
    } else if (authorization && *authorization) {
        if (strncasecmp(authorization, "Bearer ", 7) != 0)
            return ag_fail(diag, AG_EUNAUTH,
                           "invalid credential: Authorization must be \"Bearer <token>\"");
        c = authorization + 7;
        while (*c == ' ')
            c++;
    }
    if (!c || !*c)
        return ag_fail(diag, AG_EUNAUTH,
                       "missing credential: send an api-key header or Authorization: Bearer");
    size_t n = strnlen(c, AG_AUTH_MAX_CREDENTIAL + 1);
    if (n > AG_AUTH_MAX_CREDENTIAL)
        return ag_fail(diag, AG_EUNAUTH, "invalid credential");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)c[i] < 0x20 || (unsigned char)c[i] == 0x7f)
            return ag_fail(diag, AG_EUNAUTH, "invalid credential");
    *cred = c;
    *len = n;
    return 0;
}

static bool looks_like_jwt(const char *c, size_t n)
{
    size_t dots = 0;
    for (size_t i = 0; i < n; i++)
        dots += c[i] == '.';
    return dots == 2;
}

/* --- token cache -------------------------------------------------------------------------- */

/* The tag is a keyed PRF output, so any of its bits index the table uniformly. */
static size_t cache_bucket(const ag_auth_t *auth, const uint8_t tag[TAG_LEN])
{
    uint64_t h;
    memcpy(&h, tag, sizeof(h));
    return (size_t)h & auth->bucket_mask;
}

static void mark_recent(cache_entry_t *pair, int which)
{
    pair[which].recent = true;
    pair[!which].recent = false;
}

/* A reference to the principal cached for tag at the current generation, or NULL. *used_due is
 * set for a looked-up entry whose used hook has not run yet in second now (it is recorded as
 * run). Memory: the result is a new reference owned by the caller. */
static ag_principal_t *cache_get(ag_auth_t *auth, const uint8_t tag[TAG_LEN], int64_t now,
                                 bool *used_due)
{
    *used_due = false;
    if (!auth->cache)
        return NULL;
    ag_principal_t *p = NULL;
    uint64_t gen = atomic_load(&auth->gen);
    size_t b = cache_bucket(auth, tag);
    cache_entry_t *pair = &auth->cache[2 * b];
    pthread_mutex_lock(&auth->cache_locks[b % CACHE_LOCKS]);
    /* Both entries are compared, each over the whole tag in constant time (crypto_verify_16 has
     * no early exit), so the time tells nothing about how much of a tag matched. */
    int m0 = pair[0].p && crypto_verify_16(pair[0].tag, tag) == 0;
    int m1 = pair[1].p && crypto_verify_16(pair[1].tag, tag) == 0;
    int which = m0 ? 0 : 1;
    cache_entry_t *e = &pair[which];
    if ((m0 | m1) && e->gen == gen) {
        p = ag_principal_ref(e->p);
        mark_recent(pair, which);
        if (e->looked_up && e->used_s != now) {
            e->used_s = now;
            *used_due = true;
        }
    }
    pthread_mutex_unlock(&auth->cache_locks[b % CACHE_LOCKS]);
    return p;
}

/* Stores p (a new reference) for tag, unless the generation moved on since gen was read — before
 * p was resolved — so nothing resolved from a state older than the latest invalidation is kept.
 * Only verified credentials arrive here: a refused one never takes a slot. The victim is the
 * bucket's entry for the same tag, else an empty or outdated one, else the less recently used. */
static void cache_put(ag_auth_t *auth, const uint8_t tag[TAG_LEN], uint64_t gen, ag_principal_t *p,
                      bool looked_up, int64_t now)
{
    if (!auth->cache)
        return;
    ag_principal_t *old = NULL;
    size_t b = cache_bucket(auth, tag);
    cache_entry_t *pair = &auth->cache[2 * b];
    pthread_mutex_lock(&auth->cache_locks[b % CACHE_LOCKS]);
    if (gen == atomic_load(&auth->gen)) {
        int which;
        if (pair[0].p && crypto_verify_16(pair[0].tag, tag) == 0)
            which = 0;
        else if (pair[1].p && crypto_verify_16(pair[1].tag, tag) == 0)
            which = 1;
        else if (!pair[0].p || pair[0].gen != gen)
            which = 0;
        else if (!pair[1].p || pair[1].gen != gen)
            which = 1;
        else
            which = pair[0].recent ? 1 : 0;
        cache_entry_t *e = &pair[which];
        old = e->p;
        memcpy(e->tag, tag, TAG_LEN);
        e->gen = gen;
        e->used_s = now;
        e->looked_up = looked_up;
        e->p = ag_principal_ref(p);
        mark_recent(pair, which);
    }
    pthread_mutex_unlock(&auth->cache_locks[b % CACHE_LOCKS]);
    ag_principal_unref(old);
}

/* --- authentication ----------------------------------------------------------------------- */

static int principal_from_claims(ag_auth_t *auth, const json_t *claims, int depth,
                                 ag_principal_t **out, ag_diag_t *diag);

static int bad_minter(ag_diag_t *diag)
{
    return ag_fail(diag, AG_EUNAUTH, "invalid token: claim %s is malformed", AG_JWT_MINTER_CLAIM);
}

/* The principal the minted_by claim m names, as it stands now (*out NULL for root). */
static int minter_principal(ag_auth_t *auth, const json_t *m, int depth, ag_principal_t **out,
                            ag_diag_t *diag)
{
    *out = NULL;
    const char *kind = json_string_value(json_object_get(m, "kind"));
    if (!json_is_object(m) || !kind || depth >= AG_JWT_MAX_MINT_DEPTH)
        return bad_minter(diag);
    if (strcmp(kind, "root") == 0)
        return json_object_size(m) == 1 ? 0 : bad_minter(diag);
    if (strcmp(kind, "user") == 0) {
        const char *id = json_string_value(json_object_get(m, "id"));
        const char *key_id = json_string_value(json_object_get(m, "key_id"));
        if (!id || !key_id || json_object_size(m) != 3)
            return bad_minter(diag);
        if (!auth->hooks.minter_user)
            return ag_fail(diag, AG_EUNAUTH, "invalid token: its minter cannot be checked");
        int rc = auth->hooks.minter_user(auth->hooks.minter_ctx, id, key_id, out);
        if (rc == AG_EUNAUTH || rc == AG_ENOTFOUND || (rc == 0 && !*out))
            return ag_fail(diag, AG_EUNAUTH,
                           "invalid token: its minter was deactivated, deleted or given a new key");
        return rc;
    }
    if (strcmp(kind, "token") == 0) {
        const json_t *claims = json_object_get(m, "claims");
        if (!json_is_object(claims) || json_object_size(m) != 2)
            return bad_minter(diag);
        return principal_from_claims(auth, claims, depth + 1, out, diag);
    }
    return bad_minter(diag);
}

/* Verified claims → a token principal with its minter chain bound (see ag_auth.h). */
static int principal_from_claims(ag_auth_t *auth, const json_t *claims, int depth,
                                 ag_principal_t **out, ag_diag_t *diag)
{
    ag_principal_t *p = NULL;
    int rc = ag_jwt_principal(claims, auth->hooks.resolve_role, auth->hooks.resolve_ctx, &p, diag);
    if (rc < 0)
        return rc;
    ag_principal_set_claims(p, claims);
    const json_t *m = json_object_get(claims, AG_JWT_MINTER_CLAIM);
    if (m) {
        ag_principal_t *bound = NULL;
        if ((rc = minter_principal(auth, m, depth, &bound, diag)) < 0) {
            ag_principal_unref(p);
            return rc;
        }
        ag_principal_set_bound(p, bound);
    }
    *out = p;
    return 0;
}

/* A token not in the cache: verified and its principal built; *gen is the generation read before
 * (for cache_put). */
static int authenticate_jwt(ag_auth_t *auth, const char *cred, size_t len, int64_t now,
                            uint64_t *gen, ag_principal_t **out, ag_diag_t *diag)
{
    ag_principal_t *p = NULL;
    *gen = atomic_load(&auth->gen);
    const char *secrets[2] = {auth->keys[KEY_API].key, auth->keys[KEY_ALT].key};
    json_t *claims = NULL;
    int rc = ag_jwt_verify(cred, len, secrets, 2, now, auth->leeway, &claims, diag);
    if (rc < 0)
        return rc;
    rc = principal_from_claims(auth, claims, 0, &p, diag);
    json_decref(claims);
    if (rc < 0)
        return rc;
    *out = p;
    return 0;
}

static int check_one(ag_auth_t *auth, const ag_principal_t *p, int64_t now, ag_diag_t *diag)
{
    int64_t exp = ag_principal_expiry(p);
    int64_t leeway = ag_principal_kind(p) == AG_PRINCIPAL_TOKEN ? auth->leeway : 0;
    if (exp && now >= (exp > INT64_MAX - leeway ? INT64_MAX : exp + leeway))
        return ag_fail(diag, AG_EUNAUTH, "invalid credential: expired");
    const ag_value_exists_t *ve = ag_principal_value_exists(p);
    if (!ve)
        return 0;
    if (!auth->hooks.value_exists)
        return ag_fail(diag, AG_EUNAUTH, "invalid token: value_exists cannot be checked");
    int rc = auth->hooks.value_exists(auth->hooks.value_exists_ctx, ve);
    if (rc == AG_ENOTFOUND || rc == AG_EUNAUTH)
        return ag_fail(diag, AG_EUNAUTH, "invalid token: revoked (value_exists)");
    return rc < 0 ? rc : 0;
}

/* The principal and every minter up its chain: unexpired, value_exists holding. */
static int check_principal(ag_auth_t *auth, const ag_principal_t *p, int64_t now, ag_diag_t *diag)
{
    int rc = 0;
    for (const ag_principal_t *q = p; q && rc == 0; q = ag_principal_bound(q))
        rc = check_one(auth, q, now, diag);
    return rc;
}

/* Memory: on success *out is a new principal reference owned by the caller. */
int ag_auth_authenticate(ag_auth_t *auth, const char *api_key_header,
                         const char *authorization_header, int64_t now, ag_principal_t **out,
                         ag_diag_t *diag)
{
    *out = NULL;
    if (!auth)
        return ag_fail(diag, AG_EINTERNAL, "authentication is not configured");
    const char *cred = NULL;
    size_t len = 0;
    int rc = credential_of(api_key_header, authorization_header, &cred, &len, diag);
    if (rc < 0)
        return rc;

    uint8_t tag[TAG_LEN];
    tag_of(auth, cred, len, tag);
    /* Compare with every configured key, always, so timing reveals nothing about which. */
    int hit_root = 0, hit_viewer = 0;
    for (int i = 0; i < KEY_COUNT; i++) {
        int eq = auth->keys[i].key && crypto_verify_16(tag, auth->keys[i].tag) == 0;
        if (i == KEY_READ_ONLY)
            hit_viewer |= eq;
        else
            hit_root |= eq;
    }

    ag_principal_t *p = NULL;
    bool used_due = false, put = false, looked_up = false;
    uint64_t put_gen = 0;
    if (hit_root) {
        p = ag_principal_ref(auth->root);
    } else if (hit_viewer) {
        p = ag_principal_ref(auth->viewer);
    } else if ((p = cache_get(auth, tag, now, &used_due)) != NULL) {
        /* Verified before, at the current generation: expiry and value_exists are still checked
         * below, on every request. */
        if (used_due && auth->hooks.used)
            auth->hooks.used(auth->hooks.used_ctx, p, now);
    } else if (auth->jwt_rbac && looks_like_jwt(cred, len)) {
        if ((rc = authenticate_jwt(auth, cred, len, now, &put_gen, &p, diag)) < 0)
            goto fail;
        put = true;
    } else if (looks_like_jwt(cred, len)) {
        /* No key or user key has two dots: this is a token, and tokens are off. */
        rc = ag_fail(diag, AG_EUNAUTH,
                     "invalid credential: JWTs are not enabled on this server (service.jwt_rbac "
                     "is off)");
        goto fail;
    } else if (auth->hooks.lookup) {
        /* Read before the lookup: a change made meanwhile keeps its result out of the cache. */
        put_gen = atomic_load(&auth->gen);
        rc = auth->hooks.lookup(auth->hooks.lookup_ctx, cred, len, now, &p);
        if (rc == AG_ENOTFOUND || rc == AG_EUNAUTH || (rc == 0 && !p)) {
            ag_principal_unref(p);
            p = NULL;
            rc = ag_fail(diag, AG_EUNAUTH, "invalid credential");
        }
        if (rc < 0)
            goto fail;
        put = looked_up = true;
    } else {
        rc = ag_fail(diag, AG_EUNAUTH, "invalid credential");
        goto fail;
    }
    if ((rc = check_principal(auth, p, now, diag)) < 0)
        goto fail;
    /* Only a credential accepted right now is cached. */
    if (put)
        cache_put(auth, tag, put_gen, p, looked_up, now);
    sodium_memzero(tag, sizeof(tag));
    *out = p;
    return 0;
fail:
    sodium_memzero(tag, sizeof(tag));
    ag_principal_unref(p);
    return rc;
}

/* Memory: *out is a new malloc'd token owned by the caller. */
int ag_auth_mint(const ag_auth_t *auth, const json_t *claims, char **out)
{
    *out = NULL;
    if (!auth || !auth->keys[KEY_API].key)
        return AG_ECONFIG;
    return ag_jwt_mint(auth->keys[KEY_API].key, claims, out);
}

/* Memory: *out is a new principal reference owned by the caller. */
int ag_auth_anonymous(ag_principal_t **out)
{
    return builtin_principal(AG_PRINCIPAL_ANONYMOUS, "anonymous", ag_role_root(), out);
}
