/*
 * ag_id.h — point ids: an unsigned 64-bit integer or a UUID, exactly as Qdrant accepts them.
 * A numeric id given as a JSON string ("42") is invalid; a UUID must be a JSON string.
 */
#ifndef AG_ID_H
#define AG_ID_H

#include "ag_base.h"

#include <jansson.h>

typedef enum { AG_ID_NUM = 0, AG_ID_UUID = 1 } ag_id_kind_t;

typedef struct ag_point_id {
    uint8_t kind;     /* ag_id_kind_t */
    uint64_t num;     /* AG_ID_NUM */
    uint8_t uuid[16]; /* AG_ID_UUID */
} ag_point_id_t;

/* Fixed-size sortable key: numeric ids first (big-endian), then UUIDs (byte order). */
#define AG_ID_KEY_LEN 17
void ag_id_to_key(const ag_point_id_t *id, uint8_t key[AG_ID_KEY_LEN]);
int ag_id_from_key(const uint8_t *key, size_t len, ag_point_id_t *out);

/* Parses a JSON id. `path` names the field for the diagnostic. */
int ag_id_parse(const json_t *v, ag_point_id_t *out, const char *path, ag_diag_t *diag);
/* Parses a textual id from a URL segment: decimal digits (u64) or a UUID. */
int ag_id_parse_str(const char *s, ag_point_id_t *out, ag_diag_t *diag);
/* Returns a new JSON value (integer or string); NULL on allocation failure. u64 above
 * INT64_MAX cannot be represented by jansson and is rejected at parse time. */
json_t *ag_id_to_json(const ag_point_id_t *id);
/* Canonical text (decimal or lowercase hyphenated UUID) into buf (>= 37 bytes). */
void ag_id_format(const ag_point_id_t *id, char *buf, size_t len);
bool ag_id_equal(const ag_point_id_t *a, const ag_point_id_t *b);
int ag_id_cmp(const ag_point_id_t *a, const ag_point_id_t *b);
uint64_t ag_id_hash(const ag_point_id_t *id);

#endif
