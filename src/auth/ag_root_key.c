#include "ag_root_key.h"

#include <stdio.h>

#include <sodium.h>

#include "ag_file.h"
#include "ag_log.h"

static void hash_key(const unsigned char salt[16], const char *key, size_t len,
                     unsigned char out[32])
{
    crypto_generichash(out, 32, (const unsigned char *)key, len, salt, 16);
}

static int load(const char *path, FILE *f, ag_root_key_t *rk, ag_diag_t *diag)
{
    char line[200] = {0};
    bool ok = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    char salt_hex[33] = {0}, hash_hex[65] = {0};
    size_t bin_len = 0;
    if (!ok || sscanf(line, "v1 %32s %64s", salt_hex, hash_hex) != 2 ||
        sodium_hex2bin(rk->salt, 16, salt_hex, 32, NULL, &bin_len, NULL) != 0 || bin_len != 16 ||
        sodium_hex2bin(rk->hash, 32, hash_hex, 64, NULL, &bin_len, NULL) != 0 || bin_len != 32)
        return ag_fail(diag, AG_ECONFIG,
                       "%s is unreadable or corrupt; remove it to generate a new root key, or "
                       "configure service.api_key",
                       path);
    rk->present = true;
    ag_log(AG_LOG_INFO, "authentication: using the generated root key (hash in %s)", path);
    return 0;
}

int ag_root_key_setup(const char *storage, ag_root_key_t *rk, ag_diag_t *diag)
{
    memset(rk, 0, sizeof(*rk));
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/%s", storage ? storage : ".", AG_ROOT_KEY_FILE);
    if (n < 0 || (size_t)n >= sizeof(path))
        return ag_fail(diag, AG_ECONFIG, "storage path is too long");
    FILE *f = fopen(path, "rb");
    if (f)
        return load(path, f, rk, diag);

    unsigned char raw[32];
    randombytes_buf(raw, sizeof(raw));
    char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof(raw));
    char key[96];
    snprintf(key, sizeof(key), "ag_root_%s", b64);
    sodium_memzero(b64, sizeof(b64));
    randombytes_buf(rk->salt, sizeof(rk->salt));
    hash_key(rk->salt, key, strlen(key), rk->hash);

    char salt_hex[33], hash_hex[65], line[128];
    sodium_bin2hex(salt_hex, sizeof(salt_hex), rk->salt, 16);
    sodium_bin2hex(hash_hex, sizeof(hash_hex), rk->hash, 32);
    snprintf(line, sizeof(line), "v1 %s %s\n", salt_hex, hash_hex);
    if (ag_file_replace(path, line, strlen(line), 0600) != 0) {
        sodium_memzero(key, sizeof(key));
        ag_root_key_wipe(rk);
        return ag_fail(diag, AG_EIO, "cannot store the root key's hash in %s", path);
    }
    rk->present = true;
    /* Printed once, on stdout only (never in the log); only the hash is kept. */
    printf("\n"
           "  Aegis generated a root API key for this storage directory. It is shown only now:\n"
           "\n"
           "      %s\n"
           "\n"
           "  Send it with every request:  curl -H 'api-key: <key>' "
           "http://127.0.0.1:6333/collections\n"
           "  Only its hash is stored (%s). To choose your own key, set service.api_key\n"
           "  (or AEGIS__SERVICE__API_KEY) to at least 32 characters.\n\n",
           key, path);
    fflush(stdout);
    sodium_memzero(key, sizeof(key));
    return 0;
}

bool ag_root_key_matches(const ag_root_key_t *rk, const char *credential, size_t len)
{
    if (!rk->present)
        return false;
    unsigned char h[32];
    hash_key(rk->salt, credential, len, h);
    bool same = sodium_memcmp(h, rk->hash, 32) == 0;
    sodium_memzero(h, sizeof(h));
    return same;
}

void ag_root_key_wipe(ag_root_key_t *rk)
{
    sodium_memzero(rk, sizeof(*rk));
}
