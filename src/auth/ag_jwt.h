/*
 * ag_jwt.h — JWT HS256 tokens in Qdrant's format (docs/SECURITY.md "JWT"), verified strictly.
 *
 * Verification never trusts the token to choose anything: the algorithm is fixed (header `alg`
 * must be exactly "HS256"), the keys are the server's, segments are decoded by a strict
 * base64url decoder, JSON is parsed with duplicate keys rejected, and every claim Aegis reads
 * has a fixed type. Any deviation is AG_EUNAUTH; messages name the reason, never token bytes.
 *
 * JWT claims → permissions (collection names in `access` are exact, not patterns):
 *
 *   access "r"                  the viewer role: read on collections, data, tenants, snapshots,
 *                               cluster, nodes
 *   access "m"                  manage on collections, data, tenants, snapshots, cluster, nodes
 *                               (the data plane; not roles, users, keys, audit, backups — use
 *                               `roles: ["root"]` for those)
 *   {collection c, access "r"}  read:collections c, read:data c
 *   {collection c, access "rw"} read:collections c, manage:data c, update:payload_indexes c,
 *                               read+create+delete:snapshots c (no upload/recover, which routes
 *                               declare as update:snapshots or create:collections)
 *   {collection c, access "prw"} read:collections c, manage:data c (every point operation:
 *                               upserts, deletes, vector and payload edits; no payload indexes,
 *                               no snapshots)
 *   + "payload": {k: v, …}      the data/points permissions above get the row filter
 *                               {"must":[{"key":k,"match":{"value":v}}, …]}; a payload-restricted
 *                               rw entry gets neither payload_indexes nor snapshots
 *   roles: [name, …]            "root"/"viewer" built in, others through the resolver; an
 *                               unknown role grants nothing
 *   neither access nor roles    nothing (only the implicit read:profile)
 * Collection create/delete/PATCH and alias changes are reachable only through "m" or roles.
 */
#ifndef AG_JWT_H
#define AG_JWT_H

#include "ag_base.h"
#include "ag_principal.h"

#include <jansson.h>

#define AG_JWT_MAX_LEN 8192    /* bytes of a token */
#define AG_JWT_MIN_SECRET 32   /* bytes of an HS256 secret */
#define AG_JWT_MAX_LEEWAY 3600 /* seconds */
#define AG_ROLE_NAME_MAX 64
/* The claim POST /auth/token writes to name the minter, which callers cannot set
 * (docs/SECURITY.md "Minted tokens"): {"kind": "root"}, {"kind": "user", "id": U, "key_id": K}
 * or {"kind": "token", "claims": {the minting token's claims}}. */
#define AG_JWT_MINTER_CLAIM "minted_by"
/* How many tokens deep a chain of minted tokens may go. */
#define AG_JWT_MAX_MINT_DEPTH 4

/* Strict base64url (RFC 4648 §5) without padding: only [A-Za-z0-9_-], a length that is not
 * 1 mod 4, and zero unused bits in the last character (so each byte string has exactly one
 * encoding). Writes at most cap bytes into out. AG_EINVAL on any deviation or if cap is small. */
int ag_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);
/* Length of the encoding of n bytes (without NUL). */
size_t ag_b64url_encoded_len(size_t n);
/* Encodes in[0..n) into out (ag_b64url_encoded_len(n) + 1 bytes, NUL-terminated). */
void ag_b64url_encode(const uint8_t *in, size_t n, char *out);

/*
 * Verifies token[0..len) against each secret in secrets[0..n_secrets) (NUL-terminated strings;
 * the server's api_key, then alt_api_key — all are tried, in constant time per secret): size
 * cap, three segments, header, HS256 signature, payload JSON object, and the time claims —
 * `exp`, `nbf`, `iat` must be integers when present; exp and nbf are checked against now with
 * leeway seconds, and iat more than leeway in the future is refused.
 * On success *claims is a new reference to the payload object (caller: json_decref).
 * Any failure is AG_EUNAUTH (AG_ENOMEM when memory runs out) and *claims is NULL.
 */
int ag_jwt_verify(const char *token, size_t len, const char *const *secrets, size_t n_secrets,
                  int64_t now, int64_t leeway, json_t **claims, ag_diag_t *diag);

/* Appends the permissions of the role named name to out. Returns 0, AG_ENOTFOUND for a role that
 * does not exist (it then grants nothing), or another error (which fails authentication). */
typedef int (*ag_role_resolve_fn)(void *ctx, const char *name, ag_perm_list_t *out);

/*
 * Turns verified claims into a new token principal (kind AG_PRINCIPAL_TOKEN, id = sub, expiry =
 * exp) per the table above, storing `roles` names and `value_exists`. resolve may be NULL (then
 * only the built-in roles resolve). A claim of the wrong type or shape → AG_EUNAUTH naming it.
 * On success the caller owns the reference in *out.
 */
int ag_jwt_principal(const json_t *claims, ag_role_resolve_fn resolve, void *resolve_ctx,
                     ag_principal_t **out, ag_diag_t *diag);

/* Signs claims (a JSON object, borrowed) with secret (at least AG_JWT_MIN_SECRET bytes) as an
 * HS256 JWT. *out is a new malloc'd NUL-terminated string (caller frees). AG_EINVAL for a short
 * secret or non-object claims, AG_ETOOBIG past AG_JWT_MAX_LEN, AG_ENOMEM. */
int ag_jwt_mint(const char *secret, const json_t *claims, char **out);

/* Role names for `roles` claims and the API: 1..64 bytes of [A-Za-z0-9_.@-]. */
bool ag_role_name_valid(const char *name, size_t len);

#endif
