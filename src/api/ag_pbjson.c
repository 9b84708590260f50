/* ag_pbjson.c — protobuf ↔ JSON for the gRPC API (ag_pbjson.h, docs/API.md "gRPC"). Requests are
 * unpacked with protobuf-c's default allocator and freed at the end of each decoder; responses are
 * built in an arena, packed into one malloc'd buffer, and the arena released. */
#include "ag_pbjson.h"

#include <stdio.h>

#include "ag_arena.h"
#include "collections.pb-c.h"
#include "health_check.pb-c.h"
#include "points.pb-c.h"
#include "json/ag_json.h"

/* Qdrant marks fields deprecated that its clients still send (Vector.data, on_disk): they are
 * read and written here on purpose. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

#define HAS(m, f) ((m)->_##f##_case != 0)

void ag_pb_req_release(ag_pb_req_t *r)
{
    free(r->collection);
    json_decref(r->body);
    memset(r, 0, sizeof(*r));
}

static int bad(ag_diag_t *diag, const char *what)
{
    return ag_fail(diag, AG_EINVAL, "%s", what);
}

static int unsupported(ag_diag_t *diag, const char *field)
{
    return ag_fail(diag, AG_EINVAL, "%s: not supported over gRPC by this server (use REST)", field);
}

/* Sets key to v (a new reference, stolen) in o; false when v is NULL (out of memory). */
static bool put(json_t *o, const char *key, json_t *v)
{
    return v && json_object_set_new(o, key, v) == 0;
}

/* ---- request side: protobuf → JSON --------------------------------------------------------- */

static json_t *value_json(const Qdrant__Value *v, int depth);

static json_t *struct_json(Qdrant__Struct__FieldsEntry **f, size_t n, int depth)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < n; i++)
        if (!f[i]->key || !put(o, f[i]->key, value_json(f[i]->value, depth + 1))) {
            json_decref(o);
            return NULL;
        }
    return o;
}

/* NULL for an unset or too deeply nested value (the REST parser's own limits apply after). */
static json_t *value_json(const Qdrant__Value *v, int depth)
{
    if (!v || depth > 64)
        return NULL;
    switch (v->kind_case) {
    case QDRANT__VALUE__KIND_NULL_VALUE:
        return json_null();
    case QDRANT__VALUE__KIND_DOUBLE_VALUE:
        return json_real(v->double_value);
    case QDRANT__VALUE__KIND_INTEGER_VALUE:
        return json_integer(v->integer_value);
    case QDRANT__VALUE__KIND_STRING_VALUE:
        return json_string(v->string_value);
    case QDRANT__VALUE__KIND_BOOL_VALUE:
        return json_boolean(v->bool_value);
    case QDRANT__VALUE__KIND_STRUCT_VALUE:
        return v->struct_value
                   ? struct_json(v->struct_value->fields, v->struct_value->n_fields, depth)
                   : json_object();
    case QDRANT__VALUE__KIND_LIST_VALUE: {
        json_t *a = json_array();
        for (size_t i = 0; a && v->list_value && i < v->list_value->n_values; i++)
            if (json_array_append_new(a, value_json(v->list_value->values[i], depth + 1)) != 0) {
                json_decref(a);
                return NULL;
            }
        return a;
    }
    default:
        return json_null(); /* an unset kind reads as null, as in Qdrant */
    }
}

static json_t *payload_json(Qdrant__PointStruct__PayloadEntry **f, size_t n)
{
    /* Every map<string, Value> entry has the same layout (base, key, value). */
    return struct_json((Qdrant__Struct__FieldsEntry **)f, n, 0);
}

static json_t *id_json(const Qdrant__PointId *id)
{
    if (!id)
        return NULL;
    if (id->point_id_options_case == QDRANT__POINT_ID__POINT_ID_OPTIONS_NUM) {
        if (id->num <= (uint64_t)INT64_MAX)
            return json_integer((json_int_t)id->num);
        /* Above jansson's int64: the marker form, rendered back as a bare integer. */
        char buf[48];
        snprintf(buf, sizeof(buf), "%s%llu", AG_U64_MARKER, (unsigned long long)id->num);
        return json_string(buf);
    }
    if (id->point_id_options_case == QDRANT__POINT_ID__POINT_ID_OPTIONS_UUID)
        return json_string(id->uuid);
    return NULL;
}

static json_t *ids_json(Qdrant__PointId **ids, size_t n, ag_diag_t *diag, const char *field)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, id_json(ids[i])) != 0) {
            json_decref(a);
            ag_fail(diag, AG_EINVAL, "%s[%zu]: a point id needs num or uuid", field, i);
            return NULL;
        }
    return a;
}

