/* Unit tests for the gRPC conversions (src/api/ag_pbjson.c): protobuf request messages built
 * here with protobuf-c become the REST bodies written out below; unsupported fields are refused
 * by name; every truncation of a valid message is refused or decoded, never read out of bounds;
 * results encode into messages that unpack to what went in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "api/ag_pbjson.h"
#include "collections.pb-c.h"
#include "points.pb-c.h"
#include "json/ag_json.h"

/* The deprecated flat multivector fields (data, vectors_count) are tested on purpose. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

/* Packs m into a new buffer (caller frees). */
static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*len ? *len : 1);
    assert_non_null(b);
    protobuf_c_message_pack(m, b);
    return b;
}

static void assert_json(const json_t *got, const char *want_text)
{
    json_t *want = json_loads(want_text, 0, NULL);
    assert_non_null(want);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT);
        char *w = json_dumps(want, JSON_SORT_KEYS | JSON_COMPACT);
        print_error("got  %s\nwant %s\n", g, w);
        free(g);
        free(w);
        fail();
    }
    json_decref(want);
}

/* ---- requests ------------------------------------------------------------------------------ */

static void test_upsert(void **state)
{
    (void)state;
    float v1[] = {1.0f, 0.5f};
    Qdrant__DenseVector d1 = QDRANT__DENSE_VECTOR__INIT;
    d1.n_data = 2;
    d1.data = v1;
    Qdrant__Vector vec = QDRANT__VECTOR__INIT;
    vec.vector_case = QDRANT__VECTOR__VECTOR_DENSE;
    vec.dense = &d1;
    Qdrant__Vectors vs = QDRANT__VECTORS__INIT;
    vs.vectors_options_case = QDRANT__VECTORS__VECTORS_OPTIONS_VECTOR;
    vs.vector = &vec;

    Qdrant__Value vi = QDRANT__VALUE__INIT, vs_ = QDRANT__VALUE__INIT, vn = QDRANT__VALUE__INIT;
    vi.kind_case = QDRANT__VALUE__KIND_INTEGER_VALUE;
    vi.integer_value = 7;
    vs_.kind_case = QDRANT__VALUE__KIND_STRING_VALUE;
    vs_.string_value = "acme";
    vn.kind_case = QDRANT__VALUE__KIND_NULL_VALUE;
    Qdrant__Value *items[] = {&vi, &vn};
    Qdrant__ListValue lv = QDRANT__LIST_VALUE__INIT;
    lv.n_values = 2;
    lv.values = items;
    Qdrant__Value vl = QDRANT__VALUE__INIT;
    vl.kind_case = QDRANT__VALUE__KIND_LIST_VALUE;
    vl.list_value = &lv;
    Qdrant__PointStruct__PayloadEntry e1 = QDRANT__POINT_STRUCT__PAYLOAD_ENTRY__INIT;
    Qdrant__PointStruct__PayloadEntry e2 = QDRANT__POINT_STRUCT__PAYLOAD_ENTRY__INIT;
    e1.key = "tenant";
    e1.value = &vs_;
    e2.key = "list";
    e2.value = &vl;
    Qdrant__PointStruct__PayloadEntry *pl[] = {&e1, &e2};

    Qdrant__PointId id1 = QDRANT__POINT_ID__INIT, id2 = QDRANT__POINT_ID__INIT;
    id1.point_id_options_case = QDRANT__POINT_ID__POINT_ID_OPTIONS_NUM;
    id1.num = 18446744073709551000ull; /* above INT64_MAX */
    id2.point_id_options_case = QDRANT__POINT_ID__POINT_ID_OPTIONS_UUID;
    id2.uuid = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26";
    Qdrant__PointStruct p1 = QDRANT__POINT_STRUCT__INIT, p2 = QDRANT__POINT_STRUCT__INIT;
    p1.id = &id1;
    p1._vectors_case = QDRANT__POINT_STRUCT___VECTORS_VECTORS;
    p1.vectors = &vs;
    p1.n_payload = 2;
    p1.payload = pl;
    p2.id = &id2;
    Qdrant__PointStruct *pts[] = {&p1, &p2};
    Qdrant__UpsertPoints m = QDRANT__UPSERT_POINTS__INIT;
    m.collection_name = "c1";
    m.n_points = 2;
    m.points = pts;
    m._wait_case = QDRANT__UPSERT_POINTS___WAIT_WAIT;
    m.wait = true;

    size_t len;
    uint8_t *b = pack(&m.base, &len);
    ag_pb_req_t r = {0};
    ag_diag_t d = {{0}};
    assert_int_equal(ag_pb_decode_upsert(b, len, &r, &d), 0);
    assert_string_equal(r.collection, "c1");
    assert_true(r.wait);
    /* The u64 id is jansson's marker string, rendered back as a bare integer. */
    char *text = ag_json_render(r.body);
    assert_non_null(strstr(text, "\"id\":18446744073709551000"));
    free(text);
    json_object_set_new(json_array_get(json_object_get(r.body, "points"), 0), "id",
                        json_integer(1));
    assert_json(r.body, "{\"points\":[{\"id\":1,\"vector\":[1.0,0.5],"
                        "\"payload\":{\"tenant\":\"acme\",\"list\":[7,null]}},"
                        "{\"id\":\"5c56c793-69f3-4fbf-87e6-c4bf54c28c26\"}]}");
    ag_pb_req_release(&r);

    /* Every truncation is refused or decodes; none reads past the end (ASan). */
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, b, n);
        ag_pb_req_t t = {0};
        ag_diag_t td = {{0}};
        int rc = ag_pb_decode_upsert(cut, n, &t, &td);
        assert_true(rc == 0 || rc == AG_EINVAL);
        if (rc)
            assert_true(td.msg[0] != '\0');
        ag_pb_req_release(&t);
        free(cut);
    }
    free(b);
}

