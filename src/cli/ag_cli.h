/*
 * ag_cli.h — the administrators' command-line client (docs/API.md "Command line"): `aegis users`,
 * `aegis roles`, `aegis keys` and `aegis import` talk to a running server over its REST API with a
 * key (--key or AEGIS_API_KEY; --url or AEGIS_URL), exactly as any other client would, so the
 * server authorizes and audits every call. Every subcommand answers --help.
 */
#ifndef AG_CLI_H
#define AG_CLI_H

#include "ag_base.h"

/* Runs `aegis <argv[1]> ...` for argv[1] in users, roles, keys, import. Returns the process exit
 * code: 0 done, 1 the server refused or failed, 2 bad usage. envp: the environment. */
int ag_cli_main(int argc, char **argv, char **envp);
/* `aegis audit verify --cluster [--url U] [--key K] [--ca F]`: every node the server at U lists in
 * GET /cluster checks its own audit chain (GET /auth/audit/verify); one line per node. Returns 0
 * when every chain checks out and names its node, 1 otherwise, 2 on bad usage. */
int ag_cli_audit_cluster(int argc, char **argv, char **envp);
/* Is cmd one of the commands ag_cli_main runs? */
bool ag_cli_handles(const char *cmd);

#endif
