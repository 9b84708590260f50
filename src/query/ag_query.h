/*
 * ag_query.h — the query layer: parsed read requests and the engine that runs them over one
 * collection (docs/ARCHITECTURE.md "Query layer").
 *
 * Nothing here knows about HTTP or credentials. The caller (api/) authorizes first and hands in
 * what authorization produced: the row restriction (an ag_filter_t every read ANDs in) and a
 * callback that opens another collection for lookup_from / with_lookup, authorized there by the
 * caller. Parsers take the JSON, an arena and an ag_diag_t (through ag_qctx_t), so they are
 * unit-tested and fuzzed without a server.
 *
 * Memory: everything a parser or the executor allocates per request comes from ctx->arena and
 * lives until the arena is released, unless a function says it returns a new JSON reference.
 */
#ifndef AG_QUERY_H
#define AG_QUERY_H

#include "ag_arena.h"
#include "ag_base.h"
#include "ag_clock.h"
#include "ag_id.h"

#include <jansson.h>

#include "index/ag_filter.h"
#include "index/ag_index.h"
#include "store/ag_collection.h"
#include "json/ag_fastpoints.h"
#include "json/ag_jsonw.h"

#define AG_QUERY_PATH_LEN 192
#define AG_QUERY_DEADLINE_EVERY 1024u /* slots visited between two looks at the clock */

/* Opens a collection other than the request's own (lookup_from, with_lookup), authorized by the
 * caller: on success *out is a new reference and *restriction (owned by the caller of the
 * callback, NULL = none) the row restriction there. where names the field for messages. On
 * failure writes ctx's diag and returns the error. */
typedef int (*ag_qopen_fn)(void *ud, const char *name, const char *where, ag_collection_t **out,
                           ag_filter_t **restriction);

/* What one request brings to the query layer. All borrowed for the duration of the call. */
typedef struct ag_qctx {
    ag_arena_t *arena;
    ag_diag_t *diag;
    double deadline;                /* ag_now_mono() time after which work stops (408) */
    uint64_t timeout_s;             /* the timeout the deadline came from (for the message) */
    const ag_filter_t *restriction; /* the caller's row restriction here, NULL = none */
    const char *path_name;          /* the collection as named in the request (maybe an alias) */
    ag_qopen_fn open_other;         /* NULL: lookups in other collections are refused */
    void *open_ud;
} ag_qctx_t;

/* AG_ETIMEOUT with the standard message once ctx's deadline has passed, else 0. */
int ag_qctx_deadline(const ag_qctx_t *ctx);

/* ---- scope: the caller's filter AND the row restriction ------------------------------------ */

/* What a read may see: both must match. user is owned (ag_scope_release frees it); restriction is
 * borrowed from the caller. */
typedef struct ag_scope {
    ag_collection_t *c;
    ag_filter_t *user;
    const ag_filter_t *restriction;
} ag_scope_t;

/* Compiles filter_json (may be NULL) for collection c; diag names `path`. */
int ag_scope_init(ag_scope_t *sc, ag_collection_t *c, const ag_filter_t *restriction,
                  const json_t *filter_json, const char *path, ag_diag_t *diag);
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
/* The same, but false (nothing built) when both estimates exceed max: the planner's question
 * "are there at most max candidates?" answered from the indexes' counts alone. */
bool ag_scope_candidates_max(const ag_scope_t *sc, ag_arena_t *arena, const json_t *filter_json,
                             size_t max, uint32_t **out, size_t *n);

/* Points tested against a scope by count, facet, scroll and delete-by-filter, process-wide
 * (GET /metrics `points_examined_total`): lets a test check that restricted reads do work
 * proportional to what is in scope. Callers add a request's total once. */
void ag_scope_note_examined(uint64_t n);
uint64_t ag_scope_examined_total(void);

/* ---- output selectors and rendering -------------------------------------------------------- */

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

/* Renders a point (returns a new JSON object, NULL when out of memory). score is included when
 * has_score. Caller holds c's read lock. */
json_t *ag_render_point(const ag_collection_t *c, uint32_t slot, const ag_payload_sel_t *ps,
                        bool with_vector, const json_t *which, bool has_score, float score);
/* An order_by value as clients see it: an integer when it is one, else a real (new reference). */
json_t *ag_order_value_json(double v);

/* ---- vector inputs ------------------------------------------------------------------------- */

