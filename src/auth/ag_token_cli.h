/* ag_token_cli.h — the `aegis token` subcommand. */
#ifndef AG_TOKEN_CLI_H
#define AG_TOKEN_CLI_H

#include "ag_base.h"

/* Runs `aegis token` with argv as given to main (argv[1] == "token"); envp supplies
 * AEGIS__* settings. Returns the process exit code; the token goes to stdout. */
int ag_token_cli(int argc, char **argv, char **envp);

#endif
