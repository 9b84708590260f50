/*
 * ag_tar.h — a minimal, strict ustar (POSIX.1-1988 tar) writer and reader for snapshot archives
 * (docs/SECURITY.md "Snapshots").
 *
 * The writer produces regular-file entries only (names up to 99 bytes, no prefix field). The
 * reader accepts only what the writer could have produced, plus directories: every header's
 * checksum and "ustar" magic must be right, sizes are strict octal, and an entry is refused when
 * its name is absolute, has an empty, "." or ".." segment, a backslash or a control character,
 * when it is a symbolic link, hard link, device, FIFO, PAX or GNU extension, or when its name
 * was already seen. Extraction writes only into a fresh directory it is given, creating each
 * file with O_EXCL | O_NOFOLLOW, so nothing can land outside it.
 */
#ifndef AG_TAR_H
#define AG_TAR_H

#include "ag_base.h"

#include <stdio.h>

#define AG_TAR_BLOCK 512
#define AG_TAR_NAME_MAX 99

/* ---- writing ------------------------------------------------------------------------------- */

/* Writes a regular-file header for name with size bytes to follow. AG_EINVAL for a name the
 * reader would refuse (or longer than AG_TAR_NAME_MAX), AG_EIO on a write error. */
int ag_tar_put_header(FILE *f, const char *name, uint64_t size, int64_t mtime);
/* Pads the entry that had size bytes to the next block. */
int ag_tar_put_pad(FILE *f, uint64_t size);
/* A whole entry from memory: header, data, padding. */
int ag_tar_put_file(FILE *f, const char *name, const void *data, size_t len, int64_t mtime);
/* Starts an entry whose size is not known yet: remembers where its header goes and writes a
 * placeholder; write the data, then ag_tar_end_entry patches the header and pads. */
typedef struct ag_tar_entry_w {
    long header_at;
    long data_at;
    char name[AG_TAR_NAME_MAX + 1];
    int64_t mtime;
} ag_tar_entry_w_t;
int ag_tar_begin_entry(FILE *f, ag_tar_entry_w_t *e, const char *name, int64_t mtime);
int ag_tar_end_entry(FILE *f, ag_tar_entry_w_t *e);
/* The two zero blocks that end an archive. */
int ag_tar_finish(FILE *f);

/* ---- reading ------------------------------------------------------------------------------- */

/* Is name an entry name the reader accepts (see above)? On false, diag says why. */
bool ag_tar_name_ok(const char *name, ag_diag_t *diag);

typedef struct ag_tar_limits {
    uint64_t max_entries;     /* 0 = 10,000 */
    uint64_t max_total_bytes; /* sum of entry sizes; 0 = no limit beyond the archive's length */
} ag_tar_limits_t;

/* Extracts the archive held in fd[offset, offset + length) into dir, which must exist and be
 * empty (a fresh temporary directory). Every entry is validated before its data is written; on
 * any refusal the extraction stops with AG_EINVAL (or AG_EUNPROCESSABLE for a damaged archive)
 * and a message naming the entry, and the caller removes dir. AG_EIO on a write error. */
int ag_tar_extract(int fd, uint64_t offset, uint64_t length, const char *dir,
                   const ag_tar_limits_t *limits, ag_diag_t *diag);

/* Removes dir and everything extracted in it (regular files and directories only; symbolic
 * links are unlinked, never followed). Best effort. */
void ag_tar_remove_tree(const char *dir);

#endif
