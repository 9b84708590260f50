/*
 * powercut_shim.c — an LD_PRELOAD library for the power-loss test (tests/crash/powercut.test.mjs).
 *
 * It makes a process's unsynced writes revocable, as a power cut would revoke them: before every
 * write to a file under $AEGIS_POWERCUT_ROOT it appends to $AEGIS_POWERCUT_JOURNAL the bytes the
 * write is about to overwrite and the file's size; after a successful fsync/fdatasync of that file
 * it appends a sync mark. After the process is killed, powercut_apply undoes, newest first, every
 * write made since each file's last sync — the file is as it was at its last sync, which is all a
 * disk promises after losing power. Writes through an O_SYNC/O_DSYNC descriptor are durable when
 * they return and are not recorded. Directory operations (create, rename, unlink) are not
 * reverted: only file contents are.
 *
 * Journal record: {u32 magic, u32 type, u32 path_len, u32 data_len, u64 offset, u64 len,
 * u64 old_size} then path bytes, then data_len bytes of old contents (for a write: the bytes that
 * existed in [offset, offset + len) before it, possibly fewer when the file was shorter).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "powercut.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int journal = -1;
static char root[4096];
static size_t root_len;
static int initialised;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_ftruncate)(int, off_t);

/* dlsym returns a data pointer; copied bit for bit into the function pointer (POSIX guarantees
 * they are the same size). */
#define LOAD(var, name)                                                                            \
    do {                                                                                           \
        void *sym_ = dlsym(RTLD_NEXT, name);                                                       \
        memcpy(&(var), &sym_, sizeof(var));                                                        \
    } while (0)

static void init(void)
{
    if (initialised)
        return;
    LOAD(real_write, "write");
    LOAD(real_pwrite, "pwrite");
    LOAD(real_pwrite64, "pwrite64");
    LOAD(real_writev, "writev");
    LOAD(real_pwritev, "pwritev");
    LOAD(real_fsync, "fsync");
    LOAD(real_fdatasync, "fdatasync");
    LOAD(real_ftruncate, "ftruncate");
    const char *r = getenv("AEGIS_POWERCUT_ROOT");
    const char *j = getenv("AEGIS_POWERCUT_JOURNAL");
    if (r && j) {
        snprintf(root, sizeof(root), "%s", r);
        root_len = strlen(root);
        journal = open(j, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    }
    initialised = 1;
}

/* The path of fd when it is a regular file under the root (written into path), else 0. */
static int tracked(int fd, char *path, size_t len)
{
    if (journal < 0 || fd == journal)
        return 0;
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, len - 1);
    if (n <= 0)
        return 0;
    path[n] = '\0';
    if ((size_t)n < root_len || strncmp(path, root, root_len) != 0)
        return 0;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & (O_SYNC | O_DSYNC)))
        return 0; /* durable on return */
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

static void jwrite(const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = real_write(journal, c, n);
        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            return;
        }
        c += w;
        n -= (size_t)w;
    }
}

static void record(uint32_t type, const char *path, uint64_t offset, uint64_t len, int fd)
{
    struct stat st;
    uint64_t old_size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    uint64_t have = 0;
    char *old = NULL;
    if (type == PC_WRITE && offset < old_size) {
        have = old_size - offset < len ? old_size - offset : len;
        old = malloc(have ? have : 1);
        if (!old || pread(fd, old, have, (off_t)offset) != (ssize_t)have)
            have = 0;
    } else if (type == PC_TRUNCATE && offset < old_size) {
        /* Shrinking: keep what is cut off. */
        have = old_size - offset;
        old = malloc(have);
        if (!old || pread(fd, old, have, (off_t)offset) != (ssize_t)have)
            have = 0;
    }
    pc_header_t h = {PC_MAGIC, type, (uint32_t)strlen(path), (uint32_t)have, offset, len, old_size};
    jwrite(&h, sizeof(h));
    jwrite(path, h.path_len);
    if (have)
        jwrite(old, have);
    free(old);
}

static size_t iov_len(const struct iovec *iov, int n)
{
    size_t t = 0;
    for (int i = 0; i < n; i++)
        t += iov[i].iov_len;
    return t;
}

/* Runs one write with its undo record, atomically with respect to other tracked writes. */
#define TRACKED_WRITE(fd, offset_expr, length, call)                                               \
    do {                                                                                           \
        init();                                                                                    \
        char path_[4096];                                                                          \
        if (!tracked((fd), path_, sizeof(path_)))                                                  \
            return (call);                                                                         \
        pthread_mutex_lock(&lock);                                                                 \
        record(PC_WRITE, path_, (uint64_t)(offset_expr), (uint64_t)(length), (fd));                \
        ssize_t r_ = (call);                                                                       \
        pthread_mutex_unlock(&lock);                                                               \
        return r_;                                                                                 \
    } while (0)

static off_t write_offset(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    struct stat st;
    if (fl >= 0 && (fl & O_APPEND) && fstat(fd, &st) == 0)
        return st.st_size;
    return lseek(fd, 0, SEEK_CUR);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    TRACKED_WRITE(fd, write_offset(fd), n, real_write(fd, buf, n));
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    TRACKED_WRITE(fd, off, n, real_pwrite(fd, buf, n, off));
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    TRACKED_WRITE(fd, off, n, real_pwrite64(fd, buf, n, off));
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    TRACKED_WRITE(fd, write_offset(fd), iov_len(iov, cnt), real_writev(fd, iov, cnt));
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    TRACKED_WRITE(fd, off, iov_len(iov, cnt), real_pwritev(fd, iov, cnt, off));
}

int ftruncate(int fd, off_t len)
{
    init();
    char path[4096];
    if (!tracked(fd, path, sizeof(path)))
        return real_ftruncate(fd, len);
    pthread_mutex_lock(&lock);
    record(PC_TRUNCATE, path, (uint64_t)len, 0, fd);
    int r = real_ftruncate(fd, len);
    pthread_mutex_unlock(&lock);
    return r;
}

/* Syncs fd with fn and marks it synced. The shim's lock is held across the sync, so no tracked
 * write can fall between the sync and its mark: the mark says exactly what the sync covered. */
static int sync_marked(int fd, int (*fn)(int))
{
    init();
    char path[4096];
    if (!tracked(fd, path, sizeof(path)))
        return fn(fd);
    pthread_mutex_lock(&lock);
    int r = fn(fd);
    if (r == 0) {
        pc_header_t h = {PC_MAGIC, PC_SYNC, (uint32_t)strlen(path), 0, 0, 0, 0};
        jwrite(&h, sizeof(h));
        jwrite(path, h.path_len);
    }
    pthread_mutex_unlock(&lock);
    return r;
}

int fsync(int fd)
{
    init();
    return sync_marked(fd, real_fsync);
}

int fdatasync(int fd)
{
    init();
    return sync_marked(fd, real_fdatasync);
}
