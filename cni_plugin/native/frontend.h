/*
 * The native front end's pure parts: no I/O on sockets, no exec, no exit. overlay.c is the
 * program around them; fuzz/ drives them directly (see docs/development.md).
 */
#ifndef OVERLAY_FRONTEND_H
#define OVERLAY_FRONTEND_H

#include <stddef.h>
#include <stdint.h>

#define MAX_MESSAGE (64u << 20)
#define MAX_BLOBS 4096
#define MAX_TYPE 255                 /* a plugin type is a file name: NAME_MAX */

struct buf { unsigned char *data; size_t len, cap; };

/* One message: its type byte and blobs, pointing into raw (owned by the message). */
struct msg { unsigned char type; size_t n; unsigned char *blob[MAX_BLOBS]; size_t len[MAX_BLOBS]; unsigned char *raw; };

/* ---- wire.c: the framing (see overlay.c for the messages) ------------------------------- */
void put(struct buf *b, const void *p, size_t n);            /* exits on out of memory */
void put_u32(struct buf *b, uint32_t v);
uint32_t get_u32(const unsigned char *p);
/* Encodes a whole message (length prefix included) into b. */
void msg_encode(struct buf *b, unsigned char type, size_t n, const void *const *blob, const size_t *len);
/* Splits a payload of `total` bytes (m->raw, already read) into type and blobs: 0, or -1 if it
 * is not a message (EPROTO). */
int msg_split(struct msg *m, size_t total);

/* ---- jscan.c: the one thing read from the network config before the service has it ------- */
/* The value of top-level string member `key` (the last one, as Go's and Python's decoders take
 * it), copied into out: 1. Not there: 0. There but not a plain string that fits: -1. */
int json_top_string(const unsigned char *s, size_t n, const char *key, char *out, size_t cap);
/* `text` as the inside of a JSON string. */
void json_escaped(struct buf *b, const char *text);

/* ---- delegate.c: what the service may ask to run, and how ------------------------------ */
struct ask {                          /* an 'X' message, checked */
    char type[MAX_TYPE + 1];          /* a plugin name: no '/', never a path */
    char command[8];                  /* ADD, CHECK, DEL or VERSION */
    const unsigned char *stdin_data;
    size_t stdin_len;
};
/* NULL and *a filled in if m is an acceptable 'X'; otherwise why not (nothing is run then). */
const char *ask_parse(const struct msg *m, struct ask *a);
/* 1 if `type` may name a plugin (as libcni: no '/'; also not "", ".", "..", no NUL). */
int type_ok(const char *type, size_t len);
/* The first regular, executable file `type` in the ':'-separated cni_path, written to out:
 * 1; none: 0 (as libcni's FindInPath, without Windows extensions). */
int find_in_path(const char *type, const char *cni_path, char *out, size_t cap);
/* The delegate's environment, built from this process's own `env` as a plugin calling its
 * delegate passes it on: CNI_COMMAND set to command; for VERSION without CNI_CONTAINERID,
 * CNI_NETNS, CNI_IFNAME and CNI_ARGS. A NULL-terminated array; free with env_free. */
char **delegate_env(char *const *env, const char *command);
void env_free(char **env);
/* The value of `name` in env, or NULL (getenv over a given array). */
const char *env_get(char *const *env, const char *name);

#endif
