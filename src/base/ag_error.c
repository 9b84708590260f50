#include "ag_base.h"

#include <stdio.h>

#include "ag_log.h"

const char *ag_strerror(int code)
{
    switch (code) {
    case AG_OK:
        return "ok";
#define AG_ERR_STR(name, value, http, msg)                                                         \
    case name:                                                                                     \
        return msg;
        AG_ERRORS(AG_ERR_STR)
#undef AG_ERR_STR
    default:
        return "unknown error";
    }
}

int ag_http_status(int code)
{
    switch (code) {
    case AG_OK:
        return 200;
#define AG_ERR_HTTP(name, value, http, msg)                                                        \
    case name:                                                                                     \
        return http;
        AG_ERRORS(AG_ERR_HTTP)
#undef AG_ERR_HTTP
    default:
        return 500;
    }
}

int ag_fail(ag_diag_t *diag, int code, const char *fmt, ...)
{
    if (diag) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(diag->msg, sizeof(diag->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

_Noreturn void ag_assert_fail(const char *expr, const char *file, int line)
{
    ag_log(AG_LOG_ERROR, "assertion failed: %s (%s:%d)", expr, file, line);
    abort();
}
