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

/* The printf way (kept for the values the integer way below does not take): the first precision
 * from 6 to 9 whose %g text reads back as f, with jansson's touches. */
static size_t f32_printf(float f, char *buf, size_t cap)
{
    int n = 0;
    for (int prec = 6; prec <= 9; prec++) {
        n = snprintf(buf, cap - 3, "%.*g", prec, (double)f);
        if (prec == 9 || strtof(buf, NULL) == f)
            break;
    }
    return jansson_style(buf, (size_t)n);
}

/*
 * The same text without printf and strtof (docs/ARCHITECTURE.md "Score text"): f = m * 2^-k
 * exactly, so rounding it to p significant digits and asking whether that decimal reads back as f
 * are integer questions. The decimal D * 10^t reads back as f when it lies inside f's rounding
 * interval, (4m - 2, 4m + 2) * 2^-(k+2) (the lower end 4m - 1 when m is a power of two: the float
 * below is closer), ends included when m is even (a tie rounds to the even mantissa; an end has
 * more than 8 significant digits in this range, so only a 9-digit text could meet one). Every
 * product fits in 128 bits for normal floats with 1 <= k <= 90 and p - 1 - X <= 30, i.e. |f| from
 * about 7e-21 to 2^24 (scores, distances); other values (zero, subnormals, large magnitudes) take
 * the printf way. tests/unit/test_jsonw.c compares both ways over millions of floats.
 */
__extension__ typedef unsigned __int128 u128;

static const uint64_t pow10_u64[20] = {1ull,
                                       10ull,
                                       100ull,
                                       1000ull,
                                       10000ull,
                                       100000ull,
                                       1000000ull,
                                       10000000ull,
                                       100000000ull,
                                       1000000000ull,
                                       10000000000ull,
                                       100000000000ull,
                                       1000000000000ull,
                                       10000000000000ull,
                                       100000000000000ull,
                                       1000000000000000ull,
                                       10000000000000000ull,
                                       100000000000000000ull,
                                       1000000000000000000ull,
                                       10000000000000000000ull};

/* 10^n for 0 <= n <= 38. */
static u128 pow10_u128(int n)
{
    return n < 20 ? pow10_u64[n] : (u128)pow10_u64[19] * pow10_u64[n - 19];
}

/* Sign of m * 2^-k - 10^x, for |x| <= 30 and k <= 90. */
static int cmp_pow10(uint32_t m, int k, int x)
{
    u128 a = m, b = (u128)1 << k;
    if (x >= 0)
        b *= pow10_u128(x);
    else
        a *= pow10_u128(-x);
    return a < b ? -1 : a > b;
}

