#include "ag_http_client.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <netdb.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

int ag_http_target_parse(const char *url, ag_http_target_t *out, ag_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    const char *p;
    if (strncmp(url, "https://", 8) == 0) {
        out->tls = true;
        p = url + 8;
    } else if (strncmp(url, "http://", 7) == 0) {
        p = url + 7;
    } else {
        return ag_fail(diag, AG_EINVAL,
                       "--url: expected http://host[:port] or https://host[:port]");
    }
    size_t hl;
    const char *rest;
    if (*p == '[') { /* [IPv6] */
        const char *end = strchr(p, ']');
        if (!end)
            return ag_fail(diag, AG_EINVAL, "--url: unterminated [IPv6 address]");
        hl = (size_t)(end - p - 1);
        if (hl == 0 || hl >= sizeof(out->host))
            return ag_fail(diag, AG_EINVAL, "--url: bad host");
        memcpy(out->host, p + 1, hl);
        rest = end + 1;
    } else {
        hl = strcspn(p, ":/");
        if (hl == 0 || hl >= sizeof(out->host))
            return ag_fail(diag, AG_EINVAL, "--url: missing or overlong host");
        memcpy(out->host, p, hl);
        rest = p + hl;
    }
    out->port = out->tls ? 443 : 80;
    if (*rest == ':') {
        char *end = NULL;
        unsigned long port = strtoul(rest + 1, &end, 10);
        if (end == rest + 1 || port == 0 || port > 65535)
            return ag_fail(diag, AG_EINVAL, "--url: bad port");
        out->port = (uint16_t)port;
        rest = end;
    }
    if (*rest == '/')
        rest++;
    if (*rest)
        return ag_fail(diag, AG_EINVAL, "--url: give the server only (no path): %s", url);
    return 0;
}

/* ---- one connection ------------------------------------------------------------------------ */

typedef struct conn {
    int fd;
    gnutls_session_t tls;
    gnutls_certificate_credentials_t cred;
    unsigned timeout_ms;
} conn_t;

static int wait_fd(const conn_t *c, short events)
{
    struct pollfd pfd = {c->fd, events, 0};
    int n;
    do
        n = poll(&pfd, 1, (int)c->timeout_ms);
    while (n < 0 && errno == EINTR);
    return n > 0 ? 0 : -1;
}

static ssize_t conn_write(conn_t *c, const char *buf, size_t len)
{
    if (c->tls) {
        ssize_t n;
        do
            n = gnutls_record_send(c->tls, buf, len);
        while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED);
        return n;
    }
    if (wait_fd(c, POLLOUT) != 0)
        return -1;
    return send(c->fd, buf, len, MSG_NOSIGNAL);
}

static ssize_t conn_read(conn_t *c, char *buf, size_t len)
{
    if (c->tls) {
        if (gnutls_record_check_pending(c->tls) == 0 && wait_fd(c, POLLIN) != 0)
            return -1;
        ssize_t n;
        do
            n = gnutls_record_recv(c->tls, buf, len);
        while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED);
        if (n == GNUTLS_E_PREMATURE_TERMINATION)
            return 0;
        return n;
    }
    if (wait_fd(c, POLLIN) != 0)
        return -1;
    return recv(c->fd, buf, len, 0);
}

static void conn_close(conn_t *c)
{
    if (c->tls) {
        gnutls_bye(c->tls, GNUTLS_SHUT_WR);
        gnutls_deinit(c->tls);
    }
    if (c->cred)
        gnutls_certificate_free_credentials(c->cred);
    if (c->fd >= 0)
        close(c->fd);
}

static int conn_open(conn_t *c, const ag_http_target_t *t, ag_diag_t *diag)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->timeout_ms = (t->timeout_s ? t->timeout_s : 60) * 1000u;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)t->port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(t->host, port, &hints, &res);
    if (gai != 0)
        return ag_fail(diag, AG_EIO, "cannot resolve %s: %s", t->host, gai_strerror(gai));
    for (struct addrinfo *a = res; a && c->fd < 0; a = a->ai_next) {
        c->fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (c->fd >= 0 && connect(c->fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(c->fd);
            c->fd = -1;
        }
    }
    freeaddrinfo(res);
    if (c->fd < 0)
        return ag_fail(diag, AG_EIO, "cannot connect to %s:%u: %s", t->host, (unsigned)t->port,
                       strerror(errno));
    if (!t->tls)
        return 0;
    int rc = gnutls_certificate_allocate_credentials(&c->cred);
    if (rc == 0)
        rc = t->ca_file
                 ? (gnutls_certificate_set_x509_trust_file(c->cred, t->ca_file,
                                                           GNUTLS_X509_FMT_PEM) > 0
                        ? 0
                        : GNUTLS_E_FILE_ERROR)
                 : (gnutls_certificate_set_x509_system_trust(c->cred) >= 0 ? 0
                                                                           : GNUTLS_E_FILE_ERROR);
    if (rc == 0)
        rc = gnutls_init(&c->tls, GNUTLS_CLIENT);
    if (rc == 0)
        rc = gnutls_set_default_priority(c->tls);
    if (rc == 0)
        rc = gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, c->cred);
    if (rc == 0)
        rc = gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, t->host, strlen(t->host));
    if (rc != 0)
        return ag_fail(diag, AG_EIO, "TLS set-up failed%s: %s", t->ca_file ? " (reading --ca)" : "",
                       gnutls_strerror(rc));
    gnutls_session_set_verify_cert(c->tls, t->host, 0);
    gnutls_transport_set_int(c->tls, c->fd);
    gnutls_handshake_set_timeout(c->tls, c->timeout_ms);
    do
        rc = gnutls_handshake(c->tls);
    while (rc < 0 && !gnutls_error_is_fatal(rc));
    if (rc < 0)
        return ag_fail(diag, AG_EIO, "TLS handshake with %s failed: %s", t->host,
                       gnutls_strerror(rc));
    return 0;
}

