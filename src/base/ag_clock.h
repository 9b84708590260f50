#ifndef AG_CLOCK_H
#define AG_CLOCK_H

#include "ag_base.h"

/* Monotonic time in seconds (for durations). */
double ag_now_mono(void);
/* Wall-clock seconds since the epoch. */
int64_t ag_now_unix(void);

#endif
