#include "ag_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <malloc.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ag_clock.h"
#include "ag_file.h"
#include "ag_log.h"
#include "ag_metrics.h"
#include "ag_net.h"

/* Requests or responses bigger than this return their freed memory to the system once the big
 * requests stop for TRIM_QUIET_MS (the watchdog trims; not after each one, see request_free). */
#define TRIM_AFTER_BYTES (1u << 20)
#define TRIM_QUIET_MS 500

/* One open connection, for the deadline watchdog (see ag_http_config_t.header_timeout). */
typedef struct conn_track {
    struct conn_track *prev, *next;
    MHD_socket fd;
    _Atomic int64_t deadline_ms; /* ag_now_mono() in ms by which the current phase must end;
                                    0 = none (a handler is running) */
    bool cut;
    bool linger; /* answered before its body was read: drain before closing (see linger_add) */
} conn_track_t;

/* Lingering close (docs/ARCHITECTURE.md "Answering before the body"): how many sockets may be
 * drained at once, for how long, and how many bytes each may still send. */
#define LINGER_SLOTS 64
#define LINGER_MS 10000
#define LINGER_MAX_BYTES (64u << 20)

typedef struct {
    int fd; /* -1: free slot */
    int64_t until_ms;
    uint64_t drained;
} linger_t;

struct ag_http {
    struct MHD_Daemon *daemon;
    /* Open connections and the watchdog that shuts down the ones past their phase deadline. */
    pthread_mutex_t conns_lock;
    conn_track_t *conns;
    atomic_int nconns;
    pthread_t watchdog;
    bool watchdog_running;
    atomic_bool watchdog_stop;
    _Atomic int64_t trim_at_ms; /* now_ms() after which the watchdog runs malloc_trim; 0 none */
    ag_net_list_t proxies;      /* trusted proxies */
    ag_http_config_t cfg;
    ag_http_begin_fn begin;
    ag_http_handle_fn handle;
    void *ud;
    atomic_int active;
    atomic_uint_fast64_t next_id;
    uint32_t id_prefix; /* random, for the request ids made here */
    uint16_t port;
    /* Request workers: handle() runs here while MHD keeps the connection suspended. */
    pthread_mutex_t jobs_lock;
    pthread_cond_t jobs_cv;
    ag_request_t *jobs_head, *jobs_tail;
    bool jobs_stopping;
    pthread_t *workers; /* owned, nworkers entries */
    unsigned nworkers;
    char (*origins)[AG_HTTP_ORIGIN_MAX + 1]; /* service.cors_allowed_origins (owned) */
    size_t norigins;
    atomic_uint busy;                                      /* workers running a request */
    atomic_uint queued;                                    /* requests in the workers' queue */
    atomic_uint_fast64_t answered_inline, answered_worker; /* ag_http_stats_t */
    /* Sockets answered early and now drained by the watchdog (conns_lock). */
    linger_t linger[LINGER_SLOTS];
};

enum { PHASE_READING = 0, PHASE_RUNNING = 1, PHASE_ANSWERED = 2 };

const char *ag_http_method_str(ag_http_method_t m)
{
    switch (m) {
    case AG_HTTP_GET:
        return "GET";
    case AG_HTTP_POST:
        return "POST";
    case AG_HTTP_PUT:
        return "PUT";
    case AG_HTTP_PATCH:
        return "PATCH";
    case AG_HTTP_DELETE:
        return "DELETE";
    case AG_HTTP_HEAD:
        return "HEAD";
    case AG_HTTP_OTHER:
        break;
    }
    return "OTHER";
}

/* Returns a new string (caller frees) or NULL. */
char *ag_http_decode(const char *src, size_t len, bool plus_is_space, size_t *out_len)
{
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            if (i + 2 >= len) {
                free(out);
                return NULL;
            }
            int h = ag_hex_digit(src[i + 1]), l = ag_hex_digit(src[i + 2]);
            if (h < 0 || l < 0) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out[o++] = ' ';
        } else {
            out[o++] = c;
        }
    }
    out[o] = '\0';
    if (out_len)
        *out_len = o;
    return out;
}

const char *ag_request_query(const ag_request_t *req, const char *key)
{
    for (int i = 0; i < req->nquery; i++)
        if (strcmp(req->query[i].key, key) == 0)
            return req->query[i].val;
    return NULL;
}

void ag_request_respond(ag_request_t *req, int status, const char *content_type, char *body,
                        size_t len)
{
    free(req->resp_body);
    req->status = status;
    req->resp_type = content_type;
    req->resp_body = body;
    req->resp_len = len;
    req->responded = true;
}

void ag_request_respond_text(ag_request_t *req, int status, const char *content_type,
                             const char *text)
{
    size_t len = strlen(text);
    char *copy = malloc(len + 1);
    if (copy)
        memcpy(copy, text, len + 1);
    ag_request_respond(req, copy ? status : 500, content_type, copy, copy ? len : 0);
}

void ag_request_respond_file(ag_request_t *req, int status, const char *content_type, int fd,
                             uint64_t len)
{
    ag_request_respond(req, status, content_type, NULL, 0);
    if (req->resp_fd >= 0)
        close(req->resp_fd);
    req->resp_fd = fd;
    req->resp_fd_len = len;
}

