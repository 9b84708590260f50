/*
 * ag_secstore.h — the security state (docs/PERMISSIONS.md, docs/API.md): custom roles, database
 * users and their API keys, in an LMDB environment of their own (<storage>/security/, directory
 * mode 0700).
 *
 * Layout (named databases of that environment; values are JSON unless noted):
 *   meta   "hash_key" → 32 random bytes (raw): the key of the keyed hash of user secrets
 *          "version"  → "1"
 *   roles  name    → {"permissions": [...as accepted], "created": <unix s>}
 *   users  id      → {"roles": [names], "active": bool, "key_id": "<id>",
 *                     "key_hash": "<hex BLAKE2b-256 keyed>", "created": <unix s>}
 *   keys   key id  → user id (raw bytes): the key index
 * Every change is one write transaction, committed with fsync before the call returns, then
 * mirrored into memory (compiled roles, user table, key-id table) under a write lock. Readers
 * (authentication, role resolution) take the read lock and never touch LMDB, so a change applies
 * to the next request on every connection. Each change bumps a generation counter and calls the
 * change callback (the guard uses it to drop cached token principals).
 *
 * API keys of users: `ag_<key id>_<secret><check>` where key id is 12 lowercase hex characters
 * (6 random bytes), secret the unpadded base64url of 32 random bytes (43 characters) and check
 * the first 6 hex characters of BLAKE2b-256 over everything before it — a typo fails fast, and
 * the fixed prefix lets secret scanners find leaked keys. Only
 * BLAKE2b-256(key = hash_key, "key id" || 0 || secret bytes) is stored; the key is shown once.
 *
 * Predefined roles root and viewer are not stored: they are answered from ag_principal.h, and
 * cannot be created, changed or deleted.
 */
#ifndef AG_SECSTORE_H
#define AG_SECSTORE_H

#include "ag_base.h"
#include "ag_perm.h"
#include "ag_principal.h"

#include <jansson.h>

/* The format is ag_keyfmt.h's (these name its parts for users' keys). */
#define AG_KEY_ID_LEN 12
#define AG_KEY_SECRET_LEN 43
#define AG_KEY_CHECK_LEN 6
/* "ag_" + key id + "_" + secret + check */
#define AG_USER_KEY_LEN (3 + AG_KEY_ID_LEN + 1 + AG_KEY_SECRET_LEN + AG_KEY_CHECK_LEN)
#define AG_SECSTORE_MAX_ROLES_PER_USER 64

typedef struct ag_secstore ag_secstore_t;

/* Called after every committed change (with the callback's ctx), outside the store's locks. */
typedef void (*ag_secstore_change_fn)(void *ctx);

/* Opens (creating with mode 0700 if needed) the environment in directory dir and loads it.
 * AG_ESTORAGE naming the path on failure. *out owned by the caller (ag_secstore_close). */
int ag_secstore_open(const char *dir, ag_secstore_t **out, ag_diag_t *diag);
/* Closes and frees. NULL-safe. No other call may run concurrently. */
void ag_secstore_close(ag_secstore_t *s);
/* Writes a compact, consistent copy of the store (data.mdb) into the existing directory dir.
 * 0 or AG_EIO. */
int ag_secstore_copy(ag_secstore_t *s, const char *dir);
/* Installs the change callback (before serving). */
void ag_secstore_set_on_change(ag_secstore_t *s, ag_secstore_change_fn fn, void *ctx);
/* Number of committed changes since open (starts at 1). Thread-safe. */
uint64_t ag_secstore_generation(const ag_secstore_t *s);

/* --- keys -------------------------------------------------------------------------------- */

/* Splits a user key into its key id (copied into key_id, AG_KEY_ID_LEN + 1 bytes) and verifies
 * shape and checksum. AG_ENOTFOUND when it is not shaped like a user key at all, AG_EUNAUTH when
 * it is but the checksum or the encoding is wrong. The secret is not returned. */
int ag_user_key_parse(const char *key, size_t len, char key_id[AG_KEY_ID_LEN + 1]);

/* --- roles (all thread-safe) ---------------------------------------------------------------- */

/* Is name a predefined role (root, viewer)? */
bool ag_secstore_role_builtin(const char *name);
/* Does the role exist (predefined or custom)? */
bool ag_secstore_role_exists(ag_secstore_t *s, const char *name);
/* Appends copies of the role's permissions to out (predefined roles too). AG_ENOTFOUND. Same
 * signature as ag_role_resolve_fn, ctx = the store: install it as the JWT `roles` resolver. */
