/* What overlayd's CNI service may ask the front end to run, and how it runs.
 *
 * The service is trusted to speak the protocol, not with this host: it names a plugin *type*,
 * a CNI command and the plugin's stdin, never a path and never an environment. The type is
 * looked up on the front end's own CNI_PATH and must not contain '/' (libcni's rule); the
 * environment is the front end's own, the runtime's, with CNI_COMMAND set. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend.h"

static const char *const COMMANDS[] = { "ADD", "CHECK", "DEL", "VERSION", NULL };
/* what a plugin passes its delegate for VERSION: no container (as Delegate.supported_versions) */
static const char *const NOT_FOR_VERSION[] = { "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", NULL };

int type_ok(const char *type, size_t len) {
    if (len == 0 || len > MAX_TYPE || memchr(type, '/', len) || memchr(type, 0, len)) return 0;
    if ((len == 1 && type[0] == '.') || (len == 2 && type[0] == '.' && type[1] == '.')) return 0;
    return 1;
}

const char *ask_parse(const struct msg *m, struct ask *a) {
    if (m->type != 'X') return "not a plugin run";
    if (m->n != 3) return "a plugin run is exactly a type, a command and stdin (no path, no environment)";
    if (!type_ok((const char *)m->blob[0], m->len[0]))
        return "the plugin type is not a plugin name (empty, '.', '..', too long, or has '/' or NUL)";
    memcpy(a->type, m->blob[0], m->len[0]);
    a->type[m->len[0]] = 0;
    const char *const *c;
    for (c = COMMANDS; *c; c++)
        if (m->len[1] == strlen(*c) && !memcmp(m->blob[1], *c, m->len[1])) break;
    if (!*c) return "the command is not one a delegate is run with (ADD, CHECK, DEL, VERSION)";
    strcpy(a->command, *c);
    a->stdin_data = m->blob[2];
    a->stdin_len = m->len[2];
    return NULL;
}

int find_in_path(const char *type, const char *cni_path, char *out, size_t cap) {
    if (!cni_path || !type_ok(type, strlen(type))) return 0;
    const char *p = cni_path;
    while (*p) {
        const char *end = strchr(p, ':');
        size_t dlen = end ? (size_t)(end - p) : strlen(p);
        size_t need = dlen + 1 + strlen(type) + 1;
        if (dlen && need <= cap) {
            memcpy(out, p, dlen);
            out[dlen] = '/';
            strcpy(out + dlen + 1, type);
            struct stat st;
            if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0) return 1;
        }
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

static int named(const char *entry, const char *name) {
    size_t n = strlen(name);
    return !strncmp(entry, name, n) && entry[n] == '=';
}

const char *env_get(char *const *env, const char *name) {
    for (; env && *env; env++)
        if (named(*env, name)) return *env + strlen(name) + 1;
    return NULL;
}

char **delegate_env(char *const *env, const char *command) {
    size_t n = 0;
    while (env && env[n]) n++;
    char **out = calloc(n + 2, sizeof *out);
    if (!out) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int drop = named(env[i], "CNI_COMMAND");
        for (const char *const *v = NOT_FOR_VERSION; !drop && *v && !strcmp(command, "VERSION"); v++)
            drop = named(env[i], *v);
        if (drop) continue;
        if (!(out[k++] = strdup(env[i]))) { env_free(out); return NULL; }
    }
    size_t clen = strlen("CNI_COMMAND=") + strlen(command) + 1;
    if (!(out[k] = malloc(clen))) { env_free(out); return NULL; }
    strcpy(out[k], "CNI_COMMAND=");
    strcat(out[k], command);
    return out;
}

void env_free(char **env) {
    if (!env) return;
    for (char **e = env; *e; e++) free(*e);
    free(env);
}
