/*
 * ag_hnsw.h — a hierarchical navigable small world graph (Malkov & Yashunin) behind the
 * ag_index interface, with a per-query planner for filtered search.
 *
 * Layout (docs/ARCHITECTURE.md "HNSW memory layout"): level 0 is one array of fixed-size,
 * 64-byte aligned blocks, one per node: a header (count word and 2*m link slots) and, with int8
 * or binary quantization, the node's code, so a quantized walk reads one block per node for both
 * scoring and expanding it. Upper levels (rare: 1/m of the nodes) are small per-node arrays. Float
 * vectors are not copied: the graph reads the rows of the borrowed vecstore (64-byte aligned).
 *
 * Concurrency: add/remove are serialized by the caller and exclude searches (the collection's
 * rwlock); searches share no mutable state (each thread has its own visited set and heaps), so
 * any number run at once.
 *
 * Deletes are tombstones: a removed slot stays in the graph as a waypoint (its row is still
 * readable, the vecstore only clears the presence bit) but is never returned. When tombstones
 * pass a tenth of the graph, a repair pass reconnects every node that links to one (its live
 * neighbours plus the tombstones' live neighbours, through the selection heuristic) and drops
 * the tombstones, so recall does not decay. Re-adding a slot (the collection reuses slots) gives
 * it fresh links (it keeps its level, since other nodes may still link to it on every level).
 *
 * Scores: the walk ranks with kernels over whole padded rows (several accumulators); the hits
 * returned are re-scored with the shared kernels, so scores equal the exact index's bit for bit.
 *
 * Search plan, per query:
 *   - at most full_scan_threshold points (no graph yet, or a built graph down to that many live
 *     nodes) with trained codes, and neither exact nor quantization.ignore: a scan of the codes,
 *     the best ceil(oversampling * k) rescored from the floats (docs/ARCHITECTURE.md "Small
 *     collections"); with a graph, slots still queued for the linker are scored exactly.
 *   - params->exact, a candidate list, or at most full_scan_threshold live points: exact scan
 *     (ag_index_score_candidates), like Qdrant below its threshold.
 *   - a filter: the accept predicate is sampled on up to 256 random live slots to estimate how
 *     many points match. Few matches (below AG_HNSW_FILTER_EXACT_POINTS): the predicate is run
 *     over the live slots (no row touched) and only the accepted rows are scored exactly.
 *     Low selectivity (below AG_HNSW_ACORN_BELOW): graph traversal in which distances are
 *     computed only for accepted nodes and rejected neighbours are crossed by a two-hop
 *     expansion (ACORN-1). Otherwise: normal traversal that passes through rejected
 *     nodes but only returns accepted ones. If the graph yields fewer than k hits, the exact scan
 *     answers instead, so a filtered search never returns less than the exact one would.
 */
#ifndef AG_HNSW_H
#define AG_HNSW_H

#include "ag_base.h"

#include "ag_index.h"
#include "ag_quant.h"

typedef struct ag_hnsw_params {
    uint32_t m;            /* links per node on upper levels, 2*m on level 0; 0 = 16 */
    uint32_t ef_construct; /* beam width while inserting; 0 = 100 */
    /* In points (the collection converts Qdrant's KB: kb * 1024 / (dim * 4)). With at most this
     * many live points every search is an exact scan and no graph is built yet; the graph is
     * built in one go when the count first exceeds it. 0 = always use the graph. */
    uint32_t full_scan_threshold;
    uint32_t ef_search; /* default beam width when ag_search_params_t.ef is 0; 0 = ef_construct */
    uint64_t seed;      /* level generator seed; 0 = a fixed default (builds are reproducible) */
    /* Background linking: add() only queues the slot (searches score queued slots exactly, so
     * results stay complete) and ag_hnsw_link_pending() links them later, off the write path.
     * false = add() links at once (tests, benchmarks). */
    bool background;
    /* Benchmarks only: no reachability probe while linking (docs/ARCHITECTURE.md "Graph
     * reachability"), to measure the graph without it in the same run. */
    bool no_probe;
} ag_hnsw_params_t;

/* Estimated matches below which a filtered search scores the matching points exactly. */
#define AG_HNSW_FILTER_EXACT_POINTS 4096u
/* Estimated selectivity below which a filtered traversal uses the two-hop expansion. */
#define AG_HNSW_ACORN_BELOW 0.3

/* Creates an HNSW index over vs (borrowed; must outlive the index). p may be NULL (defaults).
 * Slots already present in vs are not indexed: the caller adds them (ag_index_add), as for the
 * exact index. On success *out is a new index the caller owns (ag_index_free). AG_EINVAL for a
 * bad argument (m < 2 or > 128, dist out of range), AG_ENOMEM. Searches honour
 * ag_search_params_t.deadline (AG_ETIMEOUT, looked at every 256 expansions and in exact scans) and
 * never widen the beam (ef) beyond the number of live points. */
