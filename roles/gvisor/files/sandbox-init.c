/* Copyright: Fortress developers
 * Apache-2.0
 *
 * sandbox-init: PID 1 of every Fortress sandbox, and the wrapper of every exec in one.
 * Built static (musl) by the gvisor role, mounted read-only into each sandbox by the
 * library (plugins/module_utils/sandbox), so it needs nothing from the sandbox's image.
 *
 *   sandbox-init boot              PID 1 that waits for execs, reaps every orphan and
 *                                  stops on SIGTERM or SIGINT.
 *   sandbox-init boot -- CMD...    PID 1 that first waits for `go` (the library sends it
 *                                  only after it proved from the host that the sandbox runs
 *                                  under gVisor), then runs CMD, forwards signals to it,
 *                                  reaps every orphan and exits with CMD's status.
 *   sandbox-init go                tells a waiting PID 1 to start CMD.
 *   sandbox-init exec MS -- CMD... runs CMD in a new session, with its output relayed in
 *                                  frames (below), as a child subreaper: every process CMD
 *                                  starts stays its descendant. When CMD exits, any
 *                                  descendant still alive has escaped: all are killed and
 *                                  the status says so. After MS milliseconds all are killed
 *                                  and the status says timeout.
 *
 * Frames on standard output: one type byte (1 stdout, 2 stderr, 3 status), a 4-byte
 * big-endian length (at most FRAME_MAX), then the bytes. The status frame comes last, once:
 * "exit N" or "signal N" or "timeout", followed by " escaped" when a process escaped. CMD
 * never holds this process's standard output, so it cannot forge a frame; the wrapper is
 * not dumpable, so CMD cannot reach it through /proc or ptrace either (CMD can kill it:
 * the host then sees no status and treats the exec as escaped).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GO_PATH "/tmp/.fortress-go"
#define FRAME_MAX 65536
#define MAX_PIDS 65536
#define DRAIN_MS 1000

static void die(const char *what) {
    dprintf(2, "sandbox-init: %s: %s\n", what, strerror(errno));
    exit(125);
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int frame(int type, const void *data, size_t len) {
    unsigned char head[5] = {(unsigned char)type, (unsigned char)(len >> 24),
                             (unsigned char)(len >> 16), (unsigned char)(len >> 8),
                             (unsigned char)len};
    if (write_all(1, head, sizeof head) < 0) return -1;
    return len ? write_all(1, data, len) : 0;
}

static int signal_fd(const int *signals, int count, int flags) {
    sigset_t all, mask;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    sigemptyset(&mask);
    for (int i = 0; i < count; i++) sigaddset(&mask, signals[i]);
    int fd = signalfd(-1, &mask, SFD_CLOEXEC | flags);
    if (fd < 0) die("signalfd");
    return fd;
}

static void child_exec(char **argv) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execvp(argv[0], argv);
    dprintf(2, "sandbox-init: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
}

/* ---- PID 1 -------------------------------------------------------------------------- */

static int wait_for_go(int sfd) {
    unlink(GO_PATH);
    if (mkfifo(GO_PATH, 0600) < 0) die("mkfifo " GO_PATH);
    int go = open(GO_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC);  /* never blocks, never hangs up */
    if (go < 0) die("open " GO_PATH);
    for (;;) {
        struct pollfd fds[2] = {{go, POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        if (fds[0].revents & POLLIN) break;
        if (fds[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) != sizeof si) continue;
            if (si.ssi_signo == SIGCHLD) {
                while (waitpid(-1, NULL, WNOHANG) > 0) {}
            } else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
                exit(0);  /* stopped before it was told to run anything */
            }
        }
    }
    close(go);
    unlink(GO_PATH);
    return 0;
}

static int boot(int argc, char **argv) {
    static const int watched[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT,
                                  SIGUSR1, SIGUSR2, SIGWINCH};
    int sfd = signal_fd(watched, sizeof watched / sizeof watched[0], 0);
    pid_t main_pid = 0;
    if (argc > 2) {
        if (strcmp(argv[2], "--") != 0 || argc < 4) {
            dprintf(2, "sandbox-init: usage: sandbox-init boot [-- COMMAND...]\n");
            return 2;
        }
        wait_for_go(sfd);
        main_pid = fork();
        if (main_pid < 0) die("fork");
        if (main_pid == 0) child_exec(argv + 3);
    }
    for (;;) {
        struct signalfd_siginfo si;
        ssize_t n = read(sfd, &si, sizeof si);
        if (n != sizeof si) {
            if (n < 0 && errno != EINTR) die("read signalfd");
            continue;
        }
        if (si.ssi_signo == SIGCHLD) {
            int status;
            pid_t pid;
            while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                if (main_pid && pid == main_pid) {
                    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                }
            }
        } else if (main_pid) {
            kill(main_pid, (int)si.ssi_signo);
        } else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            return 0;
        }
    }
}

