/*
 * ag_throttle.h — authentication-failure throttling per client address (docs/SECURITY.md
 * "Abuse").
 *
 * Each address gets a fixed window: max_failures failed authentications within window_s seconds
 * lock it for lockout_s seconds. The throttle only ever answers failing attempts: a valid
 * credential is never refused because of its address (the guard authenticates first and asks the
 * throttle only after a failure), so an attacker sharing an address — or a proxy — with real
 * users cannot lock them out. While an address is locked its failures are answered 429 with
 * Retry-After and are *quiet*: not logged or audited one by one, but counted and reported as one
 * aggregated record per window, so a flood of bad credentials cannot fill the disk.
 * Successes do not reset the count (a caller holding one valid low-privilege key must not earn
 * unlimited guesses at another).
 * The table is bounded: addresses are hashed (keyed, so slots cannot be aimed at) into `slots`
 * entries with a short probe; when the probe window is full, an idle unlocked entry is evicted
 * first (its pending count is reported at eviction). Thread-safe.
 */
#ifndef AG_THROTTLE_H
#define AG_THROTTLE_H

#include "ag_base.h"

typedef struct ag_throttle_config {
    unsigned max_failures; /* default 10 */
    unsigned window_s;     /* default 60 */
    unsigned lockout_s;    /* default 60 */
    size_t slots;          /* default 4096, rounded up to a power of two */
} ag_throttle_config_t;

typedef struct ag_throttle ag_throttle_t;

/* cfg may be NULL (defaults); zero fields take their defaults. On success the caller owns *out
 * (ag_throttle_free). AG_ENOMEM, AG_EINTERNAL if libsodium cannot start. */
int ag_throttle_new(const ag_throttle_config_t *cfg, ag_throttle_t **out);
void ag_throttle_free(ag_throttle_t *t);

/* Addresses are kept as text up to this many bytes (an IPv6 address fits). */
#define AG_THROTTLE_ADDR_LEN 64

/* What to do with one failed authentication. */
typedef void (*ag_throttle_report_fn)(void *ctx, const char *addr, uint64_t count);

typedef struct ag_throttle_verdict {
    bool locked;     /* the address is locked out: answer 429 */
    int retry_after; /* seconds (>= 1) when locked */
    bool quiet;      /* the address was already locked: do not log or audit this one alone */
    uint64_t report; /* > 0: record now, once, that this many quiet failures happened */
} ag_throttle_verdict_t;

/* After a failed authentication from addr (borrowed; any text, e.g. "192.0.2.1"): counts it and
 * fills *v. Returns 0 or AG_ETHROTTLED (when v->locked). */
int ag_throttle_fail(ag_throttle_t *t, const char *addr, int64_t now, ag_throttle_verdict_t *v);
/* Is addr locked right now? 0 or AG_ETHROTTLED with *retry_after. (For tests and status.) */
int ag_throttle_check(ag_throttle_t *t, const char *addr, int64_t now, int *retry_after);

/* Reports quiet failures not reported yet: calls fn(ctx, addr, count) once for every address
 * whose lock is over or whose report is due (at least once a window), or for every address with
 * all set (at shutdown). Returns the next time (seconds) a report may fall due, so callers can
 * skip calls until then. fn is called with the throttle's lock held: it must not call back. */
int64_t ag_throttle_drain(ag_throttle_t *t, int64_t now, bool all, ag_throttle_report_fn fn,
                          void *ctx);

/* Who hears of an evicted entry's unreported quiet count (called outside the lock). Set before
 * use; fn may be NULL. */
void ag_throttle_set_evict_report(ag_throttle_t *t, ag_throttle_report_fn fn, void *ctx);

#endif
