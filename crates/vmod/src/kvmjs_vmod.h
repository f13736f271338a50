/*
 * The C ABI of the kvmjs side of the VMOD (src/lib.rs implements it over
 * kvmjs::embed). Strings are (pointer, length) pairs unless said otherwise; every
 * object is owned by the side that frees it as named here.
 */
#ifndef KVMJS_VMOD_H
#define KVMJS_VMOD_H

#include <stddef.h>
#include <sys/types.h>

struct kvmjs;       /* a loaded tinykvm.json, shared by the VCLs that load it */
struct kvmjs_req;   /* a request being handed over */
struct kvmjs_reply; /* a response being read */

/* The front target: routes as `kvmjs serve` does. Program targets are 0..n-1. */
#define KVMJS_FRONT (-1L)

/* Loads `config` (NUL-terminated) with the QuickJS guest `guest` ("": $KVMJS_GUEST);
 * NULL with the reason in err (NUL-terminated, truncated to errlen). */
struct kvmjs *kvmjs_load(const char *config, const char *guest, char *err,
    size_t errlen);
void kvmjs_release(struct kvmjs *);
size_t kvmjs_programs(const struct kvmjs *);
/* Program i's name, NUL-terminated, valid until kvmjs_release. */
const char *kvmjs_program_name(const struct kvmjs *, size_t i);
/* The index of the program called `name` (NUL-terminated), or -1. */
long kvmjs_program_index(const struct kvmjs *, const char *name);

struct kvmjs_req *kvmjs_req_new(const struct kvmjs *, long target,
    const char *method, size_t mlen, const char *url, size_t ulen);
/* One "Name: value" field. */
void kvmjs_req_header(struct kvmjs_req *, const char *field, size_t len);
/* The most body bytes this request may carry (after its headers are in; this routes
 * the request, once). */
size_t kvmjs_req_body_limit(const struct kvmjs *, struct kvmjs_req *);
/* Appends body bytes: 1, or 0 once over the limit (stop feeding; the reply says 413). */
int kvmjs_req_body(struct kvmjs_req *, const void *p, size_t len, size_t limit);
/* Runs the request (consumed) and waits for the response head; never NULL. */
struct kvmjs_reply *kvmjs_send(const struct kvmjs *, struct kvmjs_req *);
/* Drops a request that will not be sent. */
void kvmjs_req_free(struct kvmjs_req *);

unsigned kvmjs_reply_status(const struct kvmjs_reply *);
/* The reason phrase, NUL-terminated, valid until kvmjs_reply_free. */
const char *kvmjs_reply_reason(const struct kvmjs_reply *);
size_t kvmjs_reply_headers(const struct kvmjs_reply *);
void kvmjs_reply_header(const struct kvmjs_reply *, size_t i, const char **name,
    size_t *nlen, const char **value, size_t *vlen);
/* Body length, or -1 for a body streamed as the program makes it. */
long long kvmjs_reply_length(const struct kvmjs_reply *);
/* Reads body bytes: the count, 0 at the end, -1 when the body broke off
 * (kvmjs_reply_reason then says why). */
ssize_t kvmjs_reply_read(struct kvmjs_reply *, void *buf, size_t cap);
void kvmjs_reply_free(struct kvmjs_reply *);

#endif
