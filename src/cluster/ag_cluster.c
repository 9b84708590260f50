#include "ag_cluster.h"
#include "ag_cluster_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include <sodium.h>

#include "ag_etcd.h"
#include "ag_grow.h"
#include "ag_log.h"

/* Key layout in etcd (docs/CLUSTER.md "Keys in etcd"). */
#define SEC_PREFIX "/aegis/sec/"
#define VERSION_KEY SEC_PREFIX "@version"
#define NODES_PREFIX "/aegis/nodes/"
#define NODE_LEASE_S 10

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void atomic_max(_Atomic uint64_t *a, uint64_t v)
{
    uint64_t cur = atomic_load(a);
    while (cur < v && !atomic_compare_exchange_weak(a, &cur, v)) {
    }
}

static void confirm(ag_cluster_t *cl, int64_t sent_at)
{
    atomic_store(&cl->fresh_until, sent_at + cl->stale_ns);
    atomic_store(&cl->confirmed_at, sent_at);
}

/* ---- keys ----------------------------------------------------------------------------------- */

/* "/aegis/sec/<store>/<table>/<key>" split in place: 0, or -1 for a key of another shape (the
 * version key among them). Pointers borrowed from k. */
static int split_key(const unsigned char *k, size_t klen, const char **store, size_t *slen,
                     const char **table, size_t *tlen, const unsigned char **key, size_t *keylen)
{
    size_t plen = strlen(SEC_PREFIX);
    if (klen <= plen || memcmp(k, SEC_PREFIX, plen) != 0)
        return -1;
    const unsigned char *p = k + plen, *end = k + klen;
    const unsigned char *s1 = memchr(p, '/', (size_t)(end - p));
    if (!s1 || s1 == p)
        return -1;
    const unsigned char *s2 = memchr(s1 + 1, '/', (size_t)(end - s1 - 1));
    if (!s2 || s2 == s1 + 1 || (size_t)(s2 - s1 - 1) >= 32)
        return -1;
    *store = (const char *)p;
    *slen = (size_t)(s1 - p);
    *table = (const char *)s1 + 1;
    *tlen = (size_t)(s2 - s1 - 1);
    *key = s2 + 1;
    *keylen = (size_t)(end - s2 - 1);
    return 0;
}

/* A new key "/aegis/sec/<store>/<table>/<key>" (caller frees). */
static unsigned char *make_key(const char *store, const char *table, const void *key, size_t klen,
                               size_t *out_len)
{
    size_t head = strlen(SEC_PREFIX) + strlen(store) + 1 + strlen(table) + 1;
    unsigned char *k = malloc(head + klen + 1);
    if (!k)
        return NULL;
    snprintf((char *)k, head + 1, "%s%s/%s/", SEC_PREFIX, store, table);
    memcpy(k + head, key, klen);
    *out_len = head + klen;
    return k;
}

/* ---- applying what etcd holds ---------------------------------------------------------------- */

/* Builds the changes of events ev[0..n) (one revision, or a whole range) that belong to store
 * name; tables are copied into tbl (n × 32 bytes). Returns how many. */
static size_t changes_for(const char *name, const ag_etcd_kv_t *ev, size_t n, ag_repl_change_t *ch,
                          char (*tbl)[32])
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const char *store, *table;
        const unsigned char *key;
        size_t slen, tlen, keylen;
        if (split_key(ev[i].key, ev[i].klen, &store, &slen, &table, &tlen, &key, &keylen) != 0)
            continue;
        if (slen != strlen(name) || memcmp(store, name, slen) != 0)
            continue;
        memcpy(tbl[m], table, tlen);
        tbl[m][tlen] = '\0';
        ch[m] = (ag_repl_change_t){tbl[m], key, keylen, ev[i].val, ev[i].vlen, ev[i].del};
        m++;
    }
    return m;
}

/* Applies ev[0..n) to every sink (reset = they are the whole state) at revision rev. Lock
 * apply_mu held. */