int ag_request_spool(ag_request_t *req, const char *dir, uint64_t max)
{
    size_t n = strlen(dir) + sizeof("/.upload-XXXXXX");
    char *path = malloc(n);
    if (!path)
        return AG_ENOMEM;
    snprintf(path, n, "%s/.upload-XXXXXX", dir);
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        free(path);
        return AG_EIO;
    }
    req->spool_fd = fd;
    req->spool_path = path;
    req->spool_max = max;
    req->spool_len = 0;
    return 0;
}

static void spool_drop(ag_request_t *req)
{
    if (req->spool_fd >= 0)
        close(req->spool_fd);
    req->spool_fd = -1;
    if (req->spool_path) {
        unlink(req->spool_path);
        free(req->spool_path);
        req->spool_path = NULL;
    }
}

static int64_t now_ms(void);

static void request_free(struct ag_http *srv, ag_request_t *req)
{
    if (!req)
        return;
    spool_drop(req);
    if (req->resp_fd >= 0)
        close(req->resp_fd);
    if (req->app_free && req->app)
        req->app_free(req->app);
    free(req->path);
    for (int i = 0; i < req->nseg; i++)
        free(req->seg[i]);
    for (int i = 0; i < req->nquery; i++) {
        free(req->query[i].key);
        free(req->query[i].val);
    }
    if (req->api_key) {
        sodium_memzero(req->api_key, strlen(req->api_key));
        free(req->api_key);
    }
    if (req->authorization) {
        sodium_memzero(req->authorization, strlen(req->authorization));
        free(req->authorization);
    }
    free(req->content_type);
    free(req->shard_local);
    bool big = req->body_cap > TRIM_AFTER_BYTES || req->resp_len > TRIM_AFTER_BYTES;
    free(req->body);
    free(req->resp_body);
    free(req);
    /* glibc keeps freed heap memory (and raises its mmap threshold after freeing a big block),
     * so one large request would leave the resident size up for good; hand it back — but not
     * after every one: a trim unmaps every free page of every malloc arena (a TLB shootdown on
     * each core) and the next request faults them all in again, which made a steady stream of
     * 2.5 MB upserts spend a third of the server's CPU in the kernel (docs/BENCHMARKS.md
     * "Ingestion"). The watchdog trims once no big request has ended for TRIM_QUIET_MS. */
    if (big)
        atomic_store(&srv->trim_at_ms, now_ms() + TRIM_QUIET_MS);
}

static int parse_method(const char *m)
{
    static const struct {
        const char *name;
        int id;
    } methods[] = {{"GET", AG_HTTP_GET},     {"POST", AG_HTTP_POST},     {"PUT", AG_HTTP_PUT},
                   {"PATCH", AG_HTTP_PATCH}, {"DELETE", AG_HTTP_DELETE}, {"HEAD", AG_HTTP_HEAD}};
    for (size_t i = 0; i < AG_ARRAY_LEN(methods); i++)
        if (strcmp(m, methods[i].name) == 0)
            return methods[i].id;
    return AG_HTTP_OTHER;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Splits the raw path into decoded segments. Returns false on a malformed path. */
static bool split_path(ag_request_t *req, const char *url)
{
    if (url[0] != '/')
        return false;
    const char *p = url + 1;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0 && !end)
            break; /* trailing slash */
        if (req->nseg == AG_HTTP_MAX_SEGMENTS)
            return false;
        size_t dlen = 0;
        char *seg = ag_http_decode(p, len, false, &dlen);
        if (!seg)
            return false;
        req->seg[req->nseg] = seg;
        req->seg_len[req->nseg] = dlen;
        req->nseg++;
        if (!end)
            break;
        p = end + 1;
    }
    return true;
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    AG_UNUSED(kind);
    ag_request_t *req = cls;
    if (req->nquery == AG_HTTP_MAX_QUERY || !key)
        return MHD_YES;
    char *k = ag_http_decode(key, strlen(key), false, NULL);
    char *v = ag_http_decode(value ? value : "", value ? strlen(value) : 0, false, NULL);
    if (!k || !v) {
        free(k);
        free(v);
        return MHD_YES;
    }
    req->query[req->nquery].key = k;
    req->query[req->nquery].val = v;
    req->nquery++;
    return MHD_YES;
}

/* A caller's request id is kept when it is short and made of safe characters only (it goes into
 * a response header, the log and the audit record); anything else is replaced by one of ours:
 * a per-process random prefix and a counter, unique across restarts in practice. */
static void set_request_id(struct ag_http *srv, ag_request_t *req, const char *given)
{
    uint64_t seq = atomic_fetch_add(&srv->next_id, 1);
    size_t n = given ? strlen(given) : 0;
    bool sane = n > 0 && n <= AG_HTTP_REQUEST_ID_MAX;
    for (size_t i = 0; sane && i < n; i++) {
        char c = given[i];
        sane = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_' || c == '.' || c == ':';
    }
    if (sane) {
        memcpy(req->request_id, given, n + 1);
        return;
    }
    /* "%08x-%llx" of the prefix and the sequence number, without snprintf (every request). */
    static const char hex[] = "0123456789abcdef";
    char *o = req->request_id;
    for (int sh = 28; sh >= 0; sh -= 4)
        *o++ = hex[(srv->id_prefix >> sh) & 0xfu];
    *o++ = '-';
    int top = 60;
    while (top > 0 && ((seq >> top) & 0xfu) == 0)
        top -= 4;
    for (int sh = top; sh >= 0; sh -= 4)
        *o++ = hex[(seq >> sh) & 0xfu];
    *o = '\0';
}

