/*
 * ag_keystore.h — the management plane's state (docs/SECURITY.md "Keys, management keys and
 * invites"): database API keys, management keys, one-time invites and the account's security
 * settings, in an LMDB environment of their own (<storage>/security/mgmt/, mode 0700).
 *
 * Layout (named databases; values are JSON unless noted):
 *   meta     "hash_key" → 32 random bytes (raw): the key of the keyed hash of secrets
 *   keys     key id → {"kind": "api"|"management", "name", "grant": {access?|roles?|
 *                      permissions?}, "creator": {...}, "created", "expires_at",
 *                      "allowed_ips": [...], "key_hash": hex, "last_used"}
 *   invites  invite id → {"user_id", "roles", "inviter": {...}, "created", "expires_at",
 *                         "code_hash": hex}
 *   account  "settings" → {"name"?, "max_key_ttl_sec"?, "default_key_ttl_sec"?,
 *                          "max_invite_ttl_sec"?}
 * Keys are mirrored in memory (read lock on the request path; LMDB only for changes and for the
 * last_used time, written at most once a minute per key). Invites live only in LMDB: accepting
 * one is a single write transaction that checks and deletes it, so a code works exactly once.
 *
 * Secrets: `ag_<id>_<secret><check>`, the shape of user keys (ag_secstore.h: 12-character id,
 * 43-character base64url secret of 32 random bytes, 6 hex characters of BLAKE2b-256 over the rest)
 * so the same secret scanners find them; the id's first character keeps the namespaces apart:
 * 'k' database API key, 'm' management key, 'i' invite code (then 11 lowercase hex characters),
 * while user key ids are 12 hex characters. Only BLAKE2b-256(key = hash_key, id || 0 || secret)
 * is stored.
 *
 * A creator ("creator"/"inviter") is {"kind": "root"}, {"kind": "user", "id", "key_id"} or
 * {"kind": "api_key", "id"}: the principal whose permissions bound the key at every use.
 */
#ifndef AG_KEYSTORE_H
#define AG_KEYSTORE_H

#include "ag_auth.h"
#include "ag_base.h"
#include "ag_perm.h"
#include "ag_principal.h"

#include <jansson.h>

#define AG_MKEY_ID_LEN 12
#define AG_MKEY_LEN (3 + AG_MKEY_ID_LEN + 1 + 43 + 6)
#define AG_KEYSTORE_MAX_KEYS 100000
#define AG_KEYSTORE_MAX_IPS 64
/* Invites kept at once (pending or expired but not yet revoked). */
#define AG_KEYSTORE_MAX_INVITES 10000
/* last_used is written at most this often per key. */
#define AG_KEYSTORE_LAST_USED_EVERY 60
/* Bound chains (a management key creating API keys …) longer than this are refused. */
#define AG_KEYSTORE_MAX_DEPTH 4

typedef enum {
    AG_KEYKIND_API = 0,        /* database API key (/auth/api-keys) */
    AG_KEYKIND_MANAGEMENT = 1, /* management key (/auth/management-keys) */
} ag_key_kind_t;

typedef struct ag_keystore ag_keystore_t;

/* How a key's principal is built: roles resolve through resolve_role (the security store), a
 * user creator through minter_user (gone, deactivated or re-keyed → AG_EUNAUTH). */
typedef struct ag_keystore_hooks {
    ag_role_resolve_fn resolve_role;
    void *resolve_ctx;
    ag_minter_user_fn minter_user;
    void *minter_ctx;
} ag_keystore_hooks_t;

/* Account settings as numbers (0 = not set). */
typedef struct ag_account_limits {
    int64_t max_key_ttl_s;
    int64_t default_key_ttl_s;
    int64_t max_invite_ttl_s;
} ag_account_limits_t;

/* Opens (creating with mode 0700) the environment in dir and loads the keys. *out owned by the
 * caller (ag_keystore_close). AG_ESTORAGE naming the path. */
int ag_keystore_open(const char *dir, ag_keystore_t **out, ag_diag_t *diag);
/* Closes and frees; NULL-safe; nothing else may run concurrently. */
void ag_keystore_close(ag_keystore_t *ks);
/* Writes a compact, consistent copy of the store (data.mdb) into the existing directory dir.
 * 0 or AG_EIO. */
int ag_keystore_copy(ag_keystore_t *s, const char *dir);
/* Installs the hooks (copied), before serving. */
void ag_keystore_set_hooks(ag_keystore_t *ks, const ag_keystore_hooks_t *hooks);
/* Called after every change to the keys in memory — created, rotated, deleted here, or reloaded
 * after a change made on another node — outside the store's locks. */
typedef void (*ag_keystore_change_fn)(void *ctx);
/* Installs the change callback (before serving). */
void ag_keystore_set_on_change(ag_keystore_t *ks, ag_keystore_change_fn fn, void *ctx);

/* Splits a credential shaped `ag_<id>_<secret><check>` whose id starts with want ('k', 'm' or
 * 'i'; 0 = 'k' or 'm') into id (AG_MKEY_ID_LEN + 1 bytes). AG_ENOTFOUND when it is not such a
 * credential, AG_EUNAUTH for a bad checksum. */
int ag_mkey_parse(const char *cred, size_t len, char want, char id[AG_MKEY_ID_LEN + 1]);

/* --- keys ---------------------------------------------------------------------------------- */

/* Validates an allowed_ips array (addresses or CIDRs, IPv4 or IPv6, at most
 * AG_KEYSTORE_MAX_IPS). AG_EINVAL naming "allowed_ips[i]". arr borrowed; NULL is fine. */
