#include "ag_tar.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ag_file.h"

/* ustar header layout (offsets into the 512-byte block). */
#define H_NAME 0
#define H_MODE 100
#define H_UID 108
#define H_GID 116
#define H_SIZE 124
#define H_MTIME 136
#define H_CHKSUM 148
#define H_TYPE 156
#define H_LINK 157
#define H_MAGIC 257
#define H_VERSION 263
#define H_UNAME 265
#define H_GNAME 297
#define H_PREFIX 345

/* Entry sizes are written as 11 octal digits: below 8 GiB. */
#define MAX_ENTRY_SIZE 077777777777ull

static void octal(char *dst, size_t width, uint64_t v)
{
    /* width-1 digits then NUL, zero-padded. */
    dst[width - 1] = '\0';
    for (size_t i = width - 1; i-- > 0;) {
        dst[i] = (char)('0' + (v & 7));
        v >>= 3;
    }
}

static unsigned checksum(const unsigned char *h)
{
    unsigned sum = 0;
    for (int i = 0; i < AG_TAR_BLOCK; i++)
        sum += (i >= H_CHKSUM && i < H_CHKSUM + 8) ? ' ' : h[i];
    return sum;
}

bool ag_tar_name_ok(const char *name, ag_diag_t *diag)
{
    size_t len = strlen(name);
    if (len == 0) {
        ag_fail(diag, AG_EINVAL, "archive entry with an empty name");
        return false;
    }
    if (name[0] == '/') {
        ag_fail(diag, AG_EINVAL, "archive entry '%.100s': absolute paths are refused", name);
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch < 0x20 || ch == 0x7f || ch == '\\') {
            ag_fail(diag, AG_EINVAL,
                    "archive entry name has a control character or backslash (refused)");
            return false;
        }
    }
    const char *p = name;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0 && end && end[1] != '\0') {
            ag_fail(diag, AG_EINVAL, "archive entry '%.100s': empty path segment", name);
            return false;
        }
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
            ag_fail(diag, AG_EINVAL, "archive entry '%.100s': '.' and '..' segments are refused",
                    name);
            return false;
        }
        if (!end)
            break;
        p = end + 1;
    }
    return true;
}

static int header(unsigned char h[AG_TAR_BLOCK], const char *name, uint64_t size, int64_t mtime)
{
    size_t len = strlen(name);
    ag_diag_t d;
    if (len > AG_TAR_NAME_MAX || !ag_tar_name_ok(name, &d) || name[len - 1] == '/' ||
        size > MAX_ENTRY_SIZE)
        return AG_EINVAL;
    memset(h, 0, AG_TAR_BLOCK);
    memcpy(h + H_NAME, name, len);
    octal((char *)h + H_MODE, 8, 0600);
    octal((char *)h + H_UID, 8, 0);
    octal((char *)h + H_GID, 8, 0);
    octal((char *)h + H_SIZE, 12, size);
    octal((char *)h + H_MTIME, 12, mtime > 0 ? (uint64_t)mtime : 0);
    h[H_TYPE] = '0';
    memcpy(h + H_MAGIC, "ustar", 6);
    memcpy(h + H_VERSION, "00", 2);
    memcpy(h + H_UNAME, "aegis", 5);
    memcpy(h + H_GNAME, "aegis", 5);
    octal((char *)h + H_CHKSUM, 7, checksum(h));
    h[H_CHKSUM + 7] = ' ';
    return 0;
}

int ag_tar_put_header(FILE *f, const char *name, uint64_t size, int64_t mtime)
{
    unsigned char h[AG_TAR_BLOCK];
    int rc = header(h, name, size, mtime);
    if (rc)
        return rc;
    return fwrite(h, 1, sizeof(h), f) == sizeof(h) ? 0 : AG_EIO;
}

int ag_tar_put_pad(FILE *f, uint64_t size)
{
    static const unsigned char zero[AG_TAR_BLOCK];
    size_t pad = (size_t)((AG_TAR_BLOCK - size % AG_TAR_BLOCK) % AG_TAR_BLOCK);
    return pad == 0 || fwrite(zero, 1, pad, f) == pad ? 0 : AG_EIO;
}

int ag_tar_put_file(FILE *f, const char *name, const void *data, size_t len, int64_t mtime)
{
    int rc = ag_tar_put_header(f, name, len, mtime);
    if (rc == 0 && len > 0 && fwrite(data, 1, len, f) != len)
        rc = AG_EIO;
    return rc ? rc : ag_tar_put_pad(f, len);
}

int ag_tar_begin_entry(FILE *f, ag_tar_entry_w_t *e, const char *name, int64_t mtime)
{
    if (strlen(name) > AG_TAR_NAME_MAX)
        return AG_EINVAL;
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->mtime = mtime;
    e->header_at = ftell(f);
    if (e->header_at < 0)
        return AG_EIO;
    int rc = ag_tar_put_header(f, name, 0, mtime);
    e->data_at = e->header_at + AG_TAR_BLOCK;
    return rc;
}

