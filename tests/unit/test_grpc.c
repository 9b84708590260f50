/* Unit tests for the gRPC transport's queue and cancellation (src/grpc/ag_grpc.c), driven through
 * ag_grpc_feed: client bytes built here frame by frame (HTTP/2 SETTINGS, HEADERS with HPACK
 * literals, DATA with a gRPC message, RST_STREAM) arrive in one read, so every call they complete
 * is queued before any runs. A counting handler tells which calls ran. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "grpc/ag_grpc.h"

typedef struct {
    uint8_t b[65536];
    size_t n;
} buf_t;

static void put(buf_t *o, const void *p, size_t n)
{
    assert_true(o->n + n <= sizeof(o->b));
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void frame(buf_t *o, uint8_t type, uint8_t flags, uint32_t stream, const uint8_t *p,
                  size_t n)
{
    uint8_t h[9] = {(uint8_t)(n >> 16),
                    (uint8_t)(n >> 8),
                    (uint8_t)n,
                    type,
                    flags,
                    (uint8_t)(stream >> 24),
                    (uint8_t)(stream >> 16),
                    (uint8_t)(stream >> 8),
                    (uint8_t)stream};
    put(o, h, 9);
    if (n)
        put(o, p, n);
}

/* An HPACK literal header field without indexing, new name, no Huffman (short strings only). */
static void literal(buf_t *o, const char *k, const char *v)
{
    uint8_t z = 0, kl = (uint8_t)strlen(k), vl = (uint8_t)strlen(v);
    put(o, &z, 1);
    put(o, &kl, 1);
    put(o, k, kl);
    put(o, &vl, 1);
    put(o, v, vl);
}

/* A unary call on stream id: HEADERS then DATA holding a 3-byte message. */
static void unary(buf_t *o, uint32_t id)
{
    buf_t h = {.n = 0};
    literal(&h, ":method", "POST");
    literal(&h, ":scheme", "http");
    literal(&h, ":path", "/t.S/M");
    literal(&h, ":authority", "x");
    literal(&h, "content-type", "application/grpc");
    frame(o, 1 /* HEADERS */, 4 /* END_HEADERS */, id, h.b, h.n);
    static const uint8_t msg[] = {0, 0, 0, 0, 3, 0x0a, 0x01, 'c'};
    frame(o, 0 /* DATA */, 1 /* END_STREAM */, id, msg, sizeof(msg));
}

static void start(buf_t *o)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    o->n = 0;
    put(o, preface, sizeof(preface) - 1);
    frame(o, 4 /* SETTINGS */, 0, 0, NULL, 0);
}

static int ran;

static const void *lookup(void *ud, const char *path)
{
    (void)ud;
    return strcmp(path, "/t.S/M") == 0 ? path : NULL;
}

static void handle(void *ud, ag_grpc_call_t *call)
{
    (void)ud;
    ran++;
    assert_int_equal(call->msg_len, 3);
    call->status = AG_GRPC_OK;
}

static void test_queue_bound(void **state)
{
    (void)state;
    static buf_t in;
    start(&in);
    for (uint32_t i = 0; i < 12; i++)
        unary(&in, 1 + 2 * i);
    ag_grpc_config_t cfg = {.max_queue = 4};
    ran = 0;
    /* All 12 calls complete in one read (under 4 KiB): 4 are queued, 8 refused at once. */
    assert_true(in.n < 4096);
    assert_int_equal(ag_grpc_feed(&cfg, lookup, handle, NULL, in.b, in.n), 0);
    assert_int_equal(ran, 4);
    /* Read after read, the queue drains in between: all run. */
    cfg.max_queue = 64;
    ran = 0;
    assert_int_equal(ag_grpc_feed(&cfg, lookup, handle, NULL, in.b, in.n), 0);
    assert_int_equal(ran, 12);
}

static void test_reset_cancels_queued_call(void **state)
{
    (void)state;
    static buf_t in;
    start(&in);
    unary(&in, 1);
    unary(&in, 3);
    static const uint8_t cancel[] = {0, 0, 0, 8}; /* CANCEL */
    frame(&in, 3 /* RST_STREAM */, 0, 1, cancel, sizeof(cancel));
    ag_grpc_config_t cfg = {.max_queue = 8};
    ran = 0;
    assert_int_equal(ag_grpc_feed(&cfg, lookup, handle, NULL, in.b, in.n), 0);
    assert_int_equal(ran, 1); /* stream 1 was reset while it waited: never run */
}

static void test_unknown_method_never_runs(void **state)
{
    (void)state;
    static buf_t in;
    start(&in);
    buf_t h = {.n = 0};
    literal(&h, ":method", "POST");
    literal(&h, ":scheme", "http");
    literal(&h, ":path", "/t.S/Nope");
    literal(&h, ":authority", "x");
    literal(&h, "content-type", "application/grpc");
    frame(&in, 1, 4, 1, h.b, h.n);
    static const uint8_t msg[] = {0, 0, 0, 0, 0};
    frame(&in, 0, 1, 1, msg, sizeof(msg));
    ag_grpc_config_t cfg = {0};
    ran = 0;
    assert_int_equal(ag_grpc_feed(&cfg, lookup, handle, NULL, in.b, in.n), 0);
    assert_int_equal(ran, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_bound),
        cmocka_unit_test(test_reset_cancels_queued_call),
        cmocka_unit_test(test_unknown_method_never_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