static void test_search_filter(void **state)
{
    (void)state;
    Qdrant__Match mt = QDRANT__MATCH__INIT;
    mt.match_value_case = QDRANT__MATCH__MATCH_VALUE_KEYWORD;
    mt.keyword = "acme";
    Qdrant__FieldCondition f1 = QDRANT__FIELD_CONDITION__INIT;
    f1.key = "tenant";
    f1.match = &mt;
    Qdrant__Range rg = QDRANT__RANGE__INIT;
    rg._gte_case = QDRANT__RANGE___GTE_GTE;
    rg.gte = 2;
    Qdrant__FieldCondition f2 = QDRANT__FIELD_CONDITION__INIT;
    f2.key = "n";
    f2.range = &rg;
    Qdrant__Condition c1 = QDRANT__CONDITION__INIT, c2 = QDRANT__CONDITION__INIT,
                      c3 = QDRANT__CONDITION__INIT;
    c1.condition_one_of_case = QDRANT__CONDITION__CONDITION_ONE_OF_FIELD;
    c1.field = &f1;
    c2.condition_one_of_case = QDRANT__CONDITION__CONDITION_ONE_OF_FIELD;
    c2.field = &f2;
    Qdrant__IsEmptyCondition ie = QDRANT__IS_EMPTY_CONDITION__INIT;
    ie.key = "tags";
    c3.condition_one_of_case = QDRANT__CONDITION__CONDITION_ONE_OF_IS_EMPTY;
    c3.is_empty = &ie;
    Qdrant__Condition *must[] = {&c1, &c2}, *mustnot[] = {&c3};
    Qdrant__Filter flt = QDRANT__FILTER__INIT;
    flt.n_must = 2;
    flt.must = must;
    flt.n_must_not = 1;
    flt.must_not = mustnot;
    Qdrant__WithPayloadSelector wp = QDRANT__WITH_PAYLOAD_SELECTOR__INIT;
    wp.selector_options_case = QDRANT__WITH_PAYLOAD_SELECTOR__SELECTOR_OPTIONS_ENABLE;
    wp.enable = true;
    float q[] = {0.0f, 1.0f};
    Qdrant__SearchPoints m = QDRANT__SEARCH_POINTS__INIT;
    m.collection_name = "c1";
    m.n_vector = 2;
    m.vector = q;
    m.limit = 5;
    m.filter = &flt;
    m.with_payload = &wp;
    m._vector_name_case = QDRANT__SEARCH_POINTS___VECTOR_NAME_VECTOR_NAME;
    m.vector_name = "img";
    size_t len;
    uint8_t *b = pack(&m.base, &len);
    ag_pb_req_t r = {0};
    ag_diag_t d = {{0}};
    assert_int_equal(ag_pb_decode_search(b, len, &r, &d), 0);
    assert_json(r.body, "{\"vector\":{\"name\":\"img\",\"vector\":[0.0,1.0]},\"limit\":5,"
                        "\"with_payload\":true,\"filter\":{"
                        "\"must\":[{\"key\":\"tenant\",\"match\":{\"value\":\"acme\"}},"
                        "{\"key\":\"n\",\"range\":{\"gte\":2.0}}],"
                        "\"must_not\":[{\"is_empty\":{\"key\":\"tags\"}}]}}");
    ag_pb_req_release(&r);
    free(b);

    /* A geo condition is refused by name, not dropped. */
    Qdrant__GeoRadius geo = QDRANT__GEO_RADIUS__INIT;
    f2.range = NULL;
    f2.geo_radius = &geo;
    b = pack(&m.base, &len);
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_pb_decode_search(b, len, &r, &d), AG_EINVAL);
    assert_non_null(strstr(d.msg, "geo"));
    ag_pb_req_release(&r);
    free(b);
}

static void test_refusals(void **state)
{
    (void)state;
    /* Not protobuf at all. */
    static const uint8_t junk[] = {0x0a, 0x32, 'a', 'b'};
    ag_pb_req_t r = {0};
    ag_diag_t d = {{0}};
    assert_int_equal(ag_pb_decode_count(junk, sizeof(junk), &r, &d), AG_EINVAL);
    assert_non_null(strstr(d.msg, "malformed"));
    ag_pb_req_release(&r);

    /* A formula query is refused naming the feature. */
    Qdrant__Formula fo = QDRANT__FORMULA__INIT;
    Qdrant__Query qq = QDRANT__QUERY__INIT;
    qq.variant_case = QDRANT__QUERY__VARIANT_FORMULA;
    qq.formula = &fo;
    Qdrant__QueryPoints m = QDRANT__QUERY_POINTS__INIT;
    m.collection_name = "c1";
    m._query_case = QDRANT__QUERY_POINTS___QUERY_QUERY;
    m.query = &qq;
    size_t len;
    uint8_t *b = pack(&m.base, &len);
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_pb_decode_query(b, len, &r, &d), AG_EINVAL);
    assert_non_null(strstr(d.msg, "formula"));
    ag_pb_req_release(&r);
    free(b);

    /* Delete without a selector. */
    Qdrant__DeletePoints dp = QDRANT__DELETE_POINTS__INIT;
    dp.collection_name = "c1";
    b = pack(&dp.base, &len);
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_pb_decode_delete_points(b, len, &r, &d), AG_EINVAL);
    assert_non_null(strstr(d.msg, "points"));
    ag_pb_req_release(&r);
    free(b);
}

