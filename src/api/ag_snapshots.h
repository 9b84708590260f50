/*
 * ag_snapshots.h — collection and full snapshots, backups and backup schedules (the api side;
 * the consistent copy and the restore are store/ag_snapshot.h). Rules: docs/SECURITY.md
 * "Snapshots"; routes: docs/API.md.
 *
 * Files live under storage.snapshots_path (default <storage>/snapshots):
 *   collections/<collection>/<name>.snapshot (+ .checksum)   collection snapshots
 *   full/<name>.snapshot (+ .checksum)                        full snapshots
 *   backups/<id>.snapshot (+ .checksum, .json)                backups
 *   backup-schedules.json                                     schedules
 *   .tmp/                                                     uploads, downloads, extraction
 * A snapshot is written to a temporary name, fsynced, its checksum file written, then renamed:
 * a listing shows only complete snapshots.
 */
#ifndef AG_SNAPSHOTS_H
#define AG_SNAPSHOTS_H

#include "api/ag_api.h"

/* Starts the snapshot service (its directory, the background worker and the backup scheduler).
 * Called by ag_api_init. */
int ag_snapshots_start(ag_api_t *api, ag_diag_t *diag);
/* Stops the worker and the scheduler (waiting for a running job); call before the store
 * closes. Safe to call when never started. */
void ag_snapshots_stop(void);
/* From ag_api_begin, for upload routes, once the caller is admitted and before any byte of the
 * body is read: checks the query parameters and sends the body to a temporary file. Non-zero
 * (diag set) refuses the upload at once. */
int ag_snapshots_upload_begin(ag_call_t *call, ag_diag_t *diag);

/* The snapshot files for other front ends (the gRPC Snapshots service), without a REST call:
 * the caller has authorized (the REST routes' rules: docs/SECURITY.md "Snapshots", including
 * the refusal to row-restricted principals). collection NULL means full snapshots. */
/* Writes a new snapshot now; *desc a new {name, creation_time, size, checksum}. AG_ENOTFOUND
 * for a missing collection, AG_ENOSPACE without room. */
int ag_snapshots_create(const char *collection, json_t **desc, ag_diag_t *diag);
/* A new array of the complete snapshots' descriptions (empty for none or an unknown name). */
json_t *ag_snapshots_list(const char *collection);
/* Deletes one; AG_ENOTFOUND for a name that is not one of them. */
int ag_snapshots_delete(const char *collection, const char *name, ag_diag_t *diag);

extern const ag_route_t ag_routes_snapshots[];
extern const size_t ag_routes_snapshots_len;

#endif
