/*
 * ag_filter.h — Qdrant's filter language: compile a JSON filter once, evaluate it many times.
 *
 * A compiled filter is immutable and evaluating it never allocates, so one filter may be shared
 * by any number of threads. NULL stands for "no filter" and matches every point.
 *
 * Semantics follow Qdrant's payload checker (where Qdrant's docs are silent, its code decides):
 *  - Clauses: must (all), must_not (none), should (at least one: an empty should array matches
 *    nothing, as in Qdrant — fail-closed), min_should (at least min_count of the conditions).
 *    A filter without clauses matches everything.
 *  - Key paths: `a.b` (objects only, no implicit descent into arrays), `a[].b` (every element),
 *    `a[2].b` (one element), `"quoted key"` for keys with other characters. A value that is an
 *    array at the end of the path is flattened one level for match, range and geo conditions.
 *  - match.value / match.any: a value at the path equals (one of) the given string, integer or
 *    bool. Integers match JSON integers only (1 does not match 1.0 or 1.5).
 *  - match.except: true when at least one value at the path is not in the list (Qdrant's
 *    documented array rule: ["black", "green"] passes except ["black"]). A missing field, null
 *    or an empty array does NOT match; values of another type than the list (bool, object, a float
 *    against an integer list) count as "not in the list".
 *  - match.text / match.phrase: substring of a string value; match.text_any: any
 *    whitespace-separated word of it is a substring.
 *  - range: numbers against numeric values; if the bounds are strings they are RFC 3339 datetimes
 *    compared with string values parsed as datetimes (unparseable strings never match).
 *  - values_count: total number of values at the path (an array counts its elements, null counts
 *    0, any other value 1; a missing field counts 0).
 *  - is_empty: every value at the path is null or [] (so a missing field is empty; [null] is not).
 *  - is_null: some value at the path is JSON null. A missing field is not null, and neither is
 *    [null] (an array is a value that is not null), as in Qdrant.
 *  - nested: the filter must hold for at least one object element of the array at key (`[]` is
 *    appended to the key when absent). Inside, keys are relative to the element; has_id and
 *    has_vector are false there (Qdrant does not support them in nested filters).
 *  - geo: strict inequalities on the bounding box (which may cross the antimeridian when
 *    top_left.lon > bottom_right.lon); haversine distance < radius (Earth radius 6371008.8 m);
 *    polygons by ray casting, inside the exterior ring and outside every interior ring.
 */
#ifndef AG_FILTER_H
#define AG_FILTER_H

#include "ag_base.h"
#include "ag_glob.h"
#include "ag_id.h"

#include <jansson.h>

/* Compiled, immutable; safe to evaluate from many threads at once. */
typedef struct ag_filter ag_filter_t;

/* What a filter is evaluated against. payload is a JSON object or NULL (no payload); when it is
 * NULL, packed may hold the payload in the packed form of json/ag_pack.h instead (a stored
 * point's: read in place, nothing decoded). id may be NULL (then has_id is false).
 * has_vector(ud, name) answers has_vector conditions (name "" means the default unnamed vector);
 * may be NULL (then has_vector is false). All borrowed for the call.
 */
typedef struct ag_filter_subject {
    const ag_point_id_t *id;
    const json_t *payload;
    bool (*has_vector)(const void *ud, const char *name);
    const void *ud;
    const uint8_t *packed;
} ag_filter_subject_t;

/* Longest accepted key path, in bytes. */
#define AG_MAX_PATH_LEN 255

/*
 * Compiles a Qdrant filter JSON object. json == NULL or JSON null → *out = NULL (matches all).
 * Strict: unknown keys, wrong types, non-finite numbers, bad key paths, depth of nested filters
 * > AG_MAX_FILTER_DEPTH → AG_EINVAL with diag naming the JSON path, e.g.
 * "filter.must[1].range.gte: expected a number". Out of memory → AG_ENOMEM.
 * json is borrowed for the call (nothing in the filter refers to it afterwards).
 * On success *out is a new filter owned by the caller (free with ag_filter_free); on failure
 * *out is NULL.
 */
int ag_filter_compile(const json_t *json, ag_filter_t **out, ag_diag_t *diag);
/* ag_filter_compile for a filter a client sent with a request: also refuses (AG_EINVAL, diag
 * naming the field) a match.any / match.except list over AG_MAX_MATCH_VALUES values, more than
 * AG_MAX_FILTER_CONDITIONS conditions over all levels, more than AG_MAX_FILTER_VALUES values over
 * all lists (has_id included). Filters the server builds (row restrictions, tenant lists) use
 * ag_filter_compile: their size is not the caller's to choose. */
int ag_filter_compile_budgeted(const json_t *json, ag_filter_t **out, ag_diag_t *diag);

/* True if the subject satisfies f. f == NULL matches everything. Never allocates. */
bool ag_filter_match(const ag_filter_t *f, const ag_filter_subject_t *s);

