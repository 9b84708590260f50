/*
 * ag_throttle.h — authentication-failure throttling per remote address (PRODUCT §9).
 *
 * Each address gets a fixed window: max_failures failed authentications within window_s
 * seconds lock it for lockout_s seconds, during which ag_throttle_check refuses it (429 with
 * Retry-After) before any credential is examined. Successes do not reset the count (a caller
 * holding one valid low-privilege key must not earn unlimited guesses at another).
 * The table is bounded: addresses are hashed (keyed, so slots cannot be aimed at) into `slots`
 * entries with a short probe; when the probe window is full, an idle unlocked entry is evicted
 * first. Thread-safe.
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

/* Before authenticating a request from addr (borrowed; any text, e.g. "192.0.2.1"): 0 if it may
 * proceed, AG_ETHROTTLED with *retry_after (seconds, >= 1) while addr is locked. */
int ag_throttle_check(ag_throttle_t *t, const char *addr, int64_t now, int *retry_after);
/* After a failed authentication from addr: counts it. Returns AG_ETHROTTLED with *retry_after
 * when addr is (now) locked, else 0. */
int ag_throttle_fail(ag_throttle_t *t, const char *addr, int64_t now, int *retry_after);

#endif
