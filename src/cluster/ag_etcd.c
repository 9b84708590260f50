#include "ag_etcd.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "ag_grow.h"

#define MAX_ENDPOINTS 16
#define MAX_RESPONSE (64u << 20)

struct ag_etcd {
    pthread_mutex_t mu;
    CURL *curl;
    struct curl_slist *headers;
    char *urls[MAX_ENDPOINTS];
    size_t nurls;
    _Atomic size_t cur;
    long timeout_ms;
};

/* Set once by ag_etcd_set_tls before any handle exists, read-only afterwards (owned copies). */
static char *tls_ca, *tls_cert, *tls_key;

static int tls_file(char **slot, const char *path, const char *setting, ag_diag_t *diag)
{
    if (!path)
        return 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return ag_fail(diag, AG_ECONFIG, "%s: cannot read '%.300s': %s", setting, path,
                       strerror(errno));
    fclose(f);
    free(*slot);
    *slot = strdup(path);
    return *slot ? 0 : AG_ENOMEM;
}

int ag_etcd_set_tls(const char *ca_file, const char *cert_file, const char *key_file,
                    ag_diag_t *diag)
{
    int rc = tls_file(&tls_ca, ca_file, "cluster.etcd_ca_file", diag);
    if (rc == 0)
        rc = tls_file(&tls_cert, cert_file, "cluster.etcd_cert_file", diag);
    if (rc == 0)
        rc = tls_file(&tls_key, key_file, "cluster.etcd_key_file", diag);
    return rc;
}

/* How long connecting to a member may take. libcurl counts a TLS handshake as part of the
 * connection, and a handshake with certificate checks can take far longer than a TCP connect on
 * a loaded machine (over 500 ms was seen under AddressSanitizer): over TLS the whole request's
 * bound applies, so a hung member costs one request timeout before the next is tried. */
static long connect_ms(const char *url, long timeout_ms)
{
    return strncasecmp(url, "https://", 8) == 0 ? timeout_ms : AG_MIN(timeout_ms, 500L);
}