/* Prefetches fused by RRF, a recommend and an order_by stage: the REST query body. */
static void test_query_stages(void **state)
{
    (void)state;
    float v[] = {1.0f, 0.0f};
    Qdrant__DenseVector dv = QDRANT__DENSE_VECTOR__INIT;
    dv.n_data = 2;
    dv.data = v;
    Qdrant__VectorInput vin = QDRANT__VECTOR_INPUT__INIT;
    vin.variant_case = QDRANT__VECTOR_INPUT__VARIANT_DENSE;
    vin.dense = &dv;
    Qdrant__PointId pid = QDRANT__POINT_ID__INIT;
    pid.point_id_options_case = QDRANT__POINT_ID__POINT_ID_OPTIONS_NUM;
    pid.num = 7;
    Qdrant__VectorInput idin = QDRANT__VECTOR_INPUT__INIT;
    idin.variant_case = QDRANT__VECTOR_INPUT__VARIANT_ID;
    idin.id = &pid;
    Qdrant__VectorInput *pos[] = {&idin}, *neg[] = {&vin};
    Qdrant__RecommendInput ri = QDRANT__RECOMMEND_INPUT__INIT;
    ri.n_positive = 1;
    ri.positive = pos;
    ri.n_negative = 1;
    ri.negative = neg;
    ri._strategy_case = QDRANT__RECOMMEND_INPUT___STRATEGY_STRATEGY;
    ri.strategy = QDRANT__RECOMMEND_STRATEGY__BestScore;
    Qdrant__Query q1 = QDRANT__QUERY__INIT, q2 = QDRANT__QUERY__INIT, top = QDRANT__QUERY__INIT;
    q1.variant_case = QDRANT__QUERY__VARIANT_NEAREST;
    q1.nearest = &vin;
    q2.variant_case = QDRANT__QUERY__VARIANT_RECOMMEND;
    q2.recommend = &ri;
    top.variant_case = QDRANT__QUERY__VARIANT_FUSION;
    top.fusion = QDRANT__FUSION__RRF;
    Qdrant__PrefetchQuery p1 = QDRANT__PREFETCH_QUERY__INIT, p2 = QDRANT__PREFETCH_QUERY__INIT;
    p1._query_case = QDRANT__PREFETCH_QUERY___QUERY_QUERY;
    p1.query = &q1;
    p1._limit_case = QDRANT__PREFETCH_QUERY___LIMIT_LIMIT;
    p1.limit = 20;
    p2._query_case = QDRANT__PREFETCH_QUERY___QUERY_QUERY;
    p2.query = &q2;
    p2._using_case = QDRANT__PREFETCH_QUERY___USING_USING;
    p2.using_ = "img";
    Qdrant__PrefetchQuery *pf[] = {&p1, &p2};
    Qdrant__QueryPoints m = QDRANT__QUERY_POINTS__INIT;
    m.collection_name = "c1";
    m.n_prefetch = 2;
    m.prefetch = pf;
    m._query_case = QDRANT__QUERY_POINTS___QUERY_QUERY;
    m.query = &top;
    m._limit_case = QDRANT__QUERY_POINTS___LIMIT_LIMIT;
    m.limit = 5;
    size_t len;
    uint8_t *b = pack(&m.base, &len);
    ag_pb_req_t r = {0};
    ag_diag_t d = {{0}};
    assert_int_equal(ag_pb_decode_query(b, len, &r, &d), 0);
    assert_json(r.body, "{\"prefetch\":[{\"query\":{\"nearest\":[1.0,0.0]},\"limit\":20},"
                        "{\"query\":{\"recommend\":{\"positive\":[7],\"negative\":[[1.0,0.0]],"
                        "\"strategy\":\"best_score\"}},\"using\":\"img\"}],"
                        "\"query\":{\"fusion\":\"rrf\"},\"limit\":5}");
    ag_pb_req_release(&r);
    free(b);

    /* order_by with a direction and a start. */
    Qdrant__StartFrom sf = QDRANT__START_FROM__INIT;
    sf.value_case = QDRANT__START_FROM__VALUE_INTEGER;
    sf.integer = 3;
    Qdrant__OrderBy ob = QDRANT__ORDER_BY__INIT;
    ob.key = "n";
    ob._direction_case = QDRANT__ORDER_BY___DIRECTION_DIRECTION;
    ob.direction = QDRANT__DIRECTION__Desc;
    ob._start_from_case = QDRANT__ORDER_BY___START_FROM_START_FROM;
    ob.start_from = &sf;
    top.variant_case = QDRANT__QUERY__VARIANT_ORDER_BY;
    top.order_by = &ob;
    m.n_prefetch = 0;
    b = pack(&m.base, &len);
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_pb_decode_query(b, len, &r, &d), 0);
    assert_json(r.body, "{\"query\":{\"order_by\":{\"key\":\"n\",\"direction\":\"desc\","
                        "\"start_from\":3}},\"limit\":5}");
    ag_pb_req_release(&r);
    free(b);
}

