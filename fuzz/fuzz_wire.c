/* libFuzzer: one message from the service, as recv_msg gets it (payload after the length),
 * split (msg_split), checked as an ask (ask_parse), and the rules kept:
 *   - a split message encodes back to the same bytes;
 *   - an accepted ask names a plugin (no '/'), one of the four commands, and nothing else;
 *   - the delegate's environment built for it has exactly one CNI_COMMAND, the ask's. */
#include <stdlib.h>
#include <string.h>

#include "frontend.h"

static char *const ENV[] = { "PATH=/usr/sbin:/usr/bin", "CNI_COMMAND=ADD", "CNI_CONTAINERID=c1",
                             "CNI_NETNS=/run/netns/p", "CNI_IFNAME=eth0", "CNI_ARGS=A=1",
                             "CNI_PATH=/nonexistent-fuzz", "NOEQUALS", NULL };

static struct msg m;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0 || size > MAX_MESSAGE) return 0;
    m.raw = malloc(size);
    memcpy(m.raw, data, size);
    if (msg_split(&m, size) == 0) {
        struct buf again = {0};
        msg_encode(&again, m.type, m.n, (const void *const *)m.blob, m.len);
        if (again.len != size + 4 || memcmp(again.data + 4, data, size)) abort();
        free(again.data);

        struct ask a;
        if (ask_parse(&m, &a) == NULL) {
            if (m.type != 'X' || m.n != 3 || strchr(a.type, '/') || !a.type[0]) abort();
            if (strlen(a.type) != m.len[0] || a.stdin_len != m.len[2]) abort();
            if (strcmp(a.command, "ADD") && strcmp(a.command, "CHECK") && strcmp(a.command, "DEL")
                && strcmp(a.command, "VERSION")) abort();
            char path[4096];
            if (find_in_path(a.type, "/nonexistent-fuzz::/nonexistent-fuzz-2", path, sizeof path)) abort();
            char **env = delegate_env(ENV, a.command);
            int commands = 0;
            for (char **e = env; *e; e++) commands += !strncmp(*e, "CNI_COMMAND=", 12);
            const char *c = env_get(env, "CNI_COMMAND");
            if (commands != 1 || !c || strcmp(c, a.command)) abort();
            if (!strcmp(a.command, "VERSION") && env_get(env, "CNI_NETNS")) abort();
            env_free(env);
        }
    }
    free(m.raw);
    m.raw = NULL;
    return 0;
}