int ag_index_hnsw_new(ag_vecstore_t *vs, ag_distance_t dist, const ag_hnsw_params_t *p,
                      ag_index_t **out);

/* True if ix was made by ag_index_hnsw_new. */
bool ag_index_is_hnsw(const ag_index_t *ix);

typedef struct ag_hnsw_stats {
    uint32_t live;       /* slots searchable through the graph */
    uint32_t tombstones; /* removed slots still linked in the graph */
    uint32_t max_level;
    bool built;          /* false while below full_scan_threshold */
    uint32_t pending;    /* queued for background linking, scored exactly meanwhile */
    size_t memory;       /* bytes held by the graph (links, levels, states) */
    size_t quant_memory; /* bytes held by the int8 codes (0 without quantization), sketches incl. */
    size_t sketch_memory; /* of which the scan's sign sketches (ag_hnsw_set_sketch) */
} ag_hnsw_stats_t;

/* Counters of an HNSW index (ix must be one). Call under the same lock as search. */
void ag_hnsw_stats(const ag_index_t *ix, ag_hnsw_stats_t *out);

/* Diagnostics (bench/bench_graph_reach.c): how many live nodes the level-0 links reach from the
 * entry point, following links in any number of steps (a node outside can never be found). 0
 * without memory or for an index that is not HNSW. Same lock as search. */
uint32_t ag_hnsw_reachable(const ag_index_t *ix);

/* Links up to max queued slots into the graph (background mode). Writer side: call under the
 * same exclusive lock as add/remove. Returns how many were linked (0 when nothing is queued). */
uint32_t ag_hnsw_link_pending(ag_index_t *ix, uint32_t max);
/* Slots queued for linking. Call under the same lock as search. */
uint32_t ag_hnsw_pending(const ag_index_t *ix);

/*
 * Scalar int8 quantization (ag_quant.h): quantile in [0.5, 1] turns it on (replacing any
 * earlier setting; the codes are trained from the stored vectors at once, or from the first
 * vectors added), 0 turns it off. With it, graph searches rank candidates by the codes and rescore
 * the best from the float vectors (ag_search_params_t's quant_* fields); exact scans and the
 * graph's construction use the float vectors. The codes are kept in memory only and rebuilt at
 * start-up (ag_hnsw_finish). Writer side. AG_EINVAL (quantile), AG_ENOMEM (quantization stays
 * off).
 */
int ag_hnsw_set_quant(ag_index_t *ix, double quantile);
/* The same with the method named: AG_QUANT_INT8 (quantile as above) or AG_QUANT_BINARY (one bit
 * per coordinate, ranked by Hamming distance; quantile unused; ag_quant.h). Turning quantization
 * off is ag_hnsw_set_quant(ix, 0). AG_EINVAL, AG_ENOMEM. */
int ag_hnsw_set_quant_kind(ag_index_t *ix, ag_quant_kind_t kind, double quantile);
/* The sign-sketch prefilter of the int8 code scan (docs/ARCHITECTURE.md "Small collections"):
 * the scan keeps the best ceil(factor * candidates) rows by sketch before scoring their codes;
 * factor 0 turns it off. By default (factor 4, not forced) it is kept for Cosine with at least 256
 * dimensions and used when it drops at least 3/4 of the rows; force uses it whenever kept (Dot
 * too, any dimension) — for tests and benchmarks. Writer side; re-lays the codes. */
void ag_hnsw_set_sketch(ag_index_t *ix, double factor, bool force);
/* Tests: true when sketches are kept and every stored row's equals the top bits of its current
 * code (false when none are kept or one is stale). Reader side. */
bool ag_hnsw_sketch_ok(const ag_index_t *ix);
/* True when searches rank with trained codes. Reader side. */
bool ag_hnsw_quantized(const ag_index_t *ix);
/* True when a search with params would be a scan over the codes (at most full_scan_threshold
 * points — no graph yet, or a graph that shrank to that — quantized, not exact or
 * quantization.ignore): every stored row's code scored, the best ceil(oversampling * k) rescored
 * from the floats. For benchmarks and tests that report which path ran. Reader side. */
bool ag_hnsw_scans_codes(const ag_index_t *ix, const ag_search_params_t *params);

/* Runs the tombstone repair pass now (normally automatic). Writer side. */
void ag_hnsw_repair(ag_index_t *ix);

