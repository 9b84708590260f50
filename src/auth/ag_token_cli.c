/*
 * ag_token_cli.c — `aegis token`: mints an HS256 JWT in Qdrant's claim format from command-line
 * options, signed with service.api_key taken from the config file or AEGIS__SERVICE__API_KEY
 * (never from a flag, which `ps` would show).
 */
#include "auth/ag_token_cli.h"

#include <errno.h>
#include <stdio.h>

#include "ag_clock.h"
#include "ag_config.h"
#include "auth/ag_jwt.h"

static void token_usage(FILE *f)
{
    fprintf(
        f,
        "usage: aegis token [--config FILE] [options]\n"
        "\n"
        "Mints an HS256 JWT in Qdrant's claim format, signed with service.api_key taken from\n"
        "the config file or AEGIS__SERVICE__API_KEY (never from a flag, which ps would show).\n"
        "\n"
        "  --access r|m                 global read or global manage\n"
        "  --collection NAME=r|rw|prw   access to one collection (repeatable)\n"
        "  --payload KEY=VALUE          row restriction on every --collection entry (repeatable;\n"
        "                               VALUE is JSON if it parses, else a string)\n"
        "  --role NAME                  a server-side role (repeatable)\n"
        "  --exp DURATION               lifetime, e.g. 30s, 15m, 1h, 7d (default 1h)\n"
        "  --value-exists COLL:KEY=VALUE  valid only while such a point exists\n"
        "  --sub SUBJECT                subject recorded in the audit log\n");
}

/* "30s", "15m", "1h", "7d" or plain seconds. */
static int parse_duration(const char *s, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v <= 0)
        return AG_EINVAL;
    int64_t mult = 1;
    if (*end == 's')
        mult = 1;
    else if (*end == 'm')
        mult = 60;
    else if (*end == 'h')
        mult = 3600;
    else if (*end == 'd')
        mult = 86400;
    else if (*end != '\0')
        return AG_EINVAL;
    if (*end && end[1] != '\0')
        return AG_EINVAL;
    if (v > (long long)(INT64_C(10) * 365 * 86400 / mult))
        return AG_EINVAL;
    *out = (int64_t)v * mult;
    return 0;
}

static json_t *json_value_of(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
    if (v && (json_is_string(v) || json_is_integer(v) || json_is_boolean(v)))
        return v;
    json_decref(v);
    return json_string(text);
}