/* The TLS options of every request (curl_easy_reset clears them). Verification stays on. */
static void apply_tls(CURL *c)
{
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (tls_ca)
        curl_easy_setopt(c, CURLOPT_CAINFO, tls_ca);
    if (tls_cert)
        curl_easy_setopt(c, CURLOPT_SSLCERT, tls_cert);
    if (tls_key)
        curl_easy_setopt(c, CURLOPT_SSLKEY, tls_key);
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Memory: *out owns its copies of the URLs and the curl handle (ag_etcd_free). */
int ag_etcd_new(const char *endpoints, long timeout_ms, ag_etcd_t **out, ag_diag_t *diag)
{
    *out = NULL;
    pthread_once(&curl_once, curl_init_once);
    ag_etcd_t *e = calloc(1, sizeof(*e));
    if (!e)
        return AG_ENOMEM;
    pthread_mutex_init(&e->mu, NULL);
    e->timeout_ms = timeout_ms;
    const char *p = endpoints ? endpoints : "";
    while (*p && e->nurls < MAX_ENDPOINTS) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n && p[n - 1] == '/')
            n--;
        if (n && !(e->urls[e->nurls++] = strndup(p, n))) {
            ag_etcd_free(e);
            return AG_ENOMEM;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    e->curl = curl_easy_init();
    e->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (!e->curl || !e->headers) {
        ag_etcd_free(e);
        return AG_ENOMEM;
    }
    if (!e->nurls) {
        ag_etcd_free(e);
        return ag_fail(diag, AG_EINVAL, "cluster.etcd_endpoints: no endpoint");
    }
    *out = e;
    return 0;
}

void ag_etcd_free(ag_etcd_t *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->nurls; i++)
        free(e->urls[i]);
    if (e->curl)
        curl_easy_cleanup(e->curl);
    curl_slist_free_all(e->headers);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

const char *ag_etcd_endpoint(ag_etcd_t *e)
{
    return e->urls[atomic_load(&e->cur) % e->nurls];
}

void ag_etcd_next_endpoint(ag_etcd_t *e)
{
    atomic_fetch_add(&e->cur, 1);
}

/* ---- base64 ------------------------------------------------------------------------------- */

/* A new base64 string of the bytes (caller frees); NULL when out of memory. */
static char *b64(const void *data, size_t len)
{
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(cap);
    if (s)
        sodium_bin2base64(s, cap, data, len, sodium_base64_VARIANT_ORIGINAL);
    return s;
}

/* Decodes the string value j into a new buffer (*out, NUL-terminated for convenience; caller
 * frees). A missing value decodes as empty. */
static int unb64(const json_t *j, unsigned char **out, size_t *len)
{
    const char *s = json_is_string(j) ? json_string_value(j) : "";
    size_t n = strlen(s);
    unsigned char *buf = malloc(n + 1);
    if (!buf)
        return AG_ENOMEM;
    size_t got = 0;
    if (sodium_base642bin(buf, n + 1, s, n, NULL, &got, NULL, sodium_base64_VARIANT_ORIGINAL) !=
        0) {
        free(buf);
        return AG_EIO;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

/* The gateway writes 64-bit numbers as strings. */
static uint64_t num(const json_t *j)
{
    if (json_is_integer(j))
        return (uint64_t)json_integer_value(j);
    if (json_is_string(j))
        return strtoull(json_string_value(j), NULL, 10);
    return 0;
}

/* key + 1 in its last byte that is not 0xff: the end of the prefix range. NULL-terminated copy in
 * *out (caller frees); "\0" (everything) when key is all 0xff. */
static char *prefix_end(const void *key, size_t klen, size_t *elen)
{
    unsigned char *end = malloc(klen + 1);
    if (!end)
        return NULL;
    memcpy(end, key, klen);
    size_t n = klen;
    while (n && end[n - 1] == 0xff)
        n--;
    if (n) {
        end[n - 1]++;
    } else {
        end[0] = 0;
        n = 1;
    }
    *elen = n;
    char *s = b64(end, n);
    free(end);
    return s;
}

/* ---- requests ----------------------------------------------------------------------------- */

typedef struct buf {
    char *data;
    size_t len, cap;
} buf_t;

static size_t collect(char *ptr, size_t size, size_t nmemb, void *ud)
{
    buf_t *b = ud;
    size_t n = size * nmemb;
    if (b->len + n + 1 > MAX_RESPONSE ||
        AG_GROW(b->data, b->cap, b->len + n + 1, 4096, MAX_RESPONSE) != 0)
        return 0;
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/* POSTs body (a JSON object, consumed) to path; the parsed answer in *out (caller decrefs).
 * Lock held by the caller. */
static int post_locked(ag_etcd_t *e, const char *path, json_t *body, json_t **out, ag_diag_t *diag)
{
    *out = NULL;
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text)
        return AG_ENOMEM;
    int rc = AG_EUNAVAILABLE;
    size_t start = atomic_load(&e->cur);
    for (size_t tries = 0; tries < e->nurls; tries++) {
        size_t idx = (start + tries) % e->nurls;
        char url[600];
        snprintf(url, sizeof(url), "%s%s", e->urls[idx], path);
        buf_t b = {0};
        curl_easy_reset(e->curl);
        curl_easy_setopt(e->curl, CURLOPT_URL, url);
        curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, e->headers);
        curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, e->timeout_ms);
        curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS, connect_ms(url, e->timeout_ms));
        curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e->curl, CURLOPT_PROTOCOLS_STR, "http,https");
        apply_tls(e->curl);
        apply_tls(e->curl);
        CURLcode cc = curl_easy_perform(e->curl);
        long status = 0;
        curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &status);
        if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST) {
            free(b.data);
            rc =
                ag_fail(diag, AG_EUNAVAILABLE, "etcd %s: %s", e->urls[idx], curl_easy_strerror(cc));
            continue; /* never sent: the next member may take it */
        }
        atomic_store(&e->cur, idx);
        if (cc != CURLE_OK) {
            free(b.data);
            rc =
                ag_fail(diag, AG_EUNAVAILABLE, "etcd %s: %s", e->urls[idx], curl_easy_strerror(cc));
            if (cc == CURLE_OPERATION_TIMEDOUT)
                atomic_store(&e->cur, idx + 1); /* try another member next time */
            break;
        }
        json_t *j = b.data ? json_loadb(b.data, b.len, 0, NULL) : NULL;
        free(b.data);
        if (status != 200 || !json_is_object(j)) {
            const char *msg = json_string_value(json_object_get(j, "error"));
            if (!msg)
                msg = json_string_value(json_object_get(j, "message"));
            rc = ag_fail(diag, AG_EUNAVAILABLE, "etcd %s: HTTP %ld: %.200s", e->urls[idx], status,
                         msg ? msg : "not an etcd answer");
            json_decref(j);
            atomic_store(&e->cur, idx + 1); /* e.g. no leader there: another member next time */
            break;
        }
        *out = j;
        rc = 0;
        break;
    }
    free(text);
    return rc;
}