/* Parses a sparse vector {indices, values} into arena memory (sorted by index). */
int ag_parse_sparse(ag_arena_t *arena, const json_t *v, const char *path, ag_sparse_vec_t *out,
                    ag_diag_t *diag);
/* Parses a dense vector for vector index vi of c (arena; normalised for Cosine, converted to the
 * vector's datatype): exactly one vector. */
int ag_parse_dense(ag_arena_t *arena, const ag_collection_t *c, int vi, const json_t *v,
                   const char *path, float **out, ag_diag_t *diag);
/* The same, also taking a multivector (a list of vectors) when vi is one: *out gets *rows rows
 * of dim floats, contiguous. A plain vector is one row (also for a multivector, as Qdrant). */
int ag_parse_dense_rows(ag_arena_t *arena, const ag_collection_t *c, int vi, const json_t *v,
                        const char *path, float **out, uint32_t *rows, ag_diag_t *diag);

/* ---- order_by: one implementation for scroll and query ------------------------------------- */

typedef struct ag_order_by {
    const char *key; /* borrowed from the JSON */
    bool desc, has_start, datetime;
    double start; /* datetimes in seconds */
} ag_order_by_t;

/* Parses an order_by value (a key, or {key, direction, start_from}). Needs no collection. */
int ag_order_by_parse(const json_t *ob, ag_order_by_t *out, ag_diag_t *diag);
/* Checks that the key has a range index (integer, float, datetime) in c and notes whether it
 * is a datetime. Caller holds c's read lock (it reads the schema). */
int ag_order_by_check(ag_collection_t *c, ag_order_by_t *ob, ag_diag_t *diag);

/* A point with its ordering value. id is borrowed (valid under the read lock). */
typedef struct ag_ordered {
    uint32_t slot;
    double value;
    const ag_point_id_t *id;
} ag_ordered_t;

/* The smallest number (or datetime, in seconds) at key in payload; false when there is none. */
bool ag_order_value(const json_t *payload, const char *key, bool datetime, double *out);
/* Keeps the entries at or past start_from and sorts them by value (then id), in place; returns
 * how many are kept. Pure: no collection needed. */
size_t ag_order_sort(ag_ordered_t *o, size_t n, const ag_order_by_t *ob);
/* The slots among `slots` (n of them) that hold a value at ob->key, ordered (arena array in
 * *out, *nout entries): each by its smallest value, or with each_value (scroll) once per value.
 * Caller holds c's read lock. */
int ag_order_slots(ag_arena_t *arena, ag_collection_t *c, const uint32_t *slots, size_t n,
                   const ag_order_by_t *ob, bool each_value, ag_ordered_t **out, size_t *nout);

/* ---- universal query (search, recommend, query and their groups forms) --------------------- */

typedef enum { AG_QAPI_SEARCH, AG_QAPI_RECOMMEND, AG_QAPI_QUERY, AG_QAPI_DISCOVER } ag_qapi_t;
typedef enum {
    AG_Q_NONE,
    AG_Q_NEAREST,
    AG_Q_RECO,
    AG_Q_ORDER_BY,
    AG_Q_RRF,
    AG_Q_DBSF,
    AG_Q_SAMPLE,
    AG_Q_FORMULA /* rescoring of the prefetches by a formula (query/ag_formula.h) */
} ag_qkind_t;
/* DISCOVER and CONTEXT are Qdrant's discovery and context queries: pairs pos[i] / neg[i]
 * (npos == nneg), DISCOVER's target in the stage's `nearest`. */
typedef enum {
    AG_RECO_AVERAGE,
    AG_RECO_BEST,
    AG_RECO_SUM,
    AG_RECO_DISCOVER,
    AG_RECO_CONTEXT
} ag_reco_t;

/* A vector given inline, or by the id of the point whose vector it is (filled in by resolve). */
typedef struct ag_vin {
    bool by_id;
    ag_point_id_t id;
    const float *dense; /* the stage's dense dim (times rows), arena */
    uint32_t rows;      /* rows in dense: 1, or more for a multivector */
    ag_sparse_vec_t sp; /* sorted by index, arena */
} ag_vin_t;

/* What a stage returns, best first. Scores are what clients see (distances for Euclid and
 * Manhattan, so lower_better); order_by stages carry the ordering values in ov. */
typedef struct ag_ranked {
    ag_hit_t *h;
    double *ov;
    size_t n;
    bool lower_better;
} ag_ranked_t;

typedef struct ag_query ag_query_t;
typedef struct ag_stage ag_stage_t;
typedef struct ag_formula ag_formula_t;

