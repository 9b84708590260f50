/*
 * ag_http.h — the libmicrohttpd adapter: one ag_request_t per HTTP request, handed to two
 * callbacks supplied by the api layer:
 *   begin(): called once the headers are in, before any byte of the body is read — routing,
 *            authentication and authorization happen here, so a refused request never has its
 *            body parsed or stored;
 *   handle(): called once the whole body has been read (only if begin() accepted).
 * Responses are queued only after the body has been read, which keeps keep-alive working.
 * This layer knows nothing about collections or permissions.
 *
 * Threads: libmicrohttpd's own threads (a few) do the network work and begin(); handle() runs on
 * a separate pool of request workers while the connection is suspended, so a probe such as
 * /healthz (marked inline_ok by begin) is answered at once even when every worker is busy with
 * slow searches. Requests refused in begin() are answered inline too.
 */
#ifndef AG_HTTP_H
#define AG_HTTP_H

#include "ag_base.h"

#include <jansson.h>

typedef enum {
    AG_HTTP_GET = 1,
    AG_HTTP_POST = 2,
    AG_HTTP_PUT = 4,
    AG_HTTP_PATCH = 8,
    AG_HTTP_DELETE = 16,
    AG_HTTP_HEAD = 32,
    AG_HTTP_OTHER = 64
} ag_http_method_t;

/* The method's name ("GET", ...; "HEAD"; "OTHER" for anything else). Static. */
const char *ag_http_method_str(ag_http_method_t m);

#define AG_HTTP_MAX_SEGMENTS 16
#define AG_HTTP_MAX_QUERY 16
#define AG_HTTP_REQUEST_ID_MAX 64
#define AG_HTTP_ORIGIN_MAX 255
#define AG_HTTP_MAX_ORIGINS 32

typedef struct ag_query_arg {
    char *key; /* percent-decoded, owned by the request */
    char *val; /* percent-decoded, owned by the request; "" when absent */
} ag_query_arg_t;

typedef struct ag_request {
    int method; /* ag_http_method_t */
    char method_name[16];
    char *path;                           /* raw path as received (owned) */
    char *seg[AG_HTTP_MAX_SEGMENTS];      /* percent-decoded segments (owned) */
    size_t seg_len[AG_HTTP_MAX_SEGMENTS]; /* decoded length (a NUL inside shows as len != strlen) */
    int nseg;
    ag_query_arg_t query[AG_HTTP_MAX_QUERY];
    int nquery;
    char *api_key;       /* "api-key" header (owned, wiped on free) */
    char *authorization; /* "Authorization" header (owned, wiped on free) */
    char *content_type;
    /* "x-aegis-shard-local": a node-to-node call's marker and proof (docs/CLUSTER.md
     * "Node-to-node calls"); checked by the api layer (owned). */
    char *shard_local;
    char remote_addr[64]; /* the client: the peer, or from X-Forwarded-For behind a trusted proxy */
    char peer_addr[64];   /* the address of the TCP peer itself */
    /* The caller's X-Request-Id when it is sane (1..64 of [A-Za-z0-9._:-]), else one made here;
     * sent back as x-request-id and written to the access log and the audit record. */
    char request_id[AG_HTTP_REQUEST_ID_MAX + 1];
    char *body; /* accumulated body, NUL-terminated (owned) */
    size_t body_len;
    size_t body_cap;
    uint64_t content_length; /* declared, or UINT64_MAX when not given */
    double t_start;
    bool client_cert_refused; /* mutual TLS is on and no valid client certificate came: the api
                                 layer refuses the request as a failed authentication */
    double t_ready;           /* when the whole body was in (request deadlines count from here) */

    /* Filled by the api layer. */
    void *app;                   /* per-request state owned by the api layer */
    void (*app_free)(void *app); /* releases app when the request ends */
    char principal_label[96];    /* for the access log: who the caller was (never a secret) */
    unsigned metrics_slot;       /* the route's slot in base/ag_metrics.h; AG_METRICS_NO_ROUTE */

    /* Response, set by begin() (to refuse early) or handle(). */
    int status;
    char *resp_body; /* owned */
    size_t resp_len;
    const char *resp_type;
    char retry_after[16];
    bool responded;
    bool close_after; /* send Connection: close (the client overran a limit) */
    void *conn;       /* struct MHD_Connection *, for TLS introspection */

    /* Uploads (ag_request_spool): the body goes to a temporary file instead of memory. */
    int spool_fd;       /* -1 = the body is read into memory as usual */
    char *spool_path;   /* owned; the file is removed when the request ends */
    uint64_t spool_max; /* bytes; past it 413 and the file is dropped */
    uint64_t spool_len; /* bytes written so far */
    /* Set by begin() with a refusal: sent at once, without reading the body, and the connection
     * closed (uploads: a refused upload never has its body read). */
    bool answer_now;
    /* A response sent from a file (ag_request_respond_file): owned, closed by the adapter. */
    int resp_fd;
    uint64_t resp_fd_len;

    /* Set by begin(): handle() is cheap and runs on the network thread (health probes). */
    bool inline_ok;
    /* Set by the adapter: the config's cheap() judged this request cheap once its body was in,
     * and handle() runs on the network thread (docs/ARCHITECTURE.md "Inline answers"). */
    bool inline_cheap;
    /* CORS: the Access-Control-Allow-Origin value to send ("" = none), and whether the request
     * is a preflight answered by the adapter. */
    char cors_origin[AG_HTTP_ORIGIN_MAX + 1];
    bool preflight;
    bool cors_vary; /* the answer depends on Origin (an allowlist is set): Vary: Origin */
    /* A Content-Security-Policy for the response (a static string), or NULL: set for pages that
     * a browser renders (the dashboard), with frame and referrer protection alongside. */
    const char *csp;
    /* Adapter state: 0 reading, 1 handed to a request worker, 2 answered by the worker. */
    int phase;
    struct ag_request *next_job; /* the request workers' queue */
} ag_request_t;

