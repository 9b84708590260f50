/*
 * ag_audit.h — the tamper-evident audit log (docs/SECURITY.md "Audit log").
 *
 * One JSON object per line in <dir>/audit.log (directory 0700, files 0600), appended and never
 * rewritten. Each line is
 *   {"seq":N,"v":2,"time":"2026-12-01T07:40:40.123Z","request_id":"...","principal":{"kind":...,
 *    "id":...,"key_id"?:...,"sub"?:...},"remote":"...","method":"POST","route":"/collections/{name}",
 *    "action":"create:collections","resource":{"collection":"x"},"decision":"allow"|"deny",
 *    "status":200,"count"?:N,"reason"?:"...","detail"?:{...},"retention"?:{...},
 *    "prev":"<64 hex>","hash":"<64 hex>"}
 * where (format v2, keyed)
 *   hash = hex HMAC-SHA256, under the audit key, of this line's bytes up to (not including)
 *          `,"hash":`, followed by "}";
 *   prev = the previous record's hash; 64 zeros for seq 1.
 * Without the key nobody can write a line that verifies, so rewriting the directory (editing,
 * deleting or re-chaining records) is evident even to someone who recomputes every hash.
 *
 * Format v1 (before keys; no "v" field): hash and prev are plain SHA-256 (hash of the same bytes,
 * prev of the previous line's full bytes). A v1 log is continued in v2: the first keyed record's
 * prev is the SHA-256 of the last v1 line, so its HMAC binds the whole v1 part; an `audit:upgrade`
 * record is written when a keyed server first opens a v1 log. A v1 record after a v2 record never
 * verifies.
 *
 * The key: 32 random bytes, kept outside the audit directory (ag_audit_key_load; the server uses
 * <storage>/audit.key or storage.audit_key_file), stored as 64 hex characters, mode 0600.
 *
 * audit.head: "v2 <seq, 20 digits> <hash of the newest record> <HMAC of the text before it>\n",
 * rewritten on every append and synced with the log, so records cut from the end show.
 *
 * Rotation: when audit.log would grow past max_bytes it is renamed to audit-<first seq, 20
 * digits>.log and a new audit.log starts; the chain (seq and prev) continues across files.
 * Retention: with max_files > 0, once there are more rotated files than that the oldest are
 * removed, oldest first, each only after a keyed `audit:retention` record naming the first record
 * left after it ("retention":{"first_seq":S,"first_prev":"<that record's prev>"}) has been
 * written and synced — so a crash between removals still leaves a vouched-for start.
 * ag_audit_verify accepts a chain that starts at seq S > 1 only when such a record vouches for
 * exactly that start.
 *
 * Never a secret: every string is passed through a redactor that replaces registered secrets,
 * anything shaped like a JWT or a bearer credential, and any run of 32+ key-alphabet characters
 * with "[redacted]". Callers pass principal ids, never credentials; the redactor is the backstop.
 *
 * Thread-safe: appends serialise on a mutex. A record with sync set is fdatasync'ed (log, then
 * head) before ag_audit_append returns; others are synced at most a second later (by the next
 * append or close).
 */
#ifndef AG_AUDIT_H
#define AG_AUDIT_H

#include "ag_base.h"

#include <jansson.h>

typedef struct ag_audit ag_audit_t;

#define AG_AUDIT_FILE "audit.log"
#define AG_AUDIT_HEAD_FILE "audit.head"
#define AG_AUDIT_KEY_FILE "audit.key" /* the server's default: <storage>/audit.key */
#define AG_AUDIT_KEY_BYTES 32
#define AG_AUDIT_DEFAULT_MAX_BYTES (64ull << 20)

/* Reads the audit key from path (64 hex characters, optionally a newline) into key. When the
 * file does not exist and create is set, 32 random bytes are written there first (mode 0600,
 * temporary file + fsync + link into place + fsync of the directory; a key that appeared
 * meanwhile wins). Refuses a file that group or others may access, or that is not a regular file.
 * 0, AG_ENOTFOUND (missing and !create), AG_EINVAL (malformed or too open), AG_EIO. The caller
 * wipes key (sodium_memzero) when done. */
int ag_audit_key_load(const char *path, bool create, unsigned char key[AG_AUDIT_KEY_BYTES],
                      ag_diag_t *diag);

typedef struct ag_audit_config {
    const char *dir;          /* borrowed for the call */
    uint64_t max_bytes;       /* rotation size; 0 = AG_AUDIT_DEFAULT_MAX_BYTES */
    uint64_t max_files;       /* rotated files kept; 0 = keep them all */
    const unsigned char *key; /* AG_AUDIT_KEY_BYTES; copied (wiped at close); required */
    const char *node_id;      /* cluster mode: written as "node" in every record; NULL = none */
} ag_audit_config_t;

/* Opens (creating dir and file as needed) the log in cfg->dir, recovering seq and the chain from
 * the newest line. A torn last line (no newline; a crash mid-write) is cut off with a warning.
 * Refuses (AG_ECONFIG) when the newest record is keyed and does not verify under cfg->key: the
 * wrong key file, or an edited record. Damage found at open (records missing from the end, a
 * missing or forged audit.head) is logged and recorded as an `audit:recover` record; a v1 log
 * gets an `audit:upgrade` record. *out owned by the caller (ag_audit_close). */
