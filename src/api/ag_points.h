/*
 * ag_points.h — helpers shared by the point and search handlers: the two-part filter every read
 * applies (the caller's filter AND the row restriction from authorization), point selectors,
 * vector input parsing, and rendering of points with with_payload / with_vector.
 */
#ifndef AG_POINTS_H
#define AG_POINTS_H

#include "api/ag_api.h"

/* What a read may see: both must match. user is owned (ag_scope_release frees it); restriction is
 * borrowed from the call. */
typedef struct ag_scope {
    ag_collection_t *c;
    ag_filter_t *user;
    const ag_filter_t *restriction;
} ag_scope_t;

/* Compiles filter_json (may be NULL) for collection c; diag names `path`. */
int ag_scope_init(ag_scope_t *sc, ag_call_t *call, ag_collection_t *c, const json_t *filter_json,
                  const char *path);
void ag_scope_release(ag_scope_t *sc);
/* Does slot pass the scope? Caller holds the collection's read lock or write mutex. */
bool ag_scope_match(const ag_scope_t *sc, uint32_t slot);
/* An ag_accept_fn over an ag_scope_t. */
bool ag_scope_accept(const void *ud, uint32_t slot);

/* Candidate slots for a read over sc (ascending; a slot may repeat, callers skip adjacent
 * repeats), from payload indexes on keyword/integer/uuid/bool fields: the first indexed equality
 * of the caller's filter_json (may be NULL) or the first one the row restriction requires,
 * whichever yields fewer, so with an indexed restriction the work never exceeds the points in
 * scope. Every candidate must still pass ag_scope_match. Returns false when no index applies
 * (scan every slot then). Arena-allocated; caller holds the collection's read lock or write
 * mutex. */
bool ag_scope_candidates(const ag_scope_t *sc, ag_arena_t *arena, const json_t *filter_json,
                         uint32_t **out, size_t *n);

/* Points tested against a scope by count, facet, scroll and delete-by-filter, process-wide
 * (GET /metrics `points_examined_total`): lets a test check that restricted reads do work
 * proportional to what is in scope. Callers add a request's total once. */
void ag_scope_note_examined(uint64_t n);
uint64_t ag_scope_examined_total(void);

/* with_payload: true/false, [keys], {"include": [...]} or {"exclude": [...]}. */
typedef struct ag_payload_sel {
    bool enabled;
    const json_t *include; /* borrowed array or NULL */
    const json_t *exclude; /* borrowed array or NULL */
} ag_payload_sel_t;

int ag_parse_with_payload(const json_t *v, bool dflt, ag_payload_sel_t *out, ag_diag_t *diag);
/* with_vector: true/false or [names]. *which borrowed or NULL (= all). */
int ag_parse_with_vector(const json_t *v, bool *enabled, const json_t **which, ag_diag_t *diag);

/* Both output selectors of a request object: with_payload (default payload_default) and the
 * vector selector under vector_key ("with_vector", or "with_vectors" inside with_lookup). */
int ag_parse_output(const json_t *obj, const char *vector_key, bool payload_default,
                    ag_payload_sel_t *ps, bool *with_vector, const json_t **which, ag_diag_t *diag);

/* Renders a point (new JSON object). score is included when has_score. */
json_t *ag_render_point(const ag_collection_t *c, uint32_t slot, const ag_payload_sel_t *ps,
                        bool with_vector, const json_t *which, bool has_score, float score);

/* Parses a list of ids (array). Arena-allocated into *out. */
int ag_parse_ids(ag_call_t *call, const json_t *arr, const char *path, ag_point_id_t **out,
                 size_t *n);

/* Parses a point's vector input ("vector" of a record or one batch column entry) into m.
 * Floats are arena-allocated and normalised for Cosine. */
int ag_parse_point_vector(ag_call_t *call, const ag_collection_t *c, const json_t *v,
                          const char *path, ag_mutation_t *m);
/* Parses a sparse vector {indices, values} into arena memory (sorted by index). */
int ag_parse_sparse(ag_call_t *call, const json_t *v, const char *path, ag_sparse_vec_t *out);
/* Parses a dense query vector for vector index vi (normalised for Cosine). */
int ag_parse_dense(ag_call_t *call, const ag_collection_t *c, int vi, const json_t *v,
                   const char *path, float **out);

/* Parses an order_by value (a key, or {key, direction, start_from}) for collection c, whose key
 * needs a range index (integer, float, datetime). Datetimes come out in seconds. Defined in
 * api_points.c; shared with the query API. Caller holds c's read lock (it reads the schema). */
int ag_parse_order_by(ag_call_t *call, ag_collection_t *c, const json_t *ob, const char **key,
                      bool *desc, bool *has_start, double *start, bool *datetime);

/* The refusal of a write that would leave the caller's rows; one "%s" for the point id. Also the
 * answer for an undeclared or inactive tenant to a caller that may not read the tenant, so the
 * three cases cannot be told apart (docs/SECURITY.md "Tenants"). */
#define AG_OUT_OF_SCOPE_WRITE                                                                      \
    "Forbidden: point %s would end up outside the rows this credential may write"

/* Tenants (docs/SECURITY.md): in a multi-tenant collection (tenancy from ag_store_tenancy), a
 * payload being written must name exactly one declared, active tenant in the tenant key: 400 when
 * the key is missing or not a single string; 403 for an undeclared or inactive tenant (named as
 * such only to callers holding read:tenants on it, otherwise AG_OUT_OF_SCOPE_WRITE).
 * 0 when tenancy has no key. */
int ag_tenant_check_payload(ag_call_t *call, const json_t *tenancy, const ag_point_id_t *id,
                            const json_t *payload);

/* Deletes the value at a dotted key path (objects only) from obj, if present. */
void ag_payload_delete_path(json_t *obj, const char *path);

#endif
