/* ag_log.h — leveled, thread-safe logging to stderr. Never pass a secret to it. */
#ifndef AG_LOG_H
#define AG_LOG_H

#include "ag_base.h"

typedef enum { AG_LOG_DEBUG = 0, AG_LOG_INFO, AG_LOG_WARN, AG_LOG_ERROR } ag_log_level_t;

/* Messages below this level are dropped. Default AG_LOG_INFO. */
void ag_log_set_level(ag_log_level_t level);
/* Parses "debug" / "info" / "warn" / "error"; returns AG_EINVAL on anything else. */
int ag_log_parse_level(const char *s, ag_log_level_t *out);
void ag_log(ag_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
