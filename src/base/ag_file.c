#include "ag_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

int ag_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return AG_EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int ag_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return AG_EIO;
    int rc = fsync(fd) == 0 ? 0 : AG_EIO;
    close(fd);
    return rc;
}

int ag_fsync_dir_of(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        dir[0] = '.';
        dir[1] = '\0';
    } else {
        size_t n = (size_t)(slash - path);
        if (n == 0)
            n = 1;
        if (n >= sizeof(dir))
            return AG_EIO;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    return ag_fsync_dir(dir);
}

int ag_durable_open(ag_durable_t *d, const char *path, int mode)
{
    d->f = NULL;
    int n = snprintf(d->path, sizeof(d->path), "%s", path);
    int m = snprintf(d->tmp, sizeof(d->tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(d->path) || m < 0 || (size_t)m >= sizeof(d->tmp))
        return AG_EINVAL;
    int fd = open(d->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return AG_EIO;
    if (!(d->f = fdopen(fd, "wb"))) {
        close(fd);
        unlink(d->tmp);
        return AG_EIO;
    }
    return 0;
}

int ag_durable_commit(ag_durable_t *d)
{
    if (!d->f)
        return AG_EIO;
    bool ok = fflush(d->f) == 0 && fsync(fileno(d->f)) == 0;
    ok = fclose(d->f) == 0 && ok;
    d->f = NULL;
    if (!ok || rename(d->tmp, d->path) != 0) {
        unlink(d->tmp);
        return AG_EIO;
    }
    return ag_fsync_dir_of(d->path);
}

void ag_durable_abort(ag_durable_t *d)
{
    if (d->f)
        fclose(d->f);
    d->f = NULL;
    unlink(d->tmp);
}

int ag_file_replace(const char *path, const void *data, size_t len, int mode)
{
    ag_durable_t d;
    int rc = ag_durable_open(&d, path, mode);
    if (rc)
        return rc;
    if (len && fwrite(data, len, 1, d.f) != 1) {
        ag_durable_abort(&d);
        return AG_EIO;
    }
    return ag_durable_commit(&d);
}
