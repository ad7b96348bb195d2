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
 * Wire format, both directions: u32 big-endian payload length, then the payload: one type byte,
 * then blobs, each a u32 big-endian length and its bytes.
 *   client -> service  'Q' "1", stdin, env "K=V"...    the request (protocol version 1)
 *   service -> client  'A'                             accepted: the daemon is alive and on it
 *                      'X' path, stdin, env "K=V"...   run this plugin, answer with 'R'
 *                      'I' netns path, ifname          does ifname exist there? answer with 'R'
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
 * Only a service run by root is trusted (SO_PEERCRED): the service can ask for any program.
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

extern char **environ;

#define DEFAULT_SOCKET "/run/flannel/cni.sock"
#define SOCKET_KEY "cniSocket"
#define MAX_INPUT (16u << 20)
#define MAX_MESSAGE (64u << 20)
#define MAX_BLOBS 4096
#define PROTOCOL "1"
#define CONNECT_TIMEOUT_S 2
#define ACCEPT_TIMEOUT_S 5
#define FIRST_ASK_TIMEOUT_S 120
#define TRY_AGAIN_LATER 11
#define GENERIC_ERROR 999

struct buf { unsigned char *data; size_t len, cap; };
struct msg { unsigned char type; size_t n; unsigned char *blob[MAX_BLOBS]; size_t len[MAX_BLOBS]; unsigned char *raw; };

static struct buf input;          /* the network config from stdin */
static char **saved_argv;

/* ---- small helpers ---------------------------------------------------------------------- */

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) { perror("overlay: out of memory"); exit(1); }
    return p;
}

static void put(struct buf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *d = realloc(b->data, cap);
        if (!d) { perror("overlay: out of memory"); exit(1); }
        b->data = d; b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_u32(struct buf *b, uint32_t v) {
    unsigned char x[4] = { v >> 24, v >> 16, v >> 8, v };
    put(b, x, 4);
}

static uint32_t get_u32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

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

/* JSON string contents between quotes at s[i] == '"'; returns the index after the closing quote
 * or 0 on malformed input; *plain says whether it had no escapes. */
static size_t json_string_end(const unsigned char *s, size_t n, size_t i, int *plain) {
    *plain = 1;
    for (i++; i < n; i++) {
        if (s[i] == '\\') { *plain = 0; i++; continue; }
        if (s[i] == '"') return i + 1;
    }
    return 0;
}

static size_t skip_ws(const unsigned char *s, size_t n, size_t i) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return i;
}

/* Index after the JSON value starting at s[i], or 0 if malformed. */
static size_t json_value_end(const unsigned char *s, size_t n, size_t i) {
    int depth = 0, plain;
    do {
        if (i >= n) return 0;
        unsigned char c = s[i];
        if (c == '"') { i = json_string_end(s, n, i, &plain); if (!i) return 0; }
        else if (c == '{' || c == '[') { depth++; i++; }
        else if (c == '}' || c == ']') { if (--depth < 0) return 0; i++; }
        else if (depth > 0) i++;
        else { while (i < n && !strchr(",}] \t\r\n", s[i])) i++; }
    } while (depth > 0);
    return i;
}

/* The value of top-level string member `key` (the last one, as Go's and Python's decoders take
 * it), copied into out: 1. Not there: 0. There but not a plain string that fits: -1. */
static int json_top_string(const unsigned char *s, size_t n, const char *key, char *out, size_t cap) {
    size_t klen = strlen(key), i = 0;
    int plain, found = 0;
    if (n >= 3 && s[0] == 0xef && s[1] == 0xbb && s[2] == 0xbf) i = 3;   /* a UTF-8 BOM */
    i = skip_ws(s, n, i);
    if (i >= n || s[i] != '{') return 0;
    i = skip_ws(s, n, i + 1);
    if (i < n && s[i] == '}') return 0;
    while (i < n && s[i] == '"') {
        size_t kstart = i + 1, kend = json_string_end(s, n, i, &plain);
        if (!kend) return 0;
        int match = plain && kend - 1 - kstart == klen && !memcmp(s + kstart, key, klen);
        i = skip_ws(s, n, kend);
        if (i >= n || s[i] != ':') return 0;
        i = skip_ws(s, n, i + 1);
        if (match) {
            size_t vstart = i + 1, vend = i < n && s[i] == '"' ? json_string_end(s, n, i, &plain) : 0;
            if (!vend || !plain || vend - 1 - vstart >= cap) {
                found = -1;
            } else {
                memcpy(out, s + vstart, vend - 1 - vstart);
                out[vend - 1 - vstart] = 0;
                found = 1;
            }
        }
        i = json_value_end(s, n, i);
        if (!i) return found;
        i = skip_ws(s, n, i);
        if (i < n && s[i] == ',') { i = skip_ws(s, n, i + 1); continue; }
        return found;
    }
    return found;
}

