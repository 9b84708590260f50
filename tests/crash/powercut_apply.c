/*
 * powercut_apply JOURNAL — the power cut itself: undoes, newest first, every write recorded in
 * JOURNAL (by powercut_shim.c) after its file's last sync mark, restoring the overwritten bytes
 * and the earlier file size. Run it after the process that wrote the journal is dead. Prints
 * how many writes it revoked in how many files. Exit 0, or 1 on a malformed journal or I/O error.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "powercut.h"

typedef struct rec {
    pc_header_t h;
    char *path;
    char *data;
} rec_t;

static int read_full(FILE *f, void *p, size_t n)
{
    return n == 0 || fread(p, 1, n, f) == n;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: powercut_apply JOURNAL\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    rec_t *recs = NULL;
    size_t n = 0, cap = 0;
    pc_header_t h;
    while (fread(&h, sizeof(h), 1, f) == 1) {
        if (h.magic != PC_MAGIC || h.path_len == 0 || h.path_len > 4095) {
            fprintf(stderr, "powercut_apply: malformed record %zu\n", n);
            return 1;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            rec_t *grown = realloc(recs, cap * sizeof(*recs));
            if (!grown)
                return 1;
            recs = grown;
        }
        rec_t *r = &recs[n];
        r->h = h;
        r->path = calloc(1, h.path_len + 1);
        r->data = h.data_len ? malloc(h.data_len) : NULL;
        if (!r->path || (h.data_len && !r->data) || !read_full(f, r->path, h.path_len) ||
            !read_full(f, r->data, h.data_len)) {
            /* A record torn by the kill: it was never followed by its write. Stop here. */
            free(r->path);
            free(r->data);
            break;
        }
        n++;
    }
    fclose(f);
    /* Newest first. Once a path's newest sync mark is passed, its older records are durable. */
    const char *synced[256];
    size_t nsynced = 0, revoked = 0;
    for (size_t i = n; i-- > 0;) {
        rec_t *r = &recs[i];
        int durable = 0;
        for (size_t k = 0; k < nsynced && !durable; k++)
            durable = strcmp(synced[k], r->path) == 0;
        if (durable)
            continue;
        if (r->h.type == PC_SYNC) {
            if (nsynced < 256)
                synced[nsynced++] = r->path;
            continue;
        }
        int fd = open(r->path, O_WRONLY);
        if (fd < 0)
            continue; /* removed since: nothing to restore */
        if (r->h.data_len &&
            pwrite(fd, r->data, r->h.data_len, (off_t)r->h.offset) != (ssize_t)r->h.data_len) {
            perror(r->path);
            return 1;
        }
        if (ftruncate(fd, (off_t)r->h.old_size) != 0) {
            perror(r->path);
            return 1;
        }
        close(fd);
        revoked++;
    }
    printf("powercut: revoked %zu unsynced write(s)\n", revoked);
    for (size_t i = 0; i < n; i++) {
        free(recs[i].path);
        free(recs[i].data);
    }
    free(recs);
    return 0;
}
