/* ag_grpc.c — gRPC over HTTP/2 (nghttp2) on plain TCP: one network thread polls the listener and
 * every connection and drives their nghttp2 sessions; complete unary requests become jobs for the
 * gRPC workers; finished jobs come back through a pipe and are answered by the network thread,
 * the only thread that touches a session. docs/API.md "gRPC" describes the protocol subset. */
#include "ag_grpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <nghttp2/nghttp2.h>
#include <zlib.h>

#include "ag_clock.h"
#include "ag_log.h"
#include "ag_net.h"

#define HDR_MAX 8192 /* longest metadata value kept (credentials, paths) */

typedef struct conn conn_t;
typedef struct stream stream_t;

typedef struct job {
    ag_grpc_call_t call;
    conn_t *conn;
    int32_t stream_id;
    /* Owned copies of what call points to, so a stream reset meanwhile frees nothing in use. */
    char *path, *api_key, *authorization;
    uint8_t *msg;
    char remote[64], peer[64];
    atomic_bool cancelled; /* the stream was reset or the connection closed (network thread) */
    struct job *next;
} job_t;

struct stream {
    int32_t id;
    conn_t *conn;
    char *path, *api_key, *authorization, *encoding, *content_type, *xff;
    bool accept_gzip; /* grpc-accept-encoding lists gzip */
    job_t *job;       /* the call queued or running for it (network thread's view) */
    uint64_t timeout_ms;
    double t_open; /* when the headers began */
    uint8_t *buf;  /* the request body as received (framing included) */
    size_t len, cap;
    bool answered; /* a response was submitted or a job is running: ignore further input */
    bool running;  /* a job is running for it */
    bool reset;    /* RST_STREAM submitted */
    const void *method;
    uint8_t *out; /* the framed response message */
    size_t out_len, out_off;
    char status_text[8];
    stream_t *prev, *next;
};

struct conn {
    int fd;
    ag_grpc_t *srv;
    nghttp2_session *session;
    char addr[64];
    int pending; /* jobs in flight for this connection: it is freed only once they are back */
    bool dead;
    double last_active;   /* last byte from the client */
    gnutls_session_t tls; /* NULL = plain TCP */
    bool handshaken;
    bool cert_refused; /* mutual TLS: no valid client certificate on this connection */
    size_t buffered;   /* request bytes held by its streams (capped at 2 x max_msg) */
    stream_t *streams;
    conn_t *next;
};

struct ag_grpc {
    ag_grpc_config_t cfg;
    ag_grpc_lookup_fn lookup;
    ag_grpc_handle_fn handle;
    void *ud;
    int listen_fd;
    int wake[2];
    uint16_t port;
    pthread_t net;
    pthread_t *workers;
    unsigned nworkers;
    atomic_bool stopping;
    conn_t *conns;
    unsigned nconns;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_t *queue, *queue_tail;              /* jobs waiting for a worker (mu) */
    unsigned queued, max_queue;             /* jobs in queue (mu) and the bound */
    ag_net_list_t proxies;                  /* trusted proxies */
    job_t *done;                            /* jobs answered by a worker (mu) */
    gnutls_certificate_credentials_t creds; /* NULL = plain TCP */
    gnutls_priority_t prio;
    bool workers_stop;
};

/* ---- helpers ------------------------------------------------------------------------------- */