/* Returns the decoded value of query argument key, or NULL. Borrowed for the request's life. */
const char *ag_request_query(const ag_request_t *req, const char *key);

/* Sets the response body. Takes ownership of body (malloc'd). */
void ag_request_respond(ag_request_t *req, int status, const char *content_type, char *body,
                        size_t len);
/* Copies text as the response body. */
void ag_request_respond_text(ag_request_t *req, int status, const char *content_type,
                             const char *text);

/* Sends the body of the response from fd[0, len) (takes ownership of fd, which the adapter
 * closes); resp_body stays empty. */
void ag_request_respond_file(ag_request_t *req, int status, const char *content_type, int fd,
                             uint64_t len);
/* From begin(): the body of this request goes to a new temporary file in dir (created 0600,
 * removed when the request ends) rather than into memory, up to max bytes instead of the
 * server's max_body; the handler reads it through req->spool_fd / spool_len. 0, AG_EIO. */
int ag_request_spool(ag_request_t *req, const char *dir, uint64_t max);

typedef void (*ag_http_begin_fn)(void *ud, ag_request_t *req);
typedef void (*ag_http_handle_fn)(void *ud, ag_request_t *req);
/* Called on the network thread once the whole body of an accepted request is in (not for
 * probes, which begin() marks inline_ok): true = handle() is known to be cheap and may run right
 * there instead of being handed to a request worker. Must itself be cheap, and answer false when
 * unsure (the worker is always correct, only slower). */
typedef bool (*ag_http_cheap_fn)(void *ud, ag_request_t *req);

typedef struct ag_http_config {
    const char *host;
    uint16_t port;
    unsigned threads;      /* request workers running handle() */
    unsigned io_threads;   /* libmicrohttpd threads (network, begin, inline requests); 0 = 2 */
    size_t max_body;       /* bytes; bigger bodies get 413 */
    unsigned conn_timeout; /* seconds of inactivity before a connection is dropped */
    /* Connections at once; past it a request is answered 503 and its connection closed (a few
     * more are accepted so that the answer can be given). 0 = 1024. */
    unsigned max_connections;
    /* Whole-phase deadlines, however steadily a client trickles (slowloris): the request line and
     * headers must arrive within header_timeout seconds of the connection opening (or of the
     * previous response on a kept-alive connection, plus conn_timeout), a body within
     * body_timeout of its headers, and a response must be taken within body_timeout. A connection
     * past its deadline is shut down. 0 = 30 and 60. */
    unsigned header_timeout;
    unsigned body_timeout;
    /* TLS: PEM contents (not paths); NULL cert = plain HTTP. */
    const char *tls_cert_pem;
    const char *tls_key_pem;
    const char *tls_ca_pem; /* with verify_client: client certificates must chain to it */
    bool verify_client;
    bool access_log;
    /* Comma-separated addresses or CIDR blocks of reverse proxies whose X-Forwarded-For is
     * believed (service.trusted_proxies); NULL = none. */
    const char *trusted_proxies;
    unsigned max_connections_per_ip; /* 0 = no limit */
    /* CORS (docs/API.md "CORS"): with cors, browsers on other origins may call the API — any
     * origin ("Access-Control-Allow-Origin: *", never with credentials), or, when cors_origins is
     * set (comma-separated "scheme://host[:port]"), only those, each echoed back exactly. A
     * preflight OPTIONS is answered here without authentication; the request it announces is
     * authenticated as usual. */
    bool cors;
    const char *cors_origins;
    /* Inline answers (docs/ARCHITECTURE.md "Inline answers"): NULL = every request but the probes
     * is handed to a request worker. Even when cheap() says yes, a network thread that spent more
     * than inline_budget_ms of the last 100 ms answering inline hands the request off (0 = 50). */
    ag_http_cheap_fn cheap;
    unsigned inline_budget_ms;
} ag_http_config_t;

typedef struct ag_http ag_http_t;

/* Starts the daemon. On success *out is a new server owned by the caller (ag_http_stop frees). */
int ag_http_start(const ag_http_config_t *cfg, ag_http_begin_fn begin, ag_http_handle_fn handle,
                  void *ud, ag_http_t **out, ag_diag_t *diag);
/* Stops accepting, waits up to grace_s for in-flight requests to finish, then frees the server. */
void ag_http_stop(ag_http_t *srv, double grace_s);
/* What GET /metrics reports about the server's own state; any moment's values. */
typedef struct ag_http_stats {
    unsigned connections; /* open connections */
    unsigned workers;     /* request workers */
    unsigned busy;        /* of which running a request */
    unsigned queued;      /* requests waiting for a worker */
    uint64_t requests;    /* requests begun since start */
    /* Requests cheap() was asked about, by where they ran: answered on the network thread, or
     * handed to a request worker (cheap() said no, or the thread's inline budget was spent). */
    uint64_t answered_inline, answered_worker;
} ag_http_stats_t;
void ag_http_stats(ag_http_t *srv, ag_http_stats_t *out);
/* The port actually bound (useful with port 0). */
uint16_t ag_http_port(const ag_http_t *srv);

/* Percent-decodes src[0..len) into a new NUL-terminated string; *out_len gets the decoded length.
 * Returns NULL on a malformed escape or allocation failure. '+' is decoded as ' ' only when
 * plus_is_space is set (query strings). */
char *ag_http_decode(const char *src, size_t len, bool plus_is_space, size_t *out_len);

#endif
