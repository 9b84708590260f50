/*
 * ag_log.h — leveled, thread-safe logging to stderr. Never pass a secret to it.
 *
 * One call is always exactly one line: after formatting, every control character (bytes below
 * 0x20, and DEL) in the message is escaped — newline as \n, carriage return as \r, tab as \t,
 * any other as \xNN — so text that came from a client (a JWT subject, a header, a path) cannot
 * forge a second log line or move the cursor of whoever reads the log in a terminal.
 *
 * Lines are rate-limited so a flood of failing requests cannot fill the disk through stderr.
 * Each level has its own token bucket: DEBUG, INFO and WARN allow bursts of
 * AG_LOG_BURST lines refilled at AG_LOG_RATE lines per second; ERROR has a larger budget
 * (AG_LOG_ERROR_BURST, AG_LOG_ERROR_RATE). A line that finds its bucket empty is dropped and
 * counted; the next line of that level that gets through is preceded by one line
 *   log: N WARN lines suppressed in the last T s
 * so the gap is visible. (With no later line of that level the count is not printed.) The access
 * log goes through INFO, so under sustained load beyond AG_LOG_RATE requests per second it is
 * sampled rather than complete.
 */
#ifndef AG_LOG_H
#define AG_LOG_H

#include "ag_base.h"

typedef enum { AG_LOG_DEBUG = 0, AG_LOG_INFO, AG_LOG_WARN, AG_LOG_ERROR } ag_log_level_t;

#define AG_LOG_RATE 50.0
#define AG_LOG_BURST 200.0
#define AG_LOG_ERROR_RATE 200.0
#define AG_LOG_ERROR_BURST 1000.0

/* Messages below this level are dropped. Default AG_LOG_INFO. May change while other threads
 * log (POST /logger). */
void ag_log_set_level(ag_log_level_t level);
ag_log_level_t ag_log_get_level(void);
/* "DEBUG", "INFO", "WARN" or "ERROR" (static). */
const char *ag_log_level_name(ag_log_level_t level);
/* Parses "debug" / "info" / "warn" / "error"; returns AG_EINVAL on anything else. */
int ag_log_parse_level(const char *s, ag_log_level_t *out);
void ag_log(ag_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Where finished lines go. line is borrowed for the call only, ends with '\n' and has len bytes
 * (no NUL counted). Called under the log's mutex: a sink must not call ag_log. */
typedef void (*ag_log_sink_fn)(const char *line, size_t len, void *ctx);
/* Test hook: sends lines to fn(ctx) instead of stderr; NULL restores stderr. Also refills every
 * bucket and forgets suppressed counts, so each test starts from a full budget. */
void ag_log_set_sink(ag_log_sink_fn fn, void *ctx);

#endif
