#include "ag_log.h"

#include <pthread.h>
#include <stdio.h>
#include <time.h>

static ag_log_level_t min_level = AG_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void ag_log_set_level(ag_log_level_t level)
{
    min_level = level;
}

int ag_log_parse_level(const char *s, ag_log_level_t *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < AG_ARRAY_LEN(names); i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (ag_log_level_t)i;
            return 0;
        }
    }
    return AG_EINVAL;
}

void ag_log(ag_log_level_t level, const char *fmt, ...)
{
    static const char *tags[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    if (level < min_level)
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%s.%03ldZ %-5s %s\n", stamp, ts.tv_nsec / 1000000L, tags[level], line);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
}