static int apply_all(ag_cluster_t *cl, const ag_etcd_kv_t *ev, size_t n, uint64_t rev, bool reset,
                     const sink_t *only)
{
    ag_repl_change_t *ch = n ? calloc(n, sizeof(*ch)) : NULL;
    char(*tbl)[32] = n ? calloc(n, sizeof(*tbl)) : NULL;
    if (n && (!ch || !tbl)) {
        free(ch);
        free(tbl);
        return AG_ENOMEM;
    }
    int rc = 0;
    size_t count = only ? 1 : cl->nsinks;
    for (size_t s = 0; s < count && rc >= 0; s++) {
        const sink_t *sk = only ? only : &cl->sinks[s];
        size_t m = changes_for(sk->name, ev, n, ch, tbl);
        if (m || reset) {
            int r = sk->apply(sk->sink, reset, ch, m, rev);
            if (r < 0)
                rc = r;
        }
    }
    free(ch);
    free(tbl);
    return rc < 0 ? rc : 0;
}

static uint64_t version_of(const ag_etcd_range_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->kvs[i].klen == strlen(VERSION_KEY) &&
            memcmp(r->kvs[i].key, VERSION_KEY, r->kvs[i].klen) == 0)
            return r->kvs[i].mod_rev;
    return 0;
}

/* Reloads every store from one linearizable read of the whole security state. */
static int full_reload(ag_cluster_t *cl, ag_etcd_t *e, ag_diag_t *diag)
{
    int64_t sent = mono_ns();
    ag_etcd_range_t r;
    int rc = ag_etcd_range(e, SEC_PREFIX, strlen(SEC_PREFIX), true, &r, diag);
    if (rc)
        return rc;
    uint64_t v = version_of(&r);
    pthread_mutex_lock(&cl->apply_mu);
    /* Another reload (the watch's or the probe's) may have applied a newer read meanwhile: never
     * go back to an older state. */
    bool older = v < atomic_load(&cl->published) && !atomic_load(&cl->resync);
    rc = older ? 0 : apply_all(cl, r.kvs, r.n, v, true, NULL);
    if (rc == 0 && !older) {
        atomic_store(&cl->published, v);
        atomic_store(&cl->resync, false);
        atomic_max(&cl->watch_from, r.rev + 1);
        confirm(cl, sent);
    }
    pthread_mutex_unlock(&cl->apply_mu);
    ag_etcd_range_free(&r);
    if (rc)
        return ag_fail(diag, rc, "cluster: cannot write the security state's local copy");
    ag_log(AG_LOG_INFO, "cluster: security state reloaded from etcd at revision %llu",
           (unsigned long long)v);
    return 0;
}

/* ---- the replicator (base/ag_repl.h) ----------------------------------------------------------
 */

static int repl_attach(void *ctx, const char *name, void *sink, ag_repl_apply_fn apply,
                       ag_diag_t *diag)
{
    ag_cluster_t *cl = ctx;
    if (cl->nsinks >= MAX_SINKS || strlen(name) >= sizeof(cl->sinks[0].name))
        return ag_fail(diag, AG_EINTERNAL, "cluster: too many replicated stores");
    ag_etcd_range_t r;
    int rc = ag_etcd_range(cl->writer, SEC_PREFIX, strlen(SEC_PREFIX), true, &r, diag);
    if (rc)
        return ag_fail(diag, rc, "cluster: cannot load the %s from etcd (%s)", name,
                       ag_etcd_endpoint(cl->writer));
    pthread_mutex_lock(&cl->apply_mu);
    sink_t *sk = &cl->sinks[cl->nsinks];
    snprintf(sk->name, sizeof(sk->name), "%s", name);
    sk->sink = sink;
    sk->apply = apply;
    uint64_t v = version_of(&r);
    rc = apply_all(cl, r.kvs, r.n, v, true, sk);
    if (rc == 0) {
        /* Stores loaded at different revisions: the lowest is what all of them reflect; the
         * watch starts early enough to bring the others level (and start() reloads anyway). */
        if (cl->nsinks == 0 || v < atomic_load(&cl->published))
            atomic_store(&cl->published, v);
        cl->nsinks++;
    }
    pthread_mutex_unlock(&cl->apply_mu);
    ag_etcd_range_free(&r);
    if (rc)
        return ag_fail(diag, rc, "cluster: cannot write the local copy of the %s", name);
    return 0;
}

