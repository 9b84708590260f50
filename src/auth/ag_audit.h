/*
 * ag_audit.h — the tamper-evident audit log (PRODUCT §8).
 *
 * One JSON object per line in <dir>/audit.log (directory 0700, files 0600), appended and never
 * rewritten. Each line is
 *   {"seq":N,"time":"2026-12-01T07:40:40.123Z","request_id":"...","principal":{"kind":...,
 *    "id":...,"key_id"?:...,"sub"?:...},"remote":"...","method":"POST","route":"/collections/{name}",
 *    "action":"create:collections","resource":{"collection":"x"},"decision":"allow"|"deny",
 *    "status":200,"reason"?:"...","detail"?:{...},"prev":"<64 hex>","hash":"<64 hex>"}
 * where
 *   prev = hex SHA-256 of the previous line's bytes (without its newline); 64 zeros for seq 1;
 *   hash = hex SHA-256 of this line's bytes up to (not including) `,"hash":` followed by "}".
 * So editing a line breaks its own hash, deleting or reordering a line breaks the next line's
 * prev and the seq sequence, and ag_audit_verify names the first line that does not check out.
 *
 * Rotation: when audit.log would grow past max_bytes it is renamed to audit-<first seq, 20
 * digits>.log and a new audit.log starts; the chain (seq and prev) continues across files.
 *
 * Never a secret: every string is passed through a redactor that replaces registered secrets,
 * anything shaped like a JWT or a bearer credential, and any run of 32+ key-alphabet characters
 * with "[redacted]". Callers pass principal ids, never credentials; the redactor is the backstop.
 *
 * Thread-safe: appends serialise on a mutex. A record with sync set is fdatasync'ed before
 * ag_audit_append returns; others are synced at most a second later (by the next append or close).
 */
#ifndef AG_AUDIT_H
#define AG_AUDIT_H

#include "ag_base.h"

#include <jansson.h>

typedef struct ag_audit ag_audit_t;

#define AG_AUDIT_FILE "audit.log"
#define AG_AUDIT_DEFAULT_MAX_BYTES (64ull << 20)

/* Opens (creating dir and file as needed) the log in dir, recovering seq and the chain from the
 * newest line. A torn last line (no newline; a crash mid-write) is cut off with a warning.
 * max_bytes 0 = AG_AUDIT_DEFAULT_MAX_BYTES. *out owned by the caller (ag_audit_close). */
int ag_audit_open(const char *dir, uint64_t max_bytes, ag_audit_t **out, ag_diag_t *diag);
/* Syncs and closes. NULL is a no-op. */
void ag_audit_close(ag_audit_t *a);
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
    const char *method;
    const char *route;
    const char *action;
    const json_t *resource; /* object {"collection": ..., "tenant": ...}, borrowed; NULL = {} */
    bool allowed;
    int status;
    const char *reason;
    const json_t *detail; /* what changed, e.g. a minted token's claims (never the token);
                             borrowed; strings redacted; NULL = left out */
    uint64_t count;       /* > 0: this record stands for count like events ("count":N) */
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
    uint64_t records;   /* records checked */
    uint64_t first_seq; /* seq of the first record seen (chain start) */
    char file[512];     /* on failure: the file ... */
    uint64_t line;      /* ... and 1-based line number of the first bad line */
    char why[256];      /* on failure: what is wrong */
} ag_audit_verify_t;

/* Verifies a log: path is either a directory (every rotated file oldest first, then audit.log,
 * checked as one chain) or a single file. Returns 0 when every line checks out, AG_EINVAL at the
 * first bad line (res says where and why), AG_EIO when nothing can be read. */
int ag_audit_verify(const char *path, ag_audit_verify_t *res);

/* Returns a new copy of s (caller frees; NULL on ENOMEM or when s is NULL) with registered
 * secrets and credential-shaped text replaced by "[redacted]". a may be NULL. Exposed for tests. */
char *ag_audit_redact(const ag_audit_t *a, const char *s);

#endif
