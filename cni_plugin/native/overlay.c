/*
 * overlay: the native front end of the `overlay` CNI plugin.
 *
 * A Python interpreter needs 11-15 ms to start on a small node, more than the budget the plugin
 * has per pod operation (issue 5: ADD+DEL within 1.3x of bridge+host-local called directly).
 * So the process kubelet starts for ADD and DEL is this small program: it hands the request to
 * the resident overlayd daemon over a unix socket (the "CNI service", overlayd/cni_service.py),
 * which holds all of the plugin's logic, and carries out the two things that must happen in
 * the runtime's own context: running the delegate plugin (bridge) and looking into the pod's
 * network namespace. Every other command, and every ADD/DEL the service cannot take (socket
 * missing, daemon down or restarting, the request names another node's subnet file), runs the
 * full Python plugin instead: overlay.d/overlay beside this executable, fed the same stdin.
 * So a node without overlayd running still gets a correct, only slower, plugin.
 *
 * Wire format, both directions (wire.c): u32 big-endian payload length, then the payload: one
 * type byte, then blobs, each a u32 big-endian length and its bytes.
 *   client -> service  'Q' "2", stdin, env "K=V"...    the request (protocol version 2)
 *   service -> client  'A'                             accepted: the daemon is alive and on it
 *                      'X' type, command, stdin        run delegate `type` for `command`; 'R'
 *                      'I' ifname                      does ifname exist in CNI_NETNS? 'R'
 *                      'F'                             run the Python plugin instead
 *                      'D' exit code, stdout, stderr   done: print these and exit
 *   client -> service  'R' status[, stdout, stderr]    status: exit code (-N: killed by signal N)
 *                                                      | "yes" | "no" | "E<errno>" | "S<errno>"
 * Until the service asks for something ('X', 'I'), nothing has been done for the request, so
 * the client may still fall back: no 'A' within 5 s, nothing more within 120 s (the service
 * waits for the node's plugin lock meanwhile), a closed connection, a message it does not know.
 * After that it never does: a lost connection is CNI error 11 (try again later), the runtime
 * retries, and the per-pod cache lets its DEL release whatever was made.
 *
 * The service is trusted with the protocol, not with the host (delegate.c): it never names a
 * path or an environment. 'X' names a plugin type, looked up on this process's CNI_PATH (a
 * type with '/' is refused, as libcni does; one not found is "E2"), run with this process's
 * environment and CNI_COMMAND; 'I' looks only into this process's CNI_NETNS. An 'X' that breaks
 * these rules runs nothing: it is a message the front end does not know (the Python plugin
 * answers if nothing was asked yet, else CNI error 999). Only a service run by root is talked
 * to at all (SO_PEERCRED).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frontend.h"

extern char **environ;

#define DEFAULT_SOCKET "/run/flannel/cni.sock"
#define SOCKET_KEY "cniSocket"
#define MAX_INPUT (16u << 20)
#define PROTOCOL "2"
#define CONNECT_TIMEOUT_S 2
#define ACCEPT_TIMEOUT_S 5
#define FIRST_ASK_TIMEOUT_S 120
#define TRY_AGAIN_LATER 11
#define GENERIC_ERROR 999

static struct buf input;          /* the network config from stdin */
static char **saved_argv;

/* ---- small helpers ---------------------------------------------------------------------- */

static int write_all(int fd, const void *p, size_t n) {
    const unsigned char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        c += w; n -= (size_t)w;
    }
    return 0;
}

/* To the service: MSG_NOSIGNAL, so a daemon that went away is an error we report, not SIGPIPE. */
static int send_all(int fd, const void *p, size_t n) {
    const unsigned char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        c += w; n -= (size_t)w;
    }
    return 0;
}

static int read_exact(int fd, void *p, size_t n) {   /* 1 ok, 0 clean EOF before any byte, -1 error */
    unsigned char *c = p;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, c + got, n - got);
        if (r < 0) { if (errno == EINTR) continue; return -1; }
        if (r == 0) return got ? -1 : 0;
        got += (size_t)r;
    }
    return 1;
}

static int read_fd_all(int fd, struct buf *b, size_t max) {
    unsigned char chunk[65536];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0) { if (errno == EINTR) continue; return -1; }
        if (r == 0) return 0;
        if (b->len + (size_t)r > max) { errno = EFBIG; return -1; }
        put(b, chunk, (size_t)r);
    }
}