static void repl_detach(void *ctx, void *sink)
{
    ag_cluster_t *cl = ctx;
    pthread_mutex_lock(&cl->apply_mu);
    for (size_t i = 0; i < cl->nsinks; i++) {
        if (cl->sinks[i].sink == sink) {
            memmove(&cl->sinks[i], &cl->sinks[i + 1], (cl->nsinks - i - 1) * sizeof(sink_t));
            cl->nsinks--;
            break;
        }
    }
    pthread_mutex_unlock(&cl->apply_mu);
}

static uint64_t repl_base(void *ctx)
{
    ag_cluster_t *cl = ctx;
    uint64_t pinned = ag_repl_pinned();
    return pinned ? pinned : atomic_load(&cl->published);
}

static int repl_commit(void *ctx, const char *name, uint64_t base, const ag_repl_change_t *ch,
                       size_t n, uint64_t *rev, ag_diag_t *diag)
{
    ag_cluster_t *cl = ctx;
    ag_etcd_op_t *ops = calloc(n + 1, sizeof(*ops));
    unsigned char **keys = calloc(n + 1, sizeof(*keys));
    int rc = ops && keys ? 0 : AG_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t klen;
        if (!(keys[i] = make_key(name, ch[i].table, ch[i].key, ch[i].klen, &klen))) {
            rc = AG_ENOMEM;
            break;
        }
        ops[i] = (ag_etcd_op_t){keys[i], ch[i].val, klen, ch[i].vlen, ch[i].del, 0};
    }
    /* The version key's value names this commit, so a commit whose answer was lost can be
     * recognised by reading the key back. */
    char token[128];
    snprintf(token, sizeof(token), "%s:%llu", cl->node_id,
             (unsigned long long)atomic_fetch_add(&cl->txn_seq, 1) + 1);
    if (rc == 0) {
        /* Every change rewrites the version key: its mod_revision names the state. */
        ops[n] = (ag_etcd_op_t){VERSION_KEY, token, strlen(VERSION_KEY), strlen(token), false, 0};
        bool ok = false;
        ag_diag_t ed = {{0}};
        rc = ag_etcd_txn(cl->writer, VERSION_KEY, strlen(VERSION_KEY), base, ops, n + 1, &ok, rev,
                         &ed);
        if (rc) {
            /* Sent and no answer: did it land? (If not now, it may still: then the watch brings
             * it, and the caller, told 503, sees the change when it looks.) */
            ag_etcd_range_t r;
            ag_diag_t rd = {{0}};
            if (ag_etcd_range(cl->writer, VERSION_KEY, strlen(VERSION_KEY), false, &r, &rd) == 0) {
                if (r.n && r.kvs[0].vlen == strlen(token) &&
                    memcmp(r.kvs[0].val, token, r.kvs[0].vlen) == 0) {
                    *rev = r.kvs[0].mod_rev;
                    ok = true;
                    rc = 0;
                }
                ag_etcd_range_free(&r);
            }
        }
        if (rc)
            rc = ag_fail(diag, AG_EUNAVAILABLE,
                         "cluster: the security state cannot be changed while etcd is "
                         "unreachable (%s); the change was not confirmed",
                         ed.msg);
        else if (!ok)
            rc = ag_fail(diag, AG_ECONFLICT,
                         "cluster: the security state changed while this request ran (it was "
                         "checked at revision %llu); nothing was written: retry the request",
                         (unsigned long long)base);
    }
    for (size_t i = 0; keys && i < n; i++)
        free(keys[i]);
    free(keys);
    free(ops);
    return rc;
}

static void repl_done(void *ctx, uint64_t rev, bool ok)
{
    ag_cluster_t *cl = ctx;
    if (ok)
        atomic_max(&cl->published, rev);
    else
        atomic_store(&cl->resync, true);
}

/* ---- watch ---------------------------------------------------------------------------------- */

