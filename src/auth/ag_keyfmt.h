/*
 * ag_keyfmt.h — the one format of every secret Aegis hands out (database users' keys, API keys,
 * management keys, invite codes): `ag_<id>_<secret><check>`, where id is 12 characters (lower-case
 * hex, or a letter naming the kind followed by 11 hex), secret the unpadded base64url of 32 random
 * bytes (43 characters) and check the first 6 hex characters of BLAKE2b-256 over everything before
 * it — the fixed prefix lets secret scanners find a leaked key, the check makes a typo fail fast.
 * Stores keep only a keyed hash of (id, secret) (ag_cred_hash), never the secret.
 */
#ifndef AG_KEYFMT_H
#define AG_KEYFMT_H

#include "ag_base.h"

#define AG_CRED_ID_LEN 12
#define AG_CRED_SECRET_BYTES 32
#define AG_CRED_SECRET_LEN 43
#define AG_CRED_CHECK_LEN 6
#define AG_CRED_LEN (3 + AG_CRED_ID_LEN + 1 + AG_CRED_SECRET_LEN + AG_CRED_CHECK_LEN)
#define AG_CRED_HASH_LEN 32

/* Shape and checksum of cred[0..len): AG_ENOTFOUND when it is not shaped like a credential,
 * AG_EUNAUTH when it is but the checksum is wrong, else 0 with its id copied into id. The id's
 * first character (hex, or a kind letter) is the caller's to check. */
int ag_cred_parse(const char *cred, size_t len, char id[AG_CRED_ID_LEN + 1]);
/* The 32 secret bytes of a parsed credential; AG_EUNAUTH for a bad encoding. */
int ag_cred_secret(const char *cred, uint8_t secret[AG_CRED_SECRET_BYTES]);
/* A new credential for id with fresh random secret bytes (also written to secret, which the
 * caller wipes). Memory: the result is sodium_malloc'd (free with sodium_free); NULL on ENOMEM. */
char *ag_cred_new(const char *id, uint8_t secret[AG_CRED_SECRET_BYTES]);
/* The keyed hash a store keeps: BLAKE2b-256 keyed with key over id, a zero byte, secret. */
void ag_cred_hash(const uint8_t *key, size_t key_len, const char *id,
                  const uint8_t secret[AG_CRED_SECRET_BYTES], uint8_t out[AG_CRED_HASH_LEN]);
/* Is s[0..n) lower-case hex? */
bool ag_cred_hex(const char *s, size_t n);

#endif