/*
 * Persistence: checkpoints and incremental recovery (docs/RELIABILITY.md, "Crash recovery").
 *
 * A checkpoint file holds the graph (header: magic, format version, m, dim, distance, sizes,
 * key length, CRC-32 of the body; body: levels, states, links) and, for each live node, the
 * caller's key for the point it stands for (key_len bytes, from keys_of) and a hash of the vector
 * it was linked for. The file is a cache: the vecstore is the truth.
 *
 * Taking and writing are split so that no lock is held during the disk write:
 *   ag_hnsw_checkpoint   copies the graph into memory (reader side: under at least the read lock;
 *                        keys_of is called for each live slot). *out owned by the caller
 *                        (ag_hnsw_checkpoint_free). AG_EINVAL, AG_ENOMEM.
 *   ag_hnsw_checkpoint_write  writes it crash-safely (`path`.tmp, fsync, rename, fsync of the
 *                        directory: a crash leaves the old file or the new one). No lock needed.
 *                        AG_EIO (the old file, if any, is kept).
 *   ag_hnsw_checkpoint_done   records that the index is saved as of the checkpoint (any thread;
 *                        ag_hnsw_dirty then reports only changes made since it was taken).
 * ag_hnsw_save does all three (under at least the read lock).
 *
 * ag_hnsw_resume replaces the graph from a file, mapping the file's nodes to the vecstore's
 * current slots: a live node is kept if slot_of(key) names a slot (UINT32_MAX: the point is
 * gone) whose stored vector has the hash the node was linked for (key_len 0: slots are taken as
 * unchanged); every other node is dropped (the nodes that linked to it are repaired), and every
 * stored vector without a kept node is linked again — queued in background mode, at once
 * otherwise. So the work is proportional to what changed since the checkpoint. *out tells how
 * many nodes were kept, dropped and relinked; out->built is false (and the index untouched) for
 * a file saved before the graph was built. AG_ENOTFOUND: no file. AG_EINVAL: corrupt or another
 * format or parameters (the index untouched). AG_ENOMEM: the index may be half made — call
 * ag_hnsw_defer (ag_hnsw_finish does). Writer side.
 */
typedef void (*ag_hnsw_key_fn)(void *ud, uint32_t slot, uint8_t *key);
typedef uint32_t (*ag_hnsw_slot_fn)(void *ud, const uint8_t *key);
typedef struct ag_hnsw_ckpt ag_hnsw_ckpt_t;
int ag_hnsw_checkpoint(const ag_index_t *ix, ag_hnsw_key_fn keys_of, void *ud, size_t key_len,
                       ag_hnsw_ckpt_t **out);
int ag_hnsw_checkpoint_write(const ag_hnsw_ckpt_t *ck, const char *path);
void ag_hnsw_checkpoint_done(ag_index_t *ix, const ag_hnsw_ckpt_t *ck);
size_t ag_hnsw_checkpoint_size(const ag_hnsw_ckpt_t *ck);
void ag_hnsw_checkpoint_free(ag_hnsw_ckpt_t *ck);
int ag_hnsw_save(ag_index_t *ix, const char *path, ag_hnsw_key_fn keys_of, void *ud,
                 size_t key_len);

typedef struct ag_hnsw_resume {
    bool built;        /* false: the file held no graph (saved below the threshold) */
    uint32_t kept;     /* nodes reused as they were */
    uint32_t dropped;  /* nodes of points removed or changed since (and old tombstones) */
    uint32_t relinked; /* stored vectors linked again (queued in background mode) */
} ag_hnsw_resume_t;
int ag_hnsw_resume(ag_index_t *ix, const char *path, ag_hnsw_slot_fn slot_of, void *ud,
                   size_t key_len, ag_hnsw_resume_t *out);

/*
 * Start-up: ag_hnsw_defer drops the graph and makes add() record nothing (the vectors go into the
 * vecstore as usual; searches meanwhile are exact scans). ag_hnsw_finish ends that: it resumes
 * from `path` (ag_hnsw_resume) if it can, else logs why not (missing, corrupt, another format)
 * and rebuilds the graph from the vecstore with progress in the log (queued for the background
 * linker in background mode). path NULL = just rebuild. Writer side. AG_ENOMEM (the index then
 * stays unbuilt and searches stay exact).
 */
void ag_hnsw_defer(ag_index_t *ix);
int ag_hnsw_finish(ag_index_t *ix, const char *path, ag_hnsw_slot_fn slot_of, void *ud,
                   size_t key_len);
/* True if a built graph changed since it was last saved or resumed (an unbuilt one has nothing
 * to save). Reader side. */
bool ag_hnsw_dirty(const ag_index_t *ix);

/* Frees the calling thread's search scratch (visited set, heaps) now rather than at thread exit.
 * Optional; the next search on this thread allocates it again. */
void ag_hnsw_thread_release(void);

#endif