static int on_watch(void *ud, const ag_etcd_kv_t *ev, size_t n, uint64_t rev, bool compacted)
{
    AG_UNUSED(rev);
    ag_cluster_t *cl = ud;
    if (compacted) {
        atomic_store(&cl->resync, true);
        return 1;
    }
    pthread_mutex_lock(&cl->apply_mu);
    int rc = 0;
    /* Events come in revision order; one transaction's events share its revision. */
    for (size_t i = 0; i < n && rc == 0;) {
        size_t j = i;
        while (j < n && ev[j].mod_rev == ev[i].mod_rev)
            j++;
        rc = apply_all(cl, ev + i, j - i, ev[i].mod_rev, false, NULL);
        if (rc == 0) {
            atomic_max(&cl->published, ev[i].mod_rev);
            atomic_max(&cl->watch_from, ev[i].mod_rev + 1);
        }
        i = j;
    }
    pthread_mutex_unlock(&cl->apply_mu);
    if (rc) {
        atomic_store(&cl->resync, true);
        return 1;
    }
    return 0;
}

static void pause_ms(ag_cluster_t *cl, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = ts.tv_nsec + ms * 1000000;
    ts.tv_sec += ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    pthread_mutex_lock(&cl->wait_mu);
    if (!atomic_load(&cl->stop))
        pthread_cond_timedwait(&cl->wait_cv, &cl->wait_mu, &ts);
    pthread_mutex_unlock(&cl->wait_mu);
}

static void *watch_main(void *arg)
{
    ag_cluster_t *cl = arg;
    bool broken = false;
    while (!atomic_load(&cl->stop)) {
        if (atomic_load(&cl->resync)) {
            ag_diag_t d = {{0}};
            if (full_reload(cl, cl->watcher, &d) != 0) {
                pause_ms(cl, 200);
                continue;
            }
        }
        ag_diag_t d = {{0}};
        int rc = ag_etcd_watch(cl->watcher, SEC_PREFIX, strlen(SEC_PREFIX), true,
                               atomic_load(&cl->watch_from), on_watch, cl, &cl->kick, &d);
        if (atomic_load(&cl->stop))
            break;
        if (atomic_exchange(&cl->kick, false)) {
            ag_log(AG_LOG_WARN, "cluster: the watch on %s fell behind; reconnecting",
                   ag_etcd_endpoint(cl->watcher));
            ag_etcd_next_endpoint(cl->watcher);
            continue;
        }
        if (rc && !broken)
            ag_log(AG_LOG_WARN, "cluster: %s; reconnecting", d.msg);
        broken = rc != 0;
        pause_ms(cl, 100);
    }
    return NULL;
}

/* ---- probe: the freshness lease, and the node's registration ------------------------------- */

static int register_node(ag_cluster_t *cl, ag_etcd_t *e, ag_diag_t *diag)
{
    int rc = ag_etcd_lease_grant(e, NODE_LEASE_S, &cl->lease, diag);
    if (rc)
        return rc;
    json_t *rec =
        json_pack("{s:s,s:s}", "node_id", cl->node_id, "advertise_url", cl->advertise_url);
    char *text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    json_decref(rec);
    if (!text)
        return AG_ENOMEM;
    char key[200];
    snprintf(key, sizeof(key), "%s%s", NODES_PREFIX, cl->node_id);
    rc = ag_etcd_put(e, key, strlen(key), text, strlen(text), cl->lease, diag);
    free(text);
    return rc;
}