static char *dup_n(const uint8_t *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static void wipe_free(char *s)
{
    if (!s)
        return;
    volatile char *v = s;
    while (*v)
        *v++ = 0;
    free(s);
}

/* grpc-timeout: 1-8 digits and a unit (H M S m u n) → milliseconds (rounded up, at least 1). */
static uint64_t parse_timeout(const char *v)
{
    size_t n = strlen(v);
    if (n < 2 || n > 9)
        return 0;
    uint64_t x = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 0;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    switch (v[n - 1]) {
    case 'H':
        return x * 3600000;
    case 'M':
        return x * 60000;
    case 'S':
        return x * 1000;
    case 'm':
        return x ? x : 1;
    case 'u':
        return x / 1000 + 1;
    case 'n':
        return x / 1000000 + 1;
    default:
        return 0;
    }
}

/* grpc-message is percent-encoded: everything outside printable ASCII, and '%'. */
static void pct_encode(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < cap; p++) {
        if (*p >= 0x20 && *p < 0x7f && *p != '%') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE             \
    }

/* A trailers-only response: the status in the single HEADERS frame, which ends the stream. */
static void respond_status(stream_t *st, int status, const char *msg, const char *retry_after)
{
    char enc[1024];
    pct_encode(msg ? msg : "", enc, sizeof(enc));
    snprintf(st->status_text, sizeof(st->status_text), "%d", status);
    nghttp2_nv nva[5] = {
        NV(":status", "200"),
        NV("content-type", "application/grpc"),
        NV("grpc-status", st->status_text),
        NV("grpc-message", enc),
    };
    size_t n = 4;
    if (retry_after && *retry_after) {
        nghttp2_nv r = NV("retry-after", retry_after);
        nva[n++] = r;
    }
    st->answered = true;
    nghttp2_submit_response(st->conn->session, st->id, nva, n, NULL);
}

static ssize_t read_out(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *ud)
{
    (void)ud;
    stream_t *st = src->ptr;
    size_t n = AG_MIN(len, st->out_len - st->out_off);
    memcpy(buf, st->out + st->out_off, n);
    st->out_off += n;
    if (st->out_off == st->out_len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv tr[] = {NV("grpc-status", "0")};
        if (nghttp2_submit_trailer(s, id, tr, 1) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

#define GZIP_MIN 1024 /* smaller responses are sent as they are */

/* gzips in[0..len) into a new buffer after a 5-byte gap for the frame prefix: *out (malloc'd,
 * caller frees), *out_len the compressed size. False when it fails or does not shrink. */
static bool gzip_msg(const uint8_t *in, size_t len, uint8_t **out, size_t *out_len)
{
    z_stream z = {0};
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return false;
    size_t cap = deflateBound(&z, (uLong)len);
    uint8_t *buf = malloc(cap + 5);
    bool ok = false;
    if (buf) {
        z.next_in = (Bytef *)in;
        z.avail_in = (uInt)len;
        z.next_out = buf + 5;
        z.avail_out = (uInt)cap;
        ok = deflate(&z, Z_FINISH) == Z_STREAM_END && z.total_out < len;
    }
    if (ok) {
        *out = buf;
        *out_len = z.total_out;
    } else {
        free(buf);
    }
    deflateEnd(&z);
    return ok;
}

/* Answers a finished job on its stream (network thread). */
static void deliver(stream_t *st, job_t *job)
{
    ag_grpc_call_t *c = &job->call;
    if (c->status != AG_GRPC_OK) {
        respond_status(st, c->status, c->message, c->retry_after);
        return;
    }
    size_t n = c->resp_len;
    bool gz = st->accept_gzip && n >= GZIP_MIN && gzip_msg(c->resp, n, &st->out, &n);
    if (!gz) {
        st->out = malloc(n + 5);
        if (!st->out) {
            respond_status(st, AG_GRPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
            return;
        }
        if (n)
            memcpy(st->out + 5, c->resp, n);
    }
    st->out[0] = gz ? 1 : 0;
    st->out[1] = (uint8_t)(n >> 24);
    st->out[2] = (uint8_t)(n >> 16);
    st->out[3] = (uint8_t)(n >> 8);
    st->out[4] = (uint8_t)n;
    st->out_len = n + 5;
    st->out_off = 0;
    nghttp2_nv nva[] = {NV(":status", "200"), NV("content-type", "application/grpc"),
                        NV("grpc-encoding", "gzip")};
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = read_out};
    st->answered = true;
    nghttp2_submit_response(st->conn->session, st->id, nva, gz ? 3 : 2, &dp);
}

static void job_free(job_t *j)
{
    free(j->path);
    wipe_free(j->api_key);
    wipe_free(j->authorization);
    free(j->msg);
    free(j->call.resp);
    free(j);
}

/* Drops a stream's request buffer, keeping the connection's count of buffered bytes. */
static void drop_buf(stream_t *st)
{
    if (st->conn)
        st->conn->buffered -= st->cap;
    free(st->buf);
    st->buf = NULL;
    st->len = st->cap = 0;
}

/* ---- request completion -------------------------------------------------------------------- */

/* Inflates a gzip message into a new buffer of at most max bytes. 0, or an AG_GRPC_* status. */
static int gunzip(const uint8_t *in, size_t len, size_t max, uint8_t **out, size_t *out_len)
{
    z_stream z = {0};
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return AG_GRPC_INTERNAL;
    size_t cap = AG_MIN(AG_MAX(len * 4, (size_t)4096), max + 1);
    uint8_t *buf = malloc(cap);
    int rc = AG_GRPC_INTERNAL;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    size_t used = 0;
    while (buf) {
        z.next_out = buf + used;
        z.avail_out = (uInt)(cap - used);
        int zr = inflate(&z, Z_NO_FLUSH);
        used = cap - z.avail_out;
        if (zr == Z_STREAM_END) {
            rc = 0;
            break;
        }
        if (used > max) {
            rc = AG_GRPC_RESOURCE_EXHAUSTED;
            break;
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR)
            break;
        if (z.avail_out == 0) {
            size_t ncap = AG_MIN(cap * 2, max + 1);
            if (ncap <= cap) {
                rc = AG_GRPC_RESOURCE_EXHAUSTED;
                break;
            }
            uint8_t *g = realloc(buf, ncap);
            if (!g)
                break;
            buf = g;
            cap = ncap;
        } else if (zr == Z_BUF_ERROR) {
            break; /* input ended before the stream did */
        }
    }
    inflateEnd(&z);
    if (rc != 0 || used > max) {
        free(buf);
        return rc ? rc : AG_GRPC_RESOURCE_EXHAUSTED;
    }
    *out = buf;
    *out_len = used;
    return 0;
}

static void complete(stream_t *st)
{
    ag_grpc_t *srv = st->conn->srv;
    if (st->answered)
        return;
    if (st->len < 5) {
        respond_status(
            st, AG_GRPC_INTERNAL,
            st->len ? "truncated message: incomplete length prefix" : "no request message", NULL);
        return;
    }
    uint32_t mlen = ((uint32_t)st->buf[1] << 24) | ((uint32_t)st->buf[2] << 16) |
                    ((uint32_t)st->buf[3] << 8) | st->buf[4];
    if ((size_t)mlen + 5 != st->len) {
        respond_status(st, AG_GRPC_INTERNAL,
                       (size_t)mlen + 5 > st->len
                           ? "truncated message: fewer bytes than its length prefix"
                           : "a unary call takes exactly one message",
                       NULL);
        return;
    }
    /* Bounded: a call past the bound is refused here, before a worker or a copy is spent. */
    pthread_mutex_lock(&srv->mu);
    bool full = srv->queued >= srv->max_queue;
    pthread_mutex_unlock(&srv->mu);
    if (full) {
        respond_status(st, AG_GRPC_RESOURCE_EXHAUSTED,
                       "server busy: too many calls waiting for a worker; retry later", "1");
        drop_buf(st);
        return;
    }
    job_t *job = calloc(1, sizeof(*job));
    if (!job) {
        respond_status(st, AG_GRPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
        return;
    }
    if (st->buf[0] & 1) {
        if (!st->encoding || strcmp(st->encoding, "gzip") != 0) {
            free(job);
            respond_status(st, AG_GRPC_UNIMPLEMENTED,
                           "compressed message: only grpc-encoding gzip is supported", NULL);
            return;
        }
        size_t n = 0;
        int rc = gunzip(st->buf + 5, mlen, srv->cfg.max_msg, &job->msg, &n);
        if (rc) {
            free(job);
            respond_status(st, rc,
                           rc == AG_GRPC_RESOURCE_EXHAUSTED ? "message larger than the limit"
                                                            : "malformed gzip message",
                           NULL);
            return;
        }
        job->call.msg_len = n;
    } else {
        job->msg = malloc(mlen ? mlen : 1);
        if (job->msg && mlen)
            memcpy(job->msg, st->buf + 5, mlen);
        job->call.msg_len = mlen;
    }
    job->path = st->path ? strdup(st->path) : NULL;
    job->api_key = st->api_key ? strdup(st->api_key) : NULL;
    job->authorization = st->authorization ? strdup(st->authorization) : NULL;
    if (!job->msg || !job->path || (st->api_key && !job->api_key) ||
        (st->authorization && !job->authorization)) {
        job_free(job);
        respond_status(st, AG_GRPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
        return;
    }
    snprintf(job->peer, sizeof(job->peer), "%s", st->conn->addr);
    snprintf(job->remote, sizeof(job->remote), "%s", st->conn->addr);
    ag_net_client(&srv->proxies, job->peer, st->xff, job->remote, sizeof(job->remote));
    job->call.peer_addr = job->peer;
    job->call.path = job->path;
    job->call.method = st->method;
    job->call.api_key = job->api_key;
    job->call.authorization = job->authorization;
    job->call.remote_addr = job->remote;
    job->call.msg = job->msg;
    job->call.timeout_ms = st->timeout_ms;
    job->call.client_cert_refused = st->conn->cert_refused;
    job->conn = st->conn;
    job->stream_id = st->id;
    st->answered = true; /* a job is running: further frames are ignored */
    st->running = true;
    st->job = job;
    drop_buf(st);
    st->conn->pending++;
    pthread_mutex_lock(&srv->mu);
    srv->queued++;
    if (srv->queue_tail)
        srv->queue_tail->next = job;
    else
        srv->queue = job;
    srv->queue_tail = job;
    pthread_cond_signal(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
}

/* ---- nghttp2 callbacks --------------------------------------------------------------------- */

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)s;
    (void)flags;
    conn_t *c = ud;
    if (c->tls) {
        /* After GNUTLS_E_AGAIN nghttp2 calls again with the same bytes, which is what GnuTLS
         * asks for to finish the record it has buffered. */
        if (!c->handshaken)
            return NGHTTP2_ERR_WOULDBLOCK;
        ssize_t r = gnutls_record_send(c->tls, data, len);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
            return NGHTTP2_ERR_WOULDBLOCK;
        return r < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : r;
    }
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
                   ? NGHTTP2_ERR_WOULDBLOCK
                   : NGHTTP2_ERR_CALLBACK_FAILURE;
    return n;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    conn_t *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    stream_t *st = calloc(1, sizeof(*st));
    if (!st)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    st->id = f->hd.stream_id;
    st->conn = c;
    st->t_open = ag_now_mono();
    st->next = c->streams;
    if (c->streams)
        c->streams->prev = st;
    c->streams = st;
    nghttp2_session_set_stream_user_data(s, st->id, st);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)flags;
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    stream_t *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st || vlen > HDR_MAX)
        return 0;
    char **slot = NULL;
#define IS(lit) (nlen == sizeof(lit) - 1 && memcmp(name, lit, nlen) == 0)
    if (IS(":path"))
        slot = &st->path;
    else if (IS("api-key"))
        slot = &st->api_key;
    else if (IS("authorization"))
        slot = &st->authorization;
    else if (IS("grpc-encoding"))
        slot = &st->encoding;
    else if (IS("content-type"))
        slot = &st->content_type;
    else if (IS("x-forwarded-for"))
        slot = &st->xff;
    else if (IS("grpc-accept-encoding")) {
        /* A comma-separated list of encodings: is gzip one of them? */
        for (size_t i = 0; i + 4 <= vlen; i++)
            if (memcmp(value + i, "gzip", 4) == 0 &&
                (i == 0 || value[i - 1] == ',' || value[i - 1] == ' ') &&
                (i + 4 == vlen || value[i + 4] == ',' || value[i + 4] == ' '))
                st->accept_gzip = true;
        return 0;
    } else if (IS("grpc-timeout")) {
        char tmp[16];
        if (vlen < sizeof(tmp)) {
            memcpy(tmp, value, vlen);
            tmp[vlen] = '\0';
            st->timeout_ms = parse_timeout(tmp);
        }
        return 0;
    }
#undef IS
    if (!slot || *slot)
        return 0; /* the first of repeated metadata wins */
    *slot = dup_n(value, vlen);
    return *slot ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int on_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                    void *ud)
{
    (void)flags;
    conn_t *c = ud;
    stream_t *st = nghttp2_session_get_stream_user_data(s, id);
    if (!st || st->answered)
        return 0;
    if (st->len + len > c->srv->cfg.max_msg + 5) {
        respond_status(st, AG_GRPC_RESOURCE_EXHAUSTED, "request message larger than the limit",
                       NULL);
        drop_buf(st);
        return 0;
    }
    if (st->len + len > st->cap) {
        size_t ncap = AG_MIN(AG_MAX(st->cap * 2, st->len + len), c->srv->cfg.max_msg + 5);
        if (c->buffered - st->cap + ncap > 2 * c->srv->cfg.max_msg) {
            respond_status(st, AG_GRPC_RESOURCE_EXHAUSTED,
                           "too many request bytes in flight on this connection", NULL);
            drop_buf(st);
            return 0;
        }
        uint8_t *g = realloc(st->buf, ncap);
        if (!g) {
            respond_status(st, AG_GRPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
            drop_buf(st);
            return 0;
        }
        c->buffered += ncap - st->cap;
        st->buf = g;
        st->cap = ncap;
    }
    memcpy(st->buf + st->len, data, len);
    st->len += len;
    return 0;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    conn_t *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    stream_t *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST && !st->answered) {
        /* Headers are in: refuse what cannot be served before reading any message byte. */
        if (!st->content_type || strncmp(st->content_type, "application/grpc", 16) != 0) {
            respond_status(st, AG_GRPC_INVALID_ARGUMENT, "content-type must be application/grpc",
                           NULL);
        } else if (!st->path || !(st->method = c->srv->lookup(c->srv->ud, st->path))) {
            char msg[300];
            snprintf(msg, sizeof(msg), "unknown method %.256s", st->path ? st->path : "(none)");
            respond_status(st, AG_GRPC_UNIMPLEMENTED, msg, NULL);
        }
    }
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
        complete(st);
    return 0;
}

static void stream_free(stream_t *st)
{
    if (st->job) /* queued: not run; running: its response is dropped (take_done) */
        atomic_store(&st->job->cancelled, true);
    free(st->path);
    free(st->xff);
    wipe_free(st->api_key);
    wipe_free(st->authorization);
    free(st->encoding);
    free(st->content_type);
    free(st->buf);
    free(st->out);
    free(st);
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t err, void *ud)
{
    (void)err;
    conn_t *c = ud;
    stream_t *st = nghttp2_session_get_stream_user_data(s, id);
    if (!st)
        return 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    drop_buf(st);
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    stream_free(st); /* a job still running for it finds no stream and is dropped */
    return 0;
}

/* ---- connections --------------------------------------------------------------------------- */

static void conn_close(conn_t *c)
{
    if (c->dead)
        return;
    c->dead = true;
    if (c->session)
        nghttp2_session_del(c->session); /* does not call on_close: free the streams here */
    c->session = NULL;
    while (c->streams) {
        stream_t *n = c->streams->next;
        stream_free(c->streams);
        c->streams = n;
    }
    if (c->tls)
        gnutls_deinit(c->tls);
    c->tls = NULL;
    close(c->fd);
    c->fd = -1;
}

/* Accepts fd as a new connection; NULL (fd closed) over the connection limit or out of memory. */
static conn_t *conn_new(ag_grpc_t *srv, int fd, const struct sockaddr_storage *sa)
{
    unsigned maxc = srv->cfg.max_connections ? srv->cfg.max_connections : 1024;
    conn_t *c = srv->nconns < maxc ? calloc(1, sizeof(*c)) : NULL;
    if (!c) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->srv = srv;
    c->last_active = ag_now_mono();
    if (sa->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->addr,
                  sizeof(c->addr));
    else
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->addr, sizeof(c->addr));
    if (srv->cfg.max_connections_per_ip) {
        /* As REST's service.max_connections_per_ip: counted per TCP peer. */
        unsigned same = 0;
        for (conn_t *o = srv->conns; o; o = o->next)
            same += !o->dead && strcmp(o->addr, c->addr) == 0;
        if (same >= srv->cfg.max_connections_per_ip) {
            close(fd);
            free(c);
            return NULL;
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (srv->creds) {
        static const gnutls_datum_t h2 = {(unsigned char *)"h2", 2};
        if (gnutls_init(&c->tls, GNUTLS_SERVER | GNUTLS_NONBLOCK) != GNUTLS_E_SUCCESS ||
            gnutls_priority_set(c->tls, srv->prio) != GNUTLS_E_SUCCESS ||
            gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, srv->creds) !=
                GNUTLS_E_SUCCESS ||
            gnutls_alpn_set_protocols(c->tls, &h2, 1, 0) != GNUTLS_E_SUCCESS) {
            if (c->tls)
                gnutls_deinit(c->tls);
            close(fd);
            free(c);
            return NULL;
        }
        if (srv->cfg.verify_client)
            gnutls_certificate_server_set_request(c->tls, GNUTLS_CERT_REQUEST);
        gnutls_transport_set_int(c->tls, fd);
        gnutls_handshake_set_timeout(c->tls, 0);
    }
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        close(fd);
        free(c);
        return NULL;
    }
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    int rc = nghttp2_session_server_new(&c->session, cb, c);
    nghttp2_session_callbacks_del(cb);
    if (rc != 0) {
        if (c->tls)
            gnutls_deinit(c->tls);
        close(fd);
        free(c);
        return NULL;
    }
    /* Windows big enough for multi-megabyte upserts without a round trip per 64 KiB. */
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 4u << 20},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64u << 10},
    };
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, AG_ARRAY_LEN(iv));
    nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    c->next = srv->conns;
    srv->conns = c;
    srv->nconns++;
    return c;
}

