/*
 * ag_peer_auth.c — the signed shard-local header, format v2, and the replay cache
 * (docs/CLUSTER.md "Node-to-node calls"; ag_peer.h).
 */
#include "ag_peer.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>

#include <sodium.h>

#define PEER_LABEL "aegis cluster node-to-node v1"  /* the secret's derivation (unchanged) */
#define PEER_MAC_LABEL "aegis node-to-node call v2" /* the first thing every v2 MAC covers */
#define NONCE_LEN 16
#define STRIPES 16
#define MIN_SLOTS 1024

/* ---- the replay cache ------------------------------------------------------------------------
 * A nonce is remembered until its call's time + AG_PEER_MAX_SKEW_MS: after that the time check
 * refuses the call anyway. Open addressing with linear probing; a slot is never emptied on its
 * own (expires == 0 marks a free slot), so probe chains stay intact: when a stripe's table is half
 * full, it is rebuilt with only the live nonces (and grown or shrunk to four times their number).
 * A stripe holds at most max live nonces; past that, a new one is refused (the caller fails
 * closed: no call is accepted that could not be remembered). Only calls with a right MAC reach
 * the cache, so only a node of the cluster can fill it. */

typedef struct slot {
    unsigned char nonce[NONCE_LEN];
    int64_t expires; /* ms; 0 = free */
} slot_t;

typedef struct stripe {
    pthread_mutex_t mu;
    slot_t *slots;        /* cap entries, NULL until the first nonce */
    size_t cap;           /* a power of two */
    size_t used;          /* occupied slots, expired ones included */
    int64_t first_expiry; /* no nonce held expires before this */
} stripe_t;

struct ag_peer_auth {
    unsigned char secret[32];
    char node[72];
    size_t stripe_max; /* live nonces per stripe at most */
    stripe_t stripes[STRIPES];
};

static uint64_t nonce_hash(const unsigned char *n)
{
    uint64_t h;
    memcpy(&h, n + 8, sizeof(h)); /* random bytes already: no mixing needed */
    return h;
}

static slot_t *probe(slot_t *slots, size_t cap, const unsigned char *nonce)
{
    size_t mask = cap - 1;
    for (size_t i = (size_t)nonce_hash(nonce) & mask;; i = (i + 1) & mask) {
        if (slots[i].expires == 0 || memcmp(slots[i].nonce, nonce, NONCE_LEN) == 0)
            return &slots[i];
    }
}

/* Rebuilds s with its live nonces in a table four times their number (at least MIN_SLOTS, at most
 * what max live nonces need). AG_ENOMEM leaves s as it was. */
static int rebuild(stripe_t *s, size_t max, int64_t now_ms)
{
    size_t live = 0;
    int64_t first = INT64_MAX;
    for (size_t i = 0; i < s->cap; i++) {
        if (s->slots[i].expires > now_ms) {
            live++;
            first = AG_MIN(first, s->slots[i].expires);
        }
    }
    size_t cap = MIN_SLOTS;
    while (cap < 4 * (live + 1) && cap < 2 * (max + 1))
        cap *= 2;
    while (cap < 2 * (live + 1)) /* live may exceed max right after max was lowered: never */
        cap *= 2;
    slot_t *n = calloc(cap, sizeof(*n));
    if (!n)
        return AG_ENOMEM;
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i].expires > now_ms)
            *probe(n, cap, s->slots[i].nonce) = s->slots[i];
    free(s->slots);
    s->slots = n;
    s->cap = cap;
    s->used = live;
    s->first_expiry = first;
    return 0;
}

