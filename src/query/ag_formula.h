/*
 * ag_formula.h — Qdrant's score formulas (`"query": {"formula": ..., "defaults": {...}}`): an
 * expression over the prefetch scores, payload values and filter conditions of a point, parsed
 * once per request and evaluated for every point the prefetches return (docs/API.md "Formula
 * queries" for the language and its rules).
 *
 * The evaluator knows no collection: what a point offers comes in an ag_formula_env_t (its
 * prefetch scores, its payload, a callback answering conditions), so it is unit-tested alone.
 * The caller decides which points are evaluated — the query layer hands it only points that
 * passed the row restriction and the filters, so a formula reads nothing a caller may not see.
 */
#ifndef AG_FORMULA_H
#define AG_FORMULA_H

#include "ag_arena.h"
#include "ag_base.h"

#include <jansson.h>

#include "index/ag_filter.h"

#define AG_FORMULA_MAX_DEPTH 64    /* nesting of expressions */
#define AG_FORMULA_MAX_NODES 10000 /* expressions of one formula, every level together */

typedef struct ag_formula ag_formula_t;

/* What one point offers to a formula. All borrowed for the call. */
typedef struct ag_formula_env {
    const double *scores; /* nscores prefetch scores; NAN: the point is not in that prefetch */
    size_t nscores;
    const json_t *payload; /* the point's payload object, or NULL */
    /* Does the point satisfy f? (conditions used as 0/1) */
    bool (*cond)(void *ud, const ag_filter_t *f);
    void *ud;
} ag_formula_env_t;

/*
 * Parses `formula` (the expression) and `defaults` (an object or NULL) at JSON path `path` (the
 * query object, for messages). The formula lives in the arena; the filters of its conditions are
 * compiled and owned by it: call ag_formula_release once done, on success or failure (*out is set
 * as soon as anything was allocated, NULL otherwise). Refuses (AG_EINVAL naming the field) unknown
 * operators, bad variables ("$score[1]" and payload key paths are variables), bad datetimes,
 * decay parameters out of range, nesting over AG_FORMULA_MAX_DEPTH, more than
 * AG_FORMULA_MAX_NODES expressions. Borrows nothing from the JSON after it returns except the
 * default values (borrowed: the JSON must outlive the formula).
 */
int ag_formula_parse(ag_arena_t *arena, const json_t *formula, const json_t *defaults,
                     const char *path, ag_diag_t *diag, ag_formula_t **out);
void ag_formula_release(ag_formula_t *f);

/*
 * The formula's value for one point (a double; the caller narrows it to a score). Fails with
 * AG_EINVAL (Qdrant's errors, naming the key or the expression) when a payload value the formula
 * needs is missing without a default or of the wrong type, or when a division, square root,
 * power, exp or logarithm is not finite (a division by zero with `by_zero_default` gives that
 * default instead). Never allocates; safe from many threads on one formula.
 */
int ag_formula_eval(const ag_formula_t *f, const ag_formula_env_t *env, double *out,
                    ag_diag_t *diag);

#endif
