#include "ag_seal.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <unistd.h>

#include "ag_file.h"

#define MAGIC "AGSEAL01"
#define CHUNK (64u * 1024u)
#define MIN_PASS 12

static void put_u64(unsigned char *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

static int derive(unsigned char key[crypto_secretstream_xchacha20poly1305_KEYBYTES],
                  const char *pass, size_t passlen, const unsigned char *salt, uint64_t ops,
                  uint64_t mem)
{
    return crypto_pwhash(key, crypto_secretstream_xchacha20poly1305_KEYBYTES, pass, passlen, salt,
                         ops, (size_t)mem, crypto_pwhash_ALG_ARGON2ID13) == 0
               ? 0
               : AG_ENOMEM;
}

int ag_seal_write(FILE *out, int in_fd, uint64_t len, const char *pass, size_t passlen,
                  ag_diag_t *diag)
{
    if (passlen < MIN_PASS)
        return ag_fail(diag, AG_EINVAL, "passphrase: at least %d characters", MIN_PASS);
    unsigned char
        head[8 + crypto_pwhash_SALTBYTES + 16 + crypto_secretstream_xchacha20poly1305_HEADERBYTES];
    unsigned char key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
    memcpy(head, MAGIC, 8);
    unsigned char *salt = head + 8;
    randombytes_buf(salt, crypto_pwhash_SALTBYTES);
    uint64_t ops = crypto_pwhash_OPSLIMIT_MODERATE, mem = crypto_pwhash_MEMLIMIT_MODERATE;
    put_u64(head + 8 + crypto_pwhash_SALTBYTES, ops);
    put_u64(head + 16 + crypto_pwhash_SALTBYTES, mem);
    if (derive(key, pass, passlen, salt, ops, mem) != 0)
        return ag_fail(diag, AG_ENOMEM, "cannot derive the sealing key (out of memory)");
    crypto_secretstream_xchacha20poly1305_state st;
    crypto_secretstream_xchacha20poly1305_init_push(&st, head + 24 + crypto_pwhash_SALTBYTES, key);
    sodium_memzero(key, sizeof(key));
    unsigned char *plain = malloc(CHUNK);
    unsigned char *cipher = malloc(CHUNK + crypto_secretstream_xchacha20poly1305_ABYTES);
    int rc = plain && cipher ? 0 : AG_ENOMEM;
    if (rc == 0 && fwrite(head, 1, sizeof(head), out) != sizeof(head))
        rc = AG_EIO;
    uint64_t off = 0;
    do {
        if (rc)
            break;
        size_t n = (size_t)AG_MIN((uint64_t)CHUNK, len - off);
        ssize_t got = n ? pread(in_fd, plain, n, (off_t)off) : 0;
        if (got != (ssize_t)n) {
            rc = AG_EIO;
            break;
        }
        off += n;
        unsigned char tag = off == len ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0;
        unsigned long long clen = 0;
        crypto_secretstream_xchacha20poly1305_push(&st, cipher, &clen, plain, n, NULL, 0, tag);
        unsigned char lb[4] = {(unsigned char)clen, (unsigned char)(clen >> 8),
                               (unsigned char)(clen >> 16), (unsigned char)(clen >> 24)};
        if (fwrite(lb, 1, 4, out) != 4 || fwrite(cipher, 1, (size_t)clen, out) != clen)
            rc = AG_EIO;
    } while (off < len);
    sodium_memzero(&st, sizeof(st));
    if (plain)
        sodium_memzero(plain, CHUNK);
    free(plain);
    free(cipher);
    return rc;
}

int ag_seal_read(FILE *in, int out_fd, const char *pass, size_t passlen, ag_diag_t *diag)
{
    unsigned char
        head[8 + crypto_pwhash_SALTBYTES + 16 + crypto_secretstream_xchacha20poly1305_HEADERBYTES];
    if (fread(head, 1, sizeof(head), in) != sizeof(head) || memcmp(head, MAGIC, 8) != 0)
        return ag_fail(diag, AG_EINVAL, "not a sealed Aegis file");
    uint64_t ops = get_u64(head + 8 + crypto_pwhash_SALTBYTES);
    uint64_t mem = get_u64(head + 16 + crypto_pwhash_SALTBYTES);
    if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > crypto_pwhash_OPSLIMIT_SENSITIVE ||
        mem < crypto_pwhash_MEMLIMIT_MIN || mem > crypto_pwhash_MEMLIMIT_SENSITIVE)
        return ag_fail(diag, AG_EINVAL, "sealed file: key-derivation limits out of range");
    unsigned char key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
    if (derive(key, pass, passlen, head + 8, ops, mem) != 0)
        return ag_fail(diag, AG_ENOMEM, "cannot derive the key (out of memory)");
    crypto_secretstream_xchacha20poly1305_state st;
    int rc = crypto_secretstream_xchacha20poly1305_init_pull(
                 &st, head + 24 + crypto_pwhash_SALTBYTES, key) == 0
                 ? 0
                 : AG_EINVAL;
    sodium_memzero(key, sizeof(key));
    unsigned char *plain = malloc(CHUNK);
    unsigned char *cipher = malloc(CHUNK + crypto_secretstream_xchacha20poly1305_ABYTES);
    if (rc == 0 && (!plain || !cipher))
        rc = AG_ENOMEM;
    bool final = false;
    while (rc == 0 && !final) {
        unsigned char lb[4];
        if (fread(lb, 1, 4, in) != 4) {
            rc = ag_fail(diag, AG_EINVAL, "sealed file is truncated");
            break;
        }
        uint32_t clen =
            (uint32_t)lb[0] | (uint32_t)lb[1] << 8 | (uint32_t)lb[2] << 16 | (uint32_t)lb[3] << 24;
        if (clen < crypto_secretstream_xchacha20poly1305_ABYTES ||
            clen > CHUNK + crypto_secretstream_xchacha20poly1305_ABYTES ||
            fread(cipher, 1, clen, in) != clen) {
            rc = ag_fail(diag, AG_EINVAL, "sealed file is damaged or truncated");
            break;
        }
        unsigned long long n = 0;
        unsigned char tag = 0;
        if (crypto_secretstream_xchacha20poly1305_pull(&st, plain, &n, &tag, cipher, clen, NULL,
                                                       0) != 0) {
            rc = ag_fail(diag, AG_EINVAL, "wrong passphrase, or the sealed file is damaged");
            break;
        }
        final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
        if (ag_write_all(out_fd, plain, (size_t)n) != 0)
            rc = ag_fail(diag, AG_EIO, "cannot write the opened file");
    }
    sodium_memzero(&st, sizeof(st));
    if (plain)
        sodium_memzero(plain, CHUNK);
    free(plain);
    free(cipher);
    return rc;
}
