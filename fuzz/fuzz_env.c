/* libFuzzer: the environment the runtime gives the front end, and the CNI_PATH it searches.
 * Input: a command selector byte, then NUL-separated "K=V" entries. The delegate's environment
 * keeps every entry but CNI_COMMAND (and, for VERSION, the container's four), adds exactly one
 * CNI_COMMAND, and the CNI_PATH walk never finds a type that is not a plugin name. */
#include <stdlib.h>
#include <string.h>

#include "frontend.h"

static const char *const COMMANDS[] = { "ADD", "CHECK", "DEL", "VERSION" };
static const char *const CONTAINER[] = { "CNI_CONTAINERID=", "CNI_NETNS=", "CNI_IFNAME=", "CNI_ARGS=" };

static int starts(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 65536) return 0;
    const char *command = COMMANDS[data[0] % 4];
    char *text = malloc(size);              /* entries, NUL-terminated (the last one too) */
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    size_t n = 0;
    for (size_t i = 0; i < size; i++) n += text[i] == 0;
    char **env = calloc(n + 1, sizeof *env);
    size_t k = 0;
    for (char *p = text; p < text + size && k < n; p += strlen(p) + 1) env[k++] = p;

    char **out = delegate_env(env, command);
    size_t kept = 0, expected = 0, commands = 0;
    for (char **e = out; *e; e++) {
        kept++;
        commands += starts(*e, "CNI_COMMAND=");
        for (int c = 0; c < 4 && !strcmp(command, "VERSION"); c++) if (starts(*e, CONTAINER[c])) abort();
    }
    for (size_t i = 0; i < k; i++) {
        int dropped = starts(env[i], "CNI_COMMAND=");
        for (int c = 0; c < 4 && !strcmp(command, "VERSION"); c++) dropped |= starts(env[i], CONTAINER[c]);
        expected += !dropped;
    }
    if (commands != 1 || kept != expected + 1 || strcmp(env_get(out, "CNI_COMMAND"), command)) abort();
    env_free(out);

    /* the first entry as a plugin type, searched on the fuzzer's CNI_PATH (only stat/access) */
    const char *cni_path = env_get(env, "CNI_PATH");
    char path[512];
    if (k && cni_path && find_in_path(env[0], cni_path, path, sizeof path)) {
        if (!type_ok(env[0], strlen(env[0])) || strlen(path) >= sizeof path) abort();
    }
    if (k && !type_ok(env[0], strlen(env[0])) && find_in_path(env[0], "/usr/bin:/bin", path, sizeof path)) abort();
    free(env);
    free(text);
    return 0;
}
