/* The journal format shared by powercut_shim.c and powercut_apply.c (see the shim's comment). */
#ifndef POWERCUT_H
#define POWERCUT_H

#include <stdint.h>

#define PC_MAGIC 0x50435554u /* "PCUT" */

enum { PC_WRITE = 1, PC_SYNC = 2, PC_TRUNCATE = 3 };

typedef struct pc_header {
    uint32_t magic;
    uint32_t type;
    uint32_t path_len;
    uint32_t data_len;
    uint64_t offset; /* write: where it began; truncate: the new size */
    uint64_t len;    /* write: how many bytes */
    uint64_t old_size;
} pc_header_t;

#endif
