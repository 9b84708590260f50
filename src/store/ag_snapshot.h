/*
 * ag_snapshot.h — the store's side of snapshots (docs/SECURITY.md "Snapshots"): writing a
 * consistent copy of one collection (or of every collection and alias) into a tar archive, and
 * restoring collections from an archive that has already been extracted and validated.
 *
 * Archive entries written here (store/ag_snapfile.c adds manifest.json and, through the api
 * layer's callback, a full snapshot's sealed security state):
 *   collection snapshot:  collection.json  points.bin  vectors.bin
 *   full snapshot:        aliases.json  collections/<name>/{collection.json,points.bin,vectors.bin}
 * collection.json is {"params", "schema", "tenants"}; the .bin files are the collection's LMDB
 * records in key order, each as u32le key length, u32le value length, key, value.
 */
#ifndef AG_SNAPSHOT_H
#define AG_SNAPSHOT_H

#include "ag_base.h"

#include <jansson.h>
#include <stdio.h>

#include "store/ag_store.h"

/* Writes the entries of a snapshot to f (a seekable file, positioned where the entries go) from
 * one LMDB read transaction, so the copy is consistent while writes go on: collection = NULL
 * writes every collection and alias (full snapshot). Catalog changes (create, delete, aliases)
 * wait while it runs; point writes and searches do not. space_dir (may be NULL) is checked with
 * statvfs first: AG_ENOSPACE (507) when its file system has less room than the collection's
 * records need. *names (may be NULL) gets a new array of the collections written. AG_ENOTFOUND
 * when collection does not exist. */
int ag_store_snapshot_write(ag_store_t *st, const char *collection, FILE *f, const char *space_dir,
                            json_t **names, ag_diag_t *diag);

/* One collection to restore: its name, and the directory holding its extracted collection.json,
 * points.bin and vectors.bin (borrowed); manifest (borrowed, may be NULL): the restored collection
 * takes that partial-snapshot identity (ag_coll_adopt_manifest). */
typedef struct ag_restore_item {
    const char *name;
    const char *dir;
    const json_t *manifest; /* a partial snapshot's source manifest to adopt, or NULL */
} ag_restore_item_t;

/* Restores every item: all of them, replacing collections of the same names, or none (nothing
 * changed). The records are written into new databases and loaded in one transaction without
 * the catalog lock, then swapped in under it in a second (docs/SECURITY.md "Snapshots"). Every
 * record is validated first (ids, payload JSON, vector sizes against the params, key order);
 * aliases (may be NULL) is {"alias": "collection"} to set as well. A name held by an alias is
 * AG_ECONFLICT. */
int ag_store_restore(ag_store_t *st, const ag_restore_item_t *items, size_t n,
                     const json_t *aliases, ag_diag_t *diag);

#endif
