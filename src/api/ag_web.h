/*
 * ag_web.h — the dashboard's files, compiled into the binary from web/ by
 * scripts/embed-web.cmake (docs/API.md "Dashboard"). Each file's bytes are followed by a NUL
 * that size does not count.
 */
#ifndef AG_WEB_H
#define AG_WEB_H

#include "ag_base.h"

typedef struct ag_web_asset {
    const char *name; /* "index.html", "app.js", ... (no directories) */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t size;
} ag_web_asset_t;

extern const ag_web_asset_t ag_web_assets[];
extern const size_t ag_web_assets_len;

#endif