/* Verifies the client certificate (mutual TLS) once the handshake is done. */
static bool client_cert_ok(gnutls_session_t s)
{
    unsigned int status = 0, n = 0;
    if (gnutls_certificate_verify_peers2(s, &status) != GNUTLS_E_SUCCESS || status != 0)
        return false;
    return gnutls_certificate_get_peers(s, &n) != NULL && n > 0;
}

/* Drives the TLS handshake; false when the connection was closed. */
static bool conn_handshake(conn_t *c)
{
    int r = gnutls_handshake(c->tls);
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
        return true;
    if (r != GNUTLS_E_SUCCESS) {
        conn_close(c);
        return false;
    }
    c->handshaken = true;
    c->cert_refused = c->srv->cfg.verify_client && !client_cert_ok(c->tls);
    return true;
}

static ssize_t conn_recv(conn_t *c, uint8_t *buf, size_t len)
{
    if (!c->tls)
        return recv(c->fd, buf, len, 0);
    ssize_t r = gnutls_record_recv(c->tls, buf, len);
    if (r >= 0)
        return r;
    errno = r == GNUTLS_E_AGAIN ? EAGAIN : r == GNUTLS_E_INTERRUPTED ? EINTR : ECONNRESET;
    return -1;
}

static void conn_read(conn_t *c)
{
    uint8_t buf[16384];
    if (c->tls && !c->handshaken) {
        c->last_active = ag_now_mono();
        if (!conn_handshake(c) || !c->handshaken)
            return;
    }
    for (;;) {
        ssize_t n = conn_recv(c, buf, sizeof(buf));
        if (n == 0) {
            conn_close(c);
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            conn_close(c);
            return;
        }
        c->last_active = ag_now_mono();
        if (nghttp2_session_mem_recv(c->session, buf, (size_t)n) < 0) {
            /* A protocol error: nghttp2 queued a GOAWAY; send it and close. */
            nghttp2_session_send(c->session);
            conn_close(c);
            return;
        }
        if ((size_t)n < sizeof(buf) && !(c->tls && gnutls_record_check_pending(c->tls)))
            return;
    }
}

