/*
 * ag_version.h — the build's identity: AG_VERSION (the project version, a compile definition) and
 * ag_commit, the short git commit the build was configured from ("unknown" outside a checkout),
 * defined in a file CMake generates so that a new commit recompiles only that file.
 */
#ifndef AG_VERSION_H
#define AG_VERSION_H

extern const char ag_commit[];
#define AG_COMMIT ag_commit

#endif