int ag_peer_replay_add(ag_peer_auth_t *pa, const unsigned char nonce[16], int64_t expires_ms,
                       int64_t now_ms)
{
    stripe_t *s = &pa->stripes[nonce[0] % STRIPES];
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (!s->slots) {
        if (!(s->slots = calloc(MIN_SLOTS, sizeof(slot_t)))) {
            rc = AG_EUNAVAILABLE;
            goto out;
        }
        s->cap = MIN_SLOTS;
        s->first_expiry = INT64_MAX;
    }
    slot_t *e = probe(s->slots, s->cap, nonce);
    if (e->expires != 0) {
        if (e->expires > now_ms) {
            rc = AG_ECONFLICT;
        } else {
            e->expires = expires_ms; /* seen long ago: its old call is out of the window */
        }
        goto out;
    }
    /* Full, and nothing kept has expired since the last rebuild: refused without another. */
    if (s->used >= pa->stripe_max && now_ms < s->first_expiry) {
        rc = AG_EUNAVAILABLE;
        goto out;
    }
    if ((s->used + 1) * 2 > s->cap || s->used >= pa->stripe_max) {
        if (rebuild(s, pa->stripe_max, now_ms) != 0 || s->used >= pa->stripe_max) {
            rc = AG_EUNAVAILABLE; /* full (or no memory): fail closed */
            goto out;
        }
        e = probe(s->slots, s->cap, nonce);
    }
    memcpy(e->nonce, nonce, NONCE_LEN);
    e->expires = AG_MAX(expires_ms, (int64_t)1);
    s->first_expiry = AG_MIN(s->first_expiry, e->expires);
    s->used++;
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

size_t ag_peer_replay_count(ag_peer_auth_t *pa)
{
    size_t n = 0;
    for (size_t i = 0; i < STRIPES; i++) {
        pthread_mutex_lock(&pa->stripes[i].mu);
        n += pa->stripes[i].used;
        pthread_mutex_unlock(&pa->stripes[i].mu);
    }
    return n;
}

/* ---- life ------------------------------------------------------------------------------------ */

static bool node_ok(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

/* Memory: *out owns its tables (ag_peer_auth_free). */
int ag_peer_auth_new(const char *node_id, const void *material, size_t len, size_t replay_max,
                     ag_peer_auth_t **out)
{
    *out = NULL;
    if (!node_id || !node_ok(node_id, strlen(node_id)))
        return AG_EINVAL;
    if (sodium_init() < 0)
        return AG_EINTERNAL;
    ag_peer_auth_t *pa = calloc(1, sizeof(*pa));
    if (!pa)
        return AG_ENOMEM;
    snprintf(pa->node, sizeof(pa->node), "%s", node_id);
    /* The secret: keyed BLAKE2b-256 of a fixed label, keyed with BLAKE2b-256 of the root key's
     * material; the same on every node sharing the root key. */
    unsigned char k[32];
    crypto_generichash(k, sizeof(k), material, len, NULL, 0);
    crypto_generichash(pa->secret, sizeof(pa->secret), (const unsigned char *)PEER_LABEL,
                       strlen(PEER_LABEL), k, sizeof(k));
    sodium_memzero(k, sizeof(k));
    if (!replay_max)
        replay_max = AG_PEER_REPLAY_MAX;
    pa->stripe_max = AG_MAX((replay_max + STRIPES - 1) / STRIPES, (size_t)1);
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_init(&pa->stripes[i].mu, NULL);
    *out = pa;
    return 0;
}

void ag_peer_auth_free(ag_peer_auth_t *pa)
{
    if (!pa)
        return;
    for (size_t i = 0; i < STRIPES; i++) {
        free(pa->stripes[i].slots);
        pthread_mutex_destroy(&pa->stripes[i].mu);
    }
    sodium_memzero(pa->secret, sizeof(pa->secret));
    free(pa);
}

/* ---- the MAC --------------------------------------------------------------------------------- */

/* Every field goes in as its length (8 bytes, little-endian) and its bytes: no two different
 * calls feed the same byte string. */
static void put(crypto_generichash_state *st, const void *p, size_t n)
{
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)n >> (8 * i));
    crypto_generichash_update(st, len, sizeof(len));
    if (n)
        crypto_generichash_update(st, p, n);
}

static void put_str(crypto_generichash_state *st, const char *s)
{
    put(st, s ? s : "", s ? strlen(s) : 0);
}

/* The credential headers, hashed: whether each is present, and its value. */
static void cred_hash(const char *api_key, const char *authorization, unsigned char out[32])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    const unsigned char present[2] = {api_key != NULL, authorization != NULL};
    put(&st, present, sizeof(present));
    put_str(&st, api_key);
    put_str(&st, authorization);
    crypto_generichash_final(&st, out, 32);
    sodium_memzero(&st, sizeof(st));
}

typedef struct fields {
    const char *node;
    size_t node_len;
    long long ts;
    const unsigned char *nonce;
    const char *client;
    const unsigned char *body_hash;
} fields_t;

/* The MAC's head: label and method and path; then the query arguments are fed by the caller, then
 * mac_tail. */