static void error_json(ag_request_t *req, int status, const char *msg)
{
    /* Refused before routing: explained like the api layer's refusals (docs/API.md "Logs"). */
    ag_log(status >= 500 ? AG_LOG_ERROR : AG_LOG_DEBUG, "rid=%s %s %.200s -> %d: %s",
           req->request_id, req->method_name, req->path ? req->path : "-", status, msg);
    json_t *o = json_pack("{s:{s:s},s:f}", "status", "error", msg, "time", 0.0);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (s)
        ag_request_respond(req, status, "application/json", s, strlen(s));
    else
        ag_request_respond_text(req, status, "text/plain", msg);
}

/* ---- trusted proxies: base/ag_net.h (shared with the gRPC listener) ------------------------- */

/* ---- CORS ---------------------------------------------------------------------------------- */

/* An origin as browsers send it: http(s)://host[:port], nothing after, safe characters only. */
static bool origin_shaped(const char *o, size_t len)
{
    size_t p = strncmp(o, "https://", 8) == 0 ? 8 : strncmp(o, "http://", 7) == 0 ? 7 : 0;
    if (!p || len <= p || len > AG_HTTP_ORIGIN_MAX)
        return false;
    for (size_t i = p; i < len; i++) {
        char c = o[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == ':' || c == '[' || c == ']'))
            return false;
    }
    return true;
}

static int parse_origins(struct ag_http *srv, const char *list, ag_diag_t *diag)
{
    if (!list || !*list)
        return 0;
    srv->origins = calloc(AG_HTTP_MAX_ORIGINS, sizeof(*srv->origins));
    if (!srv->origins)
        return AG_ENOMEM;
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, ", ");
        if (!origin_shaped(p, len) || srv->norigins == AG_HTTP_MAX_ORIGINS)
            return ag_fail(diag, AG_ECONFIG,
                           "service.cors_allowed_origins: expected up to %d comma-separated "
                           "origins like https://app.example.com:8443 (scheme, host, optional "
                           "port; no path), got '%.*s'",
                           AG_HTTP_MAX_ORIGINS, (int)AG_MIN(len, 80), p);
        memcpy(srv->origins[srv->norigins], p, len);
        srv->origins[srv->norigins][len] = '\0';
        srv->norigins++;
        p += len;
    }
    return 0;
}

/* Decides the Access-Control-Allow-Origin of a request from its Origin header: "*" when any
 * origin may call, the origin itself when it is on the list, nothing otherwise (the browser then
 * keeps the answer from the page; credentials are never echoed for an origin not allowed). */
static void cors_decide(const struct ag_http *srv, ag_request_t *req, const char *origin)
{
    req->cors_origin[0] = '\0';
    if (!srv->cfg.cors || !origin)
        return;
    if (srv->norigins == 0) {
        snprintf(req->cors_origin, sizeof(req->cors_origin), "*");
        return;
    }
    req->cors_vary = true;
    for (size_t i = 0; i < srv->norigins; i++)
        if (strcmp(srv->origins[i], origin) == 0) {
            snprintf(req->cors_origin, sizeof(req->cors_origin), "%s", origin);
            return;
        }
}

/* Verifies the client certificate of a TLS connection against the configured CA. */
static bool client_cert_ok(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session)
        return false;
    gnutls_session_t session = (gnutls_session_t)ci->tls_session;
    unsigned int status = 0;
    if (gnutls_certificate_verify_peers2(session, &status) != GNUTLS_E_SUCCESS)
        return false;
    if (status != 0)
        return false;
    unsigned int n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(session, &n);
    return certs != NULL && n > 0;
}

/* Every response is counted (GET /metrics) and, with service.access_log, logged. */
static void access_log(const struct ag_http *srv, const ag_request_t *req)
{
    double ms = (ag_now_mono() - req->t_start) * 1000.0;
    ag_metrics_request(req->metrics_slot, req->status, ms / 1000.0);
    if (!srv->cfg.access_log)
        return;
    ag_log(AG_LOG_INFO, "access %s %s %s %d %zu %.2fms rid=%s who=%s", req->remote_addr,
           req->method_name, req->path ? req->path : "-", req->status, req->resp_len, ms,
           req->request_id, req->principal_label[0] ? req->principal_label : "-");
}

static enum MHD_Result queue(struct MHD_Connection *conn, ag_request_t *req, bool close)
{
    if (!req->responded)
        error_json(req, 500, "no response produced");
    struct MHD_Response *resp;
    if (req->resp_fd >= 0) {
        resp = MHD_create_response_from_fd64(req->resp_fd_len, req->resp_fd);
        if (resp)
            req->resp_fd = -1; /* MHD closes it with the response */
    } else if (req->resp_body && req->resp_len > 0) {
        /* The body is handed over, not copied: MHD frees it with the response. */
        resp =
            MHD_create_response_from_buffer(req->resp_len, req->resp_body, MHD_RESPMEM_MUST_FREE);
        if (resp)
            req->resp_body = NULL;
    } else {
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type",
                            req->resp_type ? req->resp_type : "application/json");
    if (req->retry_after[0])
        MHD_add_response_header(resp, "Retry-After", req->retry_after);
    MHD_add_response_header(resp, "x-request-id", req->request_id);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (req->csp) {
        MHD_add_response_header(resp, "Content-Security-Policy", req->csp);
        MHD_add_response_header(resp, "X-Frame-Options", "DENY");
        MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
    }
    /* Caches must not hand one origin's answer to another, allowed or not. */
    if (req->cors_vary)
        MHD_add_response_header(resp, "Vary", "Origin");
    if (req->cors_origin[0]) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", req->cors_origin);
        MHD_add_response_header(resp, "Access-Control-Expose-Headers", "x-request-id, retry-after");
        if (req->preflight) {
            MHD_add_response_header(resp, "Access-Control-Allow-Methods",
                                    "GET, POST, PUT, PATCH, DELETE, HEAD");
            MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                    "api-key, authorization, content-type, x-request-id");
            MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
        }
    }
    if (close)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result r = MHD_queue_response(conn, (unsigned)req->status, resp);
    MHD_destroy_response(resp);
    return r;
}

