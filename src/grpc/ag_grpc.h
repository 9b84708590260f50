/*
 * ag_grpc.h — the gRPC transport: HTTP/2 (nghttp2, over TCP or GnuTLS) server sessions on one
 * network thread, unary calls run on a small pool of gRPC workers. This layer knows gRPC framing,
 * status codes and metadata; it knows nothing about messages, collections or permissions — the api
 * layer's lookup() says whether a method exists (an unknown one is answered UNIMPLEMENTED as soon
 * as its headers are in) and handle() runs a call (docs/API.md "gRPC").
 *
 * Limits: a request message over max_msg bytes (after decompression), or one that would take
 * a connection's buffered request bytes over 2 x max_msg, is RESOURCE_EXHAUSTED; a message whose
 * length prefix disagrees with the bytes sent is INTERNAL; gzip request messages are inflated
 * (grpc-encoding: gzip), other encodings are UNIMPLEMENTED. Response messages of 1 KiB or more
 * are gzipped when the client lists gzip in grpc-accept-encoding.
 *
 * Cancellation: a stream reset (RST_STREAM) or a closed connection drops the call's response;
 * a call still waiting for a worker is not run at all.
 */
#ifndef AG_GRPC_H
#define AG_GRPC_H

#include "ag_base.h"

/* gRPC status codes (the subset the server sends). */
enum {
    AG_GRPC_OK = 0,
    AG_GRPC_CANCELLED = 1,
    AG_GRPC_UNKNOWN = 2,
    AG_GRPC_INVALID_ARGUMENT = 3,
    AG_GRPC_DEADLINE_EXCEEDED = 4,
    AG_GRPC_NOT_FOUND = 5,
    AG_GRPC_ALREADY_EXISTS = 6,
    AG_GRPC_PERMISSION_DENIED = 7,
    AG_GRPC_RESOURCE_EXHAUSTED = 8,
    AG_GRPC_FAILED_PRECONDITION = 9,
    AG_GRPC_UNIMPLEMENTED = 12,
    AG_GRPC_INTERNAL = 13,
    AG_GRPC_UNAVAILABLE = 14,
    AG_GRPC_UNAUTHENTICATED = 16,
};

typedef struct ag_grpc_call {
    /* In (borrowed for the call's life). */
    const char *path;          /* "/qdrant.Points/Search" */
    const void *method;        /* what lookup() returned for path */
    const char *api_key;       /* "api-key" metadata or NULL */
    const char *authorization; /* "authorization" metadata or NULL */
    const char *remote_addr;   /* the client (behind trusted proxies: from x-forwarded-for) */
    const char *peer_addr;     /* the TCP peer */
    const uint8_t *msg;        /* the request message (decompressed), msg_len bytes */
    size_t msg_len;
    uint64_t timeout_ms;      /* grpc-timeout, 0 = none */
    bool client_cert_refused; /* mutual TLS is on and the connection had no valid certificate */
    /* Out, set by handle(). */
    int status;        /* AG_GRPC_* */
    char message[512]; /* grpc-message (percent-encoded by the transport) */
    uint8_t *resp;     /* the response message (malloc'd; the transport frees it) */
    size_t resp_len;
    char retry_after[16]; /* sent as retry-after metadata when set */
} ag_grpc_call_t;

/* NULL = no such method. Called on the network thread: must be cheap and never block. */
typedef const void *(*ag_grpc_lookup_fn)(void *ud, const char *path);
/* Runs one call on a gRPC worker. */
typedef void (*ag_grpc_handle_fn)(void *ud, ag_grpc_call_t *call);

typedef struct ag_grpc_config {
    const char *host;
    uint16_t port;
    unsigned threads;                /* workers running handle(); 0 = 4 */
    size_t max_msg;                  /* request message limit in bytes; 0 = 32 MiB */
    unsigned max_connections;        /* 0 = 1024 */
    unsigned max_connections_per_ip; /* 0 = no limit; past it a connection is closed at once */
    /* Calls waiting for a worker; past it a call is answered RESOURCE_EXHAUSTED (retry-after 1)
     * without being queued. 0 = 64 per worker. */
    unsigned max_queue;
    /* service.trusted_proxies (NULL = none): from these peers the x-forwarded-for metadata names
     * the client, as for REST (base/ag_net.h). */
    const char *trusted_proxies;
    /* A connection with no open stream and no call running is closed (GOAWAY) after idle_s
     * seconds without a byte from the client; a request whose message has not fully arrived
     * within body_s of its headers is answered DEADLINE_EXCEEDED and its stream reset (slow
     * clients). 0 = 30 and 60. */
    unsigned idle_s;
    unsigned body_s;
    /* TLS, as for REST: PEM contents (not paths); NULL cert = plain HTTP/2 (h2c). ALPN h2. With
     * verify_client, a connection without a client certificate chaining to tls_ca_pem is still
     * served, but each of its calls carries client_cert_refused (the api layer answers
     * UNAUTHENTICATED, audited and throttled like REST's 401). */
    const char *tls_cert_pem;
    const char *tls_key_pem;
    const char *tls_ca_pem;
    bool verify_client;
} ag_grpc_config_t;

typedef struct ag_grpc ag_grpc_t;

/* Binds and starts the network thread and the workers. *out owned by the caller
 * (ag_grpc_stop frees). */
int ag_grpc_start(const ag_grpc_config_t *cfg, ag_grpc_lookup_fn lookup, ag_grpc_handle_fn handle,
                  void *ud, ag_grpc_t **out, ag_diag_t *diag);
/* Sends GOAWAY to every connection, waits up to grace_s for running calls, frees the server. */
void ag_grpc_stop(ag_grpc_t *srv, double grace_s);
uint16_t ag_grpc_port(const ag_grpc_t *srv);

/* For fuzz/fuzz_grpc.c only: one server connection (a socket pair, no listener, no threads) fed
 * the client's bytes in data (the HTTP/2 preface first) through the network thread's callbacks;
 * every call that completes is run inline with handle() and answered, the answers discarded, and
 * everything freed. 0, or AG_ENOMEM / AG_EINTERNAL when the connection could not be set up. */
int ag_grpc_feed(const ag_grpc_config_t *cfg, ag_grpc_lookup_fn lookup, ag_grpc_handle_fn handle,
                 void *ud, const uint8_t *data, size_t len);

#endif