int ag_tar_end_entry(FILE *f, ag_tar_entry_w_t *e)
{
    long end = ftell(f);
    if (end < e->data_at)
        return AG_EIO;
    uint64_t size = (uint64_t)(end - e->data_at);
    unsigned char h[AG_TAR_BLOCK];
    int rc = header(h, e->name, size, e->mtime);
    if (rc)
        return rc;
    if (fseek(f, e->header_at, SEEK_SET) != 0 || fwrite(h, 1, sizeof(h), f) != sizeof(h) ||
        fseek(f, end, SEEK_SET) != 0)
        return AG_EIO;
    return ag_tar_put_pad(f, size);
}

int ag_tar_finish(FILE *f)
{
    static const unsigned char zero[2 * AG_TAR_BLOCK];
    return fwrite(zero, 1, sizeof(zero), f) == sizeof(zero) ? 0 : AG_EIO;
}

/* ---- reading ------------------------------------------------------------------------------- */

static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return AG_EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Strict octal: optional leading spaces, digits, then NUL or space to the end of the field. */
static bool parse_octal(const unsigned char *s, size_t width, uint64_t *out)
{
    size_t i = 0;
    uint64_t v = 0;
    while (i < width && s[i] == ' ')
        i++;
    size_t digits = 0;
    while (i < width && s[i] >= '0' && s[i] <= '7') {
        if (v > (UINT64_MAX >> 3))
            return false;
        v = (v << 3) | (uint64_t)(s[i] - '0');
        i++;
        digits++;
    }
    if (digits == 0)
        return false;
    for (; i < width; i++)
        if (s[i] != '\0' && s[i] != ' ')
            return false;
    *out = v;
    return true;
}

static bool all_zero(const unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

typedef struct seen {
    char **names;
    size_t n, cap;
} seen_t;

static int seen_add(seen_t *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0)
            return AG_EEXIST;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **grown = realloc(s->names, cap * sizeof(*grown));
        if (!grown)
            return AG_ENOMEM;
        s->names = grown;
        s->cap = cap;
    }
    if (!(s->names[s->n] = strdup(name)))
        return AG_ENOMEM;
    s->n++;
    return 0;
}

static void seen_release(seen_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->names[i]);
    free(s->names);
}

/* Opens (creating when mkdir_missing) each directory of rel under dirfd, never following a
 * symbolic link; returns an fd for the last directory (or a dup of dirfd), and *leaf the final
 * segment. rel has been checked by ag_tar_name_ok. */
