/*
 * ag_points.h — helpers shared by the point handlers: id lists, point vector inputs, the tenant
 * check of writes. Scopes, output selectors, rendering and order_by live in the query layer
 * (query/ag_query.h).
 */
#ifndef AG_POINTS_H
#define AG_POINTS_H

#include "api/ag_api.h"
#include "query/ag_query.h"

/* Parses a list of ids (array). Arena-allocated into *out. */
int ag_parse_ids(ag_call_t *call, const json_t *arr, const char *path, ag_point_id_t **out,
                 size_t *n);

/* Parses a point's vector input ("vector" of a record or one batch column entry) into m.
 * Floats are arena-allocated and normalised for Cosine. */
int ag_parse_point_vector(ag_call_t *call, const ag_collection_t *c, const json_t *v,
                          const char *path, ag_mutation_t *m);
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

#endif