/* ---- the exchange -------------------------------------------------------------------------- */

static int send_all(conn_t *c, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = conn_write(c, buf, len);
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads until the peer closes (Connection: close), into a new buffer (caller frees). */
static char *read_all(conn_t *c, size_t *len, ag_diag_t *diag)
{
    size_t cap = 16384, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (cap - n < 4096) {
            if (cap >= AG_HTTP_CLIENT_MAX_REPLY + 65536) {
                free(buf);
                ag_fail(diag, AG_EIO, "the reply is larger than %u bytes",
                        AG_HTTP_CLIENT_MAX_REPLY);
                return NULL;
            }
            char *g = realloc(buf, cap * 2);
            if (!g)
                break;
            buf = g;
            cap *= 2;
        }
        ssize_t r = conn_read(c, buf + n, cap - n - 1);
        if (r == 0) {
            buf[n] = '\0';
            *len = n;
            return buf;
        }
        if (r < 0) {
            free(buf);
            ag_fail(diag, AG_EIO, "reading the reply failed or timed out");
            return NULL;
        }
        n += (size_t)r;
    }
    free(buf);
    ag_fail(diag, AG_ENOMEM, "out of memory reading the reply");
    return NULL;
}

/* Splits a raw reply into status and body (Content-Length or chunked is not needed: the
 * server closes after the body; a chunked reply is refused). */
static int parse_reply(char *raw, size_t len, ag_http_reply_t *out, ag_diag_t *diag)
{
    int major, minor, status;
    if (sscanf(raw, "HTTP/%d.%d %d", &major, &minor, &status) != 3)
        return ag_fail(diag, AG_EIO, "not an HTTP reply");
    char *end = strstr(raw, "\r\n\r\n");
    if (!end)
        return ag_fail(diag, AG_EIO, "the reply has no end of headers");
    *end = '\0';
    for (char *h = strstr(raw, "\r\n"); h; h = strstr(h + 2, "\r\n"))
        if (strncasecmp(h + 2, "transfer-encoding:", 18) == 0 && strstr(h + 2, "chunked"))
            return ag_fail(diag, AG_EIO, "chunked replies are not supported");
    size_t off = (size_t)(end + 4 - raw);
    out->status = status;
    out->len = len - off;
    out->body = malloc(out->len + 1);
    if (!out->body)
        return AG_ENOMEM;
    memcpy(out->body, raw + off, out->len);
    out->body[out->len] = '\0';
    return 0;
}

int ag_http_call(const ag_http_target_t *t, const char *method, const char *path, const char *key,
                 const char *body, size_t len, ag_http_reply_t *out, ag_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    conn_t c;
    int rc = conn_open(&c, t, diag);
    if (rc) {
        conn_close(&c);
        return rc;
    }
    char head[2048];
    int hn = snprintf(head, sizeof(head),
                      "%s %s HTTP/1.1\r\nHost: %s:%u\r\nConnection: close\r\n"
                      "User-Agent: aegis-cli/%s\r\nAccept: application/json\r\n"
                      "Content-Length: %zu\r\n%s%s%s%s\r\n",
                      method, path, t->host, (unsigned)t->port, AG_VERSION, body ? len : 0,
                      body ? "Content-Type: application/json\r\n" : "", key ? "api-key: " : "",
                      key ? key : "", key ? "\r\n" : "");
    if (hn < 0 || (size_t)hn >= sizeof(head)) {
        conn_close(&c);
        return ag_fail(diag, AG_EINVAL, "request line too long");
    }
    bool sent = send_all(&c, head, (size_t)hn) == 0 && (!body || send_all(&c, body, len) == 0);
    sodium_memzero(head, sizeof(head)); /* it held the key */
    if (!sent) {
        conn_close(&c);
        return ag_fail(diag, AG_EIO, "sending the request to %s failed", t->host);
    }
    size_t rlen = 0;
    char *raw = read_all(&c, &rlen, diag);
    conn_close(&c);
    if (!raw)
        return AG_EIO;
    rc = parse_reply(raw, rlen, out, diag);
    free(raw);
    return rc;
}
