/*
 * ag_peer.h — the proof a node-to-node call carries (docs/CLUSTER.md "Node-to-node calls"): the
 * signed shard-local header, format v2, and the replay cache that makes each signature usable
 * once.
 *
 * A header is "v2;<node>;<unix ms>;<nonce>;<client address>;<body hash>;<mac>" where the MAC is
 * keyed BLAKE2b-256 (the cluster secret) over the method, the path, the query's decoded arguments,
 * a hash of the credential headers, the sending node, the time, the nonce, the client's address
 * and the body hash. The receiver checks everything but the body when the headers are in
 * (ag_peer_verify), and the body against the signed hash once it has been read
 * (ag_peer_body_ok).
 *
 * Threads: an ag_peer_auth_t may be used by any number of threads at once (the replay cache is
 * striped, each stripe under its own lock).
 */
#ifndef AG_PEER_H
#define AG_PEER_H

#include "ag_base.h"

#define AG_PEER_HEADER_MAX 400 /* a v2 header's value fits in this many bytes (with NUL) */
#define AG_PEER_MAX_SKEW_MS                                                                        \
    60000                          /* a call is accepted within this much of the receiver's clock  \
                                    */
#define AG_PEER_REPLAY_MAX 1048576 /* nonces remembered at most (the default) */

typedef struct ag_peer_auth ag_peer_auth_t;

/* The secret derived from the root key's material, this node's id and a replay cache holding at
 * most replay_max nonces (0 = AG_PEER_REPLAY_MAX). *out owned by the caller (ag_peer_auth_free).
 * AG_ENOMEM, AG_EINVAL (node id empty or over 64 bytes). */
int ag_peer_auth_new(const char *node_id, const void *material, size_t len, size_t replay_max,
                     ag_peer_auth_t **out);
/* Wipes the secret and frees. NULL-safe. */
void ag_peer_auth_free(ag_peer_auth_t *pa);

/* One decoded query argument, as the receiver's HTTP layer parsed it. */
typedef struct ag_peer_arg {
    const char *key, *val;
} ag_peer_arg_t;

/* A call as the receiver sees it (all borrowed). */
typedef struct ag_peer_req {
    const char *method;
    const char *path; /* the raw path; anything from '?' on is ignored */
    const ag_peer_arg_t *args;
    size_t nargs;
    const char *api_key, *authorization; /* the credential headers; NULL = absent */
} ag_peer_req_t;

/* The header value for a call (into out, cap >= AG_PEER_HEADER_MAX): path is the path with its
 * query, percent-encoded as sent; client the original client's address (an IPv4 or IPv6
 * literal). A fresh random nonce each time. 0, or AG_EINVAL (client not an address, buffer too
 * small). */
int ag_peer_sign(ag_peer_auth_t *pa, const char *method, const char *path, const char *api_key,
                 const char *authorization, const char *client, const void *body, size_t len,
                 int64_t now_ms, char *out, size_t cap);

/* What a verified header says. */
typedef struct ag_peer_claim {
    char node[72];   /* the sending node's id */
    char client[64]; /* the original client's address */
    unsigned char body_hash[32];
} ag_peer_claim_t;

/* Checks a header for the call r at now_ms: the format (v2 only), the time within
 * AG_PEER_MAX_SKEW_MS, the MAC, then the nonce against the replay cache (recorded when new).
 * 0 with *out filled; AG_EUNAUTH naming what is wrong (malformed, old version, time, signature,
 * replayed); AG_EUNAVAILABLE when the replay cache is full (fails closed). Nothing is recorded
 * unless the MAC is right. */
int ag_peer_verify(ag_peer_auth_t *pa, const ag_peer_req_t *r, const char *value, int64_t now_ms,
                   ag_peer_claim_t *out, ag_diag_t *diag);
/* Is body[0..len) the body the header was signed for? Constant time. */
bool ag_peer_body_ok(const ag_peer_claim_t *c, const void *body, size_t len);

/* ---- the replay cache (exposed for tests) ------------------------------------------------- */

/* Nonces currently held (live or not yet purged). */
size_t ag_peer_replay_count(ag_peer_auth_t *pa);
/* Records nonce (16 bytes) until expires_ms. 0 when new; AG_ECONFLICT when held and not expired;
 * AG_EUNAVAILABLE when max live nonces are held (the caller fails closed). */
int ag_peer_replay_add(ag_peer_auth_t *pa, const unsigned char nonce[16], int64_t expires_ms,
                       int64_t now_ms);

#endif