static int post(ag_etcd_t *e, const char *path, json_t *body, json_t **out, ag_diag_t *diag)
{
    pthread_mutex_lock(&e->mu);
    int rc = post_locked(e, path, body, out, diag);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

/* Decodes one {key, value, mod_revision} object. */
static int decode_kv(const json_t *j, ag_etcd_kv_t *kv)
{
    memset(kv, 0, sizeof(*kv));
    int rc = unb64(json_object_get(j, "key"), &kv->key, &kv->klen);
    if (rc == 0 && (rc = unb64(json_object_get(j, "value"), &kv->val, &kv->vlen)) != 0) {
        free(kv->key);
        kv->key = NULL;
    }
    kv->mod_rev = num(json_object_get(j, "mod_revision"));
    return rc;
}

static void free_kvs(ag_etcd_kv_t *kvs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(kvs[i].key);
        free(kvs[i].val);
    }
    free(kvs);
}

void ag_etcd_range_free(ag_etcd_range_t *r)
{
    if (!r)
        return;
    free_kvs(r->kvs, r->n);
    memset(r, 0, sizeof(*r));
}

/* Memory: out->kvs and their bytes owned by out (ag_etcd_range_free). */
int ag_etcd_range(ag_etcd_t *e, const void *key, size_t klen, bool prefix, ag_etcd_range_t *out,
                  ag_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    char *k = b64(key, klen);
    size_t elen = 0;
    char *end = prefix ? prefix_end(key, klen, &elen) : NULL;
    json_t *body = json_object();
    if (!k || (prefix && !end) || !body || json_object_set_new(body, "key", json_string(k)) < 0 ||
        (end && json_object_set_new(body, "range_end", json_string(end)) < 0)) {
        free(k);
        free(end);
        json_decref(body);
        return AG_ENOMEM;
    }
    free(k);
    free(end);
    json_t *res;
    int rc = post(e, "/v3/kv/range", body, &res, diag);
    if (rc)
        return rc;
    out->rev = num(json_object_get(json_object_get(res, "header"), "revision"));
    json_t *kvs = json_object_get(res, "kvs");
    size_t n = json_array_size(kvs);
    if (n && !(out->kvs = calloc(n, sizeof(*out->kvs))))
        rc = AG_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if ((rc = decode_kv(json_array_get(kvs, i), &out->kvs[i])) == 0)
            out->n++;
    }
    json_decref(res);
    if (rc) {
        ag_etcd_range_free(out);
        return ag_fail(diag, rc, "etcd: a range answer could not be decoded");
    }
    return 0;
}