/* ---- connection deadlines ------------------------------------------------------------------ */

static int64_t now_ms(void)
{
    return (int64_t)(ag_now_mono() * 1000.0);
}

static void set_deadline(struct MHD_Connection *conn, unsigned seconds)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_track_t *t = ci ? ci->socket_context : NULL;
    if (t)
        atomic_store(&t->deadline_ms, seconds ? now_ms() + (int64_t)seconds * 1000 : 0);
}

/* Keeps a socket that was answered before its body was read open past MHD's close, reading and
 * discarding what the client still sends, so that closing it does not reset the connection over
 * unread bytes (which makes clients lose the answer while they are still writing). Called from
 * MHD's close notification, before MHD closes its descriptor: the duplicate taken here keeps the
 * socket alive. Bounded: LINGER_SLOTS sockets, LINGER_MS each, LINGER_MAX_BYTES each; past any
 * bound the socket is closed at once, as before. */
static void linger_add(struct ag_http *srv, MHD_socket fd)
{
    if (atomic_load(&srv->watchdog_stop))
        return; /* stopping: closed at once (slots left over are closed by ag_http_stop) */
    int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0)
        return;
    /* The answer is out: end our direction now so the client sees the end of the stream. */
    shutdown(dup_fd, SHUT_WR);
    pthread_mutex_lock(&srv->conns_lock);
    linger_t *slot = NULL;
    for (size_t i = 0; i < LINGER_SLOTS && !slot; i++)
        if (srv->linger[i].fd < 0)
            slot = &srv->linger[i];
    if (slot) {
        slot->fd = dup_fd;
        slot->until_ms = now_ms() + LINGER_MS;
        slot->drained = 0;
    }
    pthread_mutex_unlock(&srv->conns_lock);
    if (!slot)
        close(dup_fd);
}

/* Reads what lingering sockets have received and closes the ones that finished (end of stream,
 * error) or ran past their bounds. Waits up to wait_ms for input. Watchdog thread only. */
static void linger_drain(struct ag_http *srv, int wait_ms)
{
    /* Only this thread changes an occupied slot, so the reads below run without the lock (which
     * the network threads take for every new connection); the lock only publishes a freed slot. */
    struct pollfd pfd[LINGER_SLOTS];
    size_t idx[LINGER_SLOTS];
    nfds_t n = 0;
    pthread_mutex_lock(&srv->conns_lock);
    for (size_t i = 0; i < LINGER_SLOTS; i++)
        if (srv->linger[i].fd >= 0) {
            pfd[n] = (struct pollfd){.fd = srv->linger[i].fd, .events = POLLIN};
            idx[n++] = i;
        }
    pthread_mutex_unlock(&srv->conns_lock);
    int rc = poll(n ? pfd : NULL, n, wait_ms);
    if (n == 0)
        return;
    int64_t now = now_ms();
    char sink[16384];
    bool done[LINGER_SLOTS];
    for (nfds_t k = 0; k < n; k++) {
        linger_t *l = &srv->linger[idx[k]];
        done[k] = now > l->until_ms || l->drained > LINGER_MAX_BYTES;
        if (done[k] || rc <= 0 || !(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        for (int round = 0; round < 64; round++) {
            ssize_t got = recv(l->fd, sink, sizeof(sink), MSG_DONTWAIT);
            if (got > 0) {
                l->drained += (uint64_t)got;
                continue;
            }
            if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                done[k] = true;
            break;
        }
    }
    pthread_mutex_lock(&srv->conns_lock);
    for (nfds_t k = 0; k < n; k++)
        if (done[k]) {
            close(srv->linger[idx[k]].fd);
            srv->linger[idx[k]].fd = -1;
        }
    pthread_mutex_unlock(&srv->conns_lock);
}

static void linger_close_all(struct ag_http *srv)
{
    for (size_t i = 0; i < LINGER_SLOTS; i++)
        if (srv->linger[i].fd >= 0) {
            close(srv->linger[i].fd);
            srv->linger[i].fd = -1;
        }
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct ag_http *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_track_t *t = calloc(1, sizeof(*t));
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!t || !ci) {
            free(t);
            return; /* untracked: only MHD's own idle timeout applies */
        }
        t->fd = ci->connect_fd;
        atomic_init(&t->deadline_ms, now_ms() + (int64_t)srv->cfg.header_timeout * 1000);
        pthread_mutex_lock(&srv->conns_lock);
        t->next = srv->conns;
        if (srv->conns)
            srv->conns->prev = t;
        srv->conns = t;
        pthread_mutex_unlock(&srv->conns_lock);
        atomic_fetch_add(&srv->nconns, 1);
        *socket_context = t;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_track_t *t = *socket_context;
        if (!t)
            return;
        if (t->linger && !t->cut)
            linger_add(srv, t->fd);
        pthread_mutex_lock(&srv->conns_lock);
        if (t->prev)
            t->prev->next = t->next;
        else
            srv->conns = t->next;
        if (t->next)
            t->next->prev = t->prev;
        pthread_mutex_unlock(&srv->conns_lock);
        atomic_fetch_sub(&srv->nconns, 1);
        free(t);
        *socket_context = NULL;
    }
}

