/*
 * ag_write.h — the write side of a collection as handlers use it: a write session
 * (ag_coll_write, the counterpart of ag_coll_read), the batch of mutations one operation builds,
 * the payload edits of Qdrant's payload endpoints, and the tenant removal procedure. What to
 * write and whether the caller may write it is decided above (api/, auth/); how it is written is
 * here (docs/ARCHITECTURE.md "The collection API").
 */
#ifndef AG_WRITE_H
#define AG_WRITE_H

#include "ag_base.h"

#include <jansson.h>

#include "ag_arena.h"
#include "store/ag_collection.h"
#include "store/ag_store.h"

/* Runs fn(ud, c) holding c's write mutex (every other writer of c waits; readers do not) and
 * returns what fn returns; AG_ENOTFOUND without calling fn when c was deleted meanwhile. */
typedef int (*ag_coll_write_fn)(void *ud, ag_collection_t *c);
int ag_coll_write(ag_collection_t *c, ag_coll_write_fn fn, void *ud);

/* The mutations of one operation. The array lives in an arena; the payloads are owned by the
 * batch (ag_batch_release). Zero-initialise. */
typedef struct ag_batch {
    ag_mutation_t *m;
    size_t n, cap;
} ag_batch_t;

/* A new zeroed mutation at the end of b (grown in arena); NULL when out of memory. */
ag_mutation_t *ag_batch_add(ag_batch_t *b, ag_arena_t *arena);
/* Drops the payloads the mutations own and empties b. */
void ag_batch_release(ag_batch_t *b);
/* Writes b in one transaction (ag_coll_apply; write session held). */
int ag_batch_apply(ag_collection_t *c, ag_batch_t *b, bool sync, ag_diag_t *diag);

/* The payload point m->id has once m is applied: m's own, else the stored one, else an empty
 * object — a new reference the caller owns (lock or write session held); NULL when out of
 * memory. */
json_t *ag_coll_next_payload(const ag_collection_t *c, const ag_mutation_t *m);

/* Qdrant's payload edits: set (merge the keys of `payload`, at the object `key` names when
 * given, creating objects on the way), overwrite, delete keys (dotted paths), clear. */
typedef enum { AG_PL_SET, AG_PL_OVERWRITE, AG_PL_DELETE_KEYS, AG_PL_CLEAR } ag_pl_op_t;
typedef struct ag_payload_edit {
    ag_pl_op_t op;
    const json_t *payload; /* SET, OVERWRITE: an object */
    const char *key;       /* SET: NULL = the top level */
    const json_t *keys;    /* DELETE_KEYS: an array of key paths */
} ag_payload_edit_t;
/* The edited payload, a new object (cur is not changed); NULL when out of memory. */
json_t *ag_payload_edit(const json_t *cur, const ag_payload_edit_t *e);
/* Removes the key a dotted path names (the whole path as one key first, then nested). */
void ag_payload_delete_path(json_t *obj, const char *path);

/* Deletes a tenant of c (write session held): deactivated first, durably, so that a crash part
 * way leaves an inactive tenant whose remaining points stay invisible and the delete can be
 * repeated; then every point whose `key` names it, in synced chunks; then the declaration.
 * *deleted counts the points. */
int ag_store_tenant_delete(ag_store_t *st, ag_collection_t *c, const char *key, const char *tenant,
                           size_t *deleted, ag_diag_t *diag);

#endif
