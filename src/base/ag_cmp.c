#include "ag_cmp.h"

#include <jansson.h>

int ag_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int ag_cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char *text_of(const json_t *v)
{
    const char *s = json_string_value(v);
    return s ? s : "";
}

int ag_cmp_json_str(const void *a, const void *b)
{
    return strcmp(text_of(*(json_t *const *)a), text_of(*(json_t *const *)b));
}