/* Multivectors and datatypes both ways (docs/API.md "gRPC"). */
static void test_multivector(void **state)
{
    (void)state;
    float r1[] = {1.0f, 0.0f}, r2[] = {0.0f, 1.0f};
    Qdrant__DenseVector d1 = QDRANT__DENSE_VECTOR__INIT, d2 = QDRANT__DENSE_VECTOR__INIT;
    d1.n_data = d2.n_data = 2;
    d1.data = r1;
    d2.data = r2;
    Qdrant__DenseVector *rows[] = {&d1, &d2};
    Qdrant__MultiDenseVector mdv = QDRANT__MULTI_DENSE_VECTOR__INIT;
    mdv.n_vectors = 2;
    mdv.vectors = rows;

    /* A query input. */
    Qdrant__VectorInput mvi = QDRANT__VECTOR_INPUT__INIT;
    mvi.variant_case = QDRANT__VECTOR_INPUT__VARIANT_MULTI_DENSE;
    mvi.multi_dense = &mdv;
    Qdrant__Query qq = QDRANT__QUERY__INIT;
    qq.variant_case = QDRANT__QUERY__VARIANT_NEAREST;
    qq.nearest = &mvi;
    Qdrant__QueryPoints m = QDRANT__QUERY_POINTS__INIT;
    m.collection_name = "c1";
    m._query_case = QDRANT__QUERY_POINTS___QUERY_QUERY;
    m.query = &qq;
    size_t len;
    uint8_t *b = pack(&m.base, &len);
    ag_pb_req_t r = {0};
    ag_diag_t d = {{0}};
    assert_int_equal(ag_pb_decode_query(b, len, &r, &d), 0);
    assert_json(json_object_get(r.body, "query"), "{\"nearest\":[[1.0,0.0],[0.0,1.0]]}");
    ag_pb_req_release(&r);
    free(b);

    /* Upserted points: multi_dense, and the deprecated flat form with vectors_count. */
    Qdrant__Vector vec = QDRANT__VECTOR__INIT, flat = QDRANT__VECTOR__INIT;
    vec.vector_case = QDRANT__VECTOR__VECTOR_MULTI_DENSE;
    vec.multi_dense = &mdv;
    float f[] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
    flat.n_data = 6;
    flat.data = f;
    flat._vectors_count_case = QDRANT__VECTOR___VECTORS_COUNT_VECTORS_COUNT;
    flat.vectors_count = 3;
    Qdrant__Vectors vs1 = QDRANT__VECTORS__INIT, vs2 = QDRANT__VECTORS__INIT;
    vs1.vectors_options_case = vs2.vectors_options_case = QDRANT__VECTORS__VECTORS_OPTIONS_VECTOR;
    vs1.vector = &vec;
    vs2.vector = &flat;
    Qdrant__PointId id1 = QDRANT__POINT_ID__INIT, id2 = QDRANT__POINT_ID__INIT;
    id1.point_id_options_case = id2.point_id_options_case = QDRANT__POINT_ID__POINT_ID_OPTIONS_NUM;
    id1.num = 1;
    id2.num = 2;
    Qdrant__PointStruct p1 = QDRANT__POINT_STRUCT__INIT, p2 = QDRANT__POINT_STRUCT__INIT;
    p1.id = &id1;
    p2.id = &id2;
    p1._vectors_case = p2._vectors_case = QDRANT__POINT_STRUCT___VECTORS_VECTORS;
    p1.vectors = &vs1;
    p2.vectors = &vs2;
    Qdrant__PointStruct *pts[] = {&p1, &p2};
    Qdrant__UpsertPoints up = QDRANT__UPSERT_POINTS__INIT;
    up.collection_name = "c1";
    up.n_points = 2;
    up.points = pts;
    b = pack(&up.base, &len);
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_pb_decode_upsert(b, len, &r, &d), 0);
    assert_json(r.body, "{\"points\":[{\"id\":1,\"vector\":[[1.0,0.0],[0.0,1.0]]},"
                        "{\"id\":2,\"vector\":[[1.0,2.0],[3.0,4.0],[5.0,6.0]]}]}");
    ag_pb_req_release(&r);
    free(b);
    /* A row count that does not divide the values is refused naming it. */
    flat.vectors_count = 4;
    b = pack(&up.base, &len);
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_pb_decode_upsert(b, len, &r, &d), AG_EINVAL);
    assert_non_null(strstr(d.msg, "vectors_count"));
    ag_pb_req_release(&r);
    free(b);

    /* Collection creation: multivector_config and datatype; Turbo4 refused by name. */
    Qdrant__MultiVectorConfig mc = QDRANT__MULTI_VECTOR_CONFIG__INIT;
    Qdrant__VectorParams vp = QDRANT__VECTOR_PARAMS__INIT;
    vp.size = 2;
    vp.distance = QDRANT__DISTANCE__Dot;
    vp._multivector_config_case = QDRANT__VECTOR_PARAMS___MULTIVECTOR_CONFIG_MULTIVECTOR_CONFIG;
    vp.multivector_config = &mc;
    vp._datatype_case = QDRANT__VECTOR_PARAMS___DATATYPE_DATATYPE;
    vp.datatype = QDRANT__DATATYPE__Float16;
    Qdrant__VectorsConfig vc = QDRANT__VECTORS_CONFIG__INIT;
    vc.config_case = QDRANT__VECTORS_CONFIG__CONFIG_PARAMS;
    vc.params = &vp;
    Qdrant__CreateCollection cc = QDRANT__CREATE_COLLECTION__INIT;
    cc.collection_name = "c1";
    cc._vectors_config_case = QDRANT__CREATE_COLLECTION___VECTORS_CONFIG_VECTORS_CONFIG;
    cc.vectors_config = &vc;
    b = pack(&cc.base, &len);
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_pb_decode_create_collection(b, len, &r, &d), 0);
    assert_json(json_object_get(r.body, "vectors"),
                "{\"size\":2,\"distance\":\"Dot\",\"datatype\":\"float16\","
                "\"multivector_config\":{\"comparator\":\"max_sim\"}}");
    ag_pb_req_release(&r);
    free(b);
    vp.datatype = QDRANT__DATATYPE__Turbo4;
    b = pack(&cc.base, &len);
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_pb_decode_create_collection(b, len, &r, &d), AG_EINVAL);
    assert_non_null(strstr(d.msg, "Turbo4"));
    ag_pb_req_release(&r);
    free(b);

    /* Answers: a multivector in multi_dense and the deprecated flat fields. */
    json_t *res = json_loads("[{\"id\":3,\"score\":1.5,\"vector\":[[1,2],[3,4]]}]", 0, NULL);
    uint8_t *out = NULL;
    assert_int_equal(ag_pb_encode_search(res, 0, &out, &len, &d), 0);
    Qdrant__SearchResponse *sr = qdrant__search_response__unpack(NULL, len, out);
    assert_non_null(sr);
    Qdrant__VectorOutput *v = sr->result[0]->vectors->vector;
    assert_int_equal(v->vector_case, QDRANT__VECTOR_OUTPUT__VECTOR_MULTI_DENSE);
    assert_int_equal(v->multi_dense->n_vectors, 2);
    assert_true(v->multi_dense->vectors[1]->data[0] == 3.0f);
    assert_int_equal(v->n_data, 4);
    assert_int_equal(v->vectors_count, 2);
    qdrant__search_response__free_unpacked(sr, NULL);
    free(out);
    json_decref(res);

    /* Collection info: datatype and multivector_config echoed. */
    res = json_loads("{\"status\":\"green\",\"config\":{\"params\":{\"vectors\":{\"mv\":"
                     "{\"size\":2,\"distance\":\"Dot\",\"datatype\":\"uint8\","
                     "\"multivector_config\":{\"comparator\":\"max_sim\"}}}}}}",
                     0, NULL);
    assert_int_equal(ag_pb_encode_get_collection(res, 0, &out, &len, &d), 0);
    Qdrant__GetCollectionInfoResponse *gi =
        qdrant__get_collection_info_response__unpack(NULL, len, out);
    assert_non_null(gi);
    Qdrant__VectorParams *gp =
        gi->result->config->params->vectors_config->params_map->map[0]->value;
    assert_int_equal(gp->datatype, QDRANT__DATATYPE__Uint8);
    assert_int_equal(gp->_multivector_config_case,
                     QDRANT__VECTOR_PARAMS___MULTIVECTOR_CONFIG_MULTIVECTOR_CONFIG);
    qdrant__get_collection_info_response__free_unpacked(gi, NULL);
    free(out);
    json_decref(res);
}