/* Whether PID 1's command (after "--" in /proc/1/cmdline) can be run by this user, found
 * the way execvp finds it: a missing command is refused before go, in one line. */
static int command_runs(void) {
    static char buf[65536];
    int fd = open("/proc/1/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 1;  /* cannot tell: PID 1 reports it as it runs */
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 1;
    buf[n] = 0;
    char *arg = buf, *end = buf + n, *cmd = NULL;
    while (arg < end) {
        if (strcmp(arg, "--") == 0) {
            cmd = arg + strlen(arg) + 1;
            break;
        }
        arg += strlen(arg) + 1;
    }
    if (!cmd || cmd >= end) return 1;
    if (strchr(cmd, '/')) {
        if (access(cmd, X_OK) == 0) return 1;
        dprintf(2, "sandbox-init: cannot run %s: %s\n", cmd, strerror(errno));
        return 0;
    }
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/bin:/usr/bin";
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);
        char full[4096];
        if (snprintf(full, sizeof full, "%.*s/%s", (int)len, path, cmd) < (int)sizeof full &&
            access(full, X_OK) == 0) {
            return 1;
        }
        path += len + (colon ? 1 : 0);
    }
    dprintf(2, "sandbox-init: cannot run %s: not found in PATH\n", cmd);
    return 0;
}

static int go(void) {
    if (!command_runs()) return 127;
    for (int i = 0; i < 2000; i++) {  /* PID 1 makes the FIFO as it starts: up to 10 s */
        int fd = open(GO_PATH, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0) {
            struct stat st;
            if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode)) {
                dprintf(2, "sandbox-init: " GO_PATH " is not the init's FIFO\n");
                return 1;
            }
            int rc = write_all(fd, "g", 1);
            close(fd);
            return rc < 0 ? 1 : 0;
        }
        if (errno != ENOENT && errno != ENXIO) die("open " GO_PATH);
        usleep(5000);
    }
    dprintf(2, "sandbox-init: no init waits for go\n");
    return 1;
}

/* ---- exec --------------------------------------------------------------------------- */

static pid_t self_pid;
static pid_t tree[MAX_PIDS];


/* Whether a process /proc shows as a zombie is alive: a thread-group leader that ended while
 * its other threads run on (neither Linux nor gVisor lets its parent reap it; gVisor lists
 * no other thread for it). One of this subreaper's own children is tried with waitpid: a
 * dead one is reaped, a live one is not. One whose parent is another descendant counts
 * through that parent, which is alive. */
static int zombie_alive(long pid, long ppid) {
    if (ppid != self_pid) return 0;
    int status;
    return waitpid((pid_t)pid, &status, WNOHANG) == 0;
}

/* The live descendants of this process, from /proc (a comm may hold spaces and ')': the
 * parent is read after the last ')'). Returns how many it found, at most max. */
static int descendants(pid_t *out, int max) {
    static pid_t pids[MAX_PIDS], parents[MAX_PIDS];
    int count = 0;
    DIR *dir = opendir("/proc");
    if (!dir) return 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) && count < MAX_PIDS) {
        char *end;
        long pid = strtol(entry->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = 0;
        char *paren = strrchr(buf, ')');
        char state;
        long ppid;
        if (!paren || sscanf(paren + 1, " %c %ld", &state, &ppid) != 2) continue;
        /* A zombie may be a leader whose threads live: alive, and so is what it forks. */
        if (state == 'X' || (state == 'Z' && !zombie_alive(pid, ppid))) continue;
        pids[count] = (pid_t)pid;
        parents[count] = (pid_t)ppid;
        count++;
    }
    closedir(dir);
    int found = 0;
    if (max > 0) out[found++] = self_pid;  /* seed, removed below */
    for (int i = 0; i < found; i++) {
        for (int j = 0; j < count; j++) {
            if (parents[j] == out[i] && found < max) out[found++] = pids[j];
        }
    }
    if (found > 0) {
        memmove(out, out + 1, (size_t)(found - 1) * sizeof *out);
        found--;
    }
    return found;
}

static void reap(pid_t main_pid, int *main_status, int *main_done) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == main_pid) {
            *main_status = status;
            *main_done = 1;
        }
    }
}

/* Kill every descendant (stopped first, so none forks while the round goes on). Orphans
 * come back to this subreaper, so each round finds what the last one's victims left
 * behind; a process forked meanwhile is found in the next. Returns 0 when none is left. */
