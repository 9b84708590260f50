/*
 * ag_store_int.h — the store's internal tier (ag_store__*), shared by store/'s own files only
 * (snapshots need the registry, the catalog and one read transaction at a time).
 */
#ifndef AG_STORE_INT_H
#define AG_STORE_INT_H

#include <lmdb.h>

#include "store/ag_store.h"

/* Holds the catalog's lock (shared: catalog changes wait, point writes do not) and begins one
 * read transaction. *colls gets new references to the collection named (or every collection
 * when collection is NULL), *n their count; AG_ENOTFOUND when collection is not a collection.
 * End with ag_store__snapshot_end exactly once on success. */
int ag_store__snapshot_begin(ag_store_t *st, const char *collection, MDB_txn **txn, MDB_dbi *meta,
                             ag_collection_t ***colls, size_t *n);
void ag_store__snapshot_end(ag_store_t *st, MDB_txn *txn, ag_collection_t **colls, size_t n);

/* ag_snapshot.c: loads an extracted collection's records into c's (new, empty) databases inside
 * txn, validating each record. */
int ag_snap__fill(ag_collection_t *c, MDB_txn *txn, const char *dir, ag_diag_t *diag);
/* ag_snapshot.c: reads and validates dir/collection.json. On success new references in *params
 * (normalised), *schema and *tenants. */
int ag_snap__read_config(const char *dir, json_t **params, json_t **schema, json_t **tenants,
                         ag_diag_t *diag);

#endif