/*
 * Returns a filter matching both (logical AND). Takes ownership of a and b (either may be NULL =
 * match-all). Returns NULL if both are NULL. On allocation failure frees a and b, sets *err to
 * AG_ENOMEM (err may be NULL; it is not written on success) and returns NULL — so a caller
 * that restricts access must check err rather than treat NULL as match-all.
 */
ag_filter_t *ag_filter_and(ag_filter_t *a, ag_filter_t *b, int *err);

/*
 * Returns a filter matching either (OR) — used for the union of several row-level scopes.
 * Takes ownership. If either is NULL the result is NULL (match-all) and the other is freed.
 * On allocation failure frees both, sets *err to AG_ENOMEM (if err is not NULL) and returns NULL.
 */
ag_filter_t *ag_filter_or(ag_filter_t *a, ag_filter_t *b, int *err);

/*
 * Builds the filter {"must":[{"key":key,"match":{"value":value}}]} directly (value: string,
 * integer or bool, borrowed). AG_EINVAL for a bad key path or value type, AG_ENOMEM.
 * On success *out is a new filter owned by the caller.
 */
int ag_filter_match_value(const char *key, const json_t *value, ag_filter_t **out);

/*
 * The equality conditions every match of f satisfies: its top-level `must` conditions (and those
 * of sub-filters sitting in a `must`) that are match.value or match.any on a plain key path
 * ("a", "a.b"), as a new filter JSON {"must": [{"key": k, "match": {"value"|"any": ...}}, ...]}
 * owned by the caller, or NULL when there are none (or on allocation failure). Lets a caller find
 * candidates for f in a payload index (a superset: the candidates still need ag_filter_match).
 */
json_t *ag_filter_required_equalities(const ag_filter_t *f);

/* A filter matching points whose payload value at key is a string matching the scope pattern
 * (copied)
 * (docs/PERMISSIONS.md "Scope patterns"). Server-built only: client filters have no such
 * condition. Same returns and ownership as ag_filter_match_value. */
int ag_filter_match_glob(const char *key, const ag_glob_t *pattern, ag_filter_t **out);

/* Frees f and everything it owns. NULL is a no-op. */
void ag_filter_free(ag_filter_t *f);

/*
 * Payload path helper also used by payload editing and order_by: calls fn for every JSON value
 * found at the key path (`a.b`, `a[].b`, `a[0].b`; an array at the end is flattened: a path to
 * an array yields each element). Values are borrowed from payload. Returns the number of values
 * visited; 0 when payload is not an object or path is invalid (check it first).
 */
size_t ag_payload_path_each(const json_t *payload, const char *path,
                            void (*fn)(const json_t *v, void *ud), void *ud);

/* ag_payload_path_each over a packed payload (json/ag_pack.h): fn gets each packed value,
 * borrowed from payload. */
size_t ag_payload_path_each_packed(const uint8_t *payload, const char *path,
                                   void (*fn)(const uint8_t *v, void *ud), void *ud);

/* As ag_payload_path_each, but an array at the end of the path is one value (not flattened):
 * what a rule that wants exactly one scalar there must look at. */
size_t ag_payload_path_each_raw(const json_t *payload, const char *path,
                                void (*fn)(const json_t *v, void *ud), void *ud);

/* Splits "head.rest" at its first dot: head copied into buf (cap bytes), the rest returned.
 * NULL when path has no dot or the head does not fit. */
const char *ag_payload_path_split(const char *path, char *buf, size_t cap);

/* Validates a key path string (non-empty, <= AG_MAX_PATH_LEN bytes, well-formed brackets and
 * quotes, keys of letters, digits, '_', '-' or non-ASCII unless quoted). 0 or AG_EINVAL. */
int ag_payload_path_check(const char *path, ag_diag_t *diag);

/* Payload selectors (docs/API.md "Payload selectors"): path may step into arrays ("a[].b" every
 * element, "a[2].b" one). ag_payload_include merges the part of payload at path into out (an
 * object, modified; AG_EINVAL for a bad path, nothing selected is not an error);
 * ag_payload_exclude removes what path selects from obj (in place; a bad path removes nothing). */
int ag_payload_include(json_t *out, const json_t *payload, const char *path);
void ag_payload_exclude(json_t *obj, const char *path);
/* Set payload with a key (POST /points/payload "key"): merges payload into the object(s) at path
 * inside obj, creating objects along plain keys ("a.b"); "a[0].b" / "a[].b" step into existing
 * arrays. AG_EINVAL for a bad path, AG_ENOMEM. */
int ag_payload_set_at(json_t *obj, const char *path, const json_t *payload);

/* Stricter than ag_filter_match: a positive condition on a multi-valued field holds only when
 * every value satisfies it (and there is at least one); under must_not the dual applies. A match
 * here implies ag_filter_match. Row-level write checks use it so a point cannot sit in several
 * scopes at once (e.g. tenant: ["acme", "beta"] written with a tenant=acme credential). */
bool ag_filter_match_all(const ag_filter_t *f, const ag_filter_subject_t *s);

/* RFC 3339 datetime (and the relaxed forms filters accept) to microseconds since the epoch. */
int ag_datetime_parse(const char *s, size_t len, int64_t *out_us);

#endif