static void json_escaped(struct buf *b, const char *text) {
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\') { put(b, "\\", 1); put(b, p, 1); }
        else if (*p < 0x20) { char e[8]; snprintf(e, sizeof e, "\\u%04x", *p); put(b, e, 6); }
        else put(b, p, 1);
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
    size_t total = 1;
    for (size_t k = 0; k < n; k++) total += 4 + len[k];
    put_u32(&b, (uint32_t)total);
    put(&b, &type, 1);
    for (size_t k = 0; k < n; k++) { put_u32(&b, (uint32_t)len[k]); put(&b, blob[k], len[k]); }
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
    m->type = m->raw[0];
    m->n = 0;
    for (size_t i = 1; i < total; ) {
        if (i + 4 > total || m->n == MAX_BLOBS) { errno = EPROTO; return -1; }
        uint32_t l = get_u32(m->raw + i);
        i += 4;
        if (l > total - i) { errno = EPROTO; return -1; }
        m->blob[m->n] = m->raw + i;
        m->len[m->n++] = l;
        i += l;
    }
    return 1;
}

static char *cstr(const unsigned char *p, size_t n) {
    char *s = malloc(n + 1);
    if (!s) { perror("overlay: out of memory"); exit(1); }
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

static int reply_status(int sock, const char *status, const struct buf *out, const struct buf *err) {
    static const char empty[1];
    const void *blob[3] = { status, out && out->data ? (const void *)out->data : empty,
                            err && err->data ? (const void *)err->data : empty };
    size_t len[3] = { strlen(status), out ? out->len : 0, err ? err->len : 0 };
    return send_msg(sock, 'R', out ? 3 : 1, blob, len);
}

/* 'X': run a plugin with the given stdin and environment; stdio through memfds (no pipe dead-lock). */
static int do_exec(int sock, const struct msg *m) {
    char status[32];
    if (m->n < 2) { errno = EPROTO; return -1; }
    char *path = cstr(m->blob[0], m->len[0]);
    size_t nenv = m->n - 2;
    char **env = xcalloc(nenv + 1, sizeof *env);
    for (size_t k = 0; k < nenv; k++) env[k] = cstr(m->blob[k + 2], m->len[k + 2]);
    int fds[3] = { memfd_with(m->blob[1], m->len[1]), memfd_with(NULL, 0), memfd_with(NULL, 0) };
    struct buf out = {0}, err = {0};
    int rc;
    if (fds[0] < 0 || fds[1] < 0 || fds[2] < 0) {
        snprintf(status, sizeof status, "E%d", errno);
        rc = reply_status(sock, status, NULL, NULL);
    } else {
        /* The delegate starts as the runtime would start it: default signal dispositions and
         * an empty signal mask, whatever this process inherited. */
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
        char *argv[] = { path, NULL };
        pid_t pid;
        int e = posix_spawn(&pid, path, &actions, &attr, argv, env);
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
        int ws = 0;
        if (!e) {
            pid_t w;
            while ((w = waitpid(pid, &ws, 0)) < 0 && errno == EINTR) {}
            if (w < 0) e = errno;
        }
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
    }
    for (int k = 0; k < 3; k++) if (fds[k] >= 0) close(fds[k]);
    for (size_t k = 0; k < nenv; k++) free(env[k]);
    free(env); free(path); free(out.data); free(err.data);
    return rc;
}

/* 'I': does the interface exist in that network namespace? setns there and back. */
static int do_ifexists(int sock, const struct msg *m) {
    char status[32];
    if (m->n != 2) { errno = EPROTO; return -1; }
    char *path = cstr(m->blob[0], m->len[0]), *ifname = cstr(m->blob[1], m->len[1]);
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int target = home < 0 ? -1 : open(path, O_RDONLY | O_CLOEXEC);
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
    free(path); free(ifname);
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

    size_t nenv = 0;
    while (environ[nenv]) nenv++;
    const void **blob = xcalloc(nenv + 2, sizeof *blob);
    size_t *len = xcalloc(nenv + 2, sizeof *len);
    blob[0] = PROTOCOL; len[0] = strlen(PROTOCOL);
    blob[1] = input.data; len[1] = input.len;
    for (size_t k = 0; k < nenv; k++) { blob[k + 2] = environ[k]; len[k + 2] = strlen(environ[k]); }
    if (send_msg(sock, 'Q', nenv + 2, blob, len) < 0) run_python_plugin();
    free(blob); free(len);

    static struct msg m;
    int asked = 0;   /* has the service asked for anything (so may have done something)? */
    for (;;) {
        int rc = recv_msg(sock, &m);
        if (rc <= 0) {
            if (!asked) run_python_plugin();   /* nothing was done for this request yet */
            cni_fail(TRY_AGAIN_LATER, "overlayd's CNI service went away in the middle of this request",
                     rc == 0 ? "the daemon closed the connection; the runtime will retry"
                             : strerror(errno));
        }
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
            char *code = cstr(m.blob[0], m.len[0]);
            write_all(1, m.blob[1], m.len[1]);
            write_all(2, m.blob[2], m.len[2]);
            return atoi(code);
        }
        case 'X':
            if (do_exec(sock, &m) < 0) goto broken;
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
