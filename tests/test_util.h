/* test_util.h -- helpers the network tests share: sleeping, a loopback listener, what the host's
 * name service files say, and running a check in a child inside a new network namespace. */
#ifndef ZLB_TEST_UTIL_H
#define ZLB_TEST_UTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "test.h"

static inline void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* A TCP listener on 127.0.0.1 at a port the kernel picks (returned in *port). */
static inline int listen_tcp(int backlog, uint16_t *port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    ASSERT_EQ(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ASSERT_EQ(listen(fd, backlog), 0);
    ASSERT_EQ(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

/* Whether /etc/hosts gives "localhost" as a name (not as an address) on some line. */
static inline bool hosts_has_localhost(void)
{
    FILE *f = fopen("/etc/hosts", "r");
    char line[512];
    bool found = false;

    if (!f)
        return false;
    while (!found && fgets(line, sizeof(line), f)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        for (char *tok = strtok(line, " \t\n"); tok; tok = strtok(NULL, " \t\n"))
            if (strcmp(tok, "localhost") == 0 && tok != line)
                found = true;
    }
    fclose(f);
    return found;
}

/* Whether /etc/resolv.conf names no name server, or loopback ones only. */
static inline bool resolv_conf_local_only(void)
{
    FILE *f = fopen("/etc/resolv.conf", "r");
    char line[512], ns[256];
    bool local = true;

    if (!f)
        return true;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, " nameserver %255s", ns) == 1 && strncmp(ns, "127.", 4) != 0 &&
            strcmp(ns, "::1") != 0)
            local = false;
    fclose(f);
    return local;
}

/* Runs body() in a child inside a new network namespace, where only a down loopback exists and
 * no DNS query can leave the machine; without the privilege for that, only when resolv.conf
 * names no server or loopback ones only. Fails the test when the child runs past timeout_s (it
 * is killed; `what` names it) or does not exit 0. Returns false when the check was skipped. */
static inline bool run_in_netns(int (*body)(void), unsigned timeout_s, const char *what)
{
    pid_t pid = fork();
    int status = 0;

    ASSERT(pid >= 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWNET) < 0 && !resolv_conf_local_only())
            _exit(77);
        _exit(body());
    }
    uint64_t dl = zlb_now_ns() + (uint64_t)timeout_s * ZLB_NS_PER_SEC;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (zlb_now_ns() > dl) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            ZLB_TEST_FAIL("%s hung", what);
        }
        sleep_ms(5);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
        return false;
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    return true;
}

#endif
