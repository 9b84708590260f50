/*
 * ag_auth.h — credentials (docs/SECURITY.md "Who is calling"): turns the api-key / Authorization
 * headers of a request into a principal.
 *
 * Order: the `api-key` header, else `Authorization: Bearer <x>`. The credential's tag is computed
 * (SipHash-128 under a random key per process) and compared in constant time (crypto_verify_16
 * over fixed-size tags, so neither content nor length leaks) with the tags of api_key and
 * alt_api_key (→ root) and read_only_api_key (→ viewer); every configured key is compared on
 * every request. Otherwise the cache is asked; otherwise, when jwt_rbac is on and the credential
 * has the shape of a JWT (two dots), it is verified as an HS256 token signed with api_key or
 * alt_api_key; otherwise the lookup hook (database users and API keys) gets it. A missing or
 * refused credential is AG_EUNAUTH with a generic message that never contains the credential.
 *
 * Verified tokens and accepted keys are cached (bounded, two-way buckets, keyed by the credential's
 * tag; docs/SECURITY.md "Resolving a credential fast") until evicted or until ag_auth_invalidate,
 * which the owner calls after every change to what a principal is built from (users, keys,
 * roles — local or replicated). A refused credential is never cached. Expiry (with every bound
 * principal's) and `value_exists` are checked on every request, cached or not.
 *
 * A token carrying the minted_by claim (AG_JWT_MINTER_CLAIM) gets its minter as its bound
 * principal: a user minter is looked up through the minter_user hook (gone, deactivated or
 * re-keyed → 401), a token minter is rebuilt from the embedded claims (recursively, with its
 * expiry and value_exists checked on every request), a root minter binds nothing.
 */
#ifndef AG_AUTH_H
#define AG_AUTH_H

#include "ag_base.h"
#include "ag_decide.h"
#include "ag_jwt.h"
#include "ag_principal.h"

#define AG_AUTH_MIN_KEY_LEN 32
#define AG_AUTH_MAX_CREDENTIAL AG_JWT_MAX_LEN
#define AG_AUTH_DEFAULT_LEEWAY 30
#define AG_AUTH_DEFAULT_CACHE 1024

/* Database users / API keys: 0 and a new principal reference in *out; AG_ENOTFOUND when the
 * credential is not a key it knows; AG_EUNAUTH for a known key that is refused (deactivated,
 * expired); any other error fails the request. credential is borrowed for the call. */
typedef int (*ag_auth_lookup_fn)(void *ctx, const char *credential, size_t len, int64_t now,
                                 ag_principal_t **out);
/* value_exists: 0 when some point of ve->collection satisfies ve->filter (the compiled AND of
 * ve->matches; all borrowed); AG_ENOTFOUND when none does or the collection does not exist; any
 * other error fails the request. */
typedef int (*ag_value_exists_fn)(void *ctx, const ag_value_exists_t *ve);

/* The minter of a minted token when it is a database user: 0 and a new principal reference with
 * the user's current permissions when user_id exists, is active and its current key has key_id;
 * AG_EUNAUTH otherwise (the token dies with its minter); any other error fails the request. */
typedef int (*ag_minter_user_fn)(void *ctx, const char *user_id, const char *key_id,
                                 ag_principal_t **out);

/* A key resolved from the cache was used at now (at most once a second per cached key; the
 * lookup hook itself records the uses it sees). For bookkeeping such as last_used only: it
 * cannot refuse. */
typedef void (*ag_auth_used_fn)(void *ctx, const ag_principal_t *p, int64_t now);

typedef struct ag_auth_hooks {
    ag_auth_lookup_fn lookup;
    void *lookup_ctx;
    ag_auth_used_fn used;
    void *used_ctx;
    ag_role_resolve_fn resolve_role;
    void *resolve_ctx;
    ag_value_exists_fn value_exists;
    void *value_exists_ctx;
    ag_minter_user_fn minter_user;
    void *minter_ctx;
} ag_auth_hooks_t;

typedef struct ag_auth_config {
    const char *api_key;           /* service.api_key; NULL or "" = none */
    const char *alt_api_key;       /* service.alt_api_key (rotation) */
    const char *read_only_api_key; /* service.read_only_api_key */
    bool jwt_rbac;                 /* service.jwt_rbac (needs api_key) */
    int64_t jwt_leeway_s;          /* 0..AG_JWT_MAX_LEEWAY */
    size_t token_cache_size;       /* entries, rounded up to a power of two; 0 = no cache */
} ag_auth_config_t;

/* Defaults: no keys, jwt_rbac off, leeway AG_AUTH_DEFAULT_LEEWAY, cache AG_AUTH_DEFAULT_CACHE. */
void ag_auth_config_init(ag_auth_config_t *cfg);

typedef struct ag_auth ag_auth_t;

/*
 * Validates cfg and builds an authenticator (keys are copied into guarded memory; cfg is
 * borrowed). AG_ECONFIG, naming the setting but never its value, for a key shorter than
 * AG_AUTH_MIN_KEY_LEN characters, jwt_rbac or alt_api_key without api_key, read_only_api_key
 * equal to another key, or a leeway out of range. On success the caller owns *out
 * (ag_auth_free).
 */
int ag_auth_new(const ag_auth_config_t *cfg, ag_auth_t **out, ag_diag_t *diag);
/* Wipes the keys and frees auth (and the cache's principal references). NULL-safe. */
void ag_auth_free(ag_auth_t *auth);
/* Installs the hooks (copied). Call before serving; clears the token cache. */
void ag_auth_set_hooks(ag_auth_t *auth, const ag_auth_hooks_t *hooks);
/* Drops every cached principal (the security state changed); the next request resolves its
 * credential again. Thread-safe. */
void ag_auth_invalidate(ag_auth_t *auth);

/*
 * Authenticates one request. Headers are borrowed (NULL when absent); now is wall-clock seconds.
 * On success *out is a new principal reference owned by the caller (ag_principal_unref).
 * AG_EUNAUTH for a missing, malformed, unknown, expired or revoked credential; AG_ENOMEM or a
 * hook's error otherwise. Thread-safe.
 */
int ag_auth_authenticate(ag_auth_t *auth, const char *api_key_header,
                         const char *authorization_header, int64_t now, ag_principal_t **out,
                         ag_diag_t *diag);

/* Mints an HS256 token over claims with api_key (POST /auth/token, `aegis token`); the caller
 * checks anti-escalation first. *out is a new malloc'd string. AG_ECONFIG without api_key. */
int ag_auth_mint(const ag_auth_t *auth, const json_t *claims, char **out);

/* A new anonymous principal holding the root role, for --insecure. Caller owns the reference. */
int ag_auth_anonymous(ag_principal_t **out);

#endif
