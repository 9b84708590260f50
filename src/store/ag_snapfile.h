/*
 * ag_snapfile.h — snapshot files in a snapshots directory (docs/SECURITY.md "Snapshots",
 * docs/ARCHITECTURE.md "Snapshots"): <name>.snapshot tar archives, each with a
 * <name>.snapshot.checksum (64 hex characters of its SHA-256) written before the archive is renamed
 * into place, so a snapshot is listed only once both exist. The caller (the api layer) chooses the
 * directories and authorizes; everything here takes them explicitly.
 */
#ifndef AG_SNAPFILE_H
#define AG_SNAPFILE_H

#include "ag_base.h"

#include <jansson.h>
#include <stdio.h>

#include "store/ag_store.h"

/* mkdir -p with mode 0700. */
int ag_snapfile_mkdirs(const char *path);
/* A new snapshot file name "<prefix>-<UTC time>-<n><random>.snapshot" into out. */
void ag_snapfile_make_name(char *out, size_t len, const char *prefix);

/* Adds entries to the archive f being written (the api layer's sealed security state). */
typedef int (*ag_snapfile_extra_fn)(FILE *f, void *ctx, ag_diag_t *diag);

/* Writes dir/name durably (collection = NULL: a full snapshot) from st, then manifest.json, then
 * its checksum file; creates dir if needed. extra (may be NULL) adds entries before the manifest,
 * which then says security_sealed. *desc a new {name, creation_time, size, checksum}. */
int ag_snapfile_create(ag_store_t *st, const char *dir, const char *name, const char *collection,
                       ag_snapfile_extra_fn extra, void *extra_ctx, json_t **desc, ag_diag_t *diag);
/* A partial snapshot of collection (docs/SECURITY.md "Partial snapshots"): manifest.json says
 * kind "partial" and carries manifest (the collection's, read by the caller before this call);
 * with_data false writes no collection data (the recipient is already at that state). */
int ag_snapfile_create_partial(ag_store_t *st, const char *dir, const char *name,
                               const char *collection, const json_t *manifest, bool with_data,
                               json_t **desc, ag_diag_t *diag);
/* A new array of the complete snapshots in dir, sorted by name (empty when dir is missing). */
json_t *ag_snapfile_list(const char *dir);
/* A new descriptor of dir/name, or NULL when it is not a complete snapshot. */
json_t *ag_snapfile_describe(const char *dir, const char *name);
/* Opens dir/name (a snapshot file name; never a link): *fd owned by the caller. 404 otherwise. */
int ag_snapfile_open(const char *dir, const char *name, int *fd, uint64_t *size, ag_diag_t *diag);
/* Deletes dir/name and its checksum file; 404 for a name that is not a snapshot file name. */
int ag_snapfile_remove(const char *dir, const char *name, ag_diag_t *diag);

/* SHA-256 of fd[off, off+len) as 64 lowercase hex characters (and a NUL) into hex. */
int ag_snapfile_sha256_fd(int fd, uint64_t off, uint64_t len, char hex[65]);
/* s is 64 hexadecimal characters (either case). */
bool ag_snapfile_checksum_ok(const char *s);
/* Checks checksum (may be NULL) and the free space, extracts fd[off, off+len) into a fresh
 * directory under tmp_dir (removed afterwards), validates it and restores it into st: into
 * collection target (a collection or partial snapshot), or everything (target NULL, a full
 * snapshot; its security.sealed is left for the offline unseal). All or nothing. */
int ag_snapfile_restore(ag_store_t *st, const char *tmp_dir, int fd, uint64_t off, uint64_t len,
                        const char *checksum, const char *target, ag_diag_t *diag);

#endif