/* Shuts down connections past their deadline (shutdown, not close: MHD still owns the socket and
 * closes it when it sees the end of the stream). */
static void *watchdog_main(void *arg)
{
    struct ag_http *srv = arg;
    int64_t last = now_ms();
    while (!atomic_load(&srv->watchdog_stop)) {
        linger_drain(srv, 50);
        int64_t now = now_ms();
        int64_t trim = atomic_load(&srv->trim_at_ms);
        if (trim && now >= trim && atomic_compare_exchange_strong(&srv->trim_at_ms, &trim, 0))
            malloc_trim(0);
        if (now - last < 250)
            continue;
        last = now;
        unsigned cut = 0;
        pthread_mutex_lock(&srv->conns_lock);
        for (conn_track_t *t = srv->conns; t; t = t->next) {
            int64_t d = atomic_load(&t->deadline_ms);
            if (d && now > d && !t->cut) {
                shutdown(t->fd, SHUT_RDWR);
                t->cut = true;
                cut++;
            }
        }
        pthread_mutex_unlock(&srv->conns_lock);
        if (cut)
            ag_log(AG_LOG_WARN,
                   "http: closed %u connection(s) that did not send their request (or take their "
                   "response) in time",
                   cut);
    }
    return NULL;
}

/*
 * The inline budget of a network thread (docs/ARCHITECTURE.md "Inline answers"): the time it
 * spent in handle() for requests answered inline during the current 100 ms window. Once past
 * inline_budget_ms, further requests go to the workers until the window ends, so the other
 * connections this thread serves (probes among them) wait at most about that long plus one
 * cheap request. Each network thread has its own (they are libmicrohttpd's threads).
 * A request is charged its wall time (the vDSO clock: reading the thread's CPU clock is a real
 * system call, two per request cost ~2 µs of every search in a VM). A long one (over 5 ms,
 * waiting for a lock, say) stays charged as it is: the thread was blocked that long. Short ones
 * may include time other processes ran on a loaded machine, which is not work this thread could
 * hand off, so once they seem to exhaust the budget they are capped by the thread's CPU time
 * since the window began (one clock read at the start of a window and one per check past the
 * budget). Both are upper bounds of the CPU spent inline, so the budget is never undercounted.
 */
#define INLINE_WINDOW_S 0.1
#define INLINE_LONG_S 0.005
static _Thread_local double inline_window_start;
static _Thread_local double inline_window_cpu0;  /* the thread's CPU clock at the window start */
static _Thread_local double inline_window_long;  /* wall time of long requests, charged as is */
static _Thread_local double inline_window_short; /* wall time of short ones, capped by CPU */