static int kill_all(pid_t main_pid, int *main_status, int *main_done) {
    for (int round = 0; round < 1000; round++) {
        reap(main_pid, main_status, main_done);
        int n = descendants(tree, MAX_PIDS);
        if (n == 0) return 0;
        for (int i = 0; i < n; i++) kill(tree[i], SIGSTOP);
        for (int i = 0; i < n; i++) kill(tree[i], SIGKILL);
        usleep(round < 10 ? 1000 : 10000);
    }
    reap(main_pid, main_status, main_done);
    return descendants(tree, MAX_PIDS) > 0;
}

static int relay(int *fd, int type) {
    char buf[FRAME_MAX];
    ssize_t n = read(*fd, buf, sizeof buf);
    if (n > 0) return frame(type, buf, (size_t)n) < 0 ? -1 : 1;
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        close(*fd);
        *fd = -1;
    }
    return 0;
}

static int run_exec(int argc, char **argv) {
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        dprintf(2, "sandbox-init: usage: sandbox-init exec MILLISECONDS -- COMMAND...\n");
        return 2;
    }
    char *end;
    long long timeout = strtoll(argv[2], &end, 10);
    if (*end || timeout <= 0) {
        dprintf(2, "sandbox-init: the timeout must be a positive number of milliseconds\n");
        return 2;
    }
    prctl(PR_SET_DUMPABLE, 0);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) die("PR_SET_CHILD_SUBREAPER");
    self_pid = getpid();
    static const int watched[] = {SIGCHLD};
    int sfd = signal_fd(watched, 1, SFD_NONBLOCK);
    signal(SIGPIPE, SIG_IGN);
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) die("pipe");
    long long deadline = now_ms() + timeout;
    pid_t main_pid = fork();
    if (main_pid < 0) die("fork");
    if (main_pid == 0) {
        setsid();
        if (dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0) _exit(125);
        child_exec(argv + 4);
    }
    close(out[1]);
    close(err[1]);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, 0);  /* only CMD holds the caller's stdin */
        close(devnull);
    }
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(err[0], F_SETFL, O_NONBLOCK);
    int main_done = 0, main_status = 0, timed_out = 0, escaped = 0, host_gone = 0;
    while (!main_done) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd fds[3] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(fds, 3, left > 1000 ? 1000 : (int)left) < 0 && errno != EINTR) die("poll");
        if (fds[0].revents && relay(&out[0], 1) < 0) host_gone = 1;
        if (fds[1].revents && relay(&err[0], 2) < 0) host_gone = 1;
        if (host_gone) {
            timed_out = 1;  /* nobody reads the output: end it all */
            break;
        }
        if (fds[2].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == sizeof si) {}
        }
        reap(main_pid, &main_status, &main_done);
    }
    if (main_done) {
        /* CMD's own output first (what the pipes hold: a descendant that writes on cannot
         * hold this), then the question: is anything it started still alive? */
        for (int i = 0; i < 16 && out[0] >= 0 && relay(&out[0], 1) > 0; i++) {}
        for (int i = 0; i < 16 && err[0] >= 0 && relay(&err[0], 2) > 0; i++) {}
        reap(main_pid, &main_status, &main_done);
        escaped = descendants(tree, MAX_PIDS) > 0;
        if (escaped) {  /* not one that was exiting just then: ask again, once */
            usleep(2000);
            reap(main_pid, &main_status, &main_done);
            escaped = descendants(tree, MAX_PIDS) > 0;
        }
    }
    if (kill_all(main_pid, &main_status, &main_done)) escaped = 1;  /* some outran the kill */
    /* Every writer is dead now, unless CMD handed a pipe to a process outside its tree:
     * read to the end, within a bound. */
    long long drain_end = now_ms() + DRAIN_MS;
    while ((out[0] >= 0 || err[0] >= 0) && now_ms() < drain_end) {
        struct pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
        if (poll(fds, 2, 100) <= 0) continue;
        if (fds[0].revents && relay(&out[0], 1) < 0) break;
        if (fds[1].revents && relay(&err[0], 2) < 0) break;
    }
    char status[64];
    if (timed_out) {
        snprintf(status, sizeof status, "timeout");
    } else if (WIFEXITED(main_status)) {
        snprintf(status, sizeof status, "exit %d", WEXITSTATUS(main_status));
    } else {
        snprintf(status, sizeof status, "signal %d", WTERMSIG(main_status));
    }
    if (escaped) strncat(status, " escaped", sizeof status - strlen(status) - 1);
    frame(3, status, strlen(status));
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "boot") == 0) return boot(argc, argv);
    if (argc == 2 && strcmp(argv[1], "go") == 0) return go();
    if (argc >= 2 && strcmp(argv[1], "exec") == 0) return run_exec(argc, argv);
    dprintf(2, "sandbox-init: usage: sandbox-init boot [-- COMMAND...] | go | "
               "exec MILLISECONDS -- COMMAND...\n");
    return 2;
}
