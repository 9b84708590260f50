/*
 * ag_http_client.h — a minimal blocking HTTP/1.1 client for the command-line tools (`aegis users`,
 * `aegis import`, ...): one request per connection (Connection: close), plain or TLS (GnuTLS,
 * verifying the server against the system's trust store or a given CA file and the host name).
 * Bounded: a reply larger than AG_HTTP_CLIENT_MAX_REPLY is refused.
 */
#ifndef AG_HTTP_CLIENT_H
#define AG_HTTP_CLIENT_H

#include "ag_base.h"

#define AG_HTTP_CLIENT_MAX_REPLY (64u << 20)

typedef struct ag_http_target {
    bool tls;
    char host[256];
    uint16_t port;
    const char *ca_file; /* PEM bundle to trust instead of the system's (borrowed); NULL = system */
    unsigned timeout_s;  /* per read/write; 0 = 60 */
} ag_http_target_t;

/* Parses "http://host[:port]" or "https://host[:port]" (a trailing "/" is allowed, no path).
 * AG_EINVAL naming what is wrong. */
int ag_http_target_parse(const char *url, ag_http_target_t *out, ag_diag_t *diag);

typedef struct ag_http_reply {
    int status;
    char *body; /* NUL-terminated (owned by the caller: free) */
    size_t len;
} ag_http_reply_t;

/* Sends method path (with its query) with an optional JSON body and api-key header (NULL = none),
 * and reads the whole reply into *out. 0, or AG_EIO (cannot connect, TLS failure, timeout,
 * malformed reply) with the reason in diag. */
int ag_http_call(const ag_http_target_t *t, const char *method, const char *path, const char *key,
                 const char *body, size_t len, ag_http_reply_t *out, ag_diag_t *diag);

#endif
