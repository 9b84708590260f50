/*
 * ag_jsonw.h — writing JSON text straight into a growable buffer, for answers whose shape is
 * fixed (the search hits of api/api_search.c's fast path) so that no jansson tree is built and
 * freed per request. Numbers come out as the tree would print them (docs/BENCHMARKS-HISTORY.md
 * "The direct search path" says where the text differs and why the values do not).
 *
 * Memory: w->buf is malloc'd and grows by doubling; ag_jw_take hands it to the caller (free), or
 * ag_jw_free drops it. An allocation failure makes the writer stop writing and ag_jw_take
 * return NULL.
 */
#ifndef AG_JSONW_H
#define AG_JSONW_H

#include "ag_base.h"

#include <jansson.h>

typedef struct ag_jw {
    char *buf;
    size_t len, cap;
    bool oom;
} ag_jw_t;

void ag_jw_raw(ag_jw_t *w, const char *s, size_t n);
void ag_jw_lit(ag_jw_t *w, const char *s); /* a NUL-terminated piece of JSON text */
void ag_jw_u64(ag_jw_t *w, uint64_t v);
/* A float32 as ag_json_f32 makes it: the shortest decimal (6 to 9 significant digits) that reads
 * back as the same float, written as that decimal (jansson would print the double it parses to
 * with 17 digits: the same double). Not finite: null. */
void ag_jw_f32(ag_jw_t *w, float f);
/* The same text into buf (NUL-terminated; returns its length). _printf: the reference way through
 * snprintf/strtof, which ag_jw_f32_text must match byte for byte (tests/unit/test_jsonw.c). */
#define AG_JW_F32_MAX 40
size_t ag_jw_f32_text(float f, char buf[AG_JW_F32_MAX]);
size_t ag_jw_f32_text_printf(float f, char buf[AG_JW_F32_MAX]);
/* A double exactly as jansson prints a real (%.17g, ".0" added to an integral value, no '+' or
 * leading zeros in the exponent). */
void ag_jw_real(ag_jw_t *w, double d);
/* A duration in seconds to the nanosecond, in fixed notation ("0.000123456", "2.5"): the
 * answer's "time" without printf (%.17g costs ~1 us per answer). Negative, not finite or past
 * 1e9 s: as ag_jw_real. */
void ag_jw_seconds(ag_jw_t *w, double s);
/* Any JSON value through ag_json_render (big-integer markers written as bare digits). */
void ag_jw_json(ag_jw_t *w, const json_t *v);
/* The text (NUL-terminated, *len bytes), owned by the caller; NULL after a failed allocation. */
char *ag_jw_take(ag_jw_t *w, size_t *len);
void ag_jw_free(ag_jw_t *w);

#endif
