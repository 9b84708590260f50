/*
 * ag_cron.h — five-field cron schedules ("minute hour day-of-month month day-of-week") for
 * backup schedules. Each field is "*", a number, a range "a-b", a step ("*" or a range, then "/n"),
 * or a comma-separated list of those. Day of week 0-7 (0 and 7 are Sunday). As in cron, when both
 * day fields are restricted a day matches if either does. Times are UTC.
 */
#ifndef AG_CRON_H
#define AG_CRON_H

#include "ag_base.h"

#include <time.h>

typedef struct ag_cron {
    uint64_t minute; /* bit i = minute i */
    uint32_t hour;
    uint32_t dom;   /* bit 1..31 */
    uint16_t month; /* bit 1..12 */
    uint8_t dow;    /* bit 0..6 */
    bool dom_any, dow_any;
} ag_cron_t;

/* 0, or AG_EINVAL with diag naming the bad field. */
int ag_cron_parse(const char *text, ag_cron_t *out, ag_diag_t *diag);
/* Does the minute holding t (UTC) match? */
bool ag_cron_matches(const ag_cron_t *c, time_t t);

#endif