int ag_etcd_txn(ag_etcd_t *e, const void *cmp_key, size_t cmp_klen, uint64_t cmp_rev,
                const ag_etcd_op_t *ops, size_t nops, bool *ok, uint64_t *rev, ag_diag_t *diag)
{
    *ok = false;
    *rev = 0;
    char *ck = b64(cmp_key, cmp_klen);
    char revs[32];
    snprintf(revs, sizeof(revs), "%llu", (unsigned long long)cmp_rev);
    json_t *succ = json_array();
    json_t *body =
        json_pack("{s:[{s:s?,s:s,s:s,s:s}],s:o,s:[]}", "compare", "key", ck, "target", "MOD",
                  "result", "EQUAL", "mod_revision", revs, "success", succ, "failure");
    free(ck);
    if (!body)
        return AG_ENOMEM;
    for (size_t i = 0; i < nops; i++) {
        char *k = b64(ops[i].key, ops[i].klen);
        char *v = ops[i].del ? NULL : b64(ops[i].val ? ops[i].val : "", ops[i].vlen);
        json_t *op;
        if (ops[i].del) {
            op = json_pack("{s:{s:s?}}", "request_delete_range", "key", k);
        } else {
            char lease[32];
            snprintf(lease, sizeof(lease), "%lld", (long long)ops[i].lease);
            op = json_pack("{s:{s:s?,s:s?,s:s}}", "request_put", "key", k, "value", v, "lease",
                           lease);
        }
        free(k);
        free(v);
        if (!op || !k || (!ops[i].del && !v) || json_array_append_new(succ, op) < 0) {
            json_decref(body);
            return AG_ENOMEM;
        }
    }
    json_t *res;
    int rc = post(e, "/v3/kv/txn", body, &res, diag);
    if (rc)
        return rc;
    *ok = json_is_true(json_object_get(res, "succeeded"));
    *rev = num(json_object_get(json_object_get(res, "header"), "revision"));
    json_decref(res);
    return 0;
}

int ag_etcd_put(ag_etcd_t *e, const void *key, size_t klen, const void *val, size_t vlen,
                int64_t lease, ag_diag_t *diag)
{
    char *k = b64(key, klen), *v = b64(val, vlen);
    char ls[32];
    snprintf(ls, sizeof(ls), "%lld", (long long)lease);
    json_t *body = k && v ? json_pack("{s:s,s:s,s:s}", "key", k, "value", v, "lease", ls) : NULL;
    free(k);
    free(v);
    if (!body)
        return AG_ENOMEM;
    json_t *res;
    int rc = post(e, "/v3/kv/put", body, &res, diag);
    json_decref(res);
    return rc;
}

int ag_etcd_lease_grant(ag_etcd_t *e, int64_t ttl_s, int64_t *id, ag_diag_t *diag)
{
    char ttl[32];
    snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_s);
    json_t *res;
    int rc = post(e, "/v3/lease/grant", json_pack("{s:s}", "TTL", ttl), &res, diag);
    if (rc)
        return rc;
    *id = (int64_t)num(json_object_get(res, "ID"));
    json_decref(res);
    return *id ? 0 : ag_fail(diag, AG_EIO, "etcd: lease grant without an id");
}

int ag_etcd_lease_keepalive(ag_etcd_t *e, int64_t id, int64_t *ttl_left, ag_diag_t *diag)
{
    char ids[32];
    snprintf(ids, sizeof(ids), "%lld", (long long)id);
    json_t *res;
    int rc = post(e, "/v3/lease/keepalive", json_pack("{s:s}", "ID", ids), &res, diag);
    if (rc)
        return rc;
    /* The gateway streams: the one answer is {"result": {...}}. */
    json_t *r = json_object_get(res, "result");
    *ttl_left = (int64_t)num(json_object_get(r ? r : res, "TTL"));
    json_decref(res);
    return 0;
}

/* ---- watch -------------------------------------------------------------------------------- */

typedef struct watch_ctx {
    buf_t b;
    ag_etcd_watch_fn fn;
    void *ud;
    const _Atomic bool *stop;
    bool ended; /* by fn */
    bool started;
} watch_ctx_t;

/* One line of the stream: {"result": {"header", "events", "created", "canceled",
 * "compact_revision"}}. Returns nonzero to end. */
