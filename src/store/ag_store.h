/*
 * ag_store.h — the storage directory: one LMDB environment (data.mdb) holding the catalog
 * ("meta": collections, aliases, id sequence) and every collection's databases, plus the
 * in-memory registry of open collections.
 *
 * Durability: the environment runs with MDB_NOMETASYNC, so each commit fsyncs its data pages and
 * a wait=true write additionally syncs the meta page before it is acknowledged; a background
 * flusher syncs every second, which bounds how long a wait=false write stays volatile.
 */
#ifndef AG_STORE_H
#define AG_STORE_H

#include "ag_base.h"

#include <jansson.h>

#include "store/ag_collection.h"

typedef struct ag_store ag_store_t;

typedef struct ag_store_config {
    const char *path;
    size_t map_size; /* bytes of address space the environment starts with (sparse on disk) */
    double flush_interval_s;
    size_t map_max; /* the ceiling the map may grow to when full (docs/RELIABILITY.md); 0 =
                     * map_size (no growth) */
    /* Indexing progress lines (docs/API.md "Logs"): every progress_s seconds while at least
     * progress_min vectors wait for the indexer; 0 = 5 s and 1000. */
    double progress_s;
    uint32_t progress_min;
} ag_store_config_t;

/* Opens (creating the directory if needed) and loads every collection. *out owned by caller. */
int ag_store_open(const ag_store_config_t *cfg, ag_store_t **out, ag_diag_t *diag);
/* Syncs and closes. Collections still referenced by requests stay valid until unref'd, but must
 * not be written. */
void ag_store_close(ag_store_t *st);

/* Resolves a collection name or alias. On success *out is a new reference (ag_coll_unref).
 * *resolved_from_alias (may be NULL) tells whether `name` was an alias. */
int ag_store_get(ag_store_t *st, const char *name, ag_collection_t **out, bool *via_alias);
/* The collection an alias points to, copied into buf; AG_ENOTFOUND if name is not an alias. */
int ag_store_alias_target(ag_store_t *st, const char *alias, char *buf, size_t len);

/* params: already validated by ag_coll_parse_params (borrowed). AG_EEXIST if the name is taken
 * by a collection or an alias. */
int ag_store_create(ag_store_t *st, const char *name, const json_t *params, ag_diag_t *diag);
/* *existed tells whether anything was deleted. Aliases pointing at it are removed too. */
int ag_store_delete(ag_store_t *st, const char *name, bool *existed, ag_diag_t *diag);
/* Merges a validated PATCH body into the stored params (no structural change to vectors).
 * ag_store_update_check makes every check of it and changes nothing; *changes (may be NULL)
 * tells whether applying it would change the params. */
int ag_store_update_params(ag_store_t *st, const char *name, const json_t *patch, ag_diag_t *diag);
int ag_store_update_check(ag_store_t *st, const char *name, const json_t *patch, bool *changes,
                          ag_diag_t *diag);
/* Sets (def non-NULL; takes ownership) or removes (def NULL) the payload index definition of
 * field and persists the schema; on failure the schema is left as it was. *existed (may be NULL)
 * tells whether the field had one; removing a field without one does nothing. Caller holds c's
 * write mutex (ag_coll_write_begin). */
int ag_store_set_index(ag_store_t *st, ag_collection_t *c, const char *field, json_t *def,
                       bool *existed, ag_diag_t *diag);

/* Adds named vector vname to collection (or alias) name — cfg {"dense": {size, distance, ...}}
 * or {"sparse": {...}} — or removes it with its stored vectors (cfg NULL). Committed whole or not
 * at all; the catalog then serves a freshly loaded collection (store/ag_coll_vectors.c). */
int ag_store_vector_change(ag_store_t *st, const char *name, const char *vname, const json_t *cfg,
                           ag_diag_t *diag);
/* Every check ag_store_vector_change makes, nothing changed. */
int ag_store_vector_check(ag_store_t *st, const char *name, const char *vname, const json_t *cfg,
                          ag_diag_t *diag);

/* Returns a new JSON array of collection names (sorted). */
json_t *ag_store_list(ag_store_t *st);
/* Returns a new JSON array [{alias_name, collection_name}], optionally for one collection. */
json_t *ag_store_aliases(ag_store_t *st, const char *collection);
/* Asked, under the catalog's lock, for every alias an action creates, deletes or renames: name is
 * the alias, target the collection behind it. Non-zero (with diag set) refuses the whole request.
 * It must not call back into the store. */
typedef int (*ag_alias_check_fn)(void *ctx, const char *name, const char *target, ag_diag_t *diag);
/* Applies Qdrant's alias actions atomically (all or nothing); check (may be NULL) authorizes
 * each one against the catalog as it is while they apply. */
int ag_store_alias_actions(ag_store_t *st, const json_t *actions, ag_alias_check_fn check,
                           void *check_ctx, ag_diag_t *diag);

/*
 * Tenants (docs/SECURITY.md "Tenants"). A collection is multi-tenant when its payload schema has a
 * keyword or uuid index with params.is_tenant = true; that field is the tenant key. Declared
 * tenants are kept in the catalog (meta key "t/<collection>": {name: {"active": bool}}), dropped
 * with the collection. The store serves an immutable snapshot per collection:
 *   {"key": "<tenant key>" | null, "tenants": {name: {"active": bool}, ...}}
 */
typedef struct ag_tenancy ag_tenancy_t;
/* The snapshot's JSON: read it only (no json_incref of it or any part of it, no json_object_set
 * of a part into another tree: threads share it without jansson's counts). Valid until the
 * snapshot is released. NULL for NULL. */
const json_t *ag_tenancy_json(const ag_tenancy_t *t);
/* Drops a reference from ag_store_tenancy / ag_store_tenancy_locked (NULL: nothing). */
void ag_tenancy_release(ag_tenancy_t *t);
/* A reference to the snapshot of collection `name` (or the collection behind an alias), or
 * AG_ENOTFOUND when the collection does not exist. The caller releases *out. */
int ag_store_tenancy(ag_store_t *st, const char *name, ag_tenancy_t **out);
/* The same for c, for a caller holding c's write mutex (inside a write session): it never takes
 * the catalog lock (lock order: write mutex, then catalog lock; docs/ARCHITECTURE.md "Locks").
 * AG_ENOTFOUND when c was deleted. The caller releases *out. */
int ag_store_tenancy_locked(ag_store_t *st, ag_collection_t *c, ag_tenancy_t **out);
/* Declares a tenant (create: AG_EEXIST when declared) or sets active on a declared one
 * (AG_ENOTFOUND otherwise), durably before returning. Caller holds c's write mutex. */
int ag_store_tenant_set(ag_store_t *st, ag_collection_t *c, const char *tenant, bool create,
                        bool active, ag_diag_t *diag);
/* Removes a tenant's declaration (AG_ENOTFOUND when not declared). Caller holds c's write mutex
 * and has deleted the tenant's points. */
int ag_store_tenant_remove(ag_store_t *st, ag_collection_t *c, const char *tenant, ag_diag_t *diag);

/* The LMDB map: its configured size and the bytes its pages use now (GET /metrics). */
void ag_store_map_info(ag_store_t *st, uint64_t *map_size, uint64_t *used);

/* Forces a durable sync of everything committed so far. */
int ag_store_sync(ag_store_t *st);

#endif
