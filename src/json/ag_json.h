/*
 * ag_json.h — strict JSON helpers over jansson: parsing with duplicate-key rejection, field
 * whitelists, typed getters that name the JSON path in their diagnostics, and vector parsing.
 */
#ifndef AG_JSON_H
#define AG_JSON_H

#include "ag_base.h"

#include <jansson.h>

/* Parses a request body. Rejects duplicate keys, trailing garbage and a non-object top level
 * (when want_object). Returns a new reference in *out; diag carries line/column on error. */
int ag_json_parse_body(const char *buf, size_t len, bool want_object, json_t **out,
                       ag_diag_t *diag);

/* Size limits checked on the raw text of a body before it is parsed, so a body that would cost
 * far more memory as a JSON tree than as text (millions of small values) is refused first. */
typedef struct ag_json_budget {
    size_t max_values;     /* JSON values in the whole body (every number, string, ...) */
    size_t max_array;      /* elements of any one array */
    size_t max_match_list; /* elements of a `match.any` / `match.except` list */
    size_t max_id_list;    /* elements of a `has_id` list */
} ag_json_budget_t;

/* Scans buf[0..len) without building anything. AG_EINVAL naming the field ("filter.must[0].
 * match.any: at most 10000 values") when a limit is passed; 0 otherwise, also for malformed text
 * (the parser reports that). Never allocates; nesting deeper than 64 levels is only counted. */
int ag_json_check_budget(const char *buf, size_t len, const ag_json_budget_t *b, ag_diag_t *diag);

/* Fails with "<path>: unknown field '<k>'" if obj has a key not in the NULL-terminated list. */
int ag_json_only(const json_t *obj, const char *path, const char *const *allowed, ag_diag_t *diag);
#define AG_JSON_ONLY(obj, path, diag, ...)                                                         \
    ag_json_only((obj), (path), (const char *const[]){__VA_ARGS__, NULL}, (diag))

/* Typed getters: absent (or null when allow_null) leaves *out untouched and returns 0. */
int ag_json_get_bool(const json_t *obj, const char *key, const char *path, bool *out,
                     ag_diag_t *diag);
int ag_json_get_uint(const json_t *obj, const char *key, const char *path, uint64_t max,
                     uint64_t *out, ag_diag_t *diag);
int ag_json_get_float(const json_t *obj, const char *key, const char *path, double *out,
                      ag_diag_t *diag);
/* Borrowed string, valid while obj lives. */
int ag_json_get_str(const json_t *obj, const char *key, const char *path, const char **out,
                    ag_diag_t *diag);
/* The value when it is an object (or absent → *out = NULL). */
int ag_json_get_obj(const json_t *obj, const char *key, const char *path, const json_t **out,
                    ag_diag_t *diag);

/* Parses an array of numbers into floats[dim]; rejects non-numbers and values that are not finite
 * as float32. *out is a new malloc'd array (caller frees) and *n_out its length. */
int ag_json_floats(const json_t *arr, const char *path, float **out, uint32_t *n_out,
                   ag_diag_t *diag);

/* Name validation for collections, aliases, vectors, snapshots and fields (docs/API.md): 1..255
 * bytes, valid UTF-8, no '/', '\\', NUL, control characters, not "." or "..". */
int ag_name_check(const char *name, size_t len, const char *what, ag_diag_t *diag);

/* Renders a value into a new malloc'd compact string (caller frees). */
char *ag_json_dump(const json_t *v);
/* A new JSON real holding the double nearest to f's shortest decimal form (6 to 9 significant
 * digits), so a stored 0.15f renders as 0.15, as Qdrant renders its f32 values. NULL on OOM. */
json_t *ag_json_f32(float f);
/* Like ag_json_dump, for responses: u64 marker strings become bare integers again. */
char *ag_json_render(const json_t *v);

/* Integers above INT64_MAX travel inside jansson as strings with this prefix (see
 * ag_json_parse_body); the JSON spelling escapes the NUL. */
#define AG_U64_MARKER "\x01u64:"
#define AG_U64_MARKER_JSON "\\u0001u64:"

#endif