/* Writes f's text into buf (room for 32 bytes) and returns its length, or 0 when not taken. */
static size_t f32_fast(float f, char *buf)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof(bits));
    uint32_t bexp = (bits >> 23) & 0xffu;
    if (bexp == 0 || bexp == 0xffu)
        return 0;
    uint32_t m = (bits & 0x7fffffu) | 0x800000u;
    int k = 150 - (int)bexp; /* |f| = m * 2^-k */
    if (k < 1 || k > 90)
        return 0;
    /* x = floor(log10 |f|): estimated from the binary exponent, then made exact. */
    int x = (int)floor((23.0 - k) * 0.30102999566398120);
    while (cmp_pow10(m, k, x) < 0)
        x--;
    while (cmp_pow10(m, k, x + 1) >= 0)
        x++;
    u128 low4 = (m == 0x800000u && bexp > 1) ? 4 * (u128)m - 1 : 4 * (u128)m - 2;
    u128 high4 = 4 * (u128)m + 2;
    bool ends_in = (m & 1u) == 0;
    uint64_t d = 0;
    int p = 6, xp = x;
    for (; p <= 9; p++) {
        int s = p - 1 - x; /* digits = round(|f| * 10^s) */
        if (s > 30)
            return 0;
        u128 q;
        bool up;
        if (s >= 0) { /* m * 10^s / 2^k: a shift, the remainder against half of 2^k */
            u128 num = m * pow10_u128(s), rem = num & (((u128)1 << k) - 1),
                 half = (u128)1 << (k - 1);
            q = num >> k;
            up = rem > half || (rem == half && (q & 1));
        } else { /* |f| >= 10^p here, so k <= 7 and s >= -2: 64 bits are enough */
            uint64_t den = ((uint64_t)1 << k) * pow10_u64[-s], r = m % den;
            q = m / den;
            up = 2 * r > den || (2 * r == den && (q & 1));
        }
        if (up)
            q++;
        xp = x;
        int t = -s; /* the decimal is q * 10^t */
        if (q == pow10_u128(p)) {
            q /= 10;
            xp++;
            t++;
        }
        d = (uint64_t)q;
        if (p == 9)
            break; /* nine digits always read back */
        /* Inside the rounding interval? Both sides times 2^(k+2) (and 10^-t when t < 0). */
        u128 val = q << (k + 2), lo = low4, hi = high4;
        if (t >= 0) {
            val *= pow10_u128(t);
        } else {
            u128 scale = pow10_u128(-t);
            lo *= scale;
            hi *= scale;
        }
        if (ends_in ? (val >= lo && val <= hi) : (val > lo && val < hi))
            break;
    }
    /* %.{p}g of d * 10^(xp - p + 1), then jansson's touches. */
    char dig[10];
    for (int i = p - 1; i >= 0; i--) {
        dig[i] = (char)('0' + d % 10);
        d /= 10;
    }
    int nd = p;
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    size_t n = 0;
    if (bits >> 31)
        buf[n++] = '-';
    if (xp < -4 || xp >= p) {
        buf[n++] = dig[0];
        if (nd > 1) {
            buf[n++] = '.';
            for (int i = 1; i < nd; i++)
                buf[n++] = dig[i];
        }
        buf[n++] = 'e';
        int e = xp;
        if (e < 0) {
            buf[n++] = '-';
            e = -e;
        }
        if (e >= 10)
            buf[n++] = (char)('0' + e / 10);
        buf[n++] = (char)('0' + e % 10);
    } else if (xp >= 0) {
        for (int i = 0; i <= xp; i++)
            buf[n++] = i < nd ? dig[i] : '0';
        buf[n++] = '.';
        if (nd > xp + 1)
            for (int i = xp + 1; i < nd; i++)
                buf[n++] = dig[i];
        else
            buf[n++] = '0';
    } else {
        buf[n++] = '0';
        buf[n++] = '.';
        for (int i = 0; i < -xp - 1; i++)
            buf[n++] = '0';
        for (int i = 0; i < nd; i++)
            buf[n++] = dig[i];
    }
    buf[n] = '\0';
    return n;
}

size_t ag_jw_f32_text(float f, char buf[AG_JW_F32_MAX])
{
    if (!isfinite(f)) {
        memcpy(buf, "null", 5);
        return 4;
    }
    size_t n = f32_fast(f, buf);
    return n ? n : f32_printf(f, buf, AG_JW_F32_MAX);
}

size_t ag_jw_f32_text_printf(float f, char buf[AG_JW_F32_MAX])
{
    if (!isfinite(f)) {
        memcpy(buf, "null", 5);
        return 4;
    }
    return f32_printf(f, buf, AG_JW_F32_MAX);
}

void ag_jw_f32(ag_jw_t *w, float f)
{
    char buf[AG_JW_F32_MAX];
    ag_jw_raw(w, buf, ag_jw_f32_text(f, buf));
}

void ag_jw_real(ag_jw_t *w, double d)
{
    char buf[40];
    int n = snprintf(buf, sizeof(buf) - 3, "%.17g", d);
    ag_jw_raw(w, buf, jansson_style(buf, (size_t)n));
}

void ag_jw_seconds(ag_jw_t *w, double s)
{
    if (!(s >= 0 && s < 1e9)) {
        ag_jw_real(w, s);
        return;
    }
    uint64_t ns = (uint64_t)(s * 1e9 + 0.5);
    char buf[32];
    size_t n = 0;
    uint64_t whole = ns / 1000000000u;
    uint32_t frac = (uint32_t)(ns % 1000000000u);
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + whole % 10);
        whole /= 10;
    } while (whole);
    memcpy(buf, tmp + i, sizeof(tmp) - i);
    n = sizeof(tmp) - i;
    buf[n++] = '.';
    int digits = 9;
    while (digits > 1 && frac % 10 == 0) {
        frac /= 10;
        digits--;
    }
    for (int d = digits - 1; d >= 0; d--) {
        buf[n + (size_t)d] = (char)('0' + frac % 10);
        frac /= 10;
    }
    n += (size_t)digits;
    ag_jw_raw(w, buf, n);
}

void ag_jw_json(ag_jw_t *w, const json_t *v)
{
    /* The constants as the renderer writes them, without rendering into a new string (every hit
     * of a search without payload writes "payload":null). */
    if (json_is_null(v) || json_is_true(v) || json_is_false(v)) {
        ag_jw_lit(w, json_is_null(v) ? "null" : json_is_true(v) ? "true" : "false");
        return;
    }
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
