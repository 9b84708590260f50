/*
 * ag_cmp.h — the small qsort/bsearch comparators several modules need, in one place.
 */
#ifndef AG_CMP_H
#define AG_CMP_H

#include "ag_base.h"

/* Ascending uint32_t. */
int ag_cmp_u32(const void *a, const void *b);
/* Ascending by strcmp, over an array of `const char *`. */
int ag_cmp_cstr(const void *a, const void *b);
/* Ascending by strcmp, over an array of `json_t *` strings (non-strings sort as ""). */
int ag_cmp_json_str(const void *a, const void *b);

#endif