/* quantization_config (scalar int8; other methods refused by name) and search quantization. */
static void test_quantization(void **state)
{
    (void)state;
    Qdrant__ScalarQuantization sq = QDRANT__SCALAR_QUANTIZATION__INIT;
    sq.type = QDRANT__QUANTIZATION_TYPE__Int8;
    sq._quantile_case = QDRANT__SCALAR_QUANTIZATION___QUANTILE_QUANTILE;
    sq.quantile = 0.5f;
    sq._always_ram_case = QDRANT__SCALAR_QUANTIZATION___ALWAYS_RAM_ALWAYS_RAM;
    sq.always_ram = true;
    Qdrant__QuantizationConfig qc = QDRANT__QUANTIZATION_CONFIG__INIT;
    qc.quantization_case = QDRANT__QUANTIZATION_CONFIG__QUANTIZATION_SCALAR;
    qc.scalar = &sq;
    Qdrant__BinaryQuantization bq = QDRANT__BINARY_QUANTIZATION__INIT;
    Qdrant__QuantizationConfig qb = QDRANT__QUANTIZATION_CONFIG__INIT;
    qb.quantization_case = QDRANT__QUANTIZATION_CONFIG__QUANTIZATION_BINARY;
    qb.binary = &bq;
    Qdrant__VectorParams vp = QDRANT__VECTOR_PARAMS__INIT;
    vp.size = 4;
    vp.distance = QDRANT__DISTANCE__Cosine;
    Qdrant__VectorsConfig vc = QDRANT__VECTORS_CONFIG__INIT;
    vc.config_case = QDRANT__VECTORS_CONFIG__CONFIG_PARAMS;
    vc.params = &vp;
    Qdrant__CreateCollection cc = QDRANT__CREATE_COLLECTION__INIT;
    cc.collection_name = "c1";
    cc._vectors_config_case = QDRANT__CREATE_COLLECTION___VECTORS_CONFIG_VECTORS_CONFIG;
    cc.vectors_config = &vc;
    cc._quantization_config_case =
        QDRANT__CREATE_COLLECTION___QUANTIZATION_CONFIG_QUANTIZATION_CONFIG;
    cc.quantization_config = &qc;
    size_t len;
    uint8_t *b = pack(&cc.base, &len);
    ag_pb_req_t r = {0};
    ag_diag_t d = {{0}};
    assert_int_equal(ag_pb_decode_create_collection(b, len, &r, &d), 0);
    assert_json(json_object_get(r.body, "quantization_config"),
                "{\"scalar\":{\"type\":\"int8\",\"quantile\":0.5,\"always_ram\":true}}");
    ag_pb_req_release(&r);
    free(b);
    /* Binary on the vector: the REST object, encodings by name (the REST checks judge them). */
    vp._quantization_config_case = QDRANT__VECTOR_PARAMS___QUANTIZATION_CONFIG_QUANTIZATION_CONFIG;
    vp.quantization_config = &qb;
    bq._always_ram_case = QDRANT__BINARY_QUANTIZATION___ALWAYS_RAM_ALWAYS_RAM;
    bq.always_ram = true;
    bq._encoding_case = QDRANT__BINARY_QUANTIZATION___ENCODING_ENCODING;
    bq.encoding = QDRANT__BINARY_QUANTIZATION_ENCODING__TwoBits;
    b = pack(&cc.base, &len);
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_pb_decode_create_collection(b, len, &r, &d), 0);
    assert_json(json_object_get(json_object_get(r.body, "vectors"), "quantization_config"),
                "{\"binary\":{\"always_ram\":true,\"encoding\":\"two_bits\"}}");
    ag_pb_req_release(&r);
    free(b);
    /* an encoding value the proto does not define: refused naming it */
    bq.encoding = (Qdrant__BinaryQuantizationEncoding)9;
    b = pack(&cc.base, &len);
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_pb_decode_create_collection(b, len, &r, &d), AG_EINVAL);
    assert_non_null(strstr(d.msg, "binary.encoding"));
    ag_pb_req_release(&r);
    free(b);

    /* Update: Disabled on a vector diff, scalar on the collection. */
    Qdrant__Disabled dis = QDRANT__DISABLED__INIT;
    Qdrant__QuantizationConfigDiff qd = QDRANT__QUANTIZATION_CONFIG_DIFF__INIT;
    qd.quantization_case = QDRANT__QUANTIZATION_CONFIG_DIFF__QUANTIZATION_DISABLED;
    qd.disabled = &dis;
    Qdrant__QuantizationConfigDiff qs = QDRANT__QUANTIZATION_CONFIG_DIFF__INIT;
    qs.quantization_case = QDRANT__QUANTIZATION_CONFIG_DIFF__QUANTIZATION_SCALAR;
    qs.scalar = &sq;
    Qdrant__VectorParamsDiff vd = QDRANT__VECTOR_PARAMS_DIFF__INIT;
    vd._quantization_config_case =
        QDRANT__VECTOR_PARAMS_DIFF___QUANTIZATION_CONFIG_QUANTIZATION_CONFIG;
    vd.quantization_config = &qd;
    Qdrant__VectorsConfigDiff vcd = QDRANT__VECTORS_CONFIG_DIFF__INIT;
    vcd.config_case = QDRANT__VECTORS_CONFIG_DIFF__CONFIG_PARAMS;
    vcd.params = &vd;
    Qdrant__UpdateCollection uc = QDRANT__UPDATE_COLLECTION__INIT;
    uc.collection_name = "c1";
    uc._vectors_config_case = QDRANT__UPDATE_COLLECTION___VECTORS_CONFIG_VECTORS_CONFIG;
    uc.vectors_config = &vcd;
    uc._quantization_config_case =
        QDRANT__UPDATE_COLLECTION___QUANTIZATION_CONFIG_QUANTIZATION_CONFIG;
    uc.quantization_config = &qs;
    b = pack(&uc.base, &len);
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_pb_decode_update_collection(b, len, &r, &d), 0);
    assert_json(r.body, "{\"quantization_config\":{\"scalar\":{\"type\":\"int8\",\"quantile\":0.5,"
                        "\"always_ram\":true}},\"vectors\":{\"\":{\"quantization_config\":"
                        "\"Disabled\"}}}");
    ag_pb_req_release(&r);
    free(b);

    /* Search params. */
    Qdrant__QuantizationSearchParams qsp = QDRANT__QUANTIZATION_SEARCH_PARAMS__INIT;
    qsp._rescore_case = QDRANT__QUANTIZATION_SEARCH_PARAMS___RESCORE_RESCORE;
    qsp.rescore = false;
    qsp._oversampling_case = QDRANT__QUANTIZATION_SEARCH_PARAMS___OVERSAMPLING_OVERSAMPLING;
    qsp.oversampling = 2.0;
    Qdrant__SearchParams sp = QDRANT__SEARCH_PARAMS__INIT;
    sp._quantization_case = QDRANT__SEARCH_PARAMS___QUANTIZATION_QUANTIZATION;
    sp.quantization = &qsp;
    Qdrant__QueryPoints qp = QDRANT__QUERY_POINTS__INIT;
    qp.collection_name = "c1";
    qp._params_case = QDRANT__QUERY_POINTS___PARAMS_PARAMS;
    qp.params = &sp;
    b = pack(&qp.base, &len);
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_pb_decode_query(b, len, &r, &d), 0);
    assert_json(json_object_get(r.body, "params"),
                "{\"quantization\":{\"rescore\":false,\"oversampling\":2.0}}");
    ag_pb_req_release(&r);
    free(b);

    /* Collection info echoes the collection's and a vector's setting. */
    json_t *res = json_loads(
        "{\"status\":\"green\",\"config\":{\"quantization_config\":{\"scalar\":{\"type\":\"int8\","
        "\"quantile\":0.5}},\"params\":{\"vectors\":{\"size\":4,\"distance\":\"Cosine\","
        "\"quantization_config\":{\"scalar\":{\"type\":\"int8\",\"always_ram\":true}}}}}}",
        0, NULL);
    uint8_t *out = NULL;
    assert_int_equal(ag_pb_encode_get_collection(res, 0, &out, &len, &d), 0);
    Qdrant__GetCollectionInfoResponse *gi =
        qdrant__get_collection_info_response__unpack(NULL, len, out);
    assert_non_null(gi);
    Qdrant__CollectionConfig *cfg = gi->result->config;
    assert_int_equal(cfg->quantization_config->scalar->type, QDRANT__QUANTIZATION_TYPE__Int8);
    assert_true(cfg->quantization_config->scalar->quantile == 0.5f);
    Qdrant__VectorParams *gp = cfg->params->vectors_config->params;
    assert_true(gp->quantization_config->scalar->always_ram);
    qdrant__get_collection_info_response__free_unpacked(gi, NULL);
    free(out);
    json_decref(res);
}

