/*
 * ag_coll_disk.h — on_disk dense vectors read from the LMDB map (store/ag_coll_disk.c;
 * docs/ARCHITECTURE.md "On-disk vectors"). store/ only.
 */
#ifndef AG_COLL_DISK_H
#define AG_COLL_DISK_H

#include <lmdb.h>

#include "store/ag_collection.h"

struct ag_vector_cfg;

/* The fetch function of an on_disk vector's external store (ud: its ag_vector_cfg_t). Returns
 * the slot's row, padded to the store's stride, in a per-thread ring: valid for the next few
 * fetches on this thread only. Never NULL (zeros when the row cannot be read). */
const float *ag_coll__disk_fetch(void *ud, uint32_t slot);

/* A read scope on this thread for collection c (no-op unless c has an on_disk vector): fetches
 * inside it share one read transaction, begun at the first fetch and ended, with the map-size
 * gate left, by the outermost end. Scopes nest. Call begin after taking c's lock and end before
 * releasing it. */
void ag_coll__disk_begin(const ag_collection_t *c);
void ag_coll__disk_end(const ag_collection_t *c);

/* While a collection loads: fetches on this thread use txn (borrowed; NULL ends it). */
void ag_coll__disk_borrow(MDB_env *env, MDB_txn *txn);

/* A copy of n floats of row that stays valid until this thread's scope ends (returned as is
 * when no scope is open, or when out of memory). Owned by the scope. */
const float *ag_coll__disk_keep(const float *row, size_t n);

#endif