static json_t *floats(const float *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_real(v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *sparse_json(const uint32_t *idx, size_t ni, const float *val, size_t nv)
{
    json_t *o = json_object(), *ia = json_array();
    for (size_t i = 0; ia && i < ni; i++)
        if (json_array_append_new(ia, json_integer(idx[i])) != 0) {
            json_decref(ia);
            ia = NULL;
        }
    if (!o || !put(o, "indices", ia) || !put(o, "values", floats(val, nv))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *vector_json(const Qdrant__Vector *v, ag_diag_t *diag, const char *field)
{
    if (!v) {
        ag_fail(diag, AG_EINVAL, "%s: missing vector", field);
        return NULL;
    }
    switch (v->vector_case) {
    case QDRANT__VECTOR__VECTOR_DENSE:
        return floats(v->dense->data, v->dense->n_data);
    case QDRANT__VECTOR__VECTOR_SPARSE:
        return sparse_json(v->sparse->indices, v->sparse->n_indices, v->sparse->values,
                           v->sparse->n_values);
    case QDRANT__VECTOR__VECTOR__NOT_SET:
        if (HAS(v, indices))
            return sparse_json(v->indices->data, v->indices->n_data, v->data, v->n_data);
        if (HAS(v, vectors_count)) {
            unsupported(diag, "vectors_count (multi-vectors)");
            return NULL;
        }
        return floats(v->data, v->n_data);
    default:
        ag_fail(diag, AG_EINVAL, "%s: only dense and sparse vectors are supported over gRPC",
                field);
        return NULL;
    }
}

static json_t *vectors_json(const Qdrant__Vectors *v, ag_diag_t *diag)
{
    if (!v)
        return NULL;
    if (v->vectors_options_case == QDRANT__VECTORS__VECTORS_OPTIONS_VECTOR)
        return vector_json(v->vector, diag, "vectors");
    if (v->vectors_options_case != QDRANT__VECTORS__VECTORS_OPTIONS_VECTORS) {
        ag_fail(diag, AG_EINVAL, "vectors: neither vector nor vectors is set");
        return NULL;
    }
    json_t *o = json_object();
    for (size_t i = 0; o && i < v->vectors->n_vectors; i++) {
        Qdrant__NamedVectors__VectorsEntry *e = v->vectors->vectors[i];
        if (!e->key || !put(o, e->key, vector_json(e->value, diag, "vectors"))) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

static json_t *filter_json(const Qdrant__Filter *f, ag_diag_t *diag, int depth);

static json_t *strings_json(char **s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_string(s[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *ints_json(const int64_t *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_integer(v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *match_json(const Qdrant__Match *m, ag_diag_t *diag)
{
    json_t *o = json_object();
    bool ok = o != NULL;
    switch (m->match_value_case) {
    case QDRANT__MATCH__MATCH_VALUE_KEYWORD:
        ok = ok && put(o, "value", json_string(m->keyword));
        break;
    case QDRANT__MATCH__MATCH_VALUE_INTEGER:
        ok = ok && put(o, "value", json_integer(m->integer));
        break;
    case QDRANT__MATCH__MATCH_VALUE_BOOLEAN:
        ok = ok && put(o, "value", json_boolean(m->boolean));
        break;
    case QDRANT__MATCH__MATCH_VALUE_TEXT:
        ok = ok && put(o, "text", json_string(m->text));
        break;
    case QDRANT__MATCH__MATCH_VALUE_PHRASE:
        ok = ok && put(o, "phrase", json_string(m->phrase));
        break;
    case QDRANT__MATCH__MATCH_VALUE_TEXT_ANY:
        ok = ok && put(o, "text_any", json_string(m->text_any));
        break;
    case QDRANT__MATCH__MATCH_VALUE_KEYWORDS:
        ok = ok && put(o, "any", strings_json(m->keywords->strings, m->keywords->n_strings));
        break;
    case QDRANT__MATCH__MATCH_VALUE_INTEGERS:
        ok = ok && put(o, "any", ints_json(m->integers->integers, m->integers->n_integers));
        break;
    case QDRANT__MATCH__MATCH_VALUE_EXCEPT_KEYWORDS:
        ok = ok && put(o, "except",
                       strings_json(m->except_keywords->strings, m->except_keywords->n_strings));
        break;
    case QDRANT__MATCH__MATCH_VALUE_EXCEPT_INTEGERS:
        ok = ok && put(o, "except",
                       ints_json(m->except_integers->integers, m->except_integers->n_integers));
        break;
    default:
        json_decref(o);
        unsupported(diag, "filter: match kind");
        return NULL;
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *field_json(const Qdrant__FieldCondition *fc, ag_diag_t *diag)
{
    if (fc->geo_bounding_box || fc->geo_radius || fc->geo_polygon)
        return unsupported(diag, "filter: geo conditions"), NULL;
    if (fc->datetime_range)
        return unsupported(diag, "filter: datetime_range"), NULL;
    if (HAS(fc, is_empty) || HAS(fc, is_null))
        return unsupported(diag, "filter: field is_empty/is_null (use the is_empty condition)"),
               NULL;
    json_t *o = json_object();
    if (!o || !put(o, "key", json_string(fc->key ? fc->key : "")))
        goto fail;
    if (fc->match && !put(o, "match", match_json(fc->match, diag)))
        goto fail;
    if (fc->range) {
        json_t *r = json_object();
        const Qdrant__Range *g = fc->range;
        if (!put(o, "range", r) || (HAS(g, lt) && !put(r, "lt", json_real(g->lt))) ||
            (HAS(g, gt) && !put(r, "gt", json_real(g->gt))) ||
            (HAS(g, gte) && !put(r, "gte", json_real(g->gte))) ||
            (HAS(g, lte) && !put(r, "lte", json_real(g->lte))))
            goto fail;
    }
    if (fc->values_count) {
        json_t *r = json_object();
        const Qdrant__ValuesCount *g = fc->values_count;
        if (!put(o, "values_count", r) ||
            (HAS(g, lt) && !put(r, "lt", json_integer((json_int_t)g->lt))) ||
            (HAS(g, gt) && !put(r, "gt", json_integer((json_int_t)g->gt))) ||
            (HAS(g, gte) && !put(r, "gte", json_integer((json_int_t)g->gte))) ||
            (HAS(g, lte) && !put(r, "lte", json_integer((json_int_t)g->lte))))
            goto fail;
    }
    return o;
fail:
    json_decref(o);
    return NULL;
}

static json_t *cond_json(const Qdrant__Condition *c, ag_diag_t *diag, int depth)
{
    json_t *o = NULL;
    switch (c->condition_one_of_case) {
    case QDRANT__CONDITION__CONDITION_ONE_OF_FIELD:
        return field_json(c->field, diag);
    case QDRANT__CONDITION__CONDITION_ONE_OF_FILTER:
        return filter_json(c->filter, diag, depth + 1);
    case QDRANT__CONDITION__CONDITION_ONE_OF_IS_EMPTY:
        o = json_pack("{s:{s:s}}", "is_empty", "key", c->is_empty->key ? c->is_empty->key : "");
        break;
    case QDRANT__CONDITION__CONDITION_ONE_OF_IS_NULL:
        o = json_pack("{s:{s:s}}", "is_null", "key", c->is_null->key ? c->is_null->key : "");
        break;
    case QDRANT__CONDITION__CONDITION_ONE_OF_HAS_ID:
        o = json_object();
        if (o &&
            !put(o, "has_id", ids_json(c->has_id->has_id, c->has_id->n_has_id, diag, "has_id")))
            return json_decref(o), NULL;
        break;
    case QDRANT__CONDITION__CONDITION_ONE_OF_HAS_VECTOR:
        o = json_pack("{s:s}", "has_vector",
                      c->has_vector->has_vector ? c->has_vector->has_vector : "");
        break;
    case QDRANT__CONDITION__CONDITION_ONE_OF_NESTED: {
        json_t *f = filter_json(c->nested->filter, diag, depth + 1);
        o = f ? json_pack("{s:{s:s,s:o}}", "nested", "key", c->nested->key ? c->nested->key : "",
                          "filter", f)
              : NULL;
        break;
    }
    default:
        unsupported(diag, "filter: condition kind");
        return NULL;
    }
    return o;
}

static bool conds(json_t *o, const char *key, Qdrant__Condition **c, size_t n, ag_diag_t *diag,
                  int depth)
{
    if (n == 0)
        return true;
    json_t *a = json_array();
    if (!put(o, key, a))
        return false;
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(a, cond_json(c[i], diag, depth)) != 0)
            return false;
    return true;
}

static json_t *filter_json(const Qdrant__Filter *f, ag_diag_t *diag, int depth)
{
    if (!f)
        return json_object();
    if (depth > 32) {
        ag_fail(diag, AG_EINVAL, "filter: nested too deeply");
        return NULL;
    }
    json_t *o = json_object();
    if (!o || !conds(o, "must", f->must, f->n_must, diag, depth) ||
        !conds(o, "should", f->should, f->n_should, diag, depth) ||
        !conds(o, "must_not", f->must_not, f->n_must_not, diag, depth))
        goto fail;
    if (HAS(f, min_should)) {
        json_t *m = json_object();
        if (!put(o, "min_should", m) ||
            !conds(m, "conditions", f->min_should->conditions, f->min_should->n_conditions, diag,
                   depth) ||
            !put(m, "min_count", json_integer((json_int_t)f->min_should->min_count)))
            goto fail;
    }
    return o;
fail:
    json_decref(o);
    if (!diag->msg[0])
        ag_fail(diag, AG_EINVAL, "filter: invalid");
    return NULL;
}

static json_t *with_payload_json(const Qdrant__WithPayloadSelector *w)
{
    switch (w->selector_options_case) {
    case QDRANT__WITH_PAYLOAD_SELECTOR__SELECTOR_OPTIONS_ENABLE:
        return json_boolean(w->enable);
    case QDRANT__WITH_PAYLOAD_SELECTOR__SELECTOR_OPTIONS_INCLUDE:
        return strings_json(w->include->fields, w->include->n_fields);
    case QDRANT__WITH_PAYLOAD_SELECTOR__SELECTOR_OPTIONS_EXCLUDE: {
        json_t *o = json_object();
        if (o && !put(o, "exclude", strings_json(w->exclude->fields, w->exclude->n_fields)))
            return json_decref(o), NULL;
        return o;
    }
    default:
        return json_false();
    }
}

static json_t *with_vectors_json(const Qdrant__WithVectorsSelector *w)
{
    if (w->selector_options_case == QDRANT__WITH_VECTORS_SELECTOR__SELECTOR_OPTIONS_INCLUDE)
        return strings_json(w->include->names, w->include->n_names);
    return json_boolean(w->selector_options_case ==
                            QDRANT__WITH_VECTORS_SELECTOR__SELECTOR_OPTIONS_ENABLE &&
                        w->enable);
}

static json_t *params_json(const Qdrant__SearchParams *p, ag_diag_t *diag)
{
    if (HAS(p, quantization) || HAS(p, acorn) || HAS(p, idf))
        return unsupported(diag, "params: quantization/acorn/idf"), NULL;
    json_t *o = json_object();
    if (!o || (HAS(p, hnsw_ef) && !put(o, "hnsw_ef", json_integer((json_int_t)p->hnsw_ef))) ||
        (HAS(p, exact) && !put(o, "exact", json_boolean(p->exact))) ||
        (HAS(p, indexed_only) && !put(o, "indexed_only", json_boolean(p->indexed_only))))
        return json_decref(o), NULL;
    return o;
}

/* Adds the fields every read shares: filter, with_payload, with_vector, params. */
static bool read_common(json_t *b, const Qdrant__Filter *filter,
                        const Qdrant__WithPayloadSelector *wp,
                        const Qdrant__WithVectorsSelector *wv, const Qdrant__SearchParams *params,
                        ag_diag_t *diag)
{
    return (!filter || put(b, "filter", filter_json(filter, diag, 0))) &&
           (!wp || put(b, "with_payload", with_payload_json(wp))) &&
           (!wv || put(b, "with_vector", with_vectors_json(wv))) &&
           (!params || put(b, "params", params_json(params, diag)));
}

/* The common start of a decoder: unpack, or a clear refusal. */
#define UNPACK(type, fn, m)                                                                        \
    type *m = fn(NULL, len, msg);                                                                  \
    if (!m)                                                                                        \
        return bad(diag, "malformed or truncated protobuf message");

static int finish(int ok, ag_pb_req_t *r, ag_diag_t *diag)
{
    if (ok && r->body)
        return 0;
    if (!diag->msg[0])
        return ag_fail(diag, AG_ENOMEM, "out of memory");
    return AG_EINVAL;
}

static bool set_coll(ag_pb_req_t *r, const char *name)
{
    r->collection = strdup(name ? name : "");
    return r->collection != NULL;
}

int ag_pb_decode_health(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    (void)r;
    /* HealthCheckRequest is empty: any valid message will do. */
    ProtobufCMessage *m = protobuf_c_message_unpack(
        &grpc__health__v1__health_check_request__descriptor, NULL, len, msg);
    if (!m)
        return bad(diag, "malformed or truncated protobuf message");
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

int ag_pb_decode_grpc_health(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    return ag_pb_decode_health(msg, len, r, diag);
}

int ag_pb_decode_list_collections(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    (void)r;
    UNPACK(Qdrant__ListCollectionsRequest, qdrant__list_collections_request__unpack, m);
    qdrant__list_collections_request__free_unpacked(m, NULL);
    return 0;
}

int ag_pb_decode_get_collection(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    UNPACK(Qdrant__GetCollectionInfoRequest, qdrant__get_collection_info_request__unpack, m);
    bool ok = set_coll(r, m->collection_name);
    qdrant__get_collection_info_request__free_unpacked(m, NULL);
    return ok ? 0 : AG_ENOMEM;
}

int ag_pb_decode_collection_exists(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    UNPACK(Qdrant__CollectionExistsRequest, qdrant__collection_exists_request__unpack, m);
    bool ok = set_coll(r, m->collection_name);
    qdrant__collection_exists_request__free_unpacked(m, NULL);
    return ok ? 0 : AG_ENOMEM;
}

int ag_pb_decode_delete_collection(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    UNPACK(Qdrant__DeleteCollection, qdrant__delete_collection__unpack, m);
    bool ok = set_coll(r, m->collection_name);
    if (HAS(m, timeout))
        r->timeout_s = m->timeout;
    qdrant__delete_collection__free_unpacked(m, NULL);
    return ok ? 0 : AG_ENOMEM;
}

static const char *distance_name(Qdrant__Distance d)
{
    switch (d) {
    case QDRANT__DISTANCE__Cosine:
        return "Cosine";
    case QDRANT__DISTANCE__Euclid:
        return "Euclid";
    case QDRANT__DISTANCE__Dot:
        return "Dot";
    case QDRANT__DISTANCE__Manhattan:
        return "Manhattan";
    default:
        return NULL;
    }
}

static json_t *hnsw_json(const Qdrant__HnswConfigDiff *h, ag_diag_t *diag)
{
    if (HAS(h, inline_storage) || HAS(h, memory))
        return unsupported(diag, "hnsw_config: inline_storage/memory"), NULL;
    json_t *o = json_object();
    if (!o || (HAS(h, m) && !put(o, "m", json_integer((json_int_t)h->m))) ||
        (HAS(h, ef_construct) &&
         !put(o, "ef_construct", json_integer((json_int_t)h->ef_construct))) ||
        (HAS(h, full_scan_threshold) &&
         !put(o, "full_scan_threshold", json_integer((json_int_t)h->full_scan_threshold))) ||
        (HAS(h, max_indexing_threads) &&
         !put(o, "max_indexing_threads", json_integer((json_int_t)h->max_indexing_threads))) ||
        (HAS(h, on_disk) && !put(o, "on_disk", json_boolean(h->on_disk))) ||
        (HAS(h, payload_m) && !put(o, "payload_m", json_integer((json_int_t)h->payload_m))))
        return json_decref(o), NULL;
    return o;
}

static json_t *vparams_json(const Qdrant__VectorParams *p, ag_diag_t *diag)
{
    const char *d = distance_name(p->distance);
    if (!d)
        return ag_fail(diag, AG_EINVAL,
                       "vectors_config: distance: expected Cosine, Euclid, Dot or "
                       "Manhattan"),
               NULL;
    if (HAS(p, quantization_config) || HAS(p, multivector_config) || HAS(p, memory) ||
        (HAS(p, datatype) && p->datatype != QDRANT__DATATYPE__Float32 &&
         p->datatype != QDRANT__DATATYPE__Default))
        return unsupported(diag, "vectors_config: quantization/multivector/memory/datatype"), NULL;
    json_t *o = json_pack("{s:I,s:s}", "size", (json_int_t)p->size, "distance", d);
    if (o && HAS(p, on_disk) && !put(o, "on_disk", json_boolean(p->on_disk)))
        return json_decref(o), NULL;
    if (o && HAS(p, hnsw_config) && !put(o, "hnsw_config", hnsw_json(p->hnsw_config, diag)))
        return json_decref(o), NULL;
    return o;
}

int ag_pb_decode_create_collection(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    UNPACK(Qdrant__CreateCollection, qdrant__create_collection__unpack, m);
    bool ok = set_coll(r, m->collection_name) && (r->body = json_object()) != NULL;
    if (ok && (m->n_metadata || HAS(m, wal_config) || HAS(m, optimizers_config) ||
               HAS(m, quantization_config) || HAS(m, sharding_method) ||
               HAS(m, strict_mode_config) || HAS(m, payload))) {
        unsupported(diag, "metadata/wal_config/optimizers_config/quantization_config/"
                          "sharding_method/strict_mode_config/payload");
        ok = false;
    }
    if (ok && HAS(m, shard_number))
        ok = put(r->body, "shard_number", json_integer(m->shard_number));
    if (ok && HAS(m, replication_factor))
        ok = put(r->body, "replication_factor", json_integer(m->replication_factor));
    if (ok && HAS(m, write_consistency_factor))
        ok = put(r->body, "write_consistency_factor", json_integer(m->write_consistency_factor));
    if (ok && HAS(m, on_disk_payload))
        ok = put(r->body, "on_disk_payload", json_boolean(m->on_disk_payload));
    if (ok && HAS(m, hnsw_config))
        ok = put(r->body, "hnsw_config", hnsw_json(m->hnsw_config, diag));
    if (ok && HAS(m, timeout))
        r->timeout_s = m->timeout;
    if (ok && HAS(m, vectors_config)) {
        const Qdrant__VectorsConfig *vc = m->vectors_config;
        if (vc->config_case == QDRANT__VECTORS_CONFIG__CONFIG_PARAMS) {
            ok = put(r->body, "vectors", vparams_json(vc->params, diag));
        } else if (vc->config_case == QDRANT__VECTORS_CONFIG__CONFIG_PARAMS_MAP) {
            json_t *o = json_object();
            ok = put(r->body, "vectors", o);
            for (size_t i = 0; ok && i < vc->params_map->n_map; i++)
                ok = vc->params_map->map[i]->key &&
                     put(o, vc->params_map->map[i]->key,
                         vparams_json(vc->params_map->map[i]->value, diag));
        }
    }
    if (ok && HAS(m, sparse_vectors_config)) {
        json_t *o = json_object();
        ok = put(r->body, "sparse_vectors", o);
        for (size_t i = 0; ok && i < m->sparse_vectors_config->n_map; i++) {
            Qdrant__SparseVectorConfig__MapEntry *e = m->sparse_vectors_config->map[i];
            if (e->value && (HAS(e->value, index) || HAS(e->value, modifier))) {
                unsupported(diag, "sparse_vectors_config: index/modifier");
                ok = false;
            } else {
                ok = e->key && put(o, e->key, json_object());
            }
        }
    }
    qdrant__create_collection__free_unpacked(m, NULL);
    return finish(ok, r, diag);
}

/* PointStructs → REST's points array; NULL (diag naming the point) on a bad one. */
static json_t *points_json(Qdrant__PointStruct **pts, size_t n, ag_diag_t *diag)
{
    json_t *a = json_array();
    bool ok = a != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        const Qdrant__PointStruct *p = pts[i];
        json_t *o = json_object();
        ok = json_array_append_new(a, o) == 0 && o;
        if (ok && !put(o, "id", id_json(p->id))) {
            ag_fail(diag, AG_EINVAL, "points[%zu].id: a point id needs num or uuid", i);
            ok = false;
        }
        if (ok && HAS(p, vectors))
            ok = put(o, "vector", vectors_json(p->vectors, diag));
        if (ok && p->n_payload)
            ok = put(o, "payload", payload_json(p->payload, p->n_payload));
    }
    if (!ok) {
        json_decref(a);
        return NULL;
    }
    return a;
}

int ag_pb_decode_upsert(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    UNPACK(Qdrant__UpsertPoints, qdrant__upsert_points__unpack, m);
    bool ok = set_coll(r, m->collection_name) && (r->body = json_object()) != NULL;
    if (ok && (HAS(m, shard_key_selector) || HAS(m, update_mode))) {
        unsupported(diag, "shard_key_selector/update_mode");
        ok = false;
    }
    r->wait = HAS(m, wait) && m->wait;
    if (HAS(m, timeout))
        r->timeout_s = m->timeout;
    ok = ok && put(r->body, "points", points_json(m->points, m->n_points, diag));
    if (ok && HAS(m, update_filter))
        ok = put(r->body, "update_filter", filter_json(m->update_filter, diag, 0));
    qdrant__upsert_points__free_unpacked(m, NULL);
    return finish(ok, r, diag);
}

int ag_pb_decode_search(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    UNPACK(Qdrant__SearchPoints, qdrant__search_points__unpack, m);
    bool ok = set_coll(r, m->collection_name) && (r->body = json_object()) != NULL;
    if (ok && HAS(m, shard_key_selector)) {
        unsupported(diag, "shard_key_selector");
        ok = false;
    }
    json_t *vec = NULL;
    if (ok)
        vec = HAS(m, sparse_indices)
                  ? sparse_json(m->sparse_indices->data, m->sparse_indices->n_data, m->vector,
                                m->n_vector)
                  : floats(m->vector, m->n_vector);
    if (ok && HAS(m, vector_name) && vec)
        vec = json_pack("{s:s,s:o}", "name", m->vector_name, "vector", vec);
    ok = ok && put(r->body, "vector", vec) &&
         put(r->body, "limit", json_integer((json_int_t)m->limit)) &&
         read_common(r->body, m->filter, m->with_payload,
                     HAS(m, with_vectors) ? m->with_vectors : NULL, m->params, diag);
    if (ok && HAS(m, offset))
        ok = put(r->body, "offset", json_integer((json_int_t)m->offset));
    if (ok && HAS(m, score_threshold))
        ok = put(r->body, "score_threshold", json_real(m->score_threshold));
    if (HAS(m, timeout))
        r->timeout_s = m->timeout;
    qdrant__search_points__free_unpacked(m, NULL);
    return finish(ok, r, diag);
}

int ag_pb_decode_query(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    UNPACK(Qdrant__QueryPoints, qdrant__query_points__unpack, m);
    bool ok = set_coll(r, m->collection_name) && (r->body = json_object()) != NULL;
    if (ok && (m->n_prefetch || HAS(m, shard_key_selector) || HAS(m, lookup_from))) {
        unsupported(diag, "prefetch/shard_key_selector/lookup_from");
        ok = false;
    }
    if (ok && HAS(m, query)) {
        const Qdrant__Query *q = m->query;
        if (q->variant_case != QDRANT__QUERY__VARIANT_NEAREST) {
            unsupported(diag, "query: only nearest");
            ok = false;
        } else {
            const Qdrant__VectorInput *vi = q->nearest;
            json_t *v = NULL;
            switch (vi->variant_case) {
            case QDRANT__VECTOR_INPUT__VARIANT_DENSE:
                v = floats(vi->dense->data, vi->dense->n_data);
                break;
            case QDRANT__VECTOR_INPUT__VARIANT_SPARSE:
                v = sparse_json(vi->sparse->indices, vi->sparse->n_indices, vi->sparse->values,
                                vi->sparse->n_values);
                break;
            case QDRANT__VECTOR_INPUT__VARIANT_ID:
                v = id_json(vi->id);
                break;
            default:
                unsupported(diag, "query.nearest: only dense, sparse or a point id");
                break;
            }
            ok = put(r->body, "query", v);
        }
    }
    if (ok && m->_using_case)
        ok = put(r->body, "using", json_string(m->using_));
    ok = ok && read_common(r->body, HAS(m, filter) ? m->filter : NULL,
                           HAS(m, with_payload) ? m->with_payload : NULL,
                           HAS(m, with_vectors) ? m->with_vectors : NULL,
                           HAS(m, params) ? m->params : NULL, diag);
    if (ok && HAS(m, limit))
        ok = put(r->body, "limit", json_integer((json_int_t)m->limit));
    if (ok && HAS(m, offset))
        ok = put(r->body, "offset", json_integer((json_int_t)m->offset));
    if (ok && HAS(m, score_threshold))
        ok = put(r->body, "score_threshold", json_real(m->score_threshold));
    if (HAS(m, timeout))
        r->timeout_s = m->timeout;
    qdrant__query_points__free_unpacked(m, NULL);
    return finish(ok, r, diag);
}

int ag_pb_decode_scroll(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    UNPACK(Qdrant__ScrollPoints, qdrant__scroll_points__unpack, m);
    bool ok = set_coll(r, m->collection_name) && (r->body = json_object()) != NULL;
    if (ok && (HAS(m, shard_key_selector) || HAS(m, order_by))) {
        unsupported(diag, "shard_key_selector/order_by");
        ok = false;
    }
    ok = ok && read_common(r->body, m->filter, m->with_payload,
                           HAS(m, with_vectors) ? m->with_vectors : NULL, NULL, diag);
    if (ok && HAS(m, offset))
        ok = put(r->body, "offset", id_json(m->offset));
    if (ok && HAS(m, limit))
        ok = put(r->body, "limit", json_integer(m->limit));
    if (HAS(m, timeout))
        r->timeout_s = m->timeout;
    qdrant__scroll_points__free_unpacked(m, NULL);
    return finish(ok, r, diag);
}

int ag_pb_decode_get_points(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    UNPACK(Qdrant__GetPoints, qdrant__get_points__unpack, m);
    bool ok = set_coll(r, m->collection_name) && (r->body = json_object()) != NULL;
    ok = ok && put(r->body, "ids", ids_json(m->ids, m->n_ids, diag, "ids")) &&
         read_common(r->body, NULL, m->with_payload, HAS(m, with_vectors) ? m->with_vectors : NULL,
                     NULL, diag);
    if (HAS(m, timeout))
        r->timeout_s = m->timeout;
    qdrant__get_points__free_unpacked(m, NULL);
    return finish(ok, r, diag);
}

int ag_pb_decode_delete_points(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    UNPACK(Qdrant__DeletePoints, qdrant__delete_points__unpack, m);
    bool ok = set_coll(r, m->collection_name) && (r->body = json_object()) != NULL;
    r->wait = HAS(m, wait) && m->wait;
    if (ok && HAS(m, shard_key_selector)) {
        unsupported(diag, "shard_key_selector");
        ok = false;
    }
    const Qdrant__PointsSelector *s = m->points;
    if (ok && s &&
        s->points_selector_one_of_case == QDRANT__POINTS_SELECTOR__POINTS_SELECTOR_ONE_OF_POINTS)
        ok = put(r->body, "points", ids_json(s->points->ids, s->points->n_ids, diag, "points"));
    else if (ok && s &&
             s->points_selector_one_of_case ==
                 QDRANT__POINTS_SELECTOR__POINTS_SELECTOR_ONE_OF_FILTER)
        ok = put(r->body, "filter", filter_json(s->filter, diag, 0));
    else if (ok) {
        ag_fail(diag, AG_EINVAL, "points: a selector (ids or filter) is required");
        ok = false;
    }
    if (HAS(m, timeout))
        r->timeout_s = m->timeout;
    qdrant__delete_points__free_unpacked(m, NULL);
    return finish(ok, r, diag);
}

int ag_pb_decode_count(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    UNPACK(Qdrant__CountPoints, qdrant__count_points__unpack, m);
    bool ok = set_coll(r, m->collection_name) && (r->body = json_object()) != NULL;
    if (ok && HAS(m, shard_key_selector)) {
        unsupported(diag, "shard_key_selector");
        ok = false;
    }
    ok = ok && (!m->filter || put(r->body, "filter", filter_json(m->filter, diag, 0)));
    if (ok && HAS(m, exact))
        ok = put(r->body, "exact", json_boolean(m->exact));
    if (HAS(m, timeout))
        r->timeout_s = m->timeout;
    qdrant__count_points__free_unpacked(m, NULL);
    return finish(ok, r, diag);
}

/* Adds a PointsSelector as REST's "points" (ids) or "filter"; AG_EINVAL naming field when unset. */
static bool selector(json_t *b, const Qdrant__PointsSelector *s, const char *field, ag_diag_t *diag)
{
    if (s &&
        s->points_selector_one_of_case == QDRANT__POINTS_SELECTOR__POINTS_SELECTOR_ONE_OF_POINTS)
        return put(b, "points", ids_json(s->points->ids, s->points->n_ids, diag, field));
    if (s &&
        s->points_selector_one_of_case == QDRANT__POINTS_SELECTOR__POINTS_SELECTOR_ONE_OF_FILTER)
        return put(b, "filter", filter_json(s->filter, diag, 0));
    ag_fail(diag, AG_EINVAL, "%s: a selector (ids or filter) is required", field);
    return false;
}

static int decode_set_payload(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    UNPACK(Qdrant__SetPayloadPoints, qdrant__set_payload_points__unpack, m);
    bool ok = set_coll(r, m->collection_name) && (r->body = json_object()) != NULL;
    r->wait = HAS(m, wait) && m->wait;
    if (ok && HAS(m, shard_key_selector)) {
        unsupported(diag, "shard_key_selector");
        ok = false;
    }
    ok = ok &&
         put(r->body, "payload",
             payload_json((Qdrant__PointStruct__PayloadEntry **)m->payload, m->n_payload)) &&
         selector(r->body, HAS(m, points_selector) ? m->points_selector : NULL, "points_selector",
                  diag);
    if (ok && HAS(m, key))
        ok = put(r->body, "key", json_string(m->key));
    if (HAS(m, timeout))
        r->timeout_s = m->timeout;
    qdrant__set_payload_points__free_unpacked(m, NULL);
    return finish(ok, r, diag);
}

int ag_pb_decode_set_payload(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    return decode_set_payload(msg, len, r, diag);
}

int ag_pb_decode_overwrite_payload(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    return decode_set_payload(msg, len, r, diag);
}

int ag_pb_decode_delete_payload(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    UNPACK(Qdrant__DeletePayloadPoints, qdrant__delete_payload_points__unpack, m);
    bool ok = set_coll(r, m->collection_name) && (r->body = json_object()) != NULL;
    r->wait = HAS(m, wait) && m->wait;
    if (ok && HAS(m, shard_key_selector)) {
        unsupported(diag, "shard_key_selector");
        ok = false;
    }
    ok = ok && put(r->body, "keys", strings_json(m->keys, m->n_keys)) &&
         selector(r->body, HAS(m, points_selector) ? m->points_selector : NULL, "points_selector",
                  diag);
    if (HAS(m, timeout))
        r->timeout_s = m->timeout;
    qdrant__delete_payload_points__free_unpacked(m, NULL);
    return finish(ok, r, diag);
}

int ag_pb_decode_clear_payload(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    UNPACK(Qdrant__ClearPayloadPoints, qdrant__clear_payload_points__unpack, m);
    bool ok = set_coll(r, m->collection_name) && (r->body = json_object()) != NULL;
    r->wait = HAS(m, wait) && m->wait;
    if (ok && HAS(m, shard_key_selector)) {
        unsupported(diag, "shard_key_selector");
        ok = false;
    }
    ok = ok && selector(r->body, m->points, "points", diag);
    if (HAS(m, timeout))
        r->timeout_s = m->timeout;
    qdrant__clear_payload_points__free_unpacked(m, NULL);
    return finish(ok, r, diag);
}

int ag_pb_decode_create_field_index(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    static const char *types[] = {"keyword", "integer", "float",    "geo",
                                  "text",    "bool",    "datetime", "uuid"};
    UNPACK(Qdrant__CreateFieldIndexCollection, qdrant__create_field_index_collection__unpack, m);
    bool ok = set_coll(r, m->collection_name) && (r->body = json_object()) != NULL;
    r->wait = HAS(m, wait) && m->wait;
    if (ok && HAS(m, field_index_params)) {
        unsupported(diag, "field_index_params");
        ok = false;
    }
    if (ok && !HAS(m, field_type)) {
        ag_fail(diag, AG_EINVAL, "field_type: required");
        ok = false;
    }
    if (ok && (unsigned)m->field_type >= AG_ARRAY_LEN(types)) {
        ag_fail(diag, AG_EINVAL, "field_type: unknown value %d", (int)m->field_type);
        ok = false;
    }
    ok = ok && put(r->body, "field_name", json_string(m->field_name ? m->field_name : "")) &&
         put(r->body, "field_schema", json_string(types[m->field_type]));
    if (HAS(m, timeout))
        r->timeout_s = m->timeout;
    qdrant__create_field_index_collection__free_unpacked(m, NULL);
    return finish(ok, r, diag);
}

int ag_pb_decode_update_aliases(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    UNPACK(Qdrant__ChangeAliases, qdrant__change_aliases__unpack, m);
    json_t *acts = json_array();
    bool ok = (r->body = json_object()) != NULL && put(r->body, "actions", acts);
    for (size_t i = 0; ok && i < m->n_actions; i++) {
        const Qdrant__AliasOperations *a = m->actions[i];
        json_t *o = NULL;
        switch (a->action_case) {
        case QDRANT__ALIAS_OPERATIONS__ACTION_CREATE_ALIAS:
            o = json_pack("{s:{s:s,s:s}}", "create_alias", "collection_name",
                          a->create_alias->collection_name, "alias_name",
                          a->create_alias->alias_name);
            break;
        case QDRANT__ALIAS_OPERATIONS__ACTION_RENAME_ALIAS:
            o = json_pack("{s:{s:s,s:s}}", "rename_alias", "old_alias_name",
                          a->rename_alias->old_alias_name, "new_alias_name",
                          a->rename_alias->new_alias_name);
            break;
        case QDRANT__ALIAS_OPERATIONS__ACTION_DELETE_ALIAS:
            o = json_pack("{s:{s:s}}", "delete_alias", "alias_name", a->delete_alias->alias_name);
            break;
        default:
            ag_fail(diag, AG_EINVAL, "actions[%zu]: no action set", i);
            break;
        }
        ok = o && json_array_append_new(acts, o) == 0;
    }
    if (HAS(m, timeout))
        r->timeout_s = m->timeout;
    qdrant__change_aliases__free_unpacked(m, NULL);
    return finish(ok, r, diag);
}

int ag_pb_decode_list_aliases(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    (void)r;
    UNPACK(Qdrant__ListAliasesRequest, qdrant__list_aliases_request__unpack, m);
    qdrant__list_aliases_request__free_unpacked(m, NULL);
    return 0;
}

int ag_pb_decode_list_collection_aliases(const uint8_t *msg, size_t len, ag_pb_req_t *r,
                                         ag_diag_t *diag)
{
    UNPACK(Qdrant__ListCollectionAliasesRequest, qdrant__list_collection_aliases_request__unpack,
           m);
    bool ok = set_coll(r, m->collection_name);
    qdrant__list_collection_aliases_request__free_unpacked(m, NULL);
    return ok ? 0 : AG_ENOMEM;
}

int ag_pb_decode_update_batch(const uint8_t *msg, size_t len, ag_pb_req_t *r, ag_diag_t *diag)
{
    UNPACK(Qdrant__UpdateBatchPoints, qdrant__update_batch_points__unpack, m);
    bool ok = set_coll(r, m->collection_name) && (r->body = json_object()) != NULL;
    r->wait = HAS(m, wait) && m->wait;
    if (HAS(m, timeout))
        r->timeout_s = m->timeout;
    json_t *ops = json_array();
    ok = ok && put(r->body, "operations", ops);
    for (size_t i = 0; ok && i < m->n_operations; i++) {
        const Qdrant__PointsUpdateOperation *op = m->operations[i];
        json_t *b = json_object();
        const char *name = NULL;
        ok = b != NULL;
        switch (op->operation_case) {
        case QDRANT__POINTS_UPDATE_OPERATION__OPERATION_UPSERT:
            name = "upsert";
            if (HAS(op->upsert, shard_key_selector) || HAS(op->upsert, update_mode)) {
                unsupported(diag, "operations: upsert.shard_key_selector/update_mode");
                ok = false;
            }
            ok =
                ok && put(b, "points", points_json(op->upsert->points, op->upsert->n_points, diag));
            if (ok && HAS(op->upsert, update_filter))
                ok = put(b, "update_filter", filter_json(op->upsert->update_filter, diag, 0));
            break;
        case QDRANT__POINTS_UPDATE_OPERATION__OPERATION_DELETE_DEPRECATED:
            name = "delete";
            ok = ok && selector(b, op->delete_deprecated, "operations: delete", diag);
            break;
        case QDRANT__POINTS_UPDATE_OPERATION__OPERATION_DELETE_POINTS:
            name = "delete";
            ok = ok && selector(b, op->delete_points->points, "operations: delete_points", diag);
            break;
        case QDRANT__POINTS_UPDATE_OPERATION__OPERATION_SET_PAYLOAD:
        case QDRANT__POINTS_UPDATE_OPERATION__OPERATION_OVERWRITE_PAYLOAD: {
            bool set = op->operation_case == QDRANT__POINTS_UPDATE_OPERATION__OPERATION_SET_PAYLOAD;
            const Qdrant__PointsUpdateOperation__SetPayload *sp = set ? op->set_payload : NULL;
            const Qdrant__PointsUpdateOperation__OverwritePayload *ow =
                set ? NULL : op->overwrite_payload;
            size_t np = set ? sp->n_payload : ow->n_payload;
            void *pl = set ? (void *)sp->payload : (void *)ow->payload;
            const Qdrant__PointsSelector *ps =
                set ? (HAS(sp, points_selector) ? sp->points_selector : NULL)
                    : (HAS(ow, points_selector) ? ow->points_selector : NULL);
            const char *key =
                set ? (HAS(sp, key) ? sp->key : NULL) : (HAS(ow, key) ? ow->key : NULL);
            name = set ? "set_payload" : "overwrite_payload";
            ok = ok && put(b, "payload", payload_json(pl, np)) &&
                 selector(b, ps, "operations: points_selector", diag);
            if (ok && key)
                ok = put(b, "key", json_string(key));
            break;
        }
        case QDRANT__POINTS_UPDATE_OPERATION__OPERATION_DELETE_PAYLOAD:
            name = "delete_payload";
            ok = ok &&
                 put(b, "keys",
                     strings_json(op->delete_payload->keys, op->delete_payload->n_keys)) &&
                 selector(b,
                          HAS(op->delete_payload, points_selector)
                              ? op->delete_payload->points_selector
                              : NULL,
                          "operations: points_selector", diag);
            break;
        case QDRANT__POINTS_UPDATE_OPERATION__OPERATION_CLEAR_PAYLOAD_DEPRECATED:
            name = "clear_payload";
            ok = ok && selector(b, op->clear_payload_deprecated, "operations: clear_payload", diag);
            break;
        case QDRANT__POINTS_UPDATE_OPERATION__OPERATION_CLEAR_PAYLOAD:
            name = "clear_payload";
            ok = ok && selector(b, op->clear_payload->points, "operations: clear_payload", diag);
            break;
        default:
            unsupported(diag, "operations: update_vectors/delete_vectors");
            ok = false;
            break;
        }
        json_t *o = ok ? json_object() : NULL;
        if (ok && (!o || !put(o, name, b) || json_array_append_new(ops, o) != 0)) {
            ok = false;
        } else if (!ok) {
            json_decref(b);
        }
    }
    qdrant__update_batch_points__free_unpacked(m, NULL);
    return finish(ok, r, diag);
}

/* ---- response side: JSON → protobuf (built in an arena) ------------------------------------ */

typedef struct {
    ag_arena_t arena;
    bool oom;
} out_t;

static void *onew(out_t *o, size_t size)
{
    void *p = ag_arena_calloc(&o->arena, 1, size);
    if (!p)
        o->oom = true;
    return p;
}

/* A new message of descriptor d, initialised (defaults set), in the arena. */
static void *onew_msg(out_t *o, const ProtobufCMessageDescriptor *d)
{
    void *p = onew(o, d->sizeof_message);
    if (p)
        protobuf_c_message_init(d, p);
    return p;
}

#define NEW(o, T, desc) ((T *)onew_msg(o, &desc))

static char *ostr(out_t *o, const char *s)
{
    size_t n = strlen(s ? s : "");
    char *p = onew(o, n + 1);
    if (p)
        memcpy(p, s ? s : "", n);
    return p;
}

/* Packs m into a new malloc'd buffer and releases the arena. */
static int pack(out_t *o, const ProtobufCMessage *m, uint8_t **out, size_t *len, ag_diag_t *diag)
{
    int rc = 0;
    if (o->oom) {
        rc = ag_fail(diag, AG_ENOMEM, "out of memory");
    } else {
        size_t n = protobuf_c_message_get_packed_size(m);
        *out = malloc(n ? n : 1);
        if (!*out)
            rc = ag_fail(diag, AG_ENOMEM, "out of memory");
        else
            *len = protobuf_c_message_pack(m, *out);
    }
    ag_arena_release(&o->arena);
    return rc;
}

static void out_init(out_t *o)
{
    ag_arena_init(&o->arena, 1u << 30);
    o->oom = false;
}

static Qdrant__Value *value_pb(out_t *o, const json_t *j, int depth);

static Qdrant__Struct__FieldsEntry **entries_pb(out_t *o, const json_t *obj, size_t *n, int depth)
{
    *n = json_is_object(obj) ? json_object_size(obj) : 0;
    if (*n == 0)
        return NULL;
    Qdrant__Struct__FieldsEntry **e = onew(o, *n * sizeof(*e));
    const char *k;
    json_t *v;
    size_t i = 0;
    json_object_foreach((json_t *)obj, k, v)
    {
        if (!e)
            break;
        e[i] = NEW(o, Qdrant__Struct__FieldsEntry, qdrant__struct__fields_entry__descriptor);
        if (!e[i])
            break;
        e[i]->key = ostr(o, k);
        e[i]->value = value_pb(o, v, depth + 1);
        i++;
    }
    return e;
}

static Qdrant__Value *value_pb(out_t *o, const json_t *j, int depth)
{
    Qdrant__Value *v = NEW(o, Qdrant__Value, qdrant__value__descriptor);
    if (!v || depth > 200)
        return v;
    switch (json_typeof(j)) {
    case JSON_NULL:
        v->kind_case = QDRANT__VALUE__KIND_NULL_VALUE;
        v->null_value = QDRANT__NULL_VALUE__NULL_VALUE;
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        v->kind_case = QDRANT__VALUE__KIND_BOOL_VALUE;
        v->bool_value = json_is_true(j);
        break;
    case JSON_INTEGER:
        v->kind_case = QDRANT__VALUE__KIND_INTEGER_VALUE;
        v->integer_value = json_integer_value(j);
        break;
    case JSON_REAL:
        v->kind_case = QDRANT__VALUE__KIND_DOUBLE_VALUE;
        v->double_value = json_real_value(j);
        break;
    case JSON_STRING:
        v->kind_case = QDRANT__VALUE__KIND_STRING_VALUE;
        v->string_value = ostr(o, json_string_value(j));
        break;
    case JSON_OBJECT: {
        v->kind_case = QDRANT__VALUE__KIND_STRUCT_VALUE;
        v->struct_value = NEW(o, Qdrant__Struct, qdrant__struct__descriptor);
        if (v->struct_value)
            v->struct_value->fields = entries_pb(o, j, &v->struct_value->n_fields, depth);
        break;
    }
    case JSON_ARRAY: {
        v->kind_case = QDRANT__VALUE__KIND_LIST_VALUE;
        Qdrant__ListValue *l = v->list_value =
            NEW(o, Qdrant__ListValue, qdrant__list_value__descriptor);
        size_t n = json_array_size(j);
        if (l && n) {
            l->values = onew(o, n * sizeof(*l->values));
            for (size_t i = 0; l->values && i < n; i++)
                l->values[i] = value_pb(o, json_array_get(j, i), depth + 1);
            l->n_values = l->values ? n : 0;
        }
        break;
    }
    }
    return v;
}

static Qdrant__PointId *id_pb(out_t *o, const json_t *j)
{
    Qdrant__PointId *id = NEW(o, Qdrant__PointId, qdrant__point_id__descriptor);
    if (!id)
        return NULL;
    const char *s = json_string_value(j);
    if (json_is_integer(j)) {
        id->point_id_options_case = QDRANT__POINT_ID__POINT_ID_OPTIONS_NUM;
        id->num = (uint64_t)json_integer_value(j);
    } else if (s && strncmp(s, AG_U64_MARKER, strlen(AG_U64_MARKER)) == 0) {
        id->point_id_options_case = QDRANT__POINT_ID__POINT_ID_OPTIONS_NUM;
        id->num = strtoull(s + strlen(AG_U64_MARKER), NULL, 10);
    } else {
        id->point_id_options_case = QDRANT__POINT_ID__POINT_ID_OPTIONS_UUID;
        id->uuid = ostr(o, json_string_value(j));
    }
    return id;
}

static float *floats_pb(out_t *o, const json_t *a, size_t *n)
{
    *n = json_array_size(a);
    float *f = *n ? onew(o, *n * sizeof(float)) : NULL;
    for (size_t i = 0; f && i < *n; i++)
        f[i] = (float)json_number_value(json_array_get(a, i));
    return f;
}

static Qdrant__VectorOutput *vecout_pb(out_t *o, const json_t *j)
{
    Qdrant__VectorOutput *v = NEW(o, Qdrant__VectorOutput, qdrant__vector_output__descriptor);
    if (!v)
        return NULL;
    if (json_is_array(j)) {
        /* Dense: in the current field and in the deprecated one that older clients read. */
        Qdrant__DenseVector *d = NEW(o, Qdrant__DenseVector, qdrant__dense_vector__descriptor);
        if (!d)
            return v;
        d->data = floats_pb(o, j, &d->n_data);
        v->vector_case = QDRANT__VECTOR_OUTPUT__VECTOR_DENSE;
        v->dense = d;
        v->data = d->data;
        v->n_data = d->n_data;
    } else if (json_is_object(j)) {
        Qdrant__SparseVector *s = NEW(o, Qdrant__SparseVector, qdrant__sparse_vector__descriptor);
        if (!s)
            return v;
        s->values = floats_pb(o, json_object_get(j, "values"), &s->n_values);
        const json_t *ix = json_object_get(j, "indices");
        s->n_indices = json_array_size(ix);
        s->indices = s->n_indices ? onew(o, s->n_indices * sizeof(uint32_t)) : NULL;
        for (size_t i = 0; s->indices && i < s->n_indices; i++)
            s->indices[i] = (uint32_t)json_integer_value(json_array_get(ix, i));
        v->vector_case = QDRANT__VECTOR_OUTPUT__VECTOR_SPARSE;
        v->sparse = s;
    }
    return v;
}

static Qdrant__VectorsOutput *vectors_pb(out_t *o, const json_t *j)
{
    Qdrant__VectorsOutput *v = NEW(o, Qdrant__VectorsOutput, qdrant__vectors_output__descriptor);
    if (!v)
        return NULL;
    if (json_is_array(j)) {
        v->vectors_options_case = QDRANT__VECTORS_OUTPUT__VECTORS_OPTIONS_VECTOR;
        v->vector = vecout_pb(o, j);
        return v;
    }
    Qdrant__NamedVectorsOutput *nv =
        NEW(o, Qdrant__NamedVectorsOutput, qdrant__named_vectors_output__descriptor);
    if (!nv)
        return v;
    v->vectors_options_case = QDRANT__VECTORS_OUTPUT__VECTORS_OPTIONS_VECTORS;
    v->vectors = nv;
    size_t n = json_object_size(j);
    nv->vectors = n ? onew(o, n * sizeof(*nv->vectors)) : NULL;
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)j, k, x)
    {
        if (!nv->vectors)
            break;
        Qdrant__NamedVectorsOutput__VectorsEntry *e =
            NEW(o, Qdrant__NamedVectorsOutput__VectorsEntry,
                qdrant__named_vectors_output__vectors_entry__descriptor);
        if (!e)
            break;
        e->key = ostr(o, k);
        e->value = vecout_pb(o, x);
        nv->vectors[nv->n_vectors++] = e;
    }
    return v;
}

static Qdrant__ScoredPoint *scored_pb(out_t *o, const json_t *p)
{
    Qdrant__ScoredPoint *s = NEW(o, Qdrant__ScoredPoint, qdrant__scored_point__descriptor);
    if (!s)
        return NULL;
    s->id = id_pb(o, json_object_get(p, "id"));
    s->score = (float)json_number_value(json_object_get(p, "score"));
    s->version = (uint64_t)json_integer_value(json_object_get(p, "version"));
    s->payload = (Qdrant__ScoredPoint__PayloadEntry **)entries_pb(o, json_object_get(p, "payload"),
                                                                  &s->n_payload, 0);
    const json_t *v = json_object_get(p, "vector");
    if (v && !json_is_null(v)) {
        s->_vectors_case = QDRANT__SCORED_POINT___VECTORS_VECTORS;
        s->vectors = vectors_pb(o, v);
    }
    return s;
}

static Qdrant__RetrievedPoint *retrieved_pb(out_t *o, const json_t *p)
{
    Qdrant__RetrievedPoint *s = NEW(o, Qdrant__RetrievedPoint, qdrant__retrieved_point__descriptor);
    if (!s)
        return NULL;
    s->id = id_pb(o, json_object_get(p, "id"));
    s->payload = (Qdrant__RetrievedPoint__PayloadEntry **)entries_pb(
        o, json_object_get(p, "payload"), &s->n_payload, 0);
    const json_t *v = json_object_get(p, "vector");
    if (v && !json_is_null(v)) {
        s->_vectors_case = QDRANT__RETRIEVED_POINT___VECTORS_VECTORS;
        s->vectors = vectors_pb(o, v);
    }
    return s;
}

static Qdrant__ScoredPoint **scored_list(out_t *o, const json_t *a, size_t *n)
{
    *n = json_array_size(a);
    Qdrant__ScoredPoint **r = *n ? onew(o, *n * sizeof(*r)) : NULL;
    for (size_t i = 0; r && i < *n; i++)
        r[i] = scored_pb(o, json_array_get(a, i));
    return r;
}

static Qdrant__RetrievedPoint **retrieved_list(out_t *o, const json_t *a, size_t *n)
{
    *n = json_array_size(a);
    Qdrant__RetrievedPoint **r = *n ? onew(o, *n * sizeof(*r)) : NULL;
    for (size_t i = 0; r && i < *n; i++)
        r[i] = retrieved_pb(o, json_array_get(a, i));
    return r;
}

int ag_pb_encode_health(const json_t *result, double time, uint8_t **out, size_t *len,
                        ag_diag_t *diag)
{
    (void)result;
    (void)time;
    (void)diag;
    /* qdrant.HealthCheckReply {string title = 1; string version = 2; optional string commit = 3}
     * (qdrant.proto is not compiled: it imports Qdrant's internal services), written by hand. */
    static const char title[] = "aegis - vector search engine";
    const char *version = AG_VERSION, *commit = AG_COMMIT;
    size_t lt = strlen(title), lv = strlen(version), lc = strlen(commit);
    uint8_t *b = malloc(6 + lt + lv + lc);
    if (!b)
        return ag_fail(diag, AG_ENOMEM, "out of memory");
    size_t n = 0;
    b[n++] = 0x0a;
    b[n++] = (uint8_t)lt;
    memcpy(b + n, title, lt);
    n += lt;
    b[n++] = 0x12;
    b[n++] = (uint8_t)lv;
    memcpy(b + n, version, lv);
    n += lv;
    b[n++] = 0x1a;
    b[n++] = (uint8_t)lc;
    memcpy(b + n, commit, lc);
    n += lc;
    *out = b;
    *len = n;
    return 0;
}

int ag_pb_encode_grpc_health(const json_t *result, double time, uint8_t **out, size_t *len,
                             ag_diag_t *diag)
{
    (void)result;
    (void)time;
    out_t o;
    out_init(&o);
    Grpc__Health__V1__HealthCheckResponse m = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    m.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    return pack(&o, &m.base, out, len, diag);
}

int ag_pb_encode_list_collections(const json_t *result, double time, uint8_t **out, size_t *len,
                                  ag_diag_t *diag)
{
    out_t o;
    out_init(&o);
    Qdrant__ListCollectionsResponse m = QDRANT__LIST_COLLECTIONS_RESPONSE__INIT;
    m.time = time;
    const json_t *a = json_object_get(result, "collections");
    size_t n = json_array_size(a);
    m.collections = n ? onew(&o, n * sizeof(*m.collections)) : NULL;
    for (size_t i = 0; m.collections && i < n; i++) {
        Qdrant__CollectionDescription *d =
            NEW(&o, Qdrant__CollectionDescription, qdrant__collection_description__descriptor);
        if (!d)
            break;
        d->name = ostr(&o, json_string_value(json_object_get(json_array_get(a, i), "name")));
        m.collections[m.n_collections++] = d;
    }
    return pack(&o, &m.base, out, len, diag);
}

static Qdrant__Distance distance_pb(const char *s)
{
    if (!s)
        return QDRANT__DISTANCE__UnknownDistance;
    if (strcmp(s, "Cosine") == 0)
        return QDRANT__DISTANCE__Cosine;
    if (strcmp(s, "Euclid") == 0)
        return QDRANT__DISTANCE__Euclid;
    if (strcmp(s, "Dot") == 0)
        return QDRANT__DISTANCE__Dot;
    if (strcmp(s, "Manhattan") == 0)
        return QDRANT__DISTANCE__Manhattan;
    return QDRANT__DISTANCE__UnknownDistance;
}

static Qdrant__VectorParams *vparams_pb(out_t *o, const json_t *j)
{
    Qdrant__VectorParams *p = NEW(o, Qdrant__VectorParams, qdrant__vector_params__descriptor);
    if (p) {
        p->size = (uint64_t)json_integer_value(json_object_get(j, "size"));
        p->distance = distance_pb(json_string_value(json_object_get(j, "distance")));
    }
    return p;
}

static Qdrant__HnswConfigDiff *hnsw_pb(out_t *o, const json_t *j)
{
    Qdrant__HnswConfigDiff *h =
        NEW(o, Qdrant__HnswConfigDiff, qdrant__hnsw_config_diff__descriptor);
    if (!h)
        return NULL;
    const json_t *v;
#define HN(f, C)                                                                                   \
    if ((v = json_object_get(j, #f)) && json_is_integer(v)) {                                      \
        h->_##f##_case = C;                                                                        \
        h->f = (uint64_t)json_integer_value(v);                                                    \
    }
    HN(m, QDRANT__HNSW_CONFIG_DIFF___M_M)
    HN(ef_construct, QDRANT__HNSW_CONFIG_DIFF___EF_CONSTRUCT_EF_CONSTRUCT)
    HN(full_scan_threshold, QDRANT__HNSW_CONFIG_DIFF___FULL_SCAN_THRESHOLD_FULL_SCAN_THRESHOLD)
#undef HN
    return h;
}

int ag_pb_encode_get_collection(const json_t *result, double time, uint8_t **out, size_t *len,
                                ag_diag_t *diag)
{
    out_t o;
    out_init(&o);
    Qdrant__GetCollectionInfoResponse m = QDRANT__GET_COLLECTION_INFO_RESPONSE__INIT;
    m.time = time;
    Qdrant__CollectionInfo *ci = m.result =
        NEW(&o, Qdrant__CollectionInfo, qdrant__collection_info__descriptor);
    if (ci) {
        const char *st = json_string_value(json_object_get(result, "status"));
        ci->status = st && strcmp(st, "yellow") == 0 ? QDRANT__COLLECTION_STATUS__Yellow
                     : st && strcmp(st, "red") == 0  ? QDRANT__COLLECTION_STATUS__Red
                     : st && strcmp(st, "grey") == 0 ? QDRANT__COLLECTION_STATUS__Grey
                                                     : QDRANT__COLLECTION_STATUS__Green;
        ci->optimizer_status =
            NEW(&o, Qdrant__OptimizerStatus, qdrant__optimizer_status__descriptor);
        if (ci->optimizer_status) {
            ci->optimizer_status->ok = true;
            ci->optimizer_status->error = ostr(&o, "");
        }
        ci->segments_count =
            (uint64_t)json_integer_value(json_object_get(result, "segments_count"));
        ci->_points_count_case = QDRANT__COLLECTION_INFO___POINTS_COUNT_POINTS_COUNT;
        ci->points_count = (uint64_t)json_integer_value(json_object_get(result, "points_count"));
        ci->_indexed_vectors_count_case =
            QDRANT__COLLECTION_INFO___INDEXED_VECTORS_COUNT_INDEXED_VECTORS_COUNT;
        ci->indexed_vectors_count =
            (uint64_t)json_integer_value(json_object_get(result, "indexed_vectors_count"));
        const json_t *cfg = json_object_get(result, "config");
        Qdrant__CollectionConfig *cc = ci->config =
            NEW(&o, Qdrant__CollectionConfig, qdrant__collection_config__descriptor);
        if (cc) {
            cc->hnsw_config = hnsw_pb(&o, json_object_get(cfg, "hnsw_config"));
            cc->optimizer_config =
                NEW(&o, Qdrant__OptimizersConfigDiff, qdrant__optimizers_config_diff__descriptor);
            cc->wal_config = NEW(&o, Qdrant__WalConfigDiff, qdrant__wal_config_diff__descriptor);
            Qdrant__CollectionParams *cp = cc->params =
                NEW(&o, Qdrant__CollectionParams, qdrant__collection_params__descriptor);
            const json_t *params = json_object_get(cfg, "params");
            const json_t *vecs = json_object_get(params, "vectors");
            if (cp) {
                cp->shard_number = 1;
                Qdrant__VectorsConfig *vc =
                    NEW(&o, Qdrant__VectorsConfig, qdrant__vectors_config__descriptor);
                if (vc && json_is_object(vecs) && json_object_get(vecs, "size")) {
                    vc->config_case = QDRANT__VECTORS_CONFIG__CONFIG_PARAMS;
                    vc->params = vparams_pb(&o, vecs);
                } else if (vc && json_is_object(vecs)) {
                    vc->config_case = QDRANT__VECTORS_CONFIG__CONFIG_PARAMS_MAP;
                    Qdrant__VectorParamsMap *pm = vc->params_map =
                        NEW(&o, Qdrant__VectorParamsMap, qdrant__vector_params_map__descriptor);
                    size_t n = json_object_size(vecs);
                    if (pm && n)
                        pm->map = onew(&o, n * sizeof(*pm->map));
                    const char *k;
                    json_t *x;
                    json_object_foreach((json_t *)vecs, k, x)
                    {
                        if (!pm || !pm->map)
                            break;
                        Qdrant__VectorParamsMap__MapEntry *e =
                            NEW(&o, Qdrant__VectorParamsMap__MapEntry,
                                qdrant__vector_params_map__map_entry__descriptor);
                        if (!e)
                            break;
                        e->key = ostr(&o, k);
                        e->value = vparams_pb(&o, x);
                        pm->map[pm->n_map++] = e;
                    }
                }
                if (vc && vc->config_case) {
                    cp->_vectors_config_case =
                        QDRANT__COLLECTION_PARAMS___VECTORS_CONFIG_VECTORS_CONFIG;
                    cp->vectors_config = vc;
                }
            }
        }
    }
    return pack(&o, &m.base, out, len, diag);
}

static int op_response(const json_t *result, double time, uint8_t **out, size_t *len,
                       ag_diag_t *diag)
{
    out_t o;
    out_init(&o);
    Qdrant__CollectionOperationResponse m = QDRANT__COLLECTION_OPERATION_RESPONSE__INIT;
    m.time = time;
    m.result = json_is_true(result);
    return pack(&o, &m.base, out, len, diag);
}

int ag_pb_encode_create_collection(const json_t *result, double time, uint8_t **out, size_t *len,
                                   ag_diag_t *diag)
{
    return op_response(result, time, out, len, diag);
}

int ag_pb_encode_delete_collection(const json_t *result, double time, uint8_t **out, size_t *len,
                                   ag_diag_t *diag)
{
    return op_response(result, time, out, len, diag);
}

int ag_pb_encode_collection_exists(const json_t *result, double time, uint8_t **out, size_t *len,
                                   ag_diag_t *diag)
{
    out_t o;
    out_init(&o);
    Qdrant__CollectionExistsResponse m = QDRANT__COLLECTION_EXISTS_RESPONSE__INIT;
    m.time = time;
    m.result = NEW(&o, Qdrant__CollectionExists, qdrant__collection_exists__descriptor);
    if (m.result)
        m.result->exists = json_is_true(json_object_get(result, "exists"));
    return pack(&o, &m.base, out, len, diag);
}

static int update_response(const json_t *result, double time, uint8_t **out, size_t *len,
                           ag_diag_t *diag)
{
    out_t o;
    out_init(&o);
    Qdrant__PointsOperationResponse m = QDRANT__POINTS_OPERATION_RESPONSE__INIT;
    m.time = time;
    Qdrant__UpdateResult *u = m.result =
        NEW(&o, Qdrant__UpdateResult, qdrant__update_result__descriptor);
    if (u) {
        const char *st = json_string_value(json_object_get(result, "status"));
        u->status = st && strcmp(st, "completed") == 0 ? QDRANT__UPDATE_STATUS__Completed
                                                       : QDRANT__UPDATE_STATUS__Acknowledged;
        const json_t *id = json_object_get(result, "operation_id");
        if (json_is_integer(id)) {
            u->_operation_id_case = QDRANT__UPDATE_RESULT___OPERATION_ID_OPERATION_ID;
            u->operation_id = (uint64_t)json_integer_value(id);
        }
    }
    return pack(&o, &m.base, out, len, diag);
}

int ag_pb_encode_upsert(const json_t *result, double time, uint8_t **out, size_t *len,
                        ag_diag_t *diag)
{
    return update_response(result, time, out, len, diag);
}

int ag_pb_encode_delete_points(const json_t *result, double time, uint8_t **out, size_t *len,
                               ag_diag_t *diag)
{
    return update_response(result, time, out, len, diag);
}

int ag_pb_encode_search(const json_t *result, double time, uint8_t **out, size_t *len,
                        ag_diag_t *diag)
{
    out_t o;
    out_init(&o);
    Qdrant__SearchResponse m = QDRANT__SEARCH_RESPONSE__INIT;
    m.time = time;
    m.result = scored_list(&o, result, &m.n_result);
    return pack(&o, &m.base, out, len, diag);
}

int ag_pb_encode_query(const json_t *result, double time, uint8_t **out, size_t *len,
                       ag_diag_t *diag)
{
    out_t o;
    out_init(&o);
    Qdrant__QueryResponse m = QDRANT__QUERY_RESPONSE__INIT;
    m.time = time;
    m.result = scored_list(&o, json_object_get(result, "points"), &m.n_result);
    return pack(&o, &m.base, out, len, diag);
}

int ag_pb_encode_scroll(const json_t *result, double time, uint8_t **out, size_t *len,
                        ag_diag_t *diag)
{
    out_t o;
    out_init(&o);
    Qdrant__ScrollResponse m = QDRANT__SCROLL_RESPONSE__INIT;
    m.time = time;
    m.result = retrieved_list(&o, json_object_get(result, "points"), &m.n_result);
    const json_t *next = json_object_get(result, "next_page_offset");
    if (next && !json_is_null(next)) {
        m._next_page_offset_case = QDRANT__SCROLL_RESPONSE___NEXT_PAGE_OFFSET_NEXT_PAGE_OFFSET;
        m.next_page_offset = id_pb(&o, next);
    }
    return pack(&o, &m.base, out, len, diag);
}

int ag_pb_encode_get_points(const json_t *result, double time, uint8_t **out, size_t *len,
                            ag_diag_t *diag)
{
    out_t o;
    out_init(&o);
    Qdrant__GetResponse m = QDRANT__GET_RESPONSE__INIT;
    m.time = time;
    m.result = retrieved_list(&o, result, &m.n_result);
    return pack(&o, &m.base, out, len, diag);
}

int ag_pb_encode_count(const json_t *result, double time, uint8_t **out, size_t *len,
                       ag_diag_t *diag)
{
    out_t o;
    out_init(&o);
    Qdrant__CountResponse m = QDRANT__COUNT_RESPONSE__INIT;
    m.time = time;
    m.result = NEW(&o, Qdrant__CountResult, qdrant__count_result__descriptor);
    if (m.result)
        m.result->count = (uint64_t)json_integer_value(json_object_get(result, "count"));
    return pack(&o, &m.base, out, len, diag);
}

#define UPDATE_ENCODER(name)                                                                       \
    int ag_pb_encode_##name(const json_t *result, double time, uint8_t **out, size_t *len,         \
                            ag_diag_t *diag)                                                       \
    {                                                                                              \
        return update_response(result, time, out, len, diag);                                      \
    }
UPDATE_ENCODER(set_payload)
UPDATE_ENCODER(overwrite_payload)
UPDATE_ENCODER(delete_payload)
UPDATE_ENCODER(clear_payload)
UPDATE_ENCODER(create_field_index)

int ag_pb_encode_update_aliases(const json_t *result, double time, uint8_t **out, size_t *len,
                                ag_diag_t *diag)
{
    return op_response(result, time, out, len, diag);
}

static int aliases_response(const json_t *result, double time, uint8_t **out, size_t *len,
                            ag_diag_t *diag)
{
    out_t o;
    out_init(&o);
    Qdrant__ListAliasesResponse m = QDRANT__LIST_ALIASES_RESPONSE__INIT;
    m.time = time;
    const json_t *a = json_object_get(result, "aliases");
    size_t n = json_array_size(a);
    m.aliases = n ? onew(&o, n * sizeof(*m.aliases)) : NULL;
    for (size_t i = 0; m.aliases && i < n; i++) {
        Qdrant__AliasDescription *d =
            NEW(&o, Qdrant__AliasDescription, qdrant__alias_description__descriptor);
        if (!d)
            break;
        const json_t *x = json_array_get(a, i);
        d->alias_name = ostr(&o, json_string_value(json_object_get(x, "alias_name")));
        d->collection_name = ostr(&o, json_string_value(json_object_get(x, "collection_name")));
        m.aliases[m.n_aliases++] = d;
    }
    return pack(&o, &m.base, out, len, diag);
}

int ag_pb_encode_list_aliases(const json_t *result, double time, uint8_t **out, size_t *len,
                              ag_diag_t *diag)
{
    return aliases_response(result, time, out, len, diag);
}

int ag_pb_encode_list_collection_aliases(const json_t *result, double time, uint8_t **out,
                                         size_t *len, ag_diag_t *diag)
{
    return aliases_response(result, time, out, len, diag);
}

int ag_pb_encode_update_batch(const json_t *result, double time, uint8_t **out, size_t *len,
                              ag_diag_t *diag)
{
    out_t o;
    out_init(&o);
    Qdrant__UpdateBatchResponse m = QDRANT__UPDATE_BATCH_RESPONSE__INIT;
    m.time = time;
    size_t n = json_array_size(result);
    m.result = n ? onew(&o, n * sizeof(*m.result)) : NULL;
    for (size_t i = 0; m.result && i < n; i++) {
        const json_t *x = json_array_get(result, i);
        Qdrant__UpdateResult *u = NEW(&o, Qdrant__UpdateResult, qdrant__update_result__descriptor);
        if (!u)
            break;
        const char *st = json_string_value(json_object_get(x, "status"));
        u->status = st && strcmp(st, "completed") == 0 ? QDRANT__UPDATE_STATUS__Completed
                                                       : QDRANT__UPDATE_STATUS__Acknowledged;
        const json_t *id = json_object_get(x, "operation_id");
        if (json_is_integer(id)) {
            u->_operation_id_case = QDRANT__UPDATE_RESULT___OPERATION_ID_OPERATION_ID;
            u->operation_id = (uint64_t)json_integer_value(id);
        }
        m.result[m.n_result++] = u;
    }
    return pack(&o, &m.base, out, len, diag);
}