static void mac_head(const ag_peer_auth_t *pa, crypto_generichash_state *st, const char *method,
                     const char *path, size_t nargs)
{
    crypto_generichash_init(st, pa->secret, sizeof(pa->secret), 32);
    put_str(st, PEER_MAC_LABEL);
    put_str(st, method);
    put(st, path, strcspn(path, "?"));
    unsigned char n[8];
    for (int i = 0; i < 8; i++)
        n[i] = (unsigned char)((uint64_t)nargs >> (8 * i));
    crypto_generichash_update(st, n, sizeof(n));
}

static void mac_tail(crypto_generichash_state *st, const unsigned char cred[32], const fields_t *f,
                     unsigned char mac[32])
{
    char tsbuf[24];
    int n = snprintf(tsbuf, sizeof(tsbuf), "%lld", f->ts);
    put(st, cred, 32);
    put(st, f->node, f->node_len);
    put(st, tsbuf, (size_t)n);
    put(st, f->nonce, NONCE_LEN);
    put_str(st, f->client);
    put(st, f->body_hash, 32);
    crypto_generichash_final(st, mac, 32);
}

/* Percent-decodes s[0..n) into a new string (caller frees), the way the receiving HTTP layer
 * decodes a query argument ('+' stays '+'). NULL when out of memory. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int hi = -1, lo = -1;
        if (s[i] == '%' && i + 2 < n) {
            hi = ag_hex_digit(s[i + 1]);
            lo = ag_hex_digit(s[i + 2]);
        }
        if (hi >= 0 && lo >= 0) {
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

static bool addr_ok(const char *a)
{
    unsigned char buf[16];
    return a && strlen(a) < 64 &&
           (inet_pton(AF_INET, a, buf) == 1 || inet_pton(AF_INET6, a, buf) == 1);
}

int ag_peer_sign(ag_peer_auth_t *pa, const char *method, const char *path, const char *api_key,
                 const char *authorization, const char *client, const void *body, size_t len,
                 int64_t now_ms, char *out, size_t cap)
{
    if (!addr_ok(client) || cap < AG_PEER_HEADER_MAX)
        return AG_EINVAL;
    unsigned char nonce[NONCE_LEN], body_hash[32], cred[32], mac[32];
    randombytes_buf(nonce, sizeof(nonce));
    crypto_generichash(body_hash, sizeof(body_hash), body, body ? len : 0, NULL, 0);
    cred_hash(api_key, authorization, cred);
    const char *q = strchr(path, '?');
    size_t nargs = 0;
    for (const char *p = q; p && *p; p = strchr(p + 1, '&'))
        nargs++;
    crypto_generichash_state st;
    mac_head(pa, &st, method, path, nargs);
    /* The query as the receiver will see it: each argument decoded. */
    for (const char *p = q ? q + 1 : NULL; p;) {
        const char *end = strchr(p, '&');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        size_t kn = eq ? (size_t)(eq - p) : n;
        char *k = pct_decode(p, kn);
        char *v = eq ? pct_decode(eq + 1, n - kn - 1) : strdup("");
        if (!k || !v) {
            free(k);
            free(v);
            return AG_ENOMEM;
        }
        put_str(&st, k);
        put_str(&st, v);
        free(k);
        free(v);
        p = end ? end + 1 : NULL;
    }
    fields_t f = {pa->node, strlen(pa->node), (long long)now_ms, nonce, client, body_hash};
    mac_tail(&st, cred, &f, mac);
    char nonce_hex[2 * NONCE_LEN + 1], body_hex[65], mac_hex[65];
    sodium_bin2hex(nonce_hex, sizeof(nonce_hex), nonce, sizeof(nonce));
    sodium_bin2hex(body_hex, sizeof(body_hex), body_hash, sizeof(body_hash));
    sodium_bin2hex(mac_hex, sizeof(mac_hex), mac, sizeof(mac));
    int n = snprintf(out, cap, "v2;%s;%lld;%s;%s;%s;%s", pa->node, (long long)now_ms, nonce_hex,
                     client, body_hex, mac_hex);
    return n > 0 && (size_t)n < cap ? 0 : AG_EINVAL;
}

static bool hex_field(const char *s, size_t n, unsigned char *out, size_t out_len)
{
    size_t got = 0;
    return n == 2 * out_len && sodium_hex2bin(out, out_len, s, n, NULL, &got, NULL) == 0 &&
           got == out_len;
}

#define MALFORMED "Unauthorized: malformed shard-local header"