static void *probe_main(void *arg)
{
    ag_cluster_t *cl = arg;
    int64_t next_keepalive = 0;
    bool down = false;
    while (!atomic_load(&cl->stop)) {
        int64_t sent = mono_ns();
        ag_etcd_range_t r;
        ag_diag_t d = {{0}};
        if (ag_etcd_range(cl->prober, VERSION_KEY, strlen(VERSION_KEY), false, &r, &d) == 0) {
            uint64_t v = r.n ? r.kvs[0].mod_rev : 0;
            ag_etcd_range_free(&r);
            if (down)
                ag_log(AG_LOG_INFO, "cluster: etcd answers again");
            down = false;
            /* A change the watch has not brought yet: usually it is on its way; give it 100 ms. */
            if (atomic_load(&cl->published) < v && !atomic_load(&cl->resync))
                pause_ms(cl, 100);
            if (atomic_load(&cl->published) >= v && !atomic_load(&cl->resync)) {
                confirm(cl, sent);
            } else {
                /* The watch did not bring it (stuck on a hung member, or broken): read
                 * everything. */
                ag_diag_t rd = {{0}};
                (void)full_reload(cl, cl->prober, &rd);
                atomic_store(&cl->kick, true); /* and the watch starts over elsewhere */
            }
        } else if (!down) {
            down = true;
            ag_log(AG_LOG_WARN,
                   "cluster: cannot confirm the security state (%s); authenticated requests are "
                   "refused once it is %lld ms old",
                   d.msg, (long long)(cl->stale_ns / 1000000));
        }
        if (sent >= next_keepalive && !down) {
            int64_t ttl = 0;
            ag_diag_t kd = {{0}};
            if (cl->lease == 0 || ag_etcd_lease_keepalive(cl->prober, cl->lease, &ttl, &kd) != 0 ||
                ttl == 0)
                (void)register_node(cl, cl->prober, &kd);
            next_keepalive = sent + (int64_t)NODE_LEASE_S * 1000000000 / 4;
        }
        int64_t left = (sent + cl->probe_ns - mono_ns()) / 1000000;
        if (left > 0)
            pause_ms(cl, left);
    }
    return NULL;
}

/* ---- life ----------------------------------------------------------------------------------- */

/* Memory: *out owns the etcd clients and threads (ag_cluster_free). */
int ag_cluster_new(const ag_cluster_config_t *cfg, ag_cluster_t **out, ag_diag_t *diag)
{
    *out = NULL;
    ag_cluster_t *cl = calloc(1, sizeof(*cl));
    if (!cl)
        return AG_ENOMEM;
    snprintf(cl->node_id, sizeof(cl->node_id), "%s", cfg->node_id ? cfg->node_id : "");
    snprintf(cl->advertise_url, sizeof(cl->advertise_url), "%s",
             cfg->advertise_url ? cfg->advertise_url : "");
    snprintf(cl->endpoints, sizeof(cl->endpoints), "%s", cfg->etcd_endpoints);
    uint64_t stale_ms = cfg->stale_after_ms ? cfg->stale_after_ms : 3000;
    cl->stale_ns = (int64_t)stale_ms * 1000000;
    cl->probe_ns = AG_MAX(cl->stale_ns / 4, (int64_t)20000000);
    pthread_mutex_init(&cl->apply_mu, NULL);
    pthread_mutex_init(&cl->meta_mu, NULL);
    pthread_mutex_init(&cl->wait_mu, NULL);
    if (!(cl->meta = json_object()) || !(cl->meta_rev = json_object())) {
        json_decref(cl->meta);
        free(cl);
        return AG_ENOMEM;
    }
    pthread_cond_init(&cl->wait_cv, NULL);
    cl->repl = (ag_repl_t){cl, repl_attach, repl_detach, repl_base, repl_commit, repl_done};
    /* A probe that hangs (a member stopped without closing) gives up in time for the next one
     * to go elsewhere before the lease runs out. */
    long probe_timeout = (long)AG_MAX(stale_ms / 3, 50);
    int rc;
    /* A write waiting on an election gives up after 2 s (503; the client retries). */
    if ((rc = ag_etcd_new(cfg->etcd_endpoints, 2000, &cl->writer, diag)) != 0 ||
        (rc = ag_etcd_new(cfg->etcd_endpoints, probe_timeout, &cl->prober, diag)) != 0 ||
        (rc = ag_etcd_new(cfg->etcd_endpoints, 5000, &cl->watcher, diag)) != 0)
        goto fail;
    ag_diag_t d = {{0}};
    if ((rc = register_node(cl, cl->writer, &d)) != 0) {
        rc = ag_fail(diag, AG_EUNAVAILABLE, "cluster: etcd does not answer at %s: %s",
                     cfg->etcd_endpoints, d.msg);
        goto fail;
    }
    confirm(cl, mono_ns());
    ag_log(AG_LOG_INFO, "cluster: node %s (%s) on etcd %s; T_stale %llu ms", cl->node_id,
           cl->advertise_url, cfg->etcd_endpoints, (unsigned long long)stale_ms);
    *out = cl;
    return 0;
fail:
    ag_cluster_free(cl);
    return rc;
}

