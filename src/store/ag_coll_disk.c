/*
 * ag_coll_disk.c — on_disk dense vectors: rows read from the LMDB map instead of RAM
 * (docs/ARCHITECTURE.md "On-disk vectors").
 *
 * A vector configured with "on_disk": true has an external vector store (index/ag_vecstore.h):
 * only its presence bits are in memory, and every row the index or the query layer reads is
 * looked up in "v:N" with mdb_get. The lookup reads the map in place; the row is then copied
 * into a small per-thread ring of padded, 64-byte aligned rows, because LMDB values are only
 * 2-byte aligned and the distance kernels want stride-long rows with a zero tail.
 *
 * Transactions: a read scope (ag_coll__disk_begin/end, opened by the collection's read lock,
 * the write-lock paths and the indexer) holds one read transaction per thread, begun lazily at
 * the first fetch inside the map-size gate (store/ag_env.h) and ended with the scope. A fetch
 * outside any scope (a pool thread, a path nobody wrapped) begins and ends a transaction of its
 * own, so it is correct, only slower. While a collection loads, fetches use the load's own
 * transaction (ag_coll__disk_borrow).
 *
 * Consistency: the memory state (presence bits, graph) changes only under the write lock, after
 * the commit; a reader holds the read lock for its whole scope, so its slots and ids are stable,
 * but its transaction may see a commit whose memory apply is still waiting for the lock. A row
 * that is gone from the map then (a point deleted by that commit) reads as zeros: the point is
 * about to leave the results anyway.
 */
#include "ag_collection.h"

#include <pthread.h>

#include "ag_log.h"
#include "store/ag_coll_disk.h"
#include "store/ag_collection_int.h"
#include "store/ag_env.h"

#define RING 8 /* rows a fetch keeps valid on one thread: index code uses at most two at once */

/* A copy handed out by ag_coll__disk_keep: the header, then the floats 64 bytes in. */
typedef struct keep_block {
    struct keep_block *next;
} keep_block_t;

typedef struct disk_tls {
    int depth;           /* open scopes on this thread */
    MDB_env *env;        /* the environment of the scope's transaction */
    MDB_txn *txn;        /* begun at the first fetch of a scope, NULL until then */
    ag_env_gate_t *gate; /* entered while txn is open */
    MDB_txn *borrowed;   /* a loading collection's transaction (not ours to end) */
    MDB_env *borrowed_env;
    float *ring[RING]; /* owned, aligned_alloc'd */
    size_t ring_cap[RING];
    unsigned next;
    keep_block_t *kept; /* owned list: rows handed out by ag_coll__disk_keep in this scope */
} disk_tls_t;

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static __thread disk_tls_t *tls;

/* A row of zeros, for a fetch that finds nothing (see the consistency note) or runs out of
 * memory. */
static _Alignas(64) float zero_row[AG_MAX_DIM + 16];

static void free_kept(disk_tls_t *t)
{
    while (t->kept) {
        keep_block_t *n = t->kept->next;
        free(t->kept);
        t->kept = n;
    }
}

static void tls_destroy(void *p)
{
    disk_tls_t *t = p;
    for (int i = 0; i < RING; i++)
        free(t->ring[i]);
    free_kept(t);
    free(t);
}

static void tls_init(void)
{
    pthread_key_create(&tls_key, tls_destroy);
}

/* This thread's state, created on first use (freed when the thread exits); NULL when out of
 * memory. */
static disk_tls_t *tls_get(void)
{
    if (tls)
        return tls;
    pthread_once(&tls_once, tls_init);
    disk_tls_t *t = calloc(1, sizeof(*t));
    if (!t || pthread_setspecific(tls_key, t) != 0) {
        free(t);
        return NULL;
    }
    tls = t;
    return t;
}

/* A read transaction inside the (entered) gate: a reused one when there is a gate (tests that
 * open a collection alone have none). */
static int begin_txn(const ag_collection_t *c, MDB_txn **out)
{
    if (c->gate)
        return ag_env_read_begin(c->gate, out);
    return mdb_txn_begin(c->env, NULL, MDB_RDONLY, out);
}

static void end_txn(ag_env_gate_t *gate, MDB_txn *txn)
{
    if (gate)
        ag_env_read_end(gate, txn);
    else
        mdb_txn_abort(txn);
}