int ag_keystore_check_ips(const json_t *arr, ag_diag_t *diag);

/*
 * Builds the principal a grant ({"access": …} | {"roles": [...]} | {"permissions": [...]}, as
 * validated by the caller) gives, without any bound: kind AG_PRINCIPAL_API_KEY, id (may be
 * NULL). For a management key only management permissions (ag_resource_is_management) and
 * cluster_data are kept. *out is a new reference. AG_EINVAL naming the field for a bad grant.
 */
int ag_keystore_grant_principal(ag_keystore_t *ks, int kind, const char *id, const json_t *grant,
                                ag_principal_t **out, ag_diag_t *diag);
/* The creator as it stands now: NULL in *out for root (nothing bounds it); AG_EUNAUTH when the
 * creator is gone, deactivated, re-keyed or expired. *out is a new reference. */
int ag_keystore_creator_principal(ag_keystore_t *ks, const json_t *creator, ag_principal_t **out);

/* Creates a key. grant, allowed_ips (may be NULL) and creator are borrowed (copied);
 * expires_at > 0 (seconds since the epoch). *key_out is a new sodium_malloc'd key
 * (ag_keystore_secret_free after showing it once); *record_out a new public record
 * (ag_keystore_key_json). AG_EINVAL for a bad name or past AG_KEYSTORE_MAX_KEYS. */
int ag_keystore_key_create(ag_keystore_t *ks, int kind, const char *name, const json_t *grant,
                           int64_t expires_at, const json_t *allowed_ips, const json_t *creator,
                           char **key_out, json_t **record_out, ag_diag_t *diag);
/* New secret for key id (same id): the old one stops working at once; the key is bound to
 * creator from now on. Outputs as for create. AG_ENOTFOUND (also for a key of the other kind). */
int ag_keystore_key_rotate(ag_keystore_t *ks, int kind, const char *id, const json_t *creator,
                           char **key_out, json_t **record_out, ag_diag_t *diag);
/* Deletes (revokes at once). AG_ENOTFOUND. */
int ag_keystore_key_delete(ag_keystore_t *ks, int kind, const char *id, ag_diag_t *diag);
/* A new public record {id, kind, name, prefix, created, expires_at, last_used, allowed_ips,
 * access|roles|permissions, creator} — never the secret or its hash. AG_ENOTFOUND. */
int ag_keystore_key_json(ag_keystore_t *ks, int kind, const char *id, json_t **out);
/* A new array of the public records of every key of kind, sorted by id. */
json_t *ag_keystore_key_list(ag_keystore_t *ks, int kind);
/* A new reference to the key's stored grant. AG_ENOTFOUND. */
int ag_keystore_key_grant(ag_keystore_t *ks, int kind, const char *id, json_t **out);

/* The ag_auth_lookup_fn for API and management keys (ctx = the store): AG_ENOTFOUND for a
 * credential that is not one, AG_EUNAUTH for a bad checksum, an unknown id, a wrong secret, an
 * expired key or a creator that no longer holds (the key dies with it); otherwise a new
 * principal (kind AG_PRINCIPAL_API_KEY, id = key id) bound to its creator as it is now. */
int ag_keystore_lookup(void *ctx, const char *credential, size_t len, int64_t now,
                       ag_principal_t **out);
/* Records a use of key id at now (last_used) for a caller that resolved it from a cache, as
 * ag_keystore_lookup does for the uses it sees. Unknown ids are ignored. */
void ag_keystore_key_used(ag_keystore_t *ks, const char *id, int64_t now);
/* May key id be used from addr (a textual IPv4/IPv6 address)? True when the key has no
 * allowed_ips; false for an unknown key or an unparsable address (fail closed). */
bool ag_keystore_addr_allowed(ag_keystore_t *ks, const char *id, const char *addr);

/* --- invites -------------------------------------------------------------------------------- */

/* Creates an invite for user_id with roles (array of names; validated by the caller), valid
 * until expires_at. *code_out a new sodium_malloc'd code; *record_out its public record.
 * AG_EINVAL past AG_KEYSTORE_MAX_INVITES stored invites. */
int ag_keystore_invite_create(ag_keystore_t *ks, const char *user_id, const json_t *roles,
                              int64_t expires_at, const json_t *inviter, char **code_out,
                              json_t **record_out, ag_diag_t *diag);
/* A new array of pending (unexpired) invites' public records — never codes. */
json_t *ag_keystore_invite_list(ag_keystore_t *ks, int64_t now);
/* Revokes. AG_ENOTFOUND. */
int ag_keystore_invite_delete(ag_keystore_t *ks, const char *id, ag_diag_t *diag);
/* Spends a code: in one write transaction, checks it (shape, checksum, known id, secret, not
 * expired) and deletes the invite. *invite_out is the record as it was (new reference).
 * AG_EUNAUTH for any refusal, whatever the reason (callers must not tell which). */
int ag_keystore_invite_accept(ag_keystore_t *ks, const char *code, size_t len, int64_t now,
                              json_t **invite_out);

/* --- account -------------------------------------------------------------------------------- */

/* A new copy of the settings object. */
json_t *ag_keystore_account_json(ag_keystore_t *ks);
/* Merges patch (validated here: known settings only, each of its type; null removes one) into
 * the settings. AG_EINVAL naming the setting. */
int ag_keystore_account_patch(ag_keystore_t *ks, const json_t *patch, ag_diag_t *diag);
/* The numeric limits now. */
void ag_keystore_account_limits(ag_keystore_t *ks, ag_account_limits_t *out);

/* Wipes and frees a key or code returned above. NULL-safe. */
void ag_keystore_secret_free(char *secret);

#endif