const ag_repl_t *ag_cluster_repl(ag_cluster_t *cl)
{
    return &cl->repl;
}

int ag_cluster_start(ag_cluster_t *cl, ag_diag_t *diag)
{
    /* Every store at one revision, then the watch from just after it. */
    int rc = full_reload(cl, cl->writer, diag);
    if (rc)
        return rc;
    if (pthread_create(&cl->watch_thread, NULL, watch_main, cl) != 0)
        return ag_fail(diag, AG_EINTERNAL, "cluster: cannot start the watch thread");
    cl->watch_started = true;
    if (pthread_create(&cl->probe_thread, NULL, probe_main, cl) != 0)
        return ag_fail(diag, AG_EINTERNAL, "cluster: cannot start the probe thread");
    cl->probe_started = true;
    return 0;
}

void ag_cluster_free(ag_cluster_t *cl)
{
    if (!cl)
        return;
    pthread_mutex_lock(&cl->wait_mu);
    atomic_store(&cl->stop, true);
    atomic_store(&cl->kick, true);
    pthread_cond_broadcast(&cl->wait_cv);
    pthread_mutex_unlock(&cl->wait_mu);
    if (cl->watch_started)
        pthread_join(cl->watch_thread, NULL);
    if (cl->probe_started)
        pthread_join(cl->probe_thread, NULL);
    ag_cluster_meta_stop(cl);
    json_decref(cl->meta);
    json_decref(cl->meta_rev);
    pthread_mutex_destroy(&cl->meta_mu);
    ag_peer_auth_free(cl->peer);
    ag_etcd_free(cl->writer);
    ag_etcd_free(cl->prober);
    ag_etcd_free(cl->watcher);
    pthread_mutex_destroy(&cl->apply_mu);
    pthread_mutex_destroy(&cl->wait_mu);
    pthread_cond_destroy(&cl->wait_cv);
    free(cl);
}

bool ag_cluster_fresh(ag_cluster_t *cl, uint64_t *rev)
{
    if (rev)
        *rev = atomic_load_explicit(&cl->published, memory_order_acquire);
    return mono_ns() < atomic_load_explicit(&cl->fresh_until, memory_order_acquire);
}

int64_t ag_cluster_unconfirmed_ms(ag_cluster_t *cl)
{
    return (mono_ns() - atomic_load(&cl->confirmed_at)) / 1000000;
}

const char *ag_cluster_node_id(const ag_cluster_t *cl)
{
    return cl->node_id;
}

json_t *ag_cluster_status_json(ag_cluster_t *cl)
{
    json_t *nodes = json_array();
    ag_etcd_range_t r;
    ag_diag_t d = {{0}};
    if (nodes && ag_etcd_range(cl->writer, NODES_PREFIX, strlen(NODES_PREFIX), true, &r, &d) == 0) {
        for (size_t i = 0; i < r.n; i++) {
            json_t *n = json_loadb((const char *)r.kvs[i].val, r.kvs[i].vlen, 0, NULL);
            if (json_is_object(n))
                json_array_append_new(nodes, n);
            else
                json_decref(n);
        }
        ag_etcd_range_free(&r);
    }
    uint64_t rev = 0;
    bool fresh = ag_cluster_fresh(cl, &rev);
    return json_pack("{s:s,s:s,s:s,s:b,s:I,s:I,s:o*}", "node_id", cl->node_id, "advertise_url",
                     cl->advertise_url, "etcd", cl->endpoints, "fresh", fresh, "revision",
                     (json_int_t)rev, "unconfirmed_ms", (json_int_t)ag_cluster_unconfirmed_ms(cl),
                     "nodes", nodes);
}
