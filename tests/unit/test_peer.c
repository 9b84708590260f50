/* Node-to-node call signatures, format v2 (cluster/ag_peer.h, docs/CLUSTER.md "Node-to-node
 * calls"): what the MAC covers, the replay cache (once only, bounded, fails closed when full),
 * malformed headers, and threads signing, verifying and replaying at once (this suite runs under
 * ThreadSanitizer too: label concurrency). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/ag_peer.h"

#define ROOT "cluster-root-key-0123456789abcdef"
#define NOW 1800000000000LL
#define BODY "{\"points\":[1,2,3]}"

static ag_peer_auth_t *node(const char *id, const char *root, size_t max)
{
    ag_peer_auth_t *pa = NULL;
    assert_int_equal(ag_peer_auth_new(id, root, strlen(root), max, &pa), 0);
    return pa;
}

/* The call as the receiver parses "POST /collections/c/points?wait=true&timeout=5&x=a%20b". */
static const ag_peer_arg_t ARGS[] = {{"wait", "true"}, {"timeout", "5"}, {"x", "a b"}};
static ag_peer_req_t req_of(const char *key, const char *authz)
{
    return (ag_peer_req_t){"POST", "/collections/c/points", ARGS, 3, key, authz};
}
#define SENT_PATH "/collections/c/points?wait=true&timeout=5&x=a%20b"

static int sign(ag_peer_auth_t *pa, const char *client, int64_t now, char *out)
{
    return ag_peer_sign(pa, "POST", SENT_PATH, "k-secret", NULL, client, BODY, strlen(BODY), now,
                        out, AG_PEER_HEADER_MAX);
}

static int verify(ag_peer_auth_t *pa, const ag_peer_req_t *r, const char *h, int64_t now,
                  ag_peer_claim_t *c)
{
    ag_diag_t d = {{0}};
    return ag_peer_verify(pa, r, h, now, c, &d);
}

static void test_roundtrip_and_claim(void **state)
{
    (void)state;
    ag_peer_auth_t *a = node("node-a", ROOT, 0), *b = node("node-b", ROOT, 0);
    char h[AG_PEER_HEADER_MAX];
    assert_int_equal(sign(a, "10.1.2.3", NOW, h), 0);
    assert_true(strncmp(h, "v2;node-a;", 10) == 0);
    ag_peer_req_t r = req_of("k-secret", NULL);
    ag_peer_claim_t c;
    assert_int_equal(verify(b, &r, h, NOW + 5, &c), 0);
    assert_string_equal(c.node, "node-a");
    assert_string_equal(c.client, "10.1.2.3");
    assert_true(ag_peer_body_ok(&c, BODY, strlen(BODY)));
    assert_false(ag_peer_body_ok(&c, "{\"points\":[1,2,4]}", strlen(BODY)));
    assert_false(ag_peer_body_ok(&c, BODY, strlen(BODY) - 1));
    assert_false(ag_peer_body_ok(&c, NULL, 0));
    /* The same header again: a replay. */
    ag_diag_t d = {{0}};
    assert_int_equal(ag_peer_verify(b, &r, h, NOW + 6, &c, &d), AG_EUNAUTH);
    assert_non_null(strstr(d.msg, "replayed"));
    /* An IPv6 client. */
    assert_int_equal(sign(a, "::1", NOW, h), 0);
    assert_int_equal(verify(b, &r, h, NOW, &c), 0);
    assert_string_equal(c.client, "::1");
    /* Not an address: not signed. */
    assert_int_equal(sign(a, "example.com", NOW, h), AG_EINVAL);
    assert_int_equal(sign(a, "", NOW, h), AG_EINVAL);
    ag_peer_auth_free(a);
    ag_peer_auth_free(b);
}

/* Each thing the MAC covers, changed by itself, makes the signature fail (and leaves the nonce
 * unused: the right call still goes through afterwards). */
