/*
 * ag_snapshots_int.h — shared by api_snapshots.c and api_backups.c only (the ag_snap_ tier).
 */
#ifndef AG_SNAPSHOTS_INT_H
#define AG_SNAPSHOTS_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "api/ag_api.h"

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
    atomic_uint seq;
} ag_snapsvc_t;

extern ag_snapsvc_t ag_snapsvc;

int ag_snap_mkdirs(const char *path);
void ag_snap_coll_dir(char *out, size_t len, const char *collection);
void ag_snap_full_dir(char *out, size_t len);
/* A new snapshot file name "<prefix>-<UTC time>-<n><random>.snapshot". */
void ag_snap_make_name(char *out, size_t len, const char *prefix);
/* Writes dir/name (collection = NULL: a full snapshot) durably with its checksum file; *desc a
 * new {name, creation_time, size, checksum}. */
int ag_snap_create(const char *dir, const char *name, const char *collection, json_t **desc,
                   ag_diag_t *diag);
/* ag_snap_create with the security state sealed under passphrase (NULL = without it). */
int ag_snap_create_sealed(const char *dir, const char *name, const char *collection,
                          const char *passphrase, json_t **desc, ag_diag_t *diag);
/* A new array of the complete snapshots in dir, sorted by name. */
json_t *ag_snap_list_dir(const char *dir);
/* A new descriptor of dir/name, or NULL when it is not a complete snapshot. */
json_t *ag_snap_describe(const char *dir, const char *name);
/* Opens dir/name (a snapshot file name; never a link): *fd owned by the caller. 404 otherwise. */
int ag_snap_open(const char *dir, const char *name, int *fd, uint64_t *size, ag_diag_t *diag);
int ag_snap_remove(const char *dir, const char *name, ag_diag_t *diag);
/* Checks checksum (may be NULL), extracts fd[off, off+len) into a fresh temporary directory,
 * validates it and restores it: into collection target, or everything (target NULL, a full
 * snapshot). All or nothing. */
int ag_snap_restore_fd(int fd, uint64_t off, uint64_t len, const char *checksum, const char *target,
                       ag_diag_t *diag);
int ag_snap_sha256_fd(int fd, uint64_t off, uint64_t len, char hex[65]);
bool ag_snap_checksum_ok(const char *s);
bool ag_snap_is_root(const ag_call_t *call);
int ag_snap_need_root(ag_call_t *call);
/* Answers 202 {"status":"accepted"}. */
int ag_snap_accepted(ag_call_t *call);

/* api_backups.c */
int ag_backups_start(ag_diag_t *diag);
void ag_backups_stop(void);

#endif
