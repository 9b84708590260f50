#include "json/ag_jsonw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "json/ag_json.h"

static bool reserve(ag_jw_t *w, size_t n)
{
    if (w->oom)
        return false;
    if (w->len + n + 1 <= w->cap)
        return true;
    size_t nc = w->cap ? w->cap : 1024;
    while (nc < w->len + n + 1)
        nc *= 2;
    char *b = realloc(w->buf, nc);
    if (!b) {
        w->oom = true;
        return false;
    }
    w->buf = b;
    w->cap = nc;
    return true;
}

void ag_jw_raw(ag_jw_t *w, const char *s, size_t n)
{
    if (!reserve(w, n))
        return;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

void ag_jw_lit(ag_jw_t *w, const char *s)
{
    ag_jw_raw(w, s, strlen(s));
}

void ag_jw_u64(ag_jw_t *w, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    ag_jw_raw(w, tmp + i, sizeof(tmp) - i);
}

/* jansson's touches on a %g number: a dot added to an integral one, the exponent without '+'
 * and leading zeros (jansson's dtostr). buf holds n bytes and has room for 2 more. */
static size_t jansson_style(char *buf, size_t n)
{
    if (!memchr(buf, '.', n) && !memchr(buf, 'e', n)) {
        buf[n++] = '.';
        buf[n++] = '0';
        buf[n] = '\0';
    }
    char *e = memchr(buf, 'e', n);
    if (e) {
        char *start = e + 1, *end = start + 1;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, n - (size_t)(end - buf) + 1);
            n -= (size_t)(end - start);
        }
    }
    return n;
}

void ag_jw_f32(ag_jw_t *w, float f)
{
    if (!isfinite(f)) {
        ag_jw_lit(w, "null");
        return;
    }
    char buf[40];
    int n = 0;
    for (int prec = 6; prec <= 9; prec++) {
        n = snprintf(buf, sizeof(buf) - 3, "%.*g", prec, (double)f);
        if (prec == 9 || strtof(buf, NULL) == f)
            break;
    }
    ag_jw_raw(w, buf, jansson_style(buf, (size_t)n));
}

void ag_jw_real(ag_jw_t *w, double d)
{
    char buf[40];
    int n = snprintf(buf, sizeof(buf) - 3, "%.17g", d);
    ag_jw_raw(w, buf, jansson_style(buf, (size_t)n));
}

void ag_jw_json(ag_jw_t *w, const json_t *v)
{
    char *s = ag_json_render(v);
    if (!s) {
        w->oom = true;
        return;
    }
    ag_jw_lit(w, s);
    free(s);
}

char *ag_jw_take(ag_jw_t *w, size_t *len)
{
    if (w->oom || !reserve(w, 0)) {
        ag_jw_free(w);
        return NULL;
    }
    char *b = w->buf;
    *len = w->len;
    w->buf = NULL;
    w->len = w->cap = 0;
    return b;
}

void ag_jw_free(ag_jw_t *w)
{
    free(w->buf);
    w->buf = NULL;
    w->len = w->cap = 0;
}