/* Deadlines (ag_grpc_config_t idle_s, body_s): slow requests are answered and reset; idle
 * connections get GOAWAY and are closed. */
static void sweep(ag_grpc_t *srv)
{
    double now = ag_now_mono();
    double idle = srv->cfg.idle_s ? srv->cfg.idle_s : 30,
           body = srv->cfg.body_s ? srv->cfg.body_s : 60;
    for (conn_t *c = srv->conns; c; c = c->next) {
        if (c->dead)
            continue;
        for (stream_t *st = c->streams; st; st = st->next)
            if (!st->answered && now - st->t_open > body) {
                respond_status(st, AG_GRPC_DEADLINE_EXCEEDED,
                               "the request message did not arrive in time", NULL);
                drop_buf(st);
            } else if (st->answered && !st->running && !st->reset && now - st->t_open > 2 * body) {
                /* Answered long ago, and the client still has not closed its side. */
                st->reset = true;
                nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
            }
        if (!c->streams && c->pending == 0 && now - c->last_active > idle) {
            nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                                  nghttp2_session_get_last_proc_stream_id(c->session),
                                  NGHTTP2_NO_ERROR, NULL, 0);
            nghttp2_session_send(c->session);
            conn_close(c);
        }
    }
}

static void conn_flush(conn_t *c)
{
    if (c->dead)
        return;
    if (nghttp2_session_send(c->session) != 0 ||
        (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)))
        conn_close(c);
}