static int watch_line(watch_ctx_t *w, const char *line, size_t len)
{
    json_t *j = json_loadb(line, len, 0, NULL);
    json_t *r = json_object_get(j, "result");
    if (!r) {
        json_decref(j);
        return 1; /* an error object: the stream is over */
    }
    w->started = true;
    uint64_t rev = num(json_object_get(json_object_get(r, "header"), "revision"));
    bool compacted = num(json_object_get(r, "compact_revision")) != 0;
    bool canceled = json_is_true(json_object_get(r, "canceled"));
    json_t *evs = json_object_get(r, "events");
    size_t n = json_array_size(evs);
    ag_etcd_kv_t *kvs = n ? calloc(n, sizeof(*kvs)) : NULL;
    size_t got = 0;
    int rc = n && !kvs ? 1 : 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *ev = json_array_get(evs, i);
        if (decode_kv(json_object_get(ev, "kv"), &kvs[i]) != 0) {
            rc = 1;
            break;
        }
        got++;
        const char *type = json_string_value(json_object_get(ev, "type"));
        kvs[i].del = type && strcmp(type, "DELETE") == 0;
    }
    if (rc == 0 && (n || compacted))
        rc = w->fn(w->ud, kvs, got, rev, compacted);
    if (rc)
        w->ended = true;
    free_kvs(kvs, got);
    json_decref(j);
    return rc || canceled;
}

static size_t watch_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    watch_ctx_t *w = ud;
    size_t n = size * nmemb;
    if (collect(ptr, size, nmemb, &w->b) != n)
        return 0;
    char *start = w->b.data, *nl;
    while ((nl = memchr(start, '\n', w->b.len - (size_t)(start - w->b.data))) != NULL) {
        if (nl > start && watch_line(w, start, (size_t)(nl - start)))
            return 0;
        start = nl + 1;
    }
    size_t rest = w->b.len - (size_t)(start - w->b.data);
    /* Some gateways do not end a message with a newline: try the rest as a whole message. */
    if (rest && start[0] == '{' && start[rest - 1] == '}') {
        json_t *probe = json_loadb(start, rest, 0, NULL);
        if (probe) {
            json_decref(probe);
            if (watch_line(w, start, rest))
                return 0;
            rest = 0;
        }
    }
    memmove(w->b.data, start, rest);
    w->b.len = rest;
    return n;
}

static int watch_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    AG_UNUSED(a);
    AG_UNUSED(b);
    AG_UNUSED(c);
    AG_UNUSED(d);
    const watch_ctx_t *w = ud;
    return atomic_load(w->stop) ? 1 : 0;
}

int ag_etcd_watch(ag_etcd_t *e, const void *key, size_t klen, bool prefix, uint64_t start_rev,
                  ag_etcd_watch_fn fn, void *ud, const _Atomic bool *stop, ag_diag_t *diag)
{
    char *k = b64(key, klen);
    size_t elen = 0;
    char *end = prefix ? prefix_end(key, klen, &elen) : NULL;
    char revs[32];
    snprintf(revs, sizeof(revs), "%llu", (unsigned long long)start_rev);
    json_t *body = json_pack("{s:{s:s?,s:s?,s:s}}", "create_request", "key", k, "range_end", end,
                             "start_revision", revs);
    free(k);
    free(end);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text)
        return AG_ENOMEM;
    pthread_mutex_lock(&e->mu);
    size_t idx = atomic_load(&e->cur) % e->nurls;
    char url[600];
    snprintf(url, sizeof(url), "%s/v3/watch", e->urls[idx]);
    watch_ctx_t w = {.fn = fn, .ud = ud, .stop = stop};
    curl_easy_reset(e->curl);
    curl_easy_setopt(e->curl, CURLOPT_URL, url);
    curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, e->headers);
    curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, watch_data);
    curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, &w);
    curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS, connect_ms(url, e->timeout_ms));
    curl_easy_setopt(e->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e->curl, CURLOPT_XFERINFOFUNCTION, watch_progress);
    curl_easy_setopt(e->curl, CURLOPT_XFERINFODATA, &w);
    curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    /* A member that stops answering without closing: the probe notices (docs/CLUSTER.md). */
    curl_easy_setopt(e->curl, CURLOPT_TCP_KEEPALIVE, 1L);
    CURLcode cc = curl_easy_perform(e->curl);
    pthread_mutex_unlock(&e->mu);
    free(text);
    free(w.b.data);
    if (w.ended || atomic_load(stop))
        return 0;
    /* Whatever broke it, the next attempt goes to the next member. */
    atomic_store(&e->cur, idx + 1);
    return ag_fail(diag, AG_EUNAVAILABLE, "etcd %s: watch ended: %s", url,
                   cc == CURLE_OK ? "closed by the server" : curl_easy_strerror(cc));
}
