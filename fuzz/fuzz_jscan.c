/* libFuzzer: the network config on stdin, as the front end scans it before anyone else:
 * cniSocket (into its 256-byte buffer), cniVersion (32), and a tiny buffer for the edges.
 * What it finds is a plain string that fits, without NUL; an error message built from it
 * (json_escaped) is one JSON string without raw control characters or bare quotes. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "frontend.h"

static void check(const uint8_t *data, size_t size, const char *key, size_t cap) {
    char *out = malloc(cap);
    int found = json_top_string(data, size, key, out, cap);
    if (found < -1 || found > 1) abort();
    if (found == 1) {
        size_t n = strlen(out);
        if (n >= cap || !memmem(data, size, out, n)) abort();
        struct buf b = {0};
        json_escaped(&b, out);
        for (size_t i = 0; i < b.len; i++) {
            if (b.data[i] < 0x20) abort();
            if (b.data[i] == '"' && (i == 0 || b.data[i - 1] != '\\')) abort();
        }
        free(b.data);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* exactly `size` bytes, not NUL-terminated: a read past the end is an ASan report */
    uint8_t *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    check(copy, size, "cniSocket", 256);
    check(copy, size, "cniVersion", 32);
    check(copy, size, "k", 2);
    free(copy);
    return 0;
}