struct ag_stage {
    ag_query_t *rq;
    ag_stage_t *parent;
    char path[AG_QUERY_PATH_LEN]; /* JSON path of the stage object ("" at the top) */
    ag_qkind_t kind;
    const char *using_name; /* borrowed from the body; "" = the unnamed vector */
    int vi, si;             /* the `using` vector: a dense or a sparse index, the other -1 */
    ag_vin_t nearest;
    bool mmr; /* nearest with maximal marginal relevance */
    float mmr_diversity;
    size_t mmr_candidates;
    ag_reco_t strategy;
    ag_vin_t *pos, *neg;
    size_t npos, nneg;
    const json_t *order_by_json; /* checked under the read lock (it reads the payload schema) */
    ag_order_by_t ob;
    uint32_t rrf_k;
    ag_formula_t *formula; /* AG_Q_FORMULA; its conditions freed by ag_query_release */
    float *weights;        /* rrf weights, one per prefetch, or NULL */
    size_t nweights;
    ag_scope_t scope;
    const json_t *filter_json; /* this stage's own filter (borrowed), for payload-index lookups */
    ag_search_params_t params;
    size_t limit;            /* prefetches only; the top stage uses q->limit */
    const char *lookup_coll; /* lookup_from naming another collection, else NULL */
    const char *lookup_vec;  /* lookup_from.vector, else NULL (= using) */
    ag_stage_t **pre;
    size_t npre;
    bool cached;
    ag_ranked_t res;
};

/* One parsed request: a tree of stages plus what to render. Lives in ctx->arena; scopes hold
 * compiled filters, freed by ag_query_release. */
struct ag_query {
    const ag_qctx_t *ctx;
    ag_collection_t *c; /* borrowed: the caller holds a reference */
    ag_qapi_t api;
    bool groups;
    ag_stage_t *root;
    ag_stage_t **all;
    size_t nall;
    ag_point_id_t *excl_ids; /* example ids of this collection: never returned */
    size_t nexcl_ids, cap_excl_ids;
    uint32_t *excl; /* their slots, sorted */
    size_t nexcl;
    size_t limit, offset;
    ag_payload_sel_t ps;
    bool wv;
    const json_t *which;
    const char *group_by;
    size_t group_size;
    const char *wl_coll; /* with_lookup */
    ag_payload_sel_t wl_ps;
    bool wl_wv;
    const json_t *wl_which;
    const json_t *timeout; /* the body's `timeout` (validated), NULL if absent */
};

/* Parses one request object at JSON path `path` ("" at the top, "searches[3]" in a batch) into
 * q for collection c (vector names and dimensions are checked against it; no lock needed). On
 * failure ctx->diag says why; call ag_query_release either way. */
int ag_query_parse(ag_query_t *q, const ag_qctx_t *ctx, ag_collection_t *c, ag_qapi_t api,
                   bool groups, const json_t *body, const char *path);
/* Refuses a request whose queries, examples or results add up to more than the request-cost
 * budgets (docs/SECURITY.md "Request cost"), counted from the JSON before anything is parsed.
 * list is the batch's array of requests, else NULL and body is the one request. */
int ag_query_check_budgets(ag_qapi_t api, const json_t *list, const json_t *body, bool groups,
                           ag_diag_t *diag);
/* Runs a parsed request: example vectors from other collections (through ctx->open_other), then
 * under c's read lock the stage tree, then with_lookup. *out gets a new JSON value: the list of
 * points, {"points": [...]} for the query API, or {"groups": [...]}. */
int ag_query_run(ag_query_t *q, json_t **out);
void ag_query_release(ag_query_t *q);

/* The direct path of a common search or query (api/api_search.c; json/ag_fastpoints.h
 * ag_fastsearch_parse read the body): one nearest stage on the unnamed dense vector, filter
 * (parsed, borrowed, may be NULL) compiled as ag_query_parse would. *declined: the request is not
 * one this path answers exactly as ag_query_parse would (named vectors only, a multivector, limit
 * 0, offsets or limits past the budgets, a float16 value out of range) — release q and parse the
 * body strictly. Otherwise as ag_query_parse (an error in the filter is the strict parser's).
 * fs->vec has the collection's dimension. Call ag_query_release either way. */
int ag_query_parse_fast(ag_query_t *q, const ag_qctx_t *ctx, ag_collection_t *c, ag_qapi_t api,
                        const ag_fastsearch_t *fs, const json_t *filter, bool *declined);