/* ---- threads ------------------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    ag_grpc_t *srv = arg;
    for (;;) {
        pthread_mutex_lock(&srv->mu);
        while (!srv->queue && !srv->workers_stop)
            pthread_cond_wait(&srv->cv, &srv->mu);
        job_t *j = srv->queue;
        if (!j) {
            pthread_mutex_unlock(&srv->mu);
            return NULL;
        }
        srv->queue = j->next;
        if (!srv->queue)
            srv->queue_tail = NULL;
        srv->queued--;
        pthread_mutex_unlock(&srv->mu);
        j->next = NULL;
        if (atomic_load(&j->cancelled))
            j->call.status = AG_GRPC_CANCELLED; /* reset while it waited: never started */
        else
            srv->handle(srv->ud, &j->call);
        pthread_mutex_lock(&srv->mu);
        j->next = srv->done;
        srv->done = j;
        pthread_mutex_unlock(&srv->mu);
        ssize_t w = write(srv->wake[1], "x", 1);
        (void)w;
    }
}

static void take_done(ag_grpc_t *srv)
{
    char drain[256];
    while (read(srv->wake[0], drain, sizeof(drain)) > 0) {
    }
    pthread_mutex_lock(&srv->mu);
    job_t *j = srv->done;
    srv->done = NULL;
    pthread_mutex_unlock(&srv->mu);
    while (j) {
        job_t *next = j->next;
        conn_t *c = j->conn;
        c->pending--;
        if (!c->dead) {
            stream_t *st = nghttp2_session_get_stream_user_data(c->session, j->stream_id);
            if (st && st->job == j) {
                st->running = false;
                st->job = NULL;
                deliver(st, j);
            }
        }
        job_free(j);
        j = next;
    }
}

