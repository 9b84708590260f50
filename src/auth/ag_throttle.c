#include "ag_throttle.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>

#define KEY_LEN 16
#define PROBE 8

typedef struct slot {
    uint8_t key[KEY_LEN];
    char addr[AG_THROTTLE_ADDR_LEN]; /* for the aggregated report */
    bool used;
    uint64_t quiet;       /* failures while locked, not reported yet */
    int64_t report_at;    /* when the quiet count is reported at the latest */
    uint32_t count;       /* failures in the current window */
    int64_t window_start; /* when the current window began */
    int64_t locked_until; /* locked while now < locked_until */
    int64_t last;         /* last failure, for eviction */
} slot_t;

struct ag_throttle {
    ag_throttle_config_t cfg;
    ag_throttle_report_fn on_evict; /* set only for the duration of ag_throttle_fail */
    void *on_evict_ctx;
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    pthread_mutex_t lock;
    slot_t *slots;
    size_t mask;
};

/* Memory: *out is a new throttle owned by the caller (ag_throttle_free). */
int ag_throttle_new(const ag_throttle_config_t *cfg, ag_throttle_t **out)
{
    *out = NULL;
    if (sodium_init() < 0)
        return AG_EINTERNAL;
    ag_throttle_t *t = calloc(1, sizeof(*t));
    if (!t)
        return AG_ENOMEM;
    if (cfg)
        t->cfg = *cfg;
    if (!t->cfg.max_failures)
        t->cfg.max_failures = 10;
    if (!t->cfg.window_s)
        t->cfg.window_s = 60;
    if (!t->cfg.lockout_s)
        t->cfg.lockout_s = 60;
    if (!t->cfg.slots)
        t->cfg.slots = 4096;
    if (t->cfg.slots > (1u << 22))
        t->cfg.slots = 1u << 22;
    size_t n = PROBE;
    while (n < t->cfg.slots)
        n <<= 1;
    t->mask = n - 1;
    randombytes_buf(t->hash_key, sizeof(t->hash_key));
    if (!(t->slots = calloc(n, sizeof(*t->slots)))) {
        free(t);
        return AG_ENOMEM;
    }
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        free(t->slots);
        free(t);
        return AG_ENOMEM;
    }
    *out = t;
    return 0;
}

void ag_throttle_free(ag_throttle_t *t)
{
    if (!t)
        return;
    pthread_mutex_destroy(&t->lock);
    free(t->slots);
    free(t);
}

static void key_of(const ag_throttle_t *t, const char *addr, uint8_t key[KEY_LEN])
{
    const char *a = addr ? addr : "";
    /* Two SipHash outputs make a 16-byte key, so distinct addresses never share an entry. */
    crypto_shorthash(key, (const unsigned char *)a, strlen(a), t->hash_key);
    uint8_t k2[crypto_shorthash_KEYBYTES];
    memcpy(k2, t->hash_key, sizeof(k2));
    k2[0] ^= 0x5a;
    crypto_shorthash(key + 8, (const unsigned char *)a, strlen(a), k2);
}

static size_t index_of(const ag_throttle_t *t, const uint8_t key[KEY_LEN])
{
    uint64_t h;
    memcpy(&h, key, sizeof(h));
    return (size_t)h & t->mask;
}

/* Eviction preference: an empty slot, then an idle one, then an active unlocked one (least
 * recently failing first), and only as a last resort a locked one (lock ending soonest). */
static int rank(const ag_throttle_t *t, const slot_t *s, int64_t now)
{
    if (!s->used)
        return 0;
    if (s->locked_until > now)
        return 3;
    return now - s->window_start >= (int64_t)t->cfg.window_s ? 1 : 2;
}

static bool better_victim(const ag_throttle_t *t, const slot_t *s, const slot_t *v, int64_t now)
{
    int rs = rank(t, s, now), rv = rank(t, v, now);
    if (rs != rv)
        return rs < rv;
    return rs == 3 ? s->locked_until < v->locked_until : s->last < v->last;
}

/* The entry for key; with create, a new or recycled one (a recycled entry's unreported quiet
 * count goes to *evicted_addr / *evicted). NULL when absent. */