int ag_peer_verify(ag_peer_auth_t *pa, const ag_peer_req_t *r, const char *value, int64_t now_ms,
                   ag_peer_claim_t *out, ag_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    if (!value || strlen(value) >= AG_PEER_HEADER_MAX)
        return ag_fail(diag, AG_EUNAUTH, MALFORMED);
    if (strncmp(value, "v2;", 3) != 0)
        return ag_fail(diag, AG_EUNAUTH,
                       "Unauthorized: the shard-local header is not format v2 (older nodes' "
                       "calls are refused: every node of a cluster must run the same version)");
    const char *f[7];
    size_t fl[7];
    const char *p = value;
    int nf = 0;
    for (; nf < 7; nf++) {
        const char *end = strchr(p, ';');
        f[nf] = p;
        fl[nf] = end ? (size_t)(end - p) : strlen(p);
        if (!end) {
            nf++;
            break;
        }
        p = end + 1;
    }
    if (nf != 7 || strchr(f[6], ';'))
        return ag_fail(diag, AG_EUNAUTH, MALFORMED);
    if (!node_ok(f[1], fl[1]))
        return ag_fail(diag, AG_EUNAUTH, MALFORMED " (node)");
    long long ts = 0;
    if (fl[2] == 0 || fl[2] > 15)
        return ag_fail(diag, AG_EUNAUTH, MALFORMED " (time)");
    for (size_t i = 0; i < fl[2]; i++) {
        if (f[2][i] < '0' || f[2][i] > '9')
            return ag_fail(diag, AG_EUNAUTH, MALFORMED " (time)");
        ts = ts * 10 + (f[2][i] - '0');
    }
    unsigned char nonce[NONCE_LEN], body_hash[32], got[32], want[32];
    if (!hex_field(f[3], fl[3], nonce, sizeof(nonce)))
        return ag_fail(diag, AG_EUNAUTH, MALFORMED " (nonce)");
    char client[64];
    if (fl[4] == 0 || fl[4] >= sizeof(client))
        return ag_fail(diag, AG_EUNAUTH, MALFORMED " (client address)");
    memcpy(client, f[4], fl[4]);
    client[fl[4]] = '\0';
    if (!addr_ok(client))
        return ag_fail(diag, AG_EUNAUTH, MALFORMED " (client address)");
    if (!hex_field(f[5], fl[5], body_hash, sizeof(body_hash)) ||
        !hex_field(f[6], fl[6], got, sizeof(got)))
        return ag_fail(diag, AG_EUNAUTH, MALFORMED " (hash)");
    long long skew = (long long)now_ms - ts;
    if (skew > AG_PEER_MAX_SKEW_MS || skew < -AG_PEER_MAX_SKEW_MS)
        return ag_fail(diag, AG_EUNAUTH,
                       "Unauthorized: the shard-local call's time is %lld ms off this node's clock",
                       skew);
    unsigned char cred[32];
    cred_hash(r->api_key, r->authorization, cred);
    crypto_generichash_state st;
    mac_head(pa, &st, r->method, r->path, r->nargs);
    for (size_t i = 0; i < r->nargs; i++) {
        put_str(&st, r->args[i].key);
        put_str(&st, r->args[i].val);
    }
    fields_t fd = {f[1], fl[1], ts, nonce, client, body_hash};
    mac_tail(&st, cred, &fd, want);
    if (sodium_memcmp(want, got, 32) != 0)
        return ag_fail(diag, AG_EUNAUTH,
                       "Unauthorized: the shard-local call is not signed with the cluster secret "
                       "for this request and credential");
    int rc = ag_peer_replay_add(pa, nonce, ts + AG_PEER_MAX_SKEW_MS, now_ms);
    if (rc == AG_ECONFLICT)
        return ag_fail(diag, AG_EUNAUTH,
                       "Unauthorized: the shard-local call was replayed (its nonce was already "
                       "used within the last %d s)",
                       AG_PEER_MAX_SKEW_MS / 1000);
    if (rc)
        return ag_fail(diag, AG_EUNAVAILABLE,
                       "Service unavailable: node %s's replay cache of node-to-node calls is "
                       "full; shard-local calls are refused until nonces expire",
                       pa->node);
    snprintf(out->node, sizeof(out->node), "%.*s", (int)fl[1], f[1]);
    memcpy(out->client, client, sizeof(client));
    memcpy(out->body_hash, body_hash, sizeof(body_hash));
    return 0;
}

bool ag_peer_body_ok(const ag_peer_claim_t *c, const void *body, size_t len)
{
    unsigned char h[32];
    crypto_generichash(h, sizeof(h), body, body ? len : 0, NULL, 0);
    return sodium_memcmp(h, c->body_hash, 32) == 0;
}