/* A formula query: its expression tree and defaults as the REST body (docs/API.md). */
static void test_formula(void **state)
{
    (void)state;
    Qdrant__Expression score = QDRANT__EXPRESSION__INIT, half = QDRANT__EXPRESSION__INIT,
                       cond = QDRANT__EXPRESSION__INIT, n = QDRANT__EXPRESSION__INIT,
                       mult = QDRANT__EXPRESSION__INIT, decay = QDRANT__EXPRESSION__INIT,
                       one = QDRANT__EXPRESSION__INIT, div = QDRANT__EXPRESSION__INIT,
                       sum = QDRANT__EXPRESSION__INIT;
    score.variant_case = QDRANT__EXPRESSION__VARIANT_VARIABLE;
    score.variable = "$score";
    half.variant_case = QDRANT__EXPRESSION__VARIANT_CONSTANT;
    half.constant = 0.1f; /* rendered as 0.1, its float32 shortest form */
    Qdrant__Match mt = QDRANT__MATCH__INIT;
    mt.match_value_case = QDRANT__MATCH__MATCH_VALUE_KEYWORD;
    mt.keyword = "acme";
    Qdrant__FieldCondition fc = QDRANT__FIELD_CONDITION__INIT;
    fc.key = "tenant";
    fc.match = &mt;
    Qdrant__Condition c = QDRANT__CONDITION__INIT;
    c.condition_one_of_case = QDRANT__CONDITION__CONDITION_ONE_OF_FIELD;
    c.field = &fc;
    cond.variant_case = QDRANT__EXPRESSION__VARIANT_CONDITION;
    cond.condition = &c;
    Qdrant__Expression *mults[] = {&half, &cond};
    Qdrant__MultExpression me = QDRANT__MULT_EXPRESSION__INIT;
    me.n_mult = 2;
    me.mult = mults;
    mult.variant_case = QDRANT__EXPRESSION__VARIANT_MULT;
    mult.mult = &me;
    n.variant_case = QDRANT__EXPRESSION__VARIANT_VARIABLE;
    n.variable = "n";
    Qdrant__DecayParamsExpression dp = QDRANT__DECAY_PARAMS_EXPRESSION__INIT;
    dp.x = &n;
    dp._scale_case = QDRANT__DECAY_PARAMS_EXPRESSION___SCALE_SCALE;
    dp.scale = 2.0f;
    decay.variant_case = QDRANT__EXPRESSION__VARIANT_EXP_DECAY;
    decay.exp_decay = &dp;
    one.variant_case = QDRANT__EXPRESSION__VARIANT_CONSTANT;
    one.constant = 1.0f;
    Qdrant__DivExpression de = QDRANT__DIV_EXPRESSION__INIT;
    de.left = &one;
    de.right = &n;
    de._by_zero_default_case = QDRANT__DIV_EXPRESSION___BY_ZERO_DEFAULT_BY_ZERO_DEFAULT;
    de.by_zero_default = 0.0f;
    div.variant_case = QDRANT__EXPRESSION__VARIANT_DIV;
    div.div = &de;
    Qdrant__Expression *sums[] = {&score, &mult, &decay, &div};
    Qdrant__SumExpression se = QDRANT__SUM_EXPRESSION__INIT;
    se.n_sum = 4;
    se.sum = sums;
    sum.variant_case = QDRANT__EXPRESSION__VARIANT_SUM;
    sum.sum = &se;
    Qdrant__Value dv = QDRANT__VALUE__INIT;
    dv.kind_case = QDRANT__VALUE__KIND_INTEGER_VALUE;
    dv.integer_value = 1;
    Qdrant__Formula__DefaultsEntry de1 = QDRANT__FORMULA__DEFAULTS_ENTRY__INIT;
    de1.key = "n";
    de1.value = &dv;
    Qdrant__Formula__DefaultsEntry *defs[] = {&de1};
    Qdrant__Formula fo = QDRANT__FORMULA__INIT;
    fo.expression = &sum;
    fo.n_defaults = 1;
    fo.defaults = defs;
    Qdrant__Query qq = QDRANT__QUERY__INIT;
    qq.variant_case = QDRANT__QUERY__VARIANT_FORMULA;
    qq.formula = &fo;
    Qdrant__QueryPoints m = QDRANT__QUERY_POINTS__INIT;
    m.collection_name = "c1";
    m._query_case = QDRANT__QUERY_POINTS___QUERY_QUERY;
    m.query = &qq;
    size_t len;
    uint8_t *b = pack(&m.base, &len);
    ag_pb_req_t r = {0};
    ag_diag_t d = {{0}};
    assert_int_equal(ag_pb_decode_query(b, len, &r, &d), 0);
    assert_json(json_object_get(r.body, "query"),
                "{\"formula\":{\"sum\":[\"$score\",{\"mult\":[0.1,{\"key\":\"tenant\","
                "\"match\":{\"value\":\"acme\"}}]},{\"exp_decay\":{\"x\":\"n\",\"scale\":2.0}},"
                "{\"div\":{\"left\":1.0,\"right\":\"n\",\"by_zero_default\":0.0}}]},"
                "\"defaults\":{\"n\":1}}");
    ag_pb_req_release(&r);
    free(b);

    /* Every truncation is refused or decodes; none reads past the end (ASan). */
    b = pack(&m.base, &len);
    for (size_t k = 0; k < len; k++) {
        ag_pb_req_t t = {0};
        ag_diag_t td = {{0}};
        int rc = ag_pb_decode_query(b, k, &t, &td);
        assert_true(rc == 0 || rc == AG_EINVAL);
        ag_pb_req_release(&t);
    }
    free(b);

    /* Nesting past 64 levels is refused naming the formula, not recursed into. */
    Qdrant__Expression chain[80];
    for (int i = 0; i < 80; i++) {
        qdrant__expression__init(&chain[i]);
        chain[i].variant_case = QDRANT__EXPRESSION__VARIANT_NEG;
        chain[i].neg = i + 1 < 80 ? &chain[i + 1] : &one;
    }
    fo.expression = &chain[0];
    b = pack(&m.base, &len);
    memset(&d, 0, sizeof(d));
    assert_int_equal(ag_pb_decode_query(b, len, &r, &d), AG_EINVAL);
    assert_non_null(strstr(d.msg, "formula"));
    ag_pb_req_release(&r);
    free(b);
}

