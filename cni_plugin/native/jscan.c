/* A scanner for the one value the front end reads from the network config, cniSocket, before
 * anything else sees it. Not a JSON parser: it steps over values without checking them; the
 * Python plugin or service parses the config properly. Never reads past s[n]. */
#include <stdio.h>
#include <string.h>

#include "frontend.h"

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

static int delimiter(unsigned char c) {
    return c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Index after the JSON value starting at s[i], or 0 if malformed. */
static size_t json_value_end(const unsigned char *s, size_t n, size_t i) {
    size_t depth = 0;
    int plain;
    do {
        if (i >= n) return 0;
        unsigned char c = s[i];
        if (c == '"') { i = json_string_end(s, n, i, &plain); if (!i) return 0; }
        else if (c == '{' || c == '[') { depth++; i++; }
        else if (c == '}' || c == ']') { if (depth == 0) return 0; depth--; i++; }
        else if (depth > 0) i++;
        else { while (i < n && !delimiter(s[i])) i++; }
    } while (depth > 0);
    return i;
}

int json_top_string(const unsigned char *s, size_t n, const char *key, char *out, size_t cap) {
    size_t klen = strlen(key), i = 0;
    int plain, found = 0;
    if (!s) return 0;
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
            if (!vend || !plain || vend - 1 - vstart >= cap || memchr(s + vstart, 0, vend - 1 - vstart)) {
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

void json_escaped(struct buf *b, const char *text) {
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\') { put(b, "\\", 1); put(b, p, 1); }
        else if (*p < 0x20) { char e[8]; snprintf(e, sizeof e, "\\u%04x", *p); put(b, e, 6); }
        else put(b, p, 1);
    }
}
