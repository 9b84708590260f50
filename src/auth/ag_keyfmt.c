#include "ag_keyfmt.h"

#include <sodium.h>

#include "ag_jwt.h"

static void check_of(const char *s, size_t len, char out[AG_CRED_CHECK_LEN + 1])
{
    unsigned char h[32];
    crypto_generichash(h, sizeof(h), (const unsigned char *)s, len, NULL, 0);
    sodium_bin2hex(out, AG_CRED_CHECK_LEN + 1, h, AG_CRED_CHECK_LEN / 2);
}

bool ag_cred_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

int ag_cred_parse(const char *cred, size_t len, char id[AG_CRED_ID_LEN + 1])
{
    if (!cred || len != AG_CRED_LEN || memcmp(cred, "ag_", 3) != 0 ||
        cred[3 + AG_CRED_ID_LEN] != '_' || cred[3] < '0' || cred[3] > 'z' ||
        !ag_cred_hex(cred + 4, AG_CRED_ID_LEN - 1))
        return AG_ENOTFOUND;
    size_t body = AG_CRED_LEN - AG_CRED_CHECK_LEN;
    char check[AG_CRED_CHECK_LEN + 1];
    check_of(cred, body, check);
    if (sodium_memcmp(check, cred + body, AG_CRED_CHECK_LEN) != 0)
        return AG_EUNAUTH;
    memcpy(id, cred + 3, AG_CRED_ID_LEN);
    id[AG_CRED_ID_LEN] = '\0';
    return 0;
}

int ag_cred_secret(const char *cred, uint8_t secret[AG_CRED_SECRET_BYTES])
{
    size_t n = 0;
    int rc = ag_b64url_decode(cred + 4 + AG_CRED_ID_LEN, AG_CRED_SECRET_LEN, secret,
                              AG_CRED_SECRET_BYTES, &n);
    return rc == 0 && n == AG_CRED_SECRET_BYTES ? 0 : AG_EUNAUTH;
}

/* Memory: the result is sodium_malloc'd, owned by the caller. */
char *ag_cred_new(const char *id, uint8_t secret[AG_CRED_SECRET_BYTES])
{
    char *cred = sodium_malloc(AG_CRED_LEN + 1);
    if (!cred)
        return NULL;
    randombytes_buf(secret, AG_CRED_SECRET_BYTES);
    memcpy(cred, "ag_", 3);
    memcpy(cred + 3, id, AG_CRED_ID_LEN);
    cred[3 + AG_CRED_ID_LEN] = '_';
    ag_b64url_encode(secret, AG_CRED_SECRET_BYTES, cred + 4 + AG_CRED_ID_LEN);
    size_t body = AG_CRED_LEN - AG_CRED_CHECK_LEN;
    check_of(cred, body, cred + body);
    cred[AG_CRED_LEN] = '\0';
    return cred;
}

void ag_cred_hash(const uint8_t *key, size_t key_len, const char *id,
                  const uint8_t secret[AG_CRED_SECRET_BYTES], uint8_t out[AG_CRED_HASH_LEN])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, key_len, AG_CRED_HASH_LEN);
    crypto_generichash_update(&st, (const unsigned char *)id, AG_CRED_ID_LEN);
    crypto_generichash_update(&st, (const unsigned char *)"", 1);
    crypto_generichash_update(&st, secret, AG_CRED_SECRET_BYTES);
    crypto_generichash_final(&st, out, AG_CRED_HASH_LEN);
    sodium_memzero(&st, sizeof(st));
}