static double thread_cpu(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 1e300; /* cannot happen on Linux; no cap at all is the safe side */
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool inline_budget_left(const struct ag_http *srv)
{
    double now = ag_now_mono();
    if (now - inline_window_start >= INLINE_WINDOW_S) {
        inline_window_start = now;
        inline_window_cpu0 = thread_cpu();
        inline_window_long = inline_window_short = 0;
    }
    double budget = (srv->cfg.inline_budget_ms ? srv->cfg.inline_budget_ms : 50) / 1000.0;
    if (inline_window_long + inline_window_short < budget)
        return true;
    double cpu = thread_cpu() - inline_window_cpu0;
    if (cpu < inline_window_short)
        inline_window_short = cpu;
    return inline_window_long + inline_window_short < budget;
}

static void inline_budget_charge(double wall)
{
    if (wall > INLINE_LONG_S)
        inline_window_long += wall;
    else
        inline_window_short += wall;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    AG_UNUSED(version);
    struct ag_http *srv = cls;
    ag_request_t *req = *con_cls;

    if (!req) {
        req = calloc(1, sizeof(*req));
        if (!req)
            return MHD_NO;
        *con_cls = req;
        atomic_fetch_add(&srv->active, 1);
        req->conn = conn;
        req->t_start = ag_now_mono();
        set_request_id(srv, req,
                       MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id"));
        req->method = parse_method(method);
        snprintf(req->method_name, sizeof(req->method_name), "%s", method);
        req->path = strdup(url);
        req->content_length = UINT64_MAX;
        req->spool_fd = -1;
        req->resp_fd = -1;
        req->metrics_slot = AG_METRICS_NO_ROUTE;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
                          req->remote_addr, sizeof(req->remote_addr));
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                          req->remote_addr, sizeof(req->remote_addr));
        }
        memcpy(req->peer_addr, req->remote_addr, sizeof(req->peer_addr));
        ag_net_client(&srv->proxies, req->peer_addr,
                      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Forwarded-For"),
                      req->remote_addr, sizeof(req->remote_addr));
        req->api_key = dup_or_null(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "api-key"));
        req->authorization = dup_or_null(
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION));
        req->content_type = dup_or_null(
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE));
        req->shard_local =
            dup_or_null(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-aegis-shard-local"));
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end = NULL;
            unsigned long long v = strtoull(cl, &end, 10);
            if (end && *end == '\0')
                req->content_length = v;
        }
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, req);
        const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
        cors_decide(srv, req, origin);
        /* A preflight is answered here, before any authentication (browsers send it without
         * credentials); it runs nothing, and the request it announces is checked as usual. */
        req->preflight = srv->cfg.cors && origin && strcmp(method, "OPTIONS") == 0 &&
                         MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     "Access-Control-Request-Method") != NULL;

        /* The headers are in: the body (if any) has body_timeout to arrive. */
        set_deadline(conn, srv->cfg.body_timeout);
        if (atomic_load(&srv->nconns) > (int)srv->cfg.max_connections) {
            error_json(req, 503, "too many connections; retry later");
            req->close_after = true;
        } else if (req->preflight) {
            if (req->cors_origin[0])
                ag_request_respond_text(req, 204, "text/plain", "");
            else
                error_json(req, 403,
                           "CORS: this origin is not allowed "
                           "(service.cors_allowed_origins)");
        } else if (!req->path || !split_path(req, url)) {
            error_json(req, 400, "malformed request path");
        } else {
            /* A missing or bad client certificate is the api layer's to refuse, as a failed
             * authentication: throttled, logged and audited like a bad key. */
            req->client_cert_refused = srv->cfg.verify_client && !client_cert_ok(conn);
            srv->begin(srv->ud, req);
            uint64_t limit = req->spool_fd >= 0 ? req->spool_max : srv->cfg.max_body;
            if (!req->responded && req->content_length != UINT64_MAX &&
                req->content_length > limit) {
                /* Answered once the body has been read and discarded: answering now would make
                 * the kernel reset the connection over the unread bytes and lose the 413 (an
                 * upload, whose clients expect that, is answered at once). */
                error_json(req, 413, "request body is larger than the configured limit");
                req->close_after = true;
                req->answer_now = req->spool_fd >= 0;
                spool_drop(req);
            }
        }
        if (req->responded && req->answer_now) {
            /* Refused before any byte of the body: answered now, the body never read (drained
             * after the answer, within bounds: linger_add). */
            const union MHD_ConnectionInfo *sc =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
            conn_track_t *t = sc ? sc->socket_context : NULL;
            if (t)
                t->linger = true;
            access_log(srv, req);
            set_deadline(conn, srv->cfg.body_timeout);
            return queue(conn, req, true);
        }
        return MHD_YES;
    }

    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->responded)
            return MHD_YES; /* refused already: discard the body, never parse it */
        if (req->spool_fd >= 0) {
            int werr = 0;
            if (req->spool_len + n > req->spool_max) {
                error_json(req, 413, "upload is larger than the configured limit");
                req->close_after = true;
            } else if (ag_write_all(req->spool_fd, upload_data, n) != 0) {
                werr = errno;
                error_json(req, werr == ENOSPC ? 507 : 500,
                           werr == ENOSPC ? "Insufficient storage: no room for the upload"
                                          : "cannot store the upload");
                req->close_after = true;
            } else {
                req->spool_len += n;
                return MHD_YES;
            }
            spool_drop(req);
            return MHD_YES;
        }
        if (req->body_len + n > srv->cfg.max_body) {
            free(req->body);
            req->body = NULL;
            req->body_len = 0;
            error_json(req, 413, "request body is larger than the configured limit");
            req->close_after = true;
            return MHD_YES;
        }
        if (req->body_len + n + 1 > req->body_cap) {
            /* Geometric growth, starting from the declared length when there is one, so a
             * large upload is not copied over and over. */
            size_t cap = req->body_cap ? req->body_cap * 2 : 64 * 1024;
            if (req->body_cap == 0 && req->content_length != UINT64_MAX)
                cap = (size_t)req->content_length + 1;
            while (cap < req->body_len + n + 1)
                cap *= 2;
            if (cap > srv->cfg.max_body + 1)
                cap = srv->cfg.max_body + 1;
            char *grown = realloc(req->body, cap);
            if (!grown) {
                error_json(req, 500, "out of memory reading the request body");
                return MHD_YES;
            }
            req->body = grown;
            req->body_cap = cap;
        }
        memcpy(req->body + req->body_len, upload_data, n);
        req->body_len += n;
        req->body[req->body_len] = '\0';
        return MHD_YES;
    }

    if (req->phase == PHASE_READING)
        req->t_ready = ag_now_mono();
    /* Running: the request's own deadline bounds the work, not the connection's. */
    set_deadline(conn, 0);
    if (req->phase == PHASE_READING && !req->responded && !req->inline_ok && srv->nworkers > 0 &&
        srv->cfg.cheap) {
        /* Known cheap and this thread not busy answering inline: answered right here. */
        req->inline_cheap = inline_budget_left(srv) && srv->cfg.cheap(srv->ud, req);
        atomic_fetch_add(req->inline_cheap ? &srv->answered_inline : &srv->answered_worker, 1);
    }
    if (req->phase == PHASE_READING && !req->responded && !req->inline_ok && !req->inline_cheap &&
        srv->nworkers > 0) {
        /* Off the network thread: MHD calls back here once the worker resumes the connection. */
        req->phase = PHASE_RUNNING;
        MHD_suspend_connection(conn);
        pthread_mutex_lock(&srv->jobs_lock);
        req->next_job = NULL;
        if (srv->jobs_tail)
            srv->jobs_tail->next_job = req;
        else
            srv->jobs_head = req;
        srv->jobs_tail = req;
        atomic_fetch_add(&srv->queued, 1);
        pthread_cond_signal(&srv->jobs_cv);
        pthread_mutex_unlock(&srv->jobs_lock);
        return MHD_YES;
    }
    if (req->phase == PHASE_RUNNING)
        return MHD_YES; /* not resumed yet (MHD should not call, but never answer twice) */
    if (!req->responded) {
        double w0 = req->inline_cheap ? ag_now_mono() : 0;
        srv->handle(srv->ud, req);
        if (req->inline_cheap)
            inline_budget_charge(ag_now_mono() - w0);
    }
    access_log(srv, req);
    /* The client has body_timeout to take the response. */
    set_deadline(conn, srv->cfg.body_timeout);
    return queue(conn, req, req->close_after);
}

