#include "ag_fetch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ag_clock.h"
#include "ag_file.h"
#include "ag_net.h"

#define MAX_HOSTS 64
#define MAX_HEADER 16384

/* Ranges never fetched from unless the allowlist names an address or block covering them:
 * "this" network, private, shared (CGNAT), loopback, link-local, benchmarking, multicast and
 * reserved, IPv6 unspecified/loopback/unique-local/link-local/multicast, and the IPv4-mapped
 * forms of all of them (IPv4 is held as ::ffff:a.b.c.d). */
static const char *const special[] = {
    "0.0.0.0/8",     "10.0.0.0/8",    "100.64.0.0/10",  "127.0.0.0/8",   "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24",  "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/3",
    "::/128",        "::1/128",       "fc00::/7",       "fe80::/10",     "ff00::/8",
    "64:ff9b::/96",  "2001:db8::/32",
};

typedef struct allow {
    char names[MAX_HOSTS][256];
    size_t nnames;
    ag_net_t nets[MAX_HOSTS];
    size_t nnets;
} allow_t;

static int parse_hosts(const char *hosts, allow_t *a, ag_diag_t *diag)
{
    memset(a, 0, sizeof(*a));
    const char *p = hosts;
    while (p && *p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',' && *end != ' ')
            end++;
        size_t n = (size_t)(end - p);
        if (n == 0)
            break;
        char item[256];
        if (n >= sizeof(item))
            return ag_fail(diag, AG_EINVAL, "a host entry is too long");
        memcpy(item, p, n);
        item[n] = '\0';
        if (ag_net_parse(item, &a->nets[a->nnets])) {
            if (++a->nnets >= MAX_HOSTS)
                return ag_fail(diag, AG_EINVAL, "too many entries (at most %d)", MAX_HOSTS - 1);
        } else {
            for (size_t i = 0; i < n; i++) {
                char ch = item[i];
                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.'))
                    return ag_fail(diag, AG_EINVAL, "'%s' is not a host name, address or block",
                                   item);
            }
            snprintf(a->names[a->nnames], sizeof(a->names[0]), "%s", item);
            if (++a->nnames >= MAX_HOSTS)
                return ag_fail(diag, AG_EINVAL, "too many entries (at most %d)", MAX_HOSTS - 1);
        }
        p = end;
    }
    return 0;
}

int ag_fetch_check_hosts(const char *hosts, ag_diag_t *diag)
{
    allow_t a;
    return parse_hosts(hosts, &a, diag);
}

static bool listed_addr(const allow_t *a, const uint8_t addr[16])
{
    for (size_t i = 0; i < a->nnets; i++)
        if (ag_net_contains(&a->nets[i], addr))
            return true;
    return false;
}

static bool is_special(const uint8_t addr[16])
{
    for (size_t i = 0; i < AG_ARRAY_LEN(special); i++) {
        ag_net_t n;
        if (ag_net_parse(special[i], &n) && ag_net_contains(&n, addr))
            return true;
    }
    return false;
}

static void to16(const struct sockaddr *sa, uint8_t out[16])
{
    memset(out, 0, 16);
    if (sa->sa_family == AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
    }
}

static int wait_fd(int fd, short ev, double deadline)
{
    for (;;) {
        double left = deadline - ag_now_mono();
        if (left <= 0)
            return AG_ETIMEOUT;
        struct pollfd p = {fd, ev, 0};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return AG_EIO;
    }
}

static int connect_to(const struct sockaddr *sa, socklen_t len, double deadline)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, sa, len) != 0) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (errno != EINPROGRESS || wait_fd(fd, POLLOUT, deadline) != 0 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

static int send_all(int fd, const char *buf, size_t len, double deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT, deadline) != 0)
                return AG_EIO;
            continue;
        }
        return AG_EIO;
    }
    return 0;
}

/* recv with the deadline; 0 at EOF, < 0 on error. */
static ssize_t recv_some(int fd, char *buf, size_t len, double deadline)
{
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno != EAGAIN && errno != EINTR)
            return -1;
        if (wait_fd(fd, POLLIN, deadline) != 0)
            return -1;
    }
}