/* A CNI error on stdout, in the request's cniVersion, and exit 1. */
static void cni_fail(int code, const char *msg, const char *details) {
    char version[32] = "1.1.0";
    json_top_string(input.data, input.len, "cniVersion", version, sizeof version);
    struct buf out = {0};
    char head[96];
    snprintf(head, sizeof head, "{\"cniVersion\": \"");
    put(&out, head, strlen(head));
    json_escaped(&out, version);
    snprintf(head, sizeof head, "\", \"code\": %d, \"msg\": \"", code);
    put(&out, head, strlen(head));
    json_escaped(&out, msg);
    put(&out, "\", \"details\": \"", 15);
    json_escaped(&out, details);
    put(&out, "\"}\n", 3);
    write_all(1, out.data, out.len);
    exit(1);
}

static int memfd_with(const void *data, size_t len) {
    int fd = memfd_create("overlay-stdio", MFD_CLOEXEC);
    if (fd < 0) return -1;
    if (len && write_all(fd, data, len) < 0) { close(fd); return -1; }
    lseek(fd, 0, SEEK_SET);
    return fd;
}

/* ---- the full Python plugin ------------------------------------------------------------- */

static void run_python_plugin(void) {
    char self[4096], path[4200];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) cni_fail(GENERIC_ERROR, "the overlay plugin cannot find its own executable", strerror(errno));
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (slash) *slash = 0;
    snprintf(path, sizeof path, "%s/overlay.d/overlay", self);
    int fd = memfd_with(input.data, input.len);
    if (fd < 0 || dup2(fd, 0) < 0)
        cni_fail(GENERIC_ERROR, "the overlay plugin cannot pass its input on", strerror(errno));
    saved_argv[0] = path;
    execve(path, saved_argv, environ);
    char details[4400];
    snprintf(details, sizeof details, "%s: %s; reinstall the plugin (overlayd install-cni)", path, strerror(errno));
    cni_fail(GENERIC_ERROR, "the overlay plugin is incomplete: overlay.d/overlay cannot be run", details);
}

/* ---- messages --------------------------------------------------------------------------- */

static int send_msg(int fd, unsigned char type, size_t n, const void *const *blob, const size_t *len) {
    struct buf b = {0};
    msg_encode(&b, type, n, blob, len);
    int rc = send_all(fd, b.data, b.len);
    free(b.data);
    return rc;
}

static int recv_msg(int fd, struct msg *m) {   /* 1 ok, 0 EOF before a message, -1 error */
    unsigned char head[4];
    int rc = read_exact(fd, head, 4);
    if (rc <= 0) return rc;
    uint32_t total = get_u32(head);
    if (total < 1 || total > MAX_MESSAGE) { errno = EPROTO; return -1; }
    free(m->raw);
    m->raw = malloc(total);
    if (!m->raw || read_exact(fd, m->raw, total) != 1) return -1;
    return msg_split(m, total) < 0 ? -1 : 1;
}

static int reply_status(int sock, const char *status, const struct buf *out, const struct buf *err) {
    static const char empty[1];
    const void *blob[3] = { status, out && out->data ? (const void *)out->data : empty,
                            err && err->data ? (const void *)err->data : empty };
    size_t len[3] = { strlen(status), out ? out->len : 0, err ? err->len : 0 };
    return send_msg(sock, 'R', out ? 3 : 1, blob, len);
}

/* Runs path with argv {path}, env and stdin; stdio through memfds (no pipe dead-lock). The
 * delegate starts as the runtime would start it: default signal dispositions and an empty
 * signal mask, whatever this process inherited. 0 and *ws, or an errno. */
static int spawn_wait(const char *path, char **env, int fds[3], int *ws) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    for (int k = 0; k < 3; k++) posix_spawn_file_actions_adddup2(&actions, fds[k], k);
    char *argv[] = { (char *)path, NULL };
    pid_t pid;
    int e = posix_spawn(&pid, path, &actions, &attr, argv, env);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (!e) {
        pid_t w;
        while ((w = waitpid(pid, ws, 0)) < 0 && errno == EINTR) {}
        if (w < 0) e = errno;
    }
    return e;
}

