#include "ag_cron.h"

#include <stdio.h>
#include <stdlib.h>

static bool number(const char **p, unsigned *out)
{
    const char *s = *p;
    unsigned v = 0;
    int digits = 0;
    while (*s >= '0' && *s <= '9' && digits < 3) {
        v = v * 10 + (unsigned)(*s - '0');
        s++;
        digits++;
    }
    if (digits == 0 || (*s >= '0' && *s <= '9'))
        return false;
    *p = s;
    *out = v;
    return true;
}

/* One field into bits over [lo, hi]. */
static bool field(const char *text, size_t len, unsigned lo, unsigned hi, uint64_t *bits, bool *any)
{
    char buf[128];
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, text, len);
    buf[len] = '\0';
    *bits = 0;
    *any = strcmp(buf, "*") == 0;
    const char *p = buf;
    for (;;) {
        unsigned a = lo, b = hi, step = 1;
        bool single = false;
        if (*p == '*') {
            p++;
        } else {
            if (!number(&p, &a))
                return false;
            b = a;
            single = true;
            if (*p == '-') {
                p++;
                single = false;
                if (!number(&p, &b))
                    return false;
            }
        }
        if (*p == '/') {
            p++;
            if (!number(&p, &step) || step == 0)
                return false;
            if (single)
                b = hi; /* "a/n": from a to the end */
        }
        if (a < lo || b > hi || a > b)
            return false;
        for (unsigned v = a; v <= b; v += step)
            *bits |= 1ull << v;
        if (*p == ',') {
            p++;
            continue;
        }
        return *p == '\0';
    }
}

int ag_cron_parse(const char *text, ag_cron_t *out, ag_diag_t *diag)
{
    static const char *const names[] = {"minute", "hour", "day of month", "month", "day of week"};
    static const unsigned lo[] = {0, 0, 1, 1, 0}, hi[] = {59, 23, 31, 12, 7};
    memset(out, 0, sizeof(*out));
    const char *p = text ? text : "";
    uint64_t bits[5];
    bool any[5];
    for (int f = 0; f < 5; f++) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *start = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if (!field(start, (size_t)(p - start), lo[f], hi[f], &bits[f], &any[f]))
            return ag_fail(diag, AG_EINVAL,
                           "schedule: bad %s field (expected five cron fields: minute hour "
                           "day-of-month month day-of-week)",
                           names[f]);
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p)
        return ag_fail(diag, AG_EINVAL, "schedule: expected exactly five cron fields");
    out->minute = bits[0];
    out->hour = (uint32_t)bits[1];
    out->dom = (uint32_t)bits[2];
    out->month = (uint16_t)bits[3];
    out->dow = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7f); /* 7 is Sunday too */
    out->dom_any = any[2];
    out->dow_any = any[4];
    return 0;
}

bool ag_cron_matches(const ag_cron_t *c, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    if (!(c->minute >> tm.tm_min & 1) || !(c->hour >> tm.tm_hour & 1) ||
        !(c->month >> (tm.tm_mon + 1) & 1))
        return false;
    bool dom = c->dom >> tm.tm_mday & 1, dow = c->dow >> tm.tm_wday & 1;
    if (c->dom_any || c->dow_any)
        return dom && dow;
    return dom || dow;
}
