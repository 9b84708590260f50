/*
 * libFuzzer target for the JWT path: the verifier on raw tokens, and the claims → principal
 * mapping (plus a few decisions) on raw claim JSON. The first input byte picks the mode:
 *   even: the rest is a token, verified against two fixed secrets at a fixed time; claims that
 *         verify are mapped to a principal;
 *   odd:  the rest is claims JSON (parsed like a token payload), mapped to a principal.
 * Anything may be refused; nothing may crash, leak or be accepted without the secret.
 *
 * Build (not part of CMake):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Isrc/base \
 *     fuzz/fuzz_jwt.c src/auth/ag_jwt.c src/auth/ag_principal.c src/auth/ag_perm.c \
 *     src/auth/ag_glob.c src/index/ag_filter.c src/json/ag_json.c src/base/ag_id.c \
 *     src/base/ag_error.c src/base/ag_log.c -ljansson -lsodium -lm -lpthread -o fuzz_jwt
 *   ./fuzz_jwt fuzz/corpus/jwt
 */
#include "ag_base.h"

#include <sodium.h>

#include "auth/ag_decide.h"
#include "auth/ag_jwt.h"
#include "auth/ag_principal.h"
#include "index/ag_filter.h"

#define SECRET "fuzz-secret-fuzz-secret-fuzz-secret!"
#define ALT "fuzz-alt-secret-fuzz-alt-secret-fuzz"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void exercise(const json_t *claims)
{
    ag_principal_t *p = NULL;
    if (ag_jwt_principal(claims, NULL, NULL, &p, NULL) != 0)
        return;
    static const struct {
        unsigned verbs;
        int res;
    } acts[] = {{AG_VERB_READ, AG_RES_DATA},          {AG_VERB_WRITE, AG_RES_POINTS},
                {AG_VERB_UPDATE, AG_RES_DATA},        {AG_VERB_UPDATE, AG_RES_PAYLOAD_INDEXES},
                {AG_VERB_CREATE, AG_RES_COLLECTIONS}, {AG_VERB_READ, AG_RES_USERS}};
    const char *names[] = {"c", "demo_collection", "x*"};
    for (size_t i = 0; i < AG_ARRAY_LEN(acts); i++) {
        for (size_t j = 0; j < AG_ARRAY_LEN(names); j++) {
            ag_request_action_t a;
            memset(&a, 0, sizeof(a));
            a.verbs = (uint8_t)acts[i].verbs;
            a.resource = (uint8_t)acts[i].res;
            a.collection = names[j];
            ag_decision_t d;
            if (ag_auth_decide(p, &a, &d) == 0 && d.restriction) {
                json_t *pl = json_pack("{s:s}", "user_id", "u1");
                ag_filter_subject_t s = {NULL, pl, NULL, NULL};
                (void)ag_filter_match(d.restriction, &s);
                json_decref(pl);
            }
            ag_decision_release(&d);
        }
    }
    ag_principal_unref(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const secrets[] = {SECRET, ALT};
    if (size < 1 || sodium_init() < 0)
        return 0;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    if ((data[0] & 1) == 0) {
        json_t *claims = NULL;
        if (ag_jwt_verify(rest, n, secrets, 2, 1700000000, 30, &claims, NULL) == 0) {
            exercise(claims);
            json_decref(claims);
        }
        uint8_t buf[AG_JWT_MAX_LEN];
        size_t out;
        (void)ag_b64url_decode(rest, AG_MIN(n, sizeof(buf)), buf, sizeof(buf), &out);
    } else {
        json_error_t err;
        json_t *claims = json_loadb(rest, n, JSON_REJECT_DUPLICATES, &err);
        if (claims) {
            exercise(claims);
            json_decref(claims);
        }
    }
    return 0;
}
