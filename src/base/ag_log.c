#include "ag_log.h"

#include <strings.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#define MSG_MAX 2048
#define NLEVELS 4

typedef struct bucket {
    double tokens;
    double last;       /* monotonic seconds of the last refill (0 = never used) */
    uint64_t dropped;  /* lines dropped since the last one that got through */
    double first_drop; /* when the first of those was dropped */
} bucket_t;

/* changed at run time by POST /logger while other threads log: atomic */
static _Atomic int min_level = AG_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static ag_log_sink_fn sink;
static void *sink_ctx;
static bucket_t buckets[NLEVELS];
static const char *const tags[NLEVELS] = {"DEBUG", "INFO", "WARN", "ERROR"};

void ag_log_set_level(ag_log_level_t level)
{
    atomic_store(&min_level, (int)level);
}

ag_log_level_t ag_log_get_level(void)
{
    return (ag_log_level_t)atomic_load(&min_level);
}

const char *ag_log_level_name(ag_log_level_t level)
{
    return level >= AG_LOG_DEBUG && level <= AG_LOG_ERROR ? tags[level] : "INFO";
}

int ag_log_parse_level(const char *s, ag_log_level_t *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < AG_ARRAY_LEN(names); i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (ag_log_level_t)i;
            return 0;
        }
    }
    /* Qdrant's spellings (its config.yaml says INFO, TRACE, WARNING...) */
    if (strcasecmp(s, "trace") == 0) {
        *out = AG_LOG_DEBUG;
        return 0;
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = AG_LOG_WARN;
        return 0;
    }
    return AG_EINVAL;
}

void ag_log_set_sink(ag_log_sink_fn fn, void *ctx)
{
    pthread_mutex_lock(&log_lock);
    sink = fn;
    sink_ctx = ctx;
    memset(buckets, 0, sizeof(buckets));
    pthread_mutex_unlock(&log_lock);
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Copies src to dst (capacity cap, always NUL-terminated) with every control character and DEL
 * escaped. Each input byte takes at most 4 output bytes; a byte that does not fit is dropped
 * whole, never half an escape. Returns the output length. */
static size_t escape_controls(const char *src, char *dst, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
        char esc[4];
        size_t n = 0;
        unsigned char c = *p;
        if (c == '\n' || c == '\r' || c == '\t') {
            esc[n++] = '\\';
            esc[n++] = (char)(c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
        } else if (c < 0x20 || c == 0x7f) {
            esc[n++] = '\\';
            esc[n++] = 'x';
            esc[n++] = hex[c >> 4];
            esc[n++] = hex[c & 15];
        } else {
            esc[n++] = (char)c;
        }
        if (o + n + 1 > cap)
            break;
        memcpy(dst + o, esc, n);
        o += n;
    }
    dst[o] = '\0';
    return o;
}

/* Takes one token from level's bucket (caller holds log_lock). False = drop the line. */
static bool take_token(bucket_t *b, ag_log_level_t level, double now)
{
    double rate = level == AG_LOG_ERROR ? AG_LOG_ERROR_RATE : AG_LOG_RATE;
    double burst = level == AG_LOG_ERROR ? AG_LOG_ERROR_BURST : AG_LOG_BURST;
    if (b->last == 0.0) {
        b->tokens = burst;
    } else if (now > b->last) {
        b->tokens += (now - b->last) * rate;
        if (b->tokens > burst)
            b->tokens = burst;
    }
    b->last = now;
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

/* Writes one finished line (caller holds log_lock). */
static void emit(const char *line, size_t len)
{
    if (sink) {
        sink(line, len, sink_ctx);
        return;
    }
    fwrite(line, 1, len, stderr);
    fflush(stderr);
}

void ag_log(ag_log_level_t level, const char *fmt, ...)
{
    if ((int)level < atomic_load(&min_level) || (unsigned)level >= NLEVELS)
        return;
    char msg[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char safe[2 * MSG_MAX]; /* escapes grow the text; what does not fit is cut */
    escape_controls(msg, safe, sizeof(safe));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    long ms = ts.tv_nsec / 1000000L;
    char line[2 * MSG_MAX + 64];
    pthread_mutex_lock(&log_lock);
    double now = mono_now();
    bucket_t *b = &buckets[level];
    if (!take_token(b, level, now)) {
        if (b->dropped++ == 0)
            b->first_drop = now;
        pthread_mutex_unlock(&log_lock);
        return;
    }
    int n;
    if (b->dropped > 0) {
        n = snprintf(line, sizeof(line),
                     "%s.%03ldZ %-5s log: %llu %s lines suppressed in the last "
                     "%.1f s\n",
                     stamp, ms, tags[level], (unsigned long long)b->dropped, tags[level],
                     now - b->first_drop);
        if (n > 0)
            emit(line, AG_MIN((size_t)n, sizeof(line) - 1));
        b->dropped = 0;
    }
    n = snprintf(line, sizeof(line), "%s.%03ldZ %-5s %s\n", stamp, ms, tags[level], safe);
    if (n > 0) {
        size_t len = AG_MIN((size_t)n, sizeof(line) - 1);
        line[len - 1] = '\n'; /* a cut line still ends the line */
        emit(line, len);
    }
    pthread_mutex_unlock(&log_lock);
}