static slot_t *find(ag_throttle_t *t, const uint8_t key[KEY_LEN], const char *addr, int64_t now,
                    bool create, char *evicted_addr, uint64_t *evicted)
{
    size_t base = index_of(t, key);
    slot_t *victim = NULL;
    for (size_t i = 0; i < PROBE; i++) {
        slot_t *s = &t->slots[(base + i) & t->mask];
        if (s->used && memcmp(s->key, key, KEY_LEN) == 0)
            return s;
        if (create && (!victim || better_victim(t, s, victim, now)))
            victim = s;
    }
    if (!create)
        return NULL;
    if (victim->used && victim->quiet && evicted) {
        *evicted = victim->quiet;
        snprintf(evicted_addr, AG_THROTTLE_ADDR_LEN, "%s", victim->addr);
    }
    memset(victim, 0, sizeof(*victim));
    memcpy(victim->key, key, KEY_LEN);
    snprintf(victim->addr, sizeof(victim->addr), "%s", addr ? addr : "");
    victim->used = true;
    victim->window_start = now;
    return victim;
}

static int locked(const slot_t *s, int64_t now, int *retry_after)
{
    if (!s || s->locked_until <= now)
        return 0;
    int64_t left = s->locked_until - now;
    if (retry_after)
        *retry_after = left > INT32_MAX ? INT32_MAX : (int)left;
    return AG_ETHROTTLED;
}

int ag_throttle_check(ag_throttle_t *t, const char *addr, int64_t now, int *retry_after)
{
    uint8_t key[KEY_LEN];
    key_of(t, addr, key);
    pthread_mutex_lock(&t->lock);
    int rc = locked(find(t, key, addr, now, false, NULL, NULL), now, retry_after);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int ag_throttle_fail(ag_throttle_t *t, const char *addr, int64_t now, ag_throttle_verdict_t *v)
{
    memset(v, 0, sizeof(*v));
    uint8_t key[KEY_LEN];
    key_of(t, addr, key);
    char evicted_addr[AG_THROTTLE_ADDR_LEN] = {0};
    uint64_t evicted = 0;
    pthread_mutex_lock(&t->lock);
    slot_t *s = find(t, key, addr, now, true, evicted_addr, &evicted);
    if (locked(s, now, &v->retry_after)) {
        /* Already locked: counted, reported in aggregate at most once a window. */
        v->locked = true;
        v->quiet = true;
        s->quiet++;
        if (now >= s->report_at) {
            v->report = s->quiet;
            s->quiet = 0;
            s->report_at = now + (int64_t)t->cfg.window_s;
        }
    } else {
        /* A lock that ended with failures not reported yet: report them with this one. */
        v->report = s->quiet;
        s->quiet = 0;
        if (now - s->window_start >= (int64_t)t->cfg.window_s || now < s->window_start) {
            s->window_start = now;
            s->count = 0;
        }
        s->last = now;
        if (++s->count >= t->cfg.max_failures) {
            s->locked_until = now + (int64_t)t->cfg.lockout_s;
            s->report_at = now + (int64_t)t->cfg.window_s;
            s->count = 0;
            s->window_start = now;
            v->locked = locked(s, now, &v->retry_after) != 0;
        }
    }
    pthread_mutex_unlock(&t->lock);
    if (evicted && t->on_evict)
        t->on_evict(t->on_evict_ctx, evicted_addr, evicted);
    return v->locked ? AG_ETHROTTLED : 0;
}

int64_t ag_throttle_drain(ag_throttle_t *t, int64_t now, bool all, ag_throttle_report_fn fn,
                          void *ctx)
{
    int64_t next = now + (int64_t)t->cfg.window_s;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i <= t->mask; i++) {
        slot_t *s = &t->slots[i];
        if (!s->used || s->quiet == 0)
            continue;
        if (all || now >= s->report_at || now >= s->locked_until) {
            fn(ctx, s->addr, s->quiet);
            s->quiet = 0;
            s->report_at = now + (int64_t)t->cfg.window_s;
        } else {
            next = AG_MIN(next, AG_MIN(s->report_at, s->locked_until));
        }
    }
    pthread_mutex_unlock(&t->lock);
    return next;
}

void ag_throttle_set_evict_report(ag_throttle_t *t, ag_throttle_report_fn fn, void *ctx)
{
    t->on_evict = fn;
    t->on_evict_ctx = ctx;
}
