#include "ag_grow.h"

/* Memory: on success the array at *slot is reallocated (the caller still owns it). */
int ag_grow_array(void *slot, size_t elem, size_t cap, size_t need, size_t first, size_t max,
                  size_t *new_cap)
{
    *new_cap = cap;
    if (need <= cap)
        return 0;
    if (need > max || elem == 0 || max > SIZE_MAX / elem)
        return AG_ETOOBIG;
    size_t nc = cap ? cap : (first ? first : 1);
    while (nc < need)
        nc = nc > max / 2 ? max : nc * 2;
    if (nc > max)
        nc = max;
    void *old;
    memcpy(&old, slot, sizeof(old));
    void *grown = realloc(old, nc * elem);
    if (!grown)
        return AG_ENOMEM;
    memcpy(slot, &grown, sizeof(grown));
    *new_cap = nc;
    return 0;
}