static int walk_dirs(int dirfd, const char *rel, char *buf, size_t buflen, const char **leaf)
{
    if (strlen(rel) >= buflen)
        return -1;
    snprintf(buf, buflen, "%s", rel);
    int cur = dup(dirfd);
    char *p = buf;
    for (;;) {
        char *slash = strchr(p, '/');
        if (!slash || slash[1] == '\0') {
            if (slash)
                *slash = '\0';
            *leaf = p;
            return cur;
        }
        *slash = '\0';
        if (mkdirat(cur, p, 0700) != 0 && errno != EEXIST) {
            close(cur);
            return -1;
        }
        int next = openat(cur, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(cur);
        if (next < 0)
            return -1;
        cur = next;
        p = slash + 1;
    }
}

static int copy_out(int src, uint64_t off, uint64_t size, int dst)
{
    char buf[65536];
    while (size > 0) {
        size_t n = (size_t)AG_MIN(size, (uint64_t)sizeof(buf));
        if (read_at(src, buf, n, off) != 0 || ag_write_all(dst, buf, n) != 0)
            return AG_EIO;
        off += n;
        size -= n;
    }
    return 0;
}

int ag_tar_extract(int fd, uint64_t offset, uint64_t length, const char *dir,
                   const ag_tar_limits_t *limits, ag_diag_t *diag)
{
    uint64_t max_entries = limits && limits->max_entries ? limits->max_entries : 10000;
    uint64_t max_total = limits && limits->max_total_bytes ? limits->max_total_bytes : UINT64_MAX;
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dirfd < 0)
        return ag_fail(diag, AG_EIO, "cannot open the extraction directory");
    seen_t seen = {0};
    uint64_t pos = 0, total = 0, entries = 0;
    int rc = 0;
    bool ended = false;
    while (rc == 0 && !ended) {
        unsigned char h[AG_TAR_BLOCK];
        if (pos + AG_TAR_BLOCK > length) {
            rc = ag_fail(diag, AG_EUNPROCESSABLE, "archive is truncated (no end marker)");
            break;
        }
        if ((rc = read_at(fd, h, sizeof(h), offset + pos)) != 0) {
            rc = ag_fail(diag, AG_EIO, "cannot read the archive");
            break;
        }
        pos += AG_TAR_BLOCK;
        if (all_zero(h, sizeof(h))) {
            ended = true; /* the end marker: whatever follows is padding and ignored */
            break;
        }
        uint64_t sum = 0, size = 0;
        if (!parse_octal(h + H_CHKSUM, 8, &sum) || sum != checksum(h)) {
            rc = ag_fail(diag, AG_EUNPROCESSABLE, "archive header checksum mismatch");
            break;
        }
        if (memcmp(h + H_MAGIC, "ustar", 5) != 0) {
            rc = ag_fail(diag, AG_EUNPROCESSABLE, "archive is not a ustar archive");
            break;
        }
        char name[256 + 2];
        size_t plen = strnlen((const char *)h + H_PREFIX, 155);
        size_t nlen = strnlen((const char *)h + H_NAME, 100);
        if (plen > 0) {
            memcpy(name, h + H_PREFIX, plen);
            name[plen] = '/';
            memcpy(name + plen + 1, h + H_NAME, nlen);
            name[plen + 1 + nlen] = '\0';
        } else {
            memcpy(name, h + H_NAME, nlen);
            name[nlen] = '\0';
        }
        char type = (char)h[H_TYPE];
        if (type != '0' && type != '\0' && type != '5') {
            const char *what = type == '1'   ? "hard link"
                               : type == '2' ? "symbolic link"
                               : type == '3' ? "character device"
                               : type == '4' ? "block device"
                               : type == '6' ? "FIFO"
                                             : "extension header or unknown entry type";
            rc = ag_fail(diag, AG_EINVAL,
                         "archive entry '%.100s' is a %s: only regular files and directories are "
                         "accepted",
                         name, what);
            break;
        }
        if (!ag_tar_name_ok(name, diag)) {
            rc = AG_EINVAL;
            break;
        }
        if (!parse_octal(h + H_SIZE, 12, &size) || (type == '5' && size != 0)) {
            rc = ag_fail(diag, AG_EUNPROCESSABLE, "archive entry '%.100s' has a bad size", name);
            break;
        }
        uint64_t padded = (size + AG_TAR_BLOCK - 1) / AG_TAR_BLOCK * AG_TAR_BLOCK;
        if (size > length || padded > length - pos) {
            rc = ag_fail(diag, AG_EUNPROCESSABLE, "archive entry '%.100s' is truncated", name);
            break;
        }
        if (++entries > max_entries || size > max_total - total) {
            rc = ag_fail(diag, AG_EINVAL, "archive has too many entries or too much data");
            break;
        }
        total += size;
        /* A trailing slash marks a directory; "a/" and "a" are the same path. */
        size_t len = strlen(name);
        if (name[len - 1] == '/') {
            if (type != '5') {
                rc = ag_fail(diag, AG_EINVAL, "archive entry '%.100s' is malformed", name);
                break;
            }
            name[len - 1] = '\0';
        }
        int s = seen_add(&seen, name);
        if (s == AG_EEXIST) {
            rc = ag_fail(diag, AG_EINVAL, "archive entry '%.100s' appears twice", name);
            break;
        }
        if (s) {
            rc = s;
            break;
        }
        char buf[300];
        const char *leaf = NULL;
        int parent = walk_dirs(dirfd, name, buf, sizeof(buf), &leaf);
        if (parent < 0) {
            rc = ag_fail(diag, AG_EINVAL, "archive entry '%.100s' cannot be placed", name);
            break;
        }
        if (type == '5') {
            if (mkdirat(parent, leaf, 0700) != 0 && errno != EEXIST)
                rc = ag_fail(diag, AG_EIO, "cannot create directory '%.100s'", name);
        } else {
            int out =
                openat(parent, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (out < 0) {
                rc = ag_fail(diag, AG_EINVAL, "archive entry '%.100s' cannot be created", name);
            } else {
                if (copy_out(fd, offset + pos, size, out) != 0 || fsync(out) != 0)
                    rc = ag_fail(diag, AG_EIO, "cannot write '%.100s'", name);
                close(out);
            }
        }
        close(parent);
        pos += padded;
    }
    seen_release(&seen);
    close(dirfd);
    return rc;
}

static void remove_at(int parent, const char *name, int depth)
{
    if (unlinkat(parent, name, 0) == 0 || depth > 32)
        return;
    int sub = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0)
        return;
    DIR *d = fdopendir(sub);
    if (!d) {
        close(sub);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        remove_at(dirfd(d), e->d_name, depth + 1);
    }
    closedir(d);
    unlinkat(parent, name, AT_REMOVEDIR);
}

void ag_tar_remove_tree(const char *dir)
{
    if (!dir || !*dir)
        return;
    remove_at(AT_FDCWD, dir, 0);
}
