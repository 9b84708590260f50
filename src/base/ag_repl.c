#include "ag_repl.h"

static _Thread_local uint64_t pinned;

void ag_repl_pin(uint64_t rev)
{
    pinned = rev;
}

uint64_t ag_repl_pinned(void)
{
    return pinned;
}