/* ---- responses ----------------------------------------------------------------------------- */

static void test_encode_search(void **state)
{
    (void)state;
    json_t *res = json_loads("[{\"id\":3,\"score\":0.5,\"version\":2,"
                             "\"payload\":{\"a\":{\"b\":[1,2.5,\"x\",true]}},\"vector\":[1,2]},"
                             "{\"id\":\"5c56c793-69f3-4fbf-87e6-c4bf54c28c26\",\"score\":0.25}]",
                             0, NULL);
    uint8_t *out = NULL;
    size_t len = 0;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_pb_encode_search(res, 0.125, &out, &len, &d), 0);
    Qdrant__SearchResponse *m = qdrant__search_response__unpack(NULL, len, out);
    assert_non_null(m);
    assert_int_equal(m->n_result, 2);
    assert_int_equal(m->result[0]->id->num, 3);
    assert_true(m->result[0]->score == 0.5f);
    assert_int_equal(m->result[0]->version, 2);
    assert_int_equal(m->result[0]->n_payload, 1);
    Qdrant__Value *a = m->result[0]->payload[0]->value;
    assert_int_equal(a->kind_case, QDRANT__VALUE__KIND_STRUCT_VALUE);
    Qdrant__ListValue *l = a->struct_value->fields[0]->value->list_value;
    assert_int_equal(l->n_values, 4);
    assert_int_equal(l->values[0]->kind_case, QDRANT__VALUE__KIND_INTEGER_VALUE);
    assert_int_equal(l->values[1]->kind_case, QDRANT__VALUE__KIND_DOUBLE_VALUE);
    assert_int_equal(l->values[3]->kind_case, QDRANT__VALUE__KIND_BOOL_VALUE);
    Qdrant__VectorOutput *v = m->result[0]->vectors->vector;
    assert_int_equal(v->vector_case, QDRANT__VECTOR_OUTPUT__VECTOR_DENSE);
    assert_int_equal(v->dense->n_data, 2);
    assert_true(v->dense->data[1] == 2.0f);
    assert_string_equal(m->result[1]->id->uuid, "5c56c793-69f3-4fbf-87e6-c4bf54c28c26");
    assert_true(m->time == 0.125);
    qdrant__search_response__free_unpacked(m, NULL);
    free(out);
    json_decref(res);
}

static void test_encode_scroll_u64(void **state)
{
    (void)state;
    json_t *res = json_pack("{s:[{s:i}],s:s}", "points", "id", 1, "next_page_offset",
                            AG_U64_MARKER "18446744073709551000");
    uint8_t *out = NULL;
    size_t len = 0;
    ag_diag_t d = {{0}};
    assert_int_equal(ag_pb_encode_scroll(res, 0, &out, &len, &d), 0);
    Qdrant__ScrollResponse *m = qdrant__scroll_response__unpack(NULL, len, out);
    assert_non_null(m);
    assert_int_equal(m->n_result, 1);
    assert_true(m->next_page_offset->num == 18446744073709551000ull);
    qdrant__scroll_response__free_unpacked(m, NULL);
    free(out);
    json_decref(res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upsert),        cmocka_unit_test(test_search_filter),
        cmocka_unit_test(test_refusals),      cmocka_unit_test(test_query_stages),
        cmocka_unit_test(test_encode_search), cmocka_unit_test(test_encode_scroll_u64),
        cmocka_unit_test(test_multivector),   cmocka_unit_test(test_quantization),
        cmocka_unit_test(test_formula),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
