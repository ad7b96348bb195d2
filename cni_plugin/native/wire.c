/* The framing between the front end and overlayd's CNI service (cni_plugin/wire.py is the
 * other side): u32 big-endian payload length, then the payload: one type byte, then blobs,
 * each a u32 big-endian length and its bytes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"

void put(struct buf *b, const void *p, size_t n) {
    if (!n) return;
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

void put_u32(struct buf *b, uint32_t v) {
    unsigned char x[4] = { v >> 24, v >> 16, v >> 8, v };
    put(b, x, 4);
}

uint32_t get_u32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

void msg_encode(struct buf *b, unsigned char type, size_t n, const void *const *blob, const size_t *len) {
    size_t total = 1;
    for (size_t k = 0; k < n; k++) total += 4 + len[k];
    put_u32(b, (uint32_t)total);
    put(b, &type, 1);
    for (size_t k = 0; k < n; k++) { put_u32(b, (uint32_t)len[k]); put(b, blob[k], len[k]); }
}

int msg_split(struct msg *m, size_t total) {
    if (total < 1 || total > MAX_MESSAGE) { errno = EPROTO; return -1; }
    m->type = m->raw[0];
    m->n = 0;
    for (size_t i = 1; i < total; ) {
        if (total - i < 4 || m->n == MAX_BLOBS) { errno = EPROTO; return -1; }
        uint32_t l = get_u32(m->raw + i);
        i += 4;
        if (l > total - i) { errno = EPROTO; return -1; }
        m->blob[m->n] = m->raw + i;
        m->len[m->n++] = l;
        i += l;
    }
    return 0;
}
