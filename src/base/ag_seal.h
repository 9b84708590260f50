/*
 * ag_seal.h — a file sealed under a passphrase (the security state in a full snapshot;
 * docs/SECURITY.md "Snapshots"): the key is derived with Argon2id (crypto_pwhash, a random salt,
 * libsodium's "moderate" limits), the content encrypted and authenticated in 64 KiB chunks with
 * crypto_secretstream (XChaCha20-Poly1305), the last chunk tagged final so a truncated file is
 * refused. Layout: "AGSEAL01", salt (16), opslimit (u64le), memlimit (u64le), stream header (24),
 * then chunks as u32le length + ciphertext.
 */
#ifndef AG_SEAL_H
#define AG_SEAL_H

#include "ag_base.h"

#include <stdio.h>

/* Seals in_fd[0, len) into out (at its current position). Passphrases shorter than 12 bytes are
 * AG_EINVAL. 0, AG_EIO, AG_ENOMEM. */
int ag_seal_write(FILE *out, int in_fd, uint64_t len, const char *pass, size_t passlen,
                  ag_diag_t *diag);
/* Opens what ag_seal_write wrote (read from in) into out_fd. A wrong passphrase, a damaged or a
 * truncated file is AG_EINVAL (nothing written is to be trusted then; the caller removes it);
 * key-derivation limits above libsodium's "sensitive" ones are refused. */
int ag_seal_read(FILE *in, int out_fd, const char *pass, size_t passlen, ag_diag_t *diag);

#endif
