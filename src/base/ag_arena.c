#include "ag_arena.h"

struct ag_arena_chunk {
    ag_arena_chunk_t *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
};

void ag_arena_init(ag_arena_t *a, size_t ceiling)
{
    a->head = NULL;
    a->used_total = 0;
    a->ceiling = ceiling;
}

void *ag_arena_alloc(ag_arena_t *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (size == 0)
        size = 16;
    if (a->ceiling && (size > a->ceiling || a->used_total > a->ceiling - size))
        return NULL;
    ag_arena_chunk_t *c = a->head;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > 64 * 1024 ? size : 64 * 1024;
        c = malloc(sizeof(ag_arena_chunk_t) + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    a->used_total += size;
    return p;
}

void *ag_arena_calloc(ag_arena_t *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = ag_arena_alloc(a, n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void ag_arena_release(ag_arena_t *a)
{
    ag_arena_chunk_t *c = a->head;
    while (c) {
        ag_arena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used_total = 0;
}