int ag_token_cli(int argc, char **argv, char **envp)
{
    ag_config_t cfg;
    ag_config_init(&cfg);
    ag_diag_t diag = {{0}};
    int exit_code = 2;
    json_t *claims = json_object(), *access_list = json_array(), *payload = json_object();
    json_t *roles = json_array();
    const char *global_access = NULL;
    int64_t exp_s = 3600;
    char *tok = NULL;
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc &&
            ag_config_load_file(&cfg, argv[i + 1], &diag) != 0)
            goto bad;
    if (ag_config_load_env(&cfg, envp, &diag) != 0)
        goto bad;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            token_usage(stdout);
            exit_code = 0;
            goto out;
        }
        if (!v) {
            ag_fail(&diag, AG_EINVAL, "option %.64s needs a value", a);
            goto bad;
        }
        i++;
        if (strcmp(a, "--config") == 0) {
            continue;
        } else if (strcmp(a, "--access") == 0) {
            if (strcmp(v, "r") != 0 && strcmp(v, "m") != 0) {
                ag_fail(&diag, AG_EINVAL, "--access: expected r or m");
                goto bad;
            }
            global_access = v;
        } else if (strcmp(a, "--collection") == 0) {
            const char *eq = strrchr(v, '=');
            if (!eq || eq == v ||
                (strcmp(eq + 1, "r") != 0 && strcmp(eq + 1, "rw") != 0 &&
                 strcmp(eq + 1, "prw") != 0)) {
                ag_fail(&diag, AG_EINVAL, "--collection: expected NAME=r, NAME=rw or NAME=prw");
                goto bad;
            }
            json_t *entry =
                json_pack("{s:s%,s:s}", "collection", v, (size_t)(eq - v), "access", eq + 1);
            json_array_append_new(access_list, entry);
        } else if (strcmp(a, "--payload") == 0) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v) {
                ag_fail(&diag, AG_EINVAL, "--payload: expected KEY=VALUE");
                goto bad;
            }
            char key[256];
            snprintf(key, sizeof(key), "%.*s", (int)(eq - v), v);
            json_object_set_new(payload, key, json_value_of(eq + 1));
        } else if (strcmp(a, "--role") == 0) {
            json_array_append_new(roles, json_string(v));
        } else if (strcmp(a, "--exp") == 0) {
            if (parse_duration(v, &exp_s) != 0) {
                ag_fail(&diag, AG_EINVAL, "--exp: expected a duration like 30s, 15m, 1h or 7d");
                goto bad;
            }
        } else if (strcmp(a, "--sub") == 0) {
            json_object_set_new(claims, "sub", json_string(v));
        } else if (strcmp(a, "--value-exists") == 0) {
            const char *colon = strchr(v, ':');
            const char *eq = colon ? strchr(colon, '=') : NULL;
            if (!colon || !eq || colon == v || eq == colon + 1) {
                ag_fail(&diag, AG_EINVAL, "--value-exists: expected COLLECTION:KEY=VALUE");
                goto bad;
            }
            json_t *ve = json_pack("{s:s%,s:[{s:s%,s:o}]}", "collection", v, (size_t)(colon - v),
                                   "matches", "key", colon + 1, (size_t)(eq - colon - 1), "value",
                                   json_value_of(eq + 1));
            json_object_set_new(claims, "value_exists", ve);
        } else {
            ag_fail(&diag, AG_EINVAL, "unknown option '%.64s' (see aegis token --help)", a);
            goto bad;
        }
    }
    if (!cfg.api_key || strlen(cfg.api_key) < 32) {
        ag_fail(&diag, AG_ECONFIG,
                "service.api_key (config file or AEGIS__SERVICE__API_KEY) "
                "must be set to a key of at least 32 characters");
        goto bad;
    }
    if (global_access && json_array_size(access_list) > 0) {
        ag_fail(&diag, AG_EINVAL, "--access and --collection cannot be combined");
        goto bad;
    }
    if (json_object_size(payload) > 0) {
        size_t i;
        json_t *e;
        if (json_array_size(access_list) == 0) {
            ag_fail(&diag, AG_EINVAL, "--payload needs at least one --collection");
            goto bad;
        }
        json_array_foreach(access_list, i, e) json_object_set(e, "payload", payload);
    }
    if (global_access)
        json_object_set_new(claims, "access", json_string(global_access));
    else if (json_array_size(access_list) > 0)
        json_object_set(claims, "access", access_list);
    if (json_array_size(roles) > 0)
        json_object_set(claims, "roles", roles);
    if (!json_object_get(claims, "access") && !json_object_get(claims, "roles")) {
        ag_fail(&diag, AG_EINVAL,
                "give --access, --collection or --role (a token without them "
                "grants nothing)");
        goto bad;
    }
    json_object_set_new(claims, "exp", json_integer(ag_now_unix() + exp_s));
    if (ag_jwt_mint(cfg.api_key, claims, &tok) != 0) {
        ag_fail(&diag, AG_EINTERNAL, "cannot sign the token");
        goto bad;
    }
    printf("%s\n", tok);
    exit_code = 0;
    goto out;
bad:
    fprintf(stderr, "aegis token: %s\n", diag.msg);
out:
    free(tok);
    json_decref(claims);
    json_decref(access_list);
    json_decref(payload);
    json_decref(roles);
    ag_config_release(&cfg);
    return exit_code;
}

/* aegis audit verify [--storage DIR | FILE]: exit 0 "ok: N records", 1 naming the first bad
 * line, 2 on usage errors or an unreadable log. */