/* ---- the connection: plain, or TLS through GnuTLS (docs/SECURITY.md "Snapshots") ----------- */

typedef struct conn {
    int fd;
    gnutls_session_t tls; /* NULL for http:// */
    gnutls_certificate_credentials_t cred;
} conn_t;

static void conn_close(conn_t *c)
{
    if (c->tls) {
        gnutls_deinit(c->tls);
        c->tls = NULL;
    }
    if (c->cred) {
        gnutls_certificate_free_credentials(c->cred);
        c->cred = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Waits for what the TLS session needs next (read or write). */
static int tls_wait(conn_t *c, double deadline)
{
    return wait_fd(c->fd, gnutls_record_get_direction(c->tls) ? POLLOUT : POLLIN, deadline);
}

/* The TLS handshake with host, verifying its certificate chain against the system's trust store
 * (and ca_file when given) and its name (a host given as an address must be named in the
 * certificate's IP addresses). Any failure refuses the location: fail closed. */
static int tls_start(conn_t *c, const char *host, bool literal, const char *ca_file,
                     double deadline, ag_diag_t *diag)
{
    if (gnutls_certificate_allocate_credentials(&c->cred) != GNUTLS_E_SUCCESS)
        return AG_ENOMEM;
    int n = gnutls_certificate_set_x509_system_trust(c->cred);
    if (ca_file && *ca_file) {
        int m = gnutls_certificate_set_x509_trust_file(c->cred, ca_file, GNUTLS_X509_FMT_PEM);
        if (m <= 0)
            return ag_fail(diag, AG_EINVAL,
                           "Bad request: storage.snapshot_recover_ca_file holds no usable "
                           "certificate");
        n = n > 0 ? n + m : m;
    }
    if (n <= 0)
        return ag_fail(diag, AG_EINVAL,
                       "Bad request: no trusted certificate authorities for https:// (the "
                       "system store is empty; set storage.snapshot_recover_ca_file)");
    if (gnutls_init(&c->tls, GNUTLS_CLIENT | GNUTLS_NONBLOCK) != GNUTLS_E_SUCCESS)
        return AG_ENOMEM;
    if (gnutls_set_default_priority(c->tls) != GNUTLS_E_SUCCESS ||
        gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, c->cred) != GNUTLS_E_SUCCESS ||
        (!literal &&
         gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, host, strlen(host)) != GNUTLS_E_SUCCESS))
        return ag_fail(diag, AG_EINTERNAL, "cannot set up the TLS session");
    gnutls_session_set_verify_cert(c->tls, host, 0); /* chain and name, in the handshake */
    gnutls_transport_set_int(c->tls, c->fd);
    for (;;) {
        int r = gnutls_handshake(c->tls);
        if (r == GNUTLS_E_SUCCESS)
            return 0;
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
            if (tls_wait(c, deadline) != 0)
                return ag_fail(diag, AG_EINVAL,
                               "Bad request: TLS handshake with '%.100s' timed out", host);
            continue;
        }
        if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
            gnutls_datum_t why = {NULL, 0};
            unsigned status = gnutls_session_get_verify_cert_status(c->tls);
            gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0);
            ag_fail(diag, AG_EINVAL,
                    "Bad request: the certificate of '%.100s' does not verify: %.200s", host,
                    why.data ? (const char *)why.data : "unknown reason");
            gnutls_free(why.data);
            return AG_EINVAL;
        }
        if (gnutls_error_is_fatal(r))
            return ag_fail(diag, AG_EINVAL, "Bad request: TLS handshake with '%.100s' failed: %s",
                           host, gnutls_strerror(r));
    }
}

static int conn_send(conn_t *c, const char *buf, size_t len, double deadline)
{
    if (!c->tls)
        return send_all(c->fd, buf, len, deadline);
    while (len > 0) {
        ssize_t n = gnutls_record_send(c->tls, buf, len);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
            if (tls_wait(c, deadline) != 0)
                return AG_EIO;
        } else {
            return AG_EIO;
        }
    }
    return 0;
}

/* 0 at EOF, < 0 on error. Over TLS a connection closed without close_notify ends the body only
 * when its length was announced and reached (the caller checks); here it is an error. */
