/*
 * bench_peer — the cost of the node-to-node header, format v2 (docs/CLUSTER.md "Node-to-node
 * calls"), beside a baseline measured in the same run:
 *   baseline: what format v1 computed per call: one keyed BLAKE2b-256 over method, path, node and
 *             time (sign and verify: twice);
 *   v2:       ag_peer_sign + ag_peer_verify (with the replay cache) + ag_peer_body_ok, for bodies
 *             of 0 B, 1 KiB, 16 KiB and 256 KiB (a search is ~0.5-2 KiB; an upsert of 1000
 *             64-d points ~600 KiB);
 *   replay:   ag_peer_replay_add alone, with the cache holding ~60 000 live nonces (1 000 calls a
 *             second over the 60 s window).
 * Each row is the best of three alternated passes.
 *   bench_peer [iterations=100000]
 */
#include "ag_base.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <sodium.h>

#include "cluster/ag_peer.h"

#define ROOT "bench-root-key-0123456789abcdef01"
#define PATH "/collections/bench/points/search?timeout=30"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static volatile int sink;

static double run_v1(long iters)
{
    unsigned char key[32], mac[32];
    randombytes_buf(key, sizeof(key));
    double t0 = now_s();
    for (long i = 0; i < iters; i++) {
        for (int side = 0; side < 2; side++) {
            char text[256];
            int n =
                snprintf(text, sizeof(text), "POST\n/collections/bench/points/search\nnode-a\n%ld",
                         1800000000000L + i);
            crypto_generichash(mac, sizeof(mac), (unsigned char *)text, (size_t)n, key,
                               sizeof(key));
            sink += mac[0];
        }
    }
    return (now_s() - t0) / (double)iters * 1e9;
}

static const ag_peer_arg_t ARGS[] = {{"timeout", "30"}};

static double run_v2(ag_peer_auth_t *snd, ag_peer_auth_t *rcv, const char *body, size_t len,
                     long iters, int64_t *clock_ms)
{
    ag_peer_req_t r = {"POST", "/collections/bench/points/search", ARGS, 1, "ag_kexample_secret",
                       NULL};
    char h[AG_PEER_HEADER_MAX];
    ag_peer_claim_t c;
    ag_diag_t d;
    double t0 = now_s();
    for (long i = 0; i < iters; i++) {
        int64_t t = (*clock_ms)++;
        if (ag_peer_sign(snd, "POST", PATH, "ag_kexample_secret", NULL, "10.0.0.1", body, len, t, h,
                         sizeof(h)) != 0 ||
            ag_peer_verify(rcv, &r, h, t, &c, &d) != 0 || !ag_peer_body_ok(&c, body, len)) {
            fprintf(stderr, "v2 call %ld refused: %s\n", i, d.msg);
            exit(1);
        }
    }
    return (now_s() - t0) / (double)iters * 1e9;
}

static double run_replay(ag_peer_auth_t *rcv, long iters, int64_t *clock_ms)
{
    unsigned char n[16];
    double t0 = now_s();
    for (long i = 0; i < iters; i++) {
        randombytes_buf(n, sizeof(n));
        int64_t t = (*clock_ms)++;
        if (ag_peer_replay_add(rcv, n, t + AG_PEER_MAX_SKEW_MS, t) != 0) {
            fprintf(stderr, "replay cache refused a new nonce\n");
            exit(1);
        }
    }
    return (now_s() - t0) / (double)iters * 1e9;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 100000;
    if (iters < 3 || sodium_init() < 0)
        return 2;
    ag_peer_auth_t *snd = NULL, *rcv = NULL;
    if (ag_peer_auth_new("node-a", ROOT, strlen(ROOT), 0, &snd) ||
        ag_peer_auth_new("node-b", ROOT, strlen(ROOT), 0, &rcv))
        return 1;
    static const size_t sizes[] = {0, 1024, 16384, 262144};
    char *body = malloc(262144);
    if (!body)
        return 1;
    memset(body, 'x', 262144);
    /* The clock advances 1 ms per call: ~60 000 live nonces once warmed up. */
    int64_t clock_ms = 1800000000000LL;
    (void)run_v2(snd, rcv, "", 0, 70000, &clock_ms);
    printf("replay cache warmed: %zu nonces held\n", ag_peer_replay_count(rcv));
    double best_v1 = 1e30, best_v2[4] = {1e30, 1e30, 1e30, 1e30}, best_rp = 1e30;
    for (int pass = 0; pass < 3; pass++) {
        best_v1 = AG_MIN(best_v1, run_v1(iters / 3));
        for (int k = 0; k < 4; k++) {
            long it = sizes[k] >= 16384 ? AG_MAX(iters / 30, 3L) : iters / 3;
            best_v2[k] = AG_MIN(best_v2[k], run_v2(snd, rcv, body, sizes[k], it, &clock_ms));
        }
        best_rp = AG_MIN(best_rp, run_replay(rcv, iters / 3, &clock_ms));
    }
    printf("%-42s %10.0f ns/call\n", "baseline (v1: keyed BLAKE2b, sign + verify)", best_v1);
    for (int k = 0; k < 4; k++) {
        char label[64];
        snprintf(label, sizeof(label), "v2 sign+verify+body, body %zu B", sizes[k]);
        printf("%-42s %10.0f ns/call  (%.1fx baseline)\n", label, best_v2[k], best_v2[k] / best_v1);
    }
    printf("%-42s %10.0f ns/call\n", "replay cache add (~60k live nonces)", best_rp);
    printf("replay cache at the end: %zu nonces held\n", ag_peer_replay_count(rcv));
    free(body);
    ag_peer_auth_free(snd);
    ag_peer_auth_free(rcv);
    return 0;
}