static void *net_main(void *arg)
{
    ag_grpc_t *srv = arg;
    struct pollfd *pfd = NULL;
    conn_t **pc = NULL;
    size_t cap = 0;
    while (!atomic_load(&srv->stopping)) {
        size_t need = srv->nconns + 2;
        if (need > cap) {
            struct pollfd *g = realloc(pfd, need * sizeof(*pfd));
            conn_t **h = g ? realloc(pc, need * sizeof(*pc)) : NULL;
            if (g)
                pfd = g;
            if (h)
                pc = h;
            if (!g || !h) {
                usleep(10000);
                continue;
            }
            cap = need;
        }
        size_t n = 0;
        pfd[n++] = (struct pollfd){.fd = srv->listen_fd, .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = srv->wake[0], .events = POLLIN};
        for (conn_t *c = srv->conns; c; c = c->next) {
            if (c->dead)
                continue;
            short ev = POLLIN;
            if (c->tls && !c->handshaken)
                ev = gnutls_record_get_direction(c->tls) ? POLLOUT : POLLIN;
            else if (nghttp2_session_want_write(c->session))
                ev |= POLLOUT;
            pc[n] = c;
            pfd[n++] = (struct pollfd){.fd = c->fd, .events = ev};
        }
        if (poll(pfd, n, 1000) < 0 && errno != EINTR)
            break;
        if (pfd[1].revents & POLLIN)
            take_done(srv);
        for (size_t i = 2; i < n; i++) {
            conn_t *c = pc[i];
            if (c->dead)
                continue;
            if ((pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) ||
                (c->tls && !c->handshaken && (pfd[i].revents & POLLOUT)))
                conn_read(c);
        }
        sweep(srv);
        for (conn_t *c = srv->conns; c; c = c->next)
            conn_flush(c);
        if (pfd[0].revents & POLLIN) {
            for (int k = 0; k < 64; k++) {
                struct sockaddr_storage sa;
                socklen_t sl = sizeof(sa);
                int fd = accept4(srv->listen_fd, (struct sockaddr *)&sa, &sl, SOCK_CLOEXEC);
                if (fd < 0)
                    break;
                conn_t *c = conn_new(srv, fd, &sa);
                if (c)
                    conn_flush(c);
            }
        }
        /* Free connections that are closed and have no job in flight. */
        for (conn_t **pp = &srv->conns; *pp;) {
            conn_t *c = *pp;
            if (c->dead && c->pending == 0) {
                *pp = c->next;
                srv->nconns--;
                free(c);
            } else {
                pp = &c->next;
            }
        }
    }
    /* Shutting down: GOAWAY to every connection. */
    for (conn_t *c = srv->conns; c; c = c->next)
        if (!c->dead) {
            nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                                  nghttp2_session_get_last_proc_stream_id(c->session),
                                  NGHTTP2_NO_ERROR, NULL, 0);
            nghttp2_session_send(c->session);
        }
    free(pfd);
    free(pc);
    return NULL;
}