/* A request worker: runs handle() for suspended requests, oldest first. On stop it drains the
 * queue before exiting, so every suspended connection is resumed before the daemon stops. */
static void *worker_main(void *arg)
{
    struct ag_http *srv = arg;
    pthread_mutex_lock(&srv->jobs_lock);
    for (;;) {
        while (!srv->jobs_head && !srv->jobs_stopping)
            pthread_cond_wait(&srv->jobs_cv, &srv->jobs_lock);
        ag_request_t *req = srv->jobs_head;
        if (!req)
            break; /* stopping and nothing left */
        srv->jobs_head = req->next_job;
        if (!srv->jobs_head)
            srv->jobs_tail = NULL;
        atomic_fetch_sub(&srv->queued, 1);
        atomic_fetch_add(&srv->busy, 1);
        pthread_mutex_unlock(&srv->jobs_lock);

        srv->handle(srv->ud, req);
        atomic_fetch_sub(&srv->busy, 1);
        req->phase = PHASE_ANSWERED;
        MHD_resume_connection(req->conn);

        pthread_mutex_lock(&srv->jobs_lock);
    }
    pthread_mutex_unlock(&srv->jobs_lock);
    return NULL;
}

/* Stops the request workers after they have drained the queue. */
static void stop_workers(struct ag_http *srv)
{
    pthread_mutex_lock(&srv->jobs_lock);
    srv->jobs_stopping = true;
    pthread_cond_broadcast(&srv->jobs_cv);
    pthread_mutex_unlock(&srv->jobs_lock);
    for (unsigned i = 0; i < srv->nworkers; i++)
        pthread_join(srv->workers[i], NULL);
    free(srv->workers);
    srv->workers = NULL;
    srv->nworkers = 0;
}

/* Starts n request workers; on failure stops the ones started and returns false. */
static bool start_workers(struct ag_http *srv, unsigned n)
{
    srv->workers = calloc(n, sizeof(*srv->workers));
    if (!srv->workers)
        return false;
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&srv->workers[i], NULL, worker_main, srv) != 0) {
            stop_workers(srv);
            return false;
        }
        srv->nworkers = i + 1;
    }
    return true;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    AG_UNUSED(toe);
    struct ag_http *srv = cls;
    /* Kept alive: the next request's headers must be in within the idle time plus the header
     * time, however slowly they trickle. */
    if (conn)
        set_deadline(conn, srv->cfg.conn_timeout + srv->cfg.header_timeout);
    ag_request_t *req = *con_cls;
    if (!req)
        return;
    request_free(srv, req);
    *con_cls = NULL;
    atomic_fetch_sub(&srv->active, 1);
}

/* Keeps the URL as received so the router can split before decoding (a %2F stays inside its
 * segment instead of becoming a separator). Query arguments are decoded by collect_arg. */
static size_t keep_escaped(void *cls, struct MHD_Connection *c, char *s)
{
    AG_UNUSED(cls);
    AG_UNUSED(c);
    return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    AG_UNUSED(cls);
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    ag_log(AG_LOG_DEBUG, "http: %s", line);
}