int ag_audit_open(const ag_audit_config_t *cfg, ag_audit_t **out, ag_diag_t *diag);
/* Syncs and closes. NULL is a no-op. */
void ag_audit_close(ag_audit_t *a);
/* Copies the log into dest_dir (an existing, empty directory) as it stands: every rotated file,
 * audit.log up to the newest record and an audit.head naming that record, so the copy verifies
 * (aegis audit verify) under the same key. Appends wait only while the files are opened, not for
 * the copy. 0, AG_EIO, AG_ENOMEM. */
int ag_audit_copy(ag_audit_t *a, const char *dest_dir, ag_diag_t *diag);
/* Registers a secret (copied) that must never appear in the log, e.g. the configured API keys.
 * Secrets shorter than 8 bytes are ignored. AG_ENOMEM. */
int ag_audit_add_secret(ag_audit_t *a, const char *secret);

/* One record. Every string is borrowed and may be NULL (rendered as null, or left out where
 * marked optional in the header comment). */
typedef struct ag_audit_record {
    const char *request_id;
    const char *principal_kind; /* "root", "token", ...; "none" when authentication failed */
    const char *principal_id;
    const char *key_id;
    const char *sub;
    const char *remote;
    /* A node-to-node call (docs/CLUSTER.md "Node-to-node calls"): the node that forwarded it and
     * the address it came from; remote is then the original client's. NULL = a direct call. */
    const char *via_node, *via_addr;
    const char *method;
    const char *route;
    const char *action;
    const json_t *resource; /* object {"collection": ..., "tenant": ...}, borrowed; NULL = {} */
    bool allowed;
    int status;
    const char *reason;
    const json_t *detail; /* what changed, e.g. a minted token's claims (never the token);
                             borrowed; strings redacted; NULL = left out */
    uint64_t count;       /* how many like events this record stands for (one record for N throttled
                             denials); rendered as "count":N; 0 = left out of the line */
    bool sync;            /* fdatasync before returning */
} ag_audit_record_t;

/* Appends r. 0, AG_EIO (the record could not be written; the caller decides), AG_ENOMEM. */
int ag_audit_append(ag_audit_t *a, const ag_audit_record_t *r);
/* Number of the last record written (0 = none). */
uint64_t ag_audit_last_seq(ag_audit_t *a);

typedef struct ag_audit_query {
    int64_t from_us, to_us; /* inclusive bounds in microseconds since the epoch; 0 = open */
    const char *principal;  /* matches principal.id, principal.sub or "kind:id"; NULL = any */
    const char *decision;   /* "allow" / "deny"; NULL = any */
    const char *action;     /* glob over the action ("*:roles"); NULL = any */
    size_t limit;           /* 1..1000 */
} ag_audit_query_t;

/* Matching records, newest first, at most q->limit, as a new JSON array in *out. */
int ag_audit_query(ag_audit_t *a, const ag_audit_query_t *q, json_t **out, ag_diag_t *diag);

typedef struct ag_audit_verify {
    uint64_t records;    /* records checked */
    uint64_t first_seq;  /* seq of the first record (chain start) */
    uint64_t last_seq;   /* seq of the last record */
    uint64_t files;      /* files read */
    uint64_t unkeyed;    /* v1 records (plain SHA-256), all at the start of the chain */
    uint64_t vouched_by; /* first_seq > 1: seq of the retention record that vouches for it */
    uint64_t recovers;   /* audit:recover records (damage the server found and recorded) */
    uint64_t first_recover;
    /* Cluster mode writes one chain per node, each record naming its node (docs/CLUSTER.md
     * "Audit"): the node of the last record ("" when it names none) and how many records name a
     * different node than the record before them (0 for one node's chain). */
    char node[128];
    uint64_t node_changes;
    char file[512]; /* on failure: the file ... */
    uint64_t line;  /* ... and 1-based line number of the first bad line (0: the file itself) */
    char why[256];  /* on failure: what is wrong */
} ag_audit_verify_t;

/* Verifies a log. path is a directory (every rotated file oldest first, then audit.log, checked
 * as one chain; audit.log and audit.head are required, the head must name the last record, each
 * file must start where the previous one ended) or a single file (no head check). In both, the
 * chain must start at seq 1 from the genesis prev, or at the start a keyed retention record in
 * the chain vouches for. key (AG_AUDIT_KEY_BYTES, borrowed) checks v2 records; without it any v2
 * record fails. With a key, a log made only of v1 records fails too (a keyed server would have
 * written a keyed record). Returns 0 when everything checks out, AG_EINVAL at the first problem
 * (res says where and why), AG_EIO when nothing can be read. */
int ag_audit_verify(const char *path, const unsigned char *key, ag_audit_verify_t *res);

/* ag_audit_verify on this open log, with its own directory and key, while no record is being
 * appended (appends wait). Same answers. */
int ag_audit_check(ag_audit_t *a, ag_audit_verify_t *res);

/* Returns a new copy of s (caller frees; NULL on ENOMEM or when s is NULL) with registered
 * secrets and credential-shaped text replaced by "[redacted]". a may be NULL. Exposed for tests. */
char *ag_audit_redact(const ag_audit_t *a, const char *s);

#endif
