/*
 * ag_file.h — durable file replacement, the one way Aegis writes a file that must survive a crash
 * whole or not at all (graph checkpoints, the root key's hash, audit key and head):
 *   write <path>.tmp → fflush → fsync → close → rename over <path> → fsync the directory.
 * A crash at any point leaves either the old file or the new one, never half of either; a
 * failure removes the temporary file.
 */
#ifndef AG_FILE_H
#define AG_FILE_H

#include "ag_base.h"

#include <stdio.h>

typedef struct ag_durable {
    char path[4096];
    char tmp[4104];
    FILE *f; /* the temporary file, open for writing (and seeking) while the write is open */
} ag_durable_t;

/* Starts replacing path: creates <path>.tmp with mode (truncating a stale one). 0, AG_EINVAL for
 * a path that is too long, AG_EIO. On success d->f is open: write through it, then commit or
 * abort exactly once. */
int ag_durable_open(ag_durable_t *d, const char *path, int mode);
/* Flushes, fsyncs and closes the temporary file, renames it over the path and fsyncs the
 * directory. 0 or AG_EIO (then the temporary file is gone and the old file untouched). */
int ag_durable_commit(ag_durable_t *d);
/* Closes and removes the temporary file; the old file is untouched. */
void ag_durable_abort(ag_durable_t *d);

/* The whole of data[0..len) as the new content of path (ag_durable_open + write + commit). */
int ag_file_replace(const char *path, const void *data, size_t len, int mode);

/* Writes all len bytes to fd, retrying short writes and EINTR. 0 or AG_EIO. */
int ag_write_all(int fd, const void *buf, size_t len);
/* fsyncs the directory holding path (so a rename or a new file in it is durable). 0 or AG_EIO. */
int ag_fsync_dir_of(const char *path);
/* fsyncs the directory dir itself. 0 or AG_EIO. */
int ag_fsync_dir(const char *dir);

#endif
