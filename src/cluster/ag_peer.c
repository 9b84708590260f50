/*
 * ag_peer.c — node-to-node calls (docs/CLUSTER.md "Node-to-node calls"): the cluster secret, the
 * signed shard-local header, and parallel HTTP calls to other nodes with libcurl.
 */
#include <stdio.h>
#include <time.h>

#include <curl/curl.h>
#include <sodium.h>

#include "ag_cluster_int.h"

#define PEER_MAX_REPLY (256u << 20)

int ag_cluster_set_secret(ag_cluster_t *cl, const void *material, size_t len)
{
    ag_peer_auth_t *pa = NULL;
    int rc = ag_peer_auth_new(cl->node_id, material, len, 0, &pa);
    if (rc)
        return rc;
    ag_peer_auth_free(cl->peer);
    cl->peer = pa;
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ag_cluster_peer_verify(ag_cluster_t *cl, const ag_peer_req_t *r, const char *value,
                           ag_peer_claim_t *out, ag_diag_t *diag)
{
    if (!cl || !cl->peer) {
        memset(out, 0, sizeof(*out));
        return ag_fail(diag, AG_EUNAUTH, "Unauthorized: a shard-local call needs cluster mode");
    }
    return ag_peer_verify(cl->peer, r, value, now_ms(), out, diag);
}

/* ---- calls -------------------------------------------------------------------------------- */

typedef struct reply_buf {
    ag_peer_call_t *call;
    size_t cap;
} reply_buf_t;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    reply_buf_t *rb = ud;
    ag_peer_call_t *c = rb->call;
    size_t n = size * nmemb;
    if (c->reply_len + n + 1 > PEER_MAX_REPLY)
        return 0;
    if (c->reply_len + n + 1 > rb->cap) {
        size_t cap = AG_MAX(rb->cap * 2, c->reply_len + n + 1);
        cap = AG_MAX(cap, (size_t)4096);
        char *p = realloc(c->reply, cap);
        if (!p)
            return 0;
        c->reply = p;
        rb->cap = cap;
    }
    memcpy(c->reply + c->reply_len, ptr, n);
    c->reply_len += n;
    c->reply[c->reply_len] = '\0';
    return n;
}

/* One multi handle per calling thread keeps the connections to the other nodes open between
 * requests (freed when the thread ends). */
static pthread_key_t multi_key;
static pthread_once_t multi_once = PTHREAD_ONCE_INIT;
static void multi_free(void *m)
{
    curl_multi_cleanup(m);
}
static void multi_key_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_key_create(&multi_key, multi_free);
}

int ag_cluster_peer_calls(ag_cluster_t *cl, ag_peer_call_t *calls, size_t n, long timeout_ms)
{
    pthread_once(&multi_once, multi_key_init);
    CURLM *m = pthread_getspecific(multi_key);
    if (!m) {
        if (!(m = curl_multi_init()))
            return AG_ENOMEM;
        pthread_setspecific(multi_key, m);
    }
    CURL **easy = calloc(n, sizeof(*easy));
    struct curl_slist **hdrs = calloc(n, sizeof(*hdrs));
    reply_buf_t *rbs = calloc(n, sizeof(*rbs));
    if (n && (!easy || !hdrs || !rbs)) {
        free(easy);
        free(hdrs);
        free(rbs);
        return AG_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        ag_peer_call_t *c = &calls[i];
        c->status = 0;
        c->reply = NULL;
        c->reply_len = 0;
        c->err[0] = '\0';
        rbs[i].call = c;
        CURL *e = curl_easy_init();
        if (!e) {
            snprintf(c->err, sizeof(c->err), "out of memory");
            continue;
        }
        easy[i] = e;
        char url[2600];
        snprintf(url, sizeof(url), "%s%s", c->url, c->path);
        char sig[AG_PEER_HEADER_MAX], line[AG_PEER_HEADER_MAX + 64];
        if (!cl->peer ||
            ag_peer_sign(cl->peer, c->method, c->path, c->api_key, c->authorization, c->client,
                         c->body, c->body ? c->len : 0, now_ms(), sig, sizeof(sig)) != 0) {
            snprintf(c->err, sizeof(c->err),
                     "the call cannot be signed (no cluster secret, or "
                     "the client's address is not an IP address)");
            curl_easy_cleanup(e);
            easy[i] = NULL;
            continue;
        }
        snprintf(line, sizeof(line), "%s: %s", AG_CLUSTER_PEER_HEADER, sig);
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
        h = h ? curl_slist_append(h, line) : NULL;
        if (h && c->api_key) {
            char *kh = NULL;
            if (asprintf(&kh, "api-key: %s", c->api_key) > 0) {
                h = curl_slist_append(h, kh);
                sodium_memzero(kh, strlen(kh));
                free(kh);
            }
        }
        if (h && c->authorization) {
            char *ah = NULL;
            if (asprintf(&ah, "Authorization: %s", c->authorization) > 0) {
                h = curl_slist_append(h, ah);
                sodium_memzero(ah, strlen(ah));
                free(ah);
            }
        }
        hdrs[i] = h;
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->method);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, AG_MIN(timeout_ms, 2000L));
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &rbs[i]);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &rbs[i]);
        if (c->body) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->len);
        } else if (strcmp(c->method, "GET") != 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        }
        curl_multi_add_handle(m, e);
    }
    int running = 0;
    do {
        CURLMcode mc = curl_multi_perform(m, &running);
        if (mc != CURLM_OK)
            break;
        if (running)
            curl_multi_poll(m, NULL, 0, 200, NULL);
    } while (running);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        reply_buf_t *rb = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&rb);
        if (!rb)
            continue;
        if (msg->data.result == CURLE_OK) {
            long code = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            rb->call->status = (int)code;
        } else {
            snprintf(rb->call->err, sizeof(rb->call->err), "%s",
                     curl_easy_strerror(msg->data.result));
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (easy[i]) {
            curl_multi_remove_handle(m, easy[i]);
            curl_easy_cleanup(easy[i]);
        }
        curl_slist_free_all(hdrs[i]);
        if (calls[i].status == 0 && !calls[i].err[0])
            snprintf(calls[i].err, sizeof(calls[i].err), "no answer");
    }
    free(easy);
    free(hdrs);
    free(rbs);
    return 0;
}

void ag_cluster_peer_calls_free(ag_peer_call_t *calls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(calls[i].reply);
        calls[i].reply = NULL;
    }
}