/* Runs a request of ag_query_parse_fast and writes the answer's `result` value into w as the
 * tree of ag_query_run would print (points {id, version, score, payload, vector}; the query API
 * wraps them in {"points": ...}), without building the tree (docs/BENCHMARKS.md). */
int ag_query_run_text(ag_query_t *q, ag_jw_t *w);

/* Fusion of ranked lists (kind AG_Q_RRF or AG_Q_DBSF), as Qdrant: rrf scores a point
 * sum 1 / ((rank + 1) / weight + k - 1) over the lists (weights NULL = all 1); dbsf maps each
 * list's scores from [mean - 3 sd, mean + 3 sd] to [0, 1] and sums them. Points under
 * threshold (when has_threshold) are dropped; the best k are kept in *out (arena). */
int ag_query_fuse(ag_arena_t *arena, ag_qkind_t kind, uint32_t rrf_k, const float *weights,
                  const ag_ranked_t *lists, size_t nlists, bool has_threshold, float threshold,
                  size_t k, ag_ranked_t *out);

/* ---- distance matrix ---------------------------------------------------------------------- */

#define AG_MATRIX_DEFAULT_SAMPLE 10
#define AG_MATRIX_DEFAULT_LIMIT 3
#define AG_MATRIX_MAX_PAIRS 1100000u /* sample x limit of one request (docs/SECURITY.md) */

/* Qdrant's distance matrix: up to `sample` random points of sc that have the dense vector
 * using_name ("" = the unnamed one), each (in id order) with its best `limit` neighbours among
 * them, scored as a search scores them. *out gets a new {"pairs": [{a, b, score}]} or, with
 * offsets, {"offsets_row", "offsets_col", "scores", "ids"}. filter_json: the filter sc was
 * compiled from, for payload-index candidates. Takes the read lock. */
int ag_query_matrix(const ag_qctx_t *ctx, const ag_scope_t *sc, const json_t *filter_json,
                    const char *using_name, size_t sample, size_t limit, bool offsets,
                    json_t **out);

/* ---- reads by id, scroll, count and facet -------------------------------------------------- */

/* The points of ids (repeats and points outside ctx->restriction left out), rendered in the order
 * given: *out gets a new JSON array. Takes the read lock. */
int ag_query_retrieve(const ag_qctx_t *ctx, ag_collection_t *c, const ag_point_id_t *ids, size_t n,
                      const ag_payload_sel_t *ps, bool wv, const json_t *which, json_t **out);
/* One point with its payload and vectors (new JSON object in *out); AG_ENOTFOUND when it does not
 * exist or is outside ctx->restriction. Takes the read lock. */
int ag_query_get(const ag_qctx_t *ctx, ag_collection_t *c, const ag_point_id_t *id, json_t **out);

/* The ids of the points in sc (the selection of a write by filter; filter_json: the filter sc
 * was compiled from, for payload-index candidates), arena-allocated into *out. Nothing is
 * written meanwhile, so running out of time leaves the collection untouched. Caller holds the
 * write session or the read lock. */
int ag_query_select_ids(const ag_qctx_t *ctx, const ag_scope_t *sc, const json_t *filter_json,
                        ag_point_id_t **out, size_t *n);

/* ---- scroll ------------------------------------------------------------------------------- */

/* Qdrant's scroll over the points in sc: order_by (may be NULL) or id order from offset (NULL =
 * the start). *out gets a new {"points": [...], "next_page_offset": id|null}. Takes the read
 * lock. */
int ag_query_scroll(const ag_qctx_t *ctx, const ag_scope_t *sc, const json_t *filter_json,
                    const json_t *order_by, const ag_point_id_t *offset, uint64_t limit,
                    const ag_payload_sel_t *ps, bool wv, const json_t *which, json_t **out);

/* The number of points in sc (filter_json: the filter sc was compiled from, for payload-index
 * candidates). Takes the read lock. */
int ag_query_count(const ag_qctx_t *ctx, const ag_scope_t *sc, const json_t *filter_json,
                   json_int_t *out);
/* Counts of each value of key (which needs a keyword/integer/bool/uuid index) among the points
 * in sc, best limit of them as Qdrant's facet hits (new JSON array in *out). Takes the read lock.
 */
int ag_query_facet(const ag_qctx_t *ctx, const ag_scope_t *sc, const json_t *filter_json,
                   const char *key, uint64_t limit, json_t **out);

#endif
