/*
 * ag_snapshots_int.h — shared by api_snapshots.c, api_snapshots_io.c and api_backups.c only (the
 * ag_snap_ tier).
 */
#ifndef AG_SNAPSHOTS_INT_H
#define AG_SNAPSHOTS_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "api/ag_api.h"
#include "store/ag_snapfile.h"

struct job;
typedef struct ag_snapsvc {
    bool started;
    ag_api_t *api;             /* borrowed */
    char root[2048];           /* storage.snapshots_path */
    char tmp[2100];            /* <root>/.tmp */
    uint64_t max_upload;       /* bytes */
    uint64_t recover_max;      /* bytes */
    const char *recover_hosts; /* borrowed from the configuration; NULL = none */
    pthread_t worker;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *head, *tail;
    bool stopping;
} ag_snapsvc_t;

extern ag_snapsvc_t ag_snapsvc;

void ag_snap_coll_dir(char *out, size_t len, const char *collection);
void ag_snap_full_dir(char *out, size_t len);
/* ag_snapfile_create (store/ag_snapfile.h) on the server's store: dir/name (collection = NULL: a
 * full snapshot) with its checksum file; *desc a new {name, creation_time, size, checksum}. */
int ag_snap_create(const char *dir, const char *name, const char *collection, json_t **desc,
                   ag_diag_t *diag);
/* ag_snap_create with the security state sealed under passphrase (NULL = without it). */
int ag_snap_create_sealed(const char *dir, const char *name, const char *collection,
                          const char *passphrase, json_t **desc, ag_diag_t *diag);
/* ag_snapfile_create_partial on the server's store. */
int ag_snap_create_partial(const char *dir, const char *name, const char *collection,
                           const json_t *manifest, bool with_data, json_t **desc, ag_diag_t *diag);
/* ag_snapfile_restore on the server's store, extracting under <snapshots>/.tmp. */
int ag_snap_restore_fd(int fd, uint64_t off, uint64_t len, const char *checksum, const char *target,
                       ag_diag_t *diag);
/* Opens what a recover's location names (file:// inside the snapshots directory, or http(s)://
 * from an allowed host, fetched into a temporary file). *fd and *len on success; *tmp_path
 * (owned) is a file to remove afterwards, or NULL. */
int ag_snap_open_location(const char *location, const char *api_key, int *fd, uint64_t *len,
                          char **tmp_path, ag_diag_t *diag);
/* The snapshot inside an upload: the one part of a multipart/form-data body (field "snapshot"),
 * or the whole body when it is not multipart. */
int ag_snap_upload_range(ag_request_t *req, uint64_t *off, uint64_t *len, ag_diag_t *diag);
bool ag_snap_is_root(const ag_call_t *call);
int ag_snap_need_root(ag_call_t *call);
/* Answers 202 {"status":"accepted"}. */
int ag_snap_accepted(ag_call_t *call);

/* api_backups.c */
int ag_backups_start(ag_diag_t *diag);
void ag_backups_stop(void);

#endif