static ssize_t conn_recv(conn_t *c, char *buf, size_t len, double deadline)
{
    if (!c->tls)
        return recv_some(c->fd, buf, len, deadline);
    for (;;) {
        ssize_t n = gnutls_record_recv(c->tls, buf, len);
        if (n >= 0)
            return n;
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
            if (tls_wait(c, deadline) != 0)
                return -1;
            continue;
        }
        return -1;
    }
}

int ag_fetch(const char *url, const ag_fetch_config_t *cfg, int out, uint64_t *len, ag_diag_t *diag)
{
    *len = 0;
    bool https = strncmp(url, "https://", 8) == 0;
    if (!https && strncmp(url, "http://", 7) != 0)
        return ag_fail(diag, AG_EINVAL, "Bad request: location must be an http(s):// URL");
    allow_t allow;
    if (parse_hosts(cfg->allowed_hosts ? cfg->allowed_hosts : "", &allow, diag) != 0)
        return AG_EINVAL;
    /* http://host[:port]/path — no user info, no fragments. */
    const char *h = url + (https ? 8 : 7);
    const char *path = strchr(h, '/');
    size_t hl = path ? (size_t)(path - h) : strlen(h);
    char host[256], port[8];
    snprintf(port, sizeof(port), "%s", https ? "443" : "80");
    if (hl == 0 || hl >= sizeof(host) || memchr(h, '@', hl) || strchr(url, '#') ||
        strpbrk(url, " \r\n\t"))
        return ag_fail(diag, AG_EINVAL, "Bad request: malformed location URL");
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (host[0] == '[') {
        char *close_br = strchr(host, ']');
        if (!close_br)
            return ag_fail(diag, AG_EINVAL, "Bad request: malformed location URL");
        *close_br = '\0';
        if (close_br[1] == ':')
            snprintf(port, sizeof(port), "%.6s", close_br + 2);
        memmove(host, host + 1, strlen(host + 1) + 1);
    } else {
        char *colon = strchr(host, ':');
        if (colon) {
            *colon = '\0';
            snprintf(port, sizeof(port), "%.6s", colon + 1);
        }
    }
    char *pend = NULL;
    long pn = strtol(port, &pend, 10);
    if (!pend || *pend || pn < 1 || pn > 65535 || !host[0])
        return ag_fail(diag, AG_EINVAL, "Bad request: malformed location URL");
    uint8_t lit[16];
    bool literal = ag_net_parse_addr(host, lit);
    bool named = false;
    for (size_t i = 0; i < allow.nnames; i++)
        named = named || strcasecmp(allow.names[i], host) == 0;
    if (!named && !(literal && listed_addr(&allow, lit)))
        return ag_fail(diag, AG_EFORBIDDEN,
                       "Forbidden: host '%.100s' is not in storage.snapshot_recover_hosts", host);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0 || !res)
        return ag_fail(diag, AG_EINVAL, "Bad request: cannot resolve '%.100s'", host);
    double deadline = ag_now_mono() + (cfg->timeout_s ? cfg->timeout_s : 300);
    int fd = -1;
    bool refused = false;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        uint8_t a[16];
        to16(ai->ai_addr, a);
        if (is_special(a) && !listed_addr(&allow, a)) {
            refused = true; /* a name that resolves inward is not followed there */
            continue;
        }
        fd = connect_to(ai->ai_addr, ai->ai_addrlen, deadline);
    }
    freeaddrinfo(res);
    conn_t conn = {fd, NULL, NULL};
    if (fd < 0)
        return refused ? ag_fail(diag, AG_EFORBIDDEN,
                                 "Forbidden: '%.100s' resolves to a loopback, private or "
                                 "link-local address not listed in "
                                 "storage.snapshot_recover_hosts",
                                 host)
                       : ag_fail(diag, AG_EINVAL, "Bad request: cannot connect to '%.100s'", host);
    char req[4096];
    int rn = snprintf(req, sizeof(req),
                      "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: aegis\r\nAccept: */*\r\n"
                      "%s%s%sConnection: close\r\n\r\n",
                      path ? path : "/", host, port, cfg->api_key ? "api-key: " : "",
                      cfg->api_key ? cfg->api_key : "", cfg->api_key ? "\r\n" : "");
    int rc = 0;
    if (rn < 0 || (size_t)rn >= sizeof(req) || (cfg->api_key && strpbrk(cfg->api_key, "\r\n")))
        rc = ag_fail(diag, AG_EINVAL, "Bad request: location or api_key is malformed");
    if (rc == 0 && https)
        rc = tls_start(&conn, host, literal, cfg->ca_file, deadline, diag);
    if (rc == 0 && conn_send(&conn, req, (size_t)rn, deadline) != 0)
        rc = ag_fail(diag, AG_EINVAL, "Bad request: cannot send the request to '%.100s'", host);
    char *buf = rc == 0 ? malloc(MAX_HEADER + 1) : NULL;
    size_t have = 0;
    char *body = NULL;
    if (rc == 0 && !buf)
        rc = AG_ENOMEM;
    while (rc == 0 && !body) {
        if (have == MAX_HEADER) {
            rc =
                ag_fail(diag, AG_EINVAL, "Bad request: the snapshot server sent oversized headers");
            break;
        }
        ssize_t n = conn_recv(&conn, buf + have, MAX_HEADER - have, deadline);
        if (n <= 0) {
            rc = ag_fail(diag, AG_EINVAL, "Bad request: the snapshot server closed the connection");
            break;
        }
        have += (size_t)n;
        buf[have] = '\0';
        char *e = strstr(buf, "\r\n\r\n");
        if (e)
            body = e + 4;
    }
    uint64_t clen = UINT64_MAX;
    if (rc == 0) {
        int status = 0;
        if (sscanf(buf, "HTTP/1.%*[01] %d", &status) != 1 || status != 200)
            rc = ag_fail(diag, AG_EINVAL,
                         "Bad request: fetching the snapshot answered HTTP %d (expected 200)",
                         status);
        for (char *line = strstr(buf, "\r\n"); rc == 0 && line && line + 2 < body;
             line = strstr(line + 2, "\r\n")) {
            if (strncasecmp(line + 2, "Content-Length:", 15) == 0) {
                char *end = NULL;
                clen = strtoull(line + 17, &end, 10);
            } else if (strncasecmp(line + 2, "Transfer-Encoding:", 18) == 0) {
                rc = ag_fail(
                    diag, AG_EINVAL,
                    "Bad request: the snapshot server used a transfer encoding (not supported)");
            }
        }
        if (rc == 0 && clen != UINT64_MAX && clen > cfg->max_bytes)
            rc = ag_fail(diag, AG_ETOOBIG,
                         "the snapshot is larger than "
                         "storage.snapshot_recover_max_mb");
    }
    uint64_t got = 0;
    if (rc == 0) {
        size_t first = have - (size_t)(body - buf);
        if (clen != UINT64_MAX && first > clen)
            first = (size_t)clen;
        if (first > cfg->max_bytes)
            rc = ag_fail(diag, AG_ETOOBIG, "the snapshot is larger than the cap");
        else if (first && ag_write_all(out, body, first) != 0)
            rc = AG_EIO;
        got = first;
    }
    char chunk[65536];
    while (rc == 0 && (clen == UINT64_MAX || got < clen)) {
        ssize_t n = conn_recv(&conn, chunk, sizeof(chunk), deadline);
        if (n < 0) {
            rc = ag_fail(diag, AG_EINVAL, "Bad request: the snapshot download failed");
            break;
        }
        if (n == 0) {
            if (clen != UINT64_MAX)
                rc = ag_fail(diag, AG_EINVAL, "Bad request: the snapshot download was cut short");
            break;
        }
        if (clen != UINT64_MAX && got + (uint64_t)n > clen)
            n = (ssize_t)(clen - got);
        if (got + (uint64_t)n > cfg->max_bytes) {
            rc = ag_fail(diag, AG_ETOOBIG,
                         "the snapshot is larger than "
                         "storage.snapshot_recover_max_mb");
            break;
        }
        if (ag_write_all(out, chunk, (size_t)n) != 0)
            rc = ag_fail(diag, AG_EIO, "cannot store the downloaded snapshot");
        got += (uint64_t)n;
    }
    free(buf);
    conn_close(&conn);
    *len = got;
    return rc;
}