int ag_secstore_resolve_role(void *ctx, const char *name, ag_perm_list_t *out);
/* A new JSON object {name, builtin, permissions, users} (users: ids holding it). AG_ENOTFOUND. */
int ag_secstore_role_json(ag_secstore_t *s, const char *name, json_t **out);
/* A new array of the names of every role, predefined first, then custom ones sorted. */
json_t *ag_secstore_role_names(ag_secstore_t *s);

/* Creates (create = true; AG_EEXIST if taken) or replaces the permissions of (create = false;
 * AG_ENOTFOUND if missing) a custom role. perms must already be validated: perms_json is the
 * array as accepted (borrowed, copied) and compiled its ag_perm_list_parse result (borrowed,
 * copied), index-aligned. AG_EINVAL for a bad name, AG_EFORBIDDEN for a predefined role. */
int ag_secstore_role_put(ag_secstore_t *s, const char *name, const json_t *perms_json,
                         const ag_perm_list_t *compiled, bool create, ag_diag_t *diag);
/* The current permissions of a custom role as a new JSON array (as accepted). AG_ENOTFOUND;
 * AG_EFORBIDDEN for a predefined role. */
int ag_secstore_role_perms_json(ag_secstore_t *s, const char *name, json_t **out);
/* Deletes a custom role and removes it from every user in the same transaction. *holders (may
 * be NULL) receives how many users lost it. AG_ENOTFOUND, AG_EFORBIDDEN for root/viewer. */
int ag_secstore_role_delete(ag_secstore_t *s, const char *name, size_t *holders, ag_diag_t *diag);

/* --- users (all thread-safe) ---------------------------------------------------------------- */

/* Creates user id with roles (a JSON array of existing role names, or NULL) and a fresh key.
 * *key_out is a new sodium_malloc'd NUL-terminated key (free with ag_secstore_key_free after
 * rendering it once). AG_EEXIST, AG_EINVAL (bad id, unknown or duplicate role). */
int ag_secstore_user_create(ag_secstore_t *s, const char *id, const json_t *roles, char **key_out,
                            ag_diag_t *diag);
/* New key for the user; the old one stops working at once. *key_out as above. AG_ENOTFOUND. */
int ag_secstore_user_rotate(ag_secstore_t *s, const char *id, char **key_out, ag_diag_t *diag);
/* Activates or deactivates. AG_ENOTFOUND. */
int ag_secstore_user_set_active(ag_secstore_t *s, const char *id, bool active, ag_diag_t *diag);
/* Assigns (add = true) or revokes roles (a JSON array of names; assigned ones must exist).
 * AG_ENOTFOUND for the user, AG_EINVAL naming a bad role. */
int ag_secstore_user_roles(ag_secstore_t *s, const char *id, const json_t *roles, bool add,
                           ag_diag_t *diag);
/* Deletes the user and its key. AG_ENOTFOUND. */
int ag_secstore_user_delete(ag_secstore_t *s, const char *id, ag_diag_t *diag);
/* A new JSON object {id, roles, active, key_id, created} (never the key or its hash). */
int ag_secstore_user_json(ag_secstore_t *s, const char *id, json_t **out);
/* A new sorted array of every user id. */
json_t *ag_secstore_user_ids(ag_secstore_t *s);
/* A new principal (kind AG_PRINCIPAL_USER) for user id with its current roles resolved, whether
 * active or not (*active, may be NULL, tells). AG_ENOTFOUND. Caller owns the reference. */
int ag_secstore_user_principal(ag_secstore_t *s, const char *id, ag_principal_t **out,
                               bool *active);

/* The ag_auth_lookup_fn for user keys (ctx = the store): AG_ENOTFOUND for a credential that is
 * not a user key or names no known key id, AG_EUNAUTH for a bad checksum, a wrong secret or a
 * deactivated user; otherwise a new principal reference in *out. Constant-time comparison. */
int ag_secstore_lookup(void *ctx, const char *credential, size_t len, int64_t now,
                       ag_principal_t **out);

/* The ag_minter_user_fn of ag_auth.h (ctx = the store): a new principal reference for user_id
 * when it exists, is active and its current key id is key_id; AG_EUNAUTH otherwise. */
int ag_secstore_minter(void *ctx, const char *user_id, const char *key_id, ag_principal_t **out);
/* Copies the user's current key id into key_id. AG_ENOTFOUND. */
int ag_secstore_user_key_id(ag_secstore_t *s, const char *id, char key_id[AG_KEY_ID_LEN + 1]);

/* Wipes and frees a key returned by the store. NULL-safe. */
void ag_secstore_key_free(char *key);

#endif
