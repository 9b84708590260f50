/*
 * ag_root_key.h — the generated root key (docs/SECURITY.md "Who is calling"): on a first start
 * with no configured key, Aegis makes a random root key, prints it once on stdout (never in the
 * log) and keeps only its salted BLAKE2b-256 hash, in memory and in <storage>/root_key.hash
 * ("v1 <salt hex> <hash hex>", mode 0600, written durably). Later starts load the hash.
 */
#ifndef AG_ROOT_KEY_H
#define AG_ROOT_KEY_H

#include "ag_base.h"

#define AG_ROOT_KEY_FILE "root_key.hash"

typedef struct ag_root_key {
    bool present; /* a generated key is in use */
    unsigned char salt[16];
    unsigned char hash[32];
} ag_root_key_t;

/* Loads <storage>/root_key.hash, or generates a key, prints it once and stores its hash.
 * AG_ECONFIG for a corrupt file (naming it), AG_EIO when the hash cannot be stored. */
int ag_root_key_setup(const char *storage, ag_root_key_t *rk, ag_diag_t *diag);
/* Does credential[0..len) hash to the generated key? Constant time; false when none is in use. */
bool ag_root_key_matches(const ag_root_key_t *rk, const char *credential, size_t len);
/* Forgets the hash. */
void ag_root_key_wipe(ag_root_key_t *rk);

#endif