void ag_coll__disk_begin(const ag_collection_t *c)
{
    if (c->n_on_disk == 0)
        return;
    disk_tls_t *t = tls_get();
    if (t)
        t->depth++;
}

void ag_coll__disk_end(const ag_collection_t *c)
{
    disk_tls_t *t = tls;
    if (c->n_on_disk == 0 || !t || t->depth == 0)
        return;
    if (--t->depth > 0)
        return;
    if (t->txn) {
        end_txn(t->gate, t->txn);
        ag_env_leave(t->gate);
        t->txn = NULL;
        t->env = NULL;
        t->gate = NULL;
    }
    free_kept(t);
}

void ag_coll__disk_borrow(MDB_env *env, MDB_txn *txn)
{
    disk_tls_t *t = tls_get();
    if (t) {
        t->borrowed = txn;
        t->borrowed_env = txn ? env : NULL;
    }
}

/* Looks the row up in txn and copies it (dim floats, zero tail up to stride) into out. */
static void read_row(const ag_vector_cfg_t *vc, MDB_txn *txn, uint32_t slot, float *out,
                     size_t stride)
{
    const ag_collection_t *c = vc->owner;
    uint8_t key[AG_ID_KEY_LEN + 2];
    ag_id_to_key(&c->slots[slot].id, key);
    key[AG_ID_KEY_LEN] = (uint8_t)(vc->num >> 8);
    key[AG_ID_KEY_LEN + 1] = (uint8_t)vc->num;
    MDB_val k = {sizeof(key), key}, v;
    size_t bytes = (size_t)vc->dim * sizeof(float);
    if (mdb_get(txn, c->dbi_vectors, &k, &v) == 0 && v.mv_size == bytes) {
        memcpy(out, v.mv_data, bytes);
        memset(out + vc->dim, 0, (stride - vc->dim) * sizeof(float));
    } else {
        memset(out, 0, stride * sizeof(float));
    }
}

const float *ag_coll__disk_fetch(void *ud, uint32_t slot)
{
    const ag_vector_cfg_t *vc = ud;
    const ag_collection_t *c = vc->owner;
    size_t stride = ((size_t)vc->dim + 15) / 16 * 16;
    disk_tls_t *t = tls_get();
    if (!t)
        return zero_row;
    unsigned i = t->next++ % RING;
    if (t->ring_cap[i] < stride) {
        float *b = aligned_alloc(64, stride * sizeof(float));
        if (!b)
            return zero_row;
        free(t->ring[i]);
        t->ring[i] = b;
        t->ring_cap[i] = stride;
    }
    float *out = t->ring[i];
    if (t->borrowed && t->borrowed_env == c->env) {
        read_row(vc, t->borrowed, slot, out, stride);
        return out;
    }
    if (t->depth > 0 && (!t->txn || t->env == c->env)) {
        if (!t->txn) {
            ag_env_enter(c->gate);
            if (begin_txn(c, &t->txn) != 0) {
                ag_env_leave(c->gate);
                t->txn = NULL;
                memset(out, 0, stride * sizeof(float));
                return out;
            }
            t->env = c->env;
            t->gate = c->gate;
        }
        read_row(vc, t->txn, slot, out, stride);
        return out;
    }
    /* No scope on this thread: a transaction for this one row. */
    MDB_txn *txn = NULL;
    ag_env_enter(c->gate);
    if (begin_txn(c, &txn) == 0) {
        read_row(vc, txn, slot, out, stride);
        end_txn(c->gate, txn);
    } else {
        memset(out, 0, stride * sizeof(float));
    }
    ag_env_leave(c->gate);
    return out;
}

const float *ag_coll__disk_keep(const float *row, size_t n)
{
    disk_tls_t *t = tls;
    if (!t || t->depth == 0)
        return row;   /* no scope to tie a copy to: the ring row, valid for a few fetches */
    size_t head = 64; /* keeps data 64-byte aligned */
    keep_block_t *b = aligned_alloc(64, head + (n * sizeof(float) + 63) / 64 * 64);
    if (!b)
        return row;
    b->next = t->kept;
    t->kept = b;
    float *out = (float *)((char *)b + head);
    memcpy(out, row, n * sizeof(float));
    return out;
}
