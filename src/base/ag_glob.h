/*
 * ag_glob.h — scope patterns of permissions (docs/PERMISSIONS.md): anchored, case-sensitive globs
 * in which `*` matches any run of characters (including none) and no other character is special.
 *
 * A pattern is compiled once (when a permission is parsed) into its literal segments with a KMP
 * failure table for each, so matching a name of n bytes against a pattern of m bytes costs
 * O(n + m) with no allocation and no backtracking: the first segment must be a prefix, the last
 * a suffix, and each middle segment is found at its leftmost position after the previous one
 * (leftmost placement is always optimal when `*` is the only wildcard).
 */
#ifndef AG_GLOB_H
#define AG_GLOB_H

#include "ag_base.h"

/* Longest accepted pattern, in bytes. */
#define AG_GLOB_MAX_LEN 512

typedef enum {
    AG_GLOB_ANY = 0,     /* matches everything ("*", "**", or a scope left out) */
    AG_GLOB_LITERAL = 1, /* matches exactly its text; a '*' in it is an ordinary character */
    AG_GLOB_PATTERN = 2, /* contains at least one '*' wildcard */
} ag_glob_kind_t;

/* A zero-initialised ag_glob_t is a valid match-all pattern. Immutable once compiled, so it may
 * be matched from many threads at once. */
typedef struct ag_glob {
    uint8_t kind;   /* ag_glob_kind_t */
    uint16_t len;   /* bytes in text */
    char *text;     /* owned, NUL-terminated; NULL for AG_GLOB_ANY */
    uint16_t *fail; /* owned KMP table, one entry per byte of text; NULL unless PATTERN */
} ag_glob_t;

/* Compiles pattern[0..len). A pattern without '*' is literal; one made only of '*' is ANY.
 * AG_EINVAL for an empty pattern, one longer than AG_GLOB_MAX_LEN or containing NUL; AG_ENOMEM.
 * On success *out owns new memory (free with ag_glob_release); on failure *out is match-all. */
int ag_glob_compile(const char *pattern, size_t len, ag_glob_t *out);
/* Compiles text as an exact name ('*' is not a wildcard) — used for JWT claims, whose collection
 * names Qdrant compares exactly. Same errors and ownership as ag_glob_compile. */
int ag_glob_compile_literal(const char *text, size_t len, ag_glob_t *out);
/* Deep copy into *dst (new memory owned by dst). AG_ENOMEM leaves *dst match-all. */
int ag_glob_copy(const ag_glob_t *src, ag_glob_t *dst);
/* Frees what g owns and resets it to match-all. */
void ag_glob_release(ag_glob_t *g);

/* True if s[0..n) matches g. Never allocates; O(n + g->len). */
bool ag_glob_match(const ag_glob_t *g, const char *s, size_t n);
/* ag_glob_match over a NUL-terminated string. */
bool ag_glob_match_str(const ag_glob_t *g, const char *s);

/* True if every name matched by inner is also matched by outer (pattern inclusion), used by the
 * anti-escalation check. Exact for these globs: outer ⊇ inner iff outer matches inner's text
 * with inner's wildcards standing for a character outer cannot match literally. */
bool ag_glob_covers(const ag_glob_t *outer, const ag_glob_t *inner);

/* The pattern as written ("*" for ANY). Borrowed from g. */
const char *ag_glob_text(const ag_glob_t *g);

#endif
