/*
 * ag_base.h — the first include of every Aegis source file.
 *
 * Error convention: functions return int, 0 on success or a negative AG_E* code. The single
 * X-macro list below generates the enum, ag_strerror() and the HTTP status of each code, so the
 * mapping between internal failures and what a client sees lives in exactly one place.
 * Details travel in an optional ag_diag_t (never a global "last error").
 */
#ifndef AG_BASE_H
#define AG_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*       name              value  http  message */
#define AG_ERRORS(X)                                                                               \
    X(AG_EINVAL, -1, 400, "bad request")                                                           \
    X(AG_ENOMEM, -2, 500, "out of memory")                                                         \
    X(AG_ENOTFOUND, -3, 404, "not found")                                                          \
    X(AG_EEXIST, -4, 409, "already exists")                                                        \
    X(AG_ETOOBIG, -5, 413, "payload too large")                                                    \
    X(AG_EUNPROCESSABLE, -6, 422, "unprocessable entity")                                          \
    X(AG_EUNAUTH, -7, 401, "unauthorized")                                                         \
    X(AG_EFORBIDDEN, -8, 403, "forbidden")                                                         \
    X(AG_ETHROTTLED, -9, 429, "too many requests")                                                 \
    X(AG_EIO, -10, 500, "i/o error")                                                               \
    X(AG_ESTORAGE, -11, 500, "storage error")                                                      \
    X(AG_EINTERNAL, -12, 500, "internal error")                                                    \
    X(AG_ETIMEOUT, -13, 408, "request timeout")                                                    \
    X(AG_EUNAVAILABLE, -14, 503, "service unavailable")                                            \
    X(AG_EMETHOD, -15, 405, "method not allowed")                                                  \
    X(AG_ECONFIG, -16, 500, "configuration error")                                                 \
    X(AG_ECONFLICT, -17, 409, "conflict")                                                          \
    X(AG_ENOSPACE, -18, 507, "insufficient storage")

enum ag_error {
    AG_OK = 0,
#define AG_ERR_ENUM(name, value, http, msg) name = value,
    AG_ERRORS(AG_ERR_ENUM)
#undef AG_ERR_ENUM
};

/* Static string for an AG_E* code (never NULL). */
const char *ag_strerror(int code);
/* HTTP status a client sees for an AG_E* code (500 for unknown codes). */
int ag_http_status(int code);

/*
 * Diagnostic: a human-readable message, usually naming the JSON path of the bad field.
 * Callers may pass NULL when they do not care. The message never contains a secret.
 */
typedef struct ag_diag {
    char msg[512];
} ag_diag_t;

/* Formats a message into diag (if not NULL) and returns code, so callers can write
 * `return ag_fail(diag, AG_EINVAL, "vector: expected %u numbers", dim);` */
int ag_fail(ag_diag_t *diag, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Broken internal invariant (never client input): log and abort. */
#define ag_assert(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ag_assert_fail(#cond, __FILE__, __LINE__);                                             \
    } while (0)
_Noreturn void ag_assert_fail(const char *expr, const char *file, int line);

#define AG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define AG_UNUSED(x) ((void)(x))
#define AG_MIN(a, b) ((a) < (b) ? (a) : (b))
#define AG_MAX(a, b) ((a) > (b) ? (a) : (b))

/* The value of a hexadecimal digit (either case), or -1. */
static inline int ag_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Limits shared by parsers and the HTTP layer (docs/SECURITY.md "Request cost"). */
#define AG_MAX_NAME_LEN 255
#define AG_MAX_DIM 65536
#define AG_MAX_FILTER_DEPTH 32
#define AG_MAX_LIMIT 100000
#define AG_MAX_BATCH 100000
/* Filter budgets (docs/SECURITY.md "Request cost"): values of one match.any / match.except list,
 * conditions of one filter (every level), values of one filter (every list, has_id included). */
#define AG_MAX_MATCH_VALUES 10000
#define AG_MAX_FILTER_CONDITIONS 10000
#define AG_MAX_FILTER_VALUES 100000
/* JSON values in the body of one read (search, query, recommend, count, scroll, facet, retrieve,
 * delete): a 1,000-query batch of 2,048-dimension vectors fits. */
#define AG_MAX_READ_BODY_VALUES 4000000

#endif