/* 'X', checked (struct ask): the delegate `type` from our CNI_PATH, with our environment. */
static int do_exec(int sock, const struct ask *a) {
    char status[32], path[4096];
    if (!find_in_path(a->type, getenv("CNI_PATH"), path, sizeof path)) {
        snprintf(status, sizeof status, "E%d", ENOENT);
        return reply_status(sock, status, NULL, NULL);
    }
    char **env = delegate_env(environ, a->command);
    int fds[3] = { memfd_with(a->stdin_data, a->stdin_len), memfd_with(NULL, 0), memfd_with(NULL, 0) };
    struct buf out = {0}, err = {0};
    int rc, ws = 0, e = 0;
    if (!env) e = ENOMEM;
    else if (fds[0] < 0 || fds[1] < 0 || fds[2] < 0) e = errno;
    else e = spawn_wait(path, env, fds, &ws);
    if (!e) {
        lseek(fds[1], 0, SEEK_SET);
        lseek(fds[2], 0, SEEK_SET);
        if (read_fd_all(fds[1], &out, MAX_MESSAGE / 4) < 0 || read_fd_all(fds[2], &err, MAX_MESSAGE / 4) < 0)
            e = errno;
    }
    if (e) {
        snprintf(status, sizeof status, "E%d", e);
        rc = reply_status(sock, status, NULL, NULL);
    } else {
        /* as Python's os.waitstatus_to_exitcode: -N when killed by signal N */
        snprintf(status, sizeof status, "%d", WIFEXITED(ws) ? WEXITSTATUS(ws) : -WTERMSIG(ws));
        rc = reply_status(sock, status, &out, &err);
    }
    for (int k = 0; k < 3; k++) if (fds[k] >= 0) close(fds[k]);
    env_free(env);
    free(out.data); free(err.data);
    return rc;
}

/* 'I' ifname: does the interface exist in our CNI_NETNS? setns there and back. */
static int do_ifexists(int sock, const struct msg *m) {
    char status[32], ifname[IF_NAMESIZE];
    if (m->n != 1 || m->len[0] == 0 || memchr(m->blob[0], 0, m->len[0])) {
        errno = EPROTO;
        return -1;
    }
    if (m->len[0] >= sizeof ifname) return reply_status(sock, "no", NULL, NULL);   /* no such name on Linux */
    memcpy(ifname, m->blob[0], m->len[0]);
    ifname[m->len[0]] = 0;
    const char *path = getenv("CNI_NETNS");
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int target = home < 0 ? -1 : !path ? (errno = ENOENT, -1) : open(path, O_RDONLY | O_CLOEXEC);
    if (home < 0 || target < 0) {
        snprintf(status, sizeof status, "E%d", errno);
    } else if (setns(target, CLONE_NEWNET) < 0) {
        snprintf(status, sizeof status, "S%d", errno);
    } else {
        int exists = if_nametoindex(ifname) != 0;
        if (setns(home, CLONE_NEWNET) < 0)   /* never run a delegate in the pod's namespace */
            cni_fail(GENERIC_ERROR, "the overlay plugin could not return to its network namespace", strerror(errno));
        snprintf(status, sizeof status, "%s", exists ? "yes" : "no");
    }
    if (target >= 0) close(target);
    if (home >= 0) close(home);
    return reply_status(sock, status, NULL, NULL);
}

static void set_timeout(int fd, int option, long seconds) {
    struct timeval tv = { .tv_sec = seconds };
    setsockopt(fd, SOL_SOCKET, option, &tv, sizeof tv);
}

/* A connection to a service run by root, or -1. connect() on a unix socket blocks while the
 * listener's backlog is full (a daemon that stopped accepting): bounded by SO_SNDTIMEO. */
static int connect_service(const char *path) {
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof addr.sun_path) return -1;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    set_timeout(fd, SO_SNDTIMEO, CONNECT_TIMEOUT_S);
    struct ucred cred;
    socklen_t clen = sizeof cred;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0
        || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 || cred.uid != 0) {
        close(fd);
        return -1;
    }
    set_timeout(fd, SO_SNDTIMEO, 0);
    return fd;
}