int ag_http_start(const ag_http_config_t *cfg, ag_http_begin_fn begin, ag_http_handle_fn handle,
                  void *ud, ag_http_t **out, ag_diag_t *diag)
{
    struct ag_http *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return AG_ENOMEM;
    srv->cfg = *cfg;
    if (!srv->cfg.max_connections)
        srv->cfg.max_connections = 1024;
    if (!srv->cfg.conn_timeout)
        srv->cfg.conn_timeout = 60;
    if (!srv->cfg.header_timeout)
        srv->cfg.header_timeout = 30;
    if (!srv->cfg.body_timeout)
        srv->cfg.body_timeout = 60;
    pthread_mutex_init(&srv->conns_lock, NULL);
    atomic_init(&srv->nconns, 0);
    atomic_init(&srv->watchdog_stop, false);
    atomic_init(&srv->trim_at_ms, 0);
    /* glibc's own default raises the mmap threshold to the largest block freed (up to 32 MiB)
     * and trims an arena's top above twice that — so a 2.5 MB upsert body was mmapped fresh or
     * its heap top given back after each request, and every batch faulted in and zeroed its body,
     * parse and batch memory again (docs/BENCHMARKS.md "Ingestion"). Fixed at the highest values
     * the default reaches, freed memory stays for the next request; the watchdog hands it back
     * once big requests stop (TRIM_QUIET_MS). Process-wide; the values only matter to glibc. */
    (void)mallopt(M_MMAP_THRESHOLD, 32 << 20);
    (void)mallopt(M_TRIM_THRESHOLD, 64 << 20);
    for (size_t i = 0; i < LINGER_SLOTS; i++)
        srv->linger[i].fd = -1;
    srv->begin = begin;
    srv->handle = handle;
    srv->ud = ud;
    atomic_init(&srv->active, 0);
    atomic_init(&srv->next_id, 1);
    srv->id_prefix = randombytes_random();
    int prc =
        ag_net_list_parse(&srv->proxies, cfg->trusted_proxies, "service.trusted_proxies", diag);
    if (prc == 0)
        prc = parse_origins(srv, cfg->cors_origins, diag);
    if (prc) {
        free(srv->origins);
        free(srv);
        return prc;
    }
    pthread_mutex_init(&srv->jobs_lock, NULL);
    pthread_cond_init(&srv->jobs_cv, NULL);

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG |
                     MHD_ALLOW_SUSPEND_RESUME;
    const char *host = cfg->host ? cfg->host : "127.0.0.1";
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(cfg->port);
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(cfg->port);
        flags |= MHD_USE_IPv6;
    } else {
        free(srv->origins);
        free(srv);
        return ag_fail(diag, AG_ECONFIG, "service.host: '%s' is not an IPv4 or IPv6 address", host);
    }
    if (!start_workers(srv, cfg->threads ? cfg->threads : 4)) {
        free(srv->origins);
        free(srv);
        return ag_fail(diag, AG_EINTERNAL, "cannot start the request worker threads");
    }
    if (cfg->tls_cert_pem)
        flags |= MHD_USE_TLS;

    struct MHD_OptionItem opts[20];
    int n = 0;
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE,
                                        cfg->io_threads ? cfg->io_threads : 2, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, srv->cfg.conn_timeout, NULL};
    /* A little room above the limit, so that a connection past it can still be told 503. */
    opts[n++] =
        (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, srv->cfg.max_connections + 64, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, srv};
    /* The per-connection pool holds the request line, the headers and the read buffer (bodies are
     * copied out as they arrive); libmicrohttpd zeroes it for every request on a keep-alive
     * connection, so its size is paid per request: 256 KiB cost ~4 µs of each search
     * (docs/BENCHMARKS.md "Server CPU per search request"). Headers past it are refused with 431.
     */
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, 64 * 1024, NULL};
    if (cfg->max_connections_per_ip)
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                            cfg->max_connections_per_ip, NULL};
    /* No SO_REUSEPORT: a port another process holds must be a start-up error, not two servers
     * taking turns. */
    if (cfg->tls_cert_pem) {
        opts[n++] =
            (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cfg->tls_cert_pem};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)cfg->tls_key_pem};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
                                            (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"};
        if (cfg->tls_ca_pem && cfg->verify_client)
            opts[n++] =
                (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, (void *)cfg->tls_ca_pem};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

    srv->daemon = MHD_start_daemon(
        flags, cfg->port, NULL, NULL, on_request, srv, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        srv, MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
        NULL, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!srv->daemon) {
        stop_workers(srv);
        free(srv->origins);
        free(srv);
        /* MHD does not say why; a bind of our own tells a taken port from the rest. */
        int probe = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int err = 0;
        if (probe >= 0) {
            socklen_t len = ss.ss_family == AF_INET6 ? sizeof(*sin6) : sizeof(*sin);
            if (bind(probe, (struct sockaddr *)&ss, len) != 0)
                err = errno;
            close(probe);
        }
        if (err == EADDRINUSE)
            return ag_fail(diag, AG_EIO,
                           "cannot listen on %s:%u: address already in use (another process "
                           "holds the port; set service.http_port or --port)",
                           host, (unsigned)cfg->port);
        return ag_fail(diag, AG_EIO, "cannot listen on %s:%u (%s; or bad TLS material)", host,
                       (unsigned)cfg->port, err ? strerror(err) : "unknown reason");
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : cfg->port;
    srv->watchdog_running = pthread_create(&srv->watchdog, NULL, watchdog_main, srv) == 0;
    if (!srv->watchdog_running)
        ag_log(AG_LOG_WARN, "http: no connection watchdog (thread creation failed); only the idle "
                            "timeout applies");
    *out = srv;
    return 0;
}

void ag_http_stats(ag_http_t *srv, ag_http_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!srv)
        return;
    int n = atomic_load(&srv->nconns);
    out->connections = n > 0 ? (unsigned)n : 0;
    out->workers = srv->nworkers;
    out->busy = atomic_load(&srv->busy);
    out->queued = atomic_load(&srv->queued);
    out->requests = atomic_load(&srv->next_id) - 1;
    out->answered_inline = atomic_load(&srv->answered_inline);
    out->answered_worker = atomic_load(&srv->answered_worker);
}

uint16_t ag_http_port(const ag_http_t *srv)
{
    return srv->port;
}

void ag_http_stop(ag_http_t *srv, double grace_s)
{
    if (!srv)
        return;
    MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
    double deadline = ag_now_mono() + grace_s;
    while (atomic_load(&srv->active) > 0 && ag_now_mono() < deadline)
        usleep(10000);
    if (atomic_load(&srv->active) > 0)
        ag_log(AG_LOG_WARN,
               "shutdown: %d requests still running after %.0fs, waiting for the ones already "
               "being handled",
               atomic_load(&srv->active), grace_s);
    /* Suspended connections must be resumed before the daemon stops: let the workers finish. */
    stop_workers(srv);
    atomic_store(&srv->watchdog_stop, true);
    if (srv->watchdog_running)
        pthread_join(srv->watchdog, NULL);
    MHD_stop_daemon(srv->daemon);
    linger_close_all(srv);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    pthread_cond_destroy(&srv->jobs_cv);
    pthread_mutex_destroy(&srv->jobs_lock);
    pthread_mutex_destroy(&srv->conns_lock);
    free(srv->origins);
    free(srv);
}