/* ---- start / stop -------------------------------------------------------------------------- */

int ag_grpc_start(const ag_grpc_config_t *cfg, ag_grpc_lookup_fn lookup, ag_grpc_handle_fn handle,
                  void *ud, ag_grpc_t **out, ag_diag_t *diag)
{
    ag_grpc_t *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return ag_fail(diag, AG_ENOMEM, "out of memory");
    srv->cfg = *cfg;
    if (!srv->cfg.max_msg)
        srv->cfg.max_msg = 32u << 20;
    srv->max_queue = cfg->max_queue ? cfg->max_queue : 64 * (cfg->threads ? cfg->threads : 4);
    srv->cfg.trusted_proxies = NULL; /* borrowed only during start */
    srv->lookup = lookup;
    srv->handle = handle;
    srv->ud = ud;
    srv->listen_fd = -1;
    srv->wake[0] = srv->wake[1] = -1;
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    int rc =
        ag_net_list_parse(&srv->proxies, cfg->trusted_proxies, "service.trusted_proxies", diag);
    if (rc)
        goto fail;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)cfg->port);
    int gai = getaddrinfo(cfg->host, port, &hints, &ai);
    if (gai != 0) {
        rc = ag_fail(diag, AG_ECONFIG, "service.grpc_port: cannot resolve %s: %s", cfg->host,
                     gai_strerror(gai));
        goto fail;
    }
    srv->listen_fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (srv->listen_fd < 0 ||
        setsockopt(srv->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(srv->listen_fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        listen(srv->listen_fd, 128) != 0) {
        rc = ag_fail(diag, AG_ECONFIG, "service.grpc_port: cannot listen on %s:%u: %s", cfg->host,
                     (unsigned)cfg->port, strerror(errno));
        freeaddrinfo(ai);
        goto fail;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage sa;
    socklen_t sl = sizeof(sa);
    getsockname(srv->listen_fd, (struct sockaddr *)&sa, &sl);
    srv->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                               : ((struct sockaddr_in *)&sa)->sin_port);
    if (cfg->tls_cert_pem) {
        gnutls_datum_t cert = {(unsigned char *)cfg->tls_cert_pem,
                               (unsigned)strlen(cfg->tls_cert_pem)};
        gnutls_datum_t key = {(unsigned char *)cfg->tls_key_pem,
                              (unsigned)strlen(cfg->tls_key_pem)};
        if (gnutls_certificate_allocate_credentials(&srv->creds) != GNUTLS_E_SUCCESS ||
            gnutls_certificate_set_x509_key_mem(srv->creds, &cert, &key, GNUTLS_X509_FMT_PEM) !=
                GNUTLS_E_SUCCESS ||
            gnutls_priority_init(&srv->prio, "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2", NULL) !=
                GNUTLS_E_SUCCESS) {
            rc = ag_fail(diag, AG_ECONFIG, "service.grpc_port: cannot use tls.cert/tls.key");
            goto fail;
        }
        if (cfg->tls_ca_pem && cfg->verify_client) {
            gnutls_datum_t ca = {(unsigned char *)cfg->tls_ca_pem,
                                 (unsigned)strlen(cfg->tls_ca_pem)};
            if (gnutls_certificate_set_x509_trust_mem(srv->creds, &ca, GNUTLS_X509_FMT_PEM) < 1) {
                rc = ag_fail(diag, AG_ECONFIG, "service.grpc_port: cannot use tls.ca_cert");
                goto fail;
            }
        }
    }
    if (pipe2(srv->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        rc = ag_fail(diag, AG_EINTERNAL, "grpc: pipe: %s", strerror(errno));
        goto fail;
    }
    srv->nworkers = cfg->threads ? cfg->threads : 4;
    srv->workers = calloc(srv->nworkers, sizeof(*srv->workers));
    if (!srv->workers) {
        rc = ag_fail(diag, AG_ENOMEM, "out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < srv->nworkers; i++)
        if (pthread_create(&srv->workers[i], NULL, worker_main, srv) != 0) {
            srv->nworkers = i;
            rc = ag_fail(diag, AG_EINTERNAL, "grpc: cannot start a worker thread");
            goto fail;
        }
    if (pthread_create(&srv->net, NULL, net_main, srv) != 0) {
        rc = ag_fail(diag, AG_EINTERNAL, "grpc: cannot start the network thread");
        goto fail;
    }
    *out = srv;
    return 0;
fail:
    pthread_mutex_lock(&srv->mu);
    srv->workers_stop = true;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    for (unsigned i = 0; i < srv->nworkers; i++)
        pthread_join(srv->workers[i], NULL);
    free(srv->workers);
    if (srv->listen_fd >= 0)
        close(srv->listen_fd);
    if (srv->creds)
        gnutls_certificate_free_credentials(srv->creds);
    if (srv->prio)
        gnutls_priority_deinit(srv->prio);
    if (srv->wake[0] >= 0) {
        close(srv->wake[0]);
        close(srv->wake[1]);
    }
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cv);
    free(srv);
    return rc;
}

uint16_t ag_grpc_port(const ag_grpc_t *srv)
{
    return srv->port;
}

void ag_grpc_stop(ag_grpc_t *srv, double grace_s)
{
    (void)grace_s; /* workers finish the calls they hold; queued calls run too, then all stop */
    if (!srv)
        return;
    atomic_store(&srv->stopping, true);
    ssize_t w = write(srv->wake[1], "x", 1);
    (void)w;
    pthread_join(srv->net, NULL);
    pthread_mutex_lock(&srv->mu);
    srv->workers_stop = true;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    for (unsigned i = 0; i < srv->nworkers; i++)
        pthread_join(srv->workers[i], NULL);
    free(srv->workers);
    for (job_t *j = srv->done; j;) {
        job_t *n = j->next;
        job_free(j);
        j = n;
    }
    while (srv->conns) {
        conn_t *c = srv->conns;
        srv->conns = c->next;
        conn_close(c);
        free(c);
    }
    close(srv->listen_fd);
    close(srv->wake[0]);
    close(srv->wake[1]);
    if (srv->creds)
        gnutls_certificate_free_credentials(srv->creds);
    if (srv->prio)
        gnutls_priority_deinit(srv->prio);
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cv);
    free(srv);
}

/* ---- fuzzing ------------------------------------------------------------------------------- */

int ag_grpc_feed(const ag_grpc_config_t *cfg, ag_grpc_lookup_fn lookup, ag_grpc_handle_fn handle,
                 void *ud, const uint8_t *data, size_t len)
{
    ag_grpc_t *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return AG_ENOMEM;
    srv->cfg = *cfg;
    if (!srv->cfg.max_msg)
        srv->cfg.max_msg = 32u << 20;
    srv->cfg.trusted_proxies = NULL;
    srv->max_queue = cfg->max_queue ? cfg->max_queue : 64;
    srv->lookup = lookup;
    srv->handle = handle;
    srv->ud = ud;
    srv->listen_fd = -1;
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    int sv[2] = {-1, -1};
    int rc = AG_EINTERNAL;
    if (pipe2(srv->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        srv->wake[0] = srv->wake[1] = -1;
        goto out;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        goto out;
    struct sockaddr_storage sa = {.ss_family = AF_INET};
    conn_t *c = conn_new(srv, sv[0], &sa); /* owns sv[0] from here, even on failure */
    sv[0] = -1;
    if (!c)
        goto out;
    rc = 0;
    /* The bytes in pieces of at most 4 KiB, the way they could arrive from the network; every
     * call completed meanwhile is run inline and answered; the answers are read and dropped. */
    char sink[65536];
    for (size_t off = 0; !c->dead && off <= len;) {
        size_t n = AG_MIN(len - off, (size_t)4096);
        if (n && nghttp2_session_mem_recv(c->session, data + off, n) < 0) {
            nghttp2_session_send(c->session);
            conn_close(c);
            break;
        }
        off += n;
        for (job_t *j; (j = srv->queue) != NULL;) {
            srv->queue = j->next;
            if (!srv->queue)
                srv->queue_tail = NULL;
            srv->queued--;
            j->next = NULL;
            if (atomic_load(&j->cancelled))
                j->call.status = AG_GRPC_CANCELLED;
            else
                srv->handle(srv->ud, &j->call);
            j->next = srv->done;
            srv->done = j;
        }
        take_done(srv);
        for (int k = 0; k < 64 && !c->dead; k++) {
            conn_flush(c);
            ssize_t r = read(sv[1], sink, sizeof(sink));
            if (r <= 0 && (c->dead || !nghttp2_session_want_write(c->session)))
                break;
        }
        if (n == 0)
            break;
    }
    conn_close(c);
    /* Jobs left in the queue (a connection closed meanwhile) are freed unrun. */
    for (job_t *j = srv->queue; j;) {
        job_t *next = j->next;
        c->pending--;
        job_free(j);
        j = next;
    }
    srv->queue = NULL;
    take_done(srv);
    free(c);
out:
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    if (srv->wake[0] >= 0) {
        close(srv->wake[0]);
        close(srv->wake[1]);
    }
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cv);
    free(srv);
    return rc;
}
