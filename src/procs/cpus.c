/* cpus.c -- how many shard processes, and which CPUs each one's pollers may use. */
#include "procs/procs.h"

/* Per process: the control and scheduler threads' files, epoll and event fds, resolver and log
 * files, the built-in target's listener; generous, as running out is a failed run. */
#define FD_RESERVE 512

uint32_t zlb_procs_auto_count(uint64_t connections, bool embedded, uint64_t fd_limit)
{
    uint64_t per = embedded ? 2 : 1;
    uint64_t room = fd_limit > 2 * FD_RESERVE ? fd_limit - FD_RESERVE : FD_RESERVE;
    uint64_t n = (connections * per + room - 1) / room;
    if (n < 1)
        n = 1;
    return n > ZLB_PROCESSES_MAX ? ZLB_PROCESSES_MAX : (uint32_t)n;
}

size_t zlb_procs_cpus(const int *cpus, size_t ncpus, uint32_t nprocs, uint32_t index, int *out,
                      bool *shared)
{
    *shared = false;
    if (ncpus == 0 || nprocs == 0)
        return 0;
    if (ncpus < nprocs) {
        *shared = true;
        out[0] = cpus[index % ncpus];
        return 1;
    }
    size_t base = ncpus / nprocs, extra = ncpus % nprocs;
    size_t start = index * base + (index < extra ? index : extra);
    size_t n = base + (index < extra ? 1 : 0);
    for (size_t i = 0; i < n; i++)
        out[i] = cpus[start + i];
    return n;
}