static void test_mac_covers(void **state)
{
    (void)state;
    ag_peer_auth_t *a = node("node-a", ROOT, 0), *b = node("node-b", ROOT, 0);
    ag_peer_auth_t *other = node("node-b", "another-root-key-0123456789abcdef", 0);
    char h[AG_PEER_HEADER_MAX];
    assert_int_equal(sign(a, "10.1.2.3", NOW, h), 0);
    ag_peer_claim_t c;
    ag_diag_t d = {{0}};
    ag_peer_req_t r = req_of("k-secret", NULL);
    /* another cluster's secret */
    assert_int_equal(ag_peer_verify(other, &r, h, NOW, &c, &d), AG_EUNAUTH);
    assert_non_null(strstr(d.msg, "not signed"));
    /* method, path, query (a value, an argument dropped, one added), credential */
    ag_peer_req_t m = r;
    m.method = "PUT";
    assert_int_equal(verify(b, &m, h, NOW, &c), AG_EUNAUTH);
    m = r;
    m.path = "/collections/d/points";
    assert_int_equal(verify(b, &m, h, NOW, &c), AG_EUNAUTH);
    const ag_peer_arg_t changed[] = {{"wait", "false"}, {"timeout", "5"}, {"x", "a b"}};
    m = r;
    m.args = changed;
    assert_int_equal(verify(b, &m, h, NOW, &c), AG_EUNAUTH);
    m = r;
    m.nargs = 2;
    assert_int_equal(verify(b, &m, h, NOW, &c), AG_EUNAUTH);
    const ag_peer_arg_t more[] = {{"wait", "true"}, {"timeout", "5"}, {"x", "a b"}, {"y", ""}};
    m = r;
    m.args = more;
    m.nargs = 4;
    assert_int_equal(verify(b, &m, h, NOW, &c), AG_EUNAUTH);
    m = req_of("k-other", NULL);
    assert_int_equal(verify(b, &m, h, NOW, &c), AG_EUNAUTH);
    m = req_of("k-secret", "Bearer x");
    assert_int_equal(verify(b, &m, h, NOW, &c), AG_EUNAUTH);
    m = req_of(NULL, "k-secret");
    assert_int_equal(verify(b, &m, h, NOW, &c), AG_EUNAUTH);
    /* the header's own fields: node, time, nonce, client, body hash */
    char t[AG_PEER_HEADER_MAX];
    const char *swaps[][2] = {
        {"node-a", "node-c"}, {";10.1.2.3;", ";10.1.2.4;"}, {";10.1.2.3;", ";::1;"}};
    for (size_t i = 0; i < sizeof(swaps) / sizeof(swaps[0]); i++) {
        const char *at = strstr(h, swaps[i][0]);
        assert_non_null(at);
        snprintf(t, sizeof(t), "%.*s%s%s", (int)(at - h), h, swaps[i][1], at + strlen(swaps[i][0]));
        assert_int_equal(verify(b, &r, t, NOW, &c), AG_EUNAUTH);
    }
    /* the last character of the time, the nonce, the body hash, the MAC changed */
    for (int field = 2; field < 7; field++) {
        if (field == 4)
            continue; /* the client: above */
        const char *p = h;
        for (int k = 0; k < field; k++)
            p = strchr(p, ';') + 1;
        const char *end = strchr(p, ';');
        size_t at = (size_t)((end ? end : p + strlen(p)) - h) - 1;
        snprintf(t, sizeof(t), "%s", h);
        t[at] = t[at] == '1' ? '2' : '1';
        assert_int_equal(verify(b, &r, t, NOW, &c), AG_EUNAUTH);
    }
    /* after all that, the genuine call is accepted once */
    assert_int_equal(verify(b, &r, h, NOW, &c), 0);
    assert_int_equal(verify(b, &r, h, NOW, &c), AG_EUNAUTH);
    ag_peer_auth_free(a);
    ag_peer_auth_free(b);
    ag_peer_auth_free(other);
}

static void test_time_window(void **state)
{
    (void)state;
    ag_peer_auth_t *a = node("node-a", ROOT, 0), *b = node("node-b", ROOT, 0);
    char h[AG_PEER_HEADER_MAX];
    ag_peer_req_t r = req_of("k-secret", NULL);
    ag_peer_claim_t c;
    ag_diag_t d = {{0}};
    assert_int_equal(sign(a, "10.1.2.3", NOW, h), 0);
    assert_int_equal(ag_peer_verify(b, &r, h, NOW + AG_PEER_MAX_SKEW_MS + 1, &c, &d), AG_EUNAUTH);
    assert_non_null(strstr(d.msg, "off this node's clock"));
    assert_int_equal(verify(b, &r, h, NOW - AG_PEER_MAX_SKEW_MS - 1, &c), AG_EUNAUTH);
    assert_int_equal(verify(b, &r, h, NOW + AG_PEER_MAX_SKEW_MS, &c), 0);
    ag_peer_auth_free(a);
    ag_peer_auth_free(b);
}

