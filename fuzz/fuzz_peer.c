/*
 * libFuzzer target for the node-to-node header, format v2 (cluster/ag_peer.h, docs/CLUSTER.md
 * "Node-to-node calls"). The first input byte picks the mode:
 *   even: the rest is a header value, verified for a fixed call at a fixed time: it may be
 *         refused; it may never be accepted (nobody but a node holds the secret), nor crash;
 *   odd:  a genuine header is made for the call, then the rest of the input, read as pairs
 *         (position, byte), changes it; a changed header must be refused, the untouched one
 *         accepted exactly once.
 *
 * Build (not part of CMake):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Isrc/base \
 *     fuzz/fuzz_peer.c src/cluster/ag_peer_auth.c src/base/ag_error.c src/base/ag_log.c -lsodium \
 *     -lpthread -o fuzz_peer
 *   ./fuzz_peer fuzz/corpus/peer
 */
#include "ag_base.h"

#include <stdio.h>
#include <stdlib.h>

#include "cluster/ag_peer.h"

#define ROOT "fuzz-root-key-fuzz-root-key-0123"
#define NOW 1800000000000LL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ag_peer_auth_t *sender;

static void setup(void)
{
    if (!sender && ag_peer_auth_new("node-s", ROOT, strlen(ROOT), 0, &sender) != 0)
        abort();
}

static const ag_peer_arg_t ARGS[] = {{"wait", "true"}};
static const ag_peer_req_t REQ = {"PUT", "/collections/c/points", ARGS, 1, "ag_k0_secret", NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (size == 0)
        return 0;
    ag_peer_claim_t c;
    ag_diag_t d = {{0}};
    char h[AG_PEER_HEADER_MAX + 1];
    /* A receiver per input: its replay cache starts empty (the time never moves here). */
    ag_peer_auth_t *receiver = NULL;
    if (ag_peer_auth_new("node-r", ROOT, strlen(ROOT), 64, &receiver) != 0)
        abort();
    if ((data[0] & 1) == 0) {
        char *v = malloc(size);
        if (!v) {
            ag_peer_auth_free(receiver);
            return 0;
        }
        memcpy(v, data + 1, size - 1);
        v[size - 1] = '\0';
        int rc = ag_peer_verify(receiver, &REQ, v, NOW, &c, &d);
        free(v);
        ag_peer_auth_free(receiver);
        if (rc == 0)
            abort(); /* accepted without the secret */
        return 0;
    }
    if (ag_peer_sign(sender, "PUT", "/collections/c/points?wait=true", "ag_k0_secret", NULL,
                     "10.0.0.1", "{}", 2, NOW, h, sizeof(h)) != 0)
        abort();
    char t[AG_PEER_HEADER_MAX + 1];
    memcpy(t, h, sizeof(t));
    size_t len = strlen(h);
    for (size_t i = 1; i + 1 < size; i += 2)
        t[data[i] % len] = (char)(data[i + 1] ? data[i + 1] : 1);
    int rc = ag_peer_verify(receiver, &REQ, t, NOW, &c, &d);
    if (strcmp(t, h) != 0) {
        /* A changed header may still be accepted only if the change left the same call, which
         * v2 does not allow: hex is case-insensitive, so an upper-cased digit is the one
         * exception. */
        bool only_case = true;
        for (size_t i = 0; i < len; i++)
            if (t[i] != h[i] && !((h[i] >= 'a' && h[i] <= 'f') && t[i] == h[i] - 'a' + 'A'))
                only_case = false;
        if (rc == 0 && !only_case)
            abort();
        if (rc == 0 && only_case && !ag_peer_body_ok(&c, "{}", 2))
            abort();
    } else {
        if (rc != 0 || !ag_peer_body_ok(&c, "{}", 2) || strcmp(c.client, "10.0.0.1") != 0)
            abort();
        /* once only */
        if (ag_peer_verify(receiver, &REQ, t, NOW, &c, &d) == 0)
            abort();
    }
    ag_peer_auth_free(receiver);
    return 0;
}
