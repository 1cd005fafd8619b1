/* version.c -- the version and commit baked in by the build. */
#include "core/core.h"

/* CMake passes both to zlb_core; builds outside CMake (bench/run) get these defaults. */
#ifndef ZLB_VERSION
#define ZLB_VERSION "0.1.0"
#endif
#ifndef ZLB_GIT_COMMIT
#define ZLB_GIT_COMMIT "unknown"
#endif

const char *zlb_version(void)
{
    return ZLB_VERSION;
}

const char *zlb_git_commit(void)
{
    return ZLB_GIT_COMMIT[0] ? ZLB_GIT_COMMIT : "unknown";
}