static void test_malformed(void **state)
{
    (void)state;
    ag_peer_auth_t *a = node("node-a", ROOT, 0), *b = node("node-b", ROOT, 0);
    char h[AG_PEER_HEADER_MAX];
    assert_int_equal(sign(a, "10.1.2.3", NOW, h), 0);
    ag_peer_req_t r = req_of("k-secret", NULL);
    ag_peer_claim_t c;
    ag_diag_t d = {{0}};
    /* the old format (v1: node.time.mac) is refused, saying so */
    char v1[200];
    snprintf(v1, sizeof(v1), "node-a.%lld.%064d", NOW, 0);
    assert_int_equal(ag_peer_verify(b, &r, v1, NOW, &c, &d), AG_EUNAUTH);
    assert_non_null(strstr(d.msg, "v2"));
    char big[AG_PEER_HEADER_MAX + 10];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "v2;", 3);
    const char *bad[] = {
        "",
        "v2",
        "v2;",
        "v2;;;;;;",
        "v2;node-a;1;2;3;4;5",
        "v3;a;b;c;d;e;f",
        big,
        "v2;node a;1800000000000;00000000000000000000000000000000;1.2.3.4;" /* short */,
        "v2;node-a;-5;00000000000000000000000000000000;1.2.3.4;x;y",
        "v2;node-a;1800000000000;0000000000000000000000000000000g;1.2.3.4;"
        "0000000000000000000000000000000000000000000000000000000000000000;"
        "0000000000000000000000000000000000000000000000000000000000000000",
        "v2;node-a;1800000000000;00000000000000000000000000000000;1.2.3.999;"
        "0000000000000000000000000000000000000000000000000000000000000000;"
        "0000000000000000000000000000000000000000000000000000000000000000",
        "v2;node-a;1800000000000;00000000000000000000000000000000;1.2.3.4;"
        "0000000000000000000000000000000000000000000000000000000000000000;"
        "0000000000000000000000000000000000000000000000000000000000000000;",
        "v2;node-a;1800000000000;00000000000000000000000000000000;1.2.3.4;"
        "0000000000000000000000000000000000000000000000000000000000000000;"
        "0000000000000000000000000000000000000000000000000000000000000000",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(verify(b, &r, bad[i], NOW, &c), AG_EUNAUTH);
    assert_int_equal(verify(b, &r, NULL, NOW, &c), AG_EUNAUTH);
    /* every prefix of a genuine header is refused too */
    char t[AG_PEER_HEADER_MAX];
    for (size_t n = 0; n < strlen(h); n++) {
        snprintf(t, sizeof(t), "%.*s", (int)n, h);
        assert_int_equal(verify(b, &r, t, NOW, &c), AG_EUNAUTH);
    }
    /* nothing of that used the nonce */
    assert_int_equal(verify(b, &r, h, NOW, &c), 0);
    /* a node id that cannot be one */
    ag_peer_auth_t *x = NULL;
    assert_int_equal(ag_peer_auth_new("a;b", ROOT, strlen(ROOT), 0, &x), AG_EINVAL);
    assert_int_equal(ag_peer_auth_new("", ROOT, strlen(ROOT), 0, &x), AG_EINVAL);
    assert_null(x);
    ag_peer_auth_free(a);
    ag_peer_auth_free(b);
}

/* Bounded: past max live nonces a new call is refused (fails closed); once they expire, there
 * is room again, and the table shrinks back. */
