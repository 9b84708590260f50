#include "ag_arena.h"

#include <pthread.h>

struct ag_arena_chunk {
    ag_arena_chunk_t *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
};

#define AG_ARENA_CHUNK (64 * 1024)

/*
 * One spare first-size chunk per thread: a request's arena is released on the worker thread that
 * ran it, and the next request there takes the chunk back instead of a malloc/free pair of 64 KiB
 * each time (docs/BENCHMARKS-HISTORY.md "The direct search path"). Freed when the thread exits.
 * Off under AddressSanitizer, which should see every arena's memory freed and fresh.
 */
#if defined(__SANITIZE_ADDRESS__)
#define AG_ARENA_SPARE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AG_ARENA_SPARE 0
#endif
#endif
#ifndef AG_ARENA_SPARE
#define AG_ARENA_SPARE 1
#endif

#if AG_ARENA_SPARE
static _Thread_local ag_arena_chunk_t *spare;
static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;
static bool spare_key_ok;

static void spare_free(void *p)
{
    free(p);
    spare = NULL;
}

static void spare_init(void)
{
    spare_key_ok = pthread_key_create(&spare_key, spare_free) == 0;
}
#endif

static ag_arena_chunk_t *chunk_new(size_t cap)
{
#if AG_ARENA_SPARE
    if (cap == AG_ARENA_CHUNK && spare) {
        ag_arena_chunk_t *c = spare;
        spare = NULL;
        pthread_setspecific(spare_key, NULL);
        return c;
    }
#endif
    return malloc(sizeof(ag_arena_chunk_t) + cap);
}

static void chunk_free(ag_arena_chunk_t *c)
{
#if AG_ARENA_SPARE
    if (c->cap == AG_ARENA_CHUNK && !spare) {
        pthread_once(&spare_once, spare_init);
        if (spare_key_ok && pthread_setspecific(spare_key, c) == 0) {
            spare = c;
            return;
        }
    }
#endif
    free(c);
}

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
        size_t cap = size > AG_ARENA_CHUNK ? size : AG_ARENA_CHUNK;
        c = chunk_new(cap);
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
        chunk_free(c);
        c = next;
    }
    a->head = NULL;
    a->used_total = 0;
}