/* The request: protocol, stdin, and our environment (the service reads CNI_* from it). */
static int send_request(int sock) {
    size_t nenv = 0;
    while (environ[nenv]) nenv++;
    const void **blob = calloc(nenv + 2, sizeof *blob);
    size_t *len = calloc(nenv + 2, sizeof *len);
    int rc = -1;
    if (blob && len) {
        blob[0] = PROTOCOL; len[0] = strlen(PROTOCOL);
        blob[1] = input.data; len[1] = input.len;
        for (size_t k = 0; k < nenv; k++) { blob[k + 2] = environ[k]; len[k + 2] = strlen(environ[k]); }
        rc = send_msg(sock, 'Q', nenv + 2, blob, len);
    }
    free(blob); free(len);
    return rc;
}

/* A message this front end will not act on: before anything was asked the Python plugin may
 * still answer; after, the request is lost. */
static void refuse(int sock, int asked, const char *why) {
    fprintf(stderr, "overlay: refused a message from overlayd's CNI service: %s; nothing was run\n", why);
    close(sock);
    if (!asked) run_python_plugin();
    cni_fail(GENERIC_ERROR, "overlayd's CNI service asked for something the overlay plugin refuses", why);
}

int main(int argc, char **argv) {
    (void)argc;
    saved_argv = argv;
    /* A runtime that ignores SIGCHLD would make waitpid() fail: take the default back. */
    signal(SIGCHLD, SIG_DFL);
    if (read_fd_all(0, &input, MAX_INPUT) < 0) {
        input.len = 0;
        cni_fail(GENERIC_ERROR, "the overlay plugin cannot read its network config from stdin", strerror(errno));
    }
    put(&input, "", 1);  /* NUL after the data for the scanner's convenience; not counted */
    input.len--;
    const char *command = getenv("CNI_COMMAND");
    if (!command || (strcmp(command, "ADD") && strcmp(command, "DEL")))
        run_python_plugin();

    char socket_path[256] = DEFAULT_SOCKET;
    if (json_top_string(input.data, input.len, SOCKET_KEY, socket_path, sizeof socket_path) < 0)
        run_python_plugin();   /* a cniSocket we cannot read: the plugin reports what is wrong */
    int sock = socket_path[0] ? connect_service(socket_path) : -1;
    if (sock < 0) run_python_plugin();
    set_timeout(sock, SO_RCVTIMEO, ACCEPT_TIMEOUT_S);
    if (send_request(sock) < 0) run_python_plugin();

    static struct msg m;
    struct ask a;
    int asked = 0;   /* has the service asked for anything (so may have done something)? */
    for (;;) {
        int rc = recv_msg(sock, &m);
        if (rc <= 0) {
            if (!asked) run_python_plugin();   /* nothing was done for this request yet */
            cni_fail(TRY_AGAIN_LATER, "overlayd's CNI service went away in the middle of this request",
                     rc == 0 ? "the daemon closed the connection; the runtime will retry"
                             : strerror(errno));
        }
        const char *why = NULL;
        if (m.type == 'X' && (why = ask_parse(&m, &a)) != NULL) refuse(sock, asked, why);
        if (!asked && (m.type == 'X' || m.type == 'I')) {
            set_timeout(sock, SO_RCVTIMEO, 0);   /* from here on the runtime's own timeout rules */
            asked = 1;
        }
        switch (m.type) {
        case 'A':
            set_timeout(sock, SO_RCVTIMEO, FIRST_ASK_TIMEOUT_S);
            break;
        case 'F':
            close(sock);
            run_python_plugin();
            break;
        case 'D': {
            if (m.n != 3) { errno = EPROTO; goto broken; }
            char code[16];
            size_t n = m.len[0] < sizeof code - 1 ? m.len[0] : sizeof code - 1;
            memcpy(code, m.blob[0], n);
            code[n] = 0;
            write_all(1, m.blob[1], m.len[1]);
            write_all(2, m.blob[2], m.len[2]);
            return atoi(code);
        }
        case 'X':
            if (do_exec(sock, &a) < 0) goto broken;
            break;
        case 'I':
            if (do_ifexists(sock, &m) < 0) goto broken;
            break;
        default:
            if (!asked) run_python_plugin();   /* a newer service than this front end */
            errno = EPROTO;
            goto broken;
        }
    }
broken:
    cni_fail(TRY_AGAIN_LATER, "overlayd's CNI service went away in the middle of this request", strerror(errno));
    return 1;
}