static void test_replay_cache_bound(void **state)
{
    (void)state;
    ag_peer_auth_t *b = node("node-b", ROOT, 64); /* 4 per stripe */
    unsigned char n[16] = {0};
    int accepted = 0, full = 0;
    for (int i = 0; i < 200; i++) {
        n[0] = (unsigned char)i;
        n[8] = (unsigned char)(i * 7);
        n[9] = (unsigned char)i;
        int rc = ag_peer_replay_add(b, n, NOW + 1000, NOW);
        if (rc == 0)
            accepted++;
        else if (rc == AG_EUNAVAILABLE)
            full++;
        else
            fail_msg("unexpected %d", rc);
    }
    assert_int_equal(accepted, 64);
    assert_int_equal(full, 200 - 64);
    assert_int_equal(ag_peer_replay_count(b), 64);
    /* the held ones are still replays */
    n[0] = 0;
    n[8] = 0;
    n[9] = 0;
    assert_int_equal(ag_peer_replay_add(b, n, NOW + 1000, NOW + 10), AG_ECONFLICT);
    /* after they expire: room again */
    n[0] = 201;
    n[8] = 1;
    assert_int_equal(ag_peer_replay_add(b, n, NOW + 5000, NOW + 1001), 0);
    for (int i = 0; i < 200; i++) {
        n[0] = (unsigned char)i;
        n[8] = (unsigned char)(i * 7);
        n[9] = (unsigned char)(i + 1);
        (void)ag_peer_replay_add(b, n, NOW + 5000, NOW + 1001);
    }
    assert_true(ag_peer_replay_count(b) <= 64);
    ag_peer_auth_free(b);

    /* A big cache under a steady stream: the count stays near rate x window. */
    b = node("node-b", ROOT, 0);
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 200000; i++) {
        for (int k = 0; k < 16; k += 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            memcpy(n + k, &x, 8);
        }
        int64_t now = NOW + i; /* 1000 calls a second... */
        assert_int_equal(ag_peer_replay_add(b, n, now + AG_PEER_MAX_SKEW_MS, now), 0);
    }
    /* ...over 200 s: at most about a 60 s window (plus what a stripe has not purged yet) */
    size_t held = ag_peer_replay_count(b);
    assert_true(held >= 60000 && held <= 16 * 8192);
    ag_peer_auth_free(b);
}

/* ---- threads ---------------------------------------------------------------------------- */

enum { THREADS = 4, CALLS = 3000 };
static ag_peer_auth_t *t_sender[THREADS], *t_recv;
static char shared_header[AG_PEER_HEADER_MAX];
static _Atomic int t_ok, t_bad, t_replay_ok;
static pthread_barrier_t barrier;

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    ag_peer_req_t r = req_of("k-secret", NULL);
    pthread_barrier_wait(&barrier);
    /* everyone replays the one shared header at the same moment: one wins */
    ag_peer_claim_t c;
    if (verify(t_recv, &r, shared_header, NOW, &c) == 0)
        atomic_fetch_add(&t_replay_ok, 1);
    for (int i = 0; i < CALLS; i++) {
        char h[AG_PEER_HEADER_MAX];
        char client[32];
        snprintf(client, sizeof(client), "10.0.%d.%d", id, i % 250);
        if (sign(t_sender[id], client, NOW + i, h) != 0 ||
            verify(t_recv, &r, h, NOW + i, &c) != 0 || strcmp(c.client, client) != 0 ||
            !ag_peer_body_ok(&c, BODY, strlen(BODY))) {
            atomic_fetch_add(&t_bad, 1);
            continue;
        }
        /* and its replay, right away */
        if (verify(t_recv, &r, h, NOW + i, &c) != AG_EUNAUTH)
            atomic_fetch_add(&t_bad, 1);
        else
            atomic_fetch_add(&t_ok, 1);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    t_recv = node("node-r", ROOT, 0);
    for (int i = 0; i < THREADS; i++) {
        char id[16];
        snprintf(id, sizeof(id), "node-%d", i);
        t_sender[i] = node(id, ROOT, 0);
    }
    assert_int_equal(sign(t_sender[0], "127.0.0.1", NOW, shared_header), 0);
    pthread_barrier_init(&barrier, NULL, THREADS);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    assert_int_equal(atomic_load(&t_replay_ok), 1);
    assert_int_equal(atomic_load(&t_bad), 0);
    assert_int_equal(atomic_load(&t_ok), THREADS * CALLS);
    assert_int_equal(ag_peer_replay_count(t_recv), THREADS * CALLS + 1);
    for (int i = 0; i < THREADS; i++)
        ag_peer_auth_free(t_sender[i]);
    ag_peer_auth_free(t_recv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_claim), cmocka_unit_test(test_mac_covers),
        cmocka_unit_test(test_time_window),         cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_replay_cache_bound),  cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
